//! The transports end to end, where the platform has them.
//!
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
