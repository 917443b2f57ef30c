//! macOS: stale FUSE mounts answer `ENXIO` ("Device not configured"); clear them with
//! `umount -f`, then `diskutil unmount force`.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether a `stat` error means a FUSE mount whose server is gone.
pub fn is_stale_error(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOTCONN))
}

/// Force-unmounts whatever is mounted at `path`.
pub fn force_unmount(path: &Path) -> io::Result<()> {
    let attempts: [&[&str]; 2] = [&["umount", "-f"], &["diskutil", "unmount", "force"]];
    let mut last = io::Error::other("no unmount command succeeded");
    for attempt in attempts {
        match Command::new(attempt[0])
            .args(&attempt[1..])
            .arg(path)
            .output()
        {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                last = io::Error::other(format!(
                    "{} said: {}",
                    attempt.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// Every mount point, from `getmntinfo(MNT_NOWAIT)`: the kernel's cached list, so a dead NFS
/// volume (FUSE-T) cannot hang the call the way `stat` on it can.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let mut table: *mut libc::statfs = std::ptr::null_mut();
    // SAFETY: getmntinfo stores a pointer to a buffer it owns (valid until the next call on this
    // thread) and returns how many entries it holds.
    let count = unsafe { libc::getmntinfo(&mut table, libc::MNT_NOWAIT) };
    if count <= 0 || table.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getmntinfo returned `count` initialised entries at `table`.
    let entries = unsafe { std::slice::from_raw_parts(table, count as usize) };
    Ok(entries
        .iter()
        .map(|entry| {
            // SAFETY: f_mntonname is a NUL-terminated path inside the entry.
            let name = unsafe { CStr::from_ptr(entry.f_mntonname.as_ptr()) };
            PathBuf::from(OsStr::from_bytes(name.to_bytes()))
        })
        .collect())
}

/// Where per-runtime volumes go by default: `/Volumes`, where Finder shows them.
pub fn default_volumes_dir() -> PathBuf {
    PathBuf::from("/Volumes")
}
