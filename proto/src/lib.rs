//! The gRPC control-plane protocol of spfs-fuse: package `spfs.fuse.v1`, service `Vfs`.
//!
//! The protocol is documented in `proto/vfs.proto`; this crate holds the code generated from it
//! (messages, [`v1::vfs_client::VfsClient`] and [`v1::vfs_server::VfsServer`]) and the value
//! types both ends share ([`status`]), with their one conversion to and from the wire.

pub mod status;

/// Package `spfs.fuse.v1`: the messages, the client and the server of service `Vfs`.
pub mod v1 {
    #![allow(missing_docs)]
    tonic::include_proto!("spfs.fuse.v1");
}
