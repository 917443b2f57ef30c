//! The shared core of spfs-fuse: layered views, one node-id space for all views, and
//! caller-to-view routing. It knows nothing of FUSE, gRPC or the command line.
