//! C strings and growing buffers for the libc calls of the overlay and its platform files.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` as a C string (`EINVAL` for one holding a NUL).
pub(super) fn c_path(path: &Path) -> io::Result<CString> {
    c_name(path.as_os_str().as_bytes())
}

/// `name` as a C string (`EINVAL` for one holding a NUL).
pub(super) fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Calls `call` with a buffer of growing size until the value fits: the size query and the
/// read race with other writers (`ERANGE`).
pub(super) fn sized(
    mut call: impl FnMut(*mut libc::c_void, usize) -> isize,
) -> io::Result<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        let got = call(buf.as_mut_ptr().cast(), buf.len());
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

/// The result of a libc call answering 0 for success and -1 with `errno` for failure.
pub(super) fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
