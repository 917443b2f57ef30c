//! Committing an editable view: its scratch read as an spfs layer's tree (the walk shared with
//! the diff), and the errors of a commit. The rebase that follows lives with the overlay.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use spfs_storage::write::Node;

use super::diff::DiffError;
use super::lower::Lower;
use super::walk::{Met, Visit, walk};

/// The mode of a mask (a whiteout) in a commit: spfs records a whiteout's full `st_mode`
/// (SPFS-FORMAT.md §8, "Mask": `020644` in the fixtures), and the kernel's overlayfs makes its
/// whiteouts char devices 0/0 of mode 0, which spfs records as `020000`.
pub const MASK_MODE: u32 = 0o020000;
/// The mode of the tree's root: spfs stores no entry for a manifest's root, so it is only
/// a placeholder the writer does not record.
const ROOT_MODE: u32 = 0o040755;

/// Why a commit failed. `E` is the error of the writer the caller handed in.
#[derive(Debug, thiserror::Error)]
pub enum CommitError<E> {
    /// The view is read-only.
    #[error("the view is not editable")]
    NotEditable,
    /// Reading the scratch failed.
    #[error("cannot read {path:?} in the scratch: {source}")]
    Scratch {
        /// The entry of the scratch.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// A name spfs cannot hold (spfs names are UTF-8).
    #[error("{0:?} is not valid UTF-8, which spfs requires of every name")]
    NotUtf8(PathBuf),
    /// Writing the commit failed; the view is as it was.
    #[error("{0}")]
    Write(E),
    /// The commit was written, but the view could not carry on from it: it still shows the
    /// same entries, over the old stack, with its scratch as it was.
    #[error(
        "the commit was written but the scratch could not be moved aside at {path:?}: {source}"
    )]
    Rebase {
        /// What could not be moved.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
}

impl<E> From<DiffError> for CommitError<E> {
    fn from(err: DiffError) -> Self {
        match err {
            DiffError::Io { path, source } => CommitError::Scratch { path, source },
        }
    }
}

/// The tree a commit of scratch `scratch` over `lower` writes: every entry of the scratch
/// (files read from the scratch at write time), and a mask for every lower entry it removed.
pub(super) fn commit_tree<E>(
    lower: &dyn Lower<'_>,
    scratch: &Path,
) -> Result<Node, CommitError<E>> {
    let mut tree = Tree {
        root: Node::Dir {
            mode: ROOT_MODE,
            children: BTreeMap::new(),
        },
        error: std::marker::PhantomData,
    };
    walk(lower, scratch, &mut tree)?;
    Ok(tree.root)
}

/// The commit's visitor: what the walk meets, as a tree.
struct Tree<E> {
    root: Node,
    error: std::marker::PhantomData<fn() -> E>,
}

impl<E> Tree<E> {
    /// Puts `node` at `path` (inside the view, starting with `/`); its parent is in the
    /// tree already, since the walk tells a directory before its entries.
    fn put(&mut self, path: &Path, node: Node) -> Result<(), CommitError<E>> {
        let utf8 = || CommitError::NotUtf8(path.to_path_buf());
        let mut names = path.iter().skip(1).peekable();
        let mut at = &mut self.root;
        while let Some(name) = names.next() {
            let name = name.to_str().ok_or_else(utf8)?;
            let Node::Dir { children, .. } = at else {
                // The walk only descends into directories.
                return Err(CommitError::Scratch {
                    path: path.to_path_buf(),
                    source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
                });
            };
            if names.peek().is_none() {
                children.insert(name.to_owned(), node);
                return Ok(());
            }
            at = children
                .entry(name.to_owned())
                .or_insert_with(|| Node::Dir {
                    mode: ROOT_MODE,
                    children: BTreeMap::new(),
                });
        }
        Ok(())
    }
}

impl<E> Visit for Tree<E> {
    type Error = CommitError<E>;

    fn removed(&mut self, path: &Path) -> Result<(), Self::Error> {
        self.put(path, Node::Mask { mode: MASK_MODE })
    }

    fn entry(&mut self, _lower: &dyn Lower<'_>, entry: &Met<'_>) -> Result<(), Self::Error> {
        let mode = entry.meta.mode();
        let kind = entry.meta.file_type();
        let node = if kind.is_dir() {
            Node::Dir {
                mode,
                children: BTreeMap::new(),
            }
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.real).map_err(|source| CommitError::Scratch {
                path: entry.real.to_path_buf(),
                source,
            })?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| CommitError::NotUtf8(entry.path.to_path_buf()))?;
            Node::Symlink { mode, target }
        } else if kind.is_file() {
            Node::File {
                mode,
                source: entry.real.to_path_buf(),
            }
        } else {
            // Sockets, FIFOs and devices: a view never shows them, so neither does a commit.
            tracing::debug!(path = %entry.path.display(), "leaving a special file out of a commit");
            return Ok(());
        };
        self.put(entry.path, node)
    }
}
