//! Views: the layers of an env spec merged into one read-only tree, built once at registration
//! and never changed afterwards, so requests read it without locks.
//!
//! Layers are host directories or spfs manifests. Merge rules (the later layer wins per path,
//! SPFS-FORMAT.md §13.1, the same as the kernel's overlayfs):
//! - directories merge and the upper directory's mode wins; a file or symlink above replaces
//!   a directory below with its whole subtree, and a directory above replaces a file or
//!   symlink below (merging stops at the first non-directory, so old children never return);
//! - OCI whiteouts in a directory layer hide entries of the layers below it: `.wh.NAME` hides
//!   `NAME`, `.wh..wh..opq` hides everything below in that directory; spfs masks hide their
//!   path and everything under it; neither whiteouts nor masks ever appear;
//! - spfs entries take their kind, mode and size from the manifest, their owner from the
//!   runtime's owner and their times from the root; their content is read from payloads;
//! - symlinks are served as symlinks and never followed while building, so nothing outside a
//!   layer can leak in; sockets, FIFOs and device files are left out, as if absent;
//! - a directory that cannot be read is skipped with a log line and the rest is served.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::edit::{
    Change, CommitError, DiffError, Edit, Invalidation, OPAQUE_MARKER, ResetError, Scratch,
    TEMP_PREFIX, WHITEOUT_PREFIX,
};
use crate::error::FsError;
use crate::node::{self, NodeId, ViewId};
use crate::spec::{LayerSource, ResolvedSpec};
use spfs_storage::{Digest, EntryKind, Manifest, Repositories};

/// What kind of entry a node is. Views hold nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A regular file.
    File,
    /// A symbolic link.
    Symlink,
}

/// A point in time as seconds and nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp {
    /// Whole seconds since the epoch.
    pub secs: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
}

/// The attributes of a node, as its source entry has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// The node id (also the inode number).
    pub node: NodeId,
    /// The entry's kind.
    pub kind: FileKind,
    /// Permission bits, including setuid/setgid/sticky (no file-type bits).
    pub perm: u32,
    /// Link count: 1 for files and symlinks, 2 + subdirectories for directories.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (a symlink's is the length of its target).
    pub size: u64,
    /// Modification time of the source entry.
    pub mtime: Timestamp,
    /// Status-change time of the source entry.
    pub ctime: Timestamp,
}

impl Attr {
    /// The attributes of the root of every view: a read-only directory owned by `uid`:`gid`,
    /// stamped `time`. The root must look the same in every view (DESIGN.md §4 rule 3).
    pub fn root(uid: u32, gid: u32, time: Timestamp) -> Attr {
        Attr {
            node: crate::node::ROOT,
            kind: FileKind::Directory,
            perm: 0o555,
            nlink: 2,
            uid,
            gid,
            size: 0,
            mtime: time,
            ctime: time,
        }
    }
}

/// One entry of a view. Kept small: a view holds one per merged path.
#[derive(Debug, Clone)]
struct Node {
    name_start: u32,
    name_len: u32,
    parent: u32,
    first_child: u32,
    child_count: u32,
    nlink: u32,
    /// For an spfs file or symlink: its index in `View::payloads`.
    payload: u32,
    layer: u16,
    kind: FileKind,
    stat: Stat,
}

/// The attributes a node shows besides its kind, links and id.
#[derive(Debug, Clone, Copy)]
struct Stat {
    perm: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: Timestamp,
    ctime: Timestamp,
}

/// The file behind a view's file or symlink: where its content or target is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The entry's own file (or symlink) in a directory layer.
    LayerFile(PathBuf),
    /// An spfs payload: the file holding it, found in the first repository that has it.
    Payload {
        /// The payload's digest.
        digest: Digest,
        /// The file holding it.
        path: PathBuf,
    },
}

impl Source {
    /// The file on the host.
    pub fn path(&self) -> &Path {
        match self {
            Source::LayerFile(path) | Source::Payload { path, .. } => path,
        }
    }

    /// Opens the file for reading. `O_NOFOLLOW`: a layer file swapped for a symlink after
    /// registration must not lead outside the layer.
    pub fn open(&self) -> Result<File, FsError> {
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.path())
            .map_err(|err| self.failed(err))
    }

    /// A symlink's target: a layer's symlink is read as a link, a payload holds the target as
    /// its bytes.
    pub fn target(&self) -> Result<Vec<u8>, FsError> {
        match self {
            Source::LayerFile(path) => fs::read_link(path)
                .map(|target| target.into_os_string().into_vec())
                .map_err(|err| self.failed(err)),
            Source::Payload { path, .. } => fs::read(path).map_err(|err| self.failed(err)),
        }
    }

    /// The error for a failed open or read: a payload that vanished after it was found is
    /// missing (logged with its digest); anything else keeps its errno.
    fn failed(&self, source: io::Error) -> FsError {
        match self {
            Source::Payload { digest, path } if source.kind() == io::ErrorKind::NotFound => {
                tracing::error!(%digest, path = %path.display(), "spfs payload is missing");
                FsError::MissingPayload { digest: *digest }
            }
            Source::Payload { digest, path } => {
                tracing::error!(%digest, path = %path.display(), error = %source, "spfs payload cannot be read");
                FsError::Source {
                    path: path.clone(),
                    source,
                }
            }
            Source::LayerFile(path) => FsError::Source {
                path: path.clone(),
                source,
            },
        }
    }
}

/// A merged, read-only tree: the view one runtime sees.
#[derive(Debug)]
pub struct View {
    id: ViewId,
    /// Per layer, bottom first: its directory, or `None` for an spfs layer.
    dirs: Vec<Option<PathBuf>>,
    repos: Arc<Repositories>,
    nodes: Vec<Node>,
    names: Vec<u8>,
    payloads: Vec<Digest>,
    /// The size of its files, in [`BLOCK_SIZE`] blocks, counted once when built.
    blocks: u64,
    /// The owner (uid, gid) the view was built for.
    owner: (u32, u32),
    /// An editable view's overlay: writes land in its scratch, on top of the layers. Set once,
    /// at registration or later by [`View::make_editable`]; reads of it are one atomic load.
    edit: OnceLock<Edit>,
}

/// The block size a view counts its files' sizes in, and reports to `statfs`.
pub const BLOCK_SIZE: u32 = 4096;

/// One directory of a layer that contributes to a directory of the view.
#[derive(Debug, Clone)]
enum DirRef<'a> {
    /// A host directory.
    Path(PathBuf),
    /// A directory of a manifest: `None` is its root, else the directory's entry index.
    Manifest(&'a Manifest, Option<usize>),
}

/// A layer's directory, with the layer's index.
type DirSource<'a> = (u16, DirRef<'a>);

/// Where a candidate entry comes from.
enum Origin<'a> {
    Fs(fs::DirEntry),
    Spfs(&'a Manifest, usize),
}

/// One name offered by one layer to a directory being merged.
struct Candidate<'a> {
    name: Cow<'a, [u8]>,
    /// Position among the directory's sources, 0 = top.
    rank: u32,
    /// A whiteout or mask: hides the name in the layers below.
    hide: bool,
    kind: FileKind,
    layer: u16,
    origin: Option<Origin<'a>>,
}

/// The attributes a winning entry brings, before it becomes a node.
struct Found {
    stat: Stat,
    payload: Option<Digest>,
}

/// An entry of a merged directory, before it becomes a node.
struct Winner<'a> {
    name: Cow<'a, [u8]>,
    kind: FileKind,
    layer: u16,
    found: Found,
    /// For a directory: its sources in the layers, top first.
    sources: Vec<DirSource<'a>>,
}

impl View {
    /// Builds the view of `spec`'s layers (bottom first) under view id `id`. The root gets
    /// `root`'s attributes except its node id, which is always [`node::ROOT`]; spfs entries
    /// are owned by `owner` (uid, gid) and stamped with the root's times.
    pub fn build(id: ViewId, spec: &ResolvedSpec, root: &Attr, owner: (u32, u32)) -> View {
        let mut view = View {
            id,
            dirs: spec
                .layers
                .iter()
                .map(|l| match l {
                    LayerSource::Directory(path) => Some(path.clone()),
                    LayerSource::Spfs { .. } => None,
                })
                .collect(),
            repos: spec.repos.clone(),
            nodes: Vec::new(),
            names: Vec::new(),
            payloads: Vec::new(),
            blocks: 0,
            owner,
            edit: OnceLock::new(),
        };
        view.nodes.push(Node {
            name_start: 0,
            name_len: 0,
            parent: 0,
            first_child: 0,
            child_count: 0,
            nlink: root.nlink,
            payload: 0,
            layer: 0,
            kind: FileKind::Directory,
            stat: Stat {
                perm: root.perm,
                uid: root.uid,
                gid: root.gid,
                size: root.size,
                mtime: root.mtime,
                ctime: root.ctime,
            },
        });
        let spfs_attrs = SpfsAttrs {
            uid: owner.0,
            gid: owner.1,
            time: root.mtime,
        };
        let top_first: Vec<DirSource<'_>> = spec
            .layers
            .iter()
            .enumerate()
            .rev()
            .map(|(i, layer)| {
                let dir = match layer {
                    LayerSource::Directory(path) => DirRef::Path(path.clone()),
                    LayerSource::Spfs { manifest, .. } => DirRef::Manifest(manifest, None),
                };
                (i as u16, dir)
            })
            .collect();
        // Breadth first, so the children of every directory sit next to each other and a
        // directory's entries are one slice, sorted by name.
        let mut queue = VecDeque::new();
        queue.push_back((0u32, top_first));
        let mut scratch = Vec::new();
        while let Some((dir, sources)) = queue.pop_front() {
            let merged = merge_directory(&sources, &mut scratch, &spfs_attrs);
            let first = view.nodes.len() as u32;
            let mut subdirs = 0;
            for winner in merged {
                let index = view.nodes.len() as u32;
                if winner.kind == FileKind::Directory {
                    subdirs += 1;
                    queue.push_back((index, winner.sources));
                }
                let name_start = view.names.len() as u32;
                view.names.extend_from_slice(&winner.name);
                let found = winner.found;
                if winner.kind == FileKind::File {
                    view.blocks += found.stat.size.div_ceil(u64::from(BLOCK_SIZE));
                }
                let payload = match found.payload {
                    Some(digest) => {
                        view.payloads.push(digest);
                        view.payloads.len() as u32 - 1
                    }
                    None => 0,
                };
                view.nodes.push(Node {
                    name_start,
                    name_len: winner.name.len() as u32,
                    parent: dir,
                    first_child: 0,
                    child_count: 0,
                    nlink: if winner.kind == FileKind::Directory {
                        2
                    } else {
                        1
                    },
                    payload,
                    layer: winner.layer,
                    kind: winner.kind,
                    stat: found.stat,
                });
            }
            let count = view.nodes.len() as u32 - first;
            let node = &mut view.nodes[dir as usize];
            node.first_child = first;
            node.child_count = count;
            if dir != 0 {
                // The root's attributes are the same in every view, so its nlink stays fixed.
                node.nlink = 2 + subdirs;
            }
        }
        view.nodes.shrink_to_fit();
        view.names.shrink_to_fit();
        view.payloads.shrink_to_fit();
        view
    }

    /// This view made editable: `scratch` takes every write, on top of its layers. What an
    /// earlier runtime left in it shows at once.
    pub fn with_scratch(self, scratch: Scratch) -> View {
        if let Err(scratch) = self.make_editable(scratch) {
            // A view being built has no overlay yet; should it, the scratch is let go.
            tracing::warn!(scratch = %scratch.dir().display(), "the view was editable already");
        }
        self
    }

    /// Makes this view, which may be serving, editable with `scratch` on top (`spfs-fuse
    /// edit`). Nothing the view shows changes and every node keeps its id, so its processes
    /// carry on, open files and working directories included. A view that is editable already
    /// keeps its scratch, and `scratch` is handed back.
    pub fn make_editable(&self, scratch: Scratch) -> Result<(), Scratch> {
        if self.edit.get().is_some() {
            return Err(scratch);
        }
        self.edit
            .set(Edit::load(scratch, self))
            .map_err(Edit::into_scratch)
    }

    /// The scratch of an editable view; `None` for a read-only one.
    pub fn scratch(&self) -> Option<&Scratch> {
        self.edit.get().map(Edit::scratch)
    }

    /// Whether this editable view's scratch holds changes (made since it was registered, or
    /// left by an earlier runtime); `false` for a read-only view. A change that failed before
    /// writing anything (a name taken, say) leaves the scratch empty and counts as none.
    pub fn has_changes(&self) -> bool {
        self.edit.get().is_some_and(|edit| {
            edit.changed()
                && std::fs::read_dir(edit.scratch().dir()).is_ok_and(|mut d| {
                    // A frozen generation's directory and temp files are no changes.
                    d.any(|e| {
                        e.is_ok_and(|e| {
                            !e.file_name().as_bytes().starts_with(TEMP_PREFIX.as_bytes())
                        })
                    })
                })
        })
    }

    /// What this editable view changed since its last commit (or since it started), over
    /// the stack it then carried on from, ordered by path (`spfs-fuse diff`); empty for a
    /// read-only view.
    pub fn diff(&self) -> Result<Vec<Change>, DiffError> {
        match self.edit.get() {
            Some(edit) => edit.diff(self),
            None => Ok(Vec::new()),
        }
    }

    /// Throws away this editable view's changes since its last commit (or since it started),
    /// with its commit gate closed: all of them when `paths` is empty, else those at each path
    /// (inside the view: `/dir/file`) and below it (docs/SEMANTICS.md, "Reset"). Returns what
    /// the kernel must forget. Files the serving [`crate::Vfs`] holds open for reset entries
    /// stay as they were: serve resets through [`crate::Vfs::reset`], which also lets go of them.
    pub fn reset(&self, paths: &[PathBuf]) -> Result<Vec<Invalidation>, ResetError> {
        self.edit
            .get()
            .ok_or(ResetError::NotEditable)?
            .reset(self, paths)
    }

    /// Commits this editable view (issue 17): closes its commit gate (every change waits,
    /// reads go on), walks the scratch against the stack below it into the tree of a new
    /// layer, hands it to `write` (which writes it into a repository and records the
    /// runtime's new stack), and when `write` succeeds carries on from it: the scratch is
    /// empty again, the view shows the same entries under the same node ids, open files and
    /// working directories keep working, and later changes are over the committed stack.
    /// An error from `write` leaves the view exactly as it was.
    pub fn commit<T, E>(
        &self,
        write: impl FnOnce(&spfs_storage::write::Node) -> Result<T, E>,
    ) -> Result<T, CommitError<E>> {
        self.edit
            .get()
            .ok_or(CommitError::NotEditable)?
            .commit(self, write)
    }

    /// The owner (uid, gid) the view was built for: spfs entries show it, and only it (or
    /// root) may change an editable view.
    pub fn owner(&self) -> (u32, u32) {
        self.owner
    }

    /// The overlay of an editable view.
    pub(crate) fn edit(&self) -> Option<&Edit> {
        self.edit.get()
    }

    /// The overlay of an editable view once something changed; `None` while requests may go
    /// the read-only way.
    pub(crate) fn changes(&self) -> Option<&Edit> {
        self.edit.get().filter(|e| e.changed())
    }

    /// This view's id.
    pub fn id(&self) -> ViewId {
        self.id
    }

    /// How many entries the view holds, its root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The size of the view's files in [`BLOCK_SIZE`] blocks (each file rounded up to whole
    /// blocks), counted once when the view was built.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Whether the view holds nothing but its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// Bytes the view holds on the heap (entries and names), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.names.capacity()
            + self.payloads.capacity() * std::mem::size_of::<Digest>()
    }

    /// The node id of entry `index`.
    pub fn node_id(&self, index: u32) -> NodeId {
        node::encode(self.id, index)
    }

    /// The entry named `name` in directory `dir`, if any.
    pub fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        let node = &self.nodes[dir as usize];
        let first = node.first_child as usize;
        let children = &self.nodes[first..first + node.child_count as usize];
        children
            .binary_search_by(|child| self.name_bytes(child).cmp(name))
            .ok()
            .map(|i| (first + i) as u32)
    }

    /// The entries of directory `dir`, in name order, as a range of indexes.
    pub fn children(&self, dir: u32) -> std::ops::Range<u32> {
        let node = &self.nodes[dir as usize];
        node.first_child..node.first_child + node.child_count
    }

    /// The name of entry `index` (empty for the root).
    pub fn name(&self, index: u32) -> &[u8] {
        self.name_bytes(&self.nodes[index as usize])
    }

    /// The parent of entry `index` (the root is its own parent).
    pub fn parent(&self, index: u32) -> u32 {
        self.nodes[index as usize].parent
    }

    /// The kind of entry `index`.
    pub fn kind(&self, index: u32) -> FileKind {
        self.nodes[index as usize].kind
    }

    /// The attributes of entry `index`.
    pub fn attr(&self, index: u32) -> Attr {
        let n = &self.nodes[index as usize];
        let s = &n.stat;
        Attr {
            node: self.node_id(index),
            kind: n.kind,
            perm: s.perm,
            nlink: n.nlink,
            uid: s.uid,
            gid: s.gid,
            size: s.size,
            mtime: s.mtime,
            ctime: s.ctime,
        }
    }

    /// The path of entry `index` inside the view, as bytes relative to the root.
    pub fn relative_path(&self, index: u32) -> PathBuf {
        let mut parts = Vec::new();
        let mut at = index;
        while at != 0 {
            parts.push(self.name(at));
            at = self.parent(at);
        }
        let mut path = PathBuf::new();
        for part in parts.iter().rev() {
            path.push(OsStr::from_bytes(part));
        }
        path
    }

    /// The file behind file or symlink `index` (node id `node`, for errors): its directory
    /// layer's file, or the file of its spfs payload. A directory, or an spfs payload in no
    /// repository (logged with its digest), has none.
    pub fn source(&self, index: u32) -> Result<Source, FsError> {
        let node = self.node_id(index);
        let entry = self
            .nodes
            .get(index as usize)
            .ok_or(FsError::StaleNode(node))?;
        if entry.kind == FileKind::Directory {
            return Err(FsError::IsADirectory(node));
        }
        match self.dirs.get(entry.layer as usize) {
            Some(Some(root)) => Ok(Source::LayerFile(root.join(self.relative_path(index)))),
            Some(None) => {
                let digest =
                    *self
                        .payloads
                        .get(entry.payload as usize)
                        .ok_or_else(|| FsError::Source {
                            path: self.relative_path(index),
                            source: io::Error::other(format!("node {node} has no payload")),
                        })?;
                let path = self.repos.payload_path(&digest).ok_or_else(|| {
                    tracing::error!(%digest, node, "spfs payload is missing from every repository");
                    FsError::MissingPayload { digest }
                })?;
                Ok(Source::Payload { digest, path })
            }
            None => Err(FsError::Source {
                path: self.relative_path(index),
                source: io::Error::other(format!("node {node} has no layer")),
            }),
        }
    }

    fn name_bytes(&self, node: &Node) -> &[u8] {
        let start = node.name_start as usize;
        &self.names[start..start + node.name_len as usize]
    }
}

/// What spfs entries get that their manifest does not store.
struct SpfsAttrs {
    uid: u32,
    gid: u32,
    time: Timestamp,
}

/// Adds the names one source offers to `out`; returns whether the source is opaque (hides
/// everything below it).
fn list_source<'a>(rank: u32, (layer, dir): &DirSource<'a>, out: &mut Vec<Candidate<'a>>) -> bool {
    let layer = *layer;
    match dir {
        DirRef::Manifest(manifest, parent) => {
            let range = match parent {
                None => manifest.root_children(),
                Some(p) => match manifest.get(*p) {
                    Some(entry) => manifest.children(entry),
                    None => 0..0,
                },
            };
            for index in range {
                let Some(entry) = manifest.get(index) else {
                    continue;
                };
                let (kind, hide) = match entry.kind() {
                    EntryKind::Mask => (FileKind::File, true),
                    EntryKind::Dir => (FileKind::Directory, false),
                    EntryKind::File => (FileKind::File, false),
                    EntryKind::Symlink => (FileKind::Symlink, false),
                };
                out.push(Candidate {
                    name: Cow::Borrowed(manifest.name(entry)),
                    rank,
                    hide,
                    kind,
                    layer,
                    origin: (!hide).then_some(Origin::Spfs(manifest, index)),
                });
            }
            false
        }
        DirRef::Path(path) => {
            let entries = match fs::read_dir(path) {
                Ok(entries) => entries,
                Err(err) => {
                    tracing::warn!(layer, path = %path.display(), error = %err, "skipping a layer directory that cannot be read");
                    return false;
                }
            };
            let mut opaque = false;
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(err) => {
                        tracing::warn!(path = %path.display(), error = %err, "skipping an unreadable directory entry");
                        continue;
                    }
                };
                let name = entry.file_name();
                let bytes = name.as_bytes();
                if bytes == OPAQUE_MARKER {
                    opaque = true;
                    continue;
                }
                if let Some(hides) = bytes.strip_prefix(WHITEOUT_PREFIX) {
                    if !hides.is_empty() {
                        out.push(Candidate {
                            name: Cow::Owned(hides.to_vec()),
                            rank,
                            hide: true,
                            kind: FileKind::File,
                            layer,
                            origin: None,
                        });
                    }
                    continue;
                }
                let Some(kind) = entry_kind(&entry) else {
                    continue;
                };
                out.push(Candidate {
                    name: Cow::Owned(bytes.to_vec()),
                    rank,
                    hide: false,
                    kind,
                    layer,
                    origin: Some(Origin::Fs(entry)),
                });
            }
            opaque
        }
    }
}

/// The kind of a directory entry; `None` for kinds a view leaves out (sockets, FIFOs,
/// devices) and, logged, for an entry whose type cannot be read.
pub(crate) fn entry_kind(entry: &fs::DirEntry) -> Option<FileKind> {
    match entry.file_type() {
        Ok(t) if t.is_dir() => Some(FileKind::Directory),
        Ok(t) if t.is_file() => Some(FileKind::File),
        Ok(t) if t.is_symlink() => Some(FileKind::Symlink),
        Ok(_) => None,
        Err(err) => {
            tracing::warn!(path = %entry.path().display(), error = %err, "skipping an entry whose type cannot be read");
            None
        }
    }
}

/// The attributes of a winning candidate; `None` (logged) when they cannot be read.
fn found(origin: &Origin<'_>, spfs: &SpfsAttrs) -> Option<Found> {
    match origin {
        Origin::Spfs(manifest, index) => {
            let entry = manifest.get(*index)?;
            let payload = matches!(entry.kind(), EntryKind::File | EntryKind::Symlink)
                .then(|| entry.digest());
            Some(Found {
                stat: Stat {
                    perm: entry.permissions(),
                    uid: spfs.uid,
                    gid: spfs.gid,
                    size: entry.size(),
                    mtime: spfs.time,
                    ctime: spfs.time,
                },
                payload,
            })
        }
        Origin::Fs(entry) => {
            // DirEntry::metadata does not follow symlinks: the entry itself is described.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(err) => {
                    tracing::warn!(path = %entry.path().display(), error = %err, "skipping an entry that cannot be read");
                    return None;
                }
            };
            Some(Found {
                stat: Stat {
                    perm: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: meta.size(),
                    mtime: Timestamp {
                        secs: meta.mtime(),
                        nanos: meta.mtime_nsec() as u32,
                    },
                    ctime: Timestamp {
                        secs: meta.ctime(),
                        nanos: meta.ctime_nsec() as u32,
                    },
                },
                payload: None,
            })
        }
    }
}

/// The directory a candidate stands for, as a source of the merged directory below it.
fn dir_ref<'a>(origin: &Origin<'a>) -> DirRef<'a> {
    match origin {
        Origin::Fs(entry) => DirRef::Path(entry.path()),
        Origin::Spfs(manifest, index) => DirRef::Manifest(manifest, Some(*index)),
    }
}

/// Merges one directory from its sources, top first; the result is sorted by name.
fn merge_directory<'a>(
    sources: &[DirSource<'a>],
    scratch: &mut Vec<Candidate<'a>>,
    spfs: &SpfsAttrs,
) -> Vec<Winner<'a>> {
    scratch.clear();
    for (rank, source) in sources.iter().enumerate() {
        if list_source(rank as u32, source, scratch) {
            break;
        }
    }
    // A manifest directory alone is sorted by name already, with unique names.
    if !matches!(sources, [(_, DirRef::Manifest(..))]) {
        // Per name: upper layers first; within a layer an entry before a whiteout of its own
        // name, since a whiteout hides only what is below it.
        scratch.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then(a.rank.cmp(&b.rank))
                .then(a.hide.cmp(&b.hide))
        });
    }
    let mut merged = Vec::new();
    let mut at = 0;
    while at < scratch.len() {
        let mut end = at + 1;
        while end < scratch.len() && scratch[end].name == scratch[at].name {
            end += 1;
        }
        let group = &mut scratch[at..end];
        at = end;
        let (top, below) = group.split_at_mut(1);
        let top = &mut top[0];
        if top.hide {
            continue;
        }
        let Some(origin) = top.origin.take() else {
            continue;
        };
        let Some(found) = found(&origin, spfs) else {
            continue;
        };
        let mut dir_sources = Vec::new();
        if top.kind == FileKind::Directory {
            dir_sources.push((top.layer, dir_ref(&origin)));
            for lower in below.iter() {
                match (&lower.origin, lower.hide, lower.kind) {
                    (Some(origin), false, FileKind::Directory) => {
                        dir_sources.push((lower.layer, dir_ref(origin)));
                    }
                    // A whiteout, mask, file or symlink: nothing further down shows through.
                    _ => break,
                }
            }
        }
        merged.push(Winner {
            name: std::mem::take(&mut top.name),
            kind: top.kind,
            layer: top.layer,
            found,
            sources: dir_sources,
        });
    }
    merged
}
