//! The runtime host: what the control plane drives. It owns the route table and the FUSE
//! sessions, and turns control calls into registrations and mounts.
//!
//! The gRPC service (`service.rs`) talks to the host only through this file's API, so the
//! control plane and the filesystem side can change independently.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

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

/// The runtime host.
// TODO(lead): replace the in-memory stand-in with the router and the FUSE session.
#[derive(Debug)]
pub struct Host {
    config: HostConfig,
    runtimes: Mutex<BTreeMap<u32, RuntimeStatus>>,
}

impl Host {
    /// Mounts and starts serving.
    pub fn start(config: HostConfig) -> Result<Host, HostError> {
        Ok(Host {
            config,
            runtimes: Mutex::new(BTreeMap::new()),
        })
    }

    /// Registers a runtime for `root_pid` with `env_spec` (absolute paths only), owned by
    /// `owner_uid`, and returns where its view appears.
    pub fn mount(
        &self,
        root_pid: u32,
        env_spec: &str,
        owner_uid: u32,
    ) -> Result<RuntimeStatus, HostError> {
        let mut runtimes = self
            .runtimes
            .lock()
            .map_err(|_| HostError::Internal("poisoned".into()))?;
        if runtimes.contains_key(&root_pid) {
            return Err(HostError::AlreadyRegistered(root_pid));
        }
        let status = RuntimeStatus {
            root_pid,
            env_spec: env_spec.to_owned(),
            owner_uid,
            mount_point: self.config.mountpoint.clone(),
            alive: true,
        };
        runtimes.insert(root_pid, status.clone());
        Ok(status)
    }

    /// Removes the runtime of `root_pid`.
    pub fn unmount(&self, root_pid: u32) -> Result<(), HostError> {
        let mut runtimes = self
            .runtimes
            .lock()
            .map_err(|_| HostError::Internal("poisoned".into()))?;
        runtimes
            .remove(&root_pid)
            .map(|_| ())
            .ok_or(HostError::NoSuchRuntime(root_pid))
    }

    /// Reports the backend, mount points and runtimes.
    pub fn status(&self) -> HostStatus {
        let runtimes = self
            .runtimes
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        HostStatus {
            backend: "kext".into(),
            transport: "device".into(),
            layout: "shared".into(),
            mount_points: vec![self.config.mountpoint.clone()],
            runtimes,
        }
    }

    /// Unmounts everything; called once when the service stops.
    pub fn stop(self) {}
}
