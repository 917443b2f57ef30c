//! The operations: generated with paths still abstract ([`Pick`]), resolved against the
//! oracle's tree just before they run (so most of them hit existing entries, whatever came
//! before), then applied to a side through real system calls. Every outcome is a string or an
//! errno, compared as is.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use proptest::prelude::*;

use super::layers::fill;
use super::tree::{check, cpath, digest, join, lstat, names, stat_line, xattr_names, xattr_value};

/// Names new entries take: most collide with lower ones (see `layers.rs`); the two long ones
/// are the longest name whose `.wh.` whiteout fits in `NAME_MAX` (251 bytes, also a lower
/// file) and `NAME_MAX` itself (255).
pub const NAMES: [&str; 12] = [
    "a",
    "b",
    "c",
    "d",
    "e",
    "n",
    "m",
    "sub",
    "dir",
    "x",
    super::layers::LONG_NAME,
    MAX_NAME,
];
/// A name of `NAME_MAX` (255) bytes.
const MAX_NAME: &str = "MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM";
/// Symlink targets: relative ones inside the tree, dangling ones, and one out of the tree
/// (`../a` from the top, which exists on neither side: nothing ever creates through a link).
/// None names a directory through `.`: a link at the top would then be the view's root, whose
/// attributes are the same in every view and cannot change (docs/SEMANTICS.md), where
/// overlayfs lets `chmod` through such a link change its root.
const TARGETS: [&str; 7] = [
    "a",
    "dir/sub",
    "../a",
    "nowhere",
    "b/x",
    "e",
    "/nonexistent-spfs-oracle/x",
];
/// The xattr names set and removed.
const XATTRS: [&str; 3] = ["user.a", "user.b", "user.a.longer.name"];
/// Permission bits chmod, mkdir and create use.
const MODES: [u32; 9] = [
    0o644, 0o755, 0o600, 0o700, 0o444, 0o4755, 0o1777, 0o2750, 0o000,
];
/// Fixed modification times `utimensat` sets (all before [`super::tree::RECENT`]).
const TIMES: [i64; 3] = [1_000_000_000, 1_234_567_890, 1_500_000_000];
/// Open file slots per side.
pub const SLOTS: usize = 2;

/// A path not yet resolved.
#[derive(Clone, Debug)]
pub enum Pick {
    /// The n-th existing entry (modulo their number) of the oracle's tree.
    Existing(usize),
    /// The n-th existing entry that is not a directory.
    File(usize),
    /// The n-th existing directory (not the root).
    Dir(usize),
    /// A name of [`NAMES`] in the n-th existing directory (the root included).
    Fresh(usize, usize),
    /// A path of [`NAMES`] components, whatever exists.
    Raw(Vec<usize>),
}

/// Permission bits, shown in octal.
#[derive(Clone, Copy)]
pub struct Mode(pub u32);

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#o}", self.0)
    }
}

/// Data written: `len` bytes filled from `seed` (see [`fill`]).
#[derive(Clone, Copy)]
pub struct Data {
    /// How many bytes.
    pub len: usize,
    /// What fills them.
    pub seed: u8,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}B/{}", self.len, self.seed)
    }
}

impl Data {
    fn bytes(self) -> Vec<u8> {
        fill(self.len, self.seed)
    }
}

/// One operation on paths `P` (a [`Pick`] when generated, a relative path when resolved).
#[derive(Clone, Debug)]
pub enum Op<P> {
    /// `open(O_CREAT|O_WRONLY|O_NOFOLLOW [|O_EXCL], mode)` then close.
    Create { path: P, mode: Mode, excl: bool },
    /// `open(O_WRONLY [|O_TRUNC])`, `pwrite` at `offset`.
    Write {
        path: P,
        offset: u64,
        data: Data,
        trunc: bool,
    },
    /// `open(O_WRONLY|O_APPEND)`, `write`.
    Append { path: P, data: Data },
    /// `truncate`.
    Truncate { path: P, len: u64 },
    /// `open(O_RDWR)`, `fallocate(0, offset, len)`.
    Fallocate { path: P, offset: u64, len: u64 },
    /// A shared `mmap` of the file, written at `offset` (modulo its size), `msync`ed.
    MmapWrite { path: P, offset: u64, data: Data },
    /// `unlink`.
    Unlink { path: P },
    /// `mkdir`.
    Mkdir { path: P, mode: Mode },
    /// `rmdir`.
    Rmdir { path: P },
    /// `rm -rf`: children first, in name order, stopping at the first error.
    RemoveTree { path: P },
    /// `renameat2` (flags 0 or `RENAME_NOREPLACE`).
    Rename { from: P, to: P, noreplace: bool },
    /// `symlink(target, path)`.
    Symlink { target: &'static str, path: P },
    /// `link`.
    Link { from: P, to: P },
    /// `chmod` (following a symlink).
    Chmod { path: P, mode: Mode },
    /// `lchown`.
    Chown { path: P, uid: u32, gid: u32 },
    /// `utimensat(AT_SYMLINK_NOFOLLOW)` of both times: a fixed time, or `UTIME_NOW`.
    Utimens { path: P, mtime: Option<i64> },
    /// `lsetxattr`.
    SetXattr {
        path: P,
        name: &'static str,
        value: Data,
    },
    /// `lremovexattr`.
    RemoveXattr { path: P, name: &'static str },
    /// `lgetxattr`.
    GetXattr { path: P, name: &'static str },
    /// `llistxattr` (the `user.*` names).
    ListXattr { path: P },
    /// `lstat`.
    Stat { path: P },
    /// Reads the whole file (following a symlink).
    Read { path: P },
    /// Lists a directory (following a symlink) with each entry's type.
    List { path: P },
    /// `readlink`.
    ReadLink { path: P },
    /// `open(O_RDWR)` into a slot (closing what it held).
    Open { slot: usize, path: P },
    /// `pwrite` through a slot.
    FdWrite {
        slot: usize,
        offset: u64,
        data: Data,
    },
    /// `ftruncate` through a slot.
    FdTruncate { slot: usize, len: u64 },
    /// Reads the whole file through a slot.
    FdRead { slot: usize },
    /// `fstat` through a slot.
    FdStat { slot: usize },
    /// `fsync` through a slot.
    FdSync { slot: usize },
    /// Closes a slot.
    Close { slot: usize },
}

/// The paths an operation picks from: the oracle's entries and directories at that moment.
pub struct Listing {
    all: Vec<String>,
    files: Vec<String>,
    dirs: Vec<String>,
}

impl Listing {
    /// The listing of the tree at `root`.
    pub fn of(root: &Path) -> Listing {
        let paths = super::tree::paths(root);
        let mut dirs = vec![String::new()];
        dirs.extend(paths.iter().filter(|(_, d)| *d).map(|(p, _)| p.clone()));
        let files = paths
            .iter()
            .filter(|(_, d)| !*d)
            .map(|(p, _)| p.clone())
            .collect();
        Listing {
            all: paths.into_iter().map(|(p, _)| p).collect(),
            files,
            dirs,
        }
    }

    fn resolve(&self, pick: &Pick) -> String {
        let name = |n: usize| NAMES[n % NAMES.len()];
        let nth = |list: &[String], n: usize| match list.len() {
            0 => name(n).to_string(),
            len => list[n % len].clone(),
        };
        match pick {
            Pick::Existing(n) => nth(&self.all, *n),
            Pick::File(n) => nth(&self.files, *n),
            Pick::Dir(n) => nth(&self.dirs[1..], *n),
            Pick::Fresh(d, n) => match &self.dirs[d % self.dirs.len()] {
                dir if dir.is_empty() => name(*n).to_string(),
                dir => format!("{dir}/{}", name(*n)),
            },
            Pick::Raw(parts) => parts.iter().map(|n| name(*n)).collect::<Vec<_>>().join("/"),
        }
    }
}

impl Op<Pick> {
    /// This operation with its paths resolved against `listing`.
    pub fn resolve(&self, listing: &Listing) -> Op<String> {
        let r = |p: &Pick| listing.resolve(p);
        match self {
            Op::Create { path, mode, excl } => Op::Create {
                path: r(path),
                mode: *mode,
                excl: *excl,
            },
            Op::Write {
                path,
                offset,
                data,
                trunc,
            } => Op::Write {
                path: r(path),
                offset: *offset,
                data: *data,
                trunc: *trunc,
            },
            Op::Append { path, data } => Op::Append {
                path: r(path),
                data: *data,
            },
            Op::Truncate { path, len } => Op::Truncate {
                path: r(path),
                len: *len,
            },
            Op::Fallocate { path, offset, len } => Op::Fallocate {
                path: r(path),
                offset: *offset,
                len: *len,
            },
            Op::MmapWrite { path, offset, data } => Op::MmapWrite {
                path: r(path),
                offset: *offset,
                data: *data,
            },
            Op::Unlink { path } => Op::Unlink { path: r(path) },
            Op::Mkdir { path, mode } => Op::Mkdir {
                path: r(path),
                mode: *mode,
            },
            Op::Rmdir { path } => Op::Rmdir { path: r(path) },
            Op::RemoveTree { path } => Op::RemoveTree { path: r(path) },
            Op::Rename {
                from,
                to,
                noreplace,
            } => Op::Rename {
                from: r(from),
                to: r(to),
                noreplace: *noreplace,
            },
            Op::Symlink { target, path } => Op::Symlink {
                target,
                path: r(path),
            },
            Op::Link { from, to } => Op::Link {
                from: r(from),
                to: r(to),
            },
            Op::Chmod { path, mode } => Op::Chmod {
                path: r(path),
                mode: *mode,
            },
            Op::Chown { path, uid, gid } => Op::Chown {
                path: r(path),
                uid: *uid,
                gid: *gid,
            },
            Op::Utimens { path, mtime } => Op::Utimens {
                path: r(path),
                mtime: *mtime,
            },
            Op::SetXattr { path, name, value } => Op::SetXattr {
                path: r(path),
                name,
                value: *value,
            },
            Op::RemoveXattr { path, name } => Op::RemoveXattr {
                path: r(path),
                name,
            },
            Op::GetXattr { path, name } => Op::GetXattr {
                path: r(path),
                name,
            },
            Op::ListXattr { path } => Op::ListXattr { path: r(path) },
            Op::Stat { path } => Op::Stat { path: r(path) },
            Op::Read { path } => Op::Read { path: r(path) },
            Op::List { path } => Op::List { path: r(path) },
            Op::ReadLink { path } => Op::ReadLink { path: r(path) },
            Op::Open { slot, path } => Op::Open {
                slot: *slot,
                path: r(path),
            },
            Op::FdWrite { slot, offset, data } => Op::FdWrite {
                slot: *slot,
                offset: *offset,
                data: *data,
            },
            Op::FdTruncate { slot, len } => Op::FdTruncate {
                slot: *slot,
                len: *len,
            },
            Op::FdRead { slot } => Op::FdRead { slot: *slot },
            Op::FdStat { slot } => Op::FdStat { slot: *slot },
            Op::FdSync { slot } => Op::FdSync { slot: *slot },
            Op::Close { slot } => Op::Close { slot: *slot },
        }
    }
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        4 => (0..10_000usize).prop_map(Pick::Existing),
        3 => (0..10_000usize).prop_map(Pick::File),
        2 => (0..10_000usize).prop_map(Pick::Dir),
        3 => (0..10_000usize, 0..NAMES.len()).prop_map(|(d, n)| Pick::Fresh(d, n)),
        1 => prop::collection::vec(0..NAMES.len(), 1..=4).prop_map(Pick::Raw),
    ]
}

/// A path for reading or writing contents: mostly existing non-directories.
fn file() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (0..10_000usize).prop_map(Pick::File),
        2 => pick(),
    ]
}

/// A path for directory operations: mostly existing directories.
fn dir() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (0..10_000usize).prop_map(Pick::Dir),
        2 => pick(),
    ]
}

/// A path for a new entry: mostly a name in an existing directory.
fn new() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (0..10_000usize, 0..NAMES.len()).prop_map(|(d, n)| Pick::Fresh(d, n)),
        2 => pick(),
    ]
}

fn data() -> impl Strategy<Value = Data> {
    (
        prop_oneof![4 => 0..64usize, 2 => 64..9000usize, 1 => 9000..70_000usize],
        any::<u8>(),
    )
        .prop_map(|(len, seed)| Data { len, seed })
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![3 => 0..32u64, 2 => 32..10_000u64, 1 => 10_000..400_000u64]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop::sample::select(&MODES[..]).prop_map(Mode)
}

fn slot() -> impl Strategy<Value = usize> {
    0..SLOTS
}

/// An operation, weighted towards changes.
pub fn op() -> impl Strategy<Value = Op<Pick>> {
    let xattr = || prop::sample::select(&XATTRS[..]);
    prop_oneof![
        5 => (new(), mode(), any::<bool>())
            .prop_map(|(path, mode, excl)| Op::Create { path, mode, excl }),
        5 => (file(), offset(), data(), prop::bool::weighted(0.2))
            .prop_map(|(path, offset, data, trunc)| Op::Write { path, offset, data, trunc }),
        3 => (file(), data()).prop_map(|(path, data)| Op::Append { path, data }),
        3 => (file(), offset()).prop_map(|(path, len)| Op::Truncate { path, len }),
        1 => (file(), offset(), 1..20_000u64)
            .prop_map(|(path, offset, len)| Op::Fallocate { path, offset, len }),
        2 => (file(), offset(), data())
            .prop_map(|(path, offset, data)| Op::MmapWrite { path, offset, data }),
        5 => pick().prop_map(|path| Op::Unlink { path }),
        5 => (new(), mode()).prop_map(|(path, mode)| Op::Mkdir { path, mode }),
        3 => dir().prop_map(|path| Op::Rmdir { path }),
        1 => dir().prop_map(|path| Op::RemoveTree { path }),
        6 => (pick(), pick(), prop::bool::weighted(0.2))
            .prop_map(|(from, to, noreplace)| Op::Rename { from, to, noreplace }),
        2 => (prop::sample::select(&TARGETS[..]), new())
            .prop_map(|(target, path)| Op::Symlink { target, path }),
        3 => (file(), new()).prop_map(|(from, to)| Op::Link { from, to }),
        3 => (pick(), mode()).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        1 => (pick(), prop::sample::select(&[0u32, 1000, 65534][..]), prop::sample::select(&[0u32, 100, 1000][..]))
            .prop_map(|(path, uid, gid)| Op::Chown { path, uid, gid }),
        2 => (pick(), prop::option::of(prop::sample::select(&TIMES[..])))
            .prop_map(|(path, mtime)| Op::Utimens { path, mtime }),
        2 => (pick(), xattr(), data().prop_map(|d| Data { len: d.len % 300, ..d }))
            .prop_map(|(path, name, value)| Op::SetXattr { path, name, value }),
        1 => (pick(), xattr()).prop_map(|(path, name)| Op::RemoveXattr { path, name }),
        1 => (pick(), xattr()).prop_map(|(path, name)| Op::GetXattr { path, name }),
        1 => pick().prop_map(|path| Op::ListXattr { path }),
        2 => pick().prop_map(|path| Op::Stat { path }),
        2 => file().prop_map(|path| Op::Read { path }),
        2 => dir().prop_map(|path| Op::List { path }),
        1 => file().prop_map(|path| Op::ReadLink { path }),
        4 => (slot(), file()).prop_map(|(slot, path)| Op::Open { slot, path }),
        3 => (slot(), offset(), data())
            .prop_map(|(slot, offset, data)| Op::FdWrite { slot, offset, data }),
        1 => (slot(), offset()).prop_map(|(slot, len)| Op::FdTruncate { slot, len }),
        1 => slot().prop_map(|slot| Op::FdRead { slot }),
        1 => slot().prop_map(|slot| Op::FdStat { slot }),
        1 => slot().prop_map(|slot| Op::FdSync { slot }),
        1 => slot().prop_map(|slot| Op::Close { slot }),
    ]
}

/// What an operation answered: what it returned, or its errno.
pub type Outcome = Result<String, Errno>;

/// A side's open file slots.
pub type Fds = [Option<OwnedFd>; SLOTS];

fn open(path: &Path, flags: libc::c_int, mode: u32) -> Result<OwnedFd, Errno> {
    let c = cpath(path);
    // SAFETY: a valid C string; the descriptor is owned from here.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) }.into())?;
    // SAFETY: open returned a new descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pwrite_all(fd: &OwnedFd, bytes: &[u8], offset: u64) -> Outcome {
    // SAFETY: a live descriptor and a buffer of the given length.
    let n = check(unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            offset as i64,
        )
    } as _)?;
    Ok(format!("wrote {n}"))
}

fn read_all(fd: &OwnedFd) -> Outcome {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: a live descriptor and a buffer of the given length.
        let n = check(unsafe {
            libc::pread(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                out.len() as i64,
            )
        } as _)?;
        if n == 0 {
            return Ok(digest(&out));
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

fn fstat(fd: &OwnedFd) -> Outcome {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live descriptor and a stat to fill.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }.into())?;
    Ok(stat_line(&st))
}

/// The environment variable that makes this test binary a mapping writer: the test named
/// [`MMAP_CHILD_TEST`] then runs [`mmap_child`] and prints its outcome.
pub const MMAP_CHILD_ENV: &str = "SPFS_FUSE_ORACLE_MMAP";
/// The test that runs [`mmap_child`] when [`MMAP_CHILD_ENV`] is set.
pub const MMAP_CHILD_TEST: &str = "oracle_mmap_child";

/// A shared-mapping write, in a child process: a page fault on a file of the FUSE mount is
/// answered by the server, which must not share the faulting process's memory map (a fault
/// holds its lock while the server may need it), and a mapping that ends past the file's
/// contents kills its process with SIGBUS, which must not take the server down with it.
fn mmap_write(path: &Path, offset: u64, data: Data) -> Outcome {
    let exe = std::env::current_exe().map_err(|_| Errno::ENOEXEC)?;
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            MMAP_CHILD_TEST,
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            MMAP_CHILD_ENV,
            format!("{offset} {} {} {}", data.len, data.seed, path.display()),
        )
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|_| Errno::ECHILD)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let answer = stdout
        .lines()
        .find_map(|l| l.split_once("MMAP ").map(|(_, a)| a));
    match (answer, out.status.code()) {
        (Some(answer), _) => match answer.strip_prefix("ERR ") {
            Some(errno) => Err(Errno::from_raw(errno.parse().unwrap_or(libc::EIO))),
            None => Ok(answer.to_string()),
        },
        (None, _) => {
            use std::os::unix::process::ExitStatusExt;
            Ok(format!("the writer died: {:?}", out.status.signal()))
        }
    }
}

/// The mapping writer's part (see [`mmap_write`]), from [`MMAP_CHILD_ENV`]'s value: prints
/// `MMAP <outcome>` or `MMAP ERR <errno>`.
pub fn mmap_child(spec: &str) {
    let mut parts = spec.splitn(4, ' ');
    let mut num = || {
        parts
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (offset, len, seed) = (num(), num(), num());
    let path = spec.splitn(4, ' ').nth(3).unwrap_or_default();
    let data = Data {
        len: len as usize,
        seed: seed as u8,
    };
    match mmap_here(Path::new(path), offset, data) {
        Ok(answer) => println!("MMAP {answer}"),
        Err(errno) => println!("MMAP ERR {}", errno as i32),
    }
}

fn mmap_here(path: &Path, offset: u64, data: Data) -> Outcome {
    let fd = open(path, libc::O_RDWR, 0)?;
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live descriptor and a stat to fill.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }.into())?;
    let size = st.st_size as usize;
    if size == 0 {
        return Ok("empty".into());
    }
    let at = offset as usize % size;
    let bytes = data.bytes();
    let n = bytes.len().min(size - at);
    // SAFETY: a shared mapping of the file's `size` bytes, unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(Errno::last());
    }
    // SAFETY: `at + n <= size`, inside the mapping.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.cast::<u8>().add(at), n) };
    // SAFETY: the mapping made above.
    let synced = check(unsafe { libc::msync(map, size, libc::MS_SYNC) }.into());
    // SAFETY: the mapping made above, not used after.
    unsafe { libc::munmap(map, size) };
    synced?;
    Ok(format!("mapped {size}, wrote {n} at {at}"))
}

fn remove_tree(path: &Path) -> Outcome {
    let st = lstat(path)?;
    let c = cpath(path);
    if super::tree::kind(st.st_mode) == 'd' {
        for (name, _) in names(path)? {
            remove_tree(&path.join(name))?;
        }
        // SAFETY: a valid C string.
        check(unsafe { libc::rmdir(c.as_ptr()) }.into())?;
    } else {
        // SAFETY: a valid C string.
        check(unsafe { libc::unlink(c.as_ptr()) }.into())?;
    }
    Ok(String::new())
}

/// Applies `op` to the tree at `root`, with this side's open slots.
pub fn apply(op: &Op<String>, root: &Path, fds: &mut Fds) -> Outcome {
    let p = |rel: &String| join(root, rel);
    let c = |rel: &String| cpath(&join(root, rel));
    let ok = |rc: libc::c_int| check(rc.into()).map(|_| String::new());
    let slot = |fds: &Fds, slot: usize| {
        fds[slot]
            .as_ref()
            .ok_or(Errno::EBADF)
            .map(|fd| fd.as_raw_fd())
    };
    // SAFETY (every call below): valid C strings, live descriptors and buffers of the given
    // lengths.
    unsafe {
        match op {
            Op::Create { path, mode, excl } => {
                let excl = if *excl { libc::O_EXCL } else { 0 };
                open(
                    &p(path),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW | excl,
                    mode.0,
                )
                .map(|_| String::new())
            }
            Op::Write {
                path,
                offset,
                data,
                trunc,
            } => {
                let trunc = if *trunc { libc::O_TRUNC } else { 0 };
                let fd = open(&p(path), libc::O_WRONLY | trunc, 0)?;
                pwrite_all(&fd, &data.bytes(), *offset)
            }
            Op::Append { path, data } => {
                let fd = open(&p(path), libc::O_WRONLY | libc::O_APPEND, 0)?;
                let bytes = data.bytes();
                let n =
                    check(libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) as _)?;
                Ok(format!("wrote {n}"))
            }
            Op::Truncate { path, len } => ok(libc::truncate(c(path).as_ptr(), *len as i64)),
            Op::Fallocate { path, offset, len } => {
                let fd = open(&p(path), libc::O_RDWR, 0)?;
                ok(libc::fallocate(
                    fd.as_raw_fd(),
                    0,
                    *offset as i64,
                    *len as i64,
                ))
            }
            Op::MmapWrite { path, offset, data } => mmap_write(&p(path), *offset, *data),
            Op::Unlink { path } => ok(libc::unlink(c(path).as_ptr())),
            Op::Mkdir { path, mode } => ok(libc::mkdir(c(path).as_ptr(), mode.0)),
            Op::Rmdir { path } => ok(libc::rmdir(c(path).as_ptr())),
            Op::RemoveTree { path } => remove_tree(&p(path)),
            Op::Rename {
                from,
                to,
                noreplace,
            } => {
                let flags = if *noreplace {
                    libc::RENAME_NOREPLACE
                } else {
                    0
                };
                ok(libc::renameat2(
                    libc::AT_FDCWD,
                    c(from).as_ptr(),
                    libc::AT_FDCWD,
                    c(to).as_ptr(),
                    flags,
                ))
            }
            Op::Symlink { target, path } => {
                let t = std::ffi::CString::new(*target).unwrap_or_default();
                ok(libc::symlink(t.as_ptr(), c(path).as_ptr()))
            }
            Op::Link { from, to } => ok(libc::link(c(from).as_ptr(), c(to).as_ptr())),
            Op::Chmod { path, mode } => ok(libc::chmod(c(path).as_ptr(), mode.0)),
            Op::Chown { path, uid, gid } => ok(libc::lchown(c(path).as_ptr(), *uid, *gid)),
            Op::Utimens { path, mtime } => {
                let time = match mtime {
                    Some(secs) => libc::timespec {
                        tv_sec: *secs,
                        tv_nsec: 5,
                    },
                    None => libc::timespec {
                        tv_sec: 0,
                        tv_nsec: libc::UTIME_NOW,
                    },
                };
                ok(libc::utimensat(
                    libc::AT_FDCWD,
                    c(path).as_ptr(),
                    [time, time].as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                ))
            }
            Op::SetXattr { path, name, value } => {
                let (n, v) = (
                    std::ffi::CString::new(*name).unwrap_or_default(),
                    value.bytes(),
                );
                ok(libc::lsetxattr(
                    c(path).as_ptr(),
                    n.as_ptr(),
                    v.as_ptr().cast(),
                    v.len(),
                    0,
                ))
            }
            Op::RemoveXattr { path, name } => {
                let n = std::ffi::CString::new(*name).unwrap_or_default();
                ok(libc::lremovexattr(c(path).as_ptr(), n.as_ptr()))
            }
            Op::GetXattr { path, name } => xattr_value(&p(path), name).map(|v| digest(&v)),
            Op::ListXattr { path } => xattr_names(&p(path)).map(|n| n.join(",")),
            Op::Stat { path } => lstat(&p(path)).map(|st| stat_line(&st)),
            Op::Read { path } => read_all(&open(&p(path), libc::O_RDONLY, 0)?),
            Op::List { path } => names(&p(path)).map(|n| {
                n.iter()
                    .map(|(n, k)| format!("{n}:{k}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
            Op::ReadLink { path } => std::fs::read_link(p(path))
                .map(|t| t.display().to_string())
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
            Op::Open { slot, path } => {
                fds[*slot] = None;
                fds[*slot] = Some(open(&p(path), libc::O_RDWR, 0)?);
                Ok(String::new())
            }
            Op::FdWrite {
                slot: s,
                offset,
                data,
            } => {
                let bytes = data.bytes();
                let n = check(libc::pwrite(
                    slot(fds, *s)?,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    *offset as i64,
                ) as _)?;
                Ok(format!("wrote {n}"))
            }
            Op::FdTruncate { slot: s, len } => ok(libc::ftruncate(slot(fds, *s)?, *len as i64)),
            Op::FdRead { slot: s } => {
                slot(fds, *s)?;
                read_all(fds[*s].as_ref().ok_or(Errno::EBADF)?)
            }
            Op::FdStat { slot: s } => fstat(fds[*s].as_ref().ok_or(Errno::EBADF)?),
            Op::FdSync { slot: s } => ok(libc::fsync(slot(fds, *s)?)),
            Op::Close { slot } => fds[*slot].take().map(|_| String::new()).ok_or(Errno::EBADF),
        }
    }
}
