//! What the macOS mount helpers expect from a FUSE server, as plain functions: their command
//! lines, their environment, and the messages exchanged with them over socket pairs. Only the
//! helpers' paths are macOS-only; the rest is tested on Linux too. `macfuse.rs` and `fuse_t.rs`
//! only start the helpers and keep the sockets.
//!
//! Sources (public): macFUSE's `lib/mount_darwin.c` (the libfuse that ships with macFUSE) and
//! FUSE-T's `lib/mount_darwin.c` (github.com/macos-fuse-t/libfuse).

use std::ffi::OsString;
use std::io::{self, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::MountFailure;
use crate::policy::MountOption;

/// macFUSE's mount helper: it opens `/dev/macfuseN`, mounts, and hands the device back.
#[cfg(target_os = "macos")]
pub(crate) const MOUNT_MACFUSE: &str =
    "/Library/Filesystems/macfuse.fs/Contents/Resources/mount_macfuse";

pub(crate) use crate::policy::FUSE_T_RWSIZE;

/// What FUSE-T's server is asked over the monitor socket to mount the volume; it answers with
/// a native-endian `i32` status, 0 for success.
pub(crate) const FUSE_T_MOUNT: &[u8] = b"mount";

/// What FUSE-T's server is told over the monitor socket to unmount the volume and exit.
pub(crate) const FUSE_T_UNMOUNT: &[u8] = b"unmount";

/// libfuse-t's socket buffers for the FUSE connection: a whole 1 MiB message fits many times.
pub(crate) const FUSE_T_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Escapes a mount option value the way libfuse's `fuse_opt_add_opt_escaped` does, so a comma
/// in a name cannot start another option.
fn escape_option(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == ',' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `-o` value for `mount_macfuse`: `options` (see [`MountOption`]) with the names the
/// mount table and Finder show after the read-only flag.
pub(crate) fn macfuse_options(fsname: &str, volname: &str, options: &[MountOption]) -> String {
    let names = [
        format!("fsname={}", escape_option(fsname)),
        format!("volname={}", escape_option(volname)),
    ];
    let spelled = |option: &MountOption| match option {
        MountOption::ReadOnly => Some("ro".to_string()),
        MountOption::NoAppleDouble => Some("noappledouble".to_string()),
        MountOption::NoAppleXattr => Some("noapplexattr".to_string()),
        MountOption::NoVnCache => Some("novncache".to_string()),
        MountOption::NoBrowse => Some("nobrowse".to_string()),
        MountOption::AllowOther => Some("allow_other".to_string()),
        MountOption::DefaultPermissions => Some("default_permissions".to_string()),
        // FUSE-T's alone.
        MountOption::NoNamedAttr | MountOption::RwSize(_) => None,
    };
    let (read_only, rest): (Vec<_>, Vec<_>) =
        options.iter().partition(|o| **o == MountOption::ReadOnly);
    read_only
        .into_iter()
        .filter_map(spelled)
        .chain(names)
        .chain(rest.into_iter().filter_map(spelled))
        .collect::<Vec<_>>()
        .join(",")
}

/// `mount_macfuse`'s arguments, as macFUSE's libfuse passes them in quiet mode:
/// `-o OPTIONS -q MOUNTPOINT`. Without `-q` the helper answers a kext that is not approved with
/// a blocking alert (osxfuse/support `mount_osxfuse.c`), which under launchd nobody dismisses:
/// the mount then stalls for its whole timeout before the next backend is tried.
pub(crate) fn macfuse_args(
    fsname: &str,
    volname: &str,
    options: &[MountOption],
    mountpoint: &Path,
) -> Vec<OsString> {
    vec![
        "-o".into(),
        macfuse_options(fsname, volname, options).into(),
        "-q".into(),
        mountpoint.as_os_str().to_owned(),
    ]
}

/// `go-nfsv4`'s arguments for a volume named `volname`, with `options` spelled the way
/// libfuse-t translates the mount options `ro`, `nonamedattr`, `rwsize=` and `nobrowse`.
pub(crate) fn fuse_t_args(
    volname: &str,
    options: &[MountOption],
    mountpoint: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--volname".into(), volname.into()];
    args.extend(options.iter().filter_map(|option| match option {
        MountOption::ReadOnly => Some("-r".into()),
        MountOption::NoNamedAttr => Some("--namedattr=false".into()),
        MountOption::RwSize(size) => Some(format!("--rwsize={size}").into()),
        MountOption::NoBrowse => Some("--dontbrowse=true".into()),
        // macFUSE's alone. libfuse-t parses `allow_other` and `default_permissions` but hands
        // neither to its server (`lib/mount_darwin.c`).
        MountOption::NoAppleDouble
        | MountOption::NoAppleXattr
        | MountOption::NoVnCache
        | MountOption::AllowOther
        | MountOption::DefaultPermissions => None,
    }));
    args.push(mountpoint.as_os_str().to_owned());
    args
}

/// The environment both helpers read: the socket to talk over (`_FUSE_COMMFD`), the protocol
/// version (`_FUSE_COMMVERS=2`), that a library (not a person) started them
/// (`_FUSE_CALL_BY_LIB`), and the daemon's executable (`_FUSE_DAEMON_PATH`, shown in alerts).
/// FUSE-T's server also gets its monitor socket (`_FUSE_MONFD`).
pub(crate) fn helper_env(
    comm_fd: i32,
    monitor_fd: Option<i32>,
    daemon_path: Option<&Path>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vec![
        ("_FUSE_CALL_BY_LIB".into(), "1".into()),
        ("_FUSE_COMMFD".into(), comm_fd.to_string().into()),
        ("_FUSE_COMMVERS".into(), "2".into()),
    ];
    if let Some(fd) = monitor_fd {
        env.push(("_FUSE_MONFD".into(), fd.to_string().into()));
    }
    if let Some(path) = daemon_path {
        env.push(("_FUSE_DAEMON_PATH".into(), path.as_os_str().to_owned()));
    }
    env
}

/// Receives the FUSE device `mount_macfuse` sends back: one byte of data carrying the
/// descriptor as `SCM_RIGHTS`. `Ok(None)` means the helper closed the socket without sending
/// one (it failed; its stderr says why). One byte, as macFUSE's libfuse reads, so the status
/// that follows on the same stream stays unread.
pub(crate) fn receive_fd(socket: &UnixStream) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!(std::os::fd::RawFd);
    loop {
        let mut iov = [IoSliceMut::new(&mut byte)];
        let msg = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        ) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        };
        if msg.bytes == 0 {
            return Ok(None);
        }
        let mut received = None;
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel just installed `fd` in this process for us; nothing
                    // else owns it, so the OwnedFd is its only owner (extra ones get closed).
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    received.get_or_insert(owned);
                }
            }
        }
        return match received {
            Some(fd) => Ok(Some(fd)),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the mount helper sent a message without a file descriptor",
            )),
        };
    }
}

/// What a failed mount status from `mount_macfuse` says went wrong, where the status alone (with
/// what the session knows) tells it, never the helper's words. The status is mount(2)'s errno
/// (macFUSE's libfuse, `lib/helper.c`: "> 0 => error code returned by mount(2)").
///
/// `EPERM` comes from two places for our options: XNU refuses a non-root mounter a mount point
/// it does not own (`vfs_syscalls.c`, `prepare_coveredvp`), and the kext refuses `allow_other`
/// to a non-root mounter outside the admin group (osxfuse/kext `fuse_vfsops.c`; `allow_root`
/// and `fsid=`, its other `EPERM`s, we never ask for). Root passes both. So `EPERM` is the
/// admin-group refusal exactly when we asked for `allow_other`, the mounter (`mounter_uid`) is
/// not root, and it owns the mount point (`mountpoint_uid`). Anything else stays
/// [`MountFailure::HelperRefused`], most often an unapproved kext.
pub(crate) fn macfuse_refusal(
    status: i32,
    allow_other: bool,
    mounter_uid: u32,
    mountpoint_uid: u32,
) -> MountFailure {
    if status == libc::EPERM && allow_other && mounter_uid != 0 && mountpoint_uid == mounter_uid {
        MountFailure::AllowOtherDenied
    } else {
        MountFailure::HelperRefused
    }
}

/// Reads a helper's native-endian `i32` mount status (0: mounted). `Ok(None)` means the
/// socket closed first.
pub(crate) fn read_status(mut socket: &UnixStream) -> io::Result<Option<i32>> {
    let mut status = [0u8; 4];
    let mut got = 0;
    while got < status.len() {
        match socket.read(&mut status[got..]) {
            Ok(0) => return Ok(None),
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(Some(i32::from_ne_bytes(status)))
}

/// Asks FUSE-T's server to mount and waits for its status. The FUSE connection must already
/// be served: the server asks the file system (INIT, GETATTR of the root) while mounting.
pub(crate) fn request_fuse_t_mount(mut monitor: &UnixStream) -> io::Result<Option<i32>> {
    monitor.write_all(FUSE_T_MOUNT)?;
    read_status(monitor)
}

/// Tells FUSE-T's server to unmount its volume and exit.
pub(crate) fn request_fuse_t_unmount(mut monitor: &UnixStream) -> io::Result<()> {
    monitor.write_all(FUSE_T_UNMOUNT)
}

/// Sets a socket's send and receive buffers (best effort: the kernel may cap them).
pub(crate) fn set_socket_buffers(socket: &UnixStream, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    if let Err(err) = setsockopt(socket, sockopt::SndBuf, &bytes)
        .and_then(|()| setsockopt(socket, sockopt::RcvBuf, &bytes))
    {
        tracing::debug!(error = %err, bytes, "could not enlarge the FUSE socket buffers");
    }
}

/// Starts a mount helper. The descriptors in `inherit` stay open across `exec` (their numbers
/// are in `env`); everything else of ours is close-on-exec. With `new_session` the helper gets
/// a session of its own (`setsid`), as libfuse-t gives its server, so a terminal's Ctrl-C aimed
/// at the service does not kill the server before the service unmounts.
pub(crate) fn spawn_helper(
    program: &Path,
    args: &[OsString],
    env: &[(OsString, OsString)],
    inherit: &[RawFd],
    new_session: bool,
    stdout: Stdio,
    stderr: Stdio,
) -> io::Result<Child> {
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let inherit = inherit.to_vec();
    // SAFETY: the closure runs in the forked child before exec and calls only fcntl and
    // setsid, which are async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            for &fd in &inherit {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if new_session && libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// Stops a helper: SIGTERM, then SIGKILL if it is still there after `grace`. Returns how it
/// ended.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    if let Some(status) = wait_for_exit(child, grace)? {
        return Ok(status);
    }
    child.kill()?;
    child.wait()
}

/// Waits up to `timeout` for `child` to exit.
pub(crate) fn wait_for_exit(
    child: &mut Child,
    timeout: Duration,
) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a mount at `path` answers `stat` (a live mount, not the directory under it),
/// for up to `timeout`. `check` is asked between attempts whether mounting can still succeed
/// (say, the helper has not died) and ends the wait with its message if not.
pub(crate) fn wait_until_mounted(
    path: &Path,
    timeout: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match crate::mountpoint::state(path) {
            Ok(crate::mountpoint::MountpointState::Live) => return Ok(()),
            Ok(_) | Err(_) if Instant::now() >= deadline => {
                return Err(format!(
                    "{} did not answer as a mount within {} s",
                    path.display(),
                    timeout.as_secs()
                ));
            }
            Ok(_) | Err(_) => {}
        }
        check()?;
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{KernelPolicy, Platform, RoutingKind};
    use crate::session::Transport;
    use std::io::IoSlice;
    use std::os::fd::AsFd;

    /// The mount options of the macFUSE policy.
    fn macfuse() -> Vec<MountOption> {
        KernelPolicy::new(Platform::MacOs, Transport::Device, RoutingKind::Shared).mount_options
    }

    /// Regression (issue 14, defect 7): without `-q`, an unapproved kext shows a blocking alert.
    #[test]
    fn macfuse_gets_its_names_and_no_apple_metadata_quietly() {
        assert_eq!(
            macfuse_options("spfs", "spfs", &macfuse()),
            "fsname=spfs,volname=spfs,noappledouble,noapplexattr,nobrowse,novncache"
        );
        // A read-only mount, which no policy asks for since views answer EROFS themselves,
        // would still put `ro` first.
        let read_only: Vec<_> = [MountOption::ReadOnly]
            .into_iter()
            .chain(macfuse())
            .collect();
        assert_eq!(
            macfuse_options("spfs", "spfs", &read_only),
            "ro,fsname=spfs,volname=spfs,noappledouble,noapplexattr,nobrowse,novncache"
        );
        let args = macfuse_args("spfs", "spfs", &macfuse(), Path::new("/spfs"));
        assert_eq!(
            args,
            [
                "-o",
                "fsname=spfs,volname=spfs,noappledouble,noapplexattr,nobrowse,novncache",
                "-q",
                "/spfs"
            ]
            .map(OsString::from)
        );
    }

    /// Regression (issue 14, defect 6): the system service's mount lets other users in, and
    /// the kernel checks the layers' permission bits for them; a per-user one asks for
    /// neither (see `macfuse_gets_its_names_and_no_apple_metadata_quietly`).
    #[test]
    fn a_macfuse_mount_for_other_users_asks_for_allow_other_and_default_permissions() {
        let options = KernelPolicy::new(Platform::MacOs, Transport::Device, RoutingKind::Shared)
            .serving_other_users(true)
            .mount_options;
        assert_eq!(
            macfuse_args("spfs", "spfs", &options, Path::new("/spfs")),
            [
                "-o",
                "fsname=spfs,volname=spfs,noappledouble,noapplexattr,nobrowse,novncache,\
                 allow_other,default_permissions",
                "-q",
                "/spfs"
            ]
            .map(OsString::from)
        );
        // FUSE-T's server takes neither.
        let options = KernelPolicy::new(Platform::MacOs, Transport::Nfs, RoutingKind::Fixed)
            .mount_options
            .into_iter()
            .chain([MountOption::AllowOther, MountOption::DefaultPermissions])
            .collect::<Vec<_>>();
        let args = fuse_t_args("spfs-42", &options, Path::new("/Volumes/spfs-42"));
        assert!(
            !args
                .iter()
                .any(|a| a.to_string_lossy().contains("allow_other")
                    || a.to_string_lossy().contains("permissions")),
            "{args:?}"
        );
    }

    /// Issue 14, defect 6: `EPERM` is macFUSE's admin-group refusal of `allow_other` only
    /// where nothing else can have caused it.
    #[test]
    fn eperm_is_the_admin_group_refusal_only_where_nothing_else_explains_it() {
        const USER: u32 = 501;
        let eperm = libc::EPERM;
        assert_eq!(
            macfuse_refusal(eperm, true, USER, USER),
            MountFailure::AllowOtherDenied
        );
        // Not asked for: some other refusal.
        assert_eq!(
            macfuse_refusal(eperm, false, USER, USER),
            MountFailure::HelperRefused
        );
        // Root is never refused `allow_other`, nor a mount point.
        assert_eq!(
            macfuse_refusal(eperm, true, 0, 0),
            MountFailure::HelperRefused
        );
        // A mount point of another owner: XNU's refusal, before the kext is asked.
        assert_eq!(
            macfuse_refusal(eperm, true, USER, 0),
            MountFailure::HelperRefused
        );
        // Other errnos, and the unknown status (-1) of a helper that sent none.
        for status in [libc::EINVAL, libc::ENOENT, libc::EBUSY, -1] {
            assert_eq!(
                macfuse_refusal(status, true, USER, USER),
                MountFailure::HelperRefused
            );
        }
    }

    #[test]
    fn commas_in_names_cannot_start_another_option() {
        assert_eq!(
            macfuse_options("a,b", r"c\d", &macfuse()),
            r"fsname=a\,b,volname=c\\d,noappledouble,noapplexattr,nobrowse,novncache"
        );
    }

    #[test]
    fn fuse_t_gets_its_volume_name_and_the_fast_rwsize() {
        let policy = KernelPolicy::new(Platform::MacOs, Transport::Nfs, RoutingKind::Fixed);
        let args = fuse_t_args(
            "spfs-42",
            &policy.mount_options,
            Path::new("/Volumes/spfs-42"),
        );
        assert_eq!(
            args,
            [
                "--volname",
                "spfs-42",
                "--namedattr=false",
                "--rwsize=262144",
                "--dontbrowse=true",
                "/Volumes/spfs-42"
            ]
            .map(OsString::from)
        );
        // An editable runtime's volume keeps extended attributes: named attributes on.
        let editable = policy.editable(true).mount_options;
        let args = fuse_t_args("spfs-42", &editable, Path::new("/Volumes/spfs-42"));
        assert_eq!(
            args,
            [
                "--volname",
                "spfs-42",
                "--rwsize=262144",
                "--dontbrowse=true",
                "/Volumes/spfs-42"
            ]
            .map(OsString::from)
        );
        let read_only = fuse_t_args("v", &[MountOption::ReadOnly], Path::new("/v"));
        assert_eq!(
            read_only,
            ["--volname", "v", "-r", "/v"].map(OsString::from)
        );
    }

    #[test]
    fn helpers_learn_their_sockets_from_the_environment() {
        let env = helper_env(7, Some(9), Some(Path::new("/usr/local/bin/spfs-fuse")));
        let get = |k: &str| {
            env.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(get("_FUSE_COMMFD").as_deref(), Some("7"));
        assert_eq!(get("_FUSE_MONFD").as_deref(), Some("9"));
        assert_eq!(get("_FUSE_COMMVERS").as_deref(), Some("2"));
        assert_eq!(get("_FUSE_CALL_BY_LIB").as_deref(), Some("1"));
        assert_eq!(
            get("_FUSE_DAEMON_PATH").as_deref(),
            Some("/usr/local/bin/spfs-fuse")
        );
        let macfuse = helper_env(7, None, None);
        assert!(macfuse.iter().all(|(k, _)| k != "_FUSE_MONFD"));
    }

    /// Plays mount_macfuse: sends a descriptor with one byte, then the mount status.
    #[test]
    fn the_device_and_then_the_status_arrive_over_one_stream() {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        let (ours, helper) = UnixStream::pair().unwrap();
        let device = tempfile::tempfile().unwrap();
        let fds = [device.as_fd().as_raw_fd()];
        sendmsg::<()>(
            helper.as_raw_fd(),
            &[IoSlice::new(b"\0")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        (&helper).write_all(&0i32.to_ne_bytes()).unwrap();

        let received = receive_fd(&ours).unwrap().expect("a descriptor");
        let same = |fd: &OwnedFd| {
            let st = nix::sys::stat::fstat(fd).unwrap();
            (st.st_dev, st.st_ino)
        };
        let device_fd: OwnedFd = device.into();
        assert_eq!(same(&received), same(&device_fd));
        assert_eq!(read_status(&ours).unwrap(), Some(0));
        drop(helper);
        assert_eq!(read_status(&ours).unwrap(), None);
    }

    /// The helper finds its socket from the environment, inherited across exec.
    #[test]
    fn helpers_inherit_their_socket_and_nothing_else() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (_unrelated, other) = UnixStream::pair().unwrap();
        let env = helper_env(theirs.as_raw_fd(), Some(other.as_raw_fd()), None);
        let script = r#"printf 'hello' >&"$_FUSE_COMMFD"; if printf x >&"$_FUSE_MONFD"; then echo leaked; fi"#;
        let mut child = spawn_helper(
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            &env,
            &[theirs.as_raw_fd()],
            true,
            Stdio::piped(),
            Stdio::null(),
        )
        .unwrap();
        drop(theirs);
        let mut got = String::new();
        (&ours).read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        assert_eq!(stdout, "", "only the named descriptors are inherited");
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn a_helper_that_ignores_sigterm_is_killed() {
        let mut child = spawn_helper(
            Path::new("/bin/sh"),
            &[
                "-c".into(),
                "trap '' TERM; while :; do sleep 0.1; done".into(),
            ],
            &[],
            &[],
            false,
            Stdio::null(),
            Stdio::null(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let status = terminate(&mut child, Duration::from_millis(300)).unwrap();
        assert!(!status.success());
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_plain_directory_never_counts_as_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            wait_until_mounted(dir.path(), Duration::from_millis(200), || Ok(())).unwrap_err();
        assert!(err.contains("did not answer"), "{err}");
        let err = wait_until_mounted(dir.path(), Duration::from_secs(5), || {
            Err("the helper died".to_string())
        })
        .unwrap_err();
        assert_eq!(err, "the helper died");
    }

    #[test]
    fn a_helper_that_dies_sends_no_descriptor() {
        let (ours, helper) = UnixStream::pair().unwrap();
        drop(helper);
        assert!(receive_fd(&ours).unwrap().is_none());
    }

    /// Plays go-nfsv4's monitor side.
    #[test]
    fn fuse_t_mount_and_unmount_requests() {
        let (ours, server) = UnixStream::pair().unwrap();
        let fake = std::thread::spawn(move || {
            let mut command = [0u8; 5];
            (&server).read_exact(&mut command).unwrap();
            assert_eq!(&command, FUSE_T_MOUNT);
            (&server).write_all(&(-5i32).to_ne_bytes()).unwrap();
            let mut command = [0u8; 7];
            (&server).read_exact(&mut command).unwrap();
            assert_eq!(&command, FUSE_T_UNMOUNT);
        });
        assert_eq!(request_fuse_t_mount(&ours).unwrap(), Some(-5));
        request_fuse_t_unmount(&ours).unwrap();
        fake.join().unwrap();
    }
}
