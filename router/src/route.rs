//! The route table: which root processes have runtimes, and which view a caller sees
//! (DESIGN.md §4 rule 4).
//!
//! The table is an immutable snapshot swapped atomically on every change, so requests never
//! wait for a registration in progress: a view is built before the writer takes its lock, and
//! readers only ever load the current snapshot.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::access::Owner;
use crate::edit::Scratch;
use crate::error::{RouteError, SpecError};
use crate::node::ViewId;
use crate::process::{Pid, ProcessTable};
use crate::spec::{EnvSpec, ResolvedSpec};
use crate::traffic::OutsiderLookups;
use crate::view::{Attr, View};
use spfs_storage::Repositories;

/// How long a resolution is trusted without walking the ancestry again. Bounded so that a
/// process reparented out of a runtime, or a pid reused by an unrelated process, stops seeing
/// the runtime's view soon; every route change clears the cache at once regardless.
const RESOLVE_TTL: Duration = Duration::from_secs(1);

/// Resolution cache shards: requests arrive on several FUSE threads at once.
const CACHE_SHARDS: usize = 16;

/// A shard that grows past this is cleared rather than trimmed; callers are few at a time.
const CACHE_SHARD_CAPACITY: usize = 4096;

/// Ancestry deeper than this is treated as unrelated; real trees are far shallower, and the
/// bound keeps a corrupt or looping process table from stalling a request.
const MAX_DEPTH: usize = 4096;

/// One registered runtime.
#[derive(Debug)]
pub struct Runtime {
    /// The root process.
    pub root_pid: Pid,
    /// The root process's start time, so a reused pid does not inherit the runtime.
    pub start_time: u64,
    /// The env spec it was registered with.
    pub spec: EnvSpec,
    /// Who registered it.
    pub owner_uid: u32,
    /// The spfs repositories its spfs items were resolved against, in search order.
    pub repos: Vec<PathBuf>,
    /// Its view.
    pub view: Arc<View>,
}

#[derive(Debug, Default)]
struct Table {
    generation: u64,
    by_root: HashMap<Pid, Arc<Runtime>>,
    views: HashMap<ViewId, Arc<View>>,
}

#[derive(Debug, Clone, Copy)]
struct Cached {
    view: ViewId,
    generation: u64,
    at: Instant,
}

/// The route table and the caller-to-view resolver of the shared layout.
#[derive(Debug)]
pub struct Router {
    processes: Arc<dyn ProcessTable>,
    table: ArcSwap<Table>,
    writer: Mutex<()>,
    cache: Vec<Mutex<HashMap<Pid, Cached>>>,
    next_view: AtomicU32,
    empty: Arc<View>,
    root: Attr,
    /// The mode of an editable view's root, owned by its owner, where each view has a mount of
    /// its own; `None`: every root is `root` (the shared mount, rule 3).
    editable_root: Option<u32>,
    outsiders: OutsiderLookups,
}

impl Router {
    /// A router with no runtimes, reading processes from `processes`. `root` holds the
    /// attributes of the root in every view.
    pub fn new(processes: Arc<dyn ProcessTable>, root: Attr) -> Router {
        let next_view = AtomicU32::new(1);
        let empty = Arc::new(View::build(
            next_view.fetch_add(1, Ordering::Relaxed),
            &ResolvedSpec::empty(),
            &root,
            (root.uid, root.gid),
        ));
        Router {
            processes,
            table: ArcSwap::from_pointee(Table::default()),
            writer: Mutex::new(()),
            cache: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            next_view,
            empty,
            root,
            editable_root: None,
            outsiders: OutsiderLookups::default(),
        }
    }

    /// This router, for views that each have a mount of their own (per-runtime volumes): an
    /// editable view's root is owned by its owner with mode `perm`, so the kernel lets the
    /// owner write there. Never for the shared mount, whose root is the same in every view.
    pub fn with_owned_editable_roots(mut self, perm: u32) -> Router {
        self.editable_root = Some(perm);
        self
    }

    /// The attributes of the root, the same in every view.
    pub fn root_attr(&self) -> &Attr {
        &self.root
    }

    /// The view of processes outside every runtime.
    pub fn empty_view(&self) -> &Arc<View> {
        &self.empty
    }

    /// Resolves `spec` against the repositories at `repos` (searched in order) and builds its
    /// view under a fresh view id, for a route or a per-runtime volume. When `owner` is
    /// checked, every directory layer and repository must be readable by it first. With a
    /// `scratch`, the view is editable and every write lands there.
    pub fn build_view(
        &self,
        spec: &EnvSpec,
        owner: &Owner,
        repos: &[PathBuf],
        scratch: Option<Scratch>,
    ) -> Result<Arc<View>, RouteError> {
        if let Some(relative) = repos.iter().find(|r| !r.is_absolute()) {
            return Err(SpecError::RelativeRepository(relative.clone()).into());
        }
        // Before the service reads anything on the owner's behalf. A repository is read
        // through its object and payload folders too.
        let repo_dirs = repos
            .iter()
            .flat_map(|r| [r.clone(), r.join("objects"), r.join("payloads")]);
        for path in repo_dirs.chain(spec.directories().map(PathBuf::from)) {
            owner.check_readable_dir(&path)?;
        }
        let repos = Repositories::open(repos).map_err(|error| SpecError::Repository {
            references: spec.references().collect::<Vec<_>>().join("+"),
            error,
        })?;
        let resolved = spec.resolve(Arc::new(repos))?;
        let id = self.next_view.fetch_add(1, Ordering::Relaxed);
        let root = match self.editable_root {
            Some(perm) if scratch.is_some() => Attr {
                perm,
                uid: owner.uid,
                gid: owner.gid,
                ..self.root
            },
            _ => self.root,
        };
        let view = View::build(id, &resolved, &root, (owner.uid, owner.gid));
        Ok(Arc::new(match scratch {
            Some(scratch) => view.with_scratch(scratch),
            None => view,
        }))
    }

    /// Registers a runtime: the process tree under `root_pid` sees the view of `spec`, whose
    /// spfs items resolve against the repositories at `repos` (searched in order). With a
    /// `scratch` the runtime is editable.
    pub fn register(
        &self,
        root_pid: Pid,
        spec: &str,
        owner: &Owner,
        repos: &[PathBuf],
        scratch: Option<Scratch>,
    ) -> Result<Arc<Runtime>, RouteError> {
        match root_pid {
            0 => return Err(RouteError::PidZero),
            1 => return Err(RouteError::PidOne),
            _ => {}
        }
        let spec = EnvSpec::parse(spec)?;
        let info = self
            .processes
            .info(root_pid)
            .ok_or(RouteError::NoSuchProcess(root_pid))?;
        if self.is_registered(root_pid, info.start_time) {
            return Err(RouteError::AlreadyRegistered(root_pid));
        }
        // Built outside the writer lock: readers and other registrations go on meanwhile.
        let view = self.build_view(&spec, owner, repos, scratch)?;
        let runtime = Arc::new(Runtime {
            root_pid,
            start_time: info.start_time,
            spec,
            owner_uid: owner.uid,
            repos: repos.to_vec(),
            view,
        });
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_registered(root_pid, info.start_time) {
            return Err(RouteError::AlreadyRegistered(root_pid));
        }
        self.update(|table| {
            // A route whose root pid was reused by another process is dead: replace it.
            if let Some(old) = table.by_root.insert(root_pid, runtime.clone()) {
                table.views.remove(&old.view.id());
            }
            table.views.insert(runtime.view.id(), runtime.view.clone());
        });
        tracing::info!(root_pid, view = runtime.view.id(), spec = %runtime.spec, entries = runtime.view.len(), "registered runtime");
        Ok(runtime)
    }

    /// Removes the runtime of `root_pid`; its view answers no more requests.
    pub fn unregister(&self, root_pid: Pid) -> Result<Arc<Runtime>, RouteError> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let runtime = self
            .table
            .load()
            .by_root
            .get(&root_pid)
            .cloned()
            .ok_or(RouteError::NotRegistered(root_pid))?;
        self.update(|table| {
            table.by_root.remove(&root_pid);
            table.views.remove(&runtime.view.id());
        });
        tracing::info!(root_pid, view = runtime.view.id(), "removed runtime");
        Ok(runtime)
    }

    /// Every registered runtime, by root pid.
    pub fn runtimes(&self) -> Vec<Arc<Runtime>> {
        let mut all: Vec<_> = self.table.load().by_root.values().cloned().collect();
        all.sort_by_key(|r| r.root_pid);
        all
    }

    /// Whether the runtime's root process is still the process it was registered with.
    pub fn is_alive(&self, runtime: &Runtime) -> bool {
        self.processes
            .info(runtime.root_pid)
            .is_some_and(|info| info.start_time == runtime.start_time)
    }

    /// The live view with id `view`, if any.
    pub fn view(&self, view: ViewId) -> Option<Arc<View>> {
        self.view_in(&self.table.load(), view)
    }

    /// The view a caller (a task id as FUSE reports it) sees: that of the nearest ancestor that
    /// is a registered root, or the empty view. pid 0 (the kernel's own requests) never walks.
    pub fn resolve(&self, caller: Pid) -> Arc<View> {
        let table = self.table.load();
        if table.by_root.is_empty() || caller == 0 {
            return self.empty.clone();
        }
        let shard = &self.cache[caller as usize % CACHE_SHARDS];
        let hit = shard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&caller)
            .copied();
        if let Some(hit) = hit
            && hit.generation == table.generation
            && hit.at.elapsed() < RESOLVE_TTL
            && let Some(view) = self.view_in(&table, hit.view)
        {
            return view;
        }
        let view = self.walk(&table, caller);
        let mut cache = shard.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_SHARD_CAPACITY {
            cache.clear();
        }
        cache.insert(
            caller,
            Cached {
                view: view.id(),
                generation: table.generation,
                at: Instant::now(),
            },
        );
        view
    }

    /// Counts a lookup in the root by `caller` (a task id), who sees the empty view: a
    /// process outside every runtime looking into the mount. Only such lookups pay for
    /// reading the caller's name.
    pub fn count_outsider_root_lookup(&self, caller: Pid) {
        self.outsiders.record(caller, |task| {
            let pid = self.processes.process_of(task)?;
            self.processes.name(pid)
        });
    }

    /// Root lookups by processes outside every runtime so far, by executable name (see
    /// [`OutsiderLookups::counts`]).
    pub fn outsider_root_lookups(&self) -> BTreeMap<String, u64> {
        self.outsiders.counts()
    }

    /// Forgets every cached resolution, so the next request of each caller walks again.
    pub fn clear_cache(&self) {
        for shard in &self.cache {
            shard.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }

    fn view_in(&self, table: &Table, view: ViewId) -> Option<Arc<View>> {
        if view == self.empty.id() {
            return Some(self.empty.clone());
        }
        table.views.get(&view).cloned()
    }

    fn walk(&self, table: &Table, caller: Pid) -> Arc<View> {
        let Some(mut pid) = self.processes.process_of(caller) else {
            return self.empty.clone();
        };
        for _ in 0..MAX_DEPTH {
            if pid == 0 {
                break;
            }
            let Some(info) = self.processes.info(pid) else {
                break;
            };
            if let Some(runtime) = table.by_root.get(&pid)
                && runtime.start_time == info.start_time
            {
                return runtime.view.clone();
            }
            if info.ppid == pid {
                break;
            }
            pid = info.ppid;
        }
        self.empty.clone()
    }

    fn is_registered(&self, root_pid: Pid, start_time: u64) -> bool {
        self.table
            .load()
            .by_root
            .get(&root_pid)
            .is_some_and(|r| r.start_time == start_time)
    }

    /// Applies `change` to a copy of the table and swaps it in; the generation bump makes every
    /// cached resolution stale at once.
    fn update(&self, change: impl FnOnce(&mut Table)) {
        let current = self.table.load();
        let mut next = Table {
            generation: current.generation + 1,
            by_root: current.by_root.clone(),
            views: current.views.clone(),
        };
        change(&mut next);
        self.table.store(Arc::new(next));
    }
}
