//! The view API: the filesystem operations a frontend serves, free of FUSE types.
//!
//! Only requests on the root look at the caller (DESIGN.md §4 rule 2); every other node finds
//! its view from its id alone. A [`Vfs`] serves either the shared layout (one mount, routed by
//! caller through a [`Router`]) or one fixed view (a per-runtime volume).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::FsError;
use crate::node::{self, NodeId, ViewId};
use crate::process::Pid;
use crate::route::Router;
use crate::view::{Attr, Content, FileKind, View};
use spfs_storage::Digest;

/// Open-file shards: reads on different handles should not contend.
const HANDLE_SHARDS: usize = 16;

/// Readdir offset of the first child; 1 and 2 are `.` and `..`.
const FIRST_CHILD_OFFSET: u64 = 3;

/// Which views a [`Vfs`] serves.
#[derive(Debug, Clone)]
pub enum Routing {
    /// Shared layout: the root shows each caller its runtime's view.
    Shared(Arc<Router>),
    /// Per-runtime layout: every caller sees this one view.
    Fixed(Arc<View>),
}

/// One entry handed to a [`DirectoryReplier`].
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    /// The entry's name.
    pub name: &'a [u8],
    /// Its attributes (and node id).
    pub attr: Attr,
    /// The offset that resumes the listing just after this entry.
    pub offset: u64,
}

/// Receives directory entries; stands in for the kernel's reply buffer.
pub trait DirectoryReplier {
    /// Adds one entry; returns `false` when the reply is full and the entry was not taken.
    fn add(&mut self, entry: DirEntry<'_>) -> bool;
}

/// Filesystem statistics, the same for every view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Block size.
    pub block_size: u32,
    /// Longest name.
    pub name_max: u32,
}

/// The filesystem operations over one routing.
#[derive(Debug)]
pub struct Vfs {
    routing: Routing,
    handles: Vec<RwLock<HashMap<u64, Arc<File>>>>,
    next_handle: AtomicU64,
}

impl Vfs {
    /// A filesystem serving `routing`.
    pub fn new(routing: Routing) -> Vfs {
        Vfs {
            routing,
            handles: (0..HANDLE_SHARDS)
                .map(|_| RwLock::new(HashMap::new()))
                .collect(),
            next_handle: AtomicU64::new(1),
        }
    }

    /// What this filesystem serves.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// The view the root shows to `caller`.
    pub fn root_view(&self, caller: Pid) -> Arc<View> {
        match &self.routing {
            Routing::Shared(router) => router.resolve(caller),
            Routing::Fixed(view) => view.clone(),
        }
    }

    /// The view with id `view`, if it is still served.
    pub fn view_by_id(&self, view: ViewId) -> Option<Arc<View>> {
        match &self.routing {
            Routing::Shared(router) => router.view(view),
            Routing::Fixed(fixed) => (fixed.id() == view).then(|| fixed.clone()),
        }
    }

    /// The view and entry index of `node`; the root resolves through `caller`.
    fn locate(&self, caller: Pid, node: NodeId) -> Result<(Arc<View>, u32), FsError> {
        if node == node::ROOT {
            return Ok((self.root_view(caller), 0));
        }
        let (view, index) = node::decode(node).ok_or(FsError::StaleNode(node))?;
        let view = self.view_by_id(view).ok_or(FsError::StaleNode(node))?;
        if index as usize >= view.len() {
            return Err(FsError::StaleNode(node));
        }
        Ok((view, index))
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, caller: Pid, parent: NodeId, name: &[u8]) -> Result<Attr, FsError> {
        let (view, dir) = self.locate(caller, parent)?;
        if view.kind(dir) != FileKind::Directory {
            return Err(FsError::NotADirectory(parent));
        }
        let found = match name {
            b"." => Some(dir),
            b".." => Some(view.parent(dir)),
            _ => view.child(dir, name),
        };
        found
            .map(|index| view.attr(index))
            .ok_or_else(|| FsError::NotFound {
                parent,
                name: String::from_utf8_lossy(name).into_owned(),
            })
    }

    /// The attributes of `node`.
    pub fn getattr(&self, caller: Pid, node: NodeId) -> Result<Attr, FsError> {
        let (view, index) = self.locate(caller, node)?;
        Ok(view.attr(index))
    }

    /// Checks that `node` is a directory and returns a directory handle. For the root the
    /// handle pins the caller's view, so the listing stays one view's even if another process
    /// continues it.
    pub fn opendir(&self, caller: Pid, node: NodeId) -> Result<u64, FsError> {
        let (view, index) = self.locate(caller, node)?;
        if view.kind(index) != FileKind::Directory {
            return Err(FsError::NotADirectory(node));
        }
        Ok(if node == node::ROOT {
            u64::from(view.id())
        } else {
            0
        })
    }

    /// Lists directory `node` from `offset` (0 for the start; any offset handed out resumes
    /// just after its entry). `handle` is what [`Vfs::opendir`] returned.
    pub fn readdir(
        &self,
        caller: Pid,
        node: NodeId,
        handle: u64,
        offset: u64,
        replier: &mut dyn DirectoryReplier,
    ) -> Result<(), FsError> {
        let (view, dir) = if node == node::ROOT && handle != 0 {
            // A root handle names the view it was opened in; a view removed since lists empty.
            let view = u32::try_from(handle)
                .ok()
                .and_then(|id| self.view_by_id(id));
            (view.unwrap_or_else(|| self.empty_view(caller)), 0)
        } else {
            self.locate(caller, node)?
        };
        if view.kind(dir) != FileKind::Directory {
            return Err(FsError::NotADirectory(node));
        }
        if offset < 1
            && !replier.add(DirEntry {
                name: b".",
                attr: view.attr(dir),
                offset: 1,
            })
        {
            return Ok(());
        }
        if offset < 2
            && !replier.add(DirEntry {
                name: b"..",
                attr: view.attr(view.parent(dir)),
                offset: 2,
            })
        {
            return Ok(());
        }
        let children = view.children(dir);
        let skip = offset.saturating_sub(FIRST_CHILD_OFFSET - 1);
        let start = u64::from(children.start)
            .saturating_add(skip)
            .min(u64::from(children.end)) as u32;
        for index in start..children.end {
            let entry = DirEntry {
                name: view.name(index),
                attr: view.attr(index),
                offset: u64::from(index - children.start) + FIRST_CHILD_OFFSET,
            };
            if !replier.add(entry) {
                break;
            }
        }
        Ok(())
    }

    /// The target of symlink `node`, read from its layer (or its spfs payload).
    pub fn readlink(&self, node: NodeId) -> Result<Vec<u8>, FsError> {
        let (view, index) = self.locate(0, node)?;
        if view.kind(index) != FileKind::Symlink {
            return Err(FsError::NotASymlink(node));
        }
        match content(&view, index, node)? {
            Content::Path(path) => std::fs::read_link(&path)
                .map(|target| std::os::unix::ffi::OsStringExt::into_vec(target.into_os_string()))
                .map_err(|source| FsError::Source { path, source }),
            Content::Payload(digest) => {
                let path = payload_path(&view, &digest, node)?;
                std::fs::read(&path).map_err(|source| payload_error(digest, node, path, source))
            }
        }
    }

    /// Opens file `node` for reading. `write` refuses with `EROFS`.
    pub fn open(&self, caller: Pid, node: NodeId, write: bool) -> Result<u64, FsError> {
        let (view, index) = self.locate(caller, node)?;
        let file = open_source(&view, index, node, write)?;
        let handle = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handle_shard(handle)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(handle, Arc::new(file));
        Ok(handle)
    }

    /// Opens the layer file behind file `node` for reading without making a handle, for a
    /// frontend whose kernel reads by node id and never sends OPEN (Linux's no-open support).
    pub fn open_file(&self, node: NodeId) -> Result<File, FsError> {
        let (view, index) = self.locate(0, node)?;
        open_source(&view, index, node, false)
    }

    /// The open layer file behind `handle`, for positional reads.
    pub fn file(&self, handle: u64) -> Result<Arc<File>, FsError> {
        self.handle_shard(handle)
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&handle)
            .cloned()
            .ok_or(FsError::BadHandle(handle))
    }

    /// Reads up to `len` bytes at `offset` from `handle`. Positional: readers never share a
    /// cursor.
    pub fn read(&self, handle: u64, offset: u64, len: usize) -> Result<Vec<u8>, FsError> {
        let file = self.file(handle)?;
        let mut buf = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(FsError::Source {
                        path: format!("handle {handle}").into(),
                        source,
                    });
                }
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Closes `handle`.
    pub fn release(&self, handle: u64) {
        self.handle_shard(handle)
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&handle);
    }

    /// Checks access to `node`: any write access is refused with `EROFS`; permission bits are
    /// left to the kernel (the mount uses `default_permissions`).
    pub fn access(&self, caller: Pid, node: NodeId, mask: u32) -> Result<(), FsError> {
        self.locate(caller, node)?;
        if mask & libc::W_OK as u32 != 0 {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Filesystem statistics.
    pub fn statfs(&self) -> StatFs {
        StatFs {
            block_size: 4096,
            name_max: 255,
        }
    }

    /// How many files are open.
    pub fn open_files(&self) -> usize {
        self.handles
            .iter()
            .map(|s| s.read().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    fn empty_view(&self, caller: Pid) -> Arc<View> {
        match &self.routing {
            Routing::Shared(router) => router.empty_view().clone(),
            Routing::Fixed(_) => self.root_view(caller),
        }
    }

    fn handle_shard(&self, handle: u64) -> &RwLock<HashMap<u64, Arc<File>>> {
        &self.handles[handle as usize % HANDLE_SHARDS]
    }
}

/// Where the content of entry `index` is; a view always knows it for files and symlinks.
fn content(view: &View, index: u32, node: NodeId) -> Result<Content, FsError> {
    view.content(index).ok_or_else(|| FsError::Source {
        path: view.relative_path(index),
        source: std::io::Error::other(format!("node {node} has no source")),
    })
}

/// The payload's file, or [`FsError::MissingPayload`] with a log line naming the digest.
fn payload_path(view: &View, digest: &Digest, node: NodeId) -> Result<std::path::PathBuf, FsError> {
    view.payload_path(digest).ok_or_else(|| {
        tracing::error!(%digest, node, "spfs payload is missing from every repository");
        FsError::MissingPayload { digest: *digest }
    })
}

/// A payload that vanished between finding and opening it is missing too; other failures
/// keep their errno.
fn payload_error(
    digest: Digest,
    node: NodeId,
    path: std::path::PathBuf,
    source: std::io::Error,
) -> FsError {
    if source.kind() == std::io::ErrorKind::NotFound {
        tracing::error!(%digest, node, path = %path.display(), "spfs payload is missing");
        FsError::MissingPayload { digest }
    } else {
        tracing::error!(%digest, node, path = %path.display(), error = %source, "spfs payload cannot be read");
        FsError::Source { path, source }
    }
}

/// Opens the layer file (or payload) behind entry `index` (node id `node`) of `view` for
/// reading.
fn open_source(view: &View, index: u32, node: NodeId, write: bool) -> Result<File, FsError> {
    match view.kind(index) {
        FileKind::Directory => return Err(FsError::IsADirectory(node)),
        FileKind::Symlink => {
            return Err(FsError::Source {
                path: view.relative_path(index),
                source: std::io::Error::from_raw_os_error(libc::ELOOP),
            });
        }
        FileKind::File => {}
    }
    if write {
        return Err(FsError::ReadOnly);
    }
    // O_NOFOLLOW: a layer file swapped for a symlink after registration must not lead
    // outside the layer.
    let open = |path: &std::path::Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    };
    let file = match content(view, index, node)? {
        Content::Path(path) => open(&path).map_err(|source| FsError::Source { path, source })?,
        Content::Payload(digest) => {
            let path = payload_path(view, &digest, node)?;
            open(&path).map_err(|source| payload_error(digest, node, path, source))?
        }
    };
    Ok(file)
}
