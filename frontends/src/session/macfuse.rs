//! macOS's device transport: macFUSE's kernel extension, mounted by running `mount_macfuse`
//! ourselves, as macFUSE's libfuse does (`lib/mount_darwin.c`):
//!
//! 1. a stream socket pair; `mount_macfuse -o OPTIONS -q MOUNTPOINT` gets one end, named by
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

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::api::server::Server;
use spfs_router::Vfs;

use super::framing::{Connection, Framing, Workers};
use super::protocol;
use super::{Mounted, SessionConfig, Transport};
use crate::adapter::Adapter;
use crate::error::{MountError, MountFailure};
use crate::invalidate::Invalidator;
use crate::platform;
use crate::policy::{KernelPolicy, MountOption, Platform, RoutingKind};

/// How long mounting may take: the first mount after boot loads the kernel extension.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long unmounting waits for the workers.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Request and reply buffers: 32 MiB of data plus a page of headers, what macFUSE's libfuse
/// reads with (`lib/fuse_darwin.h`; macfuse/mount `Parameters.swift`, 0x2001000). The kext
/// marks the mount dead (`ENODEV`) when a read's buffer is too small for its next message
/// (osxfuse/kext `fuse_device.c`), so no smaller size is safe. The pages of a buffer that no
/// message reaches are never touched, so they cost address space, not memory.
const BUFSIZE: usize = 32 * 1024 * 1024 + 4096;

/// `FUSEDEVIOCSETDAEMONDEAD`, `_IOW('F', 3, u_int32_t)` in macFUSE's `fuse_darwin_private.h`.
const FUSEDEVIOCSETDAEMONDEAD: u32 = 0x8000_0000 | (4 << 16) | ((b'F' as u32) << 8) | 3;

/// A mounted macFUSE volume.
struct MacFuse {
    mountpoint: PathBuf,
    connection: Arc<Connection<File>>,
    workers: Workers,
}

/// Mounts `vfs` read-only at `config.mountpoint` through macFUSE.
#[cfg(target_os = "macos")]
pub(super) fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Box<dyn Mounted>, MountError> {
    use protocol::MOUNT_MACFUSE;
    if !Path::new(MOUNT_MACFUSE).exists() {
        return Err(MountError::session(
            &config.mountpoint,
            MountFailure::HelperMissing,
            format!("macFUSE is not installed ({MOUNT_MACFUSE} is missing)"),
        ));
    }
    let session = mount_with(Path::new(MOUNT_MACFUSE), vfs, config)?;
    Ok(Box::new(session))
}

/// [`mount`] with `program` as the mount helper.
fn mount_with(
    program: &Path,
    vfs: Arc<Vfs>,
    config: &SessionConfig,
) -> Result<MacFuse, MountError> {
    let path = super::prepare_mountpoint(&config.mountpoint)?;
    let mountpoint = config.mountpoint.as_path();
    // Anything that goes wrong once mount_macfuse runs means it did not mount.
    let refused =
        |message: String| MountError::session(mountpoint, MountFailure::HelperRefused, message);
    let failed_io = |kind, message: String| {
        move |source| MountError::session_io(mountpoint, kind, message, source)
    };
    let (ours, theirs) = UnixStream::pair().map_err(failed_io(
        MountFailure::Other,
        "cannot create a socket pair".into(),
    ))?;
    ours.set_read_timeout(Some(MOUNT_TIMEOUT))
        .map_err(failed_io(
            MountFailure::Other,
            "cannot set a socket timeout".into(),
        ))?;
    let policy = policy(config, RoutingKind::of(vfs.routing()));
    let allow_other = policy.mount_options.contains(&MountOption::AllowOther);
    let daemon = std::env::current_exe().ok();
    let mut child = protocol::spawn_helper(
        program,
        &protocol::macfuse_args(
            &config.fsname,
            &config.volname,
            &policy.mount_options,
            &path,
        ),
        &protocol::helper_env(theirs.as_raw_fd(), None, daemon.as_deref()),
        &[theirs.as_raw_fd()],
        false,
        Stdio::piped(),
        Stdio::piped(),
    )
    .map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => MountFailure::HelperMissing,
            _ => MountFailure::Other,
        };
        failed_io(kind, format!("cannot run {}", program.display()))(e)
    })?;
    // Ours must go, or a helper that dies would never look like EOF.
    drop(theirs);

    let device = match protocol::receive_fd(&ours) {
        Ok(Some(fd)) => File::from(fd),
        Ok(None) => {
            return Err(refused(helper_failure(
                &mut child,
                "mount_macfuse ended without handing over the device",
            )));
        }
        Err(err) => {
            let _ = protocol::terminate(&mut child, Duration::from_secs(1));
            return Err(failed_io(
                MountFailure::HelperRefused,
                "no device from mount_macfuse".into(),
            )(err));
        }
    };
    let connection = Arc::new(Connection::new(device, Framing::Message));
    let server = Arc::new(Server::new(Adapter::new(vfs, policy)));
    let workers = match Workers::start(connection.clone(), server, config.threads, BUFSIZE) {
        Ok(workers) => workers,
        Err(err) => {
            let _ = protocol::terminate(&mut child, Duration::from_secs(1));
            set_daemon_dead(connection.io());
            return Err(failed_io(
                MountFailure::Other,
                "cannot start a worker thread".into(),
            )(err));
        }
    };
    let session = MacFuse {
        mountpoint: path,
        connection,
        workers,
    };

    // The status, or (if this helper sends none) its exit code, says whether it mounted. A
    // status is mount(2)'s errno, which alone tells an `allow_other` refusal apart.
    let mounted = match protocol::read_status(&ours) {
        Ok(Some(0)) => Ok(()),
        Ok(Some(status)) => {
            let kind = protocol::macfuse_refusal(
                status,
                allow_other,
                nix::unistd::getuid().as_raw(),
                owner_of(&session.mountpoint),
            );
            let message = helper_failure(
                &mut child,
                &format!("mount_macfuse reported status {status}"),
            );
            Err(match status {
                1.. => MountError::session_io(
                    mountpoint,
                    kind,
                    message,
                    std::io::Error::from_raw_os_error(status),
                ),
                _ => MountError::session(mountpoint, kind, message),
            })
        }
        Ok(None) => match protocol::wait_for_exit(&mut child, MOUNT_TIMEOUT) {
            Ok(Some(status)) if status.success() => Ok(()),
            _ => Err(refused(helper_failure(&mut child, "mount_macfuse failed"))),
        },
        Err(err) => Err(refused(helper_failure(
            &mut child,
            &format!("no mount status from mount_macfuse: {err}"),
        ))),
    };
    let mounted = mounted.and_then(|()| {
        protocol::wait_until_mounted(&session.mountpoint, MOUNT_TIMEOUT, || Ok(())).map_err(refused)
    });
    reap(child);
    if let Err(err) = mounted {
        let _ = Box::new(session).unmount();
        return Err(err);
    }
    Ok(session)
}

/// The policy of a macFUSE mount of `routing` configured by `config`.
fn policy(config: &SessionConfig, routing: RoutingKind) -> KernelPolicy {
    KernelPolicy::new(Platform::MacOs, Transport::Device, routing)
        .serving_other_users(config.other_users)
}

/// The owner of `path`; `u32::MAX` (nobody) when it cannot be read.
fn owner_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(u32::MAX, |m| m.uid())
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

/// `unmount(2)`, forced if the volume is busy, and `diskutil unmount force` as the last resort.
fn unmount_path(path: &Path) -> std::io::Result<()> {
    if platform::unmount(path, false).is_ok() {
        return Ok(());
    }
    let direct = match platform::unmount(path, true) {
        Ok(()) => return Ok(()),
        Err(err) => err,
    };
    // Nothing mounted there any more (unmounted from outside): done.
    if !platform::in_mount_table(path) {
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
    unsafe { libc::ioctl(fd, FUSEDEVIOCSETDAEMONDEAD as _, &mut arg as *mut u32) };
}

impl Mounted for MacFuse {
    fn unmount(self: Box<Self>) -> Result<(), MountError> {
        let result = unmount_path(&self.mountpoint)
            .map_err(|e| MountError::unmount(&self.mountpoint, "unmount(2)", Some(e)));
        set_daemon_dead(self.connection.io());
        if !self.workers.join(STOP_TIMEOUT) {
            tracing::warn!(mountpoint = %self.mountpoint.display(), "FUSE workers still running after unmount");
        }
        result
    }

    /// Written to the device like a reply. The kext acts on INVAL_ENTRY and INVAL_INODE
    /// (osxfuse/kext `fuse_ipc.c`, `fuse_ipc_notify_handler`; ABI 7.12+, which INIT gives),
    /// INVAL_INODE only on a synchronous mount, which ours is (no `nosyncwrites`).
    fn invalidator(&self) -> Invalidator {
        Invalidator::new(&self.mountpoint, self.connection.clone(), true)
    }
}

/// The whole session against a stand-in for `mount_macfuse` and the kernel: this test binary
/// run again, which hands over one end of a SOCK_SEQPACKET pair as the "device", plays the
/// kernel on the other (INIT, GETATTR), and "mounts" a tmpfs (so it needs root, like the
/// other mount tests). It closes the device once the tmpfs is unmounted, as the kernel
/// answers ENODEV.
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{IoSlice, Write};
    use std::os::fd::FromRawFd;

    use fuse_backend_rs::abi::fuse_abi::{GetattrIn, Opcode};
    use spfs_router::ROOT;
    use vm_memory::ByteValued;

    use super::super::Transport;
    use super::super::message::{AbiBytes, OutHeader};
    use super::super::testing::{
        STAND_IN_ARGS, can_mount_tmpfs, init_body, mount_tmpfs, request, seqpacket_pair,
        session_config, stand_in, tool_vfs, within_5s,
    };
    use super::*;

    /// How the stand-in behaves: `mounts`, `refuses` as an unapproved kext does, `non-admin`
    /// (mounts, but answers `allow_other` with mount(2)'s `EPERM` as the kext does for a user
    /// outside the admin group), or `dies` (the device closes under the mounted volume, as a
    /// kernel that drops the connection).
    const MODE: &str = "SPFS_FAKE_MOUNT_MACFUSE";
    const MOUNTPOINT: &str = "SPFS_FAKE_MOUNT_MACFUSE_MOUNTPOINT";

    /// Sends one message to the "device" and reads its one reply: (error, unique).
    fn exchange(kernel: &mut File, message: &[u8]) -> (i32, u64) {
        kernel.write_all(message).unwrap();
        let mut reply = vec![0u8; 64 * 1024];
        let n = kernel.read(&mut reply).unwrap();
        let header = OutHeader::read_from(&reply[..n]).unwrap();
        assert_eq!(header.len as usize, n);
        (header.error, header.unique)
    }

    /// The stand-in; does nothing unless started by [`fake_helper`].
    #[test]
    fn fake_mount_macfuse() {
        let Ok(mode) = std::env::var(MODE) else {
            return;
        };
        if mode == "refuses" {
            eprintln!("mount_macfuse: the file system is not available (1)");
            std::process::exit(1);
        }
        let mountpoint = PathBuf::from(std::env::var_os(MOUNTPOINT).unwrap());
        let fd: i32 = std::env::var("_FUSE_COMMFD").unwrap().parse().unwrap();
        // SAFETY: the session handed this descriptor over for us alone.
        let comm = unsafe { UnixStream::from_raw_fd(fd) };
        let (kernel, device) = seqpacket_pair();
        let mut kernel = File::from(kernel);
        nix::sys::socket::sendmsg::<()>(
            comm.as_raw_fd(),
            &[IoSlice::new(b"\0")],
            &[nix::sys::socket::ControlMessage::ScmRights(&[
                device.as_raw_fd()
            ])],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .unwrap();
        drop(device);
        let args = std::env::var(STAND_IN_ARGS).unwrap();
        if mode == "non-admin" && args.contains("allow_other") {
            // mount(2) fails before the kext sends INIT; the status is its errno.
            (&comm).write_all(&libc::EPERM.to_ne_bytes()).unwrap();
            eprintln!(
                "mount_macfuse: failed to mount {}@/dev/macfuse0: Operation not permitted",
                mountpoint.display()
            );
            std::process::exit(71);
        }
        assert_eq!(
            exchange(&mut kernel, &request(Opcode::Init, 1, 0, &init_body())),
            (0, 1)
        );
        assert_eq!(
            exchange(
                &mut kernel,
                &request(Opcode::Getattr, 2, ROOT, GetattrIn::default().as_slice())
            ),
            (0, 2)
        );
        mount_tmpfs(&mountpoint);
        (&comm).write_all(&0i32.to_ne_bytes()).unwrap();
        drop(comm);
        if mode == "dies" {
            std::process::exit(0);
        }
        // The "kernel" lives on until the volume is unmounted, then the device dies.
        while platform::in_mount_table(&mountpoint) {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(kernel);
        std::process::exit(0);
    }

    /// mount_macfuse, played by [`fake_mount_macfuse`].
    fn fake_helper(dir: &Path, mode: &str) -> PathBuf {
        stand_in(
            dir,
            "mount_macfuse",
            "session::macfuse::tests::fake_mount_macfuse",
            (MODE, mode),
            MOUNTPOINT,
        )
    }

    fn mount_through(dir: &Path, mode: &str) -> Result<MacFuse, MountError> {
        mount_for(dir, mode, false)
    }

    /// [`mount_through`] by a service that serves other users (`other_users`) or not.
    fn mount_for(dir: &Path, mode: &str, other_users: bool) -> Result<MacFuse, MountError> {
        let config = SessionConfig {
            other_users,
            ..session_config(dir.join("spfs"), Transport::Device)
        };
        mount_with(&fake_helper(dir, mode), tool_vfs(dir), &config)
    }

    /// The kext's device as a read sees it: one message per read, and a buffer too small for
    /// it marks the mount dead (`ENODEV`) instead of returning part of it (`fuse_device.c`).
    struct KextDevice(Vec<u8>);

    impl Read for KextDevice {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if buf.len() < self.0.len() {
                return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
            }
            buf[..self.0.len()].copy_from_slice(&self.0);
            Ok(self.0.len())
        }
    }

    /// Regression (issue 14, defect 8): with 1 MiB + 4 KiB buffers, a larger message (a write
    /// or an xattr of libfuse's largest size) killed the mount. The largest message macFUSE's
    /// libfuse is sized for is read whole by one worker's buffer.
    #[test]
    fn the_largest_message_the_kext_sends_fits_a_workers_buffer() {
        let largest = request(
            Opcode::Setxattr,
            7,
            ROOT,
            &vec![0u8; 32 * 1024 * 1024 + 4096 - super::super::message::IN_HEADER_LEN],
        );
        let mut buf = vec![0u8; BUFSIZE];
        let device = KextDevice(largest.clone());
        assert_eq!(
            super::super::framing::read_message(device, &mut buf).unwrap(),
            Some(largest.len()),
            "the device died: its message did not fit"
        );
    }

    #[test]
    fn mounts_through_the_helper_serves_and_unmounts() {
        if !can_mount_tmpfs() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let session = mount_through(tmp.path(), "mounts").unwrap();
        let mountpoint = session.mountpoint.clone();
        assert!(platform::in_mount_table(&mountpoint));
        assert!(!session.workers.finished());
        let started = std::time::Instant::now();
        Box::new(session).unmount().unwrap();
        assert!(!platform::in_mount_table(&mountpoint));
        assert!(
            started.elapsed() < STOP_TIMEOUT,
            "the workers did not stop with the device"
        );
    }

    /// A device that dies under its volume ends the workers, and the session still unmounts
    /// the volume when it ends.
    #[test]
    fn a_dead_device_stops_the_workers_and_unmounting_still_clears_its_volume() {
        if !can_mount_tmpfs() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let session = mount_through(tmp.path(), "dies").unwrap();
        let mountpoint = session.mountpoint.clone();
        assert!(
            within_5s(|| session.workers.finished()),
            "workers still running after the device died"
        );
        assert!(platform::in_mount_table(&mountpoint));
        Box::new(session).unmount().unwrap();
        assert!(!platform::in_mount_table(&mountpoint));
    }

    #[test]
    fn a_refusing_helper_fails_the_mount_with_its_own_words() {
        if !can_mount_tmpfs() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let err = mount_through(tmp.path(), "refuses")
            .err()
            .expect("the mount must fail");
        assert_eq!(err.kind(), MountFailure::HelperRefused, "{err}");
        let message = err.to_string();
        assert!(
            message.contains("the file system is not available"),
            "{message}"
        );
        assert!(!platform::in_mount_table(&tmp.path().join("spfs")));
    }

    /// Regression (issue 14, defect 6): the service's choice reaches `mount_macfuse`. A
    /// service for its own user asks for no `allow_other` and mounts where a user outside the
    /// admin group is refused it; one serving other users asks for it, and the refusal is
    /// told by its errno: [`MountFailure::AllowOtherDenied`] for a non-root service (root is
    /// never refused, so there it stays [`MountFailure::HelperRefused`]).
    #[test]
    fn allow_other_is_asked_for_only_when_serving_other_users_and_its_refusal_is_told() {
        if !can_mount_tmpfs() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let session = mount_for(tmp.path(), "non-admin", false).unwrap();
        let mountpoint = session.mountpoint.clone();
        Box::new(session).unmount().unwrap();
        assert!(!platform::in_mount_table(&mountpoint));

        let err = mount_for(tmp.path(), "non-admin", true)
            .err()
            .expect("allow_other must be refused");
        let errno = std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<std::io::Error>())
            .and_then(std::io::Error::raw_os_error);
        assert_eq!(errno, Some(libc::EPERM), "{err}");
        let expected = if nix::unistd::getuid().is_root() {
            MountFailure::HelperRefused
        } else {
            MountFailure::AllowOtherDenied
        };
        assert_eq!(err.kind(), expected, "{err}");
        assert!(err.to_string().contains("Operation not permitted"), "{err}");
        assert!(!platform::in_mount_table(&mountpoint));
    }

    #[test]
    fn the_service_choice_of_other_users_is_the_policy_of_its_macfuse_mounts() {
        let tmp = tempfile::tempdir().unwrap();
        for other_users in [false, true] {
            let config = SessionConfig {
                other_users,
                ..session_config(tmp.path().join("spfs"), Transport::Device)
            };
            let options = policy(&config, RoutingKind::Shared).mount_options;
            assert_eq!(
                options.contains(&MountOption::AllowOther),
                other_users,
                "{options:?}"
            );
        }
    }
}
