//! Test helpers shared by the session tests: views and configurations to mount, requests as a
//! kernel or FUSE-T's NFS server sends them, socket pairs, and stand-in mount helpers (this
//! test binary run again). The mount gates and root attributes come from `spfs-testkit`.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use spfs_router::{ResolvedSpec, Routing, Vfs, View};

use fuse_backend_rs::abi::fuse_abi::{InitIn, Opcode};
use fuse_backend_rs::api::server::Server;
use vm_memory::ByteValued;

#[cfg(target_os = "linux")]
use super::SessionConfig;
use super::Transport;
use super::message::{AbiBytes, IN_HEADER_LEN, InHeader, OUT_HEADER_LEN, OutHeader};
use crate::adapter::Adapter;
use crate::policy::{KernelPolicy, Platform, RoutingKind};
#[cfg(target_os = "linux")]
use std::os::fd::{FromRawFd, OwnedFd};
#[cfg(target_os = "linux")]
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A per-runtime style filesystem: one fixed view of the directory layer at `layer`.
pub(crate) fn fixed_vfs(layer: PathBuf) -> Arc<Vfs> {
    let root = spfs_testkit::root_attr();
    let view = View::build(1, &ResolvedSpec::of_directories([layer]), &root, (0, 0));
    Arc::new(Vfs::new(Routing::Fixed(Arc::new(view))))
}

/// [`fixed_vfs`] of `dir/layer`, which it fills with `bin/tool` (`tool`).
#[cfg(target_os = "linux")]
pub(crate) fn tool_vfs(dir: &Path) -> Arc<Vfs> {
    std::fs::create_dir_all(dir.join("layer/bin")).unwrap();
    std::fs::write(dir.join("layer/bin/tool"), b"tool").unwrap();
    fixed_vfs(dir.join("layer"))
}

/// How the tests mount at `mountpoint` over `transport`: two workers, io_uring where the
/// kernel offers it, and the mount point's name for the volume (as per-runtime volumes are).
#[cfg(target_os = "linux")]
pub(crate) fn session_config(mountpoint: PathBuf, transport: Transport) -> SessionConfig {
    let volname = mountpoint
        .file_name()
        .map_or_else(|| "spfs".into(), |name| name.to_string_lossy().into_owned());
    SessionConfig {
        mountpoint,
        fsname: "spfs".into(),
        volname,
        transport,
        threads: 2,
        io_uring: true,
        nfs_server: None,
        other_users: false,
    }
}

/// A FUSE server of one fixed view of `layer`, which it fills with `hello` (11 bytes) and
/// `dir/deep`, answering as the macFUSE session's adapter does.
pub(crate) fn sample_server(layer: &Path) -> Arc<Server<Adapter>> {
    std::fs::write(layer.join("hello"), b"hello world").unwrap();
    std::fs::create_dir(layer.join("dir")).unwrap();
    std::fs::write(layer.join("dir/deep"), b"deep").unwrap();
    let policy = KernelPolicy::new(Platform::MacOs, Transport::Device, RoutingKind::Fixed);
    Arc::new(Server::new(Adapter::new(
        fixed_vfs(layer.to_path_buf()),
        policy,
    )))
}

/// Reads one framed reply: (error, unique, body).
pub(crate) fn reply(mut peer: &UnixStream) -> (i32, u64, Vec<u8>) {
    let mut header = [0u8; OUT_HEADER_LEN];
    peer.read_exact(&mut header).unwrap();
    let header = OutHeader::read_from(&header).unwrap();
    let mut body = vec![0u8; header.len as usize - OUT_HEADER_LEN];
    peer.read_exact(&mut body).unwrap();
    (header.error, header.unique, body)
}

/// A request of `opcode` for `unique` on `nodeid` from uid, gid and pid 0, then `body`.
pub(crate) fn request(opcode: Opcode, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let header = InHeader {
        len: (IN_HEADER_LEN + body.len()) as u32,
        opcode: opcode as u32,
        unique,
        nodeid,
        ..InHeader::default()
    };
    [header.as_slice(), body].concat()
}

/// A reply body as `T`. Replies to older protocol versions may be shorter than `T` (INIT's);
/// what they lack reads as zeros.
pub(crate) fn body<T: AbiBytes>(bytes: &[u8]) -> T {
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().max(std::mem::size_of::<T>()), 0);
    T::read_from(&padded).unwrap()
}

/// The body of an INIT from a 7.19 kernel (macFUSE's ABI) with no flags.
pub(crate) fn init_body() -> Vec<u8> {
    let init = InitIn {
        major: 7,
        minor: 19,
        max_readahead: 65536,
        flags: 0,
    };
    init.as_slice().to_vec()
}

/// A SOCK_SEQPACKET pair: one read, one message, like a FUSE device.
#[cfg(target_os = "linux")]
pub(crate) fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Where a stand-in helper finds the arguments it was started with.
#[cfg(target_os = "linux")]
pub(crate) const STAND_IN_ARGS: &str = "SPFS_FAKE_HELPER_ARGS";

/// Writes `dir/name`, a script that runs the test `test` of this binary as a stand-in mount
/// helper, with `mode_env=mode` and `mountpoint_env` set to the helper's last argument (the
/// mount point). libtest would refuse the helper's own arguments, so they are handed on in
/// [`STAND_IN_ARGS`], joined by spaces.
#[cfg(target_os = "linux")]
pub(crate) fn stand_in(
    dir: &Path,
    name: &str,
    test: &str,
    (mode_env, mode): (&str, &str),
    mountpoint_env: &str,
) -> PathBuf {
    let script = dir.join(name);
    let exe = std::env::current_exe().unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor last; do :; done\n{mode_env}={mode} {mountpoint_env}=\"$last\" \
             {STAND_IN_ARGS}=\"$*\" exec '{}' --exact {test} --nocapture --test-threads=1 \
             >/dev/null\n",
            exe.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The gate of the stand-in helpers' tests: they mount a tmpfs, not FUSE, which needs root.
/// Without it, skip (or fail where mounting is required), as [`spfs_testkit::skip`] does.
#[cfg(target_os = "linux")]
#[track_caller]
pub(crate) fn can_mount_tmpfs() -> bool {
    spfs_testkit::is_root()
        || spfs_testkit::skip("the stand-in helper mounts a tmpfs, which needs root")
}

/// Whether `done` holds within 5 s, asking every 10 ms.
#[cfg(target_os = "linux")]
pub(crate) fn within_5s(mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    done()
}

/// What a stand-in mounts where the real helper would: a tmpfs.
#[cfg(target_os = "linux")]
pub(crate) fn mount_tmpfs(path: &Path) {
    nix::mount::mount(
        Some("tmpfs"),
        path,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
}
