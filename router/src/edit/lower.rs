//! What an overlay's changes lie on: the view's layers, or after a commit a frozen
//! generation (the overlay as it was at the commit, read-only) over them.

use std::fs::File;

use crate::error::FsError;
use crate::node::NodeId;
use crate::view::{Attr, FileKind, View};

/// The read-only tree below an overlay's current changes. `'a` is how long the entries it
/// hands out (names) live.
pub(crate) trait Lower<'a> {
    /// The first index the lower does not use: fresh entries of the overlay start there.
    fn len(&self) -> usize;
    /// The kind of entry `i`; `None` when the lower has no such entry.
    fn kind(&self, i: u32) -> Option<FileKind>;
    /// Where entry `i` is linked (its first name); `None` for the root and detached entries.
    fn location(&self, i: u32) -> Option<(u32, &'a [u8])>;
    /// Every name of entry `i` (more than one for a hard link a generation holds).
    fn names(&self, i: u32) -> Vec<(u32, Vec<u8>)>;
    /// The entry `name` of directory `dir`, if `dir` is a directory that has it.
    fn child(&self, dir: u32, name: &[u8]) -> Option<u32>;
    /// The entries of directory `dir`, sorted by name; empty for anything else.
    fn list(&self, dir: u32) -> Vec<(&'a [u8], u32)>;
    /// The attributes of entry `i`.
    fn attr(&self, i: u32) -> Result<Attr, FsError>;
    /// Opens file `i` for reading.
    fn open(&self, i: u32) -> Result<File, FsError>;
    /// The target of symlink `i`.
    fn target(&self, i: u32) -> Result<Vec<u8>, FsError>;
    /// The node id of entry `i`.
    fn node_id(&self, i: u32) -> NodeId;

    /// Whether `dir` is a directory of the lower.
    fn is_dir(&self, dir: u32) -> bool {
        self.kind(dir) == Some(FileKind::Directory)
    }
}

// `View::...` spelled out: the trait's methods share the names, and a call on `self` (a
// `&&View`) would find the trait's first.
impl<'a> Lower<'a> for &'a View {
    fn len(&self) -> usize {
        View::len(self)
    }

    fn kind(&self, i: u32) -> Option<FileKind> {
        ((i as usize) < View::len(self)).then(|| View::kind(self, i))
    }

    fn location(&self, i: u32) -> Option<(u32, &'a [u8])> {
        let view: &'a View = self;
        (i != 0 && (i as usize) < View::len(view)).then(|| (view.parent(i), view.name(i)))
    }

    fn names(&self, i: u32) -> Vec<(u32, Vec<u8>)> {
        self.location(i)
            .map(|(p, n)| (p, n.to_vec()))
            .into_iter()
            .collect()
    }

    fn child(&self, dir: u32, name: &[u8]) -> Option<u32> {
        self.is_dir(dir)
            .then(|| View::child(self, dir, name))
            .flatten()
    }

    fn list(&self, dir: u32) -> Vec<(&'a [u8], u32)> {
        let view: &'a View = self;
        if !self.is_dir(dir) {
            return Vec::new();
        }
        view.children(dir).map(|i| (view.name(i), i)).collect()
    }

    fn attr(&self, i: u32) -> Result<Attr, FsError> {
        match (i as usize) < View::len(self) {
            true => Ok(View::attr(self, i)),
            false => Err(FsError::StaleNode(View::node_id(self, i))),
        }
    }

    fn open(&self, i: u32) -> Result<File, FsError> {
        self.source(i)?.open()
    }

    fn target(&self, i: u32) -> Result<Vec<u8>, FsError> {
        self.source(i)?.target()
    }

    fn node_id(&self, i: u32) -> NodeId {
        View::node_id(self, i)
    }
}
