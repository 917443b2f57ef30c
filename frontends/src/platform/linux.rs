//! Linux: clear stale FUSE mounts with a lazy unmount (which errors mean stale is
//! `mountpoint::is_stale_errno`). The mount table is `/proc/self/mountinfo`.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use fuse_backend_rs::api::filesystem::{FsOptions, OpenOptions};

use spfs_router::{FsError, RenameMode};

use crate::policy::Platform;

/// The platform a Linux build serves.
pub const CURRENT: Platform = Platform::Linux;

/// The INIT flags the Linux policy asks for beyond the ones both ABIs have: parallel lookups,
/// READDIRPLUS, the kernel's data-cache invalidation, large requests, cached symlinks, and
/// no-open support.
pub fn linux_init() -> FsOptions {
    FsOptions::PARALLEL_DIROPS
        | FsOptions::DO_READDIRPLUS
        | FsOptions::READDIRPLUS_AUTO
        | FsOptions::AUTO_INVAL_DATA
        | FsOptions::MAX_PAGES
        | FsOptions::CACHE_SYMLINKS
        | FsOptions::ZERO_MESSAGE_OPEN
}

/// The directory caching only Linux's ABI has: the kernel keeps listings (`CACHE_DIR`).
pub fn linux_dir_cache() -> OpenOptions {
    OpenOptions::CACHE_DIR
}

/// Whether the kernel, having granted `enabled` at INIT, takes an `ENOSYS` OPEN as "files
/// need no OPEN or RELEASE".
pub fn grants_no_open(enabled: FsOptions) -> bool {
    enabled.contains(FsOptions::ZERO_MESSAGE_OPEN)
}

/// The core's rename mode for `renameat2(2)`'s flags as FUSE_RENAME2 carries them:
/// `RENAME_WHITEOUT` (overlayfs's own, for its upper layers) and any two flags together are
/// invalid, as `renameat2` says.
pub fn rename_mode(flags: u32) -> Result<RenameMode, FsError> {
    match flags {
        0 => Ok(RenameMode::Replace),
        libc::RENAME_NOREPLACE => Ok(RenameMode::NoReplace),
        libc::RENAME_EXCHANGE => Ok(RenameMode::Exchange),
        other => Err(FsError::Invalid(format!("rename flags {other:#x}"))),
    }
}

/// The kernel's ceiling on any process's open files, `fs.nr_open`: a soft limit above it is
/// refused (with `EPERM`) even when the hard limit is unlimited.
pub fn open_files_ceiling() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Detaches whatever is mounted at `path` (lazily, so busy mounts go too): `umount2` with
/// `MNT_DETACH` as root, else `fusermount3 -uz` (or `fusermount -uz`) for a user's mount.
pub fn force_unmount(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let direct = io::Error::last_os_error();
    for helper in ["fusermount3", "fusermount"] {
        if let Ok(status) = Command::new(helper).arg("-uz").arg(path).status()
            && status.success()
        {
            return Ok(());
        }
    }
    Err(direct)
}

/// Unmounts `path` with a plain system call, forced (`MNT_FORCE`) if `force`; nothing lazy.
/// Only macFUSE's session, which Linux runs in tests against a stand-in helper, needs it.
#[cfg(test)]
pub fn unmount(path: &Path, force: bool) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let flags = if force { libc::MNT_FORCE } else { 0 };
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(c_path.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every mount point of this process's mount namespace, from `/proc/self/mountinfo`. Reading
/// the table never touches the mounts themselves, so a dead one cannot hang it.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    Ok(mount_table()?.into_iter().map(|(_, point)| point).collect())
}

/// The device number (major, minor) of what is mounted at `path`, from the mount table, so
/// the mount itself is never asked. `None` if nothing is mounted there.
pub fn mount_device(path: &Path) -> io::Result<Option<(u32, u32)>> {
    let device = mount_table()?
        .into_iter()
        .rev() // The last mount on a point is the one that shows.
        .find(|(_, point)| point == path)
        .and_then(|(device, _)| {
            let (major, minor) = device.split_once(':')?;
            Some((major.parse().ok()?, minor.parse().ok()?))
        });
    Ok(device)
}

/// `/proc/self/mountinfo` as (major:minor, mount point) rows.
fn mount_table() -> io::Result<Vec<(String, PathBuf)>> {
    let table = std::fs::read("/proc/self/mountinfo")?;
    Ok(table
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            // id, parent id, major:minor, root, mount point, ...
            let mut fields = line.split(|&b| b == b' ');
            let device = fields.nth(2)?;
            let point = fields.nth(1)?;
            Some((
                String::from_utf8_lossy(device).into_owned(),
                PathBuf::from(OsStr::from_bytes(&unescape_octal(point))),
            ))
        })
        .collect())
}

/// Whether `path` is a mount point, read from the mount table without asking the mounted
/// file system (whose server may be gone).
pub fn in_mount_table(path: &Path) -> bool {
    mount_points().is_ok_and(|mounts| mounts.iter().any(|m| m == path))
}

/// Undoes the kernel's `\ooo` escapes in a mountinfo field.
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let escaped = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                u8::try_from(value).ok()
            });
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_in_the_mount_table_and_a_plain_directory_is_not() {
        assert!(mount_points().unwrap().contains(&PathBuf::from("/")));
        assert!(in_mount_table(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        assert!(!in_mount_table(dir.path()));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_octal(br"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape_octal(br"/plain\9"), br"/plain\9");
        assert_eq!(unescape_octal(br"/plain\0"), b"/plain\\0");
        assert_eq!(unescape_octal(br"/big\777"), br"/big\777");
    }
}
