//! macOS's NFS transport: FUSE-T. Its server, `go-nfsv4`, is an NFS server the kernel's NFS
//! client mounts; it forwards each NFS call as FUSE requests over a stream socket. We start it
//! the way libfuse-t does (`lib/mount_darwin.c` in github.com/macos-fuse-t/libfuse):
//!
//! 1. two stream socket pairs: the FUSE connection (`_FUSE_COMMFD`, 4 MiB buffers) and the
//!    monitor (`_FUSE_MONFD`), plus `_FUSE_COMMVERS=2`, `_FUSE_CALL_BY_LIB=1` and
//!    `_FUSE_DAEMON_PATH`; the server runs in a session of its own (`setsid`);
//! 2. arguments `--volname NAME -r --namedattr=false --rwsize=262144 MOUNTPOINT` (the mount
//!    options `volname=`, `ro`, `nonamedattr`, `rwsize=`);
//! 3. the workers serve the FUSE connection, then `mount` goes over the monitor and a native
//!    `i32` status comes back (0: mounted); we then wait until the mount point answers `stat`;
//! 4. to unmount: `unmount` over the monitor, then the server is terminated and reaped.
//!
//! Requests are framed by their header's length ([`Framing::Stream`]). When the server exits
//! or the volume goes away, the socket reaches EOF and every worker returns.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fuse_backend_rs::api::server::Server;
use spfs_router::Vfs;

use super::protocol::{self, FUSE_T_RWSIZE, FUSE_T_SOCKET_BUFFER, GO_NFSV4};
use super::wire::{Connection, Framing, Workers};
use super::{Mounted, SessionConfig};
use crate::adapter::Adapter;
use crate::error::MountError;
use crate::platform;

/// How long mounting may take.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the server gets to unmount and exit by itself, then after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// How long unmounting waits for the workers.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Request and reply buffers: one read or write of `rwsize` plus a page of headers.
const BUFSIZE: usize = FUSE_T_RWSIZE + 4096;

/// A mounted FUSE-T volume.
struct FuseT {
    mountpoint: PathBuf,
    server: Mutex<Child>,
    monitor: UnixStream,
    connection: Arc<Connection<UnixStream>>,
    workers: Workers,
}

/// Where some FUSE-T packages keep the server (`go-nfsv4-<version>`); the probe accepts it.
const SUPPORT_BIN: &str = "/Library/Application Support/fuse-t/bin";

/// The server to run: `FUSE_NFSSRV_PATH` if set (libfuse-t honours it too), else FUSE-T's
/// `/usr/local/bin/go-nfsv4`, else the first `go-nfsv4*` in its support directory.
fn server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("FUSE_NFSSRV_PATH") {
        return PathBuf::from(path);
    }
    let standard = PathBuf::from(GO_NFSV4);
    if standard.exists() {
        return standard;
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(SUPPORT_BIN)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .file_name()
                    .is_some_and(|name| name.as_bytes().starts_with(b"go-nfsv4"))
        })
        .collect();
    found.sort();
    found.into_iter().next().unwrap_or(standard)
}

/// Mounts `vfs` read-only at `config.mountpoint` as a FUSE-T volume named `config.volname`.
pub(super) fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Box<dyn Mounted>, MountError> {
    let path = super::prepare_mountpoint(&config.mountpoint)?;
    let failed = |message: String| MountError::Session {
        path: config.mountpoint.clone(),
        message,
    };
    let program = server_path();
    if !program.exists() {
        return Err(failed(format!(
            "FUSE-T is not installed ({} is missing)",
            program.display()
        )));
    }
    let pair =
        || UnixStream::pair().map_err(|e| failed(format!("cannot create a socket pair: {e}")));
    let (ours, theirs) = pair()?;
    let (monitor, their_monitor) = pair()?;
    for socket in [&ours, &theirs] {
        protocol::set_socket_buffers(socket, FUSE_T_SOCKET_BUFFER);
    }
    monitor
        .set_read_timeout(Some(MOUNT_TIMEOUT))
        .map_err(|e| failed(format!("cannot set a socket timeout: {e}")))?;
    let daemon = std::env::current_exe().ok();
    // Its stderr goes to the service's log; stdout is of no use.
    let child = protocol::spawn_helper(
        &program,
        &protocol::fuse_t_args(&config.volname, &path),
        &protocol::helper_env(
            theirs.as_raw_fd(),
            Some(their_monitor.as_raw_fd()),
            daemon.as_deref(),
        ),
        &[theirs.as_raw_fd(), their_monitor.as_raw_fd()],
        true,
        Stdio::null(),
        Stdio::inherit(),
    )
    .map_err(|e| failed(format!("cannot run {}: {e}", program.display())))?;
    // Ours must go, so the server's exit shows as EOF on both sockets.
    drop((theirs, their_monitor));

    let connection = Arc::new(Connection::new(ours, Framing::Stream));
    let session = |workers| FuseT {
        mountpoint: path.clone(),
        server: Mutex::new(child),
        monitor,
        connection: connection.clone(),
        workers,
    };
    let server = Arc::new(Server::new(Adapter::new(vfs).without_negative_entries()));
    let session = match Workers::start(connection.clone(), server, config.threads, BUFSIZE) {
        Ok(workers) => session(workers),
        Err(err) => {
            let _ = session(Workers::none()).stop();
            return Err(failed(format!("cannot start a worker thread: {err}")));
        }
    };

    // The server asks the file system (INIT, the root's attributes) while it mounts.
    let mounted = match protocol::request_fuse_t_mount(&session.monitor) {
        Ok(Some(0)) => Ok(()),
        Ok(Some(status)) => Err(format!("go-nfsv4 could not mount (status {status})")),
        Ok(None) => Err("go-nfsv4 exited while mounting".to_string()),
        Err(err) => Err(format!("no mount status from go-nfsv4: {err}")),
    };
    let mounted = mounted.and_then(|()| {
        protocol::wait_until_mounted(&session.mountpoint, MOUNT_TIMEOUT, || {
            session.server_exited()
        })
    });
    if let Err(message) = mounted {
        let _ = session.stop();
        return Err(failed(message));
    }
    Ok(Box::new(session))
}

impl FuseT {
    /// An error once the server has exited.
    fn server_exited(&self) -> Result<(), String> {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        match server.try_wait() {
            Ok(Some(status)) => Err(format!("go-nfsv4 exited ({status})")),
            _ => Ok(()),
        }
    }

    /// Unmounts, ends the server and the workers.
    fn stop(self) -> Result<(), MountError> {
        let failed = |message: String| MountError::Unmount {
            path: self.mountpoint.clone(),
            message,
        };
        // Refused if the server is gone already: nothing to tell it then.
        let _ = protocol::request_fuse_t_unmount(&self.monitor);
        drop(self.monitor);
        let mut server = self
            .server
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let ended = match protocol::wait_for_exit(&mut server, EXIT_GRACE) {
            Ok(Some(status)) => Ok(status),
            _ => protocol::terminate(&mut server, EXIT_GRACE),
        };
        // Workers still reading (a server that never closed its end) see EOF now.
        let _ = self.connection.io().shutdown(std::net::Shutdown::Both);
        if !self.workers.join(STOP_TIMEOUT) {
            tracing::warn!(mountpoint = %self.mountpoint.display(), "FUSE workers still running after unmount");
        }
        // The server unmounts on `unmount`; had it died first (or the volume been busy), the
        // volume is left without a server.
        if in_mount_table(&self.mountpoint) {
            platform::force_unmount(&self.mountpoint).map_err(|e| failed(e.to_string()))?;
        }
        match ended {
            Ok(status) => {
                tracing::debug!(%status, "go-nfsv4 exited");
                Ok(())
            }
            Err(err) => Err(failed(format!("could not end go-nfsv4: {err}"))),
        }
    }
}

/// Whether `path` is a mount point, read from the kernel's mount table without asking the
/// volume: a `stat` on an NFS volume whose server is gone can block for minutes.
fn in_mount_table(path: &Path) -> bool {
    // SAFETY: a null buffer only asks for the number of mounts.
    let count = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
    if count <= 0 {
        return false;
    }
    // Room for mounts that appear between the two calls.
    let mut mounts: Vec<libc::statfs> = Vec::with_capacity(count as usize + 16);
    let bytes = (mounts.capacity() * std::mem::size_of::<libc::statfs>()) as libc::c_int;
    // SAFETY: `mounts` has room for `capacity` entries, which `bytes` tells getfsstat; it
    // fills at most that many and returns how many.
    let filled = unsafe { libc::getfsstat(mounts.as_mut_ptr(), bytes, libc::MNT_NOWAIT) };
    if filled <= 0 {
        return false;
    }
    // SAFETY: getfsstat initialised the first `filled` entries.
    unsafe { mounts.set_len(filled as usize) };
    mounts.iter().any(|fs| {
        // SAFETY: f_mntonname is a NUL-terminated path the kernel filled in.
        let on = unsafe { std::ffi::CStr::from_ptr(fs.f_mntonname.as_ptr()) };
        on.to_bytes() == path.as_os_str().as_bytes()
    })
}

impl Mounted for FuseT {
    fn unmount(self: Box<Self>) -> Result<(), MountError> {
        (*self).stop()
    }
}
