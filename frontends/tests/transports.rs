//! The transports end to end, where the platform has them.
//!
//! - Linux: the device transport reads ahead 8 MiB on its mount (the kernel's 128 KiB default
//!   streams a big file one round trip at a time), and unmounting a busy mount still ends its
//!   workers, whose waits the kernel would not end while someone is inside: their devices
//!   close, so the one still inside gets `ENOTCONN`, not a server that lingers with it.
//! - Linux: with the kernel's switch on, FUSE over io_uring answers a device mount's requests
//!   (and a session told not to use it reads its device), and a busy mount still ends either
//!   way. These tests set the switch and put it back, one at a time.
//! - Linux: the NFS transport (FUSE-T) is refused, and nothing is created for it.
//! - macOS with FUSE-T (`/usr/local/bin/go-nfsv4`): a view mounted over FUSE-T reads back,
//!   and unmounting ends the server and the workers. Skips without FUSE-T, unless
//!   `SPFS_FUSE_T_REQUIRED=1` (the macOS workflow sets it after installing FUSE-T).

use std::path::PathBuf;
use std::sync::Arc;

use spfs_frontends::{MountError, Session, SessionConfig, Transport};
use spfs_router::{ResolvedSpec, Routing, Vfs, View};
use spfs_testkit::root_attr;

/// A per-runtime style session of one layer holding `bin/tool`.
fn fixed_vfs(layer: &std::path::Path) -> Arc<Vfs> {
    std::fs::create_dir_all(layer.join("bin")).unwrap();
    std::fs::write(layer.join("bin/tool"), b"tool bytes").unwrap();
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
        io_uring: true,
        nfs_server: None,
        other_users: false,
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
    // Both ways of serving: with the kernel's switch off the session falls back to the
    // workers' reads alone; on, io_uring queues serve beside them.
    for switch in ["N", "Y"] {
        let tmp = tempfile::tempdir().unwrap();
        let Some((_switch, session, mountpoint)) = mount_switched(tmp.path(), switch, true) else {
            return;
        };
        let io_uring = switch == "Y";
        assert_eq!(session.io_uring_answers().is_some(), io_uring);
        // Opened, never read: its first read has to reach a server. Holding it keeps the
        // mount busy, so the kernel does not end the workers' waits itself.
        let mut held = std::fs::File::open(mountpoint.join("bin/tool")).unwrap();
        session.unmount().unwrap();
        assert!(
            !spfs_frontends::in_mount_table(&mountpoint),
            "io_uring {io_uring}: a busy mount stayed in the mount table"
        );
        let mut bytes = Vec::new();
        let err = held
            .read_to_end(&mut bytes)
            .expect_err("a read after unmount was served: the workers outlived the session");
        // ENOTCONN once the device closes; over io_uring the read may instead meet a queue
        // whose ring is being torn down (ECANCELED) or an aborted connection (ECONNABORTED).
        assert!(
            spfs_frontends::is_stale_error(&err),
            "io_uring {io_uring}: {err}"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn fuse_over_io_uring_serves_a_device_mount_where_the_kernel_offers_it() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((_switch, session, mountpoint)) = mount_switched(tmp.path(), "Y", true) else {
        return;
    };
    let before = session
        .io_uring_answers()
        .expect("the queues did not start");
    // Lookups, attributes, a listing and a read, every kind of request a view answers.
    for _ in 0..50 {
        assert_eq!(
            std::fs::read(mountpoint.join("bin/tool")).unwrap(),
            b"tool bytes"
        );
        assert!(std::fs::symlink_metadata(mountpoint.join("bin/none")).is_err());
        let names: Vec<_> = std::fs::read_dir(mountpoint.join("bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["tool"]);
    }
    let answered = session.io_uring_answers().unwrap() - before;
    // Each round asks at least for the root entry (never cached, DESIGN.md §4 rule 3).
    assert!(
        answered >= 50,
        "only {answered} requests came over io_uring"
    );
    let queue_threads = uring_queue_policies();
    assert!(!queue_threads.is_empty(), "no io_uring queue thread found");
    for (name, policy) in queue_threads {
        // Their wake-ups must not preempt the caller of a background request.
        assert_eq!(policy, libc::SCHED_BATCH, "{name} is not SCHED_BATCH");
    }
    session.unmount().unwrap();
}

/// The name and scheduling policy of each io_uring queue thread of this process.
#[cfg(target_os = "linux")]
fn uring_queue_policies() -> Vec<(String, i32)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
            continue; // the thread ended meanwhile
        };
        let name = name.trim_end().to_string();
        if !name.starts_with("spfs-uring-") {
            continue;
        }
        let tid: libc::pid_t = task.file_name().unwrap().to_str().unwrap().parse().unwrap();
        // SAFETY: sched_getscheduler takes a thread id and returns its policy or -1.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        found.push((name, policy));
    }
    found
}

#[cfg(target_os = "linux")]
#[test]
fn a_session_told_not_to_use_io_uring_reads_its_device() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((_switch, session, mountpoint)) = mount_switched(tmp.path(), "Y", false) else {
        return;
    };
    assert_eq!(
        std::fs::read(mountpoint.join("bin/tool")).unwrap(),
        b"tool bytes"
    );
    assert_eq!(session.io_uring_answers(), None);
    session.unmount().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn dropping_a_session_leaves_no_mount_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((session, mountpoint)) = mount_device(tmp.path(), true) else {
        return;
    };
    assert!(spfs_frontends::in_mount_table(&mountpoint));
    drop(session);
    assert!(!spfs_frontends::in_mount_table(&mountpoint));
}

/// The kernel's FUSE over io_uring switch.
#[cfg(target_os = "linux")]
const SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";

/// Sets the kernel's FUSE over io_uring switch to `value` until the guard drops, one test at
/// a time; `None` (after saying why) where it cannot be set. A kernel without the switch has
/// it off: "N" needs nothing set there.
#[cfg(target_os = "linux")]
fn uring_switch(value: &'static str) -> Option<UringSwitch> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let lock = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if value == "N" && !std::path::Path::new(SWITCH).exists() {
        return Some(UringSwitch {
            before: None,
            _lock: lock,
        });
    }
    let set = std::fs::read_to_string(SWITCH).and_then(|before| {
        std::fs::write(SWITCH, value)?;
        Ok(before)
    });
    match set {
        Ok(before) => Some(UringSwitch {
            before: Some(before),
            _lock: lock,
        }),
        Err(err) => {
            spfs_testkit::skip(&format!(
                "FUSE over io_uring needs {SWITCH} set (Linux 6.14+, as root): {err}"
            ));
            None
        }
    }
}

/// Puts the switch back as it was (if there is one).
#[cfg(target_os = "linux")]
struct UringSwitch {
    before: Option<String>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

#[cfg(target_os = "linux")]
impl Drop for UringSwitch {
    fn drop(&mut self) {
        if let Some(before) = &self.before {
            let _ = std::fs::write(SWITCH, before.trim());
        }
    }
}

/// A device session of [`fixed_vfs`] mounted at `tmp/mnt`, with or without io_uring, and its
/// canonical mount point (the one the mount table shows); `None` (after saying why) where FUSE
/// cannot mount.
#[cfg(target_os = "linux")]
fn mount_device(tmp: &std::path::Path, io_uring: bool) -> Option<(Session, PathBuf)> {
    if !spfs_testkit::require_fuse() {
        return None;
    }
    let mountpoint = tmp.join("mnt");
    let session = Session::mount(
        fixed_vfs(&tmp.join("layer")),
        &SessionConfig {
            io_uring,
            ..config(mountpoint.clone(), Transport::Device)
        },
    )
    .unwrap_or_else(|e: MountError| panic!("{e}"));
    Some((session, mountpoint.canonicalize().unwrap()))
}

/// [`mount_device`] with the kernel's io_uring switch set to `switch` for as long as the
/// returned guard lives; `None` (after saying why) where either cannot be done.
#[cfg(target_os = "linux")]
fn mount_switched(
    tmp: &std::path::Path,
    switch: &'static str,
    io_uring: bool,
) -> Option<(UringSwitch, Session, PathBuf)> {
    let guard = uring_switch(switch)?;
    let (session, mountpoint) = mount_device(tmp, io_uring)?;
    Some((guard, session, mountpoint))
}

#[cfg(target_os = "linux")]
#[test]
fn a_device_mount_reads_ahead_eight_mib() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let Some((session, mountpoint)) = mount_device(tmp.path(), true) else {
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
