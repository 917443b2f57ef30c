//! The runtime host: what the control plane drives. It owns the route table and the FUSE
//! sessions, and turns control calls into registrations and mounts.
//!
//! The gRPC service (`service.rs`) talks to the host only through this file's API, so the
//! control plane and the filesystem side can change independently.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use spfs_frontends::{Session, SessionConfig, Transport};
use spfs_router::process::SystemProcessTable;
use spfs_router::{Attr, Owner, RouteError, Router, Routing, Runtime, Timestamp, Vfs};

/// Why a control call on the host failed. The gRPC service maps each variant to a status code.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The env spec was rejected; the message names the offending part.
    #[error("{0}")]
    InvalidSpec(String),
    /// The root process cannot be registered (pid 0, dead, ...); the message says why.
    #[error("{0}")]
    InvalidRoot(String),
    /// A runtime is already registered for this root process.
    #[error("a runtime is already registered for root process {0}")]
    AlreadyRegistered(u32),
    /// No runtime is registered for this root process.
    #[error("no runtime is registered for root process {0}")]
    NoSuchRuntime(u32),
    /// The caller may not act on this root process; the message names both uids.
    #[error("{0}")]
    PermissionDenied(String),
    /// Anything else: mounting failed, the host is shutting down, ...
    #[error("{0}")]
    Internal(String),
}

/// How the host was asked to serve.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The shared mount point (kext backend, shared layout).
    pub mountpoint: PathBuf,
    /// Worker threads serving FUSE requests.
    pub threads: usize,
}

/// One registered runtime as the control plane reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// The root process of the runtime.
    pub root_pid: u32,
    /// The env spec it was registered with.
    pub env_spec: String,
    /// The uid that registered it.
    pub owner_uid: u32,
    /// Where the runtime's view appears.
    pub mount_point: PathBuf,
    /// Whether the root process is still running.
    pub alive: bool,
}

/// What `Status` reports about the host.
#[derive(Debug, Clone)]
pub struct HostStatus {
    /// `kext` or `fuse-t`.
    pub backend: String,
    /// `device` or `nfs`.
    pub transport: String,
    /// `shared` or `per-runtime`.
    pub layout: String,
    /// Every mount point the host serves.
    pub mount_points: Vec<PathBuf>,
    /// Every registered runtime, by root pid.
    pub runtimes: Vec<RuntimeStatus>,
}

/// The runtime host: the route table of the shared layout and the one FUSE session that
/// serves it.
pub struct Host {
    config: HostConfig,
    router: Arc<Router>,
    session: Session,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .field("session", &self.session)
            .finish()
    }
}

impl From<RouteError> for HostError {
    fn from(err: RouteError) -> HostError {
        match err {
            RouteError::Spec(_) => HostError::InvalidSpec(err.to_string()),
            RouteError::PidZero | RouteError::NoSuchProcess(_) => {
                HostError::InvalidRoot(err.to_string())
            }
            RouteError::AlreadyRegistered(pid) => HostError::AlreadyRegistered(pid),
            RouteError::NotRegistered(pid) => HostError::NoSuchRuntime(pid),
            RouteError::Access(_) => HostError::PermissionDenied(err.to_string()),
        }
    }
}

/// The root's attributes, identical in every view (DESIGN.md §4 rule 3): owned by the service
/// user, read-only, stamped with the service's start.
fn root_attr() -> Attr {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = Timestamp {
        secs: now.as_secs() as i64,
        nanos: now.subsec_nanos(),
    };
    // SAFETY: geteuid and getegid cannot fail and have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Attr::root(uid, gid, stamp)
}

impl Host {
    /// Mounts and starts serving.
    pub fn start(config: HostConfig) -> Result<Host, HostError> {
        let router = Arc::new(Router::new(
            Arc::new(SystemProcessTable::new()),
            root_attr(),
        ));
        let vfs = Arc::new(Vfs::new(Routing::Shared(router.clone())));
        let session_config = SessionConfig {
            mountpoint: config.mountpoint.clone(),
            fsname: "spfs".into(),
            volname: "spfs".into(),
            transport: Transport::Device,
            threads: config.threads,
        };
        let session =
            Session::mount(vfs, &session_config).map_err(|e| HostError::Internal(e.to_string()))?;
        Ok(Host {
            config,
            router,
            session,
        })
    }

    /// Registers a runtime for `root_pid` with `env_spec` (absolute paths and spfs references
    /// resolved against `repos`, in order), owned by `owner`, and returns where its view
    /// appears.
    pub fn mount(
        &self,
        root_pid: u32,
        env_spec: &str,
        owner: &Owner,
        repos: &[PathBuf],
    ) -> Result<RuntimeStatus, HostError> {
        let runtime = self.router.register(root_pid, env_spec, owner, repos)?;
        Ok(self.runtime_status(&runtime))
    }

    /// Removes the runtime of `root_pid`.
    pub fn unmount(&self, root_pid: u32) -> Result<(), HostError> {
        self.router.unregister(root_pid)?;
        Ok(())
    }

    /// Reports the backend, mount points and runtimes.
    pub fn status(&self) -> HostStatus {
        HostStatus {
            backend: "kext".into(),
            transport: "device".into(),
            layout: "shared".into(),
            mount_points: vec![self.session.mountpoint().to_path_buf()],
            runtimes: self
                .router
                .runtimes()
                .iter()
                .map(|r| self.runtime_status(r))
                .collect(),
        }
    }

    /// Unmounts everything; called once when the service stops.
    pub fn stop(self) {
        if let Err(err) = self.session.unmount() {
            tracing::warn!(error = %err, "unmounting at shutdown failed");
        }
    }

    fn runtime_status(&self, runtime: &Runtime) -> RuntimeStatus {
        RuntimeStatus {
            root_pid: runtime.root_pid,
            env_spec: runtime.spec.to_string(),
            owner_uid: runtime.owner_uid,
            mount_point: self.session.mountpoint().to_path_buf(),
            alive: self.router.is_alive(runtime),
        }
    }
}
