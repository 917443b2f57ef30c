//! Editable views through a real `/dev/fuse` mount (DESIGN.md §4 rule 7): what a program or
//! a shell does to files, done at the mount, answers as on a local filesystem, and every
//! change lands in the scratch in the directory-layer format (plain entries, `.wh.NAME`
//! whiteouts) while the lower layer stays as it was. Run twice: on a per-runtime volume
//! (the fixed layout, the test process itself writing) and under the shared layout's routed
//! root (a registered process tree writing: this test binary run again with
//! `SPFS_EDIT_PROBE` set, so it is a real process the router routes).
//!
//! A read-only view on the same read-write mount answers every write with `EROFS`.
//!
//! Linux only: the mounts are `/dev/fuse`'s, and the extended-attribute calls have Linux's
//! signatures (macOS's take a position and options).

#![cfg(target_os = "linux")]

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

#[path = "support/config.rs"]
mod config;

use config::device_config;
use spfs_frontends::Session;
use spfs_router::process::SystemProcessTable;
use spfs_router::spec::ResolvedSpec;
use spfs_router::{Owner, Router, Routing, Scratch, Vfs, View};
use spfs_testkit::{require_fuse, root_attr};

/// The lower layer: relative path, content, mode. Directories come from the paths.
const LOWER: &[(&str, &[u8], u32)] = &[
    ("bin/tool", b"tool bytes", 0o755),
    ("bin/other", b"other", 0o755),
    ("etc/conf", b"lower conf", 0o644),
    ("doc/a", b"a", 0o644),
    ("doc/b", b"bbbbbb", 0o644),
    ("lib/dir/inner", b"inner", 0o644),
    ("data/old", b"old", 0o644),
    ("share/x", b"x", 0o644),
];

/// Writes the lower layer under `layer`, with an empty directory `empty` and a mappable file.
fn make_lower(layer: &Path) {
    for (rel, bytes, mode) in LOWER {
        let path = layer.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
    }
    fs::create_dir_all(layer.join("empty")).unwrap();
    fs::write(layer.join("data/map"), vec![b'm'; 8192]).unwrap();
}

/// Every entry under `root` with what it holds (a file's bytes, a symlink's target, "dir")
/// and its mode, so a test can tell the lower layer never changed.
fn snapshot(root: &Path) -> HashMap<PathBuf, (Vec<u8>, u32)> {
    let mut all = HashMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let held = if meta.is_dir() {
                todo.push(path.clone());
                b"dir".to_vec()
            } else if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            } else {
                fs::read(&path).unwrap()
            };
            all.insert(path, (held, meta.mode()));
        }
    }
    all
}

/// A view of `layer` with id `id`, editable over `scratch` when given.
fn view(id: u32, layer: &Path, scratch: Option<&Path>) -> View {
    let view = View::build(
        id,
        &ResolvedSpec::of_directories([layer.to_path_buf()]),
        &root_attr(),
        (0, 0),
    );
    match scratch {
        Some(dir) => view.with_scratch(Scratch::open(dir, true).unwrap()),
        None => view,
    }
}

fn errno_of<T: std::fmt::Debug>(result: std::io::Result<T>) -> Option<i32> {
    result.unwrap_err().raw_os_error()
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn c_name(name: &str) -> CString {
    CString::new(name).unwrap()
}

/// The last OS error of a libc call that returned -1.
fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `getxattr(2)` with a buffer of `size` bytes (0 asks for the size): the bytes, or the errno.
fn getxattr(path: &Path, name: &str, size: usize) -> Result<Vec<u8>, i32> {
    let (path, name) = (c_path(path), c_name(name));
    let mut buf = vec![0u8; size];
    // SAFETY: both strings are NUL-terminated and `buf` holds `size` bytes.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), size) };
    if n < 0 {
        return Err(last_errno());
    }
    if size == 0 {
        return Ok(n.to_string().into_bytes());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `setxattr(2)` of `name` = `value` with `flags`: 0 or the errno.
fn setxattr(path: &Path, name: &str, value: &[u8], flags: i32) -> i32 {
    let (path, name) = (c_path(path), c_name(name));
    // SAFETY: both strings are NUL-terminated and `value` outlives the call.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if rc == 0 { 0 } else { last_errno() }
}

/// `listxattr(2)`'s names.
fn listxattr(path: &Path) -> Vec<String> {
    let path = c_path(path);
    let mut buf = vec![0u8; 4096];
    // SAFETY: the path is NUL-terminated and `buf` holds its length.
    let n = unsafe { libc::listxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr: errno {}", last_errno());
    buf.truncate(n as usize);
    buf.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect()
}

/// `removexattr(2)`: 0 or the errno.
fn removexattr(path: &Path, name: &str) -> i32 {
    let (path, name) = (c_path(path), c_name(name));
    // SAFETY: both strings are NUL-terminated.
    let rc = unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) };
    if rc == 0 { 0 } else { last_errno() }
}

/// `utimensat(2)` of `path` to `times` (atime, mtime), `UTIME_NOW` as a nanosecond value.
fn utimens(path: &Path, times: [(i64, i64); 2]) {
    let path = c_path(path);
    let spec = times.map(|(sec, nsec)| libc::timespec {
        tv_sec: sec as _,
        tv_nsec: nsec as _,
    });
    // SAFETY: the path is NUL-terminated and `spec` holds two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), spec.as_ptr(), 0) };
    assert_eq!(rc, 0, "utimensat: errno {}", last_errno());
}

/// Writes `bytes` at `offset` of `path` through a shared writable mapping, then `msync`s it.
fn mmap_write(path: &Path, offset: usize, bytes: &[u8]) {
    use std::os::fd::AsRawFd;
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let len = file.metadata().unwrap().len() as usize;
    assert!(offset + bytes.len() <= len);
    // SAFETY: a fresh shared mapping of `len` bytes of an open file; it is written within its
    // bounds and unmapped before the file closes.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED, "mmap: errno {}", last_errno());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.cast::<u8>().add(offset), bytes.len());
        assert_eq!(libc::msync(map, len, libc::MS_SYNC), 0, "msync");
        assert_eq!(libc::munmap(map, len), 0, "munmap");
    }
}

/// Runs `script` in `sh` with the mount as `$1`: shell-level operations, from a child of the
/// caller (in the shared layout, a process of the same runtime).
fn sh(mount: &Path, script: &str) {
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(mount)
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
}

/// A new file at `path` holding "before", open for reading and writing, and removed.
fn created_and_removed(path: &Path) -> fs::File {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap();
    file.write_all(b"before").unwrap();
    fs::remove_file(path).unwrap();
    file
}

/// All of `file` from its start.
fn read_back(file: &mut fs::File) -> String {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut back = String::new();
    file.read_to_string(&mut back).unwrap();
    back
}

/// The inode numbers seen, so each new entry's can be checked fresh.
#[derive(Default)]
struct Inodes(HashMap<u64, PathBuf>);

impl Inodes {
    /// Records `path`'s inode number, which no other path may have.
    fn fresh(&mut self, path: &Path) -> u64 {
        let ino = fs::symlink_metadata(path).unwrap().ino();
        if let Some(other) = self.0.insert(ino, path.to_path_buf()) {
            panic!(
                "{} has node {ino}, as {} had",
                path.display(),
                other.display()
            );
        }
        ino
    }
}

/// Every operation at the mount `m` of an editable view of `layer` with scratch `s`, with its
/// result and what it left in the scratch.
fn exercise(m: &Path, s: &Path, layer: &Path) {
    let lower_before = snapshot(layer);
    let mut inodes = Inodes::default();
    for (rel, _, _) in LOWER {
        inodes.fresh(&m.join(rel));
    }
    for rel in [
        "bin", "etc", "doc", "lib", "lib/dir", "data", "share", "empty",
    ] {
        inodes.fresh(&m.join(rel));
    }

    // Create and write, with the mode asked for.
    let new = m.join("etc/new.txt");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&new)
        .unwrap();
    file.write_all(b"hello").unwrap();
    drop(file);
    assert_eq!(fs::read(&new).unwrap(), b"hello");
    assert_eq!(fs::metadata(&new).unwrap().mode() & 0o7777, 0o640);
    assert_eq!(fs::read(s.join("etc/new.txt")).unwrap(), b"hello");
    assert_eq!(
        fs::metadata(s.join("etc/new.txt")).unwrap().mode() & 0o7777,
        0o640
    );
    let new_ino = inodes.fresh(&new);
    assert_eq!(
        errno_of(
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&new)
        ),
        Some(libc::EEXIST)
    );

    // O_APPEND on a lower file copies it up first, then appends; the shell's `>>` too.
    let conf = m.join("etc/conf");
    assert_eq!(fs::read(&conf).unwrap(), b"lower conf", "cached before");
    let mut append = fs::OpenOptions::new().append(true).open(&conf).unwrap();
    append.write_all(b" more").unwrap();
    drop(append);
    sh(m, r#"printf '+sh' >> "$1/etc/conf""#);
    assert_eq!(fs::read(&conf).unwrap(), b"lower conf more+sh");
    assert_eq!(fs::read(s.join("etc/conf")).unwrap(), b"lower conf more+sh");

    // Truncate a lower file, shorter then longer.
    let b = m.join("doc/b");
    fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(2)
        .unwrap();
    assert_eq!(fs::read(&b).unwrap(), b"bb");
    assert_eq!(fs::read(s.join("doc/b")).unwrap(), b"bb");
    sh(m, r#"truncate -s 4 "$1/doc/b""#);
    assert_eq!(fs::read(&b).unwrap(), b"bb\0\0");
    assert_eq!(fs::read(s.join("doc/b")).unwrap(), b"bb\0\0");

    // A shared writable mapping of a lower file, written and msync'd.
    let map = m.join("data/map");
    mmap_write(&map, 4096, b"MAPPED");
    let mut want = vec![b'm'; 8192];
    want[4096..4102].copy_from_slice(b"MAPPED");
    assert_eq!(fs::read(&map).unwrap(), want);
    assert_eq!(fs::read(s.join("data/map")).unwrap(), want);

    // fsync and fdatasync of a new file.
    let synced = m.join("etc/synced");
    let mut file = fs::File::create(&synced).unwrap();
    file.write_all(b"durable").unwrap();
    file.sync_all().unwrap();
    file.sync_data().unwrap();
    drop(file);
    assert_eq!(fs::read(s.join("etc/synced")).unwrap(), b"durable");
    inodes.fresh(&synced);

    // Unlink a lower file: gone at the mount, a whiteout in the scratch.
    fs::remove_file(m.join("doc/a")).unwrap();
    assert_eq!(
        errno_of(fs::symlink_metadata(m.join("doc/a"))),
        Some(libc::ENOENT)
    );
    let names: Vec<_> = fs::read_dir(m.join("doc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["b"]);
    let whiteout = fs::symlink_metadata(s.join("doc/.wh.a")).unwrap();
    assert!(whiteout.is_file() && whiteout.len() == 0);
    assert!(!s.join("doc/a").exists());

    // mkdir and rmdir, at the root and below; a lower empty directory removed leaves a
    // whiteout, a lower full one is not empty.
    let top = m.join("newdir");
    fs::create_dir(&top).unwrap();
    fs::set_permissions(&top, fs::Permissions::from_mode(0o750)).unwrap();
    assert!(fs::metadata(&top).unwrap().is_dir());
    assert_eq!(fs::metadata(&top).unwrap().mode() & 0o7777, 0o750);
    assert!(fs::metadata(s.join("newdir")).unwrap().is_dir());
    inodes.fresh(&top);
    fs::write(top.join("f"), b"f").unwrap();
    inodes.fresh(&top.join("f"));
    assert_eq!(errno_of(fs::remove_dir(&top)), Some(libc::ENOTEMPTY));
    fs::remove_file(top.join("f")).unwrap();
    fs::remove_dir(&top).unwrap();
    assert_eq!(errno_of(fs::metadata(&top)), Some(libc::ENOENT));
    assert!(
        !s.join("newdir").exists(),
        "an upper-only directory leaves nothing"
    );
    sh(m, r#"mkdir "$1/doc/sub" && rmdir "$1/doc/sub""#);
    assert!(!m.join("doc/sub").exists());
    assert_eq!(
        errno_of(fs::remove_dir(m.join("lib/dir"))),
        Some(libc::ENOTEMPTY)
    );
    fs::remove_dir(m.join("empty")).unwrap();
    assert!(!m.join("empty").exists());
    assert!(fs::symlink_metadata(s.join(".wh.empty")).unwrap().is_file());

    // Rename a file over an existing one: the renamed entry keeps its node id.
    fs::rename(&new, &conf).unwrap();
    assert_eq!(fs::read(&conf).unwrap(), b"hello");
    assert_eq!(fs::metadata(&conf).unwrap().ino(), new_ino);
    assert_eq!(errno_of(fs::metadata(&new)), Some(libc::ENOENT));
    assert_eq!(fs::read(s.join("etc/conf")).unwrap(), b"hello");
    assert!(!s.join("etc/new.txt").exists());
    // A lower file renamed: its copy under the new name, a whiteout for the old.
    sh(m, r#"mv "$1/bin/tool" "$1/bin/tool2""#);
    assert_eq!(fs::read(m.join("bin/tool2")).unwrap(), b"tool bytes");
    assert!(!m.join("bin/tool").exists());
    assert_eq!(fs::read(s.join("bin/tool2")).unwrap(), b"tool bytes");
    assert!(s.join("bin/.wh.tool").is_file());
    // A directory with a lower part cannot move (redirect_dir=off).
    assert_eq!(
        errno_of(fs::rename(m.join("lib/dir"), m.join("lib/dir2"))),
        Some(libc::EXDEV)
    );
    assert_eq!(fs::read(m.join("lib/dir/inner")).unwrap(), b"inner");

    // A symlink.
    let link = m.join("etc/link");
    std::os::unix::fs::symlink("conf", &link).unwrap();
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("conf"));
    assert_eq!(fs::read(&link).unwrap(), b"hello");
    assert_eq!(
        fs::read_link(s.join("etc/link")).unwrap(),
        Path::new("conf")
    );
    inodes.fresh(&link);

    // A hard link of a lower file: one node under two names, one file in the scratch.
    let (old, old2) = (m.join("data/old"), m.join("data/old2"));
    fs::hard_link(&old, &old2).unwrap();
    let (first, second) = (fs::metadata(&old).unwrap(), fs::metadata(&old2).unwrap());
    assert_eq!((first.ino(), first.nlink()), (second.ino(), 2));
    assert_eq!(fs::read(&old2).unwrap(), b"old");
    let (sa, sb) = (
        fs::metadata(s.join("data/old")).unwrap(),
        fs::metadata(s.join("data/old2")).unwrap(),
    );
    assert_eq!((sa.ino(), sa.nlink()), (sb.ino(), 2));
    // Written through one name, seen through the other, size included.
    fs::write(&old2, b"changed through old2").unwrap();
    assert_eq!(fs::read(&old).unwrap(), b"changed through old2");
    assert_eq!(fs::metadata(&old).unwrap().len(), 20);
    fs::remove_file(&old2).unwrap();
    assert_eq!(
        fs::metadata(&old).unwrap().nlink(),
        1,
        "the other name's count"
    );

    // chmod of a lower file.
    let other = m.join("bin/other");
    fs::set_permissions(&other, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(fs::metadata(&other).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(
        fs::metadata(s.join("bin/other")).unwrap().mode() & 0o7777,
        0o700
    );
    assert_eq!(fs::read(s.join("bin/other")).unwrap(), b"other");

    // utimens: a given time, and the server's clock for UTIME_NOW.
    utimens(&b, [(1_000_000_000, 0), (1_000_000_000, 5)]);
    let (mb, sb) = (
        fs::metadata(&b).unwrap(),
        fs::metadata(s.join("doc/b")).unwrap(),
    );
    assert_eq!((mb.mtime(), mb.mtime_nsec()), (1_000_000_000, 5));
    assert_eq!((sb.mtime(), sb.mtime_nsec()), (1_000_000_000, 5));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    utimens(&b, [(0, libc::UTIME_NOW), (0, libc::UTIME_NOW)]);
    let mb = fs::metadata(&b).unwrap();
    assert!((mb.mtime() - now).abs() < 60, "{} vs {now}", mb.mtime());
    assert!((fs::metadata(s.join("doc/b")).unwrap().mtime() - now).abs() < 60);

    // Extended attributes: set, a size probe, a short buffer, list, create-only, remove.
    assert_eq!(setxattr(&conf, "user.spfs", b"v1", 0), 0);
    assert_eq!(getxattr(&conf, "user.spfs", 0), Ok(b"2".to_vec()));
    assert_eq!(getxattr(&conf, "user.spfs", 64), Ok(b"v1".to_vec()));
    assert_eq!(getxattr(&conf, "user.spfs", 1), Err(libc::ERANGE));
    assert!(listxattr(&conf).contains(&"user.spfs".to_string()));
    assert_eq!(
        getxattr(&s.join("etc/conf"), "user.spfs", 64),
        Ok(b"v1".to_vec())
    );
    assert_eq!(
        setxattr(&conf, "user.spfs", b"v2", libc::XATTR_CREATE),
        libc::EEXIST
    );
    assert_eq!(removexattr(&conf, "user.spfs"), 0);
    assert_eq!(getxattr(&conf, "user.spfs", 64), Err(libc::ENODATA));
    assert_eq!(
        getxattr(&s.join("etc/conf"), "user.spfs", 64),
        Err(libc::ENODATA)
    );
    // On a lower file, a set copies it up.
    let x = m.join("share/x");
    assert_eq!(getxattr(&x, "user.k", 64), Err(libc::ENODATA));
    assert_eq!(setxattr(&x, "user.k", b"lower", 0), 0);
    assert_eq!(
        getxattr(&s.join("share/x"), "user.k", 64),
        Ok(b"lower".to_vec())
    );
    assert_eq!(fs::read(s.join("share/x")).unwrap(), b"x");

    // fallocate extends the file; its bytes stay.
    sh(m, r#"fallocate -l 65536 "$1/etc/synced""#);
    assert_eq!(fs::metadata(&synced).unwrap().len(), 65536);
    assert_eq!(fs::metadata(s.join("etc/synced")).unwrap().len(), 65536);
    let mut head = [0u8; 7];
    fs::File::open(&synced)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(&head, b"durable");

    // statfs: the scratch's filesystem, with its free space.
    let (mounted, scratch) = (
        nix::sys::statvfs::statvfs(m).unwrap(),
        nix::sys::statvfs::statvfs(s).unwrap(),
    );
    assert_eq!(bytes(&mounted), bytes(&scratch));
    assert!(mounted.blocks_free() > 0 && mounted.blocks_available() > 0);
    assert_eq!(mounted.files(), scratch.files());
    assert!(mounted.files_free() > 0);

    // A file removed while open stays usable through the open descriptor, as on a local
    // filesystem.
    {
        let mut held = created_and_removed(&m.join("etc/tmpfile"));
        assert_eq!(
            errno_of(fs::metadata(m.join("etc/tmpfile"))),
            Some(libc::ENOENT)
        );
        held.write_all(b" after").unwrap();
        assert_eq!(read_back(&mut held), "before after");
        assert_eq!(held.metadata().unwrap().nlink(), 0);
        assert!(!s.join("etc/tmpfile").exists());
    }

    // Names starting with `.wh.` are the scratch's own.
    assert_eq!(
        errno_of(fs::write(m.join("etc/.wh.conf"), b"")),
        Some(libc::EINVAL)
    );

    assert_eq!(
        snapshot(layer),
        lower_before,
        "the lower layer never changes"
    );
}

/// The size of a filesystem in bytes.
// The counts are narrower than 64 bits on macOS: the conversions are needed there only.
#[allow(clippy::useless_conversion)]
fn bytes(st: &nix::sys::statvfs::Statvfs) -> u64 {
    u64::from(st.blocks()) * u64::from(st.fragment_size())
}

/// Mounts `vfs` at `tmp/mnt`, reading `/dev/fuse`.
fn mount(vfs: Vfs, tmp: &Path) -> (Session, PathBuf) {
    mount_with(vfs, tmp, false)
}

/// Mounts `vfs` at `tmp/mnt`, through FUSE over io_uring where the kernel offers it.
fn mount_with(vfs: Vfs, tmp: &Path, io_uring: bool) -> (Session, PathBuf) {
    let mountpoint = tmp.join("mnt");
    let session = Session::mount(Arc::new(vfs), &device_config(&mountpoint, io_uring)).unwrap();
    (session, mountpoint)
}

/// A per-runtime volume of an editable view: the test process itself writes.
#[test]
fn an_editable_volume_takes_every_change_into_its_scratch() {
    editable_volume(false);
}

/// The same over FUSE over io_uring, whose requests carry their headers and a write's data in
/// the queue's buffers (Linux with the kernel's switch on, as `ci/setup.sh` leaves it).
#[test]
fn an_editable_volume_takes_every_change_over_fuse_over_io_uring() {
    editable_volume(true);
}

fn editable_volume(io_uring: bool) {
    if !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (layer, scratch) = (tmp.path().join("layer"), tmp.path().join("scratch"));
    make_lower(&layer);
    let vfs = Vfs::new(Routing::Fixed(Arc::new(view(3, &layer, Some(&scratch)))));
    let (session, m) = mount_with(vfs, tmp.path(), io_uring);
    exercise(&m, &scratch, &layer);
    if let Some(answered) = session.io_uring_answers() {
        // Every request of the exercise after INIT came this way, its writes among them.
        assert!(answered > 100, "{answered} over io_uring");
    }
    session.unmount().unwrap();
}

/// The probe child of the shared-layout test: waits for its registration, then runs
/// [`exercise`] at the routed root.
#[test]
fn editable_probe_child() {
    let Ok(spec) = std::env::var("SPFS_EDIT_PROBE") else {
        return;
    };
    let paths: Vec<&Path> = spec.split(':').map(Path::new).collect();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    exercise(paths[0], paths[1], paths[2]);
    println!("EXERCISED");
}

/// An editable runtime under the shared layout's routed root: a registered process tree
/// writes, and what it wrote is its runtime's alone.
#[test]
fn an_editable_runtime_under_the_shared_root_takes_every_change_into_its_scratch() {
    if !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (layer, scratch) = (tmp.path().join("layer"), tmp.path().join("scratch"));
    make_lower(&layer);
    let router = Arc::new(Router::new(
        Arc::new(SystemProcessTable::new()),
        root_attr(),
    ));
    let (session, m) = mount(Vfs::new(Routing::Shared(router.clone())), tmp.path());
    let spec = format!("{}:{}:{}", m.display(), scratch.display(), layer.display());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "editable_probe_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SPFS_EDIT_PROBE", spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    router
        .register(
            child.id(),
            layer.to_str().unwrap(),
            &Owner::trusted(0, 0),
            &[],
            Some(Scratch::open(&scratch, true).unwrap()),
        )
        .unwrap();
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("EXERCISED"),
        "the runtime's exercise failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // This test process is in no runtime: it sees the empty view, and none of the writes.
    assert_eq!(fs::read_dir(&m).unwrap().count(), 0);
    assert_eq!(
        errno_of(fs::metadata(m.join("etc/conf"))),
        Some(libc::ENOENT)
    );
    session.unmount().unwrap();
}

/// A read-only view on the read-write mount answers every write with `EROFS`, and nothing
/// reaches its layer.
#[test]
fn a_read_only_view_on_a_read_write_mount_answers_erofs() {
    if !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("layer");
    make_lower(&layer);
    let before = snapshot(&layer);
    let vfs = Vfs::new(Routing::Fixed(Arc::new(view(4, &layer, None))));
    let (session, m) = mount(vfs, tmp.path());
    let erofs = Some(libc::EROFS);
    assert_eq!(errno_of(fs::write(m.join("etc/new"), b"x")), erofs);
    assert_eq!(
        errno_of(fs::OpenOptions::new().append(true).open(m.join("etc/conf"))),
        erofs
    );
    assert_eq!(errno_of(fs::create_dir(m.join("newdir"))), erofs);
    assert_eq!(errno_of(fs::remove_file(m.join("doc/a"))), erofs);
    assert_eq!(errno_of(fs::remove_dir(m.join("empty"))), erofs);
    assert_eq!(
        errno_of(fs::rename(m.join("doc/a"), m.join("doc/c"))),
        erofs
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("a", m.join("doc/l"))),
        erofs
    );
    assert_eq!(
        errno_of(fs::hard_link(m.join("doc/a"), m.join("doc/h"))),
        erofs
    );
    assert_eq!(
        errno_of(fs::set_permissions(
            m.join("doc/a"),
            fs::Permissions::from_mode(0o600)
        )),
        erofs
    );
    assert_eq!(setxattr(&m.join("doc/a"), "user.k", b"v", 0), libc::EROFS);
    // Reads answer as before; a read-only view's statfs shows nothing free.
    assert_eq!(fs::read(m.join("doc/a")).unwrap(), b"a");
    let st = nix::sys::statvfs::statvfs(&m).unwrap();
    assert_eq!((st.blocks_free(), st.files_free()), (0, 0));
    assert_eq!(snapshot(&layer), before);
    session.unmount().unwrap();
}

/// A per-runtime volume of an editable view of the lower layer, mounted through `/dev/fuse`
/// with the kernel already in its no-open mode (a read-only open answered `ENOSYS`).
struct Volume {
    _tmp: tempfile::TempDir,
    session: Session,
    mount: PathBuf,
    scratch: PathBuf,
}

impl Volume {
    fn no_open() -> Volume {
        let tmp = tempfile::tempdir().unwrap();
        let (layer, scratch) = (tmp.path().join("layer"), tmp.path().join("scratch"));
        make_lower(&layer);
        let vfs = Vfs::new(Routing::Fixed(Arc::new(view(5, &layer, Some(&scratch)))));
        let (session, mount) = mount(vfs, tmp.path());
        fs::read(mount.join("etc/conf")).unwrap();
        Volume {
            _tmp: tmp,
            session,
            mount,
            scratch,
        }
    }
}

/// Files the service has open in `scratch`: it runs in this process.
fn open_in(scratch: &Path) -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(scratch))
        .count()
}

/// Linux's no-open mode sends no RELEASE for any file once the kernel has taken it up, not
/// even for one CREATE opened (fs/fuse/file.c, `fuse_file_put`), so a handle CREATE (or a
/// write OPEN) pins would keep its file open in the service for good: files created, renamed
/// and removed by the thousand would run it out of descriptors (`EMFILE`). What the service
/// holds open in the scratch stays bounded by its open-file cache.
#[test]
fn files_made_and_removed_leave_nothing_open_in_the_service() {
    if !require_fuse() {
        return;
    }
    let volume = Volume::no_open();
    let (m, scratch) = (volume.mount.clone(), volume.scratch.clone());
    const ROUNDS: usize = 400;
    for round in 0..ROUNDS {
        fs::write(m.join("fresh"), round.to_string()).unwrap();
        fs::rename(m.join("fresh"), m.join("moved")).unwrap();
        fs::write(m.join("doc/made"), b"made").unwrap();
        fs::rename(m.join("doc/made"), m.join("doc/b")).unwrap();
        fs::remove_file(m.join("moved")).unwrap();
    }
    let open = open_in(&scratch);
    // The open-file cache keeps a few unpinned files per shard: far fewer than the files made.
    assert!(open < ROUNDS / 2, "{open} files of the scratch still open");
    assert_eq!(fs::read(m.join("doc/b")).unwrap(), b"made");
    volume.session.unmount().unwrap();
}

/// A file removed while a process holds it open outlives any number of other files passing
/// through the service's open-file cache: the core keeps it until the kernel forgets the
/// node (FORGET, passed on by the adapter), which it does only after the last close.
#[test]
fn a_file_removed_while_open_outlives_the_open_file_cache() {
    use std::io::{Seek, SeekFrom};
    if !require_fuse() {
        return;
    }
    let volume = Volume::no_open();
    let m = volume.mount.clone();
    let mut held = created_and_removed(&m.join("etc/tmpfile"));
    // A removed lower file held open, too.
    let mut lower = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("doc/a"))
        .unwrap();
    fs::remove_file(m.join("doc/a")).unwrap();
    for i in 0..300 {
        let other = m.join(format!("doc/f{i}"));
        fs::write(&other, b"x").unwrap();
        fs::read(&other).unwrap();
    }
    held.write_all(b" after").unwrap();
    assert_eq!(read_back(&mut held), "before after");
    assert_eq!(held.metadata().unwrap().nlink(), 0);
    lower.seek(SeekFrom::End(0)).unwrap();
    lower.write_all(b"+").unwrap();
    assert_eq!(read_back(&mut lower), "a+");
    drop((held, lower));
    volume.session.unmount().unwrap();
}
