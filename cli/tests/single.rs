//! The single layout end to end on Linux `/dev/fuse`: a real service with `--layout single`
//! serves one runtime at a time at its mount point, to any process, with a mount of its own
//! per registration; a second registration is refused naming the runtime that holds the mount
//! point, and succeeds once that runtime has ended.

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod support;
use spfs_testkit::require_fuse;
use support::Service;
use support::mounts::{cat, mounts_under, names, put};
use support::{Sleeper, ok, stderr};

#[test]
fn one_runtime_at_a_time_holds_the_mount_point_and_the_next_waits_for_its_end() {
    if !require_fuse() {
        return;
    }
    let service = Service::single();
    let mnt = service.mountpoint();
    assert_eq!(
        mounts_under(&mnt),
        Vec::<PathBuf>::new(),
        "nothing is mounted until a runtime is registered"
    );
    let layers = tempfile::tempdir().unwrap();
    let (a, b) = (layers.path().join("a"), layers.path().join("b"));
    put(&a, "which", b"layer a\n");
    put(&b, "which", b"layer b\n");
    put(&b, "only-b", b"");

    let mut first = Sleeper::new();
    let second = Sleeper::new();
    assert_eq!(
        PathBuf::from(service.mount(first.0.id(), a.to_str().unwrap())),
        mnt
    );
    assert_eq!(mounts_under(&mnt), std::slice::from_ref(&mnt));
    // This test process is in no runtime: the mount shows its one view to anyone.
    assert_eq!(cat(&mnt.join("which")), "layer a\n");

    let status = service.status_json();
    assert_eq!(status["layout"], "single", "{status}");
    assert_eq!(status["mount_points"], serde_json::json!([mnt]), "{status}");
    let text = ok(&service.cli(&["status"]));
    assert!(text.contains("single"), "{text}");

    let refused = service.cli(&[
        "mount",
        "--root-process",
        &second.0.id().to_string(),
        b.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(
        err.contains("busy:")
            && err.contains(&format!("root process {}", first.0.id()))
            && err.contains(a.to_str().unwrap()),
        "the refusal names the holder: {err}"
    );
    assert_eq!(cat(&mnt.join("which")), "layer a\n", "the holder keeps it");

    first.end();
    let ended = Instant::now();
    while !mounts_under(&mnt).is_empty() {
        assert!(
            ended.elapsed() < Duration::from_secs(5),
            "the mount outlived its runtime: {}",
            service.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    assert_eq!(
        PathBuf::from(service.mount(second.0.id(), b.to_str().unwrap())),
        mnt
    );
    assert_eq!(cat(&mnt.join("which")), "layer b\n");
    assert_eq!(names(&mnt), ["only-b", "which"]);

    service.unmount(second.0.id());
    assert_eq!(
        mounts_under(&mnt),
        Vec::<PathBuf>::new(),
        "nothing is left mounted"
    );
    assert!(mnt.is_dir(), "the mount point itself stays");
}

#[test]
fn run_exports_the_mount_point_as_spfs_root_and_frees_it_after() {
    if !require_fuse() {
        return;
    }
    let service = Service::single();
    let layer = tempfile::tempdir().unwrap();
    put(layer.path(), "bin/tool", b"x");
    for _ in 0..2 {
        let out = service.cli(&[
            "run",
            layer.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "echo \"$SPFS_ROOT\"; ls \"$SPFS_ROOT/bin\"",
        ]);
        assert_eq!(
            ok(&out),
            format!("{}\ntool\n", service.mountpoint().display())
        );
        assert_eq!(mounts_under(&service.mountpoint()), Vec::<PathBuf>::new());
    }
}
