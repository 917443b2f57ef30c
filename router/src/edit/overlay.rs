//! The overlay of an editable view: its lower view (the layers, read-only, built as for any
//! runtime), the scratch as its upper layer, and what changed, kept per directory as a delta
//! over the lower listing (names added, replaced or removed).
//!
//! Node indexes below the lower view's length are the lower view's entries; new entries take
//! fresh indexes above it, never reused while the service runs. A renamed entry keeps its
//! index; an entry whose last name is removed is detached, and still answers through a file
//! the open-file cache holds for it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::commit::{CommitError, commit_tree};
use super::ffi::{c_path, check};
use super::gate::Gate;
use super::lower::Lower;
use super::{Invalidation, ResetError};
use super::{OPAQUE_MARKER, Scratch, TEMP_PREFIX, WHITEOUT_PREFIX, sys};
use crate::error::{FsError, ToErrno};
use crate::files::OpenFiles;
use crate::node::NodeId;
use crate::vfs::{
    Caller, DirEntry, DirectoryReplier, RenameMode, SetAttr, StatFs, TimeSet, XattrSet,
};
use crate::view::{Attr, BLOCK_SIZE, FileKind, Timestamp, View};
use spfs_storage::write::Node;

/// Deeper than this, a path walk is taken for a loop in the state (it cannot happen: a
/// directory is never moved into itself).
const MAX_DEPTH: usize = 4096;

/// A directory's changes over its lower listing: `Some(index)` shows that entry under the
/// name, `None` hides the lower entry of that name.
type Delta = BTreeMap<Vec<u8>, Option<u32>>;

/// An entry whose state differs from its lower one, or a new one.
#[derive(Debug)]
struct Entry {
    kind: FileKind,
    /// Where it is linked: (parent, name); empty once detached. More than one for hard links.
    names: Vec<(u32, Vec<u8>)>,
    /// It exists in the scratch (a directory there merges with its lower part, if any).
    upper: bool,
}

/// The changes of an editable view, behind its lock.
#[derive(Debug, Default)]
pub(super) struct State {
    /// The next fresh index.
    next: u32,
    entries: HashMap<u32, Entry>,
    dirs: HashMap<u32, Delta>,
}

/// The mutable part of an editable view: its scratch and what changed over the lower view.
#[derive(Debug)]
pub struct Edit {
    scratch: Scratch,
    /// Set at the first change (or when a loaded scratch held some); until then every request
    /// goes the read-only way, without taking the lock.
    changed: AtomicBool,
    state: RwLock<Locked>,
    temps: AtomicU64,
    /// Lower files being copied up outside the lock: one copy per file at a time, since a
    /// large write arrives as several WRITEs at once (one per FUSE queue) and each would
    /// copy the whole file.
    copying: Mutex<HashSet<u32>>,
    copied: Condvar,
    /// Held shared by every change, alone by a commit.
    gate: Gate,
    /// Frozen generations made so far (their directories' numbers).
    generations: AtomicU64,
}

/// The claim on copying up one lower file (see [`Edit::claim_copy`]); dropped, it wakes
/// whoever waits to copy the same file.
struct CopyClaim<'a> {
    edit: &'a Edit,
    i: u32,
}

impl Drop for CopyClaim<'_> {
    fn drop(&mut self) {
        lock_set(&self.edit.copying).remove(&self.i);
        self.edit.copied.notify_all();
    }
}

fn lock_set(set: &Mutex<HashSet<u32>>) -> MutexGuard<'_, HashSet<u32>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

/// Maps a scratch failure at `path` to the caller's error, keeping its errno.
fn failed(path: &Path) -> impl FnOnce(io::Error) -> FsError + '_ {
    move |source| FsError::Scratch {
        path: path.to_path_buf(),
        source,
    }
}

fn os(name: &[u8]) -> &OsStr {
    OsStr::from_bytes(name)
}

fn timestamp(secs: i64, nanos: i64) -> Timestamp {
    Timestamp {
        secs,
        nanos: nanos as u32,
    }
}

/// Opens an upper file for reading and writing; read-only when the service may not write it
/// (an unprivileged service and a file without write permission).
fn open_upper(path: &Path) -> io::Result<File> {
    let open = |write| {
        fs::OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    match open(true) {
        Err(err) if err.raw_os_error() == Some(libc::EACCES) => open(false),
        other => other,
    }
}

/// A `timespec` for `utimensat`: `None` leaves the time as it is.
fn timespec(time: Option<TimeSet>) -> libc::timespec {
    match time {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(TimeSet::Now) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(TimeSet::At(t)) => libc::timespec {
            tv_sec: t.secs as libc::time_t,
            tv_nsec: i64::from(t.nanos) as _,
        },
    }
}

/// Sets `path`'s times without following a symlink.
fn set_times(path: &Path, atime: Option<TimeSet>, mtime: Option<TimeSet>) -> io::Result<()> {
    let c = c_path(path)?;
    let times = [timespec(atime), timespec(mtime)];
    // SAFETY: a valid C string and an array of two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    check(rc)
}

/// Gives `path` to `uid`:`gid` unless it has them already. An unprivileged service cannot
/// give files away: they stay its own, which is all it can do (logged).
fn set_owner(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(err) if err.raw_os_error() == Some(libc::EPERM) && !is_root() => {
            tracing::debug!(path = %path.display(), uid, gid, "an unprivileged service keeps new entries its own");
            Ok(())
        }
        other => other,
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Removes whatever is at `path` (a temp file or directory left behind).
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

/// Removes `path`, which may be missing.
fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The `.wh.NAME` whiteout of `name` in directory `dir`.
fn whiteout(dir: &Path, name: &[u8]) -> PathBuf {
    let mut wh = WHITEOUT_PREFIX.to_vec();
    wh.extend_from_slice(name);
    dir.join(os(&wh))
}

/// Writes the empty marker file `path` (a whiteout or opaque marker), unless it is there.
fn write_marker(path: &Path) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

/// The longest name a directory entry can have, on Linux and macOS alike.
const NAME_MAX: usize = 255;

/// Removes the whiteout of `name` in `dir`, if there is one. A name longer than
/// `NAME_MAX - 4` cannot have one (`.wh.NAME` would be too long), so there is nothing to
/// remove: asking the filesystem would answer ENAMETOOLONG for a name the caller may make.
fn remove_whiteout(dir: &Path, name: &[u8]) -> Result<(), FsError> {
    if WHITEOUT_PREFIX.len() + name.len() > NAME_MAX {
        return Ok(());
    }
    let wh = whiteout(dir, name);
    remove_if_present(&wh).map_err(failed(&wh))
}

/// Writes the whiteout of `name` in `dir`, unless it is there.
fn write_whiteout(dir: &Path, name: &[u8]) -> io::Result<()> {
    write_marker(&whiteout(dir, name))
}

/// Refuses names the scratch format cannot hold, and `.`/`..`.
fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid(format!(
            "{:?} is not a valid name",
            String::from_utf8_lossy(name)
        )));
    }
    if name.starts_with(WHITEOUT_PREFIX) {
        return Err(FsError::Invalid(format!(
            "{:?} starts with .wh., which the scratch format keeps for whiteouts",
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

fn not_found(parent: NodeId, name: &[u8]) -> FsError {
    FsError::NotFound {
        parent,
        name: String::from_utf8_lossy(name).into_owned(),
    }
}

impl State {
    /// Loading: hides lower entry `name` of `dir`, unless the scratch shows its own.
    pub(super) fn hide(&mut self, dir: u32, name: &[u8]) {
        self.delta(dir).entry(name.to_vec()).or_insert(None);
    }

    /// Loading: lower directory `i` has an upper part, merged with it.
    pub(super) fn merge(&mut self, lower: &dyn Lower<'_>, i: u32) -> u32 {
        self.entry(lower, i).upper = true;
        i
    }

    /// Loading: a new upper entry `name` of `dir`; `None` when the ids ran out.
    pub(super) fn add(&mut self, dir: u32, name: &[u8], kind: FileKind) -> Option<u32> {
        let index = self.fresh().ok()?;
        self.entries.insert(
            index,
            Entry {
                kind,
                names: vec![(dir, name.to_vec())],
                upper: true,
            },
        );
        self.delta(dir).insert(name.to_vec(), Some(index));
        if kind == FileKind::Directory {
            self.dirs.insert(index, Delta::new());
        }
        Some(index)
    }

    /// Loading: `name` of `dir` is another link of upper entry `i`.
    pub(super) fn link(&mut self, dir: u32, name: &[u8], i: u32) {
        if let Some(entry) = self.entries.get_mut(&i) {
            entry.names.push((dir, name.to_vec()));
        }
        self.delta(dir).insert(name.to_vec(), Some(i));
    }

    /// An empty state over `lower`, fresh indexes starting past it.
    pub(super) fn over(lower: &dyn Lower<'_>) -> State {
        State {
            next: lower.len() as u32,
            ..State::default()
        }
    }

    fn kind(&self, lower: &dyn Lower<'_>, i: u32) -> Option<FileKind> {
        match self.entries.get(&i) {
            Some(entry) => Some(entry.kind),
            None => lower.kind(i),
        }
    }

    fn is_upper(&self, i: u32) -> bool {
        i == 0 || self.entries.get(&i).is_some_and(|e| e.upper)
    }

    /// Where entry `i` is linked (its first name); `None` for the root and detached entries.
    fn location<'r, 'l: 'r>(&'r self, lower: &dyn Lower<'l>, i: u32) -> Option<(u32, &'r [u8])> {
        if i == 0 {
            return None;
        }
        match self.entries.get(&i) {
            Some(entry) => entry.names.first().map(|(p, n)| (*p, n.as_slice())),
            None => lower.location(i),
        }
    }

    /// The parent of entry `i` (the root and detached entries are their own).
    fn parent(&self, lower: &dyn Lower<'_>, i: u32) -> u32 {
        self.location(lower, i).map_or(i, |(p, _)| p)
    }

    /// Whether `a` is directory `i` or one of its parents.
    fn has_ancestor(&self, lower: &dyn Lower<'_>, i: u32, a: u32) -> bool {
        let mut at = i;
        for _ in 0..MAX_DEPTH {
            if at == a {
                return true;
            }
            let parent = self.parent(lower, at);
            if at == 0 || parent == at {
                return false;
            }
            at = parent;
        }
        false
    }

    /// Entry `i`'s path relative to the scratch; `None` when it or a parent is detached.
    fn path(&self, lower: &dyn Lower<'_>, i: u32) -> Option<PathBuf> {
        let mut parts = Vec::new();
        let mut at = i;
        while at != 0 {
            let (parent, name) = self.location(lower, at)?;
            parts.push(name);
            at = parent;
            if parts.len() > MAX_DEPTH {
                return None;
            }
        }
        Some(parts.iter().rev().map(|n| os(n)).collect())
    }

    /// Whether a lower entry named `name` lies under directory `dir` (hidden or not).
    fn lower_has(&self, lower: &dyn Lower<'_>, dir: u32, name: &[u8]) -> bool {
        lower.child(dir, name).is_some()
    }

    fn child(&self, lower: &dyn Lower<'_>, dir: u32, name: &[u8]) -> Option<u32> {
        if let Some(found) = self.dirs.get(&dir).and_then(|d| d.get(name)) {
            return *found;
        }
        lower.child(dir, name)
    }

    /// The entries of directory `dir`, by name.
    fn list<'r, 'l: 'r>(&'r self, lower: &dyn Lower<'l>, dir: u32) -> Vec<(&'r [u8], u32)> {
        let delta = self.dirs.get(&dir);
        let mut out: Vec<(&'r [u8], u32)> = lower.list(dir);
        if let Some(delta) = delta {
            out.retain(|(name, _)| !delta.contains_key(*name));
            out.extend(
                delta
                    .iter()
                    .filter_map(|(n, i)| i.map(|i| (n.as_slice(), i))),
            );
            out.sort_by(|a, b| a.0.cmp(b.0));
        }
        out
    }

    fn is_empty_dir(&self, lower: &dyn Lower<'_>, dir: u32) -> bool {
        self.list(lower, dir).is_empty()
    }

    /// The entry of `i`, made from its lower entry on its first change.
    fn entry(&mut self, lower: &dyn Lower<'_>, i: u32) -> &mut Entry {
        self.entries.entry(i).or_insert_with(|| Entry {
            kind: lower.kind(i).unwrap_or(FileKind::File),
            names: lower.names(i),
            upper: false,
        })
    }

    fn delta(&mut self, dir: u32) -> &mut Delta {
        self.dirs.entry(dir).or_default()
    }

    /// Takes `name` out of `dir`, which held entry `i` under it.
    fn unname(&mut self, lower: &dyn Lower<'_>, dir: u32, name: &[u8], i: u32) {
        if self.lower_has(lower, dir, name) {
            self.delta(dir).insert(name.to_vec(), None);
        } else {
            self.delta(dir).remove(name);
        }
        self.entry(lower, i)
            .names
            .retain(|(p, n)| !(*p == dir && n == name));
    }

    fn fresh(&mut self) -> Result<u32, FsError> {
        let index = self.next;
        self.next = index
            .checked_add(1)
            .ok_or_else(|| FsError::Invalid("the view has no node ids left".into()))?;
        Ok(index)
    }
}

/// The overlay's state behind its lock: what changed, and what it changed it over.
#[derive(Debug, Default)]
struct Locked {
    /// The last commit's frozen generation; `None` before the first commit (the changes lie
    /// on the view's layers).
    base: Option<Arc<Frozen>>,
    state: State,
}

impl Locked {
    /// The state and its lower, for reading.
    fn parts<'a>(&'a self, view: &'a View) -> (&'a State, Below<'a>) {
        (&self.state, below(view, &self.base))
    }

    /// The state and its lower, for a change.
    fn split<'a>(&'a mut self, view: &'a View) -> (&'a mut State, Below<'a>) {
        (&mut self.state, below(view, &self.base))
    }
}

fn below<'a>(view: &'a View, base: &'a Option<Arc<Frozen>>) -> Below<'a> {
    Below {
        view,
        generation: base.as_deref(),
    }
}

/// A frozen generation: the overlay as it was at a commit, read-only, its upper entries
/// moved into `dir` (a temp name in the scratch, so loading the scratch removes it and
/// walkers skip it). It serves what the runtime saw, under the same indexes, until the
/// runtime ends.
#[derive(Debug)]
pub(super) struct Frozen {
    dir: PathBuf,
    state: State,
    base: Option<Arc<Frozen>>,
}

/// The lower of an overlay's current state: the view's layers, or a frozen generation (over
/// its own lower).
#[derive(Debug, Clone, Copy)]
pub(super) struct Below<'a> {
    view: &'a View,
    generation: Option<&'a Frozen>,
}

impl<'a> Below<'a> {
    /// The lower of generation `generation`.
    fn of(&self, generation: &'a Frozen) -> Below<'a> {
        below(self.view, &generation.base)
    }
}

impl<'a> Lower<'a> for Below<'a> {
    fn len(&self) -> usize {
        match self.generation {
            None => self.view.len(),
            Some(g) => g.state.next as usize,
        }
    }

    fn kind(&self, i: u32) -> Option<FileKind> {
        match self.generation {
            None => (&self.view).kind(i),
            Some(g) => g.state.kind(&self.of(g), i),
        }
    }

    fn location(&self, i: u32) -> Option<(u32, &'a [u8])> {
        match self.generation {
            None => self.view.location(i),
            Some(g) => g.state.location(&self.of(g), i),
        }
    }

    fn names(&self, i: u32) -> Vec<(u32, Vec<u8>)> {
        match self.generation {
            None => (&self.view).names(i),
            Some(g) => match g.state.entries.get(&i) {
                Some(entry) => entry.names.clone(),
                None => self.of(g).names(i),
            },
        }
    }

    fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        match self.generation {
            None => (&self.view).child(dir, name),
            Some(g) => {
                let lower = self.of(g);
                (g.state.kind(&lower, dir) == Some(FileKind::Directory))
                    .then(|| g.state.child(&lower, dir, name))
                    .flatten()
            }
        }
    }

    fn list(&self, dir: u32) -> Vec<(&'a [u8], u32)> {
        match self.generation {
            None => self.view.list(dir),
            Some(g) => {
                let lower = self.of(g);
                match g.state.kind(&lower, dir) == Some(FileKind::Directory) {
                    true => g.state.list(&lower, dir),
                    false => Vec::new(),
                }
            }
        }
    }

    fn attr(&self, i: u32) -> Result<Attr, FsError> {
        match self.generation {
            None => (&self.view).attr(i),
            Some(g) => attr_in(&g.dir, &g.state, &self.of(g), i),
        }
    }

    fn open(&self, i: u32) -> Result<File, FsError> {
        match self.generation {
            None => (&self.view).open(i),
            Some(g) => {
                let lower = self.of(g);
                check_file(&g.state, &lower, i)?;
                if !g.state.is_upper(i) {
                    return lower.open(i);
                }
                let path = upper_path(&g.dir, &g.state, &lower, i)?;
                // Read-only: a generation never changes; a write copies the file up first.
                fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(failed(&path))
            }
        }
    }

    fn target(&self, i: u32) -> Result<Vec<u8>, FsError> {
        match self.generation {
            None => (&self.view).target(i),
            Some(g) => {
                let lower = self.of(g);
                if !g.state.is_upper(i) {
                    return lower.target(i);
                }
                let path = upper_path(&g.dir, &g.state, &lower, i)?;
                fs::read_link(&path)
                    .map(|t| t.into_os_string().into_encoded_bytes())
                    .map_err(failed(&path))
            }
        }
    }

    fn node_id(&self, i: u32) -> NodeId {
        self.view.node_id(i)
    }
}

/// Entry `i`'s path under upper directory `dir`; detached entries have none.
fn upper_path(dir: &Path, st: &State, lower: &dyn Lower<'_>, i: u32) -> Result<PathBuf, FsError> {
    st.path(lower, i)
        .map(|rel| dir.join(rel))
        .ok_or_else(|| FsError::StaleNode(lower.node_id(i)))
}

/// The attributes of entry `i` of state `st`, whose upper entries lie under `dir`.
fn attr_in(dir: &Path, st: &State, lower: &dyn Lower<'_>, i: u32) -> Result<Attr, FsError> {
    if i == 0 {
        return lower.attr(0);
    }
    let kind = st
        .kind(lower, i)
        .ok_or_else(|| FsError::StaleNode(lower.node_id(i)))?;
    let dir_links = || {
        2 + st
            .list(lower, i)
            .iter()
            .filter(|(_, c)| st.kind(lower, *c) == Some(FileKind::Directory))
            .count() as u32
    };
    if !st.is_upper(i) {
        let mut attr = lower.attr(i)?;
        if kind == FileKind::Directory && st.dirs.contains_key(&i) {
            attr.nlink = dir_links();
        }
        if st.entries.get(&i).is_some_and(|e| e.names.is_empty()) {
            // Removed (and maybe still open): no name links to it any more.
            attr.nlink = 0;
        }
        return Ok(attr);
    }
    let path = upper_path(dir, st, lower, i)?;
    let meta = fs::symlink_metadata(&path).map_err(failed(&path))?;
    let nlink = if kind == FileKind::Directory {
        dir_links()
    } else {
        meta.nlink() as u32
    };
    Ok(attr_of(&meta, lower.node_id(i), kind, nlink))
}

/// What a new entry is made as.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Make<'a> {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink to this target.
    Symlink(&'a [u8]),
}

impl Edit {
    /// The overlay of `lower` with `scratch` on top, loading what an earlier runtime left in a
    /// durable scratch (and removing the core's leftover temp files).
    pub(crate) fn load(scratch: Scratch, view: &View) -> Edit {
        let lower = &view;
        let mut state = State::over(lower);
        let mut links = HashMap::new();
        super::load::load_dir(&mut state, lower, 0, scratch.dir(), &mut links);
        let changed = !state.entries.is_empty() || !state.dirs.is_empty();
        if changed {
            tracing::info!(scratch = %scratch.dir().display(), entries = state.entries.len(), "loaded the changes of a scratch");
        }
        Edit {
            scratch,
            changed: AtomicBool::new(changed),
            state: RwLock::new(Locked { base: None, state }),
            temps: AtomicU64::new(0),
            copying: Mutex::default(),
            copied: Condvar::new(),
            gate: Gate::default(),
            generations: AtomicU64::new(0),
        }
    }

    /// Gives the scratch back, for an overlay that was not put in place.
    pub(crate) fn into_scratch(self) -> Scratch {
        self.scratch
    }

    /// The scratch directory.
    pub(crate) fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    /// Whether anything changed (or a loaded scratch held changes).
    pub(crate) fn changed(&self) -> bool {
        self.changed.load(Ordering::Acquire)
    }

    /// The commit gate: held by a change that outlives a call here (a frontend's write into
    /// the file [`Edit::writable`] handed out).
    pub(crate) fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The changes since the last commit (or the start), over what the view showed then.
    pub(crate) fn diff(&self, view: &View) -> Result<Vec<super::Change>, super::DiffError> {
        // A generation never changes: the walk needs no lock, so changes go on meanwhile.
        let base = self.read().base.clone();
        super::diff::diff_over(&below(view, &base), self.scratch.dir())
    }

    /// Commits: with the gate closed, the scratch's tree goes to `write`; when it succeeds,
    /// the view carries on from it ([`Edit::rebase`]). A failed `write` changes nothing.
    pub(crate) fn commit<T, E>(
        &self,
        view: &View,
        write: impl FnOnce(&Node) -> Result<T, E>,
    ) -> Result<T, CommitError<E>> {
        let _closed = self.gate.close();
        let tree = {
            let g = self.read();
            let (_, lower) = g.parts(view);
            commit_tree(&lower, self.scratch.dir())?
        };
        let out = write(&tree).map_err(CommitError::Write)?;
        self.rebase()?;
        Ok(out)
    }

    /// Throws away changes since the last commit (or the start), with the gate closed:
    /// everything when `paths` is empty (or names the root), else the changes at each path
    /// and below it (docs/SEMANTICS.md, "Reset"). Returns what the kernel must forget.
    pub(crate) fn reset(
        &self,
        view: &View,
        paths: &[PathBuf],
    ) -> Result<Vec<Invalidation>, ResetError> {
        let mut parsed = Vec::new();
        for path in paths {
            let mut names = Vec::new();
            for part in path.components() {
                match part {
                    Component::RootDir | Component::CurDir if names.is_empty() => {}
                    Component::Normal(name) => names.push(name.as_bytes().to_vec()),
                    _ => return Err(ResetError::Invalid(path.clone())),
                }
            }
            parsed.push((path, names));
        }
        let _closed = self.gate.close();
        let mut g = self.write();
        let (st, lower) = g.split(view);
        let lower = &lower;
        let mut out = Vec::new();
        if parsed.is_empty() || parsed.iter().any(|(_, names)| names.is_empty()) {
            self.reset_all(st, lower, &mut out)?;
        } else {
            for (path, names) in &parsed {
                self.reset_path(st, lower, path, names, &mut out)?;
            }
        }
        let mut seen = HashSet::new();
        // The root's attributes are the same in every view and never change.
        out.retain(|i| *i != Invalidation::Node(crate::node::ROOT) && seen.insert(i.clone()));
        tracing::info!(scratch = %self.scratch.dir().display(), paths = paths.len(), invalidations = out.len(), "reset");
        Ok(out)
    }

    /// Resets every change: the scratch is emptied (but for frozen generations).
    fn reset_all(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        out: &mut Vec<Invalidation>,
    ) -> Result<(), ResetError> {
        for (&dir, delta) in &st.dirs {
            out.extend(delta.keys().map(|name| Invalidation::Entry {
                parent: lower.node_id(dir),
                name: name.clone(),
            }));
            out.push(Invalidation::Node(lower.node_id(dir)));
        }
        // A removed file still open (copied up, no name) is no change anyone sees: it stays,
        // and its open file with it.
        let detached = |i: u32, e: &Entry| {
            e.upper && e.names.is_empty() && e.kind == FileKind::File && lower.location(i).is_none()
        };
        out.extend(
            st.entries
                .iter()
                .filter(|(i, e)| !detached(**i, e))
                .map(|(&i, _)| Invalidation::Node(lower.node_id(i))),
        );
        let root = self.scratch.dir();
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ResetError::Scratch { path, source }
        };
        for entry in fs::read_dir(root).map_err(failed(root))? {
            let name = entry.map_err(failed(root))?.file_name();
            if !name.as_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                let path = root.join(&name);
                remove_any(&path).map_err(failed(&path))?;
            }
        }
        st.entries.retain(|i, e| detached(*i, e));
        st.dirs.clear();
        Ok(())
    }

    /// Resets the changes at view path `path` (its `names`) and below.
    fn reset_path(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        path: &Path,
        names: &[Vec<u8>],
        out: &mut Vec<Invalidation>,
    ) -> Result<(), ResetError> {
        let failed = |at: &Path| {
            let at = at.to_path_buf();
            move |source| ResetError::Scratch { path: at, source }
        };
        let scratch_err = |err: FsError| ResetError::Scratch {
            path: path.to_path_buf(),
            source: io::Error::from_raw_os_error(err.to_errno()),
        };
        let Some((name, parents)) = names.split_last() else {
            return Err(ResetError::Invalid(path.to_path_buf()));
        };
        let mut dir = 0;
        for part in parents {
            dir = st
                .child(lower, dir, part)
                .filter(|&c| st.kind(lower, c) == Some(FileKind::Directory))
                .ok_or_else(|| ResetError::NotFound(path.to_path_buf()))?;
        }
        let entry = |parent: u32, name: &[u8]| Invalidation::Entry {
            parent: lower.node_id(parent),
            name: name.to_vec(),
        };
        out.push(entry(dir, name));
        let current = st.child(lower, dir, name);
        let below = lower.child(dir, name);
        if st.is_upper(dir) {
            let up = self.upper_path(st, lower, dir).map_err(scratch_err)?;
            let at = up.join(os(name));
            if fs::symlink_metadata(&at).is_ok() {
                // Out of sight at once, then removed.
                let tmp = self.temp_in(&up);
                fs::rename(&at, &tmp).map_err(failed(&at))?;
                if let Err(err) = remove_any(&tmp) {
                    tracing::warn!(path = %tmp.display(), error = %err, "cannot remove a reset entry's leftovers");
                }
            }
            remove_whiteout(&up, name).map_err(scratch_err)?;
        }
        for i in current
            .into_iter()
            .chain(below.filter(|&l| Some(l) != current))
        {
            if st.entries.contains_key(&i) || st.dirs.contains_key(&i) {
                self.forget_subtree(st, lower, i, (dir, name), out)?;
            }
            out.push(Invalidation::Node(lower.node_id(i)));
        }
        if let Some(delta) = st.dirs.get_mut(&dir) {
            delta.remove(name.as_slice());
        }
        Ok(())
    }

    /// Forgets the changes of entry `c`, linked as `at`, and of what lies below it: a lower
    /// entry shows its lower self again, at its lower path only (its other names go, as an
    /// unlink takes them); a new one is gone, but for its hard links elsewhere. The scratch
    /// below `at` is gone already.
    fn forget_subtree(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        c: u32,
        at: (u32, &[u8]),
        out: &mut Vec<Invalidation>,
    ) -> Result<(), ResetError> {
        out.push(Invalidation::Node(lower.node_id(c)));
        let others: Vec<(u32, Vec<u8>)> = st.entries.get(&c).map_or_else(Vec::new, |e| {
            e.names
                .iter()
                .filter(|(p, n)| !(*p == at.0 && n == at.1))
                .cloned()
                .collect()
        });
        if lower.kind(c).is_none() && !others.is_empty() {
            if let Some(e) = st.entries.get_mut(&c) {
                e.names.retain(|(p, n)| !(*p == at.0 && n == at.1));
            }
            return Ok(());
        }
        for (p, n) in others {
            self.unlink_name(st, lower, p, &n)?;
            out.push(Invalidation::Entry {
                parent: lower.node_id(p),
                name: n,
            });
        }
        if st.kind(lower, c) == Some(FileKind::Directory) {
            let mut children: Vec<(Vec<u8>, u32)> = st
                .list(lower, c)
                .into_iter()
                .chain(lower.list(c))
                .map(|(n, i)| (n.to_vec(), i))
                .collect();
            children.sort_by_key(|(_, i)| *i);
            children.dedup_by_key(|(_, i)| *i);
            for (name, child) in children {
                if st.entries.contains_key(&child) || st.dirs.contains_key(&child) {
                    self.forget_subtree(st, lower, child, (c, &name), out)?;
                }
            }
            st.dirs.remove(&c);
        }
        st.entries.remove(&c);
        Ok(())
    }

    /// Takes name `name` of directory `p` away in the scratch and the state, as an unlink
    /// does (a whiteout where the lower has the name); a directory already gone is fine.
    fn unlink_name(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        p: u32,
        name: &[u8],
    ) -> Result<(), ResetError> {
        let failed = |at: &Path| {
            let at = at.to_path_buf();
            move |source| ResetError::Scratch { path: at, source }
        };
        if let Some(i) = st.child(lower, p, name)
            && let Ok(up) = self.upper_path(st, lower, p)
        {
            let at = up.join(os(name));
            remove_any(&at).map_err(failed(&at))?;
            if st.lower_has(lower, p, name) {
                match write_whiteout(&up, name) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => {
                        return Err(failed(&up)(err));
                    }
                    _ => {}
                }
            }
            st.unname(lower, p, name, i);
        }
        Ok(())
    }

    /// After a commit: the scratch's entries move (renames in one filesystem) into a frozen
    /// generation's directory, the current state becomes that generation, and an empty state
    /// over it carries on with the next fresh index. Nothing the view shows changes, no node
    /// id changes, and open files keep their files (the same inodes, moved).
    fn rebase<E>(&self) -> Result<(), CommitError<E>> {
        let mut g = self.write();
        let root = self.scratch.dir();
        let failed = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CommitError::Rebase { path, source }
        };
        let mut dir;
        loop {
            let n = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
            dir = root.join(format!("{TEMP_PREFIX}gen-{n}"));
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                other => break other.map_err(failed(&dir))?,
            }
        }
        let names = fs::read_dir(root)
            .and_then(|d| {
                d.map(|e| e.map(|e| e.file_name()))
                    .collect::<io::Result<Vec<_>>>()
            })
            .map_err(failed(root))?;
        let mut moved = Vec::new();
        for name in names {
            if name.as_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                continue;
            }
            if let Err(err) = fs::rename(root.join(&name), dir.join(&name)) {
                // Put back what moved: the view stays as it was, over the old stack.
                for back in moved.iter().rev() {
                    if let Err(err) = fs::rename(dir.join(back), root.join(back)) {
                        tracing::error!(name = ?back, error = %err, "cannot move a scratch entry back after a failed rebase");
                    }
                }
                let _ = fs::remove_dir(&dir);
                return Err(failed(&root.join(&name))(err));
            }
            moved.push(name);
        }
        let locked = &mut *g;
        let state = std::mem::take(&mut locked.state);
        let next = state.next;
        locked.base = Some(Arc::new(Frozen {
            dir: dir.clone(),
            state,
            base: locked.base.take(),
        }));
        // Removed files still open live only in their open files (no name, so in no
        // commit): they stay the new state's, written in place as before.
        let detached = locked.base.as_ref().map_or_else(HashMap::new, |g| {
            g.state
                .entries
                .iter()
                .filter(|(_, e)| e.upper && e.names.is_empty() && e.kind == FileKind::File)
                .map(|(&i, e)| {
                    let entry = Entry {
                        kind: e.kind,
                        names: Vec::new(),
                        upper: true,
                    };
                    (i, entry)
                })
                .collect()
        });
        locked.state = State {
            next,
            entries: detached,
            ..State::default()
        };
        tracing::info!(scratch = %root.display(), generation = %dir.display(), "the view carries on from its commit");
        Ok(())
    }

    fn read(&self) -> RwLockReadGuard<'_, Locked> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The lock for a change: from now on requests take the overlay's way.
    fn write(&self) -> RwLockWriteGuard<'_, Locked> {
        self.changed.store(true, Ordering::Release);
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn temp_in(&self, dir: &Path) -> PathBuf {
        let n = self.temps.fetch_add(1, Ordering::Relaxed);
        dir.join(format!("{TEMP_PREFIX}{}.{n}", std::process::id()))
    }

    fn stale(lower: &dyn Lower<'_>, i: u32) -> FsError {
        FsError::StaleNode(lower.node_id(i))
    }

    /// Entry `i`'s scratch path; detached entries have none.
    fn upper_path(&self, st: &State, lower: &dyn Lower<'_>, i: u32) -> Result<PathBuf, FsError> {
        upper_path(self.scratch.dir(), st, lower, i)
    }

    // ---- reads ----

    /// The kind of entry `i`.
    pub(crate) fn kind(&self, view: &View, i: u32) -> Result<FileKind, FsError> {
        let g = self.read();
        let (st, lower) = g.parts(view);
        st.kind(&lower, i).ok_or_else(|| Self::stale(&lower, i))
    }

    fn attr_in(&self, st: &State, lower: &dyn Lower<'_>, i: u32) -> Result<Attr, FsError> {
        attr_in(self.scratch.dir(), st, lower, i)
    }

    /// The attributes of entry `i`.
    pub(crate) fn attr(&self, view: &View, i: u32) -> Result<Attr, FsError> {
        let g = self.read();
        let (st, lower) = g.parts(view);
        self.attr_in(st, &lower, i)
    }

    /// The attributes of a detached entry `i`, from the file still open for it.
    pub(crate) fn attr_of_open(&self, view: &View, i: u32, file: &File) -> Result<Attr, FsError> {
        let kind = self.kind(view, i)?;
        let meta = file.metadata().map_err(|source| FsError::Scratch {
            path: PathBuf::from(format!("node {}", view.node_id(i))),
            source,
        })?;
        Ok(attr_of(&meta, view.node_id(i), kind, meta.nlink() as u32))
    }

    /// The entry named `name` in directory `dir` (node id `parent`, for errors).
    pub(crate) fn lookup(
        &self,
        view: &View,
        dir: u32,
        parent: NodeId,
        name: &[u8],
    ) -> Result<Attr, FsError> {
        let g = self.read();
        let (st, lower) = g.parts(view);
        let lower = &lower;
        if st.kind(lower, dir) != Some(FileKind::Directory) {
            return Err(FsError::NotADirectory(parent));
        }
        let found = match name {
            b"." => Some(dir),
            b".." => Some(st.parent(lower, dir)),
            _ => st.child(lower, dir, name),
        };
        let index = found.ok_or_else(|| not_found(parent, name))?;
        self.attr_in(st, lower, index)
    }

    /// Lists directory `dir` (node id `node`) from `offset`, as [`crate::vfs::Vfs::readdir`]:
    /// offsets 1 and 2 are `.` and `..`, each entry's is its position plus 3. Attributes are
    /// read only for the entries handed out, so a large directory listed in many requests is
    /// not read whole each time.
    pub(crate) fn readdir(
        &self,
        view: &View,
        dir: u32,
        node: NodeId,
        offset: u64,
        replier: &mut dyn DirectoryReplier,
    ) -> Result<(), FsError> {
        let g = self.read();
        let (st, lower) = g.parts(view);
        let lower = &lower;
        if st.kind(lower, dir) != Some(FileKind::Directory) {
            return Err(FsError::NotADirectory(node));
        }
        let dots = [(&b"."[..], dir), (&b".."[..], st.parent(lower, dir))];
        let entries = st.list(lower, dir);
        let all = dots.into_iter().chain(entries.iter().copied());
        for (at, (name, index)) in all.enumerate().skip(offset as usize) {
            let attr = self.attr_in(st, lower, index)?;
            let offset = at as u64 + 1;
            if !replier.add(DirEntry { name, attr, offset }) {
                break;
            }
        }
        Ok(())
    }

    /// Opens file `i` for reads (and writes, when it is in the scratch).
    pub(crate) fn open(&self, view: &View, i: u32) -> Result<File, FsError> {
        let g = self.read();
        let (st, lower) = g.parts(view);
        let lower = &lower;
        check_file(st, lower, i)?;
        if st.is_upper(i) {
            let path = self.upper_path(st, lower, i)?;
            open_upper(&path).map_err(failed(&path))
        } else {
            lower.open(i)
        }
    }

    /// The target of symlink `i`.
    pub(crate) fn readlink(&self, view: &View, i: u32) -> Result<Vec<u8>, FsError> {
        let g = self.read();
        let (st, lower) = g.parts(view);
        let lower = &lower;
        let node = lower.node_id(i);
        if st.kind(lower, i) != Some(FileKind::Symlink) {
            return Err(FsError::NotASymlink(node));
        }
        if st.is_upper(i) {
            let path = self.upper_path(st, lower, i)?;
            fs::read_link(&path)
                .map(|t| t.into_os_string().into_encoded_bytes())
                .map_err(failed(&path))
        } else {
            lower.target(i)
        }
    }

    /// The statistics of the scratch's filesystem.
    pub(crate) fn statfs(&self) -> Result<StatFs, FsError> {
        let dir = self.scratch.dir();
        let c = c_path(dir).map_err(failed(dir))?;
        let mut out = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: a valid C string and a buffer of the right type.
        if unsafe { libc::statvfs(c.as_ptr(), out.as_mut_ptr()) } != 0 {
            return Err(failed(dir)(io::Error::last_os_error()));
        }
        // SAFETY: statvfs succeeded, so it filled the buffer.
        let s = unsafe { out.assume_init() };
        #[allow(clippy::useless_conversion)]
        Ok(StatFs {
            block_size: u32::try_from(s.f_frsize).unwrap_or(BLOCK_SIZE),
            blocks: u64::from(s.f_blocks),
            free_blocks: u64::from(s.f_bfree),
            available_blocks: u64::from(s.f_bavail),
            files: u64::from(s.f_files),
            free_files: u64::from(s.f_ffree),
            name_max: u32::try_from(s.f_namemax).unwrap_or(255),
        })
    }

    /// Whether entry `i` exists in the scratch (so its file can be written as it is).
    pub(crate) fn is_upper(&self, i: u32) -> bool {
        self.read().state.is_upper(i)
    }

    // ---- changes ----

    /// Copies lower entry `i` (and its parents) into the scratch, keeping the content, mode,
    /// owner and times it showed: made under a temp name, then renamed into place.
    fn copy_up(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        files: &OpenFiles,
        i: u32,
    ) -> Result<(), FsError> {
        self.copy_up_with(st, lower, files, i, None)
    }

    /// Claims the copy-up of lower entry `i`, waiting while another request copies it; `None`
    /// when it is in the scratch already. Held until the copy is in place, so a request that
    /// waited finds it there and copies nothing.
    fn claim_copy(&self, i: u32) -> Option<CopyClaim<'_>> {
        // Every WRITE asks: one already copied (the common case) takes no mutex.
        if self.is_upper(i) {
            return None;
        }
        let mut copying = lock_set(&self.copying);
        while copying.contains(&i) {
            copying = self.copied.wait(copying).unwrap_or_else(|e| e.into_inner());
        }
        if self.is_upper(i) {
            return None;
        }
        copying.insert(i);
        Some(CopyClaim { edit: self, i })
    }

    /// A copy of lower file `i`'s content, mode, owner and times in the scratch, made before
    /// the lock is taken so that other requests do not wait for a large file's copy; `None`
    /// when there is nothing to copy (or it failed: the copy under the lock says why).
    fn prepare(&self, view: &View, i: u32) -> Option<Prepared> {
        let base = {
            let g = self.read();
            if g.state.is_upper(i) {
                return None;
            }
            g.base.clone()
        };
        let lower = below(view, &base);
        if lower.kind(i) != Some(FileKind::File) {
            return None;
        }
        let tmp = Prepared(self.temp_in(self.scratch.dir()));
        self.make_copy(&lower, i, &lower.attr(i).ok()?, &tmp.0)
            .ok()?;
        Some(tmp)
    }

    /// [`Edit::copy_up`], with the copy of a file `prepared` already.
    fn copy_up_with(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        files: &OpenFiles,
        i: u32,
        prepared: Option<Prepared>,
    ) -> Result<(), FsError> {
        if st.is_upper(i) {
            return Ok(());
        }
        if lower.kind(i).is_none() {
            return Err(Self::stale(lower, i));
        }
        let Some((parent, name)) = st.location(lower, i).map(|(p, n)| (p, n.to_vec())) else {
            return self.copy_up_removed(st, lower, files, i, prepared);
        };
        let dir = self.upper_dir(st, lower, files, parent)?;
        let attr = lower.attr(i)?;
        let target = dir.join(os(&name));
        let tmp = self.temp_in(&dir);
        // Overlayfs keeps the parent's times across a copy-up: it is not a change the
        // program made to the directory.
        let parent_meta = fs::symlink_metadata(&dir).map_err(failed(&dir))?;
        let made = match &prepared {
            Some(copy) => fs::rename(&copy.0, &target).map_err(failed(&target)),
            None => self
                .make_copy(lower, i, &attr, &tmp)
                .and_then(|()| fs::rename(&tmp, &target).map_err(failed(&target))),
        };
        if let Err(err) = made {
            let _ = remove_any(&tmp);
            return Err(err);
        }
        let keep = |t: i64, n: i64| Some(TimeSet::At(timestamp(t, n)));
        if let Err(err) = set_times(
            &dir,
            keep(parent_meta.atime(), parent_meta.atime_nsec()),
            keep(parent_meta.mtime(), parent_meta.mtime_nsec()),
        ) {
            tracing::debug!(dir = %dir.display(), error = %err, "cannot keep a directory's times across a copy-up");
        }
        st.entry(lower, i).upper = true;
        if attr.kind == FileKind::File {
            // Reads through open handles and by node id see the copy from now on.
            let file = open_upper(&target).map_err(failed(&target))?;
            files.put(lower.node_id(i), file);
        }
        tracing::debug!(node = lower.node_id(i), path = %target.display(), "copied up");
        Ok(())
    }

    /// Copies up lower file `i` after its last name was removed, for a program that still
    /// has it open and changes it (overlayfs copied it up at open; a kernel that skips OPEN
    /// never told us). The copy has no name: made under a temp name in the scratch, opened
    /// into the open-file cache and kept there until the kernel forgets the node, then
    /// unlinked.
    fn copy_up_removed(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        files: &OpenFiles,
        i: u32,
        prepared: Option<Prepared>,
    ) -> Result<(), FsError> {
        let attr = lower.attr(i)?;
        if attr.kind != FileKind::File {
            return Err(Self::stale(lower, i));
        }
        let copy = match prepared {
            Some(copy) => copy,
            None => {
                let copy = Prepared(self.temp_in(self.scratch.dir()));
                self.make_copy(lower, i, &attr, &copy.0)?;
                copy
            }
        };
        let opened = open_upper(&copy.0).map_err(failed(&copy.0));
        drop(copy);
        files.put(lower.node_id(i), opened?);
        files.keep(lower.node_id(i), None);
        st.entry(lower, i).upper = true;
        tracing::debug!(
            node = lower.node_id(i),
            "copied up a removed file for its open handle"
        );
        Ok(())
    }

    /// Makes the copy of lower entry `i` at `tmp`.
    fn make_copy(
        &self,
        lower: &dyn Lower<'_>,
        i: u32,
        attr: &Attr,
        tmp: &Path,
    ) -> Result<(), FsError> {
        let io = failed(tmp);
        match attr.kind {
            FileKind::Directory => fs::DirBuilder::new().mode(0o700).create(tmp).map_err(io)?,
            FileKind::File => {
                let mut source = lower.open(i)?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(tmp)
                    .map_err(failed(tmp))?;
                io::copy(&mut source, &mut out).map_err(failed(tmp))?;
            }
            FileKind::Symlink => {
                let target = lower.target(i)?;
                std::os::unix::fs::symlink(os(&target), tmp).map_err(io)?;
            }
        }
        self.finish(tmp, attr.kind, attr.perm, attr.uid, attr.gid)?;
        let time = Some(TimeSet::At(attr.mtime));
        set_times(tmp, time, time).map_err(failed(tmp))
    }

    /// Sets owner, then mode (a chown clears setuid bits), of a new scratch entry.
    fn finish(
        &self,
        path: &Path,
        kind: FileKind,
        perm: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), FsError> {
        set_owner(path, uid, gid).map_err(failed(path))?;
        if kind != FileKind::Symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(perm & 0o7777))
                .map_err(failed(path))?;
        }
        Ok(())
    }

    /// Directory `dir`'s scratch path, copied up first when it is only below.
    fn upper_dir(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        files: &OpenFiles,
        dir: u32,
    ) -> Result<PathBuf, FsError> {
        match st.kind(lower, dir) {
            Some(FileKind::Directory) => {}
            Some(_) => return Err(FsError::NotADirectory(lower.node_id(dir))),
            None => return Err(Self::stale(lower, dir)),
        }
        self.copy_up(st, lower, files, dir)?;
        self.upper_path(st, lower, dir)
    }

    /// Makes `name` in `parent`, owned by `caller`, under a temp name first; returns its index.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &self,
        st: &mut State,
        lower: &dyn Lower<'_>,
        files: &OpenFiles,
        caller: &Caller,
        parent: u32,
        name: &[u8],
        mode: u32,
        make: Make<'_>,
    ) -> Result<(u32, PathBuf), FsError> {
        check_name(name)?;
        let parent_node = lower.node_id(parent);
        match st.kind(lower, parent) {
            Some(FileKind::Directory) => {}
            Some(_) => return Err(FsError::NotADirectory(parent_node)),
            None => return Err(FsError::StaleNode(parent_node)),
        }
        if name == b"." || name == b".." || st.child(lower, parent, name).is_some() {
            return Err(FsError::Exists {
                parent: parent_node,
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        let dir = self.upper_dir(st, lower, files, parent)?;
        let tmp = self.temp_in(&dir);
        let target = dir.join(os(name));
        let kind = match make {
            Make::File => FileKind::File,
            Make::Dir => FileKind::Directory,
            Make::Symlink(_) => FileKind::Symlink,
        };
        let made = (|| {
            match make {
                Make::File => fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map(drop),
                Make::Dir => fs::DirBuilder::new().mode(0o700).create(&tmp),
                Make::Symlink(target) => std::os::unix::fs::symlink(os(target), &tmp),
            }
            .map_err(failed(&tmp))?;
            // A directory over a hidden lower one must not show the lower one's entries.
            if kind == FileKind::Directory && st.lower_has(lower, parent, name) {
                write_opaque(&tmp)?;
            }
            let (gid, mode) = inherit_setgid(&dir, kind, mode, caller)?;
            self.finish(&tmp, kind, mode, caller.uid, gid)?;
            fs::rename(&tmp, &target).map_err(failed(&target))
        })();
        if let Err(err) = made {
            let _ = remove_any(&tmp);
            return Err(err);
        }
        remove_whiteout(&dir, name)?;
        let index = st
            .add(parent, name, kind)
            .ok_or_else(|| FsError::Invalid("the view has no node ids left".into()))?;
        tracing::debug!(node = lower.node_id(index), path = %target.display(), "made");
        Ok((index, target))
    }

    /// Makes `name` in `parent` as `what`, owned by `caller`, with permission bits `mode` (a
    /// symlink's are 0777); with `pin`, a file is opened into `files` and a handle on it keeps
    /// it there until released.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn make(
        &self,
        view: &View,
        files: &OpenFiles,
        caller: &Caller,
        (parent, name): (u32, &[u8]),
        mode: u32,
        what: Make<'_>,
        pin: bool,
    ) -> Result<Attr, FsError> {
        let _pass = self.gate.enter();
        let mode = if matches!(what, Make::Symlink(_)) {
            0o777
        } else {
            mode
        };
        let mut g = self.write();
        let (st, lower) = g.split(view);
        let lower = &lower;
        let (index, path) = self.place(st, lower, files, caller, parent, name, mode, what)?;
        if pin {
            let file = open_upper(&path).map_err(failed(&path))?;
            files.put(lower.node_id(index), file);
            files.get(lower.node_id(index), true, || {
                Err(Self::stale(lower, index))
            })?;
        }
        self.attr_in(st, lower, index)
    }

    /// Links file `i` as `name` in `parent`.
    pub(crate) fn link(
        &self,
        view: &View,
        files: &OpenFiles,
        i: u32,
        parent: u32,
        name: &[u8],
    ) -> Result<Attr, FsError> {
        let _pass = self.gate.enter();
        check_name(name)?;
        let mut g = self.write();
        let (st, lower) = g.split(view);
        let lower = &lower;
        let node = lower.node_id(i);
        let parent_node = lower.node_id(parent);
        if st.kind(lower, parent) != Some(FileKind::Directory) {
            return Err(FsError::NotADirectory(parent_node));
        }
        // As link(2): a taken name first, then what the source is.
        if st.child(lower, parent, name).is_some() {
            return Err(FsError::Exists {
                parent: parent_node,
                name: String::from_utf8_lossy(name).into_owned(),
            });
        }
        match st.kind(lower, i) {
            None => return Err(FsError::StaleNode(node)),
            Some(FileKind::Directory) => {
                return Err(FsError::Unsupported("a hard link to a directory"));
            }
            Some(_) => {}
        }
        self.copy_up(st, lower, files, i)?;
        let from = self.upper_path(st, lower, i)?;
        let dir = self.upper_dir(st, lower, files, parent)?;
        let target = dir.join(os(name));
        fs::hard_link(&from, &target).map_err(failed(&target))?;
        remove_whiteout(&dir, name)?;
        st.entry(lower, i).names.push((parent, name.to_vec()));
        st.delta(parent).insert(name.to_vec(), Some(i));
        self.attr_in(st, lower, i)
    }

    /// Removes `name` from `parent`: a non-directory, or with `dir` an empty directory. The
    /// whiteout goes first, so a crash never shows the lower entry again.
    pub(crate) fn remove(
        &self,
        view: &View,
        files: &OpenFiles,
        parent: u32,
        name: &[u8],
        dir: bool,
    ) -> Result<(), FsError> {
        let _pass = self.gate.enter();
        let mut g = self.write();
        let (st, lower) = g.split(view);
        let lower = &lower;
        let parent_node = lower.node_id(parent);
        if st.kind(lower, parent) != Some(FileKind::Directory) {
            return Err(FsError::NotADirectory(parent_node));
        }
        let index = st
            .child(lower, parent, name)
            .ok_or_else(|| not_found(parent_node, name))?;
        let node = lower.node_id(index);
        let kind = st.kind(lower, index).ok_or(FsError::StaleNode(node))?;
        match (kind == FileKind::Directory, dir) {
            (true, false) => return Err(FsError::IsADirectory(node)),
            (false, true) => return Err(FsError::NotADirectory(node)),
            (true, true) if !st.is_empty_dir(lower, index) => return Err(FsError::NotEmpty(node)),
            _ => {}
        }
        let up = self.upper_dir(st, lower, files, parent)?;
        if st.lower_has(lower, parent, name) {
            write_whiteout(&up, name).map_err(failed(&up))?;
        }
        if st.is_upper(index) {
            let path = up.join(os(name));
            if dir {
                // Out of sight at once, then emptied of its whiteouts and removed.
                let tmp = self.temp_in(&up);
                fs::rename(&path, &tmp).map_err(failed(&path))?;
                if let Err(err) = fs::remove_dir_all(&tmp) {
                    tracing::warn!(path = %tmp.display(), error = %err, "cannot remove a removed directory's leftovers");
                }
            } else {
                keep_if_last(st, lower, files, index, &path);
                fs::remove_file(&path).map_err(failed(&path))?;
            }
        }
        st.unname(lower, parent, name, index);
        tracing::debug!(node, "removed");
        Ok(())
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`.
    pub(crate) fn rename(
        &self,
        view: &View,
        files: &OpenFiles,
        (parent, name): (u32, &[u8]),
        (new_parent, new_name): (u32, &[u8]),
        mode: RenameMode,
    ) -> Result<(), FsError> {
        let _pass = self.gate.enter();
        if mode == RenameMode::Exchange {
            return Err(FsError::Invalid("RENAME_EXCHANGE is not supported".into()));
        }
        check_name(new_name)?;
        let mut g = self.write();
        let (st, lower) = g.split(view);
        let lower = &lower;
        for dir in [parent, new_parent] {
            if st.kind(lower, dir) != Some(FileKind::Directory) {
                return Err(FsError::NotADirectory(lower.node_id(dir)));
            }
        }
        let src = st
            .child(lower, parent, name)
            .ok_or_else(|| not_found(lower.node_id(parent), name))?;
        let src_node = lower.node_id(src);
        let kind = st.kind(lower, src).ok_or(FsError::StaleNode(src_node))?;
        let dst = st.child(lower, new_parent, new_name);
        if dst.is_some() && mode == RenameMode::NoReplace {
            return Err(FsError::Exists {
                parent: lower.node_id(new_parent),
                name: String::from_utf8_lossy(new_name).into_owned(),
            });
        }
        // As the kernel checks, in its order: the VFS's (a source that holds the target's
        // directory, a target that holds the source's, the same file, the kinds), then
        // overlayfs's (EXDEV for a directory with a lower part, then the target's emptiness).
        if st.has_ancestor(lower, new_parent, src) {
            return Err(FsError::Invalid(
                "a directory cannot move into itself".into(),
            ));
        }
        if let Some(d) = dst {
            let d_node = lower.node_id(d);
            if st.has_ancestor(lower, parent, d) {
                return Err(FsError::NotEmpty(d_node));
            }
            if d == src {
                return Ok(());
            }
            let d_kind = st.kind(lower, d).ok_or(FsError::StaleNode(d_node))?;
            match (kind == FileKind::Directory, d_kind == FileKind::Directory) {
                (true, false) => return Err(FsError::NotADirectory(d_node)),
                (false, true) => return Err(FsError::IsADirectory(d_node)),
                _ => {}
            }
        }
        if kind == FileKind::Directory && lower.kind(src).is_some() {
            return Err(FsError::CrossDevice(src_node));
        }
        if let Some(d) = dst
            && st.kind(lower, d) == Some(FileKind::Directory)
            && !st.is_empty_dir(lower, d)
        {
            return Err(FsError::NotEmpty(lower.node_id(d)));
        }
        self.copy_up(st, lower, files, src)?;
        let from_dir = self.upper_dir(st, lower, files, parent)?;
        let to_dir = self.upper_dir(st, lower, files, new_parent)?;
        let from = from_dir.join(os(name));
        let to = to_dir.join(os(new_name));
        if kind == FileKind::Directory && st.lower_has(lower, new_parent, new_name) {
            write_opaque(&from)?;
        }
        // An empty directory replaced: its upper part may hold whiteouts, which rename(2)
        // would refuse; moved aside first, removed after.
        let mut aside = None;
        if let Some(d) = dst
            && st.kind(lower, d) == Some(FileKind::Directory)
            && st.is_upper(d)
        {
            let tmp = self.temp_in(&to_dir);
            fs::rename(&to, &tmp).map_err(failed(&to))?;
            aside = Some(tmp);
        }
        if st.lower_has(lower, parent, name) {
            write_whiteout(&from_dir, name).map_err(failed(&from_dir))?;
        }
        if let Some(d) = dst {
            keep_if_last(st, lower, files, d, &to);
        }
        fs::rename(&from, &to).map_err(failed(&to))?;
        if let Some(tmp) = aside
            && let Err(err) = fs::remove_dir_all(&tmp)
        {
            tracing::warn!(path = %tmp.display(), error = %err, "cannot remove a replaced directory's leftovers");
        }
        remove_whiteout(&to_dir, new_name)?;
        if let Some(d) = dst {
            st.entry(lower, d)
                .names
                .retain(|(p, n)| !(*p == new_parent && n == new_name));
        }
        st.unname(lower, parent, name, src);
        st.entry(lower, src)
            .names
            .push((new_parent, new_name.to_vec()));
        st.delta(new_parent).insert(new_name.to_vec(), Some(src));
        tracing::debug!(node = src_node, to = %to.display(), "renamed");
        Ok(())
    }

    /// Changes entry `i`'s attributes, copying it up first.
    pub(crate) fn setattr(
        &self,
        view: &View,
        files: &OpenFiles,
        i: u32,
        changes: &SetAttr,
    ) -> Result<Attr, FsError> {
        let _pass = self.gate.enter();
        if i == 0 {
            return Err(FsError::Unsupported("changing the root"));
        }
        let node = view.node_id(i);
        let _claim = self.claim_copy(i);
        let prepared = self.prepare(view, i);
        let mut g = self.write();
        let (st, lower) = g.split(view);
        let lower = &lower;
        let kind = st.kind(lower, i).ok_or(FsError::StaleNode(node))?;
        self.copy_up_with(st, lower, files, i, prepared)?;
        let Ok(path) = self.upper_path(st, lower, i) else {
            // Detached: only its open file can still change.
            drop(g);
            let file = files.peek(node).ok_or(FsError::StaleNode(node))?;
            return self.setattr_open(view, i, &file, changes);
        };
        let io = failed(&path);
        if changes.uid.is_some() || changes.gid.is_some() {
            std::os::unix::fs::lchown(&path, changes.uid, changes.gid).map_err(failed(&path))?;
        }
        if let Some(mode) = changes.mode
            && kind != FileKind::Symlink
        {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                .map_err(failed(&path))?;
        }
        if let Some(size) = changes.size {
            if kind != FileKind::File {
                return Err(FsError::IsADirectory(node));
            }
            let file = files.get(node, false, || open_upper(&path).map_err(failed(&path)))?;
            file.set_len(size).map_err(failed(&path))?;
        }
        if changes.atime.is_some() || changes.mtime.is_some() {
            set_times(&path, changes.atime, changes.mtime).map_err(io)?;
        }
        self.attr_in(st, lower, i)
    }

    /// Changes a detached file's attributes through its open file.
    fn setattr_open(
        &self,
        view: &View,
        i: u32,
        file: &File,
        changes: &SetAttr,
    ) -> Result<Attr, FsError> {
        let path = PathBuf::from(format!("node {}", view.node_id(i)));
        let io = failed(&path);
        if let Some(mode) = changes.mode {
            file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
                .map_err(failed(&path))?;
        }
        if let Some(size) = changes.size {
            file.set_len(size).map_err(failed(&path))?;
        }
        if changes.uid.is_some() || changes.gid.is_some() {
            std::os::unix::fs::fchown(file, changes.uid, changes.gid).map_err(failed(&path))?;
        }
        if changes.atime.is_some() || changes.mtime.is_some() {
            let times = [timespec(changes.atime), timespec(changes.mtime)];
            // SAFETY: an open descriptor and an array of two timespecs.
            if unsafe { libc::futimens(std::os::fd::AsRawFd::as_raw_fd(file), times.as_ptr()) } != 0
            {
                return Err(io(io::Error::last_os_error()));
            }
        }
        self.attr_of_open(view, i, file)
    }

    /// The writable file of file `i` (node id `node`), copied up on the first change.
    pub(crate) fn writable(
        &self,
        view: &View,
        files: &OpenFiles,
        i: u32,
    ) -> Result<Arc<File>, FsError> {
        let node = view.node_id(i);
        if let Some(_claim) = self.claim_copy(i) {
            let prepared = self.prepare(view, i);
            let mut g = self.write();
            let (st, lower) = g.split(view);
            let lower = &lower;
            check_file(st, lower, i)?;
            self.copy_up_with(st, lower, files, i, prepared)?;
        }
        files.get(node, false, || self.open(view, i))
    }

    /// The value of extended attribute `name` of entry `i` (lower entries have none).
    pub(crate) fn getxattr(&self, view: &View, i: u32, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let g = self.read();
        let (st, lower) = g.parts(view);
        let lower = &lower;
        if !st.is_upper(i) {
            return Err(FsError::NoAttribute);
        }
        let path = self.upper_path(st, lower, i)?;
        sys::get_xattr(&path, name).map_err(xattr_failed(&path))
    }

    /// The extended attribute names of entry `i`.
    pub(crate) fn listxattr(&self, view: &View, i: u32) -> Result<Vec<u8>, FsError> {
        let g = self.read();
        let (st, lower) = g.parts(view);
        let lower = &lower;
        if !st.is_upper(i) {
            return Ok(Vec::new());
        }
        let path = self.upper_path(st, lower, i)?;
        sys::list_xattr(&path).map_err(failed(&path))
    }

    /// Sets (or with `value` `None`, removes) extended attribute `name` of entry `i`.
    pub(crate) fn setxattr(
        &self,
        view: &View,
        files: &OpenFiles,
        i: u32,
        name: &[u8],
        value: Option<(&[u8], XattrSet)>,
    ) -> Result<(), FsError> {
        let _pass = self.gate.enter();
        if i == 0 {
            return Err(FsError::Unsupported("changing the root"));
        }
        let mut g = self.write();
        let (st, lower) = g.split(view);
        let lower = &lower;
        if value.is_none() && !st.is_upper(i) {
            return Err(FsError::NoAttribute);
        }
        self.copy_up(st, lower, files, i)?;
        let path = self.upper_path(st, lower, i)?;
        match value {
            Some((value, how)) => sys::set_xattr(
                &path,
                name,
                value,
                how == XattrSet::Create,
                how == XattrSet::Replace,
            ),
            None => sys::remove_xattr(&path, name),
        }
        .map_err(xattr_failed(&path))
    }
}

/// An xattr failure: "no such attribute" becomes [`FsError::NoAttribute`] (its errno differs
/// by platform), anything else keeps its errno.
fn xattr_failed(path: &Path) -> impl FnOnce(io::Error) -> FsError + '_ {
    move |source| {
        #[cfg(target_os = "macos")]
        let missing = libc::ENOATTR;
        #[cfg(not(target_os = "macos"))]
        let missing = libc::ENODATA;
        if source.raw_os_error() == Some(missing) {
            FsError::NoAttribute
        } else {
            failed(path)(source)
        }
    }
}

/// Keeps the file of upper file `i` at `path` open when its last name is about to go: a
/// program may still have it open, and a kernel in no-open mode never said so.
fn keep_if_last(st: &State, lower: &dyn Lower<'_>, files: &OpenFiles, i: u32, path: &Path) {
    let last = st.entries.get(&i).is_some_and(|e| e.names.len() <= 1);
    if !last || !st.is_upper(i) || st.kind(lower, i) != Some(FileKind::File) {
        return;
    }
    let node = lower.node_id(i);
    match files.peek(node) {
        Some(_) => files.keep(node, None),
        None => match open_upper(path) {
            Ok(file) => files.keep(node, Some(file)),
            Err(err) => {
                tracing::debug!(node, path = %path.display(), error = %err, "cannot keep a removed file open");
            }
        },
    }
}

/// The group and mode of a new entry in directory `dir`, as the kernel's
/// `inode_init_owner` gives them: in a setgid directory, the directory's group, and a new
/// directory setgid too; a setgid file of a caller outside that group loses the bit (its
/// other groups are unknown here: only its own group counts).
fn inherit_setgid(
    dir: &Path,
    kind: FileKind,
    mode: u32,
    caller: &Caller,
) -> Result<(u32, u32), FsError> {
    let meta = fs::symlink_metadata(dir).map_err(failed(dir))?;
    if meta.mode() & 0o2000 == 0 {
        return Ok((caller.gid, mode));
    }
    let mode = match kind {
        FileKind::Directory => mode | 0o2000,
        FileKind::File
            if mode & 0o2010 == 0o2010 && caller.uid != 0 && caller.gid != meta.gid() =>
        {
            mode & !0o2000
        }
        _ => mode,
    };
    Ok((meta.gid(), mode))
}

/// A copy made ahead of its copy-up under a temp name; removed unless renamed into place.
struct Prepared(PathBuf);

impl Drop for Prepared {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_file(&self.0)
            && err.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %err, "cannot remove a temp copy");
        }
    }
}

/// Refuses what cannot be opened as a file: directories, symlinks (`ELOOP`, as `O_NOFOLLOW`
/// would) and unknown entries.
fn check_file(st: &State, lower: &dyn Lower<'_>, i: u32) -> Result<(), FsError> {
    let node = lower.node_id(i);
    match st.kind(lower, i) {
        None => Err(FsError::StaleNode(node)),
        Some(FileKind::Directory) => Err(FsError::IsADirectory(node)),
        Some(FileKind::Symlink) => Err(FsError::Source {
            path: st.path(lower, i).unwrap_or_default(),
            source: io::Error::from_raw_os_error(libc::ELOOP),
        }),
        Some(FileKind::File) => Ok(()),
    }
}

/// Puts the opaque marker into directory `dir`.
fn write_opaque(dir: &Path) -> Result<(), FsError> {
    let marker = dir.join(os(OPAQUE_MARKER));
    write_marker(&marker).map_err(failed(&marker))
}

/// The attributes of a scratch entry.
fn attr_of(meta: &fs::Metadata, node: NodeId, kind: FileKind, nlink: u32) -> Attr {
    Attr {
        node,
        kind,
        perm: meta.mode() & 0o7777,
        nlink,
        uid: meta.uid(),
        gid: meta.gid(),
        size: meta.size(),
        mtime: timestamp(meta.mtime(), meta.mtime_nsec()),
        ctime: timestamp(meta.ctime(), meta.ctime_nsec()),
    }
}
