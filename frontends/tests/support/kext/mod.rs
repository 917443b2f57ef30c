//! A model of the macFUSE kernel extension between processes and the server, written from the
//! last open source of the kext (osxfuse/kext, branch `support/osxfuse-3`, directory
//! `osxfuse/`). It turns path operations by a simulated process (a pid the router resolves
//! through a fake process table) into FUSE requests carrying that pid, which the REAL adapter
//! answers through the sessions' own in-memory path ([`MemoryServer`]), and keeps the kext's
//! caches between them. Linux honours entry timeouts; the kext does not, so only this model
//! lets a Linux test see what a Mac would answer. Editable views (DESIGN.md §4 rule 7) add the
//! write vnops below: what the kext caches of the names and vnodes they make is what decides
//! whether one runtime's new name can reach another's lookups.
//!
//! What each piece comes from:
//!
//! | model | kext behaviour | where |
//! |---|---|---|
//! | [`Kext::mount`] sends INIT, 7.19 | `fuse_internal_init` | `fuse_internal.c` |
//! | name cache `(parent, name) -> node`, no expiry | `fuse_vget_i` calls `cache_enter` unless the mount has `novncache` (`fuse_isnovncache_mp`); `entry_valid` is stored in `FSNodeGetOrCreateFileVNodeByID` and never read | `fuse_node.c` |
//! | a hit answers the lookup without the server | `fuse_vnop_lookup`: `fuse_vncache_lookup` positive match returns at once | `fuse_vnops.c` |
//! | a miss (node id 0 or `ENOENT`) is never cached | `fuse_vnop_lookup`: negative entries only with `negative_vncache`, which no policy here sets | `fuse_vnops.c` |
//! | one vnode per node id; a lookup reply sets attributes only when it creates the vnode | `HNodeLookupCreatingIfNecessary`, `cache_attrs` in the creating branch | `fuse_node.c` |
//! | attributes kept per vnode while `uptime <= attr_valid` | `fuse_vnop_getattr`, `cache_attrs` | `fuse_vnops.c`, `fuse_internal.h` |
//! | one handle per vnode, reused by any process's open with no OPEN/OPENDIR | `fuse_vnop_open`: `FUFH_IS_VALID` → `FUFH_USE_INC` (macfuse/macfuse#199) | `fuse_vnops.c` |
//! | RELEASE/RELEASEDIR when the last opener closes | `fuse_vnop_close`: `FUFH_USE_DEC`, `fuse_filehandle_put` | `fuse_vnops.c` |
//! | READDIR (never READDIRPLUS) with the vnode's handle, from offset 0 until an empty reply; the directory's attributes are dropped after | `fuse_vnop_readdir`, `fuse_internal_readdir` | `fuse_vnops.c`, `fuse_internal.c` |
//! | READLINK on every readlink, attributes dropped after | `fuse_vnop_readlink` | `fuse_vnops.c` |
//! | a file's data, once read, stays with its vnode (UBC; never purged on open without `FOPEN_PURGE_UBC`) | `fuse_vnop_open`, `fuse_vnop_read` | `fuse_vnops.c` |
//! | reads and listings in chunks of the I/O size, 16 pages | `FUSE_DEFAULT_IOSIZE` | `fuse_param.h` |
//! | `statfs` sends STATFS on the root with the caller's pid; with the server dead it answers zeros ("so that we can be gracefully unmounted") | `fuse_vfsop_getattr` | `fuse_vfsops.c` |
//! | create sends CREATE (`O_CREAT \| O_RDWR \| O_EXCL`, the mode with its type bits, umask 0) with the caller's pid; the reply's node id finds or makes the vnode (attributes set only when made) and the name is entered in the name cache unless `novncache`; the directory's attributes are dropped | `fuse_vnop_create`, `fuse_vget_i` | `fuse_vnops.c`, `fuse_node.c` |
//! | the creator's open takes the handle CREATE stashed in the vnode's read-write slot, with no OPEN | `fuse_vnop_open` (`FN_CREATING`) | `fuse_vnops.c` |
//! | a read-write open of a vnode whose read-write handle is open reuses it, whichever process opens; else OPEN with `O_RDWR`; one handle per open mode (`fufh[FUFH_RDWR]` beside `fufh[FUFH_RDONLY]`) | `fuse_vnop_open`, `fuse_filehandle_xlate_from_fflags` | `fuse_vnops.c`, `fuse_file.c` |
//! | a write goes to the server as WRITE with the open mode's handle, and the vnode's cached data and size follow it (UBC) | `fuse_vnop_write`, `fuse_vnop_strategy` | `fuse_vnops.c` |
//! | unlink purges the vnode's names from the name cache before and after UNLINK, and drops the directory's and the vnode's attributes | `fuse_vnop_remove`, `fuse_internal_remove` | `fuse_vnops.c`, `fuse_internal.c` |
//! | rename purges the source's names, sends RENAME, drops both directories' attributes, purges the target's names (a directory moved: the directories' names too); the vnode, and its node id, stay | `fuse_vnop_rename`, `fuse_internal_rename` | `fuse_vnops.c`, `fuse_internal.c` |
//! | a message written to the device with unique 0 is a notification: its length must match the header's, its code be one the ABI (7.12+) has, its size that code's; POLL, STORE and RETRIEVE are taken and ignored | `fuse_device_write`, `fuse_ipc_notify_handler`, `fuse_ipc_notify_audit`, `fuse_abi_is_notify_supported` | `fuse_device.c`, `fuse_ipc.c`, `fuse_ipc.h` |
//! | INVAL_ENTRY: `ENOENT` unless the parent has a vnode; a name cache hit purges the child's names (`cache_purge`), and the parent's attributes are dropped; the child vnode keeps its attributes and data | `fuse_notify_inval_entry`, `fuse_notify_lookup` | `fuse_notify.c` |
//! | INVAL_INODE: `ENOENT` unless the node has a vnode; drops its attributes and (offset >= 0) its UBC data, then a regular file's attributes are fetched again with GETATTR (a kernel thread's, pid 0); a GETATTR answering `ENOENT` makes the vnode disappear (its names purged) | `fuse_notify_inval_inode`, `fuse_notify_getattr` | `fuse_notify.c` |
//! | the server dead: `getattr` of the root faked (directory, mode 0700), of anything else `ENXIO`; `open`, `lookup`, `readdir`, `readlink` and `read` answer `ENXIO`; `close` sends nothing | `fuse_vnop_getattr`, `fuse_vnop_open`, `fuse_vnop_lookup`, `fuse_vnop_readdir`, `fuse_vnop_readlink`, `fuse_vnop_read`, `fuse_vnop_close` | `fuse_vnops.c` |
//!
//! INVAL_INODE is modelled as macFUSE 3.10.5 and later do it: the open kext casts the node id
//! to a 32-bit `ino_t` (macfuse/macfuse#664, fixed after the last open release), which would
//! drop the view id from our node ids. Notifications run in the order written, one at a time;
//! the kext's GETATTR thread runs at once here. INVAL_INODE on a mount with `nosyncwrites`
//! (`ENOSYS`) is left out: no policy here sets it.
//!
//! Left out, because nothing here depends on them: vnode reclaim (and its FORGET), `.` and
//! `..` lookups (the kext sends GETATTR for them), symlinks in the middle of a path, XNU's own
//! permission checks and the kext's blanket denial of other users, and concurrency (one
//! request at a time). Writes go to the server at once, where the kext gathers them in the UBC
//! and sends them at `msync`, close or page-out (`cluster_write`): only their order against
//! other requests differs, and nothing here reads another process's unsynced data. The model's clock moves 1 ns per request, so a reply's time to live of
//! 0 has expired by the next request, as on a real machine.
//!
//! The mount options and the reply policy are the macFUSE session's own: a
//! [`KernelPolicy`] built for `Platform::MacOs` and `Transport::Device`, so a change there
//! changes what this model does. On Linux the messages carry the Linux ABI (see `wire.rs`).

pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{
    Attr, AttrOut, CreateIn, EntryOut, GetattrIn, InitIn, Kstatfs, NotifyInvalEntryOut,
    NotifyInvalInodeOut, Opcode, OpenIn, OpenOut, OutHeader, ReadIn, ReleaseIn, RenameIn,
    StatfsOut, WriteIn, WriteOut,
};
use fuse_backend_rs::api::filesystem::FsOptions;
use spfs_frontends::adapter::Adapter;
use spfs_frontends::policy::{KernelPolicy, MountOption};
use spfs_frontends::session::MemoryServer;
use spfs_frontends::{Invalidator, NotifyChannel};
use spfs_router::{ROOT, Vfs};

/// The kext's I/O size: 16 pages of 4 KiB (`FUSE_DEFAULT_IOSIZE`).
pub const IOSIZE: u32 = 16 * 4096;

/// An errno.
pub type Errno = i32;

// A FUSE `mode` is 32 bits; `mode_t` is 16 on macOS, so the casts are needed there only.
/// The file type bits of a FUSE `mode`.
#[allow(clippy::unnecessary_cast)]
const S_IFMT: u32 = libc::S_IFMT as u32;
#[allow(clippy::unnecessary_cast)]
const S_IFLNK: u32 = libc::S_IFLNK as u32;
/// A regular file's file type bits.
#[allow(clippy::unnecessary_cast)]
const S_IFREG: u32 = libc::S_IFREG as u32;
/// A directory's file type bits.
#[allow(clippy::unnecessary_cast)]
pub const S_IFDIR: u32 = libc::S_IFDIR as u32;
/// Read, write and search for the owner.
#[allow(clippy::unnecessary_cast)]
pub const S_IRWXU: u32 = libc::S_IRWXU as u32;

/// Whether a FUSE `mode` is a directory's.
pub fn is_dir(mode: u32) -> bool {
    mode & S_IFMT == S_IFDIR
}

/// What a process holds after `open`: the vnode (node id) it opened, and in which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fd(u64, Mode);

/// An open mode, each with its own handle slot in the vnode (`fufh[FUFH_RDONLY]`,
/// `fufh[FUFH_RDWR]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    ReadOnly,
    ReadWrite,
}

impl Mode {
    fn flags(self) -> u32 {
        match self {
            Mode::ReadOnly => libc::O_RDONLY as u32,
            Mode::ReadWrite => libc::O_RDWR as u32,
        }
    }
}

/// The handle a vnode keeps for one open mode, and how many opens share it.
#[derive(Debug, Clone, Copy)]
struct Handle {
    fh: u64,
    opens: u32,
}

/// What the kext keeps of one node id.
#[derive(Debug, Default)]
struct Vnode {
    attr: Attr,
    /// The uptime until which `attr` answers `getattr` (`attr_valid`).
    attr_valid: Duration,
    /// The read-only opens' handle.
    handle: Option<Handle>,
    /// The read-write opens' handle (also where CREATE's is stashed).
    rw: Option<Handle>,
    /// The file's data once read (UBC).
    data: Option<Vec<u8>>,
}

impl Vnode {
    fn is_dir(&self) -> bool {
        is_dir(self.attr.mode)
    }

    fn is_symlink(&self) -> bool {
        self.attr.mode & S_IFMT == S_IFLNK
    }

    /// The handle slot of open mode `mode`.
    fn slot(&mut self, mode: Mode) -> &mut Option<Handle> {
        match mode {
            Mode::ReadOnly => &mut self.handle,
            Mode::ReadWrite => &mut self.rw,
        }
    }
}

/// The model of one macFUSE mount.
pub struct Kext {
    server: MemoryServer,
    /// `novncache`: no name is ever entered in the name cache.
    no_vncache: bool,
    /// XNU's name cache: (parent node, name) to node, with no expiry.
    names: HashMap<(u64, Vec<u8>), u64>,
    vnodes: HashMap<u64, Vnode>,
    uptime: Duration,
    dead: bool,
    unique: u64,
    sent: BTreeMap<u32, u64>,
    reply: Vec<u8>,
    /// What the service wrote to the device since the model last read it.
    written: Arc<Outbox>,
}

/// The device's write side as the service's [`Invalidator`] sees it: messages wait here until
/// [`Kext::take_writes`] runs them through the kext, one at a time, in order.
#[derive(Default)]
struct Outbox(Mutex<Vec<Vec<u8>>>);

impl NotifyChannel for Outbox {
    fn notify(&self, message: &[u8]) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(message.to_vec());
        Ok(())
    }
}

/// macFUSE's notification codes (`fuse_kernel.h`): POLL, INVAL_INODE, INVAL_ENTRY, STORE,
/// RETRIEVE, DELETE; `FUSE_NOTIFY_CODE_MAX` is 7.
const NOTIFY_INVAL_INODE: i32 = 2;
const NOTIFY_INVAL_ENTRY: i32 = 3;
const NOTIFY_CODE_MAX: i32 = 7;

impl Kext {
    /// Mounts `vfs` as the macFUSE session would with `policy`: the adapter answers under that
    /// policy, and the model runs that policy's mount options. Sends INIT.
    pub fn mount(vfs: Arc<Vfs>, policy: &KernelPolicy) -> Kext {
        let mut kext = Kext {
            server: MemoryServer::new(Adapter::new(vfs, policy.clone())).expect("/dev/null"),
            no_vncache: policy.mount_options.contains(&MountOption::NoVnCache),
            names: HashMap::new(),
            vnodes: HashMap::new(),
            uptime: Duration::ZERO,
            dead: false,
            unique: 0,
            sent: BTreeMap::new(),
            reply: vec![0; wire::REPLY_BYTES],
            written: Arc::default(),
        };
        // The root vnode exists from the mount on, its attributes not yet known.
        kext.vnodes.insert(
            ROOT,
            Vnode {
                attr: Attr {
                    ino: ROOT,
                    mode: S_IFDIR | 0o755,
                    ..Attr::default()
                },
                ..Vnode::default()
            },
        );
        // The kext offers macOS-only INIT flags (ALLOCATE, EXCHANGE_DATA, CASE_INSENSITIVE,
        // VOL_RENAME, XTIMES) whose bits mean other things in the Linux ABI: only the one both
        // ABIs share is offered here.
        let init = InitIn {
            major: 7,
            minor: 19,
            max_readahead: IOSIZE * 16,
            flags: FsOptions::ATOMIC_O_TRUNC.bits() as u32,
        };
        kext.send(Opcode::Init, 0, 0, wire::bytes(&init))
            .expect("INIT is answered");
        kext
    }

    /// How many requests of `opcode` the model has sent.
    pub fn sent(&self, opcode: Opcode) -> u64 {
        self.sent.get(&(opcode as u32)).copied().unwrap_or(0)
    }

    /// Every request the model has sent.
    pub fn sent_total(&self) -> u64 {
        self.sent.values().sum()
    }

    /// The server is gone: the kext marks the mount dead (`fuse_device.c`, close).
    pub fn server_died(&mut self) {
        self.dead = true;
    }

    /// Lets `by` pass on the model's clock.
    pub fn advance(&mut self, by: Duration) {
        self.uptime += by;
    }

    /// Sends one request and returns the reply's body, or its errno.
    fn send(
        &mut self,
        opcode: Opcode,
        nodeid: u64,
        pid: u32,
        body: &[u8],
    ) -> Result<Vec<u8>, Errno> {
        self.unique += 1;
        self.uptime += Duration::from_nanos(1);
        *self.sent.entry(opcode as u32).or_default() += 1;
        let mut request = wire::request(opcode, self.unique, nodeid, pid, body);
        let len = self.server.answer(&mut request, &mut self.reply);
        let (errno, body) = wire::split_reply(&self.reply, len);
        match errno {
            0 => Ok(body.to_vec()),
            errno => Err(errno),
        }
    }

    /// When a time to live of `secs` and `nanos` from now ends.
    fn deadline(&self, secs: u64, nanos: u32) -> Duration {
        self.uptime + Duration::new(secs, nanos)
    }

    /// `fuse_vnop_lookup`: `name` in directory `dir` for process `pid`.
    fn lookup(&mut self, pid: u32, dir: u64, name: &[u8]) -> Result<u64, Errno> {
        if self.dead {
            return Err(libc::ENXIO);
        }
        if !self.vnodes.get(&dir).is_some_and(Vnode::is_dir) {
            return Err(libc::ENOTDIR);
        }
        if name == b"." || name == b".." {
            // The kext sends GETATTR for these; no test walks them.
            return Err(libc::EINVAL);
        }
        let key = (dir, name.to_vec());
        if let Some(&node) = self.names.get(&key) {
            return Ok(node);
        }
        let mut body = name.to_vec();
        body.push(0);
        let entry: EntryOut = wire::read(&self.send(Opcode::Lookup, dir, pid, &body)?);
        match entry.nodeid {
            0 => return Err(libc::ENOENT),
            ROOT => return Err(libc::EINVAL),
            _ => {}
        }
        self.vget(dir, name, &entry);
        Ok(entry.nodeid)
    }

    /// `fuse_vget_i`: the vnode of `entry`'s node id, made with its attributes if new (an
    /// existing one keeps the attributes it has), and `name` in `dir` entered in the name
    /// cache unless the mount has `novncache`.
    fn vget(&mut self, dir: u64, name: &[u8], entry: &EntryOut) {
        if !self.vnodes.contains_key(&entry.nodeid) {
            let attr_valid = self.deadline(entry.attr_valid, entry.attr_valid_nsec);
            self.vnodes.insert(
                entry.nodeid,
                Vnode {
                    attr: entry.attr,
                    attr_valid,
                    ..Vnode::default()
                },
            );
        }
        if !self.no_vncache {
            self.names.insert((dir, name.to_vec()), entry.nodeid);
        }
    }

    /// `fuse_vncache_purge`: every name cache entry naming `node`, or in it (`cache_purge`).
    fn purge(&mut self, node: u64) {
        self.names
            .retain(|(dir, _), named| *named != node && *dir != node);
    }

    /// namei for a name to make or remove: the parent of `path` and the last component.
    fn walk_parent(&mut self, pid: u32, path: &str) -> Result<(u64, Vec<u8>), Errno> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = self.walk(pid, parent)?;
        if !self.vnodes.get(&dir).is_some_and(Vnode::is_dir) {
            return Err(libc::ENOTDIR);
        }
        Ok((dir, name.as_bytes().to_vec()))
    }

    /// namei: the node at `path` (relative to the mount; "" is the root), the last component
    /// not followed.
    fn walk(&mut self, pid: u32, path: &str) -> Result<u64, Errno> {
        let mut node = ROOT;
        for name in path.split('/').filter(|c| !c.is_empty()) {
            node = self.lookup(pid, node, OsStr::new(name).as_bytes())?;
        }
        Ok(node)
    }

    /// `fuse_vnop_getattr` of `node`.
    fn getattr(&mut self, pid: u32, node: u64) -> Result<Attr, Errno> {
        if self.dead {
            if node == ROOT {
                // Faked: the type, the daemon's ids (0 here), mode S_IRWXU.
                return Ok(Attr {
                    ino: ROOT,
                    mode: S_IFDIR | S_IRWXU,
                    ..Attr::default()
                });
            }
            return Err(libc::ENXIO);
        }
        let vnode = self.vnodes.get(&node).ok_or(libc::ENOENT)?;
        if self.uptime <= vnode.attr_valid {
            return Ok(vnode.attr);
        }
        let getattr = GetattrIn::default();
        let out: AttrOut =
            wire::read(&self.send(Opcode::Getattr, node, pid, wire::bytes(&getattr))?);
        let attr_valid = self.deadline(out.attr_valid, out.attr_valid_nsec);
        let vnode = self.vnodes.entry(node).or_default();
        vnode.attr = out.attr;
        vnode.attr_valid = attr_valid;
        Ok(out.attr)
    }

    /// lstat(2) of `path` by process `pid`.
    pub fn lstat(&mut self, pid: u32, path: &str) -> Result<Attr, Errno> {
        let node = self.walk(pid, path)?;
        self.getattr(pid, node)
    }

    /// readlink(2) of `path` by process `pid`.
    pub fn readlink(&mut self, pid: u32, path: &str) -> Result<Vec<u8>, Errno> {
        let node = self.walk(pid, path)?;
        if self.dead {
            return Err(libc::ENXIO);
        }
        if !self.vnodes[&node].is_symlink() {
            return Err(libc::EINVAL);
        }
        let target = self.send(Opcode::Readlink, node, pid, &[])?;
        self.invalidate_attr(node);
        Ok(target)
    }

    fn invalidate_attr(&mut self, node: u64) {
        if let Some(vnode) = self.vnodes.get_mut(&node) {
            vnode.attr_valid = Duration::ZERO;
        }
    }

    /// open(2) of `path`, read-only, by process `pid` (`fuse_vnop_open`).
    pub fn open(&mut self, pid: u32, path: &str) -> Result<Fd, Errno> {
        self.open_as(pid, path, Mode::ReadOnly)
    }

    /// open(2) of file `path` for reading and writing, by process `pid` (`fuse_vnop_open`).
    pub fn open_rw(&mut self, pid: u32, path: &str) -> Result<Fd, Errno> {
        self.open_as(pid, path, Mode::ReadWrite)
    }

    /// `fuse_vnop_open` in `mode`: the mode's handle reused when open, else OPEN (OPENDIR).
    fn open_as(&mut self, pid: u32, path: &str, mode: Mode) -> Result<Fd, Errno> {
        let node = self.walk(pid, path)?;
        if self.dead {
            return Err(libc::ENXIO);
        }
        let is_dir = self.vnodes[&node].is_dir();
        if is_dir && mode == Mode::ReadWrite {
            return Err(libc::EISDIR);
        }
        let vnode = self.vnodes.get_mut(&node).expect("walked");
        if let Some(handle) = vnode.slot(mode).as_mut() {
            handle.opens += 1;
            return Ok(Fd(node, mode));
        }
        let opcode = if is_dir {
            Opcode::Opendir
        } else {
            Opcode::Open
        };
        let open = OpenIn {
            flags: mode.flags(),
            fuse_flags: 0,
        };
        let out: OpenOut = wire::read(&self.send(opcode, node, pid, wire::bytes(&open))?);
        *self.vnodes.get_mut(&node).expect("walked").slot(mode) = Some(Handle {
            fh: out.fh,
            opens: 1,
        });
        Ok(Fd(node, mode))
    }

    /// close(2) of `fd` by process `pid` (`fuse_vnop_close`).
    pub fn close(&mut self, pid: u32, fd: Fd) {
        if self.dead {
            return;
        }
        let vnode = self.vnodes.get_mut(&fd.0).expect("an open vnode");
        let is_dir = vnode.is_dir();
        let slot = vnode.slot(fd.1);
        let handle = slot.as_mut().expect("an open handle");
        handle.opens -= 1;
        if handle.opens > 0 {
            return;
        }
        let fh = handle.fh;
        *slot = None;
        let release = ReleaseIn {
            fh,
            flags: fd.1.flags(),
            ..ReleaseIn::default()
        };
        let opcode = if is_dir {
            Opcode::Releasedir
        } else {
            Opcode::Release
        };
        // The kext ignores what RELEASE answers.
        let _ = self.send(opcode, fd.0, pid, wire::bytes(&release));
    }

    /// The names directory `fd` lists for process `pid`, `.` and `..` left out
    /// (`fuse_vnop_readdir`).
    pub fn readdir(&mut self, pid: u32, fd: Fd) -> Result<Vec<Vec<u8>>, Errno> {
        if self.dead {
            return Err(libc::ENXIO);
        }
        let fh = self.vnodes[&fd.0].handle.expect("an open handle").fh;
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let read = ReadIn {
                fh,
                offset,
                size: IOSIZE,
                ..ReadIn::default()
            };
            let body = self.send(Opcode::Readdir, fd.0, pid, wire::bytes(&read))?;
            let entries = wire::dirents(&body);
            let Some(last) = entries.last() else {
                break;
            };
            offset = last.1;
            names.extend(
                entries
                    .into_iter()
                    .map(|(_, _, name)| name)
                    .filter(|name| name != b"." && name != b".."),
            );
        }
        self.invalidate_attr(fd.0);
        Ok(names)
    }

    /// The whole of file `fd` for process `pid`: from the UBC, or read in I/O-size chunks.
    pub fn read(&mut self, pid: u32, fd: Fd) -> Result<Vec<u8>, Errno> {
        if self.dead {
            return Err(libc::ENXIO);
        }
        let vnode = &self.vnodes[&fd.0];
        if let Some(data) = &vnode.data {
            return Ok(data.clone());
        }
        let handle = match fd.1 {
            Mode::ReadOnly => vnode.handle,
            Mode::ReadWrite => vnode.rw,
        };
        let (fh, size) = (handle.expect("an open handle").fh, vnode.attr.size);
        let mut data = Vec::new();
        while (data.len() as u64) < size {
            let read = ReadIn {
                fh,
                offset: data.len() as u64,
                size: IOSIZE,
                ..ReadIn::default()
            };
            let chunk = self.send(Opcode::Read, fd.0, pid, wire::bytes(&read))?;
            if chunk.is_empty() {
                break;
            }
            data.extend_from_slice(&chunk);
        }
        self.vnodes.get_mut(&fd.0).expect("open").data = Some(data.clone());
        Ok(data)
    }

    /// open, read to the end, close.
    pub fn read_file(&mut self, pid: u32, path: &str) -> Result<Vec<u8>, Errno> {
        let fd = self.open(pid, path)?;
        let data = self.read(pid, fd);
        self.close(pid, fd);
        data
    }

    /// opendir, readdir to the end, closedir.
    pub fn list(&mut self, pid: u32, path: &str) -> Result<Vec<Vec<u8>>, Errno> {
        let fd = self.open(pid, path)?;
        let names = self.readdir(pid, fd);
        self.close(pid, fd);
        names
    }

    /// open(2) of a new file `path` with `O_CREAT | O_EXCL` and permission bits `mode`, by
    /// process `pid`: `fuse_vnop_create`, then the creator's `fuse_vnop_open`, which takes the
    /// handle CREATE returned without an OPEN.
    pub fn create(&mut self, pid: u32, path: &str, mode: u32) -> Result<Fd, Errno> {
        let (dir, name) = self.walk_parent(pid, path)?;
        if self.dead {
            return Err(libc::ENXIO);
        }
        let create = CreateIn {
            flags: (libc::O_CREAT | libc::O_RDWR | libc::O_EXCL) as u32,
            mode: S_IFREG | mode,
            umask: 0,
            fuse_flags: 0,
        };
        let body = [wire::bytes(&create), &name, &[0]].concat();
        let reply = self.send(Opcode::Create, dir, pid, &body)?;
        let entry: EntryOut = wire::read(&reply);
        let open: OpenOut = wire::read(&reply[std::mem::size_of::<EntryOut>().min(reply.len())..]);
        self.vget(dir, &name, &entry);
        self.invalidate_attr(dir);
        let vnode = self.vnodes.get_mut(&entry.nodeid).expect("made");
        match vnode.rw.as_mut() {
            // Another open of the node holds its read-write handle: the kext keeps that one.
            Some(handle) => handle.opens += 1,
            None => {
                vnode.rw = Some(Handle {
                    fh: open.fh,
                    opens: 1,
                })
            }
        }
        Ok(Fd(entry.nodeid, Mode::ReadWrite))
    }

    /// pwrite(2) of `data` at `offset` to `fd` by process `pid`: WRITE with the vnode's
    /// read-write handle; the vnode's cached data and size follow.
    pub fn write(&mut self, pid: u32, fd: Fd, offset: u64, data: &[u8]) -> Result<usize, Errno> {
        if self.dead {
            return Err(libc::ENXIO);
        }
        let vnode = &self.vnodes[&fd.0];
        let fh = vnode
            .rw
            .filter(|_| fd.1 == Mode::ReadWrite)
            .ok_or(libc::EBADF)?
            .fh;
        let write = WriteIn {
            fh,
            offset,
            size: data.len() as u32,
            ..WriteIn::default()
        };
        let body = [wire::bytes(&write), data].concat();
        let out: WriteOut = wire::read(&self.send(Opcode::Write, fd.0, pid, &body)?);
        let written = out.size as usize;
        let vnode = self.vnodes.get_mut(&fd.0).expect("open");
        let end = offset + written as u64;
        if let Some(cached) = vnode.data.as_mut() {
            if cached.len() < end as usize {
                cached.resize(end as usize, 0);
            }
            cached[offset as usize..end as usize].copy_from_slice(&data[..written]);
        }
        vnode.attr.size = vnode.attr.size.max(end);
        Ok(written)
    }

    /// create, write all of `data`, close.
    pub fn write_file(&mut self, pid: u32, path: &str, data: &[u8]) -> Result<u64, Errno> {
        let fd = self.create(pid, path, 0o644)?;
        let written = self.write(pid, fd, 0, data);
        self.close(pid, fd);
        written.map(|_| fd.0)
    }

    /// unlink(2) of `path` by process `pid` (`fuse_vnop_remove`, `fuse_internal_remove`).
    pub fn unlink(&mut self, pid: u32, path: &str) -> Result<(), Errno> {
        let (dir, name) = self.walk_parent(pid, path)?;
        let node = self.lookup(pid, dir, &name)?;
        if self.vnodes[&node].is_dir() {
            return Err(libc::EPERM);
        }
        self.purge(node);
        let result = self.send(Opcode::Unlink, dir, pid, &[&name[..], &[0]].concat());
        self.invalidate_attr(dir);
        self.invalidate_attr(node);
        result?;
        self.purge(node);
        Ok(())
    }

    /// rename(2) of `from` to `to` by process `pid` (`fuse_vnop_rename`,
    /// `fuse_internal_rename`).
    pub fn rename(&mut self, pid: u32, from: &str, to: &str) -> Result<(), Errno> {
        let (from_dir, from_name) = self.walk_parent(pid, from)?;
        let moved = self.lookup(pid, from_dir, &from_name)?;
        let (to_dir, to_name) = self.walk_parent(pid, to)?;
        let target = match self.lookup(pid, to_dir, &to_name) {
            Ok(node) => Some(node),
            Err(libc::ENOENT) => None,
            Err(errno) => return Err(errno),
        };
        self.purge(moved);
        // macOS's RenameIn also has the renamex_np flags, which rename(2) leaves 0.
        #[allow(clippy::needless_update)]
        let rename = RenameIn {
            newdir: to_dir,
            ..RenameIn::default()
        };
        let body = [wire::bytes(&rename), &from_name, &[0], &to_name, &[0]].concat();
        let result = self.send(Opcode::Rename, from_dir, pid, &body);
        if result.is_ok() {
            self.invalidate_attr(from_dir);
            self.invalidate_attr(to_dir);
        }
        if let Some(target) = target.filter(|t| *t != moved) {
            self.purge(target);
        }
        if self.vnodes[&moved].is_dir() {
            if target.is_some_and(|t| self.vnodes[&t].is_dir()) {
                self.purge(to_dir);
            }
            self.purge(from_dir);
        }
        result.map(drop)
    }

    /// statfs(2) of `path` by process `pid` (`fuse_vfsop_getattr`).
    pub fn statfs(&mut self, pid: u32, path: &str) -> Result<Kstatfs, Errno> {
        self.walk(pid, path)?;
        if self.dead {
            return Ok(Kstatfs::default());
        }
        let out: StatfsOut = wire::read(&self.send(Opcode::Statfs, ROOT, pid, &[])?);
        Ok(out.st)
    }
}

impl Kext {
    /// The service's handle for this mount: what it writes lands on the model's device.
    pub fn invalidator(&self) -> Invalidator {
        Invalidator::new(
            std::path::Path::new("/Volumes/model"),
            self.written.clone(),
            true,
        )
    }

    /// Runs every message the service has written through the kext (`fuse_device_write`),
    /// in order; returns each one's result (what the service's write(2) would have
    /// answered).
    pub fn take_writes(&mut self) -> Vec<Result<(), Errno>> {
        let written = std::mem::take(
            &mut *self
                .written
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        written
            .iter()
            .map(|message| self.device_write(message))
            .collect()
    }

    /// `fuse_device_write` of one unsolicited message (unique 0): the header audit, then
    /// `fuse_ipc_notify_handler`.
    pub fn device_write(&mut self, message: &[u8]) -> Result<(), Errno> {
        let head = std::mem::size_of::<OutHeader>();
        if self.dead {
            return Err(libc::ENOTCONN);
        }
        if message.len() < head {
            return Err(libc::EINVAL);
        }
        let header: OutHeader = wire::read(message);
        if header.len as usize != message.len() || header.unique != 0 {
            // A reply to no request is the model's to refuse; the kext drops it.
            return Err(libc::EINVAL);
        }
        let body = &message[head..];
        // `fuse_abi_is_notify_supported`, then `fuse_ipc_notify_audit`.
        let code = header.error;
        if !(0..NOTIFY_CODE_MAX).contains(&code) {
            return Err(libc::EINVAL);
        }
        match code {
            NOTIFY_INVAL_INODE => {
                if body.len() != std::mem::size_of::<NotifyInvalInodeOut>() {
                    return Err(libc::EINVAL);
                }
                self.inval_inode(&wire::read(body))
            }
            NOTIFY_INVAL_ENTRY => {
                let fixed = std::mem::size_of::<NotifyInvalEntryOut>();
                if body.len() < fixed {
                    return Err(libc::EINVAL);
                }
                let out: NotifyInvalEntryOut = wire::read(body);
                let namelen = out.namelen as usize;
                if namelen > body.len() - fixed {
                    return Err(libc::EINVAL);
                }
                if namelen > 255 {
                    return Err(libc::ENAMETOOLONG);
                }
                self.inval_entry(out.parent, &body[fixed..fixed + namelen])
            }
            // POLL, STORE and RETRIEVE are not implemented (taken and ignored); DELETE is
            // not modelled: nothing here sends it.
            _ => Ok(()),
        }
    }

    /// `fuse_notify_inval_entry` through `fuse_notify_lookup`.
    fn inval_entry(&mut self, parent: u64, name: &[u8]) -> Result<(), Errno> {
        if !self.vnodes.contains_key(&parent) {
            return Err(libc::ENOENT);
        }
        if let Some(&child) = self.names.get(&(parent, name.to_vec())) {
            self.purge(child);
        }
        self.invalidate_attr(parent);
        Ok(())
    }

    /// `fuse_notify_inval_inode`, with `fuse_notify_getattr` run at once.
    fn inval_inode(&mut self, out: &NotifyInvalInodeOut) -> Result<(), Errno> {
        let vnode = self.vnodes.get_mut(&out.ino).ok_or(libc::ENOENT)?;
        vnode.attr_valid = Duration::ZERO;
        if out.off >= 0 {
            // `ubc_msync(UBC_INVALIDATE)` of the range; the model keeps whole files only.
            vnode.data = None;
        }
        if vnode.attr.mode & S_IFMT != S_IFREG {
            return Ok(());
        }
        let getattr = GetattrIn::default();
        match self.send(Opcode::Getattr, out.ino, 0, wire::bytes(&getattr)) {
            Ok(body) => {
                let attr: AttrOut = wire::read(&body);
                let attr_valid = self.deadline(attr.attr_valid, attr.attr_valid_nsec);
                let vnode = self.vnodes.entry(out.ino).or_default();
                vnode.attr = attr.attr;
                vnode.attr_valid = attr_valid;
            }
            // `fuse_internal_vnode_disappear`: its names go, the vnode is revoked.
            Err(libc::ENOENT) => self.purge(out.ino),
            Err(_) => {}
        }
        Ok(())
    }
}
