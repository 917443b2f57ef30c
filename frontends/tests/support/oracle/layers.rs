//! The lower layers both sides share: three directory layers whose names collide across
//! layers and with the names the operations make (a file over a file, a directory over a
//! file, a file over a directory, directories merged over two layers), with symlinks, a large
//! file for copy-up, an empty directory and deep paths. No whiteouts: the kernel's overlayfs
//! and spfs's directory layers write them differently.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Modification times of lower entries start here, below [`super::tree::RECENT`], so a
/// preserved lower time is told from one the operations made.
const LOWER_TIME: i64 = 1_600_000_000;

/// One layer's entries: `(path, what)`, parents first.
type Layer = &'static [(&'static str, Item)];

/// A lower entry.
#[derive(Clone, Copy)]
enum Item {
    /// A regular file: mode, length, fill seed.
    File(u32, usize, u8),
    /// A directory and its mode.
    Dir(u32),
    /// A symlink and its target.
    Link(&'static str),
}

use Item::{Dir, File, Link};

/// The longest name a whiteout can hide (`.wh.` + 251 bytes = `NAME_MAX`), a lower file.
pub const LONG_NAME: &str = "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL";

/// The layers, bottom first.
const LAYERS: [Layer; 3] = [
    &[
        ("a", File(0o644, 10, 1)),
        ("b", File(0o755, 100, 2)),
        ("c", Dir(0o755)),
        ("c/x", File(0o644, 5, 3)),
        ("dir", Dir(0o755)),
        ("dir/a", File(0o600, 4097, 4)),
        ("dir/big", File(0o644, 300_000, 5)),
        ("dir/sub", Dir(0o700)),
        ("dir/sub/x", File(0o644, 7, 6)),
        ("dir/sub/c", Dir(0o755)),
        ("dir/sub/c/d", File(0o444, 3, 7)),
        ("e", Dir(0o755)),
        ("lnk", Link("a")),
        ("x", Link("dir/sub")),
        (LONG_NAME, File(0o644, 6, 8)),
    ],
    &[
        ("a", File(0o600, 20, 11)),
        ("c", File(0o644, 8, 12)),
        ("d", Dir(0o755)),
        ("d/a", File(0o644, 1, 13)),
        ("d/b", Link("../a")),
        ("dir", Dir(0o750)),
        ("dir/b", File(0o640, 0, 14)),
        ("dir/sub", Dir(0o755)),
        ("dir/sub/n", File(0o644, 9, 15)),
    ],
    &[
        ("b", Dir(0o755)),
        ("b/x", File(0o644, 11, 21)),
        ("dir", Dir(0o755)),
        ("dir/sub", Dir(0o755)),
        ("dir/sub/x", File(0o4755, 30, 22)),
        ("sub", Dir(0o755)),
        ("sub/sub", Dir(0o755)),
        ("sub/sub/sub", Dir(0o711)),
        ("sub/sub/sub/a", File(0o644, 12, 23)),
        ("sub/sub/sub/m", Link("/nonexistent-spfs-oracle/x")),
    ],
];

/// The bytes of a file of `len` bytes filled from `seed` (the operations' data too).
pub fn fill(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add((i % 251) as u8))
        .collect()
}

/// Writes the layers under `base` (one directory each) and returns them, bottom first.
pub fn make_layers(base: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for (n, layer) in LAYERS.iter().enumerate() {
        let dir = base.join(format!("layer{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (rel, item) in layer.iter() {
            let path = dir.join(rel);
            match *item {
                File(mode, len, seed) => {
                    std::fs::write(&path, fill(len, seed)).unwrap();
                    std::fs::set_permissions(&path, PermissionsExt::from_mode(mode)).unwrap();
                }
                Dir(mode) => {
                    std::fs::create_dir(&path).unwrap();
                    std::fs::set_permissions(&path, PermissionsExt::from_mode(mode)).unwrap();
                }
                Link(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
            }
        }
        // Times last, deepest first, so making children does not move a parent's.
        let mut entries: Vec<(usize, &str)> = layer
            .iter()
            .enumerate()
            .map(|(i, (rel, _))| (i, *rel))
            .collect();
        entries.sort_by_key(|(_, rel)| std::cmp::Reverse(rel.matches('/').count()));
        for (i, rel) in entries {
            set_time(&dir.join(rel), LOWER_TIME + (n as i64) * 1000 + i as i64);
        }
        set_time(&dir, LOWER_TIME + (n as i64) * 1000 + 999);
        dirs.push(dir);
    }
    dirs
}

/// Sets the access and modification times of `path` (not following a symlink) to `secs`
/// and a few nanoseconds, so copies must keep nanoseconds too.
pub fn set_time(path: &Path, secs: i64) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let time = libc::timespec {
        tv_sec: secs,
        tv_nsec: 123_456_789,
    };
    // SAFETY: a valid C string and two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [time, time].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        rc,
        0,
        "utimensat {path:?}: {}",
        std::io::Error::last_os_error()
    );
}
