//! The session configuration the mount tests use: a `/dev/fuse` mount with two workers,
//! through FUSE over io_uring or not.

use std::path::Path;

use spfs_frontends::{SessionConfig, Transport};

/// A device mount at `mountpoint`, with FUSE over io_uring where `io_uring` and the kernel
/// offers it.
pub fn device_config(mountpoint: &Path, io_uring: bool) -> SessionConfig {
    SessionConfig {
        mountpoint: mountpoint.to_path_buf(),
        fsname: "spfs-test".into(),
        volname: "spfs-test".into(),
        transport: Transport::Device,
        threads: 2,
        io_uring,
        nfs_server: None,
        other_users: false,
    }
}
