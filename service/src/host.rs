//! The runtime host: what the control plane drives. It owns the route table and the FUSE
//! mounts, and turns control calls into registrations and mounts.
//!
//! The gRPC service (`control.rs`) talks to the host only through this file's API, so the
//! control plane and the filesystem side can change independently. The host mounts through a
//! [`Mounter`], so its rules (layouts, rollback, replacement, removal of dead runtimes) are
//! tested with a fake one, without a kernel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use spfs_frontends::sweep::{self, volume_name};
use spfs_frontends::{MountError, Platform, Session, SessionConfig, Transport};
use spfs_probe::Backend;
use spfs_proto::status::{
    Change, ChangeKind, CommitKind, Layout, RuntimeStatus, ScratchStatus, ServiceStatus,
};
use spfs_router::process::{ProcessTable, SystemProcessTable};
use spfs_router::{
    Attr, EditError, Invalidation, Owner, RequestCounters, ResetError, RouteError, Router, Routing,
    Runtime, Scratch, Timestamp, Vfs, View, edit,
};

use crate::commit::{
    CommitJob, Committed, ProgressSink, committed_spec, pin_stack, platform_layers, repos_after,
};
use crate::state::{SavedRuntime, SavedScratch, StateFile};
use crate::{convert, scratches, write};

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
    /// The single layout's mount point is held by another live runtime.
    #[error(
        "{} serves one runtime at a time (--layout single) and root process {root_pid} holds it \
         with env spec {env_spec}; end that runtime first, or serve runtimes side by side with \
         --layout per-runtime", .mountpoint.display()
    )]
    MountPointHeld {
        /// The mount point.
        mountpoint: PathBuf,
        /// The root process of the runtime holding it.
        root_pid: u32,
        /// That runtime's env spec.
        env_spec: String,
    },
    /// The scratch directory of an editable runtime cannot be used (in use by another runtime,
    /// not a directory, not writable); the message names it.
    #[error("{0}")]
    Scratch(String),
    /// The caller may not act on this root process; the message names both uids.
    #[error("{0}")]
    PermissionDenied(String),
    /// A mount failed; the hint fixes it when the failure is a known one.
    #[error("{source}")]
    Mount {
        /// Why the mount failed.
        source: MountError,
        /// The one sentence that fixes it, for the backend that failed.
        hint: Option<&'static str>,
    },
    /// The runtime of this root process is read-only: it has no changes to list.
    #[error(
        "the runtime of root process {0} is not editable (register it with --edit to keep \
         changes)"
    )]
    NotEditable(u32),
    /// `edit` of a runtime that is editable already.
    #[error("the runtime of root process {0} is editable already")]
    AlreadyEditable(u32),
    /// A commit or reset that cannot be made as asked (a platform of a directory layer, a bad
    /// tag or setting, nothing to commit, a path not in the view); the message says why.
    #[error("{0}")]
    Refused(String),
    /// Writing a commit into the repository failed; the message names the repository.
    #[error("{0}")]
    Write(String),
    /// Anything else: a host call that died, ...
    #[error("{0}")]
    Internal(String),
}

impl HostError {
    /// The hint that fixes the failure, when it is a known one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            HostError::Mount { hint, .. } => *hint,
            _ => None,
        }
    }
}

/// A mounted filesystem the host owns: a FUSE session, or a fake one in tests.
pub trait Mount: Send + Sync + std::fmt::Debug {
    /// Where it is mounted.
    fn mountpoint(&self) -> &Path;
    /// Unmounts it.
    fn unmount(self: Box<Self>) -> Result<(), MountError>;
    /// Tells the kernel to forget what it cached of `what` (after a reset changed the view
    /// behind its back). Never called from a FUSE request. Failures are logged: the kernel
    /// shows the change once its caches expire.
    fn invalidate(&self, what: &[Invalidation]) {
        let _ = what;
    }
    /// Resets `view`, which this mount serves ([`View::reset`]), letting go of the files the
    /// mount's filesystem holds open for the reset entries; returns what the kernel must
    /// forget.
    fn reset(&self, view: &View, paths: &[PathBuf]) -> Result<Vec<Invalidation>, ResetError> {
        view.reset(paths)
    }
}

/// A mount and the filesystem it serves, so that a reset goes through that filesystem.
struct Served {
    mount: Box<dyn Mount>,
    vfs: Arc<Vfs>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.mount.fmt(f)
    }
}

impl Mount for Served {
    fn mountpoint(&self) -> &Path {
        self.mount.mountpoint()
    }

    fn unmount(self: Box<Self>) -> Result<(), MountError> {
        self.mount.unmount()
    }

    fn invalidate(&self, what: &[Invalidation]) {
        self.mount.invalidate(what);
    }

    fn reset(&self, view: &View, paths: &[PathBuf]) -> Result<Vec<Invalidation>, ResetError> {
        self.vfs.reset(view, paths)
    }
}

/// How the host mounts: a session of a [`Vfs`] at a path under a volume name.
pub trait Mounter: Send + Sync {
    /// Mounts `vfs` at `path`, named `name` (the volume name Finder shows).
    fn mount(&self, vfs: Arc<Vfs>, path: &Path, name: &str) -> Result<Box<dyn Mount>, MountError>;
}

impl Mount for Session {
    fn mountpoint(&self) -> &Path {
        Session::mountpoint(self)
    }

    fn unmount(self: Box<Self>) -> Result<(), MountError> {
        Session::unmount(*self)
    }

    fn invalidate(&self, what: &[Invalidation]) {
        if let Err(err) = self.invalidator().invalidate(what) {
            tracing::warn!(mountpoint = %self.mountpoint().display(), error = %err, "cannot tell the kernel to forget what a reset changed; it shows once its caches expire");
        }
    }
}

/// The real mounter: FUSE sessions over one transport.
#[derive(Debug, Clone)]
pub struct SessionMounter {
    /// How FUSE requests arrive.
    pub transport: Transport,
    /// Worker threads serving FUSE requests (per session).
    pub threads: usize,
    /// Serve through FUSE over io_uring where the kernel offers it (Linux only).
    pub io_uring: bool,
    /// FUSE-T's NFS server, as the probe found it (the `fuse-t` backend only).
    pub nfs_server: Option<PathBuf>,
    /// Whether users other than the service's own reach the mounts ([`serves_other_users`]).
    ///
    /// [`serves_other_users`]: crate::serves_other_users
    pub other_users: bool,
}

impl Mounter for SessionMounter {
    fn mount(&self, vfs: Arc<Vfs>, path: &Path, name: &str) -> Result<Box<dyn Mount>, MountError> {
        let config = SessionConfig {
            mountpoint: path.to_path_buf(),
            fsname: "spfs".into(),
            volname: name.into(),
            transport: self.transport,
            threads: self.threads,
            io_uring: self.io_uring,
            nfs_server: self.nfs_server.clone(),
            other_users: self.other_users,
        };
        Ok(Box::new(Session::mount(vfs, &config)?))
    }
}

/// How the host was asked to serve.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The concrete backend (`kext` or `fuse-t`), for status and failure hints.
    pub backend: Backend,
    /// Where runtimes appear.
    pub layout: Layout,
    /// How FUSE requests arrive, for status.
    pub transport: Transport,
    /// The mount point (shared and single layouts).
    pub mountpoint: PathBuf,
    /// Where the per-runtime volumes go (per-runtime layout).
    pub volumes_dir: PathBuf,
    /// Where the runtimes are kept across restarts; `None` keeps nothing.
    pub state: Option<StateFile>,
    /// The service's state directory (its socket's): default scratches go under it
    /// (`spfs_probe::defaults::default_scratch`).
    pub state_dir: PathBuf,
}

/// Whether a runtime is editable, and where its scratch is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Edit {
    /// Read-only: every write answers `EROFS`.
    #[default]
    ReadOnly,
    /// Editable, with a scratch of the service's own under its state directory, removed with
    /// the runtime (`mount --edit`).
    DefaultScratch,
    /// Editable, with the scratch at this absolute path, kept when the runtime ends and
    /// continued when registered again (`mount --scratch DIR`).
    Scratch(PathBuf),
}

/// The runtime host: the route table, and the mounts serving it: one shared mount, one volume
/// per runtime, or one mount at a time at the mount point (single).
///
/// In the per-runtime and single layouts the route table still holds every runtime (for
/// status, ids and the registration rules); each mount serves its runtime's view with a fixed
/// route. The single layout mounts afresh for every registration rather than switching one
/// mount's view: a kernel that caches (the NFS client under FUSE-T above all) would go on
/// answering from the previous view.
pub struct Host {
    config: HostConfig,
    mounter: Box<dyn Mounter>,
    router: Arc<Router>,
    /// The shared layout's one mount; `None` in the other layouts (and once stopped).
    shared: Option<Box<dyn Mount>>,
    /// The mounts of one runtime each (a per-runtime volume, or the single layout's mount) by
    /// root pid. Locked only briefly: mounting happens outside.
    volumes: Mutex<BTreeMap<u32, Box<dyn Mount>>>,
    /// Serialises registrations and removals where each runtime has a mount of its own, so a
    /// mount never outlives the removal of its runtime, and the single layout's holder is
    /// decided by one call at a time.
    changes: Mutex<()>,
    /// The processes to route by and to tell live roots from dead ones.
    processes: Arc<dyn ProcessTable>,
    /// What the state file holds, by root pid; locked while the file is written, so the file
    /// follows the changes in order.
    saved: Mutex<BTreeMap<u32, SavedRuntime>>,
    /// Requests served by every mount, the removed ones' included, for status.
    requests: Arc<RequestCounters>,
    /// One commit per runtime at a time, by root pid: a commit builds on the stack the one
    /// before it left.
    commits: Mutex<BTreeMap<u32, Arc<Mutex<()>>>>,
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
fn mount_failure(backend: Backend, err: MountError) -> HostError {
    HostError::Mount {
        hint: crate::hints::mount_hint(Platform::current(), backend, err.kind()),
        source: err,
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
            RouteError::Edit(_) => HostError::Scratch(err.to_string()),
        }
    }
}

/// The root's attributes, identical in every view (DESIGN.md §4 rule 3): owned by the service
/// user, stamped with the service's start, mode 0777.
///
/// Why writable by all: the kernel caches the root's attributes once per mount, so the shared
/// mount's root cannot show each editable runtime's owner as its own, and a mode that let the
/// kernel refuse them (0555, 0755 of the service's user) would stop the owner of an editable
/// runtime from creating anything under the root. So the kernel's own check lets everyone
/// through, and the core decides per caller: EROFS for a caller whose view is read-only (or
/// empty), EACCES for anyone but the editable runtime's owner (and root).
///
/// Why not 01777, like `/tmp`: the sticky bit makes the kernel refuse (`EPERM`) the removal
/// or renaming of an entry directly under the root that the caller does not own, so the owner
/// of an editable runtime (not root) could not remove a lower entry the view shows as another
/// user's, which overlayfs lets the owner of `/spfs` do. Per-runtime volumes show one view
/// each and get their own root ([`volume_root_attr`]). docs/SEMANTICS.md.
pub fn root_attr() -> Attr {
    Attr {
        perm: 0o777,
        ..volume_root_attr()
    }
}

/// The root of a mount that shows one view (a per-runtime volume, the single layout's mount):
/// owned by the service user, read-only, stamped with the service's start. An editable
/// runtime's own mount gets a root owned by its owner, mode 0755 instead
/// ([`EDITABLE_VOLUME_ROOT_MODE`]): there the kernel's check can be the owner's.
pub fn volume_root_attr() -> Attr {
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

/// The mode of an editable runtime's own mount's root, owned by the runtime's owner.
pub const EDITABLE_VOLUME_ROOT_MODE: u32 = 0o755;

impl Host {
    /// Starts serving. The shared layout mounts its one mount point. The per-runtime layout
    /// mounts nothing to serve yet, so it proves the transport works with a scratch volume of
    /// the empty view (mounted and unmounted at once; named after the service's pid, so a
    /// later sweep clears it should the service die meanwhile), then sweeps stale volumes.
    /// The single layout proves it the same way at the mount point itself, which also clears a
    /// stale mount a killed service left there.
    pub fn start(config: HostConfig, mounter: Box<dyn Mounter>) -> Result<Host, HostError> {
        Host::start_with(config, mounter, Arc::new(SystemProcessTable::new()))
    }

    /// [`Host::start`] with the process table to route by and to tell live roots from dead ones.
    pub fn start_with(
        config: HostConfig,
        mounter: Box<dyn Mounter>,
        processes: Arc<dyn ProcessTable>,
    ) -> Result<Host, HostError> {
        let router = Arc::new(match config.layout {
            Layout::Shared => Router::new(processes.clone(), root_attr()),
            Layout::PerRuntime | Layout::Single => {
                Router::new(processes.clone(), volume_root_attr())
                    .with_owned_editable_roots(EDITABLE_VOLUME_ROOT_MODE)
            }
        });
        let requests = Arc::new(RequestCounters::default());
        let counted = |routing| Arc::new(Vfs::counting_into(routing, requests.clone()));
        let shared = match config.layout {
            Layout::Shared => {
                let vfs = counted(Routing::Shared(router.clone()));
                Some(mount(
                    &config,
                    mounter.as_ref(),
                    vfs,
                    &config.mountpoint,
                    "spfs",
                )?)
            }
            Layout::PerRuntime => {
                let name = volume_name(std::process::id());
                let path = config.volumes_dir.join(&name);
                let vfs = counted(Routing::Fixed(router.empty_view().clone()));
                let check = mount(&config, mounter.as_ref(), vfs, &path, &name)?;
                release(check, Layout::PerRuntime);
                sweep_volumes(&config.volumes_dir);
                None
            }
            Layout::Single => {
                let vfs = counted(Routing::Fixed(router.empty_view().clone()));
                let check = mount(&config, mounter.as_ref(), vfs, &config.mountpoint, "spfs")?;
                release(check, Layout::Single);
                None
            }
        };
        Ok(Host {
            config,
            mounter,
            router,
            shared,
            volumes: Mutex::new(BTreeMap::new()),
            changes: Mutex::new(()),
            processes,
            saved: Mutex::new(BTreeMap::new()),
            requests,
            commits: Mutex::new(BTreeMap::new()),
        })
    }

    /// Registers again the runtimes the state file kept whose root processes still run (the
    /// same pid with the same start time), as their owners registered them, and returns their
    /// root pids; the file then holds those alone. Called once, right after the start: a
    /// service restarted (an upgrade, a crash) serves its runtimes' processes again without a
    /// new `mount` call. A runtime that cannot be registered again is logged and dropped.
    pub fn restore(&self) -> Vec<u32> {
        let Some(state) = &self.config.state else {
            return Vec::new();
        };
        let kept = match state.load() {
            Ok(kept) => kept,
            Err(err) => {
                tracing::warn!(error = %err, "cannot restore the runtimes of the last run");
                Vec::new()
            }
        };
        let mut restored = Vec::new();
        for runtime in kept {
            let pid = runtime.root_pid;
            let alive = self
                .processes
                .info(pid)
                .is_some_and(|info| info.start_time == runtime.start_time);
            if !alive {
                tracing::info!(
                    root_pid = pid,
                    env_spec = runtime.env_spec,
                    "not restoring a runtime whose root process is gone"
                );
                continue;
            }
            let edit = match &runtime.scratch {
                None => Edit::ReadOnly,
                Some(scratch) if scratch.durable => Edit::Scratch(scratch.dir.clone()),
                Some(_) => Edit::DefaultScratch,
            };
            match self.mount(
                pid,
                &runtime.env_spec,
                &runtime.owner(),
                &runtime.repos,
                &edit,
            ) {
                Ok(status) => {
                    tracing::info!(root_pid = pid, env_spec = runtime.env_spec, mount_point = %status.mount_point.display(), "restored a runtime of the last run");
                    restored.push(pid);
                }
                Err(err) => {
                    tracing::warn!(root_pid = pid, env_spec = runtime.env_spec, error = %err, "cannot restore a runtime of the last run")
                }
            }
        }
        // Drops from the file what was not restored.
        self.persist(&lock(&self.saved));
        restored
    }

    /// Registers a runtime for `root_pid` with `env_spec` (absolute paths and spfs references
    /// resolved against `repos`, in order), owned by `owner`, editable as `edit` says, and
    /// returns where its view appears. A scratch in use by another live runtime is refused
    /// ([`HostError::Scratch`]); a default scratch made for a registration that fails goes
    /// again.
    pub fn mount(
        &self,
        root_pid: u32,
        env_spec: &str,
        owner: &Owner,
        repos: &[PathBuf],
        edit: &Edit,
    ) -> Result<RuntimeStatus, HostError> {
        let _changes = self.serialise();
        if self.config.layout == Layout::Single {
            self.claim_single(root_pid)?;
        }
        self.remove_if_dead(root_pid)?;
        let (scratch, made) = self.take_scratch(root_pid, edit)?;
        let registered = self
            .router
            .register(root_pid, env_spec, owner, repos, scratch)
            .map_err(HostError::from)
            .and_then(|runtime| {
                self.mount_volume(&runtime)?;
                Ok(runtime)
            });
        let runtime = match registered {
            Ok(runtime) => runtime,
            Err(err) => {
                if let Some(made) = made {
                    scratches::remove(&made);
                }
                return Err(err);
            }
        };
        self.record(&runtime, owner);
        if let Some(scratch) = runtime.view.scratch() {
            tracing::info!(root_pid, scratch = %scratch.dir().display(), durable = scratch.is_durable(), "the runtime is editable");
        }
        Ok(self.runtime_status(&runtime))
    }

    /// Removes the runtime of `root_pid` if its root has exited (the pid now belongs to another
    /// process, and the reaper has not run yet), so registering the pid again ends it the
    /// usual way: its volume unmounted, its default scratch removed, the state file updated.
    fn remove_if_dead(&self, root_pid: u32) -> Result<(), HostError> {
        let dead = self
            .router
            .runtimes()
            .iter()
            .any(|r| r.root_pid == root_pid && !self.router.is_alive(r));
        match dead.then(|| self.remove(root_pid)) {
            None | Some(Ok(())) | Some(Err(HostError::NoSuchRuntime(_))) => Ok(()),
            Some(Err(err)) => Err(err),
        }
    }

    /// The scratch `edit` asks for, locked for `root_pid`'s runtime, and the directory when
    /// this call made a default one (to remove should the registration fail). A live runtime
    /// of `root_pid` is refused as already registered first, so its own default scratch does
    /// not answer "in use".
    fn take_scratch(
        &self,
        root_pid: u32,
        edit: &Edit,
    ) -> Result<(Option<Scratch>, Option<PathBuf>), HostError> {
        if *edit == Edit::ReadOnly {
            return Ok((None, None));
        }
        if self
            .router
            .runtimes()
            .iter()
            .any(|r| r.root_pid == root_pid && self.router.is_alive(r))
        {
            return Err(HostError::AlreadyRegistered(root_pid));
        }
        let (scratch, made) = self.open_scratch(root_pid, edit)?;
        Ok((Some(scratch), made))
    }

    /// Locks the scratch `edit` asks for (an editable one) for `root_pid`'s runtime; returns
    /// it and the directory when this call made a default one.
    fn open_scratch(
        &self,
        root_pid: u32,
        edit: &Edit,
    ) -> Result<(Scratch, Option<PathBuf>), HostError> {
        let (dir, durable) = match edit {
            Edit::Scratch(dir) => (dir.clone(), true),
            Edit::ReadOnly | Edit::DefaultScratch => {
                let info = self
                    .processes
                    .info(root_pid)
                    .ok_or(RouteError::NoSuchProcess(root_pid))?;
                let dir = spfs_probe::defaults::default_scratch(
                    &self.config.state_dir,
                    root_pid,
                    info.start_time,
                );
                (dir, false)
            }
        };
        let made = (!durable && !dir.exists()).then(|| dir.clone());
        let scratch = Scratch::open(&dir, durable).map_err(|err| self.scratch_refused(err))?;
        Ok((scratch, made))
    }

    /// Makes the live read-only runtime of `root_pid` editable with the scratch `edit` asks
    /// for (`spfs-fuse edit`; `Edit::ReadOnly` takes a default one). The view stays the same
    /// view: nothing it shows changes and every node keeps its id, so the runtime's processes
    /// carry on. The state file keeps the scratch for a restart.
    pub fn make_editable(&self, root_pid: u32, edit: &Edit) -> Result<RuntimeStatus, HostError> {
        let _changes = self.serialise();
        let runtime = self.live(root_pid)?;
        if runtime.view.scratch().is_some() {
            return Err(HostError::AlreadyEditable(root_pid));
        }
        let (scratch, made) = self.open_scratch(root_pid, edit)?;
        if runtime.view.make_editable(scratch).is_err() {
            if let Some(made) = made {
                scratches::remove(&made);
            }
            return Err(HostError::AlreadyEditable(root_pid));
        }
        let mut saved = lock(&self.saved);
        if let Some(entry) = saved.get_mut(&root_pid) {
            entry.scratch = runtime.view.scratch().map(SavedScratch::of);
            self.persist(&saved);
        }
        drop(saved);
        if let Some(scratch) = runtime.view.scratch() {
            tracing::info!(root_pid, scratch = %scratch.dir().display(), durable = scratch.is_durable(), "the runtime is editable now");
        }
        Ok(self.runtime_status(&runtime))
    }

    /// A scratch that cannot be taken, as the caller reads it: one in use names the runtime
    /// holding it when it is one of this service's.
    fn scratch_refused(&self, err: EditError) -> HostError {
        let EditError::InUse(dir) = &err else {
            return RouteError::Edit(err).into();
        };
        let holder = self
            .router
            .runtimes()
            .into_iter()
            .find(|r| r.view.scratch().is_some_and(|s| s.dir() == dir));
        let by = match holder {
            Some(holder) => format!("the runtime of root process {}", holder.root_pid),
            None => "a runtime of another service".to_owned(),
        };
        HostError::Scratch(format!(
            "{err} ({by}); end that runtime first, or name another --scratch"
        ))
    }

    /// What the editable runtime of `root_pid` changed, read from its scratch against the
    /// layers below, ordered by path.
    pub fn diff(&self, root_pid: u32) -> Result<Vec<Change>, HostError> {
        let runtime = self
            .router
            .runtimes()
            .into_iter()
            .find(|r| r.root_pid == root_pid)
            .ok_or(HostError::NoSuchRuntime(root_pid))?;
        if runtime.view.scratch().is_none() {
            return Err(HostError::NotEditable(root_pid));
        }
        // The view's own diff: after a commit, against the stack it carries on from.
        let changes = runtime
            .view
            .diff()
            .map_err(|err| HostError::Scratch(err.to_string()))?;
        Ok(changes
            .into_iter()
            .map(|change| Change {
                path: change.path.to_string_lossy().into_owned(),
                kind: match change.kind {
                    edit::ChangeKind::Added => ChangeKind::Added,
                    edit::ChangeKind::Modified => ChangeKind::Modified,
                    edit::ChangeKind::Removed => ChangeKind::Removed,
                },
            })
            .collect())
    }

    /// The runtime of `root_pid`, if its root still runs.
    fn live(&self, root_pid: u32) -> Result<Arc<Runtime>, HostError> {
        self.router
            .runtimes()
            .into_iter()
            .find(|r| r.root_pid == root_pid && self.router.is_alive(r))
            .ok_or(HostError::NoSuchRuntime(root_pid))
    }

    /// The live editable runtime of `root_pid`.
    fn editable(&self, root_pid: u32) -> Result<Arc<Runtime>, HostError> {
        let runtime = self.live(root_pid)?;
        if runtime.view.scratch().is_none() {
            return Err(HostError::NotEditable(root_pid));
        }
        Ok(runtime)
    }

    /// The stack `runtime` shows now: the env spec and repositories of its last commit, or
    /// of its registration.
    fn stack_of(&self, runtime: &Runtime) -> (String, Vec<PathBuf>) {
        lock(&self.saved)
            .get(&runtime.root_pid)
            .filter(|saved| saved.start_time == runtime.start_time)
            .map_or_else(
                || (runtime.spec.to_string(), runtime.repos.clone()),
                |saved| (saved.env_spec.clone(), saved.repos.clone()),
            )
    }

    /// Writes the changes of the editable runtime of `root_pid` into `job.repo` as a layer
    /// (or a platform of its stack plus that layer), tags it, and carries the runtime on from
    /// the committed stack with an empty scratch; the state file holds that stack before the
    /// scratch is emptied, so a service killed at any point restores a runtime that shows
    /// what it showed. Running totals go to `progress`.
    pub fn commit(
        &self,
        root_pid: u32,
        job: &CommitJob,
        progress: ProgressSink<'_>,
    ) -> Result<Committed, HostError> {
        let runtime = self.editable(root_pid)?;
        let turn = Arc::clone(lock(&self.commits).entry(root_pid).or_default());
        let _turn = lock(&turn);
        let (spec, repos) = self.stack_of(&runtime);
        let stack = pin_stack(&spec, &repos)?;
        let platform = match job.kind {
            CommitKind::Layer => None,
            CommitKind::Platform => Some(platform_layers(&stack)?),
        };
        let digest = write::commit_view(&runtime.view, |tree| {
            let digest = write::write(tree, job, platform.as_deref(), progress)?;
            let after = committed_spec(&stack, job.kind, digest);
            self.restack(&runtime, after, repos_after(&repos, &job.repo));
            Ok(digest)
        })?;
        tracing::info!(root_pid, kind = %job.kind, %digest, repo = %job.repo.display(), tag = job.tag.as_deref(), "committed");
        Ok(Committed {
            digest,
            kind: job.kind,
            tag: job.tag.clone(),
            runtime: self.runtime_status(&runtime),
        })
    }

    /// Records that `runtime` now shows `env_spec` over `repos` (after a commit), in status
    /// and in the state file, so a restart restores the committed stack.
    fn restack(&self, runtime: &Runtime, env_spec: String, repos: Vec<PathBuf>) {
        let mut saved = lock(&self.saved);
        if let Some(entry) = saved
            .get_mut(&runtime.root_pid)
            .filter(|saved| saved.start_time == runtime.start_time)
        {
            entry.env_spec = env_spec;
            entry.repos = repos;
            self.persist(&saved);
        }
    }

    /// Throws away the changes of the editable runtime of `root_pid` since its last commit:
    /// all of them, or those at `paths` (inside the view) and below; then tells the kernel to
    /// forget what it cached of them, so its processes see the layers below at once.
    pub fn reset(&self, root_pid: u32, paths: &[PathBuf]) -> Result<(), HostError> {
        let runtime = self.editable(root_pid)?;
        // Through the mount serving the view: it lets go of the files it held open for the
        // reset entries, then tells the kernel what to forget.
        let reset = |mount: &dyn Mount| {
            let forget = mount
                .reset(&runtime.view, paths)
                .map_err(write::reset_refused)?;
            mount.invalidate(&forget);
            Ok::<_, HostError>(forget.len())
        };
        let forgotten = match &self.shared {
            Some(shared) => reset(shared.as_ref())?,
            None => match lock(&self.volumes).get(&root_pid) {
                Some(volume) => reset(volume.as_ref())?,
                None => return Err(HostError::NoSuchRuntime(root_pid)),
            },
        };
        tracing::info!(
            root_pid,
            paths = paths.len(),
            invalidations = forgotten,
            "reset"
        );
        Ok(())
    }

    /// Removes the runtime of `root_pid` (and unmounts its own mount, if it has one).
    pub fn unmount(&self, root_pid: u32) -> Result<(), HostError> {
        let _changes = self.serialise();
        self.remove(root_pid)
    }

    /// [`Host::unmount`] for a caller that holds the `changes` lock.
    fn remove(&self, root_pid: u32) -> Result<(), HostError> {
        let runtime = self.router.unregister(root_pid)?;
        lock(&self.commits).remove(&root_pid);
        let mut saved = lock(&self.saved);
        if saved.remove(&root_pid).is_some() {
            self.persist(&saved);
        }
        drop(saved);
        let volume = lock(&self.volumes).remove(&root_pid);
        if let Some(volume) = volume {
            release(volume, self.config.layout);
        }
        discard_default_scratch(&runtime);
        Ok(())
    }

    /// Keeps `runtime` in the state file, unless a concurrent removal has already taken it
    /// out of the route table (checked under the lock that removal takes after it, so the
    /// file never keeps a removed runtime).
    fn record(&self, runtime: &Arc<Runtime>, owner: &Owner) {
        let mut saved = lock(&self.saved);
        let registered = self
            .router
            .runtimes()
            .iter()
            .any(|r| Arc::ptr_eq(r, runtime));
        if registered {
            saved.insert(runtime.root_pid, SavedRuntime::of(runtime, owner));
            self.persist(&saved);
        }
    }

    /// Writes `saved` to the state file. A failure is logged: serving goes on, only a restart
    /// would lose the runtimes.
    fn persist(&self, saved: &BTreeMap<u32, SavedRuntime>) {
        let Some(state) = &self.config.state else {
            return;
        };
        let runtimes: Vec<SavedRuntime> = saved.values().cloned().collect();
        if let Err(err) = state.save(&runtimes) {
            tracing::warn!(error = %err, "cannot keep the runtimes for a restart");
        }
    }

    /// The single layout: refuses a registration for `root_pid` while another live runtime
    /// holds the mount point, naming it; a holder whose root has exited (and the reaper has
    /// not removed yet) is removed now. A live runtime of `root_pid` itself is left to the
    /// router, which refuses it as already registered.
    fn claim_single(&self, root_pid: u32) -> Result<(), HostError> {
        for holder in self.router.runtimes() {
            if holder.root_pid == root_pid {
                continue;
            }
            if self.router.is_alive(&holder) {
                return Err(HostError::MountPointHeld {
                    mountpoint: self.config.mountpoint.clone(),
                    root_pid: holder.root_pid,
                    env_spec: holder.spec.to_string(),
                });
            }
            tracing::info!(
                root_pid = holder.root_pid,
                "removing the runtime of an exited root that still held the mount point"
            );
            match self.remove(holder.root_pid) {
                Ok(()) | Err(HostError::NoSuchRuntime(_)) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Reports the backend, mount points and runtimes.
    pub fn status(&self) -> ServiceStatus {
        let mount_points = match &self.shared {
            Some(session) => vec![session.mountpoint().to_path_buf()],
            None => lock(&self.volumes)
                .values()
                .map(|volume| volume.mountpoint().to_path_buf())
                .collect(),
        };
        ServiceStatus {
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
            traffic: convert::traffic(&self.requests, &self.router),
        }
    }

    /// The runtime of `root_pid` as status shows it, if one is registered.
    pub fn runtime(&self, root_pid: u32) -> Option<RuntimeStatus> {
        self.router
            .runtimes()
            .iter()
            .find(|r| r.root_pid == root_pid)
            .map(|r| self.runtime_status(r))
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
    /// Dropping the host does the same, as a backstop. The state file keeps the runtimes: the
    /// next start (an upgrade's, say) restores those whose roots still run, unless the service
    /// stopped on a Shutdown call, which empties it.
    pub fn stop(mut self) {
        self.unmount_all();
    }

    /// Stops as [`Host::stop`] does, for a Shutdown call: the runtimes are not restored by the
    /// next start, so their default scratches go too (durable ones stay).
    pub fn shut_down(mut self) {
        self.unmount_all();
        for runtime in self.router.runtimes() {
            discard_default_scratch(&runtime);
        }
    }

    /// Where each runtime has a mount of its own, registrations and removals take turns (a
    /// mount must never outlive the removal of its runtime); the shared layout needs no such
    /// order, the router has its own.
    fn serialise(&self) -> Option<MutexGuard<'_, ()>> {
        (self.config.layout != Layout::Shared).then(|| lock(&self.changes))
    }

    fn unmount_all(&mut self) {
        if let Some(session) = self.shared.take()
            && let Err(err) = session.unmount()
        {
            tracing::warn!(error = %err, "unmounting at shutdown failed");
        }
        let volumes = std::mem::take(&mut *lock(&self.volumes));
        for volume in volumes.into_values() {
            release(volume, self.config.layout);
        }
    }

    /// Per runtime and single: mounts what serves `runtime`'s view alone (its volume, or the
    /// mount point). If that fails, the registration is rolled back. The shared layout has
    /// nothing to do here.
    fn mount_volume(&self, runtime: &Runtime) -> Result<(), HostError> {
        let pid = runtime.root_pid;
        let (path, name) = match self.config.layout {
            Layout::Shared => return Ok(()),
            Layout::PerRuntime => {
                let name = volume_name(pid);
                (self.config.volumes_dir.join(&name), name)
            }
            Layout::Single => (self.config.mountpoint.clone(), "spfs".to_owned()),
        };
        // The router replaces a dead runtime whose pid was reused; its mount goes too.
        let replaced = lock(&self.volumes).remove(&pid);
        if let Some(volume) = replaced {
            release(volume, self.config.layout);
        }
        let vfs = Arc::new(Vfs::counting_into(
            Routing::Fixed(runtime.view.clone()),
            self.requests.clone(),
        ));
        match mount(&self.config, self.mounter.as_ref(), vfs, &path, &name) {
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
        let mount_point = match self.config.layout {
            Layout::Shared | Layout::Single => self.config.mountpoint.clone(),
            Layout::PerRuntime => self.config.volumes_dir.join(volume_name(runtime.root_pid)),
        };
        RuntimeStatus {
            root_pid: runtime.root_pid,
            env_spec: self.stack_of(runtime).0,
            owner_uid: runtime.owner_uid,
            mount_point,
            alive: self.router.is_alive(runtime),
            scratch: runtime.view.scratch().map(|scratch| ScratchStatus {
                dir: scratch.dir().to_path_buf(),
                durable: scratch.is_durable(),
            }),
        }
    }
}

/// Removes the scratch of an ended runtime when it is a default one; a durable one (named with
/// `--scratch`) is kept for the next registration.
fn discard_default_scratch(runtime: &Runtime) {
    if let Some(scratch) = runtime.view.scratch()
        && !scratch.is_durable()
    {
        scratches::remove(scratch.dir());
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.unmount_all();
    }
}

/// Mounts `vfs` at `path` through `mounter`; a failure carries the backend's hint.
fn mount(
    config: &HostConfig,
    mounter: &dyn Mounter,
    vfs: Arc<Vfs>,
    path: &Path,
    name: &str,
) -> Result<Box<dyn Mount>, HostError> {
    let mount = mounter
        .mount(Arc::clone(&vfs), path, name)
        .map_err(|err| mount_failure(config.backend, err))?;
    Ok(Box::new(Served { mount, vfs }))
}

/// Unmounts the mount of one runtime; a per-runtime volume's directory goes too if it is
/// empty, while the single layout's mount point stays (it is the user's, often a
/// `synthetic.conf` entry). Failures are logged: the runtime is gone either way, and the next
/// start (or `spfs-fuse sweep`) clears what is left.
fn release(volume: Box<dyn Mount>, layout: Layout) {
    let path = volume.mountpoint().to_path_buf();
    if let Err(err) = volume.unmount() {
        tracing::warn!(volume = %path.display(), error = %err, "unmounting a volume failed");
        return;
    }
    if layout != Layout::PerRuntime {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use spfs_proto::status::CommitProgress;
    use spfs_router::process::FakeProcessTable;

    use super::*;

    /// What the fake kernel holds: the paths mounted now, every mount ever made, in order, and
    /// the paths whose mount is refused.
    #[derive(Debug, Default)]
    struct Mounts {
        live: BTreeSet<PathBuf>,
        history: Vec<PathBuf>,
        refuse: BTreeSet<PathBuf>,
    }

    /// A mounter that mounts nothing and remembers everything.
    #[derive(Debug, Clone, Default)]
    struct FakeMounter(Arc<Mutex<Mounts>>);

    #[derive(Debug)]
    struct FakeMount {
        path: PathBuf,
        mounts: Arc<Mutex<Mounts>>,
    }

    impl Mounter for FakeMounter {
        fn mount(
            &self,
            _vfs: Arc<Vfs>,
            path: &Path,
            _name: &str,
        ) -> Result<Box<dyn Mount>, MountError> {
            let mut mounts = lock(&self.0);
            if mounts.refuse.contains(path) {
                return Err(MountError::Unsupported {
                    path: path.to_owned(),
                    transport: "fake",
                });
            }
            if !mounts.live.insert(path.to_owned()) {
                return Err(MountError::AlreadyMounted(path.to_owned()));
            }
            mounts.history.push(path.to_owned());
            Ok(Box::new(FakeMount {
                path: path.to_owned(),
                mounts: Arc::clone(&self.0),
            }))
        }
    }

    impl Mount for FakeMount {
        fn mountpoint(&self) -> &Path {
            &self.path
        }

        fn unmount(self: Box<Self>) -> Result<(), MountError> {
            lock(&self.mounts).live.remove(&self.path);
            Ok(())
        }
    }

    impl FakeMounter {
        fn live(&self) -> Vec<PathBuf> {
            lock(&self.0).live.iter().cloned().collect()
        }
        fn history(&self) -> Vec<PathBuf> {
            lock(&self.0).history.clone()
        }
        fn refuse(&self, path: PathBuf) {
            lock(&self.0).refuse.insert(path);
        }
    }

    /// A host on a fake mounter and a fake process table in which root processes 40 and 41
    /// (uid 501) run.
    struct Fixture {
        host: Host,
        mounter: FakeMounter,
        processes: Arc<FakeProcessTable>,
        volumes: tempfile::TempDir,
    }

    fn start(layout: Layout) -> Fixture {
        let volumes = tempfile::tempdir().unwrap();
        let config = HostConfig {
            backend: Backend::Kext,
            layout,
            transport: Transport::Device,
            mountpoint: PathBuf::from("/spfs"),
            volumes_dir: volumes.path().to_owned(),
            state: None,
            state_dir: volumes.path().join("state"),
        };
        let mounter = FakeMounter::default();
        let processes = Arc::new(FakeProcessTable::new());
        processes.spawn(40, 1, 7, 501);
        processes.spawn(41, 1, 7, 501);
        let host = Host::start_with(config, Box::new(mounter.clone()), processes.clone()).unwrap();
        Fixture {
            host,
            mounter,
            processes,
            volumes,
        }
    }

    impl Fixture {
        fn register(&self, pid: u32) -> Result<RuntimeStatus, HostError> {
            self.host
                .mount(pid, "-", &Owner::trusted(501, 20), &[], &Edit::ReadOnly)
        }
        fn volume(&self, pid: u32) -> PathBuf {
            self.volumes.path().join(volume_name(pid))
        }
        fn root_pids(&self) -> Vec<u32> {
            self.host
                .status()
                .runtimes
                .iter()
                .map(|r| r.root_pid)
                .collect()
        }
    }

    #[test]
    fn the_shared_layout_mounts_once_and_shows_every_runtime_there() {
        let f = start(Layout::Shared);
        assert_eq!(f.mounter.live(), [PathBuf::from("/spfs")]);
        assert_eq!(f.register(40).unwrap().mount_point, PathBuf::from("/spfs"));
        assert_eq!(f.register(41).unwrap().mount_point, PathBuf::from("/spfs"));
        assert_eq!(f.mounter.history(), [PathBuf::from("/spfs")]);
        let status = f.host.status();
        assert_eq!(status.layout, "shared");
        assert_eq!(status.backend, "kext");
        assert_eq!(status.transport, "device");
        assert_eq!(status.mount_points, [PathBuf::from("/spfs")]);
        assert_eq!(f.root_pids(), [40, 41]);
        assert!(
            status
                .runtimes
                .iter()
                .all(|r| r.alive && r.owner_uid == 501)
        );
    }

    #[test]
    fn the_per_runtime_layout_proves_the_transport_then_mounts_a_volume_per_runtime() {
        let f = start(Layout::PerRuntime);
        // The start-up check mounted a volume named after the service, and unmounted it.
        assert_eq!(f.mounter.history(), [f.volume(std::process::id())]);
        assert!(f.mounter.live().is_empty());

        assert_eq!(f.register(40).unwrap().mount_point, f.volume(40));
        assert_eq!(f.register(41).unwrap().mount_point, f.volume(41));
        assert_eq!(f.mounter.live(), [f.volume(40), f.volume(41)]);
        let status = f.host.status();
        assert_eq!(status.layout, "per-runtime");
        assert_eq!(status.mount_points, [f.volume(40), f.volume(41)]);

        f.host.unmount(40).unwrap();
        assert_eq!(f.mounter.live(), [f.volume(41)]);
        assert_eq!(f.root_pids(), [41]);
        assert!(matches!(
            f.host.unmount(40),
            Err(HostError::NoSuchRuntime(40))
        ));
    }

    #[test]
    fn a_volume_that_fails_to_mount_rolls_its_registration_back() {
        let f = start(Layout::PerRuntime);
        f.mounter.refuse(f.volume(40));
        assert!(matches!(f.register(40), Err(HostError::Mount { .. })));
        assert!(f.root_pids().is_empty(), "the registration stayed");
        assert!(f.mounter.live().is_empty());
        // Nothing is left that would refuse a second try.
        f.register(41).unwrap();
        assert_eq!(f.root_pids(), [41]);
    }

    #[test]
    fn the_single_layout_mounts_one_runtime_at_a_time_at_the_mount_point() {
        let f = start(Layout::Single);
        let spfs = || PathBuf::from("/spfs");
        // The start-up check mounted the empty view there and unmounted it.
        assert_eq!(f.mounter.history(), [spfs()]);
        assert!(f.mounter.live().is_empty());

        assert_eq!(f.register(40).unwrap().mount_point, spfs());
        assert_eq!(f.mounter.live(), [spfs()]);
        let status = f.host.status();
        assert_eq!(status.layout, "single");
        assert_eq!(status.mount_points, [spfs()]);

        let refused = f
            .host
            .mount(41, "/a+/b", &Owner::trusted(501, 20), &[], &Edit::ReadOnly)
            .unwrap_err();
        match &refused {
            HostError::MountPointHeld {
                mountpoint,
                root_pid,
                env_spec,
            } => assert_eq!(
                (mountpoint, *root_pid, env_spec.as_str()),
                (&spfs(), 40, "-")
            ),
            other => panic!("{other:?}"),
        }
        let text = refused.to_string();
        assert!(
            text.contains("root process 40") && text.contains("/spfs"),
            "{text}"
        );
        assert_eq!(
            f.root_pids(),
            [40],
            "the refused runtime was not registered"
        );
        assert_eq!(
            f.mounter.history().len(),
            2,
            "and nothing was mounted for it"
        );

        f.host.unmount(40).unwrap();
        assert!(f.mounter.live().is_empty(), "the runtime's end unmounts");
        assert_eq!(f.register(41).unwrap().mount_point, spfs());
        assert_eq!(f.mounter.live(), [spfs()]);
        // A mount per registration, never one mount whose view is switched.
        assert_eq!(f.mounter.history(), [spfs(), spfs(), spfs()]);
    }

    #[test]
    fn the_single_layout_frees_the_mount_point_of_an_exited_holder_at_once() {
        let f = start(Layout::Single);
        f.register(40).unwrap();
        // Root 40 exits; the reaper has not run yet.
        f.processes.exit(40);
        f.register(41).unwrap();
        assert_eq!(f.root_pids(), [41]);
        assert_eq!(f.mounter.live(), [PathBuf::from("/spfs")]);
    }

    #[test]
    fn the_single_layout_refuses_the_holder_twice_as_already_registered() {
        let f = start(Layout::Single);
        f.register(40).unwrap();
        assert!(matches!(
            f.register(40),
            Err(HostError::AlreadyRegistered(40))
        ));
        assert_eq!(f.mounter.live(), [PathBuf::from("/spfs")]);
    }

    #[test]
    fn the_single_layout_rolls_back_a_registration_whose_mount_fails() {
        let f = start(Layout::Single);
        f.mounter.refuse(PathBuf::from("/spfs"));
        assert!(matches!(f.register(40), Err(HostError::Mount { .. })));
        assert!(f.root_pids().is_empty());
        // Nothing holds the mount point now.
        lock(&f.mounter.0).refuse.clear();
        f.register(41).unwrap();
        assert_eq!(f.root_pids(), [41]);
    }

    /// A host like [`start`]'s on `processes`, keeping its runtimes in `state`.
    fn start_keeping(
        layout: Layout,
        processes: &Arc<FakeProcessTable>,
        state: &Path,
        volumes: &Path,
    ) -> (Host, FakeMounter) {
        let config = HostConfig {
            backend: Backend::Kext,
            layout,
            transport: Transport::Device,
            mountpoint: PathBuf::from("/spfs"),
            volumes_dir: volumes.to_owned(),
            state: Some(StateFile::new(state)),
            state_dir: volumes.to_owned(),
        };
        let mounter = FakeMounter::default();
        let host = Host::start_with(config, Box::new(mounter.clone()), processes.clone()).unwrap();
        (host, mounter)
    }

    #[test]
    fn a_restarted_host_registers_again_the_runtimes_whose_roots_still_run() {
        for layout in [Layout::Shared, Layout::PerRuntime] {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("state.json");
            let processes = Arc::new(FakeProcessTable::new());
            for pid in [40, 41, 42] {
                processes.spawn(pid, 1, 7, 501);
            }
            // A layer uid 501 may read, so the checked owner's registration passes.
            let layer = dir.path().join("layer");
            std::fs::create_dir(&layer).unwrap();
            for path in [dir.path(), &layer] {
                std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                    .unwrap();
            }
            let spec = layer.display().to_string();
            let (host, _) = start_keeping(layout, &processes, &state, dir.path());
            let checked = Owner::checked(501, 20);
            host.mount(40, &spec, &checked, &[], &Edit::ReadOnly)
                .unwrap();
            host.mount(41, "-", &Owner::trusted(501, 20), &[], &Edit::ReadOnly)
                .unwrap();
            host.mount(42, "-", &Owner::trusted(501, 20), &[], &Edit::ReadOnly)
                .unwrap();
            host.unmount(42).unwrap();
            // The service dies (its mounts go with it, the file stays); meanwhile root 41
            // exits and its pid goes to another process.
            drop(host);
            processes.spawn(41, 1, 8, 501);

            let (host, mounter) = start_keeping(layout, &processes, &state, dir.path());
            assert_eq!(host.restore(), [40], "{layout}");
            let status = host.status();
            assert_eq!(status.runtimes.len(), 1, "{layout}");
            assert_eq!(status.runtimes[0].env_spec, layer.display().to_string());
            assert_eq!(status.runtimes[0].owner_uid, 501);
            let kept = StateFile::new(&state).load().unwrap();
            assert_eq!(kept.len(), 1, "the file keeps only what was restored");
            assert_eq!(kept[0].root_pid, 40);
            assert!(kept[0].owner_checked, "the owner stays checked");
            if layout == Layout::PerRuntime {
                assert_eq!(mounter.live(), [dir.path().join(volume_name(40))]);
            }
        }
    }

    #[test]
    fn a_host_without_a_state_file_restores_nothing_and_survives_a_bad_one() {
        let f = start(Layout::Shared);
        f.register(40).unwrap();
        assert!(f.host.restore().is_empty());

        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        std::fs::write(&state, "not json").unwrap();
        let processes = Arc::new(FakeProcessTable::new());
        let (host, _) = start_keeping(Layout::Shared, &processes, &state, dir.path());
        assert!(host.restore().is_empty());
    }

    #[test]
    fn a_mount_that_fails_stops_the_start_with_the_hint_for_its_kind() {
        let mounter = FakeMounter::default();
        mounter.refuse(PathBuf::from("/spfs"));
        let config = HostConfig {
            backend: Backend::FuseT,
            layout: Layout::Shared,
            transport: Transport::Device,
            mountpoint: PathBuf::from("/spfs"),
            volumes_dir: PathBuf::from("/nonexistent"),
            state: None,
            state_dir: PathBuf::from("/nonexistent/state"),
        };
        let started =
            Host::start_with(config, Box::new(mounter), Arc::new(FakeProcessTable::new()));
        let err = started.unwrap_err();
        assert!(matches!(err, HostError::Mount { .. }), "{err}");
        // The hint is a field, chosen by the failure's kind; the text is the mount error's.
        assert_eq!(err.hint(), Some(spfs_probe::hints::FUSE_T_NEEDS_MACOS));
        assert!(!err.to_string().contains("hint"), "{err}");
    }

    #[test]
    fn a_dead_runtimes_volume_is_replaced_when_its_pid_is_registered_again() {
        let f = start(Layout::PerRuntime);
        f.register(40).unwrap();
        // Root 40 exits and its pid goes to a new process before the reaper runs.
        f.processes.spawn(40, 1, 8, 501);
        assert!(!f.host.status().runtimes[0].alive);
        f.register(40).unwrap();
        assert_eq!(f.mounter.live(), [f.volume(40)]);
        let mounted: Vec<_> = f.mounter.history().into_iter().skip(1).collect();
        assert_eq!(mounted, [f.volume(40), f.volume(40)], "mounted again");
        assert!(f.host.status().runtimes[0].alive);
    }

    #[test]
    fn remove_dead_removes_the_runtimes_of_exited_roots_and_their_volumes() {
        let f = start(Layout::PerRuntime);
        f.register(40).unwrap();
        f.register(41).unwrap();
        assert!(f.host.remove_dead().is_empty());
        f.processes.exit(40);
        assert_eq!(f.host.remove_dead(), [40]);
        assert_eq!(f.root_pids(), [41]);
        assert_eq!(f.mounter.live(), [f.volume(41)]);
        assert!(f.host.remove_dead().is_empty());
    }

    impl Fixture {
        fn edit(&self, pid: u32, edit: Edit) -> Result<RuntimeStatus, HostError> {
            self.host
                .mount(pid, "-", &Owner::trusted(501, 20), &[], &edit)
        }
        fn default_scratch(&self, pid: u32) -> PathBuf {
            spfs_probe::defaults::default_scratch(&self.volumes.path().join("state"), pid, 7)
        }
        fn root_of(&self, pid: u32) -> Attr {
            let runtime = self
                .host
                .router
                .runtimes()
                .into_iter()
                .find(|r| r.root_pid == pid);
            runtime.unwrap().view.attr(0)
        }
    }

    #[test]
    fn an_editable_runtime_gets_a_private_default_scratch_removed_with_it() {
        use std::os::unix::fs::PermissionsExt;
        for layout in Layout::ALL {
            let f = start(layout);
            let status = f.edit(40, Edit::DefaultScratch).unwrap();
            let scratch = f.default_scratch(40);
            assert_eq!(
                status.scratch,
                Some(ScratchStatus {
                    dir: scratch.clone(),
                    durable: false
                }),
                "{layout}"
            );
            let mode = std::fs::metadata(&scratch).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{layout}");
            assert_eq!(f.host.status().runtimes[0].scratch, status.scratch);
            f.host.unmount(40).unwrap();
            assert!(
                !scratch.exists(),
                "{layout}: the default scratch outlived its runtime"
            );
            // And when the root exits.
            f.edit(40, Edit::DefaultScratch).unwrap();
            assert!(scratch.exists());
            f.processes.exit(40);
            assert_eq!(f.host.remove_dead(), [40]);
            assert!(
                !scratch.exists(),
                "{layout}: the reaper left the default scratch"
            );
        }
    }

    #[test]
    fn a_named_scratch_is_kept_continued_and_refused_to_a_second_live_runtime() {
        let f = start(Layout::Shared);
        let dir = f.volumes.path().join("mine");
        let status = f.edit(40, Edit::Scratch(dir.clone())).unwrap();
        assert!(status.scratch.unwrap().durable);
        std::fs::write(dir.join("made"), "kept").unwrap();

        let refused = f.edit(41, Edit::Scratch(dir.clone())).unwrap_err();
        assert!(matches!(refused, HostError::Scratch(_)), "{refused:?}");
        let said = refused.to_string();
        assert!(
            said.contains(dir.to_str().unwrap()) && said.contains("root process 40"),
            "{said}"
        );
        assert_eq!(
            f.root_pids(),
            [40],
            "the refused runtime was not registered"
        );

        f.host.unmount(40).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("made")).unwrap(), "kept");
        f.edit(41, Edit::Scratch(dir.clone())).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("made")).unwrap(), "kept");
        assert!(matches!(f.host.diff(41), Ok(changes) if changes.len() == 1));
        f.processes.exit(41);
        f.host.remove_dead();
        assert!(
            dir.join("made").exists(),
            "the reaper removed a durable scratch"
        );
    }

    #[test]
    fn a_dead_runtimes_default_scratch_goes_when_its_pid_is_registered_again() {
        let f = start(Layout::Shared);
        f.edit(40, Edit::DefaultScratch).unwrap();
        let old = f.default_scratch(40);
        // Root 40 exits and its pid goes to a new process before the reaper runs.
        f.processes.spawn(40, 1, 8, 501);
        f.edit(40, Edit::DefaultScratch).unwrap();
        assert!(!old.exists(), "the dead runtime's scratch stayed");
        let new = spfs_probe::defaults::default_scratch(&f.volumes.path().join("state"), 40, 8);
        assert_eq!(
            f.host.status().runtimes[0].scratch.as_ref().unwrap().dir,
            new
        );
        assert!(new.exists());
    }

    #[test]
    fn a_registration_that_fails_removes_the_default_scratch_it_made() {
        let f = start(Layout::PerRuntime);
        f.mounter.refuse(f.volume(40));
        assert!(matches!(
            f.edit(40, Edit::DefaultScratch),
            Err(HostError::Mount { .. })
        ));
        assert!(!f.default_scratch(40).exists());
        // A live runtime asked again is "already registered", not "scratch in use".
        let f = start(Layout::Shared);
        f.edit(40, Edit::DefaultScratch).unwrap();
        assert!(matches!(
            f.edit(40, Edit::DefaultScratch),
            Err(HostError::AlreadyRegistered(40))
        ));
        assert!(f.default_scratch(40).exists());
    }

    #[test]
    fn the_shared_root_is_writable_by_all_and_an_editable_volumes_root_is_its_owners() {
        let f = start(Layout::Shared);
        f.edit(40, Edit::DefaultScratch).unwrap();
        f.register(41).unwrap();
        for pid in [40, 41] {
            let root = f.root_of(pid);
            assert_eq!(root.perm, 0o777, "rule 3: one root for every view");
            assert_eq!(root.uid, unsafe { libc::geteuid() });
        }
        for layout in [Layout::PerRuntime, Layout::Single] {
            let f = start(layout);
            f.edit(40, Edit::DefaultScratch).unwrap();
            let root = f.root_of(40);
            assert_eq!(
                (root.perm, root.uid, root.gid),
                (0o755, 501, 20),
                "{layout}"
            );
            f.host.unmount(40).unwrap();
            f.register(40).unwrap();
            let root = f.root_of(40);
            assert_eq!(
                root.perm, 0o555,
                "{layout}: a read-only volume keeps today's root"
            );
            assert_eq!(root.uid, unsafe { libc::geteuid() });
        }
    }

    #[test]
    fn diff_lists_the_scratch_and_refuses_a_read_only_or_unknown_runtime() {
        let f = start(Layout::Shared);
        f.register(40).unwrap();
        assert!(matches!(f.host.diff(40), Err(HostError::NotEditable(40))));
        assert!(matches!(f.host.diff(42), Err(HostError::NoSuchRuntime(42))));
        f.edit(41, Edit::DefaultScratch).unwrap();
        assert_eq!(f.host.diff(41).unwrap(), []);
        std::fs::write(f.default_scratch(41).join("new"), "x").unwrap();
        assert_eq!(
            f.host.diff(41).unwrap(),
            [Change {
                path: "/new".into(),
                kind: ChangeKind::Added
            }]
        );
    }

    #[test]
    fn a_restarted_host_continues_editable_runtimes_and_a_shutdown_removes_default_scratches() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let processes = Arc::new(FakeProcessTable::new());
        processes.spawn(40, 1, 7, 501);
        processes.spawn(41, 1, 7, 501);
        let durable = dir.path().join("mine");
        let default = spfs_probe::defaults::default_scratch(dir.path(), 40, 7);
        let owner = Owner::trusted(501, 20);
        let (host, _) = start_keeping(Layout::Shared, &processes, &state, dir.path());
        host.mount(40, "-", &owner, &[], &Edit::DefaultScratch)
            .unwrap();
        host.mount(41, "-", &owner, &[], &Edit::Scratch(durable.clone()))
            .unwrap();
        std::fs::write(default.join("work"), "w").unwrap();
        // A stop for a restart (a signal, an upgrade) keeps every scratch.
        host.stop();
        assert!(default.join("work").exists());

        let (host, _) = start_keeping(Layout::Shared, &processes, &state, dir.path());
        assert_eq!(host.restore(), [40, 41]);
        let scratches: Vec<_> = host
            .status()
            .runtimes
            .into_iter()
            .map(|r| r.scratch.unwrap())
            .collect();
        assert_eq!(
            scratches,
            [
                ScratchStatus {
                    dir: default.clone(),
                    durable: false
                },
                ScratchStatus {
                    dir: durable.clone(),
                    durable: true
                }
            ]
        );
        assert!(
            default.join("work").exists(),
            "the restored runtime lost its changes"
        );
        // A Shutdown call ends the runtimes for good.
        host.shut_down();
        assert!(!default.exists());
        assert!(durable.exists());
    }

    /// A commit job into `repo` of `kind`, tagged `test/commit`.
    fn job(repo: &Path, kind: CommitKind) -> CommitJob {
        CommitJob {
            kind,
            repo: repo.to_owned(),
            tag: Some("test/commit".into()),
            encoding_format: String::new(),
            digest_strategy: String::new(),
            user: "tester@host".into(),
            owner: None,
        }
    }

    #[test]
    fn a_commit_restacks_the_runtime_in_status_the_state_file_and_a_restore() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let repo = dir.path().join("repo");
        let lower = dir.path().join("lower");
        std::fs::create_dir_all(&lower).unwrap();
        std::fs::write(lower.join("old"), "old").unwrap();
        let spec = lower.to_str().unwrap().to_owned();
        let processes = Arc::new(FakeProcessTable::new());
        processes.spawn(40, 1, 7, 501);
        let owner = Owner::trusted(501, 20);
        let (host, _) = start_keeping(Layout::Shared, &processes, &state, dir.path());
        host.mount(40, &spec, &owner, &[], &Edit::DefaultScratch)
            .unwrap();
        let scratch = spfs_probe::defaults::default_scratch(dir.path(), 40, 7);
        std::fs::write(scratch.join("new"), "new").unwrap();

        let platform = host
            .commit(40, &job(&repo, CommitKind::Platform), &|_| {})
            .unwrap_err();
        assert!(matches!(platform, HostError::Refused(_)), "{platform}");
        let bad_tag = CommitJob {
            tag: Some("bad tag~1".into()),
            ..job(&repo, CommitKind::Layer)
        };
        let err = host.commit(40, &bad_tag, &|_| {}).unwrap_err();
        assert!(matches!(err, HostError::Refused(_)), "{err}");
        assert_eq!(
            host.diff(40).unwrap().len(),
            1,
            "a failed commit kept the changes"
        );
        let totals = Mutex::new(CommitProgress::default());
        let committed = host
            .commit(40, &job(&repo, CommitKind::Layer), &|p| {
                *lock(&totals) = p;
            })
            .unwrap();
        let after = format!("{spec}+{}", committed.digest);
        assert_eq!(committed.runtime.env_spec, after);
        assert_eq!(host.status().runtimes[0].env_spec, after);
        assert_eq!(lock(&totals).files_hashed, 1);
        assert_eq!(lock(&totals).bytes_hashed, 3);
        // The failed commit wrote the payload already: it is not written again.
        assert_eq!(lock(&totals).bytes_written, 0);
        let saved = StateFile::new(&state).load().unwrap();
        assert_eq!(saved[0].env_spec, after);
        assert_eq!(saved[0].repos, std::slice::from_ref(&repo));
        assert_eq!(host.diff(40).unwrap(), []);
        let nothing = host
            .commit(40, &job(&repo, CommitKind::Layer), &|_| {})
            .unwrap_err();
        assert!(
            nothing.to_string().contains("nothing to commit"),
            "{nothing}"
        );

        // A restart restores the committed stack, and the view shows the commit.
        host.stop();
        let (host, _) = start_keeping(Layout::Shared, &processes, &state, dir.path());
        assert_eq!(host.restore(), [40]);
        assert_eq!(host.status().runtimes[0].env_spec, after);
        assert_eq!(host.diff(40).unwrap(), []);
        std::fs::write(scratch.join("later"), "later").unwrap();
        assert_eq!(host.diff(40).unwrap().len(), 1);
        host.reset(40, &[]).unwrap();
        assert_eq!(host.diff(40).unwrap(), []);
        assert!(!scratch.join("later").exists());
        assert!(matches!(
            host.reset(41, &[]),
            Err(HostError::NoSuchRuntime(41))
        ));
    }

    #[test]
    fn stop_unmounts_everything() {
        for layout in Layout::ALL {
            let f = start(layout);
            f.register(40).unwrap();
            if layout != Layout::Single {
                f.register(41).unwrap();
            }
            assert!(!f.mounter.live().is_empty());
            let mounter = f.mounter.clone();
            f.host.stop();
            assert!(mounter.live().is_empty(), "{layout}: {:?}", mounter.live());
        }
    }

    #[test]
    fn dropping_the_host_unmounts_too() {
        let f = start(Layout::Shared);
        let mounter = f.mounter.clone();
        drop(f);
        assert!(mounter.live().is_empty());
    }
}
