//! The one FUSE adapter: a `fuse-backend-rs` [`FileSystem`] over the core's [`Vfs`].
//!
//! Every handler has the same shape: log the request, call the core, shape the reply. Which
//! answers are caller-dependent (DESIGN.md §4 rule 3) is decided in one place, [`scope`]; what
//! the kernel may keep of each scope, and every flag it gets, comes from the [`KernelPolicy`]
//! the adapter was built with.
//!
//! Requests the kernel can do without are refused once with `ENOSYS`, which makes Linux stop
//! sending them: FLUSH (writes go straight to the scratch's file, so a close has nothing to
//! flush) and, where the policy asks for it and the kernel grants no-open support, OPEN and
//! RELEASE of files, whose reads then arrive by node id alone with `KEEP_CACHE` implied. A
//! plain small-file read thus costs one request instead of four. Writes, truncates and fsyncs
//! then arrive with handle 0 too, and the core finds the file by node.
//!
//! Write requests (DESIGN.md §4 rule 7) go to the core as they come, with the caller's pid,
//! uid and gid: whether the view is editable, and whose it is, the core decides (`EROFS`,
//! `EACCES`), so a read-only view answers writes exactly as a read-only mount would.
//!
//! Every request the adapter serves is counted by its opcode into the [`Vfs`]'s
//! [`RequestCounters`] (one relaxed atomic add), and one in 16 of each opcode is timed, for
//! `status` to report what a Mac's kernel asks and what it costs.

use std::ffi::CStr;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fuse_backend_rs::abi::fuse_abi::{CreateIn, SetattrValid, stat64, statvfs64};
use fuse_backend_rs::api::filesystem::{
    Context, DirEntry as FuseDirEntry, Entry, FileSystem, FsOptions, GetxattrReply, ListxattrReply,
    OpenOptions, ZeroCopyReader, ZeroCopyWriter,
};
use spfs_router::{
    Attr, Caller, DirEntry, DirectoryReplier, FileKind, FsError, ROOT, RequestCounters, SetAttr,
    TimeSet, Timestamp, ToErrno, Vfs, XattrSet,
};

use crate::platform;
use crate::policy::{KernelPolicy, Scope};

fn errno(err: FsError) -> io::Error {
    io::Error::from_raw_os_error(err.to_errno())
}

/// Builds the `stat` the kernel gets for a node.
fn stat_of(attr: &Attr) -> stat64 {
    // SAFETY: stat64 is plain old data; all-zero bytes are a valid value.
    let mut st: stat64 = unsafe { std::mem::zeroed() };
    let kind = match attr.kind {
        FileKind::Directory => libc::S_IFDIR,
        FileKind::File => libc::S_IFREG,
        FileKind::Symlink => libc::S_IFLNK,
    };
    st.st_ino = attr.node;
    st.st_mode = kind | attr.perm as libc::mode_t;
    st.st_nlink = attr.nlink as _;
    st.st_uid = attr.uid;
    st.st_gid = attr.gid;
    st.st_size = attr.size as _;
    st.st_blksize = 4096;
    st.st_blocks = attr.size.div_ceil(512) as _;
    st.st_atime = attr.mtime.secs as _;
    st.st_atime_nsec = attr.mtime.nanos as _;
    st.st_mtime = attr.mtime.secs as _;
    st.st_mtime_nsec = attr.mtime.nanos as _;
    st.st_ctime = attr.ctime.secs as _;
    st.st_ctime_nsec = attr.ctime.nanos as _;
    st
}

/// The kernel's directory entry for a core one.
fn dirent<'a>(entry: &DirEntry<'a>) -> FuseDirEntry<'a> {
    let type_ = match entry.attr.kind {
        FileKind::Directory => libc::DT_DIR,
        FileKind::File => libc::DT_REG,
        FileKind::Symlink => libc::DT_LNK,
    };
    FuseDirEntry {
        ino: entry.attr.node,
        offset: entry.offset,
        type_: u32::from(type_),
        name: entry.name,
    }
}

/// Where an answer about `node` sits: the root and the names found in it are
/// [`Scope::Root`], whose answers differ per caller in the shared layout (rule 3); the
/// policy says what that costs in each layout. Pass the directory for a name's entry, the
/// node itself for its attributes or listing.
fn scope(node: u64) -> Scope {
    if node == ROOT {
        Scope::Root
    } else {
        Scope::Below
    }
}

/// The requests the adapter serves, numbered by their FUSE opcode (the same in Linux's and
/// macFUSE's ABI; READDIRPLUS is Linux's alone): the kinds it counts them by in the core's
/// [`RequestCounters`]. Opcodes it leaves to `fuse-backend-rs`'s defaults (FLUSH, INTERRUPT,
/// locks) are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Op {
    /// FUSE_LOOKUP.
    Lookup = 1,
    /// FUSE_FORGET.
    Forget = 2,
    /// FUSE_GETATTR.
    Getattr = 3,
    /// FUSE_SETATTR.
    Setattr = 4,
    /// FUSE_READLINK.
    Readlink = 5,
    /// FUSE_SYMLINK.
    Symlink = 6,
    /// FUSE_MKNOD.
    Mknod = 8,
    /// FUSE_MKDIR.
    Mkdir = 9,
    /// FUSE_UNLINK.
    Unlink = 10,
    /// FUSE_RMDIR.
    Rmdir = 11,
    /// FUSE_RENAME.
    Rename = 12,
    /// FUSE_LINK.
    Link = 13,
    /// FUSE_OPEN.
    Open = 14,
    /// FUSE_READ.
    Read = 15,
    /// FUSE_WRITE.
    Write = 16,
    /// FUSE_STATFS.
    Statfs = 17,
    /// FUSE_RELEASE.
    Release = 18,
    /// FUSE_FSYNC.
    Fsync = 20,
    /// FUSE_SETXATTR.
    Setxattr = 21,
    /// FUSE_GETXATTR.
    Getxattr = 22,
    /// FUSE_LISTXATTR.
    Listxattr = 23,
    /// FUSE_REMOVEXATTR.
    Removexattr = 24,
    /// FUSE_INIT.
    Init = 26,
    /// FUSE_OPENDIR.
    Opendir = 27,
    /// FUSE_READDIR.
    Readdir = 28,
    /// FUSE_RELEASEDIR.
    Releasedir = 29,
    /// FUSE_FSYNCDIR.
    Fsyncdir = 30,
    /// FUSE_ACCESS.
    Access = 34,
    /// FUSE_CREATE.
    Create = 35,
    /// FUSE_BATCH_FORGET.
    BatchForget = 42,
    /// FUSE_FALLOCATE.
    Fallocate = 43,
    /// FUSE_READDIRPLUS.
    Readdirplus = 44,
}

impl Op {
    /// Every request kind the adapter counts.
    pub const ALL: [Op; 32] = [
        Op::Lookup,
        Op::Forget,
        Op::Getattr,
        Op::Setattr,
        Op::Readlink,
        Op::Symlink,
        Op::Mknod,
        Op::Mkdir,
        Op::Unlink,
        Op::Rmdir,
        Op::Rename,
        Op::Link,
        Op::Open,
        Op::Read,
        Op::Write,
        Op::Statfs,
        Op::Release,
        Op::Fsync,
        Op::Setxattr,
        Op::Getxattr,
        Op::Listxattr,
        Op::Removexattr,
        Op::Init,
        Op::Opendir,
        Op::Readdir,
        Op::Releasedir,
        Op::Fsyncdir,
        Op::Access,
        Op::Create,
        Op::BatchForget,
        Op::Fallocate,
        Op::Readdirplus,
    ];

    /// The kernel's name of the opcode, as `status` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Lookup => "LOOKUP",
            Op::Forget => "FORGET",
            Op::Getattr => "GETATTR",
            Op::Setattr => "SETATTR",
            Op::Readlink => "READLINK",
            Op::Symlink => "SYMLINK",
            Op::Mknod => "MKNOD",
            Op::Mkdir => "MKDIR",
            Op::Unlink => "UNLINK",
            Op::Rmdir => "RMDIR",
            Op::Rename => "RENAME",
            Op::Link => "LINK",
            Op::Open => "OPEN",
            Op::Read => "READ",
            Op::Write => "WRITE",
            Op::Statfs => "STATFS",
            Op::Release => "RELEASE",
            Op::Fsync => "FSYNC",
            Op::Setxattr => "SETXATTR",
            Op::Getxattr => "GETXATTR",
            Op::Listxattr => "LISTXATTR",
            Op::Removexattr => "REMOVEXATTR",
            Op::Init => "INIT",
            Op::Opendir => "OPENDIR",
            Op::Readdir => "READDIR",
            Op::Releasedir => "RELEASEDIR",
            Op::Fsyncdir => "FSYNCDIR",
            Op::Access => "ACCESS",
            Op::Create => "CREATE",
            Op::BatchForget => "BATCH_FORGET",
            Op::Fallocate => "FALLOCATE",
            Op::Readdirplus => "READDIRPLUS",
        }
    }

    /// The request kind counted under `kind` (its opcode), if the adapter counts one there.
    pub fn of_kind(kind: usize) -> Option<Op> {
        Op::ALL.into_iter().find(|op| *op as usize == kind)
    }
}

/// A request counted, and for one in [`spfs_router::traffic::TIMED_ONE_IN`] timed until the
/// guard drops: from the handler's start to its reply (the request's decoding before, and the
/// reply's write after, are left out).
struct Timed<'a> {
    requests: &'a RequestCounters,
    op: Op,
    start: Option<Instant>,
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        if let Some(start) = self.start {
            self.requests.time(self.op as usize, start.elapsed());
        }
    }
}

/// The FUSE adapter over one [`Vfs`].
#[derive(Debug, Clone)]
pub struct Adapter {
    vfs: Arc<Vfs>,
    policy: Arc<KernelPolicy>,
    /// Whether the kernel agreed to go without OPEN and RELEASE for files.
    no_open: Arc<AtomicBool>,
}

impl Adapter {
    /// An adapter serving `vfs` to a kernel under `policy`.
    pub fn new(vfs: Arc<Vfs>, policy: KernelPolicy) -> Adapter {
        Adapter {
            vfs,
            policy: Arc::new(policy),
            no_open: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Counts one request of kind `op`, and times it until the guard drops if chosen.
    fn timed(&self, op: Op) -> Timed<'_> {
        let requests = self.vfs.requests();
        let start = requests.count(op as usize).then(Instant::now);
        Timed {
            requests,
            op,
            start,
        }
    }

    /// The entry reply for `attr`, found in directory `parent`.
    fn entry(&self, parent: u64, attr: &Attr) -> Entry {
        Entry {
            inode: attr.node,
            generation: 0,
            attr: stat_of(attr),
            attr_flags: 0,
            attr_timeout: self.attr_ttl(attr),
            entry_timeout: self.policy.caching(scope(parent)).entry_ttl,
        }
    }

    /// The handle to give the kernel for `handle`, which the core opened pinned. A kernel
    /// that granted no-open support sends no RELEASE for any file once it goes without OPEN,
    /// not even for one that CREATE or a write OPEN answered before (Linux's `fuse_file_put`
    /// looks at no-open when the file is closed), so the pin would keep the file open in the
    /// core for good: it is dropped at once, and the kernel gets handle 0, which finds the
    /// file by node as every other request of that mode does.
    fn kernel_handle(&self, handle: u64) -> u64 {
        if self.no_open.load(Ordering::Relaxed) {
            self.vfs.release(handle);
            0
        } else {
            handle
        }
    }

    /// How long the kernel may keep `attr`: a file with more than one name gets 0, since a
    /// change through one of its names (a link, an unlink, a copy-up) leaves what the kernel
    /// cached under the others stale; everything else as its scope allows.
    fn attr_ttl(&self, attr: &Attr) -> Duration {
        if attr.kind != FileKind::Directory && attr.nlink > 1 {
            Duration::ZERO
        } else {
            self.policy.caching(scope(attr.node)).attr_ttl
        }
    }
}

/// Feeds core directory entries into a FUSE reply buffer.
struct Replier<'a, F: FnMut(DirEntry<'_>) -> io::Result<usize>> {
    add: F,
    error: Option<io::Error>,
    _marker: std::marker::PhantomData<&'a ()>,
}

impl<F: FnMut(DirEntry<'_>) -> io::Result<usize>> DirectoryReplier for Replier<'_, F> {
    fn add(&mut self, entry: DirEntry<'_>) -> bool {
        match (self.add)(entry) {
            Ok(0) => false,
            Ok(_) => true,
            Err(err) => {
                self.error = Some(err);
                false
            }
        }
    }
}

impl Adapter {
    fn list(
        &self,
        ctx: &Context,
        inode: u64,
        offset: u64,
        add: impl FnMut(DirEntry<'_>) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut replier = Replier {
            add,
            error: None,
            _marker: std::marker::PhantomData,
        };
        self.vfs
            .readdir(ctx.pid as u32, inode, offset, &mut replier)
            .map_err(errno)?;
        match replier.error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// The permission bits of a mode, setuid, setgid and sticky included.
const PERMISSIONS: u32 = 0o7777;

/// The core's attribute changes for a SETATTR's `valid` bits and values. `UTIME_NOW` arrives
/// as its own bit, and becomes the core's clock ([`TimeSet::Now`]); the ctime bit (and on
/// macOS the creation, backup and flag bits) are left out: the core sets ctime itself on
/// every change, and layers keep no other times or flags.
// `st_mode` is 16 bits on macOS: the conversion is needed there only.
#[allow(clippy::useless_conversion)]
fn set_attr(attr: &stat64, valid: SetattrValid) -> SetAttr {
    let time = |now: SetattrValid, at: SetattrValid, secs: i64, nanos: i64| {
        if valid.contains(now) {
            Some(TimeSet::Now)
        } else if valid.contains(at) {
            Some(TimeSet::At(Timestamp {
                secs,
                nanos: u32::try_from(nanos).unwrap_or(0),
            }))
        } else {
            None
        }
    };
    SetAttr {
        mode: valid
            .contains(SetattrValid::MODE)
            .then_some(u32::from(attr.st_mode) & PERMISSIONS),
        uid: valid.contains(SetattrValid::UID).then_some(attr.st_uid),
        gid: valid.contains(SetattrValid::GID).then_some(attr.st_gid),
        size: valid
            .contains(SetattrValid::SIZE)
            .then_some(attr.st_size as u64),
        atime: time(
            SetattrValid::ATIME_NOW,
            SetattrValid::ATIME,
            attr.st_atime,
            attr.st_atime_nsec,
        ),
        mtime: time(
            SetattrValid::MTIME_NOW,
            SetattrValid::MTIME,
            attr.st_mtime,
            attr.st_mtime_nsec,
        ),
    }
}

/// The core's `setxattr` mode for `setxattr(2)`'s flags (`XATTR_CREATE` and `XATTR_REPLACE`
/// have each platform's own values in `libc`); both together, or any other, are invalid.
fn xattr_set(flags: u32) -> Result<XattrSet, FsError> {
    // macOS's XATTR_NOFOLLOW and XATTR_NOSECURITY concern the caller's side only.
    let flags = flags as libc::c_int & (libc::XATTR_CREATE | libc::XATTR_REPLACE);
    match flags {
        0 => Ok(XattrSet::Any),
        libc::XATTR_CREATE => Ok(XattrSet::Create),
        libc::XATTR_REPLACE => Ok(XattrSet::Replace),
        other => Err(FsError::Invalid(format!("xattr flags {other:#x}"))),
    }
}

/// An extended attribute's value, or a list of names, measured against the caller's buffer.
enum Sized {
    /// It fits: the bytes themselves.
    Fits(Vec<u8>),
    /// A size probe (buffer size 0): only its length.
    Probe(u32),
}

/// `bytes` for a buffer of `size`: its length when `size` is 0 (the caller asks how big a
/// buffer to allocate), `ERANGE` when it does not fit, as `getxattr(2)` and `listxattr(2)`.
fn sized(bytes: Vec<u8>, size: u32) -> io::Result<Sized> {
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    if size == 0 {
        Ok(Sized::Probe(len))
    } else if len > size {
        Err(io::Error::from_raw_os_error(libc::ERANGE))
    } else {
        Ok(Sized::Fits(bytes))
    }
}

/// The caller of a request, as the core takes it.
fn caller_of(ctx: &Context) -> Caller {
    Caller {
        pid: ctx.pid as u32,
        uid: ctx.uid,
        gid: ctx.gid,
    }
}

impl FileSystem for Adapter {
    type Inode = u64;
    type Handle = u64;

    fn init(&self, capable: FsOptions) -> io::Result<FsOptions> {
        let _timed = self.timed(Op::Init);
        let enabled = capable & self.policy.init;
        let no_open = self.policy.skips_open(enabled);
        self.no_open.store(no_open, Ordering::Relaxed);
        if no_open {
            // From here on a file's close may send no RELEASE (the kernel decides at close
            // whether it is in no-open mode), so the core must not count on one.
            self.vfs.set_no_open();
        }
        tracing::debug!(?enabled, "FUSE init");
        Ok(enabled)
    }

    fn lookup(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<Entry> {
        let _timed = self.timed(Op::Lookup);
        tracing::debug!(pid = ctx.pid, parent, name = ?name, "lookup");
        match self.vfs.lookup(ctx.pid as u32, parent, name.to_bytes()) {
            Ok(attr) => Ok(self.entry(parent, &attr)),
            // A miss the kernel may keep is a negative entry (node id 0).
            Err(FsError::NotFound { .. }) => {
                match self.policy.caching(scope(parent)).negative_ttl {
                    Some(ttl) => Ok(Entry {
                        inode: 0,
                        entry_timeout: ttl,
                        ..Entry::default()
                    }),
                    None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
                }
            }
            Err(err) => Err(errno(err)),
        }
    }

    fn forget(&self, _ctx: &Context, inode: u64, count: u64) {
        let _timed = self.timed(Op::Forget);
        // Views hold every node for their whole life and never reuse a node id; what the core
        // lets go is the file of a removed entry, which the kernel keeps (and does not forget)
        // while a descriptor of it is open.
        self.vfs.forget(inode, count);
    }

    fn batch_forget(&self, _ctx: &Context, requests: Vec<(u64, u64)>) {
        let _timed = self.timed(Op::BatchForget);
        for (inode, count) in requests {
            self.vfs.forget(inode, count);
        }
    }

    fn getattr(
        &self,
        ctx: &Context,
        inode: u64,
        _handle: Option<u64>,
    ) -> io::Result<(stat64, Duration)> {
        let _timed = self.timed(Op::Getattr);
        tracing::debug!(pid = ctx.pid, inode, "getattr");
        let attr = self.vfs.getattr(ctx.pid as u32, inode).map_err(errno)?;
        Ok((stat_of(&attr), self.attr_ttl(&attr)))
    }

    fn readlink(&self, ctx: &Context, inode: u64) -> io::Result<Vec<u8>> {
        let _timed = self.timed(Op::Readlink);
        tracing::debug!(pid = ctx.pid, inode, "readlink");
        self.vfs.readlink(inode).map_err(errno)
    }

    fn open(
        &self,
        ctx: &Context,
        inode: u64,
        flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions, Option<u32>)> {
        let _timed = self.timed(Op::Open);
        tracing::debug!(pid = ctx.pid, inode, flags, "open");
        let access = flags as i32 & libc::O_ACCMODE;
        let write = access != libc::O_RDONLY || flags as i32 & libc::O_TRUNC != 0;
        if !write && self.no_open.load(Ordering::Relaxed) {
            // The kernel takes this as "opens need no message" and sends no OPEN or RELEASE
            // for files from now on; reads come with handle 0 and find the file by node.
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let handle = self.vfs.open(ctx.pid as u32, inode, write).map_err(errno)?;
        Ok((
            Some(self.kernel_handle(handle)),
            self.policy.file_open,
            None,
        ))
    }

    fn read(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        w: &mut dyn ZeroCopyWriter,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _flags: u32,
    ) -> io::Result<usize> {
        let _timed = self.timed(Op::Read);
        tracing::debug!(pid = ctx.pid, inode, handle, size, offset, "read");
        // Handle 0 (the kernel skipped OPEN) reads by node id: the core's one cache serves both.
        let file = self.vfs.file(inode, handle).map_err(errno)?;
        // fuse-backend-rs wants `&mut File` to read from, while the core's cache shares the
        // file between concurrent readers. A second `File` over the same descriptor, never
        // dropped, gives that without a dup(2) per read; reads are positional (pread), so the
        // shared descriptor's cursor is never used.
        // SAFETY: `file` keeps the descriptor open for the whole call, and ManuallyDrop keeps
        // the alias from closing it.
        let mut alias = std::mem::ManuallyDrop::new(unsafe {
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::AsRawFd::as_raw_fd(
                &*file,
            ))
        });
        w.write_from(&mut *alias, size as usize, offset)
    }

    fn release(
        &self,
        _ctx: &Context,
        inode: u64,
        _flags: u32,
        handle: u64,
        _flush: bool,
        _flock_release: bool,
        _lock_owner: Option<u64>,
    ) -> io::Result<()> {
        let _timed = self.timed(Op::Release);
        tracing::debug!(inode, handle, "release");
        self.vfs.release(handle);
        Ok(())
    }

    fn statfs(&self, ctx: &Context, inode: u64) -> io::Result<statvfs64> {
        let _timed = self.timed(Op::Statfs);
        tracing::debug!(pid = ctx.pid, inode, "statfs");
        let stats = self.vfs.statfs(ctx.pid as u32, inode).map_err(errno)?;
        // SAFETY: statvfs64 is plain old data; all-zero bytes are a valid value.
        let mut st: statvfs64 = unsafe { std::mem::zeroed() };
        st.f_bsize = stats.block_size as _;
        st.f_frsize = stats.block_size as _;
        // A read-only view has nothing free; an editable one has its scratch's free space.
        st.f_blocks = stats.blocks as _;
        st.f_bfree = stats.free_blocks as _;
        st.f_bavail = stats.available_blocks as _;
        st.f_files = stats.files as _;
        st.f_ffree = stats.free_files as _;
        st.f_favail = stats.free_files as _;
        st.f_namemax = stats.name_max as _;
        Ok(st)
    }

    fn getxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        size: u32,
    ) -> io::Result<GetxattrReply> {
        let _timed = self.timed(Op::Getxattr);
        tracing::debug!(pid = ctx.pid, inode, name = ?name, size, "getxattr");
        let value = self.vfs.getxattr(inode, name.to_bytes()).map_err(errno)?;
        Ok(match sized(value, size)? {
            Sized::Fits(value) => GetxattrReply::Value(value),
            Sized::Probe(len) => GetxattrReply::Count(len),
        })
    }

    fn listxattr(&self, ctx: &Context, inode: u64, size: u32) -> io::Result<ListxattrReply> {
        let _timed = self.timed(Op::Listxattr);
        tracing::debug!(pid = ctx.pid, inode, size, "listxattr");
        let names = self.vfs.listxattr(inode).map_err(errno)?;
        Ok(match sized(names, size)? {
            Sized::Fits(names) => ListxattrReply::Names(names),
            Sized::Probe(len) => ListxattrReply::Count(len),
        })
    }

    fn opendir(
        &self,
        ctx: &Context,
        inode: u64,
        _flags: u32,
    ) -> io::Result<(Option<u64>, OpenOptions)> {
        let _timed = self.timed(Op::Opendir);
        tracing::debug!(pid = ctx.pid, inode, "opendir");
        self.vfs.opendir(ctx.pid as u32, inode).map_err(errno)?;
        // No handle: a directory's listing never depends on who opened it (Vfs::opendir).
        Ok((None, self.policy.caching(scope(inode)).dir_open))
    }

    fn readdir(
        &self,
        ctx: &Context,
        inode: u64,
        _handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(FuseDirEntry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let _timed = self.timed(Op::Readdir);
        tracing::debug!(pid = ctx.pid, inode, offset, "readdir");
        self.list(ctx, inode, offset, |entry| add_entry(dirent(&entry)))
    }

    fn readdirplus(
        &self,
        ctx: &Context,
        inode: u64,
        _handle: u64,
        _size: u32,
        offset: u64,
        add_entry: &mut dyn FnMut(FuseDirEntry, Entry) -> io::Result<usize>,
    ) -> io::Result<()> {
        let _timed = self.timed(Op::Readdirplus);
        tracing::debug!(pid = ctx.pid, inode, offset, "readdirplus");
        self.list(ctx, inode, offset, |entry| {
            add_entry(dirent(&entry), self.entry(inode, &entry.attr))
        })
    }

    fn releasedir(&self, _ctx: &Context, _inode: u64, _flags: u32, _handle: u64) -> io::Result<()> {
        let _timed = self.timed(Op::Releasedir);
        Ok(())
    }

    fn access(&self, ctx: &Context, inode: u64, mask: u32) -> io::Result<()> {
        let _timed = self.timed(Op::Access);
        tracing::debug!(pid = ctx.pid, inode, mask, "access");
        self.vfs.access(&caller_of(ctx), inode, mask).map_err(errno)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: u64,
        attr: stat64,
        handle: Option<u64>,
        valid: SetattrValid,
    ) -> io::Result<(stat64, Duration)> {
        let _timed = self.timed(Op::Setattr);
        let changes = set_attr(&attr, valid);
        tracing::debug!(pid = ctx.pid, inode, ?handle, ?changes, "setattr");
        let attr = self
            .vfs
            .setattr(&caller_of(ctx), inode, handle, &changes)
            .map_err(errno)?;
        Ok((stat_of(&attr), self.attr_ttl(&attr)))
    }

    fn symlink(
        &self,
        ctx: &Context,
        linkname: &CStr,
        parent: u64,
        name: &CStr,
    ) -> io::Result<Entry> {
        let _timed = self.timed(Op::Symlink);
        tracing::debug!(pid = ctx.pid, parent, name = ?name, target = ?linkname, "symlink");
        let attr = self
            .vfs
            .symlink(
                &caller_of(ctx),
                parent,
                name.to_bytes(),
                linkname.to_bytes(),
            )
            .map_err(errno)?;
        Ok(self.entry(parent, &attr))
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        _umask: u32,
    ) -> io::Result<Entry> {
        let _timed = self.timed(Op::Mknod);
        tracing::debug!(pid = ctx.pid, parent, name = ?name, mode, rdev, "mknod");
        // The kernel has applied the umask to `mode` already (no DONT_MASK asked for).
        let attr = self
            .vfs
            .mknod(&caller_of(ctx), parent, name.to_bytes(), mode, rdev)
            .map_err(errno)?;
        Ok(self.entry(parent, &attr))
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        mode: u32,
        _umask: u32,
    ) -> io::Result<Entry> {
        let _timed = self.timed(Op::Mkdir);
        tracing::debug!(pid = ctx.pid, parent, name = ?name, mode, "mkdir");
        let attr = self
            .vfs
            .mkdir(&caller_of(ctx), parent, name.to_bytes(), mode & PERMISSIONS)
            .map_err(errno)?;
        Ok(self.entry(parent, &attr))
    }

    fn unlink(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        let _timed = self.timed(Op::Unlink);
        tracing::debug!(pid = ctx.pid, parent, name = ?name, "unlink");
        self.vfs
            .unlink(&caller_of(ctx), parent, name.to_bytes())
            .map_err(errno)
    }

    fn rmdir(&self, ctx: &Context, parent: u64, name: &CStr) -> io::Result<()> {
        let _timed = self.timed(Op::Rmdir);
        tracing::debug!(pid = ctx.pid, parent, name = ?name, "rmdir");
        self.vfs
            .rmdir(&caller_of(ctx), parent, name.to_bytes())
            .map_err(errno)
    }

    fn rename(
        &self,
        ctx: &Context,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> io::Result<()> {
        let _timed = self.timed(Op::Rename);
        tracing::debug!(
            pid = ctx.pid, olddir, oldname = ?oldname, newdir, newname = ?newname, flags, "rename"
        );
        let mode = platform::rename_mode(flags).map_err(errno)?;
        self.vfs
            .rename(
                &caller_of(ctx),
                (olddir, oldname.to_bytes()),
                (newdir, newname.to_bytes()),
                mode,
            )
            .map_err(errno)
    }

    fn link(&self, ctx: &Context, inode: u64, newparent: u64, newname: &CStr) -> io::Result<Entry> {
        let _timed = self.timed(Op::Link);
        tracing::debug!(pid = ctx.pid, inode, newparent, newname = ?newname, "link");
        let attr = self
            .vfs
            .link(&caller_of(ctx), inode, newparent, newname.to_bytes())
            .map_err(errno)?;
        Ok(self.entry(newparent, &attr))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: u64,
        name: &CStr,
        args: CreateIn,
    ) -> io::Result<(Entry, Option<u64>, OpenOptions, Option<u32>)> {
        let _timed = self.timed(Op::Create);
        tracing::debug!(
            pid = ctx.pid, parent, name = ?name, mode = args.mode, flags = args.flags, "create"
        );
        let (attr, handle) = self
            .vfs
            .create(
                &caller_of(ctx),
                parent,
                name.to_bytes(),
                args.mode & PERMISSIONS,
            )
            .map_err(errno)?;
        Ok((
            self.entry(parent, &attr),
            Some(self.kernel_handle(handle)),
            self.policy.file_open,
            None,
        ))
    }

    fn write(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        r: &mut dyn ZeroCopyReader,
        size: u32,
        offset: u64,
        _lock_owner: Option<u64>,
        _delayed_write: bool,
        _flags: u32,
        _fuse_flags: u32,
    ) -> io::Result<usize> {
        let _timed = self.timed(Op::Write);
        tracing::debug!(pid = ctx.pid, inode, handle, size, offset, "write");
        // The core writes from a slice; the request's data sits in the FUSE buffer, and one
        // copy of it is cheap next to the write to the scratch.
        let mut data = vec![0; size as usize];
        r.read_exact(&mut data)?;
        self.vfs.write(inode, handle, offset, &data).map_err(errno)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        inode: u64,
        handle: u64,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        let _timed = self.timed(Op::Fallocate);
        tracing::debug!(
            pid = ctx.pid,
            inode,
            handle,
            mode,
            offset,
            length,
            "fallocate"
        );
        self.vfs
            .fallocate(inode, handle, mode, offset, length)
            .map_err(errno)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        let _timed = self.timed(Op::Setxattr);
        tracing::debug!(pid = ctx.pid, inode, name = ?name, size = value.len(), flags, "setxattr");
        let mode = xattr_set(flags).map_err(errno)?;
        self.vfs
            .setxattr(&caller_of(ctx), inode, name.to_bytes(), value, mode)
            .map_err(errno)
    }

    fn removexattr(&self, ctx: &Context, inode: u64, name: &CStr) -> io::Result<()> {
        let _timed = self.timed(Op::Removexattr);
        tracing::debug!(pid = ctx.pid, inode, name = ?name, "removexattr");
        self.vfs
            .removexattr(&caller_of(ctx), inode, name.to_bytes())
            .map_err(errno)
    }

    fn fsync(&self, ctx: &Context, inode: u64, datasync: bool, handle: u64) -> io::Result<()> {
        let _timed = self.timed(Op::Fsync);
        tracing::debug!(pid = ctx.pid, inode, handle, datasync, "fsync");
        self.vfs.fsync(inode, handle, datasync).map_err(errno)
    }

    fn fsyncdir(
        &self,
        _ctx: &Context,
        _inode: u64,
        _datasync: bool,
        _handle: u64,
    ) -> io::Result<()> {
        let _timed = self.timed(Op::Fsyncdir);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use spfs_router::{Routing, Timestamp, View};

    use super::*;
    use crate::policy::{Platform, RoutingKind};
    use crate::session::Transport;

    /// A fixed view of one layer holding `files` small files named f0, f1, ...
    fn vfs_with_files(layer: &std::path::Path, files: usize) -> (Arc<Vfs>, Arc<View>) {
        for i in 0..files {
            std::fs::write(layer.join(format!("f{i}")), format!("content {i}")).unwrap();
        }
        let root = spfs_router::Attr::root(0, 0, Timestamp::default());
        let view = Arc::new(View::build(
            7,
            &spfs_router::ResolvedSpec::of_directories([layer.to_path_buf()]),
            &root,
            (0, 0),
        ));
        (Arc::new(Vfs::new(Routing::Fixed(view.clone()))), view)
    }

    fn node_of(view: &View, name: &str) -> u64 {
        view.node_id(view.child(0, name.as_bytes()).unwrap())
    }

    fn policy(platform: Platform, transport: Transport) -> KernelPolicy {
        KernelPolicy::new(platform, transport, RoutingKind::Shared)
    }

    #[test]
    fn opens_are_skipped_only_when_the_kernel_agreed() {
        let layer = tempfile::tempdir().unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 1);
        let node = node_of(&view, "f0");
        let ctx = Context::default();
        let flags = libc::O_RDONLY as u32;
        let linux = policy(Platform::Linux, Transport::Device);

        let plain = Adapter::new(vfs.clone(), linux.clone());
        plain.init(FsOptions::ASYNC_READ).unwrap();
        let (handle, options, _) = plain.open(&ctx, node, flags, 0).unwrap();
        assert!(handle.is_some_and(|h| h != 0));
        assert!(options.contains(OpenOptions::KEEP_CACHE));

        let skipping = Adapter::new(vfs, linux.clone());
        skipping.init(linux.init).unwrap();
        let skipped = skipping.open(&ctx, node, flags, 0);
        if cfg!(target_os = "linux") {
            assert_eq!(skipped.unwrap_err().raw_os_error(), Some(libc::ENOSYS));
        } else {
            assert!(skipped.is_ok(), "only Linux can go without OPEN");
        }
        // A write open is still refused as read-only, never skipped.
        let write = skipping
            .open(&ctx, node, libc::O_WRONLY as u32, 0)
            .unwrap_err();
        assert_eq!(write.raw_os_error(), Some(libc::EROFS));
    }

    #[test]
    fn the_macfuse_policy_runs_through_the_adapter_on_any_platform() {
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir(layer.path().join("dir")).unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 1);
        let dir = node_of(&view, "dir");
        let ctx = Context::default();
        let mac = Adapter::new(vfs, policy(Platform::MacOs, Transport::Device));

        // Offered everything, it takes only what macFUSE's ABI has, and never skips OPEN.
        let granted = mac.init(FsOptions::all()).unwrap();
        assert_eq!(granted, FsOptions::ASYNC_READ | FsOptions::BIG_WRITES);
        let (handle, options, _) = mac
            .open(&ctx, node_of(&view, "f0"), libc::O_RDONLY as u32, 0)
            .unwrap();
        assert!(handle.is_some());
        assert_eq!(options, OpenOptions::KEEP_CACHE);

        // Rule 3 at the root, long caching below it.
        let entry = mac.lookup(&ctx, ROOT, c"dir").unwrap();
        assert_eq!(entry.entry_timeout, Duration::ZERO);
        let missing = mac.lookup(&ctx, ROOT, c"missing").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        let negative = mac.lookup(&ctx, dir, c"missing").unwrap();
        assert_eq!(negative.inode, 0);
        assert!(negative.entry_timeout > Duration::ZERO);
        assert_eq!(mac.opendir(&ctx, ROOT, 0).unwrap().1, OpenOptions::empty());
        assert_eq!(
            mac.opendir(&ctx, dir, 0).unwrap().1,
            OpenOptions::KEEP_CACHE
        );
    }

    #[test]
    fn fuse_t_answers_a_miss_below_the_root_with_a_plain_enoent() {
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir(layer.path().join("dir")).unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 0);
        let fuse_t = Adapter::new(vfs, policy(Platform::MacOs, Transport::Nfs));
        let miss = fuse_t
            .lookup(&Context::default(), node_of(&view, "dir"), c"missing")
            .unwrap_err();
        assert_eq!(miss.raw_os_error(), Some(libc::ENOENT));
    }

    /// Two runtimes under a shared root: caller 10 sees `bin/x`, caller 20 sees `bin/y`.
    fn shared_adapter(tmp: &std::path::Path, layout: RoutingKind) -> Adapter {
        use spfs_router::process::FakeProcessTable;
        use spfs_router::{Owner, Router};
        let processes = Arc::new(FakeProcessTable::new());
        processes.spawn(1, 0, 1, 0);
        processes.spawn(10, 1, 10, 0);
        processes.spawn(20, 1, 20, 0);
        let root = spfs_router::Attr::root(0, 0, Timestamp::default());
        let router = Arc::new(Router::new(processes, root));
        for (pid, name) in [(10, "x"), (20, "y")] {
            let layer = tmp.join(name);
            std::fs::create_dir_all(layer.join("bin")).unwrap();
            std::fs::write(layer.join("bin").join(name), name).unwrap();
            router
                .register(
                    pid,
                    layer.to_str().unwrap(),
                    &Owner::trusted(0, 0),
                    &[],
                    None,
                )
                .unwrap();
        }
        let vfs = Arc::new(Vfs::new(Routing::Shared(router)));
        Adapter::new(
            vfs,
            KernelPolicy::new(Platform::current(), Transport::Device, layout),
        )
    }

    fn caller(pid: u32) -> Context {
        Context {
            pid: pid as _,
            ..Context::default()
        }
    }

    /// Every entry READDIRPLUS of `dir` hands caller `pid`.
    fn listed(adapter: &Adapter, pid: u32, dir: u64) -> Vec<Entry> {
        let ctx = caller(pid);
        let handle = adapter.opendir(&ctx, dir, 0).unwrap().0.unwrap_or(0);
        let mut entries = Vec::new();
        adapter
            .readdirplus(&ctx, dir, handle, 4096, 0, &mut |_, entry| {
                entries.push(entry);
                Ok(1)
            })
            .unwrap();
        entries
    }

    #[test]
    fn names_under_the_routed_root_are_never_cached_and_names_below_it_are() {
        let tmp = tempfile::tempdir().unwrap();
        let adapter = shared_adapter(tmp.path(), RoutingKind::Shared);
        let (a, b) = (caller(10), caller(20));
        let bin_a = adapter.lookup(&a, ROOT, c"bin").unwrap();
        let bin_b = adapter.lookup(&b, ROOT, c"bin").unwrap();
        assert_ne!(
            bin_a.inode, bin_b.inode,
            "each caller gets its own view's node"
        );
        for entry in [&bin_a, &bin_b] {
            assert_eq!(entry.entry_timeout, Duration::ZERO);
            assert!(entry.attr_timeout > Duration::ZERO);
        }
        let missing = adapter.lookup(&a, ROOT, c"missing").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        let root_listing = listed(&adapter, 10, ROOT);
        assert!(root_listing.len() >= 3, "., .. and bin");
        assert!(root_listing.iter().all(|e| e.entry_timeout.is_zero()));
        assert_eq!(
            adapter.opendir(&a, ROOT, 0).unwrap().1,
            OpenOptions::empty()
        );

        // Below the root: long entries, negative entries, cached listings.
        let x = adapter.lookup(&a, bin_a.inode, c"x").unwrap();
        assert!(x.entry_timeout > Duration::ZERO);
        let y_in_a = adapter.lookup(&a, bin_a.inode, c"y").unwrap();
        assert_eq!(y_in_a.inode, 0);
        assert!(y_in_a.entry_timeout > Duration::ZERO);
        assert!(
            listed(&adapter, 10, bin_a.inode)
                .iter()
                .all(|e| e.entry_timeout > Duration::ZERO)
        );
        let below = adapter.opendir(&a, bin_a.inode, 0).unwrap().1;
        assert!(below.contains(OpenOptions::KEEP_CACHE));
    }

    #[test]
    fn the_fixed_layout_answers_its_root_as_it_always_did() {
        // Nothing routes there, but its root's names were never cached: kept so.
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir(layer.path().join("dir")).unwrap();
        let (vfs, _) = vfs_with_files(layer.path(), 1);
        let fixed = Adapter::new(
            vfs,
            KernelPolicy::new(Platform::current(), Transport::Device, RoutingKind::Fixed),
        );
        let ctx = Context::default();
        assert_eq!(
            fixed.lookup(&ctx, ROOT, c"dir").unwrap().entry_timeout,
            Duration::ZERO
        );
        let missing = fixed.lookup(&ctx, ROOT, c"missing").unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(
            fixed.opendir(&ctx, ROOT, 0).unwrap().1,
            OpenOptions::empty()
        );
        assert!(
            listed(&fixed, 0, ROOT)
                .iter()
                .all(|e| e.entry_timeout.is_zero())
        );
    }

    #[test]
    fn setattr_takes_exactly_the_valid_bits_and_utime_now_as_the_servers_clock() {
        // SAFETY: stat64 is plain old data; all-zero bytes are a valid value.
        let mut st: stat64 = unsafe { std::mem::zeroed() };
        st.st_mode = (libc::S_IFREG | 0o4751) as _;
        st.st_uid = 7;
        st.st_gid = 8;
        st.st_size = 12;
        st.st_atime = 100;
        st.st_atime_nsec = 5;
        st.st_mtime = 200;
        st.st_mtime_nsec = 6;
        assert_eq!(set_attr(&st, SetattrValid::empty()), SetAttr::default());
        let all = SetattrValid::MODE
            | SetattrValid::UID
            | SetattrValid::GID
            | SetattrValid::SIZE
            | SetattrValid::ATIME
            | SetattrValid::MTIME;
        assert_eq!(
            set_attr(&st, all),
            SetAttr {
                mode: Some(0o4751),
                uid: Some(7),
                gid: Some(8),
                size: Some(12),
                atime: Some(TimeSet::At(Timestamp {
                    secs: 100,
                    nanos: 5
                })),
                mtime: Some(TimeSet::At(Timestamp {
                    secs: 200,
                    nanos: 6
                })),
            }
        );
        // utimensat(UTIME_NOW) sends the time bit and the NOW bit together.
        let now = set_attr(
            &st,
            SetattrValid::ATIME
                | SetattrValid::ATIME_NOW
                | SetattrValid::MTIME
                | SetattrValid::MTIME_NOW,
        );
        assert_eq!(
            (now.atime, now.mtime),
            (Some(TimeSet::Now), Some(TimeSet::Now))
        );
        assert_eq!(set_attr(&st, SetattrValid::SIZE).mode, None);
    }

    #[test]
    fn xattr_replies_answer_a_size_probe_and_refuse_a_short_buffer() {
        let got = |bytes: &[u8], size| match sized(bytes.to_vec(), size) {
            Ok(Sized::Fits(value)) => format!("value {}", String::from_utf8_lossy(&value)),
            Ok(Sized::Probe(len)) => format!("size {len}"),
            Err(e) => format!("errno {:?}", e.raw_os_error()),
        };
        assert_eq!(got(b"value", 0), "size 5");
        assert_eq!(got(b"value", 5), "value value");
        assert_eq!(got(b"value", 64), "value value");
        assert_eq!(got(b"value", 4), format!("errno {:?}", Some(libc::ERANGE)));
        assert_eq!(got(b"", 0), "size 0");
        assert_eq!(xattr_set(0).unwrap(), XattrSet::Any);
        assert_eq!(
            xattr_set(libc::XATTR_CREATE as u32).unwrap(),
            XattrSet::Create
        );
        assert_eq!(
            xattr_set(libc::XATTR_REPLACE as u32).unwrap(),
            XattrSet::Replace
        );
        let both = xattr_set((libc::XATTR_CREATE | libc::XATTR_REPLACE) as u32).unwrap_err();
        assert_eq!(both.to_errno(), libc::EINVAL);
    }

    #[test]
    fn rename_flags_become_the_cores_modes() {
        use spfs_router::RenameMode;
        assert_eq!(platform::rename_mode(0).unwrap(), RenameMode::Replace);
        #[cfg(target_os = "linux")]
        {
            assert_eq!(
                platform::rename_mode(libc::RENAME_NOREPLACE).unwrap(),
                RenameMode::NoReplace
            );
            assert_eq!(
                platform::rename_mode(libc::RENAME_EXCHANGE).unwrap(),
                RenameMode::Exchange
            );
            for bad in [
                libc::RENAME_WHITEOUT,
                libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE,
            ] {
                let err = platform::rename_mode(bad).unwrap_err();
                assert_eq!(err.to_errno(), libc::EINVAL);
            }
        }
    }

    #[test]
    fn a_file_with_several_names_has_its_attributes_asked_for_every_time() {
        let layer = tempfile::tempdir().unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 1);
        let adapter = Adapter::new(vfs, policy(Platform::Linux, Transport::Device));
        let mut attr = view.attr(view.child(0, b"f0").unwrap());
        assert_eq!(attr.nlink, 1);
        let single = adapter.entry(2, &attr);
        assert!(single.attr_timeout > Duration::ZERO);
        attr.nlink = 2;
        let linked = adapter.entry(2, &attr);
        assert_eq!(linked.attr_timeout, Duration::ZERO);
        assert!(
            linked.entry_timeout > Duration::ZERO,
            "the name itself stays"
        );
        // A directory's nlink counts its subdirectories, not names of it.
        attr.kind = FileKind::Directory;
        attr.nlink = 3;
        assert!(adapter.entry(2, &attr).attr_timeout > Duration::ZERO);
    }

    /// Linux sends no RELEASE once it goes without OPEN, so a kernel that granted no-open gets
    /// handle 0 from CREATE and write OPENs, and nothing stays pinned in the core; others get
    /// the core's handle, which their RELEASE unpins.
    #[test]
    fn a_no_open_kernel_gets_handle_0_from_create_and_write_opens() {
        let layer = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        std::fs::write(layer.path().join("f0"), b"lower").unwrap();
        let root = spfs_router::Attr::root(0, 0, Timestamp::default());
        let view = View::build(
            8,
            &spfs_router::ResolvedSpec::of_directories([layer.path().to_path_buf()]),
            &root,
            (0, 0),
        )
        .with_scratch(spfs_router::Scratch::open(&scratch.path().join("s"), true).unwrap());
        let vfs = Arc::new(Vfs::new(Routing::Fixed(Arc::new(view))));
        let ctx = Context::default();
        let create = |adapter: &Adapter, name: &CStr| {
            let args = CreateIn {
                flags: libc::O_RDWR as u32,
                mode: 0o644,
                ..CreateIn::default()
            };
            adapter.create(&ctx, ROOT, name, args).unwrap().1
        };
        let linux = policy(Platform::Linux, Transport::Device);
        let skipping = Adapter::new(vfs.clone(), linux.clone());
        skipping.init(linux.init).unwrap();
        let plain = Adapter::new(vfs, linux);
        plain.init(FsOptions::ASYNC_READ).unwrap();
        if cfg!(target_os = "linux") {
            assert_eq!(create(&skipping, c"a"), Some(0));
            let f0 = skipping.lookup(&ctx, ROOT, c"f0").unwrap().inode;
            let (handle, _, _) = skipping.open(&ctx, f0, libc::O_RDWR as u32, 0).unwrap();
            assert_eq!(handle, Some(0));
        }
        let handle = create(&plain, c"b");
        assert!(handle.is_some_and(|h| h != 0), "{handle:?}");
    }

    /// A read-only view answers every write request as a read-only mount would: the adapter
    /// passes them on, the core answers `EROFS`.
    #[test]
    fn a_read_only_view_answers_every_write_request_with_erofs() {
        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir(layer.path().join("dir")).unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 1);
        let adapter = Adapter::new(vfs, policy(Platform::current(), Transport::Device));
        adapter.init(FsOptions::ASYNC_READ).unwrap();
        let ctx = Context::default();
        let file = node_of(&view, "f0");
        // SAFETY: stat64 is plain old data; all-zero bytes are a valid value.
        let st: stat64 = unsafe { std::mem::zeroed() };
        let create = CreateIn {
            flags: libc::O_WRONLY as u32,
            mode: 0o644,
            umask: 0,
            ..CreateIn::default()
        };
        let erofs = |result: io::Result<()>, what: &str| {
            assert_eq!(
                result.unwrap_err().raw_os_error(),
                Some(libc::EROFS),
                "{what}"
            );
        };
        erofs(
            adapter.create(&ctx, ROOT, c"new", create).map(drop),
            "create",
        );
        erofs(
            adapter.mkdir(&ctx, ROOT, c"new", 0o755, 0).map(drop),
            "mkdir",
        );
        erofs(
            adapter.mknod(&ctx, ROOT, c"new", 0o644, 0, 0).map(drop),
            "mknod",
        );
        erofs(
            adapter.symlink(&ctx, c"t", ROOT, c"new").map(drop),
            "symlink",
        );
        erofs(adapter.link(&ctx, file, ROOT, c"new").map(drop), "link");
        erofs(adapter.unlink(&ctx, ROOT, c"f0"), "unlink");
        erofs(adapter.rmdir(&ctx, ROOT, c"dir"), "rmdir");
        erofs(adapter.rename(&ctx, ROOT, c"f0", ROOT, c"g", 0), "rename");
        erofs(
            adapter
                .setattr(&ctx, file, st, None, SetattrValid::SIZE)
                .map(drop),
            "truncate",
        );
        erofs(adapter.fallocate(&ctx, file, 0, 0, 0, 4096), "fallocate");
        erofs(adapter.setxattr(&ctx, file, c"user.k", b"v", 0), "setxattr");
        erofs(
            adapter.open(&ctx, file, libc::O_RDWR as u32, 0).map(drop),
            "open for write",
        );
        // Reads of extended attributes still answer: none there.
        let missing = adapter.getxattr(&ctx, file, c"user.k", 0).err();
        assert_eq!(
            missing.and_then(|e| e.raw_os_error()),
            Some(FsError::NoAttribute.to_errno())
        );
        match adapter.listxattr(&ctx, file, 0).unwrap() {
            ListxattrReply::Count(n) => assert_eq!(n, 0),
            ListxattrReply::Names(_) => panic!("a size probe answers a size"),
        }
    }

    #[test]
    fn request_kinds_are_the_kernels_opcodes() {
        use fuse_backend_rs::abi::fuse_abi::Opcode;
        let common = [
            (Op::Lookup, Opcode::Lookup),
            (Op::Forget, Opcode::Forget),
            (Op::Getattr, Opcode::Getattr),
            (Op::Open, Opcode::Open),
            (Op::Read, Opcode::Read),
            (Op::Init, Opcode::Init),
            (Op::Opendir, Opcode::Opendir),
            (Op::Readdir, Opcode::Readdir),
            (Op::Access, Opcode::Access),
            (Op::BatchForget, Opcode::BatchForget),
            (Op::Fallocate, Opcode::Fallocate),
        ];
        for (op, opcode) in common {
            assert_eq!(op as usize, opcode as usize, "{op:?}");
        }
        let mut names = std::collections::HashSet::new();
        for op in Op::ALL {
            assert!(
                (op as usize) < spfs_router::traffic::REQUEST_KINDS,
                "{op:?}"
            );
            assert_eq!(Op::of_kind(op as usize), Some(op));
            assert!(names.insert(op.name()), "{} twice", op.name());
        }
        assert_eq!(Op::of_kind(7), None);
    }

    #[test]
    fn every_request_served_is_counted_by_opcode_with_its_time() {
        let layer = tempfile::tempdir().unwrap();
        let (vfs, view) = vfs_with_files(layer.path(), 1);
        let adapter = Adapter::new(vfs.clone(), policy(Platform::Linux, Transport::Device));
        let ctx = Context::default();
        for _ in 0..3 {
            adapter.lookup(&ctx, ROOT, c"f0").unwrap();
        }
        adapter.lookup(&ctx, ROOT, c"missing").unwrap_err();
        adapter.getattr(&ctx, node_of(&view, "f0"), None).unwrap();
        adapter.mkdir(&ctx, ROOT, c"new", 0o755, 0).unwrap_err();
        let counted: std::collections::BTreeMap<_, _> = vfs
            .requests()
            .totals()
            .into_iter()
            .map(|(kind, totals)| (Op::of_kind(kind).unwrap().name(), totals))
            .collect();
        let mut kinds: Vec<_> = counted.keys().copied().collect();
        kinds.sort_unstable();
        assert_eq!(kinds, ["GETATTR", "LOOKUP", "MKDIR"]);
        assert_eq!(counted["LOOKUP"].count, 4, "misses count too");
        assert_eq!(counted["GETATTR"].count, 1);
        assert_eq!(counted["MKDIR"].count, 1, "refused requests count too");
        assert_eq!(counted["LOOKUP"].timed, 1, "one in 16, the first");
        assert!(counted["LOOKUP"].nanos > 0);
    }
}
