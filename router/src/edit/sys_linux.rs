//! Linux calls the overlay needs beyond std: `fallocate` and extended attributes that do not
//! follow symlinks.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::ffi::{c_name, c_path, check, sized};

/// `fallocate(2)` with the kernel's `mode` flags.
pub(crate) fn fallocate(file: &File, mode: u32, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    // SAFETY: a plain syscall on a descriptor `file` keeps open.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode as i32, offset, len) };
    check(rc)
}

/// The value of attribute `name` of `path` (not followed when a symlink).
pub(crate) fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let (path, name) = (c_path(path)?, c_name(name)?);
    // SAFETY: valid C strings; the buffer pointer and length come from `sized`.
    sized(|buf, len| unsafe { libc::lgetxattr(path.as_ptr(), name.as_ptr(), buf, len) })
}

/// The attribute names of `path`, each followed by a NUL.
pub(crate) fn list_xattr(path: &Path) -> io::Result<Vec<u8>> {
    let path = c_path(path)?;
    // SAFETY: as in `get_xattr`.
    sized(|buf, len| unsafe { libc::llistxattr(path.as_ptr(), buf.cast(), len) })
}

/// Sets attribute `name` of `path`; `create` / `replace` as `XATTR_CREATE` / `XATTR_REPLACE`.
pub(crate) fn set_xattr(
    path: &Path,
    name: &[u8],
    value: &[u8],
    create: bool,
    replace: bool,
) -> io::Result<()> {
    let (path, name) = (c_path(path)?, c_name(name)?);
    let flags = if create {
        libc::XATTR_CREATE
    } else if replace {
        libc::XATTR_REPLACE
    } else {
        0
    };
    // SAFETY: valid C strings and a slice's pointer and length.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    check(rc)
}

/// Removes attribute `name` of `path`.
pub(crate) fn remove_xattr(path: &Path, name: &[u8]) -> io::Result<()> {
    let (path, name) = (c_path(path)?, c_name(name)?);
    // SAFETY: valid C strings.
    let rc = unsafe { libc::lremovexattr(path.as_ptr(), name.as_ptr()) };
    check(rc)
}
