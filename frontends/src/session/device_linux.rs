//! Linux's device transport: `/dev/fuse`, mounted through `fuse-backend-rs`'s session and
//! served by our own loop (`wire.rs`), as macFUSE's device is.
//!
//! The loop is ours because of what a request costs. `fuse-backend-rs`'s channels make the
//! device non-blocking and give each worker an epoll set of its own on it, so every request
//! wakes every idle worker, and the one that gets it pays an `epoll_wait` and a `read`. Here
//! each worker sleeps in a blocking `read`, where the kernel wakes exactly one reader per
//! request, and `fuse-backend-rs`'s writer sends the reply straight to the device: one system
//! call in, one out, one thread woken (README, "Performance", has the measurements).
//!
//! Unmounting detaches the mount; once the kernel drops it, every blocked read returns
//! `ENODEV` and the workers end. A mount that stays busy (a process still inside) keeps the
//! reads asleep, so the workers are then interrupted with a signal and end all the same;
//! their device closes with them, which aborts the connection for whoever is still inside.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::FuseSession;
use spfs_router::Vfs;

use super::wire::{Connection, Workers};
use super::{Mounted, SessionConfig};
use crate::adapter::Adapter;
use crate::error::MountError;
use crate::{mountpoint, platform};

/// How long unmounting waits for the workers.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A mounted `/dev/fuse` session.
struct DeviceSession {
    mountpoint: PathBuf,
    /// Mounted it and unmounts it; it keeps a descriptor of the device of its own.
    session: Mutex<FuseSession>,
    connection: Arc<Connection<File>>,
    workers: Workers,
}

/// Prepares the mount point (clearing a stale mount), mounts read-only and starts serving
/// `vfs` on `config.threads` threads.
pub(super) fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Box<dyn Mounted>, MountError> {
    mountpoint::prepare(&config.mountpoint)?;
    let failed = |message: String| MountError::Session {
        path: config.mountpoint.clone(),
        message,
    };
    let mut session = FuseSession::new(&config.mountpoint, &config.fsname, "", true)
        .map_err(|e| failed(e.to_string()))?;
    session.mount().map_err(|e| failed(e.to_string()))?;
    let device = match blocking_device(&session) {
        Ok(device) => device,
        Err(err) => {
            let _ = session.umount();
            return Err(failed(format!("cannot set up the FUSE device: {err}")));
        }
    };
    let connection = Arc::new(Connection::linux_device(device));
    let server = Arc::new(Server::new(Adapter::new(vfs)));
    // The largest request the INIT reply allows (1 MiB of data) plus its headers.
    let bufsize = session.bufsize();
    let workers = match Workers::start(connection.clone(), server, config.threads, bufsize) {
        Ok(workers) => workers,
        Err(err) => {
            connection.close();
            let _ = session.umount();
            return Err(failed(format!("cannot start a worker thread: {err}")));
        }
    };
    widen_readahead(&config.mountpoint);
    Ok(Box::new(DeviceSession {
        mountpoint: config.mountpoint.clone(),
        session: Mutex::new(session),
        connection,
        workers,
    }))
}

/// How far the kernel reads ahead of a sequential reader of our mount, in KiB.
///
/// FUSE mounts start at 128 KiB, which keeps one 128 KiB READ in flight at a time: a big file
/// then streams at the speed of one round trip per 128 KiB. At 8 MiB the kernel asks in 1 MiB
/// requests (`max_pages`), several at once, so both workers and the layer's disk stay busy.
/// Readahead stops at the end of a file and shrinks for random access, so small files and
/// random reads fetch nothing more than before.
const READAHEAD_KIB: u32 = 8192;

/// Sets our mount's readahead to [`READAHEAD_KIB`] through its backing device's
/// `read_ahead_kb` in sysfs. It must come after INIT, whose reply caps readahead at what the
/// kernel offered: a `statfs` of the mount waits for INIT (and, unlike a `stat`, leaves no
/// cached attributes behind), and the device number comes from the mount table. Only root
/// may write there; elsewhere the mount keeps the kernel's default, which is only slower.
fn widen_readahead(mountpoint: &Path) {
    let result = (|| -> std::io::Result<()> {
        mountpoint::ask_server(mountpoint)?;
        let canonical = match (mountpoint.parent(), mountpoint.file_name()) {
            (Some(parent), Some(name)) => parent.canonicalize()?.join(name),
            _ => mountpoint.to_path_buf(),
        };
        let (major, minor) = platform::mount_device(&canonical)?.ok_or_else(|| {
            std::io::Error::other(format!("{} is not in the mount table", canonical.display()))
        })?;
        let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
        std::fs::write(path, READAHEAD_KIB.to_string())
    })();
    match result {
        Ok(()) => tracing::debug!(readahead_kib = READAHEAD_KIB, "readahead widened"),
        Err(err) => tracing::debug!(error = %err, "readahead left at the kernel's default"),
    }
}

/// A descriptor of the session's device for the workers, in blocking mode. `fuse-backend-rs`
/// made the device non-blocking, a flag its own descriptor shares; it never reads it again.
fn blocking_device(session: &FuseSession) -> std::io::Result<File> {
    let device = session
        .get_fuse_file()
        .ok_or_else(|| std::io::Error::other("the session has no device"))?
        .try_clone()?;
    let fd = device.as_raw_fd();
    // SAFETY: fd is open for the duration (`device` owns it); F_GETFL/F_SETFL take no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(device)
}

impl Mounted for DeviceSession {
    fn unmount(self: Box<Self>) -> Result<(), MountError> {
        // Set first, so a worker woken by the unmount tells the end from a failure.
        self.connection.close();
        let result = self
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .umount()
            .map_err(|e| MountError::Unmount {
                path: self.mountpoint.clone(),
                message: e.to_string(),
            });
        if !self.workers.join_interrupting(STOP_TIMEOUT) {
            tracing::warn!(mountpoint = %self.mountpoint.display(), "FUSE workers still running after unmount");
        }
        result
    }
}
