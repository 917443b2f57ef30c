//! The view API: the filesystem operations a frontend serves, free of FUSE types.
//!
//! Only requests on the root look at the caller (DESIGN.md §4 rule 2); every other node finds
//! its view from its id alone. A [`Vfs`] serves either the shared layout (one mount, routed by
//! caller through a [`Router`]) or one fixed view (a per-runtime volume).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::edit::Make;
use crate::error::FsError;
use crate::files::OpenFiles;
use crate::node::{self, NodeId, ViewId};
use crate::process::Pid;
use crate::route::Router;
use crate::traffic::RequestCounters;
use crate::view::{Attr, BLOCK_SIZE, FileKind, Timestamp, View};

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

/// Filesystem statistics of one view. A read-only view shows its own size and entry count
/// (counted when it was built, so a request never walks it) and nothing free; an editable one
/// shows its scratch's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    /// Block size.
    pub block_size: u32,
    /// The size of the view's files, in blocks.
    pub blocks: u64,
    /// Free blocks.
    pub free_blocks: u64,
    /// Free blocks an unprivileged user may take.
    pub available_blocks: u64,
    /// The view's entries, its root included.
    pub files: u64,
    /// Free entries.
    pub free_files: u64,
    /// Longest name.
    pub name_max: u32,
}

/// Who sends a request: the calling task (a thread id on Linux) and its credentials. Only
/// requests on the root route by `pid`; new entries of an editable view belong to `uid`:`gid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caller {
    /// The calling task, as the kernel reports it.
    pub pid: Pid,
    /// Its effective user.
    pub uid: u32,
    /// Its effective group.
    pub gid: u32,
}

/// A time to set with [`Vfs::setattr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSet {
    /// The server's current time (`UTIME_NOW`).
    Now,
    /// This time.
    At(Timestamp),
}

/// The attribute changes of one `setattr`; `None` leaves an attribute as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// New permission bits (no file-type bits).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size: truncates or extends.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
}

/// How a rename treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RenameMode {
    /// Replace it (plain `rename(2)`).
    #[default]
    Replace,
    /// Fail with `EEXIST` (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap the two (`RENAME_EXCHANGE`).
    Exchange,
}

/// How `setxattr` treats an existing attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XattrSet {
    /// Create or replace.
    #[default]
    Any,
    /// Fail with `EEXIST` if it exists (`XATTR_CREATE`).
    Create,
    /// Fail with `ENODATA` if it does not (`XATTR_REPLACE`).
    Replace,
}

/// The filesystem operations over one routing.
#[derive(Debug)]
pub struct Vfs {
    routing: Routing,
    files: OpenFiles,
    requests: Arc<RequestCounters>,
    /// The kernel sends neither OPEN nor RELEASE any more (Linux's no-open mode), so no handle
    /// may pin its file: nothing would ever unpin it.
    no_open: AtomicBool,
}

impl Vfs {
    /// A filesystem serving `routing`.
    pub fn new(routing: Routing) -> Vfs {
        Vfs::counting_into(routing, Arc::default())
    }

    /// A filesystem serving `routing` whose frontend counts its requests into `requests`,
    /// which several filesystems may share (a service sums its mounts).
    pub fn counting_into(routing: Routing, requests: Arc<RequestCounters>) -> Vfs {
        Vfs {
            routing,
            files: OpenFiles::default(),
            requests,
            no_open: AtomicBool::new(false),
        }
    }

    /// Tells the filesystem that the kernel skips OPEN from now on (Linux's no-open mode, which
    /// the frontend turns on by answering `ENOSYS` to an OPEN): it then sends no RELEASE either,
    /// not even for files from CREATE, so handles from [`Vfs::create`] stop pinning their files.
    pub fn set_no_open(&self) {
        self.no_open.store(true, Ordering::Relaxed);
    }

    /// Where the frontend counts the requests it serves.
    pub fn requests(&self) -> &RequestCounters {
        &self.requests
    }

    /// What this filesystem serves.
    pub fn routing(&self) -> &Routing {
        &self.routing
    }

    /// Resets editable view `view`, which this filesystem serves ([`View::reset`]), and lets
    /// go of the files it held open for the reset entries, so that reads of a node that now
    /// stands for its lower entry read that one. Returns what the kernel must forget.
    pub fn reset(
        &self,
        view: &View,
        paths: &[std::path::PathBuf],
    ) -> Result<Vec<crate::Invalidation>, crate::edit::ResetError> {
        let forget = view.reset(paths)?;
        for what in &forget {
            // A node that now stands for its lower entry reads that one; one that is gone
            // keeps its file for the programs holding it open, as an unlinked file.
            if let crate::Invalidation::Node(node) = what
                && let Some((_, index)) = node::decode(*node)
                && view.edit().is_some_and(|e| e.kind(view, index).is_ok())
            {
                self.files.drop_file(*node);
            }
        }
        Ok(forget)
    }

    /// The view the root shows to `caller`.
    fn root_view(&self, caller: Pid) -> Arc<View> {
        match &self.routing {
            Routing::Shared(router) => router.resolve(caller),
            Routing::Fixed(view) => view.clone(),
        }
    }

    /// The view with id `view`, if it is still served.
    fn view_by_id(&self, view: ViewId) -> Option<Arc<View>> {
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
        // An editable view's new entries lie past its lower view; its overlay checks them.
        if index as usize >= view.len() && view.changes().is_none() {
            return Err(FsError::StaleNode(node));
        }
        Ok((view, index))
    }

    /// The view and entry index of `node` for a change by `caller`: the view must be editable
    /// and the caller its owner or root.
    fn locate_for_change(
        &self,
        caller: &Caller,
        node: NodeId,
    ) -> Result<(Arc<View>, u32), FsError> {
        let (view, index) = self.locate(caller.pid, node)?;
        if view.edit().is_none() {
            return Err(FsError::ReadOnly);
        }
        let owner = view.owner().0;
        if caller.uid != 0 && caller.uid != owner {
            return Err(FsError::NotOwner {
                uid: caller.uid,
                owner,
            });
        }
        Ok((view, index))
    }

    /// The entry index of `node` in `view`, for the second node of a link or rename: both
    /// must be in the one view.
    fn locate_in(&self, view: &View, caller: Pid, node: NodeId) -> Result<u32, FsError> {
        let (other, index) = self.locate(caller, node)?;
        if other.id() != view.id() {
            return Err(FsError::CrossDevice(node));
        }
        Ok(index)
    }

    /// Looks `name` up in directory `parent`.
    pub fn lookup(&self, caller: Pid, parent: NodeId, name: &[u8]) -> Result<Attr, FsError> {
        let (view, dir) = self.locate(caller, parent)?;
        if parent == node::ROOT
            && let Routing::Shared(router) = &self.routing
            && Arc::ptr_eq(&view, router.empty_view())
        {
            router.count_outsider_root_lookup(caller);
        }
        if let Some(edit) = view.changes() {
            return edit.lookup(&view, dir, parent, name);
        }
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
        let Some(edit) = view.changes() else {
            return Ok(view.attr(index));
        };
        match edit.attr(&view, index) {
            // Removed, but still open: the open file answers.
            Err(FsError::StaleNode(_)) if let Some(file) = self.files.peek(node) => {
                edit.attr_of_open(&view, index, &file)
            }
            other => other,
        }
    }

    /// Checks that `node` is a directory. Directories need no handle, and none may carry a
    /// view: the macFUSE kext hands one process's open directory to another's `opendir`
    /// without asking us (osxfuse/kext `fuse_vnops.c`, open), so the root is listed for its
    /// caller on every [`Vfs::readdir`] instead.
    pub fn opendir(&self, caller: Pid, node: NodeId) -> Result<(), FsError> {
        let (view, index) = self.locate(caller, node)?;
        let kind = match view.changes() {
            Some(edit) => edit.kind(&view, index)?,
            None => view.kind(index),
        };
        if kind != FileKind::Directory {
            return Err(FsError::NotADirectory(node));
        }
        Ok(())
    }

    /// Lists directory `node` from `offset` (0 for the start; any offset handed out resumes
    /// just after its entry). The root lists `caller`'s view on every call, so a listing that
    /// another process continues shows that process's view from the offset on
    /// (docs/SEMANTICS.md).
    pub fn readdir(
        &self,
        caller: Pid,
        node: NodeId,
        offset: u64,
        replier: &mut dyn DirectoryReplier,
    ) -> Result<(), FsError> {
        let (view, dir) = self.locate(caller, node)?;
        if let Some(edit) = view.changes() {
            return edit.readdir(&view, dir, node, offset, replier);
        }
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
        if let Some(edit) = view.changes() {
            return edit.readlink(&view, index);
        }
        if view.kind(index) != FileKind::Symlink {
            return Err(FsError::NotASymlink(node));
        }
        view.source(index)?.target()
    }

    /// Opens file `node` and returns its handle, which pins the open file until
    /// [`Vfs::release`]. `write` refuses with `EROFS` in a read-only view; in an editable one
    /// it copies a lower file up, as overlayfs does at open.
    pub fn open(&self, caller: Pid, node: NodeId, write: bool) -> Result<u64, FsError> {
        let (view, index) = self.locate(caller, node)?;
        if let Some(edit) = view.edit() {
            if write {
                let _pass = edit.gate().enter();
                edit.writable(&view, &self.files, index)?;
            }
            if view.changes().is_some() {
                self.files.get(node, true, || edit.open(&view, index))?;
                return Ok(node);
            }
        }
        check_readable(&view, index, node, write)?;
        self.files.get(node, true, || view.source(index)?.open())?;
        // A node's file is the same for every opener, so the handle names the node.
        Ok(node)
    }

    /// The open source file of file `node`, for positional reads: through `handle` from
    /// [`Vfs::open`], or with handle 0 by node id alone, for a kernel that skips OPEN
    /// (Linux's no-open support). Both go through the one open-file cache.
    pub fn file(&self, node: NodeId, handle: u64) -> Result<Arc<File>, FsError> {
        if handle != 0 && handle != node {
            return Err(FsError::BadHandle(handle));
        }
        self.files.get(node, false, || {
            let (view, index) = self.locate(0, node)?;
            if let Some(edit) = view.changes() {
                return edit.open(&view, index);
            }
            check_readable(&view, index, node, false)?;
            view.source(index)?.open()
        })
    }

    /// Reads up to `len` bytes at `offset` from file `node` (see [`Vfs::file`] for `handle`).
    /// Positional: readers never share a cursor.
    pub fn read(
        &self,
        node: NodeId,
        handle: u64,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, FsError> {
        let file = self.file(node, handle)?;
        let mut buf = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(FsError::Source {
                        path: format!("node {node}").into(),
                        source,
                    });
                }
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Closes `handle`; its file stays cached for reads by node id until newer ones push it
    /// out.
    pub fn release(&self, handle: u64) {
        if handle != 0 && !self.files.unpin(handle) {
            tracing::debug!(handle, "release of a handle that is not open");
        }
    }

    /// The kernel forgot `node` (FORGET, with its lookup count `nlookup`): it keeps a node
    /// while any descriptor of it is open, so the file of a removed entry may go now.
    pub fn forget(&self, node: NodeId, nlookup: u64) {
        tracing::debug!(node, nlookup, "forget");
        self.files.forget(node);
    }

    /// Checks access to `node`: write access is refused with `EROFS` in a read-only view, and
    /// to anyone but the owner (or root) of an editable one; permission bits are not checked
    /// here. Every mount that other users reach has `default_permissions`, so the
    /// kernel checks them; a macFUSE mount without it (a per-user service's) lets only its own
    /// user in (the kext's blanket deny), who may read whatever the layers let it read.
    pub fn access(&self, caller: &Caller, node: NodeId, mask: u32) -> Result<(), FsError> {
        self.locate(caller.pid, node)?;
        if mask & libc::W_OK as u32 != 0 {
            self.locate_for_change(caller, node)?;
        }
        Ok(())
    }

    /// Creates and opens regular file `name` in `parent` with permission bits `mode`, owned by
    /// the caller; returns its attributes and handle.
    pub fn create(
        &self,
        caller: &Caller,
        parent: NodeId,
        name: &[u8],
        mode: u32,
    ) -> Result<(Attr, u64), FsError> {
        let pin = !self.no_open.load(Ordering::Relaxed);
        let attr = self.make_in(caller, (parent, name), mode, Make::File, pin)?;
        tracing::debug!(parent, node = attr.node, "created");
        Ok((attr, attr.node))
    }

    /// Makes `name` in `parent` with file-type and permission bits `mode`: regular files only
    /// (a layer holds no FIFOs, sockets or devices).
    pub fn mknod(
        &self,
        caller: &Caller,
        parent: NodeId,
        name: &[u8],
        mode: u32,
        rdev: u32,
    ) -> Result<Attr, FsError> {
        let _ = rdev;
        // mode_t is u16 on macOS, u32 on Linux.
        #[allow(clippy::unnecessary_cast)]
        let (file_type, regular) = (mode & libc::S_IFMT as u32, libc::S_IFREG as u32);
        if file_type != 0 && file_type != regular {
            return Err(FsError::Unsupported("a FIFO, socket or device file"));
        }
        self.make_in(caller, (parent, name), mode & 0o7777, Make::File, false)
    }

    /// Makes directory `name` in `parent` with permission bits `mode`.
    pub fn mkdir(
        &self,
        caller: &Caller,
        parent: NodeId,
        name: &[u8],
        mode: u32,
    ) -> Result<Attr, FsError> {
        self.make_in(caller, (parent, name), mode, Make::Dir, false)
    }

    /// Makes symlink `name` in `parent` pointing at `target`.
    pub fn symlink(
        &self,
        caller: &Caller,
        parent: NodeId,
        name: &[u8],
        target: &[u8],
    ) -> Result<Attr, FsError> {
        self.make_in(caller, (parent, name), 0o777, Make::Symlink(target), false)
    }

    /// Makes `new_name` in `new_parent` a hard link to file `node`.
    pub fn link(
        &self,
        caller: &Caller,
        node: NodeId,
        new_parent: NodeId,
        new_name: &[u8],
    ) -> Result<Attr, FsError> {
        let (view, dir) = self.locate_for_change(caller, new_parent)?;
        let index = self.locate_in(&view, caller.pid, node)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.link(&view, &self.files, index, dir, new_name)
    }

    /// Removes the non-directory `name` from `parent`.
    pub fn unlink(&self, caller: &Caller, parent: NodeId, name: &[u8]) -> Result<(), FsError> {
        let (view, dir) = self.locate_for_change(caller, parent)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.remove(&view, &self.files, dir, name, false)
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&self, caller: &Caller, parent: NodeId, name: &[u8]) -> Result<(), FsError> {
        let (view, dir) = self.locate_for_change(caller, parent)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.remove(&view, &self.files, dir, name, true)
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent`.
    pub fn rename(
        &self,
        caller: &Caller,
        (parent, name): (NodeId, &[u8]),
        (new_parent, new_name): (NodeId, &[u8]),
        mode: RenameMode,
    ) -> Result<(), FsError> {
        let (view, dir) = self.locate_for_change(caller, parent)?;
        let new_dir = self.locate_in(&view, caller.pid, new_parent)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.rename(&view, &self.files, (dir, name), (new_dir, new_name), mode)
    }

    /// Changes the attributes of `node` (through `handle` when the kernel sends one) and
    /// returns them as they are afterwards.
    pub fn setattr(
        &self,
        caller: &Caller,
        node: NodeId,
        handle: Option<u64>,
        changes: &SetAttr,
    ) -> Result<Attr, FsError> {
        if let Some(handle) = handle
            && handle != 0
            && handle != node
        {
            return Err(FsError::BadHandle(handle));
        }
        let (view, index) = self.locate_for_change(caller, node)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.setattr(&view, &self.files, index, changes)
    }

    /// Writes `data` at `offset` into file `node` (through `handle`, or by node id alone with
    /// handle 0 when the kernel skips OPEN); returns the bytes written.
    pub fn write(
        &self,
        node: NodeId,
        handle: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, FsError> {
        let file = self.writable_file(node, handle)?;
        file.write_all_at(data, offset)
            .map_err(|source| FsError::Scratch {
                path: format!("node {node}").into(),
                source,
            })?;
        Ok(data.len())
    }

    /// Flushes file `node`'s data (and its metadata unless `data_only`) to the scratch's disk.
    pub fn fsync(&self, node: NodeId, handle: u64, data_only: bool) -> Result<(), FsError> {
        if handle != 0 && handle != node {
            return Err(FsError::BadHandle(handle));
        }
        let (view, index) = self.locate(0, node)?;
        // Nothing of a read-only view or a lower file is the scratch's to flush.
        let Some(edit) = view.edit() else {
            return Ok(());
        };
        if !edit.is_upper(index) && self.files.peek(node).is_none() {
            return Ok(());
        }
        let file = self.file(node, handle)?;
        if data_only {
            file.sync_data()
        } else {
            file.sync_all()
        }
        .map_err(|source| FsError::Scratch {
            path: format!("node {node}").into(),
            source,
        })
    }

    /// Allocates (or, with `mode`'s flags, punches) space in file `node`, as `fallocate(2)`.
    pub fn fallocate(
        &self,
        node: NodeId,
        handle: u64,
        mode: u32,
        offset: u64,
        len: u64,
    ) -> Result<(), FsError> {
        let file = self.writable_file(node, handle)?;
        crate::edit::fallocate(&file, mode, offset, len).map_err(|source| FsError::Scratch {
            path: format!("node {node}").into(),
            source,
        })
    }

    /// The value of extended attribute `name` of `node`.
    pub fn getxattr(&self, node: NodeId, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let (view, index) = self.locate(0, node)?;
        match view.changes() {
            Some(edit) => edit.getxattr(&view, index, name),
            None => Err(FsError::NoAttribute),
        }
    }

    /// The names of `node`'s extended attributes, each followed by a NUL.
    pub fn listxattr(&self, node: NodeId) -> Result<Vec<u8>, FsError> {
        let (view, index) = self.locate(0, node)?;
        match view.changes() {
            Some(edit) => edit.listxattr(&view, index),
            None => Ok(Vec::new()),
        }
    }

    /// Sets extended attribute `name` of `node`.
    pub fn setxattr(
        &self,
        caller: &Caller,
        node: NodeId,
        name: &[u8],
        value: &[u8],
        mode: XattrSet,
    ) -> Result<(), FsError> {
        let (view, index) = self.locate_for_change(caller, node)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.setxattr(&view, &self.files, index, name, Some((value, mode)))
    }

    /// Removes extended attribute `name` of `node`.
    pub fn removexattr(&self, caller: &Caller, node: NodeId, name: &[u8]) -> Result<(), FsError> {
        let (view, index) = self.locate_for_change(caller, node)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.setxattr(&view, &self.files, index, name, None)
    }

    /// The statistics of the view `node` belongs to; the root's are the caller's view's.
    pub fn statfs(&self, caller: Pid, node: NodeId) -> Result<StatFs, FsError> {
        let (view, _) = self.locate(caller, node)?;
        if let Some(edit) = view.edit() {
            return edit.statfs();
        }
        Ok(StatFs {
            block_size: BLOCK_SIZE,
            blocks: view.blocks(),
            free_blocks: 0,
            available_blocks: 0,
            files: view.len() as u64,
            free_files: 0,
            name_max: 255,
        })
    }
}

impl Vfs {
    /// Makes `name` in `parent` as `what` for `caller` (see [`Vfs::create`] for `pin`).
    fn make_in(
        &self,
        caller: &Caller,
        (parent, name): (NodeId, &[u8]),
        mode: u32,
        what: Make<'_>,
        pin: bool,
    ) -> Result<Attr, FsError> {
        let (view, dir) = self.locate_for_change(caller, parent)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.make(&view, &self.files, caller, (dir, name), mode, what, pin)
    }

    /// The writable file of file `node` (through `handle`, or by node id alone with handle 0),
    /// copied up on its first change: a frontend writes the request's data into it straight
    /// from its own buffer, as [`Vfs::write`] does from a slice.
    pub fn writable_file(&self, node: NodeId, handle: u64) -> Result<Writable, FsError> {
        if handle != 0 && handle != node {
            return Err(FsError::BadHandle(handle));
        }
        let (view, index) = self.locate(0, node)?;
        let edit = view.edit().ok_or(FsError::ReadOnly)?;
        edit.gate().enter_unguarded();
        let file = edit.writable(&view, &self.files, index);
        let inside = Inside(view);
        Ok(Writable {
            file: file?,
            _inside: inside,
        })
    }
}

/// A writable file of an editable view ([`Vfs::writable_file`]): until it is dropped, the
/// write into it is inside the view's commit gate, so a commit waits for it to land.
#[derive(Debug)]
pub struct Writable {
    file: Arc<File>,
    _inside: Inside,
}

impl std::ops::Deref for Writable {
    type Target = Arc<File>;

    fn deref(&self) -> &Arc<File> {
        &self.file
    }
}

/// A change inside a view's commit gate, leaving on drop.
#[derive(Debug)]
struct Inside(Arc<View>);

impl Drop for Inside {
    fn drop(&mut self) {
        if let Some(edit) = self.0.edit() {
            edit.gate().leave();
        }
    }
}

/// Refuses what cannot be opened for reading: directories, symlinks (`ELOOP`, as
/// `O_NOFOLLOW` would) and any write (`EROFS`).
fn check_readable(view: &View, index: u32, node: NodeId, write: bool) -> Result<(), FsError> {
    match view.kind(index) {
        FileKind::Directory => Err(FsError::IsADirectory(node)),
        FileKind::Symlink => Err(FsError::Source {
            path: view.relative_path(index),
            source: std::io::Error::from_raw_os_error(libc::ELOOP),
        }),
        FileKind::File if write => Err(FsError::ReadOnly),
        FileKind::File => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::files::{SHARDS, UNPINNED_PER_SHARD};
    use crate::spec::ResolvedSpec;

    /// A fixed view of one layer holding `files` small files named f0, f1, ...
    fn vfs_with_files(layer: &std::path::Path, files: usize) -> (Vfs, Arc<View>) {
        for i in 0..files {
            std::fs::write(layer.join(format!("f{i}")), format!("content {i}")).unwrap();
        }
        let root = Attr::root(0, 0, Timestamp::default());
        let view = Arc::new(View::build(
            7,
            &ResolvedSpec::of_directories([layer.to_path_buf()]),
            &root,
            (0, 0),
        ));
        (Vfs::new(Routing::Fixed(view.clone())), view)
    }

    fn node_of(view: &View, name: &str) -> NodeId {
        view.node_id(view.child(0, name.as_bytes()).unwrap())
    }

    /// Nodes of files f1.. that share `first`'s shard of the open-file cache.
    fn same_shard(view: &View, first: NodeId, files: usize) -> Vec<NodeId> {
        (1..files)
            .map(|i| node_of(view, &format!("f{i}")))
            .filter(|n| n % SHARDS as u64 == first % SHARDS as u64)
            .collect()
    }

    #[test]
    fn a_file_read_by_node_is_opened_once_and_the_oldest_is_let_go() {
        let layer = tempfile::tempdir().unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 200);
        let first = node_of(&view, "f0");
        let opened = vfs.file(first, 0).unwrap();
        let mut text = String::new();
        (&*opened).read_to_string(&mut text).unwrap();
        assert_eq!(text, "content 0");
        assert!(Arc::ptr_eq(&opened, &vfs.file(first, 0).unwrap()));
        // Fill f0's shard past its capacity: f0 must be opened afresh afterwards.
        let others = same_shard(&view, first, 200);
        assert!(
            others.len() >= UNPINNED_PER_SHARD,
            "the test needs a full shard"
        );
        for node in others.iter().take(UNPINNED_PER_SHARD) {
            vfs.file(*node, 0).unwrap();
        }
        assert!(!Arc::ptr_eq(&opened, &vfs.file(first, 0).unwrap()));
    }

    #[test]
    fn a_directory_or_unknown_node_is_refused_when_read_by_node() {
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir(layer.path().join("dir")).unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 1);
        assert!(matches!(
            vfs.file(node_of(&view, "dir"), 0),
            Err(FsError::IsADirectory(_))
        ));
        assert!(matches!(
            vfs.file(view.node_id(1000), 0),
            Err(FsError::StaleNode(_))
        ));
        assert!(matches!(
            vfs.read(ROOT_OF_TESTS, 0, 0, 1),
            Err(FsError::IsADirectory(_))
        ));
    }

    /// The root, which no read may open.
    const ROOT_OF_TESTS: NodeId = node::ROOT;

    #[test]
    fn an_open_handle_keeps_its_file_while_reads_by_node_come_and_go() {
        let layer = tempfile::tempdir().unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 600);
        let first = node_of(&view, "f0");
        assert!(same_shard(&view, first, 600).len() >= 3 * UNPINNED_PER_SHARD);
        let handle = vfs.open(0, first, false).unwrap();
        let pinned = vfs.file(first, handle).unwrap();
        // A read by node id alone finds the file the handle opened: one cache for both.
        assert!(Arc::ptr_eq(&pinned, &vfs.file(first, 0).unwrap()));
        for node in same_shard(&view, first, 600)
            .iter()
            .take(2 * UNPINNED_PER_SHARD)
        {
            vfs.file(*node, 0).unwrap();
        }
        assert!(vfs.files.is_pinned(first));
        assert!(Arc::ptr_eq(&pinned, &vfs.file(first, handle).unwrap()));
        assert_eq!(vfs.read(first, handle, 8, 100).unwrap(), b"0");
        vfs.release(handle);
        assert!(!vfs.files.is_pinned(first));
        // Released, it is an ordinary cached file again and goes with the next newcomers.
        for node in same_shard(&view, first, 600)
            .iter()
            .skip(2 * UNPINNED_PER_SHARD)
            .take(UNPINNED_PER_SHARD)
        {
            vfs.file(*node, 0).unwrap();
        }
        assert!(!Arc::ptr_eq(&pinned, &vfs.file(first, 0).unwrap()));
    }

    #[test]
    fn a_handle_of_another_node_or_a_write_open_is_refused() {
        let layer = tempfile::tempdir().unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 2);
        let (f0, f1) = (node_of(&view, "f0"), node_of(&view, "f1"));
        let handle = vfs.open(0, f0, false).unwrap();
        assert!(matches!(vfs.file(f1, handle), Err(FsError::BadHandle(h)) if h == handle));
        assert!(matches!(vfs.open(0, f1, true), Err(FsError::ReadOnly)));
    }
}
