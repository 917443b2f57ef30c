//! Linux's device transport: `/dev/fuse` through `fuse-backend-rs`'s session, each worker
//! with a channel of its own.
//!
//! Those channels poll the device with one epoll set per worker, so every request wakes every
//! idle worker and the first to read it wins. Workers blocking in `read(2)`, where the kernel
//! wakes exactly one of them (the one idle longest), were tried and measured against this in
//! side-by-side runs: 13% faster on warm small-file reads, but 11-20% slower on cold ones,
//! where the woken worker's CPU has usually gone to sleep and the race finds a waking one
//! sooner. Cold reads are the benchmark's tighter target (README, "Performance"), so the
//! channels stay.
//!
//! Where the kernel offers FUSE over io_uring (`uring_linux.rs`), its per-CPU queues take
//! over from the channels once registered after INIT; the channels keep serving what still
//! comes through the device (FORGET, INTERRUPT).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseChannel, FuseSession};
use spfs_router::Vfs;

use super::message::write_message;
use super::{Mounted, SessionConfig, Transport, uring};
use crate::adapter::Adapter;
use crate::error::{MountError, MountFailure};
use crate::invalidate::{Invalidator, NotifyChannel};
use crate::policy::{KernelPolicy, Platform, RoutingKind};
use crate::{mountpoint, platform};

/// A mounted `/dev/fuse` session. The transport's session object lives on a thread of its
/// own for its whole life; the other threads only talk to that owner.
struct DeviceSession {
    mountpoint: PathBuf,
    stop: mpsc::Sender<()>,
    owner: JoinHandle<Result<(), MountError>>,
    /// Requests FUSE over io_uring answers, when the session serves through it.
    io_uring: Option<uring::Answers>,
    invalidator: Invalidator,
}

/// The connection's `/dev/fuse` descriptor (a duplicate of the session's), where the service
/// writes notifications. With FUSE over io_uring too: the kernel takes notifications only from
/// a write(2) to the device (`fs/fuse/dev.c`, `fuse_dev_do_write`: unique 0 goes to
/// `fuse_notify`), never from a queue's commit.
struct DeviceChannel(File);

impl NotifyChannel for DeviceChannel {
    fn notify(&self, message: &[u8]) -> std::io::Result<()> {
        write_message(&self.0, message)
    }
}

/// What the session thread reports once mounted: the io_uring queues' answer count when they
/// serve, and a duplicate of the device for notifications.
type Started = (Option<uring::Answers>, Option<File>);

/// Prepares the mount point (clearing a stale mount), mounts read-only and starts serving
/// `vfs` on `config.threads` threads.
pub(super) fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Box<dyn Mounted>, MountError> {
    // Mounted at its canonical path, the one the mount table shows (see `widen_readahead`).
    let owner_config = SessionConfig {
        mountpoint: super::prepare_mountpoint(&config.mountpoint)?,
        ..config.clone()
    };
    let (mounted_tx, mounted_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel();
    let owner = std::thread::Builder::new()
        .name("spfs-fuse-session".into())
        .spawn(move || own_session(vfs, &owner_config, &mounted_tx, &stop_rx))
        .map_err(|e| {
            MountError::session_io(
                &config.mountpoint,
                MountFailure::Other,
                "cannot start the session thread",
                e,
            )
        })?;
    match mounted_rx.recv() {
        Ok(Ok((io_uring, device))) => Ok(Box::new(DeviceSession {
            invalidator: match device {
                Some(device) => {
                    Invalidator::new(&config.mountpoint, Arc::new(DeviceChannel(device)), true)
                }
                None => Invalidator::none(&config.mountpoint),
            },
            mountpoint: config.mountpoint.clone(),
            stop: stop_tx,
            owner,
            io_uring,
        })),
        Ok(Err(err)) => {
            let _ = owner.join();
            Err(err)
        }
        Err(_) => Err(MountError::session(
            &config.mountpoint,
            MountFailure::Other,
            "the session thread ended before mounting",
        )),
    }
}

impl Mounted for DeviceSession {
    fn unmount(self: Box<Self>) -> Result<(), MountError> {
        let _ = self.stop.send(());
        self.owner.join().unwrap_or_else(|_| {
            Err(MountError::unmount(
                &self.mountpoint,
                "the session thread panicked",
                None,
            ))
        })
    }

    fn io_uring_answers(&self) -> Option<u64> {
        self.io_uring.as_ref().map(uring::Answers::total)
    }

    fn invalidator(&self) -> Invalidator {
        self.invalidator.clone()
    }
}

/// The session thread: mounts, starts the workers (and the io_uring queues, where the kernel
/// offers them), reports, then waits for the stop signal (or the `Session` being dropped)
/// and unmounts.
fn own_session(
    vfs: Arc<Vfs>,
    config: &SessionConfig,
    mounted: &mpsc::Sender<Result<Started, MountError>>,
    stop: &mpsc::Receiver<()>,
) -> Result<(), MountError> {
    let failed =
        |message: String| MountError::session(&config.mountpoint, MountFailure::Other, message);
    let device_failed =
        |message: String| device_failure(&config.mountpoint, Path::new("/dev/fuse"), message);
    // Set before unmounting, so workers tell the end of the session from a failure.
    let unmounting = Arc::new(AtomicBool::new(false));
    type Running = (FuseSession, Arc<Server<Adapter>>, Vec<JoinHandle<()>>);
    let started: Result<Running, MountError> = (|| {
        let policy = KernelPolicy::new(
            Platform::Linux,
            Transport::Device,
            RoutingKind::of(vfs.routing()),
        );
        let mut session =
            FuseSession::new(&config.mountpoint, &config.fsname, "", policy.read_only())
                .map_err(|e| failed(e.to_string()))?;
        session.mount().map_err(|e| device_failed(e.to_string()))?;
        let server = Arc::new(Server::new(Adapter::new(vfs, policy)));
        let mut workers = Vec::new();
        for worker in 0..config.threads.max(1) {
            let channel = session.new_channel().map_err(|e| failed(e.to_string()))?;
            let server = server.clone();
            let unmounting = unmounting.clone();
            let handle = std::thread::Builder::new()
                .name(format!("spfs-fuse-{worker}"))
                .spawn(move || serve(worker, channel, &server, &unmounting))
                .map_err(|e| {
                    MountError::session_io(
                        &config.mountpoint,
                        MountFailure::Other,
                        "cannot start a worker thread",
                        e,
                    )
                })?;
            workers.push(handle);
        }
        Ok((session, server, workers))
    })();
    let (mut session, server, workers) = match started {
        Ok(started) => started,
        Err(err) => {
            let _ = mounted.send(Err(err));
            return Ok(());
        }
    };
    // Both need INIT done, which a `statfs` waits for (and, unlike a `stat`, it leaves no
    // cached attributes behind).
    let queues = match mountpoint::ask_server(&config.mountpoint) {
        Ok(()) => {
            widen_readahead(&config.mountpoint);
            config
                .io_uring
                .then(|| start_queues(&session, server, &config.mountpoint))
                .flatten()
        }
        Err(err) => {
            tracing::warn!(error = %err, "the new mount did not answer statfs");
            None
        }
    };
    let device = session.get_fuse_file().and_then(|device| {
        device
            .try_clone()
            .map_err(|e| tracing::warn!(error = %e, "no descriptor for notifications: resets will wait for the kernel's timeouts"))
            .ok()
    });
    let _ = mounted.send(Ok((queues.as_ref().map(uring::Queues::answers), device)));
    // The mount's device number, which tells our mount from anything mounted there later.
    let device = platform::mount_device(&config.mountpoint).ok().flatten();
    // Either a stop message or the sender dropped: both mean unmount.
    let _ = stop.recv();
    unmounting.store(true, Ordering::Release);
    let result = session
        .umount()
        .map_err(|e| e.to_string())
        .and_then(|()| detach_if_dead(&config.mountpoint, device).map_err(|e| e.to_string()))
        .map_err(|message| MountError::unmount(&config.mountpoint, message, None));
    // Workers blocked on a channel whose mount is still busy (lazy unmount) wake here.
    if let Err(err) = session.wake() {
        tracing::warn!(error = %err, "could not wake FUSE workers");
    }
    if let Some(queues) = queues {
        queues.stop();
    }
    for worker in workers {
        let _ = worker.join();
    }
    result
}

/// Detaches the mount at `mountpoint` if it is still ours (`device`) after
/// `FuseSession::umount`, which unmounts nothing when the connection is already dead (aborted
/// through `fusectl`, as a failing io_uring queue does): it takes the dead device for an
/// unmounted file system, and the mount would stay behind answering `ENOTCONN`.
fn detach_if_dead(mountpoint: &Path, device: Option<(u32, u32)>) -> std::io::Result<()> {
    let still = platform::mount_device(mountpoint)?;
    if device.is_none() || still != device {
        return Ok(());
    }
    tracing::info!(mountpoint = %mountpoint.display(), "the FUSE connection was dead; detaching its mount");
    platform::force_unmount(mountpoint)
}

/// One worker: answers requests from its channel until the session ends.
fn serve(
    worker: usize,
    mut channel: FuseChannel,
    server: &Server<Adapter>,
    unmounting: &AtomicBool,
) {
    loop {
        match channel.get_request() {
            Ok(Some((reader, writer))) => {
                if let Err(err) = server.handle_message(reader, writer.into(), None, None) {
                    // An interrupted request's reply has nowhere to go; the session is fine.
                    tracing::debug!(worker, error = %err, "request failed");
                }
            }
            Ok(None) => break,
            // Waking the workers at unmount ends their channels with an error: expected.
            Err(err) if unmounting.load(Ordering::Acquire) => {
                tracing::debug!(worker, error = %err, "FUSE channel closed at unmount");
                break;
            }
            Err(err) => {
                tracing::error!(worker, error = %err, "FUSE channel failed; worker stops");
                break;
            }
        }
    }
}

/// How far the kernel reads ahead of a sequential reader of our mount, in KiB.
///
/// FUSE mounts start at 128 KiB, which keeps one 128 KiB READ in flight at a time: a big file
/// then streams at the speed of one round trip per 128 KiB. At 8 MiB the kernel asks in 1 MiB
/// requests (`max_pages`), several at once, so both workers and the layer's disk stay busy.
/// Readahead stops at the end of a file and shrinks for random access, so small files and
/// random reads fetch nothing more than before.
const READAHEAD_KIB: u32 = 8192;

/// Starts FUSE over io_uring on the session's connection, after INIT, where the kernel
/// offers it; `None` (after logging why) where it does not, and the workers serve alone.
fn start_queues(
    session: &FuseSession,
    server: Arc<Server<Adapter>>,
    mountpoint: &Path,
) -> Option<uring::Queues> {
    if let Err(why) = uring::kernel_allows() {
        tracing::info!("serving through /dev/fuse reads: {why}");
        return None;
    }
    let Some(device) = session.get_fuse_file() else {
        tracing::warn!("the FUSE session has no device; serving through /dev/fuse reads");
        return None;
    };
    // The largest request the INIT reply allows (1 MiB of data) plus its headers.
    match uring::Queues::start(device, server, session.bufsize(), mountpoint) {
        Ok(queues) => {
            tracing::info!(queues = queues.len(), "serving through FUSE over io_uring");
            Some(queues)
        }
        Err(err) => {
            tracing::warn!(error = %err, "FUSE over io_uring failed to start; serving through /dev/fuse reads");
            None
        }
    }
}

/// Sets our mount's readahead to [`READAHEAD_KIB`] through its backing device's
/// `read_ahead_kb` in sysfs. It must come after INIT, whose reply caps readahead at what the
/// kernel offered; the device number comes from the mount table, which lists `mountpoint` as
/// given: canonical. Only root may write there; elsewhere the mount keeps the kernel's
/// default, which is only slower.
fn widen_readahead(mountpoint: &Path) {
    let result = (|| -> std::io::Result<()> {
        let (major, minor) = platform::mount_device(mountpoint)?.ok_or_else(|| {
            std::io::Error::other(format!(
                "{} is not in the mount table",
                mountpoint.display()
            ))
        })?;
        let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
        std::fs::write(path, READAHEAD_KIB.to_string())
    })();
    match result {
        Ok(()) => tracing::debug!(readahead_kib = READAHEAD_KIB, "readahead widened"),
        Err(err) => tracing::debug!(error = %err, "readahead left at the kernel's default"),
    }
}

/// A mount through the FUSE device at `device` that failed with `message` (the FUSE library's
/// own words, which carry no error code). The kind comes from looking at the host now: whether
/// the device exists and opens, and, for a user, whether `fusermount3` is there to mount with.
fn device_failure(path: &Path, device: &Path, message: String) -> MountError {
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device);
    let (kind, source) = match opened {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            (MountFailure::DeviceMissing, Some(err))
        }
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            (MountFailure::DeviceDenied, Some(err))
        }
        Err(err) => (MountFailure::Other, Some(err)),
        // SAFETY: geteuid(2) takes no arguments and cannot fail.
        Ok(_) if unsafe { libc::geteuid() } != 0 && !on_path("fusermount3") => {
            (MountFailure::FusermountMissing, None)
        }
        Ok(_) => (MountFailure::Other, None),
    };
    MountError::Session {
        path: path.to_path_buf(),
        kind,
        message,
        source,
    }
}

/// Whether an executable `name` is in a directory of `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_that_is_not_there_is_a_missing_device() {
        let dir = tempfile::tempdir().unwrap();
        let err = device_failure(
            Path::new("/spfs"),
            &dir.path().join("fuse"),
            "open /dev/fuse failed".into(),
        );
        assert_eq!(err.kind(), MountFailure::DeviceMissing);
        assert!(std::error::Error::source(&err).is_some());
    }
}
