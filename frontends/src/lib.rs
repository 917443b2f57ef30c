//! FUSE sessions (one per transport) and the one FUSE adapter over the `spfs-router` core.
