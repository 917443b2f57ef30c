//! The gRPC control-plane protocol of spfs-fuse: package `spfs.fuse.v1`, service `Vfs`.
//!
//! The protocol is documented in `proto/vfs.proto`; this crate only holds the code generated
//! from it (messages, [`v1::vfs_client::VfsClient`] and [`v1::vfs_server::VfsServer`]).
//! Conversions to and from the service's own types live in the `spfs-fuse` crate.

/// Package `spfs.fuse.v1`: the messages, the client and the server of service `Vfs`.
pub mod v1 {
    #![allow(missing_docs)]
    tonic::include_proto!("spfs.fuse.v1");
}
