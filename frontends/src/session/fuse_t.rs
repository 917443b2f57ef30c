//! macOS's NFS transport: FUSE-T. Its `go-nfsv4` is an NFS server the kernel's NFS client
//! mounts (our child process, the *NFS server* here; the *FUSE server* is `fuse-backend-rs`'s
//! `Server`, which answers the requests); it forwards each NFS call as FUSE requests over a stream socket. We start it
//! the way libfuse-t does (`lib/mount_darwin.c` in github.com/macos-fuse-t/libfuse):
//!
//! 1. two stream socket pairs: the FUSE connection (`_FUSE_COMMFD`, 4 MiB buffers) and the
//!    monitor (`_FUSE_MONFD`), plus `_FUSE_COMMVERS=2`, `_FUSE_CALL_BY_LIB=1` and
//!    `_FUSE_DAEMON_PATH`; the NFS server runs in a session of its own (`setsid`);
//! 2. arguments `--volname NAME -r --namedattr=false --rwsize=262144 MOUNTPOINT` (the mount
//!    options `volname=`, `ro`, `nonamedattr`, `rwsize=`);
//! 3. the workers serve the FUSE connection, then `mount` goes over the monitor and a native
//!    `i32` status comes back (0: mounted); we then wait until the mount point answers `stat`;
//! 4. to unmount: `unmount` over the monitor, then the NFS server is terminated and reaped.
//!
//! Which `go-nfsv4` runs is the probe's one discovery (`FUSE_NFSSRV_PATH`, then a per-user
//! install under `$HOME/.fuse-t`, then the system's), handed over in
//! [`SessionConfig::nfs_server`]; the session looks for none itself.
//!
//! Requests are framed by their header's length ([`Framing::Stream`]). When the NFS server
//! exits or the volume goes away, the socket reaches EOF and every worker returns.

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fuse_backend_rs::api::server::Server;
use spfs_router::{Routing, Vfs};

use super::framing::{Connection, Framing, Workers};
use super::protocol::{self, FUSE_T_RWSIZE, FUSE_T_SOCKET_BUFFER};
use super::{Mounted, SessionConfig, Transport};
use crate::adapter::Adapter;
use crate::error::{MountError, MountFailure};
use crate::invalidate::Invalidator;
use crate::platform;
use crate::policy::{KernelPolicy, Platform, RoutingKind};

/// How long mounting may take.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the NFS server gets to unmount and exit by itself, then after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(3);

/// How long unmounting waits for the workers.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Request and reply buffers: one read or write of `rwsize` plus a page of headers.
const BUFSIZE: usize = FUSE_T_RWSIZE + 4096;

/// A mounted FUSE-T volume.
struct FuseT {
    mountpoint: PathBuf,
    /// `go-nfsv4`.
    nfs_server: Mutex<Child>,
    monitor: UnixStream,
    connection: Arc<Connection<UnixStream>>,
    workers: Workers,
}

/// Mounts `vfs` read-only at `config.mountpoint` as a FUSE-T volume named `config.volname`.
#[cfg(target_os = "macos")]
pub(super) fn mount(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<Box<dyn Mounted>, MountError> {
    Ok(Box::new(mount_with(vfs, config)?))
}

/// [`mount`]: served by the NFS server `config.nfs_server` (the probe's discovery: this
/// session looks for none of its own). Nothing is created before that server is known to
/// exist.
fn mount_with(vfs: Arc<Vfs>, config: &SessionConfig) -> Result<FuseT, MountError> {
    let mountpoint = config.mountpoint.as_path();
    let failed = |kind, message: String| MountError::session(mountpoint, kind, message);
    let failed_io = |kind, message: &str| {
        let message = message.to_owned();
        move |source| MountError::session_io(mountpoint, kind, message, source)
    };
    let program = match &config.nfs_server {
        Some(program) if program.is_file() => program.as_path(),
        Some(program) => {
            return Err(failed(
                MountFailure::ServerMissing,
                format!("FUSE-T's NFS server {} is missing", program.display()),
            ));
        }
        None => {
            return Err(failed(
                MountFailure::ServerMissing,
                "FUSE-T's NFS server go-nfsv4 was not found".to_string(),
            ));
        }
    };
    let path = super::prepare_mountpoint(&config.mountpoint)?;
    let pair = || {
        UnixStream::pair().map_err(failed_io(
            MountFailure::Other,
            "cannot create a socket pair",
        ))
    };
    let (ours, theirs) = pair()?;
    let (monitor, their_monitor) = pair()?;
    for socket in [&ours, &theirs] {
        protocol::set_socket_buffers(socket, FUSE_T_SOCKET_BUFFER);
    }
    monitor
        .set_read_timeout(Some(MOUNT_TIMEOUT))
        .map_err(failed_io(
            MountFailure::Other,
            "cannot set a socket timeout",
        ))?;
    // Other users change nothing for FUSE-T (see `KernelPolicy::serving_other_users`). A
    // volume of an editable runtime keeps extended attributes (`KernelPolicy::editable`).
    let editable = matches!(vfs.routing(), Routing::Fixed(view) if view.scratch().is_some());
    let policy = KernelPolicy::new(
        Platform::MacOs,
        Transport::Nfs,
        RoutingKind::of(vfs.routing()),
    )
    .serving_other_users(config.other_users)
    .editable(editable);
    let daemon = std::env::current_exe().ok();
    // Its stderr goes to the service's log; stdout is of no use.
    let child = protocol::spawn_helper(
        program,
        &protocol::fuse_t_args(&config.volname, &policy.mount_options, &path),
        &protocol::helper_env(
            theirs.as_raw_fd(),
            Some(their_monitor.as_raw_fd()),
            daemon.as_deref(),
        ),
        &[theirs.as_raw_fd(), their_monitor.as_raw_fd()],
        true,
        Stdio::null(),
        Stdio::inherit(),
    )
    .map_err(|e| {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => MountFailure::ServerMissing,
            _ => MountFailure::Other,
        };
        failed_io(kind, &format!("cannot run {}", program.display()))(e)
    })?;
    // Ours must go, so the NFS server's exit shows as EOF on both sockets.
    drop((theirs, their_monitor));

    let connection = Arc::new(Connection::new(ours, Framing::Stream));
    let session = |workers| FuseT {
        mountpoint: path.clone(),
        nfs_server: Mutex::new(child),
        monitor,
        connection: connection.clone(),
        workers,
    };
    let fuse_server = Arc::new(Server::new(Adapter::new(vfs, policy)));
    let session = match Workers::start(connection.clone(), fuse_server, config.threads, BUFSIZE) {
        Ok(workers) => session(workers),
        Err(err) => {
            let _ = session(Workers::none()).stop();
            return Err(failed_io(
                MountFailure::Other,
                "cannot start a worker thread",
            )(err));
        }
    };

    // The NFS server asks the file system (INIT, the root's attributes) while it mounts.
    let mounted = match protocol::request_fuse_t_mount(&session.monitor) {
        Ok(Some(0)) => Ok(()),
        Ok(Some(status)) => Err((
            MountFailure::Other,
            format!("go-nfsv4 could not mount (status {status})"),
        )),
        Ok(None) => Err((
            MountFailure::ServerExited,
            "go-nfsv4 exited while mounting".to_string(),
        )),
        Err(err) => Err((
            MountFailure::Other,
            format!("no mount status from go-nfsv4: {err}"),
        )),
    };
    let mounted = mounted.and_then(|()| {
        protocol::wait_until_mounted(&session.mountpoint, MOUNT_TIMEOUT, || {
            session.nfs_server_exited()
        })
        // Whether the NFS server is gone says what kind of failure this is, whatever the words.
        .map_err(|message| match session.nfs_server_exited() {
            Err(_) => (MountFailure::ServerExited, message),
            Ok(()) => (MountFailure::Other, message),
        })
    });
    if let Err((kind, message)) = mounted {
        let _ = session.stop();
        return Err(failed(kind, message));
    }
    Ok(session)
}

impl FuseT {
    /// An error once the NFS server has exited.
    fn nfs_server_exited(&self) -> Result<(), String> {
        let mut nfs_server = self
            .nfs_server
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match nfs_server.try_wait() {
            Ok(Some(status)) => Err(format!("go-nfsv4 exited ({status})")),
            _ => Ok(()),
        }
    }

    /// Unmounts, ends the NFS server and the workers.
    fn stop(self) -> Result<(), MountError> {
        // Refused if the NFS server is gone already: nothing to tell it then.
        let _ = protocol::request_fuse_t_unmount(&self.monitor);
        drop(self.monitor);
        let mut nfs_server = self
            .nfs_server
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        let ended = match protocol::wait_for_exit(&mut nfs_server, EXIT_GRACE) {
            Ok(Some(status)) => Ok(status),
            _ => protocol::terminate(&mut nfs_server, EXIT_GRACE),
        };
        // Workers still reading (an NFS server that never closed its end) see EOF now.
        let _ = self.connection.io().shutdown(std::net::Shutdown::Both);
        if !self.workers.join(STOP_TIMEOUT) {
            tracing::warn!(mountpoint = %self.mountpoint.display(), "FUSE workers still running after unmount");
        }
        // The NFS server unmounts on `unmount`; had it died first (or the volume been busy),
        // the volume is left without one.
        if platform::in_mount_table(&self.mountpoint) {
            platform::force_unmount(&self.mountpoint)
                .map_err(|e| MountError::unmount(&self.mountpoint, "force-unmounting", Some(e)))?;
        }
        match ended {
            Ok(status) => {
                tracing::debug!(%status, "go-nfsv4 exited");
                Ok(())
            }
            Err(err) => Err(MountError::unmount(
                &self.mountpoint,
                "could not end go-nfsv4",
                Some(err),
            )),
        }
    }
}

impl Mounted for FuseT {
    fn unmount(self: Box<Self>) -> Result<(), MountError> {
        (*self).stop()
    }

    /// Sent on the FUSE socket as libfuse-t sends them; `go-nfsv4` accepts and drops them
    /// (commontoolsinc/labs#4737, FUSE-T 1.2.7), so not honoured: the NFS client's attribute
    /// cache decides when a change shows (`noattrcache` makes that at once).
    fn invalidator(&self) -> Invalidator {
        Invalidator::new(&self.mountpoint, self.connection.clone(), false)
    }
}

/// The whole session against a stand-in for `go-nfsv4`: this test binary run again, which
/// speaks the NFS server's side of both sockets and "mounts" a tmpfs where the NFS volume would
/// be (so it needs root, like the other mount tests).
#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::FromRawFd;
    use std::path::Path;

    use fuse_backend_rs::abi::fuse_abi::{GetattrIn, Opcode};
    use spfs_router::ROOT;
    use vm_memory::ByteValued;

    use super::super::Transport;
    use super::super::testing::{
        can_mount_tmpfs, init_body, mount_tmpfs, reply, request, session_config, stand_in,
        tool_vfs, within_5s,
    };
    use super::*;

    /// How the stand-in behaves after mounting: `unmounts` on request, or `dies` at once.
    const MODE: &str = "SPFS_FAKE_GO_NFSV4";
    const MOUNTPOINT: &str = "SPFS_FAKE_GO_NFSV4_MOUNTPOINT";

    /// The stand-in NFS server; does nothing unless started by [`fake_nfs_server`].
    #[test]
    fn fake_go_nfsv4() {
        let Ok(mode) = std::env::var(MODE) else {
            return;
        };
        let mountpoint = PathBuf::from(std::env::var_os(MOUNTPOINT).unwrap());
        let socket = |name: &str| {
            let fd: i32 = std::env::var(name).unwrap().parse().unwrap();
            // SAFETY: the session handed this descriptor over for us alone.
            unsafe { UnixStream::from_raw_fd(fd) }
        };
        let (mut comm, mut monitor) = (socket("_FUSE_COMMFD"), socket("_FUSE_MONFD"));
        let mut command = [0u8; 5];
        monitor.read_exact(&mut command).unwrap();
        assert_eq!(&command, b"mount");
        // As the real NFS server does while mounting: INIT, then the root's attributes.
        comm.write_all(&request(Opcode::Init, 1, 0, &init_body()))
            .unwrap();
        let (error, unique, _) = reply(&comm);
        assert_eq!((error, unique), (0, 1));
        comm.write_all(&request(
            Opcode::Getattr,
            2,
            ROOT,
            GetattrIn::default().as_slice(),
        ))
        .unwrap();
        let (error, unique, _) = reply(&comm);
        assert_eq!((error, unique), (0, 2));
        mount_tmpfs(&mountpoint);
        monitor.write_all(&0i32.to_ne_bytes()).unwrap();
        if mode == "dies" {
            std::process::exit(3);
        }
        let mut command = Vec::new();
        let _ = monitor.read_to_end(&mut command);
        assert_eq!(command, b"unmount");
        nix::mount::umount(&mountpoint).unwrap();
        std::process::exit(0);
    }

    /// go-nfsv4, played by [`fake_go_nfsv4`].
    fn fake_nfs_server(dir: &Path, mode: &str) -> PathBuf {
        stand_in(
            dir,
            "go-nfsv4",
            "session::fuse_t::tests::fake_go_nfsv4",
            (MODE, mode),
            MOUNTPOINT,
        )
    }

    fn start(dir: &Path, mode: &str) -> (FuseT, PathBuf) {
        let config = SessionConfig {
            nfs_server: Some(fake_nfs_server(dir, mode)),
            ..session_config(dir.join("spfs-1"), Transport::Nfs)
        };
        let session = mount_with(tool_vfs(dir), &config).unwrap();
        let mountpoint = session.mountpoint.clone();
        (session, mountpoint)
    }

    /// Regression (issue 14, defect 9): the volume's directory was created before the NFS
    /// server was looked for, and left behind when there was none. The session takes the
    /// server the probe found; without one it fails first, creating nothing.
    #[test]
    fn without_an_nfs_server_the_mount_fails_and_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mountpoint = tmp.path().join("spfs-1");
        for nfs_server in [None, Some(tmp.path().join("go-nfsv4"))] {
            let config = SessionConfig {
                nfs_server,
                ..session_config(mountpoint.clone(), Transport::Nfs)
            };
            let err = mount_with(tool_vfs(tmp.path()), &config)
                .err()
                .expect("the mount must fail");
            assert_eq!(err.kind(), MountFailure::ServerMissing, "{err}");
            assert!(!mountpoint.exists(), "{} was created", mountpoint.display());
        }
    }

    #[test]
    fn mounts_serves_and_unmounts_through_the_nfs_server() {
        if !can_mount_tmpfs() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (session, mountpoint) = start(tmp.path(), "unmounts");
        assert!(platform::in_mount_table(&mountpoint));
        assert!(!session.workers.finished());
        Box::new(session).unmount().unwrap();
        assert!(!platform::in_mount_table(&mountpoint));
    }

    /// fuse-backend-rs 0.14's FUSE-T channel spins once the NFS server's socket closes: ours
    /// must return, and unmounting clears the volume the dead NFS server left behind.
    #[test]
    fn workers_stop_when_the_nfs_server_dies_and_unmount_clears_its_volume() {
        if !can_mount_tmpfs() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let (session, mountpoint) = start(tmp.path(), "dies");
        assert!(
            within_5s(|| session.workers.finished()),
            "workers still running after the NFS server died"
        );
        assert!(platform::in_mount_table(&mountpoint));
        Box::new(session).unmount().unwrap();
        assert!(!platform::in_mount_table(&mountpoint));
    }
}
