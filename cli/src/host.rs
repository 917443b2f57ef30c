//! The runtime host: what the control plane drives. It owns the route table and the FUSE
//! sessions, and turns control calls into registrations and mounts.
