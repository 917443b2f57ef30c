//! A FUSE session over the device transport: the macFUSE kernel extension on macOS, the
//! `/dev/fuse` device on Linux. `fuse-backend-rs` offers the same session API on both, so the
//! serving loop is shared; each worker thread has a channel of its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseChannel, FuseSession};
use spfs_router::Vfs;

use crate::adapter::Adapter;
use crate::error::MountError;
use crate::mountpoint;

/// How FUSE requests reach the session (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A kernel device: macFUSE's `/dev/macfuseN` on macOS, `/dev/fuse` on Linux.
    Device,
    /// FUSE-T: the kernel's NFS client talks to a user-space server (macOS only).
    Nfs,
}

impl Transport {
    /// The name `status` and the logs use.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Device => "device",
            Transport::Nfs => "nfs",
        }
    }
}

/// How to mount a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// The filesystem name the mount table shows.
    pub fsname: String,
    /// The volume name Finder shows (macOS only; ignored on Linux).
    pub volname: String,
    /// How requests arrive.
    pub transport: Transport,
    /// Worker threads, each with its own channel.
    pub threads: usize,
}

/// A mounted, serving FUSE session. Unmounts when dropped.
///
/// The transport's session object lives on a thread of its own for its whole life: macOS's
/// holds DiskArbitration pointers, which may not cross threads, while a `Session` must (the
/// service shares it between gRPC tasks). The other threads only talk to that owner.
pub struct Session {
    mountpoint: PathBuf,
    stop: Option<mpsc::Sender<()>>,
    owner: Option<JoinHandle<Result<(), MountError>>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("mountpoint", &self.mountpoint)
            .finish()
    }
}

impl Session {
    /// Prepares the mount point (clearing a stale mount), mounts read-only and starts serving
    /// `vfs` on `config.threads` threads.
    pub fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Session, MountError> {
        if config.transport != Transport::Device {
            return Err(MountError::Unsupported {
                path: config.mountpoint.clone(),
                transport: config.transport.name(),
            });
        }
        mountpoint::prepare(&config.mountpoint)?;
        let (mounted_tx, mounted_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let owner_config = config.clone();
        let owner = std::thread::Builder::new()
            .name("spfs-fuse-session".into())
            .spawn(move || own_session(vfs, &owner_config, &mounted_tx, &stop_rx))
            .map_err(|e| MountError::Session {
                path: config.mountpoint.clone(),
                message: format!("cannot start the session thread: {e}"),
            })?;
        match mounted_rx.recv() {
            Ok(Ok(())) => {
                tracing::info!(mountpoint = %config.mountpoint.display(), threads = config.threads, "mounted");
                Ok(Session {
                    mountpoint: config.mountpoint.clone(),
                    stop: Some(stop_tx),
                    owner: Some(owner),
                })
            }
            Ok(Err(err)) => {
                let _ = owner.join();
                Err(err)
            }
            Err(_) => Err(MountError::Session {
                path: config.mountpoint.clone(),
                message: "the session thread ended before mounting".into(),
            }),
        }
    }

    /// Where the session is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits for every worker to stop.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), MountError> {
        let (Some(stop), Some(owner)) = (self.stop.take(), self.owner.take()) else {
            return Ok(());
        };
        let _ = stop.send(());
        let result = owner.join().unwrap_or_else(|_| {
            Err(MountError::Unmount {
                path: self.mountpoint.clone(),
                message: "the session thread panicked".into(),
            })
        });
        tracing::info!(mountpoint = %self.mountpoint.display(), "unmounted");
        result
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            tracing::warn!(error = %err, "unmounting on drop failed");
        }
    }
}

/// The session thread: mounts, starts the workers, reports, then waits for the stop signal
/// (or the `Session` being dropped) and unmounts.
fn own_session(
    vfs: Arc<Vfs>,
    config: &SessionConfig,
    mounted: &mpsc::Sender<Result<(), MountError>>,
    stop: &mpsc::Receiver<()>,
) -> Result<(), MountError> {
    let failed = |message: String| MountError::Session {
        path: config.mountpoint.clone(),
        message,
    };
    let started: Result<(FuseSession, Vec<JoinHandle<()>>), MountError> = (|| {
        let mut session = FuseSession::new(&config.mountpoint, &config.fsname, "", true)
            .map_err(|e| failed(e.to_string()))?;
        session.mount().map_err(|e| failed(e.to_string()))?;
        let server = Arc::new(Server::new(Adapter::new(vfs)));
        let mut workers = Vec::new();
        for worker in 0..config.threads.max(1) {
            let channel = session.new_channel().map_err(|e| failed(e.to_string()))?;
            let server = server.clone();
            let handle = std::thread::Builder::new()
                .name(format!("spfs-fuse-{worker}"))
                .spawn(move || serve(worker, channel, &server))
                .map_err(|e| failed(format!("cannot start a worker thread: {e}")))?;
            workers.push(handle);
        }
        Ok((session, workers))
    })();
    let (mut session, workers) = match started {
        Ok(started) => started,
        Err(err) => {
            let _ = mounted.send(Err(err));
            return Ok(());
        }
    };
    let _ = mounted.send(Ok(()));
    // Either a stop message or the sender dropped: both mean unmount.
    let _ = stop.recv();
    let result = session.umount().map_err(|e| MountError::Unmount {
        path: config.mountpoint.clone(),
        message: e.to_string(),
    });
    // Workers blocked on a channel whose mount is still busy (lazy unmount) wake here.
    if let Err(err) = session.wake() {
        tracing::warn!(error = %err, "could not wake FUSE workers");
    }
    for worker in workers {
        let _ = worker.join();
    }
    result
}

/// One worker: answers requests from its channel until the session ends.
fn serve(worker: usize, mut channel: FuseChannel, server: &Server<Adapter>) {
    loop {
        match channel.get_request() {
            Ok(Some((reader, writer))) => {
                if let Err(err) = server.handle_message(reader, writer.into(), None, None) {
                    // An interrupted request's reply has nowhere to go; the session is fine.
                    tracing::debug!(worker, error = %err, "request failed");
                }
            }
            Ok(None) => break,
            Err(err) => {
                tracing::error!(worker, error = %err, "FUSE channel failed; worker stops");
                break;
            }
        }
    }
}
