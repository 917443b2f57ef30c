//! macOS: clear stale FUSE mounts with `umount -f`, then `diskutil unmount force` (which
//! answers mean stale is `mountpoint::judge`).

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use fuse_backend_rs::api::filesystem::{FsOptions, OpenOptions};

use spfs_router::{FsError, RenameMode};

use crate::policy::Platform;

/// The platform a macOS build serves.
pub const CURRENT: Platform = Platform::MacOs;

/// The Linux policy's INIT flags beyond the common ones: none exist in macOS's ABI, and a
/// macOS build serves no Linux kernel.
pub fn linux_init() -> FsOptions {
    FsOptions::empty()
}

/// Linux's directory caching (`CACHE_DIR`) has no counterpart in macOS's ABI.
pub fn linux_dir_cache() -> OpenOptions {
    OpenOptions::empty()
}

/// macOS's kernels have no no-open support.
pub fn grants_no_open(_enabled: FsOptions) -> bool {
    false
}

/// The core's rename mode for `renamex_np(2)`'s flags, should a server pass them
/// (`fuse-backend-rs` passes 0 on macOS today): `RENAME_SWAP` exchanges, `RENAME_EXCL`
/// refuses an existing target; both together are invalid.
pub fn rename_mode(flags: u32) -> Result<RenameMode, FsError> {
    match flags {
        0 => Ok(RenameMode::Replace),
        libc::RENAME_EXCL => Ok(RenameMode::NoReplace),
        libc::RENAME_SWAP => Ok(RenameMode::Exchange),
        other => Err(FsError::Invalid(format!("rename flags {other:#x}"))),
    }
}

/// The kernel's ceiling on one process's open files, `kern.maxfilesperproc`: a soft limit above
/// it is refused (`EINVAL`), and the hard limit is often `RLIM_INFINITY`.
pub fn open_files_ceiling() -> Option<u64> {
    let mut value: libc::c_int = 0;
    let mut size = std::mem::size_of::<libc::c_int>();
    // SAFETY: the name is NUL-terminated; sysctlbyname writes at most `size` bytes into
    // `value`, both of which outlive the call.
    let rc = unsafe {
        libc::sysctlbyname(
            c"kern.maxfilesperproc".as_ptr(),
            (&mut value as *mut libc::c_int).cast(),
            &mut size,
            std::ptr::null_mut(),
            0,
        )
    };
    (rc == 0 && value > 0).then_some(value as u64)
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

/// Unmounts `path` with a plain system call, forced (`MNT_FORCE`) if `force`; nothing lazy.
pub fn unmount(path: &Path, force: bool) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let flags = if force { libc::MNT_FORCE } else { 0 };
    // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::unmount(c_path.as_ptr(), flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Every mount point, from `getfsstat(MNT_NOWAIT)`: the kernel's cached list, so a dead NFS
/// volume (FUSE-T) cannot hang the call the way `stat` on it can.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    // SAFETY: a null buffer only asks for the number of mounts.
    let count = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
    if count < 0 {
        return Err(io::Error::last_os_error());
    }
    // Room for mounts that appear between the two calls.
    let mut mounts: Vec<libc::statfs> = Vec::with_capacity(count as usize + 16);
    let bytes = (mounts.capacity() * std::mem::size_of::<libc::statfs>()) as libc::c_int;
    // SAFETY: `mounts` has room for `capacity` entries, which `bytes` tells getfsstat; it fills
    // at most that many and returns how many.
    let filled = unsafe { libc::getfsstat(mounts.as_mut_ptr(), bytes, libc::MNT_NOWAIT) };
    if filled < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getfsstat initialised the first `filled` entries.
    unsafe { mounts.set_len(filled as usize) };
    Ok(mounts
        .iter()
        .map(|fs| {
            // SAFETY: f_mntonname is a NUL-terminated path the kernel filled in.
            let on = unsafe { CStr::from_ptr(fs.f_mntonname.as_ptr()) };
            PathBuf::from(OsStr::from_bytes(on.to_bytes()))
        })
        .collect())
}

/// Whether `path` is a mount point, read from the mount table without asking the volume: a
/// `stat` on an NFS volume whose server is gone can block for minutes.
pub fn in_mount_table(path: &Path) -> bool {
    mount_points().is_ok_and(|mounts| mounts.iter().any(|m| m == path))
}
