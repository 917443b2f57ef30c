//! A service killed and started again (a crash; an upgrade stops it more gently, and the same
//! state is kept) registers again, from the state file beside its socket, the runtimes whose
//! root processes still run: their processes' next path lookups work with no new `mount` call.
//! A runtime whose root died meanwhile is not restored. A `shutdown` (a person's "unmount and
//! exit") forgets them instead. Real mounts on Linux `/dev/fuse`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod support;
use spfs_testkit::require_fuse;
use support::mounts::{Shell, put};
use support::{Service, Sleeper};

/// The root pids `status` lists.
fn root_pids(service: &Service) -> Vec<u64> {
    service.status_json()["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["root_pid"].as_u64().unwrap())
        .collect()
}

/// A layer holding `which` with `name` in it.
fn layer(dir: &Path, name: &str) -> PathBuf {
    let layer = dir.join(name);
    put(&layer, "which", name.as_bytes());
    layer
}

/// Registers a runtime for a live shell (and, where the layout takes a second one, for a
/// process that dies while the service is down), kills the service, starts it again, and
/// checks that the shell sees its view again at once, that the dead root's runtime stayed
/// gone, and that the restored root is watched like any other.
fn killed_and_started_again(mut service: Service, with_a_dead_root: bool) {
    let layers = tempfile::tempdir().unwrap();
    let mut shell = Shell::nested(1);
    let place =
        PathBuf::from(service.mount(shell.pid(), layer(layers.path(), "alive").to_str().unwrap()));
    let which = place.join("which");
    let cat = format!("cat {}", which.display());
    assert_eq!(shell.ask(&cat), "alive");
    let mut doomed = Sleeper::new();
    if with_a_dead_root {
        service.mount(
            doomed.0.id(),
            layer(layers.path(), "doomed").to_str().unwrap(),
        );
        assert_eq!(root_pids(&service).len(), 2);
    }

    service.kill();
    doomed.end();
    service.spawn();

    // No `mount` call: the restarted service restored the runtime before answering.
    assert_eq!(shell.ask(&cat), "alive", "{}", service.log());
    assert_eq!(root_pids(&service), [u64::from(shell.pid())]);
    let log = service.log();
    assert!(log.contains("restored a runtime of the last run"), "{log}");
    if with_a_dead_root {
        assert!(
            log.contains("not restoring a runtime whose root process is gone"),
            "{log}"
        );
    }

    // Watched again: the runtime ends with its root, well before the periodic sweep.
    drop(shell);
    let ended = Instant::now();
    while !root_pids(&service).is_empty() {
        assert!(
            ended.elapsed() < Duration::from_secs(3),
            "the restored runtime outlived its root: {}",
            service.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_killed_shared_service_started_again_serves_its_live_runtimes_at_once() {
    if !require_fuse() {
        return;
    }
    killed_and_started_again(Service::start(), true);
}

#[test]
fn a_killed_per_runtime_service_started_again_mounts_the_live_runtimes_volumes() {
    if !require_fuse() {
        return;
    }
    killed_and_started_again(Service::per_runtime(), true);
}

#[test]
fn a_killed_single_service_started_again_mounts_its_runtime_at_the_mount_point() {
    if !require_fuse() {
        return;
    }
    killed_and_started_again(Service::single(), false);
}

#[test]
fn a_service_stopped_by_sigterm_restores_its_runtimes_and_one_told_to_shut_down_forgets_them() {
    if !require_fuse() {
        return;
    }
    let layers = tempfile::tempdir().unwrap();
    let spec = layer(layers.path(), "kept");
    let spec = spec.to_str().unwrap();
    let root = Sleeper::new();
    let pid = root.0.id();
    let mut service = Service::start();
    service.mount(pid, spec);

    // launchd stops (and restarts, for an upgrade) with SIGTERM: the runtimes come back.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(service.pid()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(service.wait_exit().success(), "{}", service.log());
    service.spawn();
    assert_eq!(root_pids(&service), [u64::from(pid)], "{}", service.log());

    // `spfs-fuse shutdown` is "unmount and exit": the next service starts with none, and the
    // same root registers again without "already registered".
    support::ok(&service.cli(&["shutdown"]));
    assert!(service.wait_exit().success(), "{}", service.log());
    service.spawn();
    assert_eq!(root_pids(&service), Vec::<u64>::new(), "{}", service.log());
    service.mount(pid, spec);
    assert_eq!(root_pids(&service), [u64::from(pid)]);
}
