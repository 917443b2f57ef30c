//! Mount points: create them, tell a live mount from a stale one, and clear stale ones.

use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::MountError;
use crate::platform;

/// What is at a mount point before mounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountpointState {
    /// Nothing there yet.
    Missing,
    /// A plain directory: ready to mount on.
    Ready,
    /// A mount whose server is gone (a crashed service).
    Stale,
    /// A live, answering mount.
    Live,
}

/// Examines `path`.
pub fn state(path: &Path) -> Result<MountpointState, MountError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            // A dangling mount can make the path itself vanish from view on some kernels, but
            // only an error that names a dead server counts as stale.
            return Ok(MountpointState::Missing);
        }
        Err(err) if platform::is_stale_error(&err) => return Ok(MountpointState::Stale),
        Err(source) => {
            return Err(MountError::Mountpoint {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let parent = path.parent().unwrap_or(Path::new("/"));
    let parent_meta = fs::metadata(parent).map_err(|source| MountError::Mountpoint {
        path: parent.to_path_buf(),
        source,
    })?;
    if meta.dev() != parent_meta.dev() {
        // The root's attributes can come from the kernel's cache long after the server died,
        // so `stat` alone cannot tell; `statfs` always asks the server.
        return match ask_server(path) {
            Ok(()) => Ok(MountpointState::Live),
            Err(err) if platform::is_stale_error(&err) => Ok(MountpointState::Stale),
            Err(source) => Err(MountError::Mountpoint {
                path: path.to_path_buf(),
                source,
            }),
        };
    }
    Ok(MountpointState::Ready)
}

/// Sends the filesystem mounted at `path` a request that no kernel cache answers: `statfs`.
pub(crate) fn ask_server(path: &Path) -> io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut stats = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated and outlives the call; statfs fills `stats` or fails.
    if unsafe { libc::statfs(c_path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `path` ready to mount on: creates it, or clears a stale mount there. A live mount
/// is refused: it most likely belongs to another running service.
pub fn prepare(path: &Path) -> Result<(), MountError> {
    match state(path)? {
        MountpointState::Live => return Err(MountError::AlreadyMounted(path.to_path_buf())),
        MountpointState::Stale => {
            tracing::warn!(mountpoint = %path.display(), "clearing a stale mount left by a service that is gone");
            platform::force_unmount(path).map_err(|source| MountError::StaleMount {
                path: path.to_path_buf(),
                source,
            })?;
        }
        MountpointState::Ready | MountpointState::Missing => {}
    }
    match state(path)? {
        MountpointState::Ready => Ok(()),
        MountpointState::Missing => {
            fs::create_dir_all(path).map_err(|source| MountError::Mountpoint {
                path: path.to_path_buf(),
                source,
            })
        }
        other => Err(MountError::StaleMount {
            path: path.to_path_buf(),
            source: io::Error::other(format!("still {other:?} after unmounting")),
        }),
    }
}
