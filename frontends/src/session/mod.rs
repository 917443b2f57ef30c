//! FUSE sessions: mounting, serving and unmounting, one file per transport, swapped at compile
//! time (DESIGN.md §1):
//!
//! | platform | [`Transport::Device`] | [`Transport::Nfs`] |
//! |---|---|---|
//! | Linux | `/dev/fuse` through `fuse-backend-rs`'s session (`device_linux.rs`), and FUSE over io_uring where the kernel offers it (`uring_linux.rs`) | refused |
//! | macOS | macFUSE: we run `mount_macfuse` (`macfuse.rs`) | FUSE-T: we run `go-nfsv4` (`fuse_t.rs`) |
//!
//! Every transport answers requests through one FUSE message module (`message.rs`: the
//! headers through `fuse-backend-rs`'s ABI types, and answering one request).
//!
//! The macOS sessions are ours, not `fuse-backend-rs`'s: its macFUSE session cannot pass mount
//! options, and its FUSE-T session replaces the macFUSE one at compile time and spins once the
//! server's socket closes. What they share, the helpers' protocol (`protocol.rs`) and the
//! serving loop over a framed connection (`framing.rs`), and both sessions themselves are
//! compiled on Linux too when testing, where they run against stand-in helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use spfs_router::Vfs;

use crate::error::MountError;
use crate::invalidate::Invalidator;
use crate::mountpoint;

mod message;
pub use message::MemoryServer;
pub(crate) use message::notification;
#[cfg(test)]
mod testing;

// The macOS sessions and what only they use; Linux compiles them for its tests, which run
// them against a stand-in `mount_macfuse` and `go-nfsv4`.
#[cfg(any(target_os = "macos", test))]
mod framing;
#[cfg(any(target_os = "macos", test))]
mod fuse_t;
#[cfg(any(target_os = "macos", test))]
mod macfuse;
#[cfg(any(target_os = "macos", test))]
mod protocol;

#[cfg(target_os = "macos")]
use macfuse as device;
#[cfg(target_os = "linux")]
#[path = "device_linux.rs"]
mod device;
#[cfg(target_os = "linux")]
#[path = "uring_linux.rs"]
mod uring;

#[cfg(target_os = "macos")]
use fuse_t as nfs;
#[cfg(target_os = "linux")]
#[path = "nfs_linux.rs"]
mod nfs;

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
    /// Worker threads answering requests.
    pub threads: usize,
    /// Serve through FUSE over io_uring where the kernel offers it (Linux 6.14+ with the
    /// `fuse` module's `enable_uring` on), beside the workers; ignored elsewhere.
    pub io_uring: bool,
    /// FUSE-T's NFS server `go-nfsv4` for [`Transport::Nfs`], as the probe found it
    /// (`spfs_probe::FuseTFacts::server`; the service hands it on). `None`: not installed, and
    /// an NFS mount fails before anything is created. Ignored by the device transport.
    pub nfs_server: Option<PathBuf>,
    /// Whether users other than the service's own reach the mount: the service's rule, see
    /// [`KernelPolicy::serving_other_users`] (macFUSE's `allow_other`).
    ///
    /// [`KernelPolicy::serving_other_users`]: crate::policy::KernelPolicy::serving_other_users
    pub other_users: bool,
}

/// Makes the mount point ready (see [`mountpoint::prepare`]) and returns its canonical path,
/// the one mount helpers and `unmount(2)` see (`/tmp` is `/private/tmp` on macOS).
fn prepare_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    mountpoint::prepare(path)?;
    path.canonicalize()
        .map_err(|source| MountError::Mountpoint {
            path: path.to_path_buf(),
            source,
        })
}

/// A transport's mounted, serving session.
trait Mounted: Send + Sync {
    /// Unmounts and stops the workers.
    fn unmount(self: Box<Self>) -> Result<(), MountError>;

    /// What tells this mount's kernel to forget what it cached.
    fn invalidator(&self) -> Invalidator;

    /// Requests answered through FUSE over io_uring; `None` where the session does not use it.
    fn io_uring_answers(&self) -> Option<u64> {
        None
    }
}

/// A mounted, serving FUSE session. Unmounts when dropped.
pub struct Session {
    mountpoint: PathBuf,
    mounted: Option<Box<dyn Mounted>>,
    invalidator: Invalidator,
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
    /// `vfs` on `config.threads` threads. Returns once the mount answers.
    pub fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Session, MountError> {
        let mounted = match config.transport {
            Transport::Device => device::mount(vfs, config)?,
            Transport::Nfs => nfs::mount(vfs, config)?,
        };
        tracing::info!(
            mountpoint = %config.mountpoint.display(),
            transport = config.transport.name(),
            threads = config.threads,
            "mounted"
        );
        Ok(Session {
            mountpoint: config.mountpoint.clone(),
            invalidator: mounted.invalidator(),
            mounted: Some(mounted),
        })
    }

    /// Where the session is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// What tells this mount's kernel to forget what it cached (after a reset of one of its
    /// views): clone it freely; it sends nothing once the session has ended.
    pub fn invalidator(&self) -> Invalidator {
        self.invalidator.clone()
    }

    /// How many requests FUSE over io_uring has answered, or `None` when the session reads
    /// its device instead (other platforms, kernels without it, or `io_uring: false`).
    pub fn io_uring_answers(&self) -> Option<u64> {
        self.mounted.as_ref()?.io_uring_answers()
    }

    /// Unmounts and waits for every worker to stop.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), MountError> {
        let Some(mounted) = self.mounted.take() else {
            return Ok(());
        };
        self.invalidator.close();
        let result = mounted.unmount();
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
