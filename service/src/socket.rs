//! The control socket: its default path, its private directory, the lock that allows one
//! service per socket, stale-socket cleanup, and binding it with mode 0600 (a per-user
//! service) or 0666 in a root-owned directory (the system service, which every user reaches:
//! the peer credentials decide what each caller may do).
//!
//! A service holds an exclusive `flock` on `<socket>.lock` for its whole life. The kernel drops
//! the lock when the process dies, however it dies, so a socket file whose lock is free was left
//! by a crashed service and can be removed. The lock (rather than "does the socket answer?")
//! settles races between two services starting at once, e.g. two `spfs-fuse run` auto-starting.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::sys::stat::Mode;
use spfs_probe::socket::{SocketDirError, answers, ensure_socket_dir, prepare_socket_dir};

/// How long a starting service waits for another one that holds the lock but does not answer
/// (it is starting or stopping) before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Who may connect to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The service's user alone: mode 0600, in the directory the socket path names.
    Private,
    /// Every user: mode 0666, in a directory that belongs to the service (root) and that no one
    /// else may write, so no one can put another socket where every user connects.
    Everyone,
}

impl Access {
    /// The socket's mode.
    fn mode(self) -> u32 {
        match self {
            Access::Private => 0o600,
            Access::Everyone => 0o666,
        }
    }
}

/// The lock file of a socket.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// A socket path this process owns: the lock is held, and the socket is bound (mode 0600) but
/// not yet listening, so clients get "connection refused" until [`ClaimedSocket::listen`].
#[derive(Debug)]
pub(crate) struct ClaimedSocket {
    path: PathBuf,
    fd: Option<OwnedFd>,
    _lock: Flock<File>,
}

/// Why a socket could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// A live service already serves the socket.
    #[error(
        "an spfs-fuse service{} is already serving {}; stop it with `spfs-fuse shutdown` first",
        pid_suffix(*.pid),
        .socket.display()
    )]
    AlreadyServing {
        /// The socket.
        socket: PathBuf,
        /// The pid the other service wrote into the lock file, if it could be read.
        pid: Option<u32>,
    },
    /// Another service holds the lock but does not answer.
    #[error(
        "another spfs-fuse service{} holds {} but does not answer on {} after {} s",
        pid_suffix(*.pid),
        .lock_file.display(),
        .socket.display(),
        LOCK_WAIT.as_secs()
    )]
    Unanswered {
        /// The socket.
        socket: PathBuf,
        /// Its lock file.
        lock_file: PathBuf,
        /// The pid the other service wrote into the lock file, if it could be read.
        pid: Option<u32>,
    },
    /// The socket's directory cannot be used.
    #[error(transparent)]
    Dir(#[from] SocketDirError),
    /// Something other than a socket sits at the socket path.
    #[error("{} exists and is not a socket; remove it or pass another --socket", .0.display())]
    NotASocket(PathBuf),
    /// The path does not fit in a socket address.
    #[error(
        "cannot use {} as a socket path (too long? the limit is about 100 bytes): {source}",
        .path.display()
    )]
    BadPath {
        /// The socket.
        path: PathBuf,
        /// What the address check said.
        source: nix::Error,
    },
    /// A file operation on the socket or its lock failed.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done: `lock`, `bind`, `listen on`, ...
        action: &'static str,
        /// The socket or lock file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// [`ClaimedSocket::listen`] was called twice.
    #[error("the socket {} is already listening", .0.display())]
    AlreadyListening(PathBuf),
}

/// An [`io::Error`] on `path` while doing `action`, as a [`ClaimError`].
fn failed(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ClaimError {
    let path = path.to_owned();
    move |source| ClaimError::Io {
        action,
        path,
        source,
    }
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

/// Claims `socket` for this service: takes the lock (waiting briefly for a service that is
/// starting or stopping), refuses if a live service answers, removes a stale socket file, and
/// binds a new socket with the mode `access` gives.
///
/// Call this before any thread is started: it sets the process umask for the `bind`.
pub(crate) fn claim(socket: &Path, access: Access) -> Result<ClaimedSocket, ClaimError> {
    match access {
        Access::Private => prepare_socket_dir(socket)?,
        Access::Everyone => prepare_shared_dir(socket)?,
    }
    let lock_file = lock_path(socket);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_file)
        .map_err(failed("open the lock file", &lock_file))?;
    let deadline = Instant::now() + LOCK_WAIT;
    let mut lock = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => break lock,
            Err((returned, nix::errno::Errno::EWOULDBLOCK)) => {
                file = returned;
                let pid = read_pid(&mut file);
                if answers(socket) {
                    return Err(ClaimError::AlreadyServing {
                        socket: socket.to_owned(),
                        pid,
                    });
                }
                if Instant::now() >= deadline {
                    return Err(ClaimError::Unanswered {
                        socket: socket.to_owned(),
                        lock_file,
                        pid,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, errno)) => {
                return Err(failed("lock", &lock_file)(errno.into()));
            }
        }
    };
    // A service that does not use the lock (another version) may still answer.
    if answers(socket) {
        return Err(ClaimError::AlreadyServing {
            socket: socket.to_owned(),
            pid: None,
        });
    }
    remove_stale(socket)?;
    lock.set_len(0)
        .and_then(|()| write!(*lock, "{}", std::process::id()))
        .map_err(failed("write to", &lock_file))?;
    let fd = bind(socket, access)?;
    Ok(ClaimedSocket {
        path: socket.to_owned(),
        fd: Some(fd),
        _lock: lock,
    })
}

/// Makes the directory of a socket every user reaches: created 0755; it must belong to this
/// service's user and be writable by no one else (group or other write is taken away).
fn prepare_shared_dir(socket: &Path) -> Result<(), SocketDirError> {
    ensure_socket_dir(socket, 0o755, true)
}

/// The pid a service wrote into its lock file.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Removes a socket file nobody serves (we hold the lock, and nothing answered).
fn remove_stale(socket: &Path) -> Result<(), ClaimError> {
    match fs::symlink_metadata(socket) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(failed("read", socket)(err)),
        Ok(meta) if meta.file_type().is_socket() => {
            fs::remove_file(socket).map_err(failed("remove the stale socket", socket))?;
            tracing::info!(socket = %socket.display(), "removed a stale socket left by a service that is gone");
            Ok(())
        }
        Ok(_) => Err(ClaimError::NotASocket(socket.to_owned())),
    }
}

/// Binds a Unix socket at `path`, private from the start: the umask is narrowed to 0077 around
/// `bind`, so there is no moment when another user could connect; then the mode is set to
/// exactly the mode of `access`. The socket does not listen yet.
fn bind(path: &Path, access: Access) -> Result<OwnedFd, ClaimError> {
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .map_err(|errno| failed("create a Unix socket at", path)(errno.into()))?;
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|errno| failed("set close-on-exec on", path)(errno.into()))?;
    let addr = UnixAddr::new(path).map_err(|source| ClaimError::BadPath {
        path: path.to_owned(),
        source,
    })?;
    // The umask is process-wide; this runs before the service starts any thread.
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    let bound = nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr);
    nix::sys::stat::umask(old);
    bound.map_err(|errno| failed("bind", path)(errno.into()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(access.mode()))
        .map_err(failed("set the mode of", path))?;
    Ok(fd)
}

impl ClaimedSocket {
    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Starts listening: from now on clients connect.
    pub(crate) fn listen(&mut self) -> Result<UnixListener, ClaimError> {
        let fd = self
            .fd
            .take()
            .ok_or_else(|| ClaimError::AlreadyListening(self.path.clone()))?;
        nix::sys::socket::listen(&fd, Backlog::MAXCONN)
            .map_err(|errno| failed("listen on", &self.path)(errno.into()))?;
        let listener = UnixListener::from(fd);
        listener
            .set_nonblocking(true)
            .map_err(failed("make non-blocking the socket", &self.path))?;
        Ok(listener)
    }
}

impl Drop for ClaimedSocket {
    /// Removes the socket file, then (field drop) releases the lock.
    fn drop(&mut self) {
        if let Err(err) = fs::remove_file(&self.path)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(socket = %self.path.display(), %err, "cannot remove the socket");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_system_sockets_directory_is_made_writable_by_its_owner_alone() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("system");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        prepare_shared_dir(&shared.join("s.sock")).unwrap();
        assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o777, 0o755);
        // A missing one is created so.
        let fresh = dir.path().join("fresh/system");
        prepare_shared_dir(&fresh.join("s.sock")).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn a_system_socket_directory_of_another_user_is_refused() {
        // Only root can give a directory away; the rule is the same for any user.
        if !spfs_testkit::is_root() && !spfs_testkit::skip("giving a directory away needs root") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = prepare_shared_dir(&theirs.join("s.sock")).unwrap_err();
        assert!(
            matches!(err, SocketDirError::NotOurs { owner: 65534, .. }),
            "{err}"
        );
    }

    #[test]
    fn the_lock_sits_next_to_the_socket() {
        let socket = Path::new("/run/user/1/spfs-fuse/spfs-fuse.sock");
        assert_eq!(
            lock_path(socket),
            Path::new("/run/user/1/spfs-fuse/spfs-fuse.sock.lock")
        );
    }

    #[test]
    fn a_claimed_socket_is_private_exclusive_and_removed_on_drop()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir()?;
        let sub = dir.path().join("sub");
        let socket = sub.join("s.sock");
        let mut claimed = claim(&socket, Access::Private)?;
        assert_eq!(fs::metadata(&sub)?.mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&socket)?.mode() & 0o777, 0o600);
        assert!(!answers(&socket), "not listening yet");
        let _listener = claimed.listen()?;
        assert!(answers(&socket));
        match claim(&socket, Access::Private) {
            Err(ClaimError::AlreadyServing { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id()))
            }
            other => panic!("expected AlreadyServing, got {other:?}"),
        }
        drop(claimed);
        assert!(!socket.exists());
        Ok(())
    }
}
