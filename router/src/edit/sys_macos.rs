//! macOS calls the overlay needs beyond std: extended attributes that do not follow symlinks;
//! macOS has no `fallocate`.

use std::fs::File;
use std::io;
use std::path::Path;

use super::ffi::{c_name, c_path, check, sized};

/// macOS has no `fallocate(2)`: the caller learns it is not supported.
pub(crate) fn fallocate(_file: &File, _mode: u32, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
}

/// The value of attribute `name` of `path` (not followed when a symlink).
pub(crate) fn get_xattr(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let (path, name) = (c_path(path)?, c_name(name)?);
    // SAFETY: valid C strings; the buffer pointer and length come from `sized`.
    sized(|buf, len| unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf,
            len,
            0,
            libc::XATTR_NOFOLLOW,
        )
    })
}

/// The attribute names of `path`, each followed by a NUL.
pub(crate) fn list_xattr(path: &Path) -> io::Result<Vec<u8>> {
    let path = c_path(path)?;
    // SAFETY: as in `get_xattr`.
    sized(|buf, len| unsafe {
        libc::listxattr(path.as_ptr(), buf.cast(), len, libc::XATTR_NOFOLLOW)
    })
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
    let mut flags = libc::XATTR_NOFOLLOW;
    if create {
        flags |= libc::XATTR_CREATE;
    } else if replace {
        flags |= libc::XATTR_REPLACE;
    }
    // SAFETY: valid C strings and a slice's pointer and length.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
            flags,
        )
    };
    check(rc)
}

/// Removes attribute `name` of `path`.
pub(crate) fn remove_xattr(path: &Path, name: &[u8]) -> io::Result<()> {
    let (path, name) = (c_path(path)?, c_name(name)?);
    // SAFETY: valid C strings.
    let rc = unsafe { libc::removexattr(path.as_ptr(), name.as_ptr(), libc::XATTR_NOFOLLOW) };
    check(rc)
}
