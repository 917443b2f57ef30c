//! Errors of mounting and unmounting.

use std::io;
use std::path::PathBuf;

/// Why a session could not be mounted or unmounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point could not be created or examined.
    #[error("mount point {path:?} cannot be used: {source}")]
    Mountpoint {
        /// The mount point.
        path: PathBuf,
        /// What the filesystem said.
        source: io::Error,
    },
    /// A live filesystem is mounted there already, most likely another service.
    #[error(
        "{0:?} is already mounted and answering; is another spfs-fuse service running? (stop it, or pick another --mountpoint)"
    )]
    AlreadyMounted(PathBuf),
    /// A stale mount (from a crashed service) could not be cleared.
    #[error("a stale mount at {path:?} could not be cleared: {source}")]
    StaleMount {
        /// The mount point.
        path: PathBuf,
        /// What unmounting said.
        source: io::Error,
    },
    /// The FUSE transport refused to mount or serve.
    #[error("mounting {path:?} failed: {message}")]
    Session {
        /// The mount point.
        path: PathBuf,
        /// The transport's own message.
        message: String,
    },
    /// Unmounting failed.
    #[error("unmounting {path:?} failed: {message}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The transport's own message.
        message: String,
    },
    /// This build cannot serve the transport (FUSE-T outside macOS).
    #[error("cannot mount {path:?}: the {transport} transport is not available on this platform")]
    Unsupported {
        /// The mount point.
        path: PathBuf,
        /// The transport asked for.
        transport: &'static str,
    },
}
