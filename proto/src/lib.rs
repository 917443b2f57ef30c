//! The gRPC control-plane protocol of spfs-fuse: package `spfs.fuse.v1`, service `Vfs`.
