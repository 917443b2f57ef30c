//! The transports end to end, where the platform has them.
//!
//! - Linux: the device transport reads ahead 8 MiB on its mount (the kernel's 128 KiB default
//!   streams a big file one round trip at a time), and unmounting a busy mount still ends its
//!   workers, whose waits the kernel would not end while someone is inside: their devices
//!   close, so the one still inside gets `ENOTCONN`, not a server that lingers with it.
//! - Linux: the NFS transport (FUSE-T) is refused, and nothing is created for it.
//! - macOS with FUSE-T (`/usr/local/bin/go-nfsv4`): a view mounted over FUSE-T reads back,
//!   and unmounting ends the server and the workers. Skips without FUSE-T, unless
//!   `SPFS_FUSE_T_REQUIRED=1` (the macOS workflow sets it after installing FUSE-T).

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use spfs_frontends::{MountError, Session, SessionConfig, Transport};
use spfs_router::{ResolvedSpec, Routing, Vfs, View};
use support::{put, root_attr};

/// A per-runtime style session of one layer holding `bin/tool`.
fn fixed_vfs(layer: &std::path::Path) -> Arc<Vfs> {
    put(layer, "bin/tool", b"tool bytes");
    let view = View::build(
        1,
        &ResolvedSpec::of_directories([PathBuf::from(layer)]),
        &root_attr(),
        (0, 0),
    );
    Arc::new(Vfs::new(Routing::Fixed(Arc::new(view))))
}

fn config(mountpoint: PathBuf, transport: Transport) -> SessionConfig {
    SessionConfig {
        mountpoint,
        fsname: "spfs-test".into(),
        volname: "spfs-test".into(),
        transport,
        threads: 2,
    }
}

#[cfg(target_os = "linux")]
#[test]
fn linux_refuses_the_nfs_transport_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mountpoint = tmp.path().join("mnt");
    let err = Session::mount(
        fixed_vfs(&tmp.path().join("layer")),
        &config(mountpoint.clone(), Transport::Nfs),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            MountError::Unsupported {
                transport: "nfs",
                ..
            }
        ),
        "{err}"
    );
    assert!(!mountpoint.exists());
}

#[cfg(target_os = "linux")]
#[test]
fn unmounting_a_busy_device_mount_ends_its_workers() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let Some((session, mountpoint)) = mount_device(tmp.path()) else {
        return;
    };
    // Opened, never read: its first read has to reach a server. Holding it keeps the mount
    // busy, so the kernel does not end the workers' waits itself.
    let mut held = std::fs::File::open(mountpoint.join("bin/tool")).unwrap();
    session.unmount().unwrap();
    let mut bytes = Vec::new();
    let err = held
        .read_to_end(&mut bytes)
        .expect_err("a read after unmount was served: the workers outlived the session");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
}

/// A device session of [`fixed_vfs`] mounted at `tmp/mnt`; `None` (after saying why) where
/// FUSE cannot mount.
#[cfg(target_os = "linux")]
fn mount_device(tmp: &std::path::Path) -> Option<(Session, PathBuf)> {
    if !support::require_fuse() {
        return None;
    }
    let mountpoint = tmp.join("mnt");
    let session = Session::mount(
        fixed_vfs(&tmp.join("layer")),
        &config(mountpoint.clone(), Transport::Device),
    )
    .unwrap_or_else(|e: MountError| panic!("{e}"));
    Some((session, mountpoint))
}

#[cfg(target_os = "linux")]
#[test]
fn a_device_mount_reads_ahead_eight_mib() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let Some((session, mountpoint)) = mount_device(tmp.path()) else {
        return;
    };
    let dev = std::fs::metadata(&mountpoint).unwrap().dev();
    let bdi = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    let readahead = std::fs::read_to_string(&bdi).unwrap();
    session.unmount().unwrap();
    assert_eq!(readahead.trim(), "8192", "{bdi}");
}

#[cfg(target_os = "macos")]
#[test]
fn a_fuse_t_volume_serves_its_view_and_unmounting_ends_its_server() {
    if !std::path::Path::new("/usr/local/bin/go-nfsv4").exists() {
        if std::env::var("SPFS_FUSE_T_REQUIRED").as_deref() == Ok("1") {
            panic!("FUSE-T is required (SPFS_FUSE_T_REQUIRED=1) but go-nfsv4 is missing");
        }
        eprintln!("skipping: FUSE-T is not installed (/usr/local/bin/go-nfsv4)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mountpoint = tmp.path().join("spfs-test");
    let session = Session::mount(
        fixed_vfs(&tmp.path().join("layer")),
        &config(mountpoint.clone(), Transport::Nfs),
    )
    .unwrap_or_else(|e: MountError| panic!("{e}"));
    assert_eq!(
        std::fs::read(mountpoint.join("bin/tool")).unwrap(),
        b"tool bytes"
    );
    assert!(std::fs::metadata(mountpoint.join("missing")).is_err());
    let names: Vec<_> = std::fs::read_dir(&mountpoint)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["bin"]);
    session.unmount().unwrap();
    let mounted = std::process::Command::new("mount").output().unwrap();
    let canonical = mountpoint.canonicalize().unwrap();
    assert!(
        !String::from_utf8_lossy(&mounted.stdout).contains(&*canonical.to_string_lossy()),
        "still mounted after unmount"
    );
}
