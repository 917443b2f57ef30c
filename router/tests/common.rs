//! Helpers shared by the router's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use spfs_storage::write::Node;

use spfs_router::{Attr, DirEntry, DirectoryReplier, FileKind, NodeId, Pid, ROOT, Vfs};
pub use spfs_testkit::root_attr;

/// Collects every entry of a listing.
#[derive(Default)]
pub struct Collect(pub Vec<(Vec<u8>, Attr, u64)>);

impl DirectoryReplier for Collect {
    fn add(&mut self, entry: DirEntry<'_>) -> bool {
        self.0.push((entry.name.to_vec(), entry.attr, entry.offset));
        true
    }
}

/// What one path of a view holds, as seen through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A directory with its permission bits.
    Dir(u32),
    /// A file with its permission bits and bytes.
    File(u32, Vec<u8>),
    /// A symlink and its target.
    Symlink(Vec<u8>),
}

/// Lists directory `node` (without `.` and `..`).
pub fn list(vfs: &Vfs, caller: Pid, node: NodeId) -> Vec<(Vec<u8>, Attr)> {
    vfs.opendir(caller, node).expect("opendir");
    let mut out = Collect::default();
    vfs.readdir(caller, node, 0, &mut out).expect("readdir");
    out.0
        .into_iter()
        .filter(|(n, _, _)| n != b"." && n != b"..")
        .map(|(n, a, _)| (n, a))
        .collect()
}

/// Walks the whole view `caller` sees, through readdir, lookup, read and readlink.
pub fn walk(vfs: &Arc<Vfs>, caller: Pid) -> BTreeMap<Vec<u8>, Seen> {
    let mut seen = BTreeMap::new();
    walk_dir(vfs, caller, ROOT, Vec::new(), &mut seen);
    seen
}

fn walk_dir(
    vfs: &Vfs,
    caller: Pid,
    dir: NodeId,
    prefix: Vec<u8>,
    seen: &mut BTreeMap<Vec<u8>, Seen>,
) {
    let entries = list(vfs, caller, dir);
    if dir != ROOT {
        let subdirs = entries
            .iter()
            .filter(|(_, a)| a.kind == FileKind::Directory)
            .count() as u32;
        assert_eq!(
            vfs.getattr(caller, dir).unwrap().nlink,
            2 + subdirs,
            "nlink of {:?}",
            String::from_utf8_lossy(&prefix)
        );
    }
    for (name, attr) in entries {
        let looked_up = vfs
            .lookup(caller, dir, &name)
            .expect("lookup of a listed name");
        assert_eq!(looked_up, attr, "lookup and readdir agree");
        let mut path = prefix.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&name);
        match attr.kind {
            FileKind::Directory => {
                seen.insert(path.clone(), Seen::Dir(attr.perm));
                walk_dir(vfs, caller, attr.node, path, seen);
            }
            FileKind::File => {
                let len = attr.size as usize + 16;
                let handle = vfs.open(caller, attr.node, false).expect("open");
                let bytes = vfs.read(attr.node, handle, 0, len).expect("read");
                vfs.release(handle);
                assert_eq!(bytes.len() as u64, attr.size);
                // As a kernel that skips OPEN reads: by node id alone, the same bytes.
                let by_node = vfs.read(attr.node, 0, 0, len).expect("read by node");
                assert_eq!(by_node, bytes, "reads with a handle and by node agree");
                seen.insert(path, Seen::File(attr.perm, bytes));
            }
            FileKind::Symlink => {
                let target = vfs.readlink(attr.node).expect("readlink");
                assert_eq!(target.len() as u64, attr.size);
                seen.insert(path, Seen::Symlink(target));
            }
        }
    }
}

/// Writes commit tree `node` out as a directory layer at `dir` (masks as `.wh.` whiteouts),
/// reading the files' content now, as a writer does.
pub fn materialize(node: &Node, dir: &Path) {
    match node {
        Node::Dir { mode, children } => {
            fs::create_dir_all(dir).unwrap();
            for (name, child) in children {
                match child {
                    Node::Mask { .. } => fs::write(dir.join(format!(".wh.{name}")), b"").unwrap(),
                    _ => materialize(child, &dir.join(name)),
                }
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777)).unwrap();
        }
        Node::File { mode, source } => {
            fs::copy(source, dir).unwrap();
            fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777)).unwrap();
        }
        Node::Symlink { target, .. } => std::os::unix::fs::symlink(target, dir).unwrap(),
        Node::Mask { .. } => unreachable!("masks are written by their directory"),
    }
}
