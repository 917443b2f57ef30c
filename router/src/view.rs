//! Views: the layers of an env spec merged into one read-only tree, built once at registration
//! and never changed afterwards, so requests read it without locks.
//!
//! Merge rules (the later layer wins per path):
//! - directories merge; a file or symlink above replaces a directory below and a directory
//!   above replaces a file or symlink below (merging stops at the first non-directory);
//! - OCI whiteouts in a layer hide entries of the layers below it: `.wh.NAME` hides `NAME`,
//!   `.wh..wh..opq` hides everything below in that directory; whiteout files never appear;
//! - symlinks are served as symlinks and never followed while building, so nothing outside a
//!   layer can leak in; sockets, FIFOs and device files are left out, as if absent;
//! - a directory that cannot be read is skipped with a log line and the rest is served.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::node::{self, NodeId, ViewId};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

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
    layer: u16,
    kind: FileKind,
    perm: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: Timestamp,
    ctime: Timestamp,
}

/// A merged, read-only tree: the view one runtime sees.
#[derive(Debug)]
pub struct View {
    id: ViewId,
    layers: Vec<PathBuf>,
    nodes: Vec<Node>,
    names: Vec<u8>,
}

/// One directory of a layer that contributes to a directory of the view.
type DirSource = (u16, PathBuf);

/// An entry of a directory being merged, before it becomes a node.
struct Pending {
    name: OsString,
    kind: FileKind,
    layer: u16,
    meta: Metadata,
    /// For a directory: its sources in the layers, top first.
    sources: Vec<DirSource>,
    /// For a directory: whether lower layers may still add to it.
    open: bool,
}

impl View {
    /// Builds the view of `layers` (bottom first) under view id `id`. The root gets `root`'s
    /// attributes except its node id, which is always [`node::ROOT`].
    pub fn build(id: ViewId, layers: &[PathBuf], root: &Attr) -> View {
        let mut view = View {
            id,
            layers: layers.to_vec(),
            nodes: Vec::new(),
            names: Vec::new(),
        };
        view.nodes.push(Node {
            name_start: 0,
            name_len: 0,
            parent: 0,
            first_child: 0,
            child_count: 0,
            nlink: root.nlink,
            layer: 0,
            kind: FileKind::Directory,
            perm: root.perm,
            uid: root.uid,
            gid: root.gid,
            size: root.size,
            mtime: root.mtime,
            ctime: root.ctime,
        });
        let top_first: Vec<DirSource> = layers
            .iter()
            .enumerate()
            .rev()
            .map(|(i, p)| (i as u16, p.clone()))
            .collect();
        // Breadth first, so the children of every directory sit next to each other and a
        // directory's entries are one slice, sorted by name.
        let mut queue = std::collections::VecDeque::new();
        queue.push_back((0u32, top_first));
        while let Some((dir, sources)) = queue.pop_front() {
            let mut merged = merge_directory(&sources);
            merged.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
            let first = view.nodes.len() as u32;
            let mut subdirs = 0;
            for pending in merged {
                let index = view.nodes.len() as u32;
                if pending.kind == FileKind::Directory {
                    subdirs += 1;
                    queue.push_back((index, pending.sources));
                }
                let name = pending.name.as_bytes();
                let name_start = view.names.len() as u32;
                view.names.extend_from_slice(name);
                let meta = &pending.meta;
                view.nodes.push(Node {
                    name_start,
                    name_len: name.len() as u32,
                    parent: dir,
                    first_child: 0,
                    child_count: 0,
                    nlink: if pending.kind == FileKind::Directory {
                        2
                    } else {
                        1
                    },
                    layer: pending.layer,
                    kind: pending.kind,
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
        view
    }

    /// This view's id.
    pub fn id(&self) -> ViewId {
        self.id
    }

    /// The layer directories, bottom first.
    pub fn layers(&self) -> &[PathBuf] {
        &self.layers
    }

    /// How many entries the view holds, its root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the view holds nothing but its root.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// Bytes the view holds on the heap (entries and names), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>() + self.names.capacity()
    }

    /// The entry index of `node` in this view, if the node belongs to it.
    pub fn index_of(&self, node: NodeId) -> Option<u32> {
        if node == node::ROOT {
            return Some(0);
        }
        match node::decode(node) {
            Some((view, index)) if view == self.id && (index as usize) < self.nodes.len() => {
                Some(index)
            }
            _ => None,
        }
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
        Attr {
            node: self.node_id(index),
            kind: n.kind,
            perm: n.perm,
            nlink: n.nlink,
            uid: n.uid,
            gid: n.gid,
            size: n.size,
            mtime: n.mtime,
            ctime: n.ctime,
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

    /// Where entry `index` comes from: its layer's directory joined with its path. Files and
    /// symlinks have one source; for a merged directory this is its topmost layer's directory.
    pub fn source_path(&self, index: u32) -> PathBuf {
        let layer = self.nodes[index as usize].layer as usize;
        match self.layers.get(layer) {
            Some(root) => root.join(self.relative_path(index)),
            None => PathBuf::new(),
        }
    }

    fn name_bytes(&self, node: &Node) -> &[u8] {
        let start = node.name_start as usize;
        &self.names[start..start + node.name_len as usize]
    }
}

/// Merges one directory from its sources, top first.
fn merge_directory(sources: &[DirSource]) -> Vec<Pending> {
    let mut merged: Vec<Pending> = Vec::new();
    let mut by_name: HashMap<OsString, usize> = HashMap::new();
    let mut hidden: HashSet<OsString> = HashSet::new();
    for (layer, dir) in sources {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(layer = *layer, path = %dir.display(), error = %err, "skipping a layer directory that cannot be read");
                continue;
            }
        };
        let mut whiteouts = Vec::new();
        let mut opaque = false;
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    tracing::warn!(path = %dir.display(), error = %err, "skipping an unreadable directory entry");
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
                    whiteouts.push(OsStr::from_bytes(hides).to_owned());
                }
                continue;
            }
            if hidden.contains(&name) {
                continue;
            }
            let kind = match entry.file_type() {
                Ok(t) if t.is_dir() => FileKind::Directory,
                Ok(t) if t.is_file() => FileKind::File,
                Ok(t) if t.is_symlink() => FileKind::Symlink,
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(path = %entry.path().display(), error = %err, "skipping an entry whose type cannot be read");
                    continue;
                }
            };
            if let Some(&at) = by_name.get(&name) {
                let above = &mut merged[at];
                if above.open {
                    if kind == FileKind::Directory {
                        above.sources.push((*layer, entry.path()));
                    } else {
                        above.open = false;
                    }
                }
                continue;
            }
            // DirEntry::metadata does not follow symlinks: the entry itself is described.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(err) => {
                    tracing::warn!(path = %entry.path().display(), error = %err, "skipping an entry that cannot be read");
                    continue;
                }
            };
            let is_dir = kind == FileKind::Directory;
            by_name.insert(name.clone(), merged.len());
            merged.push(Pending {
                name,
                kind,
                layer: *layer,
                meta,
                sources: if is_dir {
                    vec![(*layer, entry.path())]
                } else {
                    Vec::new()
                },
                open: is_dir,
            });
        }
        hidden.extend(whiteouts);
        if opaque {
            break;
        }
    }
    merged
}
