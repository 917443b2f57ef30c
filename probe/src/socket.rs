//! The control socket's path helpers that the service and its clients share: which socket to
//! use, its private directory, the service's log beside it, and whether anything answers.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use crate::defaults;

/// Why the socket's directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SocketDirError {
    /// The socket path has no parent directory.
    #[error("socket path {0:?} has no directory")]
    NoDirectory(PathBuf),
    /// Creating, reading or protecting the directory failed.
    #[error("cannot {action} the socket directory {path:?}: {source}")]
    Io {
        /// What was being done: `create`, `read`, `restrict the mode of`.
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// What the filesystem said.
        source: io::Error,
    },
    /// The private socket directory belongs to another user.
    #[error(
        "refusing to use the socket directory {path:?}: it belongs to uid {owner}, not to you \
         (uid {me}); remove it or pass --socket"
    )]
    NotOurs {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's uid.
        me: u32,
    },
}

/// The socket to use: the one given (`--socket` or `SPFS_FUSE_SOCKET`) made absolute, else
/// the default. Absolute, because an auto-started service runs in `/`.
pub fn resolve_socket_path(given: Option<&Path>) -> io::Result<PathBuf> {
    match given {
        Some(path) if !path.as_os_str().is_empty() => std::path::absolute(path),
        _ => Ok(defaults::socket_path()),
    }
}

/// Where an auto-started service logs: next to its socket, `spfs-fuse.sock` -> `spfs-fuse.log`.
pub fn log_path(socket: &Path) -> PathBuf {
    socket.with_extension("log")
}

/// Whether something accepts connections on `socket`.
pub fn answers(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// Makes sure the socket's directory exists. Missing directories are created with mode 0700.
/// The default directory must belong to us and is made 0700 if it is not; a directory given
/// with `--socket` is left as it is (it may be a shared one like `/tmp`).
pub fn prepare_socket_dir(socket: &Path) -> Result<(), SocketDirError> {
    let private = socket.parent() == Some(defaults::private_socket_dir().as_path());
    ensure_socket_dir(socket, 0o700, private)
}

/// Creates the socket's directory with `mode` where it is missing. With `owned` it must also
/// belong to this user, and any permission beyond `mode` is taken away: a private directory
/// (0700), or one every user may enter but only its owner write (0755, the system socket's).
pub fn ensure_socket_dir(socket: &Path, mode: u32, owned: bool) -> Result<(), SocketDirError> {
    let dir = socket
        .parent()
        .ok_or_else(|| SocketDirError::NoDirectory(socket.to_owned()))?;
    let failed = |action| {
        move |source| SocketDirError::Io {
            action,
            path: dir.to_owned(),
            source,
        }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(failed("create"))?;
    if !owned {
        return Ok(());
    }
    let meta = fs::metadata(dir).map_err(failed("read"))?;
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no memory of ours.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(SocketDirError::NotOurs {
            path: dir.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o777 & !mode != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .map_err(failed("restrict the mode of"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_sits_next_to_the_socket() {
        let socket = Path::new("/run/user/1/spfs-fuse/spfs-fuse.sock");
        assert_eq!(
            log_path(socket),
            Path::new("/run/user/1/spfs-fuse/spfs-fuse.log")
        );
    }

    #[test]
    fn a_missing_socket_directory_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sub/s.sock");
        prepare_socket_dir(&socket).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("sub")).unwrap().mode() & 0o777,
            0o700
        );
        assert!(!answers(&socket));
    }
}
