//! The control socket: its default path, its private directory, the lock that allows one
//! service per socket, stale-socket cleanup, and binding it with mode 0600.
//!
//! A service holds an exclusive `flock` on `<socket>.lock` for its whole life. The kernel drops
//! the lock when the process dies, however it dies, so a socket file whose lock is free was left
//! by a crashed service and can be removed. The lock (rather than "does the socket answer?")
//! settles races between two services starting at once, e.g. two `spfs-fuse run` auto-starting.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
use nix::sys::stat::Mode;

/// How long a starting service waits for another one that holds the lock but does not answer
/// (it is starting or stopping) before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// The default socket, shared with `doctor` so both look at the same place.
pub(crate) fn default_socket_path() -> PathBuf {
    spfs_probe::default_socket_path()
}

/// The socket to use: the one given (`--socket` or `SPFS_FUSE_SOCKET`) made absolute, else
/// the default. Absolute, because an auto-started service runs in `/`.
pub(crate) fn resolve_socket_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    match given {
        Some(path) if !path.as_os_str().is_empty() => absolute(path),
        _ => Ok(default_socket_path()),
    }
}

/// `path` made absolute against the working directory (lexically: no symlinks resolved).
pub(crate) fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// Where an auto-started service logs: next to its socket, `spfs-fuse.sock` -> `spfs-fuse.log`.
pub(crate) fn log_path(socket: &Path) -> PathBuf {
    socket.with_extension("log")
}

/// The lock file of a socket.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Makes sure the socket's directory exists. Missing directories are created with mode 0700.
/// The default directory must belong to us and is made 0700 if it is not; a directory given
/// with `--socket` is left as it is (it may be a shared one like `/tmp`).
pub(crate) fn prepare_socket_dir(socket: &Path) -> anyhow::Result<()> {
    let dir = socket
        .parent()
        .with_context(|| format!("socket path {} has no directory", socket.display()))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the socket directory {}", dir.display()))?;
    // Only the service's own per-user directory is made private: an explicit socket may sit
    // in a shared directory such as /tmp, which must keep its mode.
    if dir != spfs_probe::private_socket_dir() {
        return Ok(());
    }
    let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let me = nix::unistd::getuid().as_raw();
    if meta.uid() != me {
        bail!(
            "refusing to use the socket directory {}: it belongs to uid {}, not to you (uid {me}); \
             remove it or pass --socket",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private (mode 0700)", dir.display()))?;
    }
    Ok(())
}

/// Whether something accepts connections on `socket`.
pub(crate) fn answers(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
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
pub(crate) enum ClaimError {
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
    /// Anything else, with its context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}

/// Claims `socket` for this service: takes the lock (waiting briefly for a service that is
/// starting or stopping), refuses if a live service answers, removes a stale socket file, and
/// binds a new socket with mode 0600.
///
/// Call this before any thread is started: it sets the process umask for the `bind`.
pub(crate) fn claim(socket: &Path) -> Result<ClaimedSocket, ClaimError> {
    prepare_socket_dir(socket)?;
    let lock_file = lock_path(socket);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_file)
        .with_context(|| format!("cannot open the lock file {}", lock_file.display()))?;
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
                    return Err(anyhow::anyhow!(
                        "another spfs-fuse service{} holds {} but does not answer on {} after {} s",
                        pid_suffix(pid),
                        lock_file.display(),
                        socket.display(),
                        LOCK_WAIT.as_secs()
                    )
                    .into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, errno)) => {
                return Err(anyhow::Error::new(errno)
                    .context(format!("cannot lock {}", lock_file.display()))
                    .into());
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
        .with_context(|| format!("cannot write to {}", lock_file.display()))?;
    let fd = bind_private(socket)?;
    Ok(ClaimedSocket {
        path: socket.to_owned(),
        fd: Some(fd),
        _lock: lock,
    })
}

/// The pid a service wrote into its lock file.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Removes a socket file nobody serves (we hold the lock, and nothing answered).
fn remove_stale(socket: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(socket) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", socket.display())),
        Ok(meta) if meta.file_type().is_socket() => {
            fs::remove_file(socket)
                .with_context(|| format!("cannot remove the stale socket {}", socket.display()))?;
            tracing::info!(socket = %socket.display(), "removed a stale socket left by a service that is gone");
            Ok(())
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; remove it or pass another --socket",
            socket.display()
        ),
    }
}

/// Binds a Unix socket at `path`, private from the start: the umask is narrowed to 0077 around
/// `bind`, so there is no moment when another user could connect; then the mode is set to
/// exactly 0600. The socket does not listen yet.
fn bind_private(path: &Path) -> anyhow::Result<OwnedFd> {
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .context("cannot create a Unix socket")?;
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .context("cannot set close-on-exec on the socket")?;
    let addr = UnixAddr::new(path).with_context(|| {
        format!(
            "cannot use {} as a socket path (too long? the limit is about 100 bytes)",
            path.display()
        )
    })?;
    // The umask is process-wide; this runs before the service starts any thread.
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
    let bound = nix::sys::socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr);
    nix::sys::stat::umask(old);
    bound.with_context(|| format!("cannot bind {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set mode 0600 on {}", path.display()))?;
    Ok(fd)
}

impl ClaimedSocket {
    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Starts listening: from now on clients connect.
    pub(crate) fn listen(&mut self) -> anyhow::Result<UnixListener> {
        let fd = self.fd.take().context("the socket is already listening")?;
        nix::sys::socket::listen(&fd, Backlog::MAXCONN)
            .with_context(|| format!("cannot listen on {}", self.path.display()))?;
        let listener = UnixListener::from(fd);
        listener
            .set_nonblocking(true)
            .context("cannot make the socket non-blocking")?;
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

    #[test]
    fn log_and_lock_sit_next_to_the_socket() {
        let socket = Path::new("/run/user/1/spfs-fuse/spfs-fuse.sock");
        assert_eq!(
            log_path(socket),
            Path::new("/run/user/1/spfs-fuse/spfs-fuse.log")
        );
        assert_eq!(
            lock_path(socket),
            Path::new("/run/user/1/spfs-fuse/spfs-fuse.sock.lock")
        );
    }

    #[test]
    fn a_claimed_socket_is_private_exclusive_and_removed_on_drop() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let sub = dir.path().join("sub");
        let socket = sub.join("s.sock");
        let mut claimed = claim(&socket).map_err(anyhow::Error::new)?;
        assert_eq!(fs::metadata(&sub)?.mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(&socket)?.mode() & 0o777, 0o600);
        assert!(!answers(&socket), "not listening yet");
        let _listener = claimed.listen()?;
        assert!(answers(&socket));
        match claim(&socket) {
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
