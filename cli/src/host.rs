//! The runtime host: what the control plane drives. It owns the route table and the FUSE
//! sessions, and turns control calls into registrations and mounts.
//!
//! The gRPC service (`service.rs`) talks to the host only through this file's API, so the
//! control plane and the filesystem side can change independently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use spfs_frontends::sweep::{self, volume_name};
use spfs_frontends::{MountError, Session, SessionConfig, Transport};
use spfs_probe::Backend;
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

/// Where runtimes appear (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// One mount for every runtime; the root shows each caller its own runtime's view.
    Shared,
    /// One volume per runtime, `<volumes dir>/spfs-<root pid>`, showing that view to anyone.
    PerRuntime,
}

impl Layout {
    /// The name `status`, the logs and `--layout` use.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Shared => "shared",
            Layout::PerRuntime => "per-runtime",
        }
    }
}

/// How the host was asked to serve.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The concrete backend (`kext` or `fuse-t`), for status and failure hints.
    pub backend: Backend,
    /// Where runtimes appear.
    pub layout: Layout,
    /// How FUSE requests arrive.
    pub transport: Transport,
    /// The shared mount point (shared layout).
    pub mountpoint: PathBuf,
    /// Where the per-runtime volumes go (per-runtime layout).
    pub volumes_dir: PathBuf,
    /// Worker threads serving FUSE requests (per session).
    pub threads: usize,
    /// Serve through FUSE over io_uring where the kernel offers it (Linux only).
    pub io_uring: bool,
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

/// The runtime host: the route table, and the FUSE sessions serving it: one shared mount, or
/// one volume per runtime.
///
/// In the per-runtime layout the route table still holds every runtime (for status, ids and
/// the registration rules); each volume serves its runtime's view with a fixed route.
pub struct Host {
    config: HostConfig,
    router: Arc<Router>,
    /// The shared layout's one session; `None` in the per-runtime layout (and once stopped).
    shared: Option<Session>,
    /// The per-runtime volumes by root pid. Locked only briefly: mounting happens outside.
    volumes: Mutex<BTreeMap<u32, Session>>,
    /// Serialises registrations and removals in the per-runtime layout, so a volume is never
    /// mounted for a runtime that a concurrent call has just removed.
    changes: Mutex<()>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("config", &self.config)
            .field("shared", &self.shared)
            .field("volumes", &lock(&self.volumes).keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Locks `mutex`, also after a panic elsewhere: the maps it guards stay consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A failed mount as the control plane reports it: the error, and the hint that fixes it when
/// the failure is a known one (the same text `doctor` gives).
fn mount_failure(backend: Backend, err: &MountError) -> String {
    match spfs_probe::hint_for_mount_error(backend, &err.to_string()) {
        Some(hint) => format!("{err}\nhint: {hint}"),
        None => err.to_string(),
    }
}

impl From<RouteError> for HostError {
    fn from(err: RouteError) -> HostError {
        match err {
            RouteError::Spec(_) => HostError::InvalidSpec(err.to_string()),
            RouteError::PidZero | RouteError::PidOne | RouteError::NoSuchProcess(_) => {
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
pub(crate) fn root_attr() -> Attr {
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
    /// Starts serving. The shared layout mounts its one mount point. The per-runtime layout
    /// mounts nothing to serve yet, so it proves the transport works with a scratch volume of
    /// the empty view (mounted and unmounted at once; named after the service's pid, so a
    /// later sweep clears it should the service die meanwhile), then sweeps stale volumes.
    pub fn start(config: HostConfig) -> Result<Host, HostError> {
        let router = Arc::new(Router::new(
            Arc::new(SystemProcessTable::new()),
            root_attr(),
        ));
        let shared = match config.layout {
            Layout::Shared => {
                let vfs = Arc::new(Vfs::new(Routing::Shared(router.clone())));
                Some(mount_session(&config, vfs, &config.mountpoint, "spfs")?)
            }
            Layout::PerRuntime => {
                let name = volume_name(std::process::id());
                let path = config.volumes_dir.join(&name);
                let vfs = Arc::new(Vfs::new(Routing::Fixed(router.empty_view().clone())));
                let check = mount_session(&config, vfs, &path, &name)?;
                unmount_volume(check);
                sweep_volumes(&config.volumes_dir);
                None
            }
        };
        Ok(Host {
            config,
            router,
            shared,
            volumes: Mutex::new(BTreeMap::new()),
            changes: Mutex::new(()),
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
        let _changes = self.serialise();
        let runtime = self.router.register(root_pid, env_spec, owner, repos)?;
        self.mount_volume(&runtime)?;
        Ok(self.runtime_status(&runtime))
    }

    /// Removes the runtime of `root_pid` (and, per runtime, unmounts and removes its volume).
    pub fn unmount(&self, root_pid: u32) -> Result<(), HostError> {
        let _changes = self.serialise();
        self.router.unregister(root_pid)?;
        let volume = lock(&self.volumes).remove(&root_pid);
        if let Some(volume) = volume {
            unmount_volume(volume);
        }
        Ok(())
    }

    /// Reports the backend, mount points and runtimes.
    pub fn status(&self) -> HostStatus {
        let mount_points = match &self.shared {
            Some(session) => vec![session.mountpoint().to_path_buf()],
            None => lock(&self.volumes)
                .values()
                .map(|volume| volume.mountpoint().to_path_buf())
                .collect(),
        };
        HostStatus {
            backend: self.config.backend.as_str().into(),
            transport: self.config.transport.name().into(),
            layout: self.config.layout.name().into(),
            mount_points,
            runtimes: self
                .router
                .runtimes()
                .iter()
                .map(|r| self.runtime_status(r))
                .collect(),
        }
    }

    /// Removes every runtime whose root process has exited (or whose pid now belongs to
    /// another process), and returns their root pids. Called when a watched root exits, and
    /// periodically as a safety net.
    pub fn remove_dead(&self) -> Vec<u32> {
        let mut removed = Vec::new();
        for runtime in self.router.runtimes() {
            if self.router.is_alive(&runtime) {
                continue;
            }
            match self.unmount(runtime.root_pid) {
                Ok(()) => removed.push(runtime.root_pid),
                // Removed meanwhile by its owner: nothing left to do.
                Err(HostError::NoSuchRuntime(_)) => {}
                Err(err) => {
                    tracing::warn!(root_pid = runtime.root_pid, error = %err, "could not remove the runtime of an exited root")
                }
            }
        }
        removed
    }

    /// Unmounts everything; called once when the service stops.
    /// Dropping the host does the same, as a backstop.
    pub fn stop(mut self) {
        self.unmount_all();
    }

    /// Per runtime, registrations and removals take turns (a volume must never outlive the
    /// removal of its runtime); the shared layout needs no such order, the router has its own.
    fn serialise(&self) -> Option<MutexGuard<'_, ()>> {
        (self.config.layout == Layout::PerRuntime).then(|| lock(&self.changes))
    }

    fn unmount_all(&mut self) {
        if let Some(session) = self.shared.take()
            && let Err(err) = session.unmount()
        {
            tracing::warn!(error = %err, "unmounting at shutdown failed");
        }
        let volumes = std::mem::take(&mut *lock(&self.volumes));
        for volume in volumes.into_values() {
            unmount_volume(volume);
        }
    }

    /// Per runtime: mounts the volume that serves `runtime`'s view alone. If that fails, the
    /// registration is rolled back. The shared layout has nothing to do here.
    fn mount_volume(&self, runtime: &Runtime) -> Result<(), HostError> {
        if self.config.layout != Layout::PerRuntime {
            return Ok(());
        }
        let pid = runtime.root_pid;
        // The router replaces a dead runtime whose pid was reused; its volume goes too.
        let replaced = lock(&self.volumes).remove(&pid);
        if let Some(volume) = replaced {
            unmount_volume(volume);
        }
        let name = volume_name(pid);
        let path = self.config.volumes_dir.join(&name);
        let vfs = Arc::new(Vfs::new(Routing::Fixed(runtime.view.clone())));
        match mount_session(&self.config, vfs, &path, &name) {
            Ok(volume) => {
                lock(&self.volumes).insert(pid, volume);
                Ok(())
            }
            Err(err) => {
                if let Err(undo) = self.router.unregister(pid) {
                    tracing::warn!(root_pid = pid, error = %undo, "could not roll back a registration");
                }
                Err(err)
            }
        }
    }

    fn runtime_status(&self, runtime: &Runtime) -> RuntimeStatus {
        let mount_point = match &self.shared {
            Some(session) => session.mountpoint().to_path_buf(),
            None => self.config.volumes_dir.join(volume_name(runtime.root_pid)),
        };
        RuntimeStatus {
            root_pid: runtime.root_pid,
            env_spec: runtime.spec.to_string(),
            owner_uid: runtime.owner_uid,
            mount_point,
            alive: self.router.is_alive(runtime),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.unmount_all();
    }
}

/// Mounts a session of `vfs` at `path` with the host's transport.
fn mount_session(
    config: &HostConfig,
    vfs: Arc<Vfs>,
    path: &Path,
    volname: &str,
) -> Result<Session, HostError> {
    let session_config = SessionConfig {
        mountpoint: path.to_path_buf(),
        fsname: "spfs".into(),
        volname: volname.into(),
        transport: config.transport,
        threads: config.threads,
        io_uring: config.io_uring,
    };
    Session::mount(vfs, &session_config)
        .map_err(|err| HostError::Internal(mount_failure(config.backend, &err)))
}

/// Unmounts a per-runtime volume and removes its directory if it is empty. Failures are
/// logged: the runtime is gone either way, and `spfs-fuse sweep` clears what is left.
fn unmount_volume(volume: Session) {
    let path = volume.mountpoint().to_path_buf();
    if let Err(err) = volume.unmount() {
        tracing::warn!(volume = %path.display(), error = %err, "unmounting a volume failed");
        return;
    }
    match std::fs::remove_dir(&path) {
        Ok(()) => {}
        // macOS removes a /Volumes mount point itself.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(volume = %path.display(), error = %err, "cannot remove the volume's directory");
        }
    }
}

/// Sweeps stale volumes left by a service that died, logging each step.
fn sweep_volumes(volumes_dir: &Path) {
    match sweep::sweep(volumes_dir, false) {
        Ok(actions) => {
            for action in actions {
                tracing::info!(volumes_dir = %volumes_dir.display(), "sweep: {action}");
            }
        }
        Err(err) => tracing::warn!(error = %err, "cannot sweep stale volumes"),
    }
}
