//! macOS's device transport: macFUSE's kernel extension, mounted by running `mount_macfuse`
//! ourselves, as macFUSE's libfuse does (`lib/mount_darwin.c`):
//!
//! 1. a stream socket pair; `mount_macfuse -o OPTIONS MOUNTPOINT` gets one end, named by
//!    `_FUSE_COMMFD`, with `_FUSE_CALL_BY_LIB=1` and `_FUSE_COMMVERS=2`;
//! 2. it opens `/dev/macfuseN` and sends the descriptor back (one byte, `SCM_RIGHTS`);
//! 3. its `mount(2)` completes only once the file system answers INIT, so the workers start
//!    now; then it reports an `i32` status on the same socket (0: mounted) and exits.
//!
//! Each read of the device is one request, each write one reply ([`Framing::Message`]).
//! Unmounting is `unmount(2)` (forced if busy, `diskutil unmount force` as the last resort);
//! the device then answers reads with `ENODEV` and the workers return. Marking the daemon dead
//! (`FUSEDEVIOCSETDAEMONDEAD`) wakes the one worker that sleeps in a read should the volume be
//! gone already.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::api::server::Server;
use spfs_router::Vfs;

use super::protocol::{self, MOUNT_MACFUSE};
use super::wire::{Connection, Framing, Workers};
use super::{Mounted, SessionConfig};
use crate::adapter::Adapter;
use crate::error::MountError;
use crate::platform;

/// How long mounting may take: the first mount after boot loads the kernel extension.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long unmounting waits for the workers.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Request and reply buffers: 1 MiB of data plus a page of headers, above macFUSE's default
/// I/O size (16 pages) and its largest directory or xattr replies.
const BUFSIZE: usize = 1024 * 1024 + 4096;

/// `FUSEDEVIOCSETDAEMONDEAD`, `_IOW('F', 3, u_int32_t)` in macFUSE's `fuse_darwin_private.h`.
const FUSEDEVIOCSETDAEMONDEAD: libc::c_ulong =
    0x8000_0000 | (4 << 16) | ((b'F' as libc::c_ulong) << 8) | 3;

/// A mounted macFUSE volume.
struct MacFuse {
    mountpoint: PathBuf,
    connection: Arc<Connection<File>>,
    workers: Workers,
}

/// Mounts `vfs` read-only at `config.mountpoint` through macFUSE.
pub(super) fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Box<dyn Mounted>, MountError> {
    let path = super::prepare_mountpoint(&config.mountpoint)?;
    let failed = |message: String| MountError::Session {
        path: config.mountpoint.clone(),
        message,
    };
    if !Path::new(MOUNT_MACFUSE).exists() {
        return Err(failed(format!(
            "macFUSE is not installed ({MOUNT_MACFUSE} is missing)"
        )));
    }
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| failed(format!("cannot create a socket pair: {e}")))?;
    ours.set_read_timeout(Some(MOUNT_TIMEOUT))
        .map_err(|e| failed(format!("cannot set a socket timeout: {e}")))?;
    let daemon = std::env::current_exe().ok();
    let mut child = protocol::spawn_helper(
        Path::new(MOUNT_MACFUSE),
        &protocol::macfuse_args(&config.fsname, &config.volname, &path),
        &protocol::helper_env(theirs.as_raw_fd(), None, daemon.as_deref()),
        &[theirs.as_raw_fd()],
        false,
        Stdio::piped(),
        Stdio::piped(),
    )
    .map_err(|e| failed(format!("cannot run {MOUNT_MACFUSE}: {e}")))?;
    // Ours must go, or a helper that dies would never look like EOF.
    drop(theirs);

    let device = match protocol::receive_fd(&ours) {
        Ok(Some(fd)) => File::from(fd),
        Ok(None) => {
            return Err(failed(helper_failure(
                &mut child,
                "mount_macfuse ended without handing over the device",
            )));
        }
        Err(err) => {
            let _ = protocol::terminate(&mut child, Duration::from_secs(1));
            return Err(failed(format!("no device from mount_macfuse: {err}")));
        }
    };
    let connection = Arc::new(Connection::new(device, Framing::Message));
    let server = Arc::new(Server::new(Adapter::new(vfs)));
    let workers = match Workers::start(connection.clone(), server, config.threads, BUFSIZE) {
        Ok(workers) => workers,
        Err(err) => {
            let _ = protocol::terminate(&mut child, Duration::from_secs(1));
            set_daemon_dead(connection.io());
            return Err(failed(format!("cannot start a worker thread: {err}")));
        }
    };
    let session = MacFuse {
        mountpoint: path,
        connection,
        workers,
    };

    // The status, or (if this helper sends none) its exit code, says whether it mounted.
    let mounted = match protocol::read_status(&ours) {
        Ok(Some(0)) => Ok(()),
        Ok(Some(status)) => Err(helper_failure(
            &mut child,
            &format!("mount_macfuse reported status {status}"),
        )),
        Ok(None) => match protocol::wait_for_exit(&mut child, MOUNT_TIMEOUT) {
            Ok(Some(status)) if status.success() => Ok(()),
            _ => Err(helper_failure(&mut child, "mount_macfuse failed")),
        },
        Err(err) => Err(helper_failure(
            &mut child,
            &format!("no mount status from mount_macfuse: {err}"),
        )),
    };
    let mounted = mounted
        .and_then(|()| protocol::wait_until_mounted(&session.mountpoint, MOUNT_TIMEOUT, || Ok(())));
    reap(child);
    if let Err(message) = mounted {
        let _ = Box::new(session).unmount();
        return Err(failed(message));
    }
    Ok(Box::new(session))
}

/// What a failed helper said: `context`, then its stderr.
fn helper_failure(child: &mut Child, context: &str) -> String {
    let _ = protocol::terminate(child, Duration::from_secs(2));
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    match stderr.trim() {
        "" => context.to_string(),
        said => format!("{context}: {said}"),
    }
}

/// Collects the helper's exit in the background, so it never lingers as a zombie.
fn reap(child: Child) {
    let _ = std::thread::Builder::new()
        .name("spfs-fuse-reap".into())
        .spawn(move || match child.wait_with_output() {
            Ok(out) if !out.status.success() => tracing::warn!(
                status = %out.status,
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "mount_macfuse exited with an error"
            ),
            Ok(_) => {}
            Err(err) => tracing::debug!(error = %err, "could not wait for mount_macfuse"),
        });
}

/// `unmount(2)`, forced if the volume is busy.
fn unmount_path(path: &Path) -> std::io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte")
    })?;
    for flags in [0, libc::MNT_FORCE] {
        // SAFETY: c_path is a valid NUL-terminated string that outlives the call.
        if unsafe { libc::unmount(c_path.as_ptr(), flags) } == 0 {
            return Ok(());
        }
    }
    let direct = std::io::Error::last_os_error();
    // Nothing mounted there any more (unmounted from outside): done.
    if direct.raw_os_error() == Some(libc::EINVAL) {
        return Ok(());
    }
    platform::force_unmount(path).map_err(|_| direct)
}

/// Tells macFUSE the daemon is gone, which wakes a worker sleeping in a read with `ENODEV`
/// (as libfuse does before closing the device). Failing, with the volume gone, is harmless.
fn set_daemon_dead(device: &File) {
    let fd = device.as_raw_fd();
    let mut arg = fd as u32;
    // SAFETY: fd is our open device; the ioctl reads one u32 from &arg, which outlives it.
    unsafe { libc::ioctl(fd, FUSEDEVIOCSETDAEMONDEAD, &mut arg as *mut u32) };
}

impl Mounted for MacFuse {
    fn unmount(self: Box<Self>) -> Result<(), MountError> {
        let result = unmount_path(&self.mountpoint).map_err(|e| MountError::Unmount {
            path: self.mountpoint.clone(),
            message: e.to_string(),
        });
        set_daemon_dead(self.connection.io());
        if !self.workers.join(STOP_TIMEOUT) {
            tracing::warn!(mountpoint = %self.mountpoint.display(), "FUSE workers still running after unmount");
        }
        result
    }
}
