//! A FUSE session over the device transport: the macFUSE kernel extension on macOS, the
//! `/dev/fuse` device on Linux. `fuse-backend-rs` offers the same session API on both, so the
//! serving loop is shared; each worker thread has a channel of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::FuseSession;
use spfs_router::Vfs;

use crate::adapter::Adapter;
use crate::error::MountError;
use crate::mountpoint;

/// How to mount a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// The filesystem name the mount table shows.
    pub fsname: String,
    /// Worker threads, each with its own channel.
    pub threads: usize,
}

/// A mounted, serving FUSE session. Unmounts when dropped.
pub struct Session {
    mountpoint: PathBuf,
    session: Option<FuseSession>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("mountpoint", &self.mountpoint)
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Session {
    /// Prepares the mount point (clearing a stale mount), mounts read-only and starts serving
    /// `vfs` on `config.threads` threads.
    pub fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Session, MountError> {
        mountpoint::prepare(&config.mountpoint)?;
        let failed = |message: String| MountError::Session {
            path: config.mountpoint.clone(),
            message,
        };
        let mut session = FuseSession::new(&config.mountpoint, &config.fsname, "", true)
            .map_err(|e| failed(e.to_string()))?;
        session.mount().map_err(|e| failed(e.to_string()))?;
        let server = Arc::new(Server::new(Adapter::new(vfs)));
        let mut workers = Vec::new();
        for worker in 0..config.threads.max(1) {
            let mut channel = session.new_channel().map_err(|e| failed(e.to_string()))?;
            let server = server.clone();
            let handle = std::thread::Builder::new()
                .name(format!("spfs-fuse-{worker}"))
                .spawn(move || {
                    loop {
                        match channel.get_request() {
                            Ok(Some((reader, writer))) => {
                                if let Err(err) = server.handle_message(reader, writer.into(), None, None) {
                                    // An interrupted request's reply has nowhere to go; the
                                    // session itself is fine.
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
                })
                .map_err(|e| failed(format!("cannot start a worker thread: {e}")))?;
            workers.push(handle);
        }
        tracing::info!(mountpoint = %config.mountpoint.display(), threads = workers.len(), "mounted");
        Ok(Session {
            mountpoint: config.mountpoint.clone(),
            session: Some(session),
            workers,
        })
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
        let Some(mut session) = self.session.take() else {
            return Ok(());
        };
        let result = session.umount().map_err(|e| MountError::Unmount {
            path: self.mountpoint.clone(),
            message: e.to_string(),
        });
        // Workers blocked on a channel whose mount is still busy (lazy unmount) wake here.
        if let Err(err) = session.wake() {
            tracing::warn!(error = %err, "could not wake FUSE workers");
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
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
