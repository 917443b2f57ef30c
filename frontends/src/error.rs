//! Errors of mounting and unmounting. Each failure gets its [`MountFailure`] kind where it
//! happens, so what to do about it (the hint a person gets) is decided by the kind, never by
//! the text.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What kind of failure stopped a mount: what a hint is chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountFailure {
    /// The mount point (or the volumes directory it is in) cannot be created or examined.
    Mountpoint,
    /// A live filesystem is mounted there already.
    AlreadyMounted,
    /// A dead mount is left there and could not be cleared.
    StaleMount,
    /// Linux: the FUSE device `/dev/fuse` does not exist.
    DeviceMissing,
    /// Linux: the FUSE device exists but this user may not open it.
    DeviceDenied,
    /// Linux: mounting as a user needs `fusermount3`, which is not on `PATH`.
    FusermountMissing,
    /// macOS: macFUSE's mount helper `mount_macfuse` is not installed.
    HelperMissing,
    /// macOS: `mount_macfuse` ran and did not mount (most often: the kext is not approved or
    /// not loaded).
    HelperRefused,
    /// macOS: macFUSE refused `allow_other` (serving users other than the service's own) to
    /// a service that is neither root nor in the admin group: `mount_macfuse` reported
    /// mount(2)'s `EPERM` for a mount point the service owns (osxfuse/kext `fuse_vfsops.c`).
    AllowOtherDenied,
    /// macOS: FUSE-T's NFS server `go-nfsv4` is not installed.
    ServerMissing,
    /// macOS: `go-nfsv4` exited while mounting.
    ServerExited,
    /// This build cannot serve the transport (FUSE-T outside macOS).
    Unsupported,
    /// Anything else: a thread or socket that could not be made, a mount that timed out, ...
    Other,
}

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
    #[error("mounting {path:?} failed: {message}{}", Suffix(.source.as_ref()))]
    Session {
        /// The mount point.
        path: PathBuf,
        /// What kind of failure it is.
        kind: MountFailure,
        /// What failed, for a person (a helper's own words included).
        message: String,
        /// The system's error, when there is one.
        source: Option<io::Error>,
    },
    /// Unmounting failed.
    #[error("unmounting {path:?} failed: {message}{}", Suffix(.source.as_ref()))]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// What failed, for a person.
        message: String,
        /// The system's error, when there is one.
        source: Option<io::Error>,
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

/// Why a mount's kernel could not be told to forget what it cached.
#[derive(Debug, thiserror::Error)]
pub enum InvalidateError {
    /// The kernel refused a notification (or the connection to it failed).
    #[error("the kernel of {mountpoint:?} refused to forget {what}: {source}")]
    Refused {
        /// The mount point.
        mountpoint: PathBuf,
        /// What it was told to forget: "entry NAME of node P" or "node N".
        what: String,
        /// What the device or socket answered.
        source: io::Error,
    },
}

/// `: <error>` after a message, or nothing.
struct Suffix<'e>(Option<&'e io::Error>);

impl fmt::Display for Suffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(err) => write!(f, ": {err}"),
            None => Ok(()),
        }
    }
}

impl MountError {
    /// What kind of failure this is.
    pub fn kind(&self) -> MountFailure {
        match self {
            MountError::Mountpoint { .. } => MountFailure::Mountpoint,
            MountError::AlreadyMounted(_) => MountFailure::AlreadyMounted,
            MountError::StaleMount { .. } => MountFailure::StaleMount,
            MountError::Session { kind, .. } => *kind,
            // Unmounting is not mounting: no hint fixes it, `sweep` clears what is left.
            MountError::Unmount { .. } => MountFailure::Other,
            MountError::Unsupported { .. } => MountFailure::Unsupported,
        }
    }

    /// A failed mount of `path` of `kind`, described by `message`.
    pub(crate) fn session(path: &Path, kind: MountFailure, message: impl Into<String>) -> Self {
        MountError::Session {
            path: path.to_path_buf(),
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// A failed mount of `path` of `kind`: `message`, because of `source`.
    pub(crate) fn session_io(
        path: &Path,
        kind: MountFailure,
        message: impl Into<String>,
        source: io::Error,
    ) -> Self {
        MountError::Session {
            path: path.to_path_buf(),
            kind,
            message: message.into(),
            source: Some(source),
        }
    }

    /// A failed unmount of `path`: `message`, because of `source` when there is one.
    pub(crate) fn unmount(
        path: &Path,
        message: impl Into<String>,
        source: Option<io::Error>,
    ) -> Self {
        MountError::Unmount {
            path: path.to_path_buf(),
            message: message.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_kind_and_keeps_its_cause() {
        let path = Path::new("/spfs");
        let gone = || io::Error::from(io::ErrorKind::NotFound);
        let err = MountError::session_io(path, MountFailure::HelperMissing, "cannot run x", gone());
        assert_eq!(err.kind(), MountFailure::HelperMissing);
        let source = std::error::Error::source(&err).expect("a source");
        assert_eq!(
            source.downcast_ref::<io::Error>().map(io::Error::kind),
            Some(io::ErrorKind::NotFound)
        );
        assert!(
            err.to_string()
                .starts_with("mounting \"/spfs\" failed: cannot run x: ")
        );
        let mountpoint = MountError::Mountpoint {
            path: path.into(),
            source: gone(),
        };
        assert_eq!(mountpoint.kind(), MountFailure::Mountpoint);
        assert_eq!(
            MountError::AlreadyMounted(path.into()).kind(),
            MountFailure::AlreadyMounted
        );
        let unsupported = MountError::Unsupported {
            path: path.into(),
            transport: "nfs",
        };
        assert_eq!(unsupported.kind(), MountFailure::Unsupported);
        assert_eq!(
            MountError::session(path, MountFailure::ServerExited, "gone").to_string(),
            "mounting \"/spfs\" failed: gone"
        );
    }
}
