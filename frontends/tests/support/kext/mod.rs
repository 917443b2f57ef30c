//! A model of the macFUSE kernel extension between processes and the server, written from the
//! last open source of the kext (osxfuse/kext, branch `support/osxfuse-3`, directory
//! `osxfuse/`). It turns path operations by a simulated process (a pid the router resolves
//! through a fake process table) into FUSE requests carrying that pid, which the REAL adapter
//! answers through the sessions' own in-memory path ([`MemoryServer`]), and keeps the kext's
//! caches between them. Linux honours entry timeouts; the kext does not, so only this model
//! lets a Linux test see what a Mac would answer.
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
//! | the server dead: `getattr` of the root faked (directory, mode 0700), of anything else `ENXIO`; `open`, `lookup`, `readdir`, `readlink` and `read` answer `ENXIO`; `close` sends nothing | `fuse_vnop_getattr`, `fuse_vnop_open`, `fuse_vnop_lookup`, `fuse_vnop_readdir`, `fuse_vnop_readlink`, `fuse_vnop_read`, `fuse_vnop_close` | `fuse_vnops.c` |
//!
//! Left out, because nothing here depends on them: vnode reclaim (and its FORGET), `.` and
//! `..` lookups (the kext sends GETATTR for them), symlinks in the middle of a path, XNU's own
//! permission checks and the kext's blanket denial of other users, and concurrency (one
//! request at a time). The model's clock moves 1 ns per request, so a reply's time to live of
//! 0 has expired by the next request, as on a real machine.
//!
//! The mount options and the reply policy are the macFUSE session's own: a
//! [`KernelPolicy`] built for `Platform::MacOs` and `Transport::Device`, so a change there
//! changes what this model does. On Linux the messages carry the Linux ABI (see `wire.rs`).

pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::{
    Attr, AttrOut, EntryOut, GetattrIn, InitIn, Kstatfs, Opcode, OpenIn, OpenOut, ReadIn,
    ReleaseIn, StatfsOut,
};
use fuse_backend_rs::api::filesystem::FsOptions;
use spfs_frontends::adapter::Adapter;
use spfs_frontends::policy::{KernelPolicy, MountOption};
use spfs_frontends::session::MemoryServer;
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

/// What a process holds after `open`: the vnode (node id) it opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fd(u64);

/// The one handle a vnode keeps for read-only opens (`fufh[FUFH_RDONLY]`), and how many opens
/// share it.
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
    handle: Option<Handle>,
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
}

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
            self.names.insert(key, entry.nodeid);
        }
        Ok(entry.nodeid)
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
        let node = self.walk(pid, path)?;
        if self.dead {
            return Err(libc::ENXIO);
        }
        let is_dir = self.vnodes[&node].is_dir();
        if let Some(handle) = self.vnodes.get_mut(&node).and_then(|v| v.handle.as_mut()) {
            handle.opens += 1;
            return Ok(Fd(node));
        }
        let opcode = if is_dir {
            Opcode::Opendir
        } else {
            Opcode::Open
        };
        let open = OpenIn {
            flags: libc::O_RDONLY as u32,
            fuse_flags: 0,
        };
        let out: OpenOut = wire::read(&self.send(opcode, node, pid, wire::bytes(&open))?);
        self.vnodes.get_mut(&node).expect("walked").handle = Some(Handle {
            fh: out.fh,
            opens: 1,
        });
        Ok(Fd(node))
    }

    /// close(2) of `fd` by process `pid` (`fuse_vnop_close`).
    pub fn close(&mut self, pid: u32, fd: Fd) {
        if self.dead {
            return;
        }
        let vnode = self.vnodes.get_mut(&fd.0).expect("an open vnode");
        let is_dir = vnode.is_dir();
        let handle = vnode.handle.as_mut().expect("an open handle");
        handle.opens -= 1;
        if handle.opens > 0 {
            return;
        }
        let fh = handle.fh;
        vnode.handle = None;
        let release = ReleaseIn {
            fh,
            flags: libc::O_RDONLY as u32,
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
        let (fh, size) = (vnode.handle.expect("an open handle").fh, vnode.attr.size);
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
