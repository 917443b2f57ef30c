//! What a tree looks like, as the comparison sees it: one line per entry with its kind, mode,
//! owner, size, content hash, link target, `user.*` xattrs and modification time. Not inode
//! numbers, the link count of directories, directory sizes, access or change times: those
//! legitimately differ between two filesystems.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;

/// Modification times from here on are "recent": made by the operations at run time (they
/// differ between the sides by the instant). Earlier ones were set on purpose (the layers and
/// `utimensat` with a fixed time) and must match to the nanosecond.
pub const RECENT: i64 = 1_700_000_000;

/// A path as a C string.
pub fn cpath(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// `root/rel`, where `rel` "" is the root.
pub fn join(root: &Path, rel: &str) -> std::path::PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    }
}

/// The errno of a failed call returning `rc`.
pub fn check(rc: libc::c_long) -> Result<libc::c_long, Errno> {
    if rc < 0 { Err(Errno::last()) } else { Ok(rc) }
}

/// `lstat(2)`.
pub fn lstat(path: &Path) -> Result<libc::stat, Errno> {
    let c = cpath(path);
    // SAFETY: an all-zero stat is valid; lstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a stat to fill.
    check(unsafe { libc::lstat(c.as_ptr(), &mut st) }.into())?;
    Ok(st)
}

/// The kind letter of a mode: `f`ile, `d`irectory, `l`ink, or `?`.
pub fn kind(mode: u32) -> char {
    match mode & libc::S_IFMT {
        libc::S_IFREG => 'f',
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        _ => '?',
    }
}

/// A stat as compared: kind, permission bits, owner, size and link count of non-directories,
/// and the modification time (exact when set on purpose, else "recent").
pub fn stat_line(st: &libc::stat) -> String {
    let k = kind(st.st_mode);
    let mut line = format!(
        "{k} {:04o} {}:{}",
        st.st_mode & 0o7777,
        st.st_uid,
        st.st_gid
    );
    if k != 'd' {
        line += &format!(" size={} nlink={}", st.st_size, st.st_nlink);
    }
    if st.st_mtime < RECENT {
        line += &format!(" mtime={}.{:09}", st.st_mtime, st.st_mtime_nsec);
    } else {
        line += " mtime=recent";
    }
    line
}

/// A short, stable hash of some bytes, for comparing and printing contents.
pub fn digest(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{}B#{:08x}", bytes.len(), h.finish() as u32)
}

/// The `user.*` xattr names of `path` (not following a symlink), sorted.
pub fn xattr_names(path: &Path) -> Result<Vec<String>, Errno> {
    let c = cpath(path);
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: a valid C string and a buffer of the given length.
    let len =
        check(unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) } as _)?;
    buf.truncate(len as usize);
    let mut names: Vec<String> = buf
        .split(|b| *b == 0)
        .filter(|n| n.starts_with(b"user."))
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// The value of xattr `name` of `path` (not following a symlink).
pub fn xattr_value(path: &Path, name: &str) -> Result<Vec<u8>, Errno> {
    let (c, n) = (cpath(path), CString::new(name).unwrap_or_default());
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid C strings and a buffer of the given length.
    let len =
        check(
            unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
                as _,
        )?;
    buf.truncate(len as usize);
    Ok(buf)
}

/// The `user.*` xattrs of `path` as one string.
fn xattrs(path: &Path) -> String {
    match xattr_names(path) {
        Ok(names) => names
            .iter()
            .map(|n| match xattr_value(path, n) {
                Ok(v) => format!("{n}={}", digest(&v)),
                Err(e) => format!("{n}={e:?}"),
            })
            .collect::<Vec<_>>()
            .join(","),
        Err(e) => format!("{e:?}"),
    }
}

/// The names in directory `path`, sorted, or its errno.
pub fn names(path: &Path) -> Result<Vec<(String, char)>, Errno> {
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path).map_err(errno)? {
        let entry = entry.map_err(errno)?;
        let kind = match entry.file_type().map_err(errno)? {
            t if t.is_dir() => 'd',
            t if t.is_file() => 'f',
            t if t.is_symlink() => 'l',
            _ => '?',
        };
        names.push((entry.file_name().to_string_lossy().into_owned(), kind));
    }
    names.sort();
    Ok(names)
}

/// Every entry below `root` (not the root itself) and whether it is a directory, found with
/// `readdir` and `lstat` only: the paths operations pick from.
pub fn paths(root: &Path) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        for (name, _) in names(&join(root, &dir)).unwrap_or_default() {
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let is_dir = lstat(&root.join(&rel)).is_ok_and(|st| kind(st.st_mode) == 'd');
            if is_dir {
                todo.push(rel.clone());
            }
            out.push((rel, is_dir));
        }
    }
    out.sort();
    out
}

/// What a snapshot holds of each entry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Everything compared (see the module's comment).
    Full,
    /// What a layer holds: kind, mode, size, contents and link target (not owners, link
    /// counts, times or xattrs).
    Layer,
}

/// The whole tree below `root`, one line per path (errors included, as what was seen).
pub fn snapshot(root: &Path, detail: Detail) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        let listed = match names(&join(root, &dir)) {
            Ok(listed) => listed,
            Err(e) => {
                out.insert(format!("{dir}/"), format!("readdir: {e:?}"));
                continue;
            }
        };
        for (name, dtype) in listed {
            let rel = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let path = root.join(&rel);
            let line = match lstat(&path) {
                Err(e) => format!("lstat: {e:?}"),
                Ok(st) => {
                    let mut line = match detail {
                        Detail::Full => format!("{} (readdir {dtype})", stat_line(&st)),
                        Detail::Layer if kind(st.st_mode) == 'd' => {
                            format!("d {:04o}", st.st_mode & 0o7777)
                        }
                        Detail::Layer => format!(
                            "{} {:04o} size={}",
                            kind(st.st_mode),
                            st.st_mode & 0o7777,
                            st.st_size
                        ),
                    };
                    match kind(st.st_mode) {
                        'f' => {
                            line += &match std::fs::read(&path) {
                                Ok(bytes) => format!(" content={}", digest(&bytes)),
                                Err(e) => format!(" content={e}"),
                            };
                        }
                        'l' => {
                            line += &match std::fs::read_link(&path) {
                                Ok(t) => format!(" -> {}", t.display()),
                                Err(e) => format!(" -> {e}"),
                            };
                        }
                        'd' => todo.push(rel.clone()),
                        _ => {}
                    }
                    if detail == Detail::Full {
                        line += &format!(" xattrs=[{}]", xattrs(&path));
                    }
                    line
                }
            };
            out.insert(rel, line);
        }
    }
    out
}

/// The lines where two snapshots differ, labelled with each side's name.
pub fn differences(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    labels: (&str, &str),
) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let missing = "(missing)".to_string();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k).unwrap_or(&missing), b.get(k).unwrap_or(&missing));
            (x != y).then(|| format!("  {k}:\n    {}: {x}\n    {}: {y}", labels.0, labels.1))
        })
        .collect()
}
