//! The per-runtime layout end to end on Linux `/dev/fuse`: a real service with
//! `--layout per-runtime`, a volume `spfs-<root pid>` per registered runtime that shows that
//! runtime's view to any process, and the sweep of volumes a killed service left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;
use spfs_testkit::require_fuse;
use support::Service;
use support::mounts::{Shell, cat, mounts_under, names, put};
use support::{BIN, assert_dead_mount, ok};

#[test]
fn three_runtimes_get_three_volumes_each_showing_its_own_view_to_anyone() {
    if !require_fuse() {
        return;
    }
    let service = Service::per_runtime();
    let volumes = service.volumes_dir();
    let layers = tempfile::tempdir().unwrap();
    let mut shells = Vec::new();
    let mut mounts = Vec::new();
    for name in ["a", "b", "c"] {
        let layer = layers.path().join(name);
        put(&layer, "which", format!("layer {name}\n").as_bytes());
        put(&layer, &format!("only-{name}"), b"");
        let shell = Shell::nested(1);
        let mount = service.mount(shell.pid(), layer.to_str().unwrap());
        assert_eq!(
            PathBuf::from(&mount),
            volumes.join(format!("spfs-{}", shell.pid()))
        );
        mounts.push(PathBuf::from(mount));
        shells.push(shell);
    }
    let mut expected = mounts.clone();
    expected.sort();
    assert_eq!(
        mounts_under(&volumes),
        expected,
        "three volumes are mounted"
    );

    for (mount, name) in mounts.iter().zip(["a", "b", "c"]) {
        // This test process is in no runtime; each volume shows its view all the same.
        assert_eq!(cat(&mount.join("which")), format!("layer {name}\n"));
        assert_eq!(names(mount), vec![format!("only-{name}"), "which".into()]);
        // So do the other runtimes' processes: a volume routes nobody.
        for shell in &mut shells {
            assert_eq!(
                shell.ask(&format!("cat {}/which", mount.display())),
                format!("layer {name}")
            );
        }
    }

    let status = service.status_json();
    assert_eq!(status["layout"], "per-runtime", "{status}");
    assert_eq!(status["backend"], "kext", "{status}");
    assert_eq!(status["transport"], "device", "{status}");
    let mut listed: Vec<PathBuf> = status["mount_points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PathBuf::from(p.as_str().unwrap()))
        .collect();
    listed.sort();
    assert_eq!(listed, expected, "{status}");
    for runtime in status["runtimes"].as_array().unwrap() {
        let pid = runtime["root_pid"].as_u64().unwrap();
        assert_eq!(
            runtime["mount_point"],
            volumes.join(format!("spfs-{pid}")).to_str().unwrap(),
            "{status}"
        );
    }
    let text = ok(&service.cli(&["status"]));
    assert!(text.contains("per-runtime"), "{text}");

    service.unmount(shells[1].pid());
    let mut left = vec![mounts[0].clone(), mounts[2].clone()];
    left.sort();
    assert_eq!(
        mounts_under(&volumes),
        left,
        "unregistering unmounts the volume"
    );
    assert!(!mounts[1].exists(), "and removes its directory");
    assert_eq!(
        service.status_json()["mount_points"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(cat(&mounts[2].join("which")), "layer c\n");
}

#[test]
fn run_exports_the_volume_as_spfs_root_and_removes_it_after() {
    if !require_fuse() {
        return;
    }
    let service = Service::per_runtime();
    let layer = tempfile::tempdir().unwrap();
    put(layer.path(), "bin/tool", b"x");
    let out = service.cli(&[
        "run",
        layer.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "echo \"$SPFS_ROOT\"; ls \"$SPFS_ROOT/bin\"",
    ]);
    let out = ok(&out);
    let mut lines = out.lines();
    let root = PathBuf::from(lines.next().unwrap());
    assert_eq!(
        root.parent(),
        Some(service.volumes_dir().as_path()),
        "{out}"
    );
    assert!(
        root.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("spfs-"),
        "{out}"
    );
    assert_eq!(lines.next(), Some("tool"), "{out}");
    assert_eq!(mounts_under(&service.volumes_dir()), Vec::<PathBuf>::new());
    assert_eq!(names(&service.volumes_dir()), Vec::<String>::new());
}

#[test]
fn a_failed_volume_mount_rolls_the_registration_back() {
    if !require_fuse() {
        return;
    }
    let service = Service::per_runtime();
    let layer = tempfile::tempdir().unwrap();
    let shell = Shell::nested(1);
    // A file where the volume's directory would go: the mount cannot happen.
    std::fs::write(
        service.volumes_dir().join(format!("spfs-{}", shell.pid())),
        b"",
    )
    .unwrap();
    let out = service.cli(&[
        "mount",
        "--root-process",
        &shell.pid().to_string(),
        layer.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("spfs-{}", shell.pid())), "{err}");
    assert_eq!(
        service.status_json()["runtimes"].as_array().unwrap().len(),
        0,
        "the registration was rolled back"
    );
}

#[test]
fn stopping_the_service_unmounts_and_removes_every_volume() {
    if !require_fuse() {
        return;
    }
    let service = Service::per_runtime();
    let layer = tempfile::tempdir().unwrap();
    let shells = [Shell::nested(1), Shell::nested(1)];
    for shell in &shells {
        service.mount(shell.pid(), layer.path().to_str().unwrap());
    }
    assert_eq!(mounts_under(&service.volumes_dir()).len(), 2);
    ok(&service.cli(&["shutdown"]));
    assert_eq!(mounts_under(&service.volumes_dir()), Vec::<PathBuf>::new());
    assert_eq!(names(&service.volumes_dir()), Vec::<String>::new());
}

/// What a killed per-runtime service leaves in its volumes directory, plus entries the sweep
/// must leave alone.
struct Leftovers {
    /// The stale volume: a dead mount named after a dead pid.
    volume: PathBuf,
    /// Other names, and a volume whose pid (this test's) is alive.
    others: Vec<PathBuf>,
}

impl Leftovers {
    /// Registers one runtime with `service`, kills the service with SIGKILL and then the
    /// runtime's root. The service stays stopped.
    fn of_killed(service: &mut Service) -> Leftovers {
        let layer = tempfile::tempdir().unwrap();
        put(layer.path(), "marker", b"x");
        let shell = Shell::nested(1);
        let volume = PathBuf::from(service.mount(shell.pid(), layer.path().to_str().unwrap()));
        service.kill();
        drop(shell); // kills and reaps the root
        let stale = std::fs::metadata(&volume).unwrap_err();
        assert_dead_mount(&stale, "a stale mount");
        let volumes = service.volumes_dir();
        let others = vec![
            volumes.join("other"),
            volumes.join("spfs-notes"),
            volumes.join(format!("spfs-{}", std::process::id())),
        ];
        for path in &others {
            std::fs::create_dir(path).unwrap();
        }
        Leftovers { volume, others }
    }

    #[track_caller]
    fn assert_swept(&self) {
        let volumes = self.volume.parent().unwrap();
        assert_eq!(mounts_under(volumes), Vec::<PathBuf>::new());
        assert!(
            std::fs::symlink_metadata(&self.volume).is_err(),
            "its directory is gone"
        );
        for other in &self.others {
            assert!(other.is_dir(), "{} is untouched", other.display());
        }
    }
}

fn sweep(volumes: &Path, dry_run: bool) -> String {
    let mut cmd = Command::new(BIN);
    cmd.arg("sweep").arg("--volumes-dir").arg(volumes);
    if dry_run {
        cmd.arg("--dry-run");
    }
    ok(&cmd.output().unwrap())
}

#[test]
fn sweep_clears_a_stale_volume_of_a_killed_service_and_nothing_else() {
    if !require_fuse() {
        return;
    }
    let mut service = Service::per_runtime();
    let volumes = service.volumes_dir();
    let left = Leftovers::of_killed(&mut service);
    let volume = &left.volume;

    let planned = sweep(&volumes, true);
    assert_eq!(
        planned,
        format!(
            "would unmount {v} (pid {p} is gone)\nwould remove {v} (pid {p} is gone)\n",
            v = volume.display(),
            p = volume.file_name().unwrap().to_str().unwrap()["spfs-".len()..].to_owned()
        )
    );
    assert_eq!(
        mounts_under(&volumes),
        vec![volume.clone()],
        "a dry run changes nothing"
    );

    let done = sweep(&volumes, false);
    assert!(
        done.starts_with(&format!("unmounted {}", volume.display())),
        "{done}"
    );
    assert!(
        done.contains(&format!("\nremoved {}", volume.display())),
        "{done}"
    );
    left.assert_swept();
    assert_eq!(
        sweep(&volumes, false),
        format!("no stale volumes in {}\n", volumes.display())
    );
}

#[test]
fn a_service_start_sweeps_the_volumes_dir() {
    if !require_fuse() {
        return;
    }
    let mut service = Service::per_runtime();
    let left = Leftovers::of_killed(&mut service);
    service.spawn();
    left.assert_swept();
    let log = service.log();
    assert!(
        log.contains(&format!("sweep: unmounted {}", left.volume.display())),
        "{log}"
    );
}

/// A runtime that ends with its root process takes its volume with it, within a second.
#[test]
fn a_volume_goes_within_a_second_of_its_root() {
    if !require_fuse() {
        return;
    }
    let service = Service::per_runtime();
    let layer = tempfile::tempdir().unwrap();
    put(layer.path(), "file", b"x");
    let mut root = Command::new("sleep").arg("60").spawn().unwrap();
    let volume = PathBuf::from(service.mount(root.id(), layer.path().to_str().unwrap()));
    assert_eq!(
        mounts_under(&service.volumes_dir()),
        std::slice::from_ref(&volume)
    );
    root.kill().unwrap();
    let exited = std::time::Instant::now();
    root.wait().unwrap();
    while !mounts_under(&service.volumes_dir()).is_empty() || volume.exists() {
        assert!(
            exited.elapsed() < std::time::Duration::from_secs(1),
            "the volume outlived its root by a second: {}",
            service.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        service.status_json()["runtimes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
