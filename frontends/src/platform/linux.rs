//! Linux: stale FUSE mounts answer `ENOTCONN`; clear them with a lazy unmount.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

/// Whether a `stat` error means a FUSE mount whose server is gone.
pub fn is_stale_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)
    )
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
