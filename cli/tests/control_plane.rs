//! The control plane end to end: the real `spfs-fuse` binary as a service on a temporary socket
//! and mount point, driven by the real client commands. Each test has its own directory, so
//! they run in parallel.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::*;

#[test]
fn mount_prints_the_mount_point_and_status_lists_the_runtime() {
    let env = Env::new();
    let _service = env.service();
    let layer = env.layer();
    let out = env.run(&["mount", &layer]);
    assert_eq!(ok(&out).trim(), env.mountpoint().to_str().unwrap());

    let status = status_json(&env);
    let runtimes = status["runtimes"].as_array().expect("runtimes");
    assert_eq!(runtimes.len(), 1, "{status}");
    // The default root is the command's parent: this test process.
    assert_eq!(runtimes[0]["root_pid"], std::process::id());
    assert_eq!(runtimes[0]["env_spec"], layer.as_str());
    assert_eq!(runtimes[0]["alive"], true);
    assert_eq!(
        status["mount_points"][0],
        env.mountpoint().to_str().unwrap()
    );

    let text = ok(&env.run(&["status"]));
    assert!(text.contains(&std::process::id().to_string()), "{text}");
    assert!(text.contains(&layer), "{text}");
    ok(&env.run(&["unmount"]));
    assert_eq!(status_json(&env)["runtimes"].as_array().unwrap().len(), 0);
}

#[test]
fn a_relative_layer_path_is_made_absolute_by_the_client() {
    let env = Env::new();
    let _service = env.service();
    let mut sleeper = Command::new("sleep").arg("60").spawn().expect("sleep");
    let pid = sleeper.id().to_string();
    ok(&env.run(&["mount", "--root-process", &pid, "./layer"]));
    let status = status_json(&env);
    assert_eq!(status["runtimes"][0]["env_spec"], env.layer().as_str());
    ok(&env.run(&["unmount", "--root-process", &pid]));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn a_duplicate_registration_fails_with_already_exists() {
    let env = Env::new();
    let _service = env.service();
    let layer = env.layer();
    ok(&env.run(&["mount", &layer]));
    let out = env.run(&["mount", &layer]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("already exists"), "{err}");
    assert!(err.contains(&std::process::id().to_string()), "{err}");
    ok(&env.run(&["unmount"]));
}

#[test]
fn unmount_of_an_unknown_root_fails_naming_the_pid() {
    let env = Env::new();
    let _service = env.service();
    let out = env.run(&["unmount", "--root-process", "999999"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("999999"), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn run_exits_with_the_command_code_and_leaves_no_runtime() {
    let env = Env::new();
    let _service = env.service();
    let out = env.run(&["run", &env.layer(), "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(status_json(&env)["runtimes"].as_array().unwrap().len(), 0);

    let out = env.run(&["run", &env.layer(), "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    assert_eq!(status_json(&env)["runtimes"].as_array().unwrap().len(), 0);
}

#[test]
fn run_sets_spfs_root_to_the_mount_point() {
    let env = Env::new();
    let _service = env.service();
    let out = env.run(&["run", &env.layer(), "--", "sh", "-c", "echo \"$SPFS_ROOT\""]);
    assert_eq!(ok(&out).trim(), env.mountpoint().to_str().unwrap());
}

#[test]
fn the_socket_is_private() {
    let env = Env::new();
    let _service = env.service();
    let meta = std::fs::metadata(env.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(env.path().join("run")).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
}

/// A socket named explicitly may sit in a shared directory (`/tmp`, say): its mode is kept.
/// (The service once made such a directory 0700 when `SPFS_FUSE_SOCKET` named the socket.)
#[test]
fn an_explicit_sockets_shared_directory_keeps_its_mode() {
    let env = Env::new();
    let shared = env.path().join("run");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let _service = env.service();
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
    let socket = std::fs::metadata(env.socket()).unwrap();
    assert_eq!(socket.permissions().mode() & 0o777, 0o600);
}

#[test]
fn a_second_service_on_the_same_socket_is_refused() {
    let env = Env::new();
    let first = env.service();
    let other_mnt = env.path().join("mnt2");
    std::fs::create_dir(&other_mnt).unwrap();
    let out = env
        .cmd(&["service", "--mountpoint", other_mnt.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("already serving"), "{err}");
    assert!(err.contains(&first.pid().to_string()), "{err}");
    // The first one still serves.
    status_json(&env);
}

#[test]
fn shutdown_stops_the_service_with_0_and_removes_the_socket() {
    let env = Env::new();
    let mut service = env.service();
    ok(&env.run(&["shutdown"]));
    assert!(service.wait_exit().success(), "{}", service.log());
    assert!(!env.socket().exists());
}

/// Asserts that a log holds lines and no ANSI escape codes (colours are for terminals).
#[track_caller]
fn assert_plain_log(log: &str, what: &str) {
    assert!(log.contains("serving"), "{what} has no log lines:\n{log}");
    assert!(!log.contains("\x1b["), "{what} has escape codes:\n{log:?}");
}

#[test]
fn a_service_logging_to_a_file_writes_no_colour_codes() {
    let env = Env::new();
    let mut service = env.service();
    ok(&env.run(&["shutdown"]));
    assert!(service.wait_exit().success(), "{}", service.log());
    assert_plain_log(&service.log(), "the service's stderr");
}

#[test]
fn sigterm_stops_the_service_with_0_and_removes_the_socket() {
    let env = Env::new();
    let mut service = env.service();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(service.pid(), libc::SIGTERM) };
    assert!(service.wait_exit().success(), "{}", service.log());
    assert!(!env.socket().exists());
}

/// `mount` of the test's layer when no service answers: it starts one on the test's mount
/// point and registers the runtime there (`args` go before the layer).
#[track_caller]
fn mount_starting_a_service(env: &Env, args: &[&str]) {
    let out = env
        .cmd(&["mount", "--mountpoint", env.mountpoint().to_str().unwrap()])
        .args(args)
        .arg(env.layer())
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), env.mountpoint().to_str().unwrap());
    assert!(
        stderr(&out).contains("started a service"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mount_starts_a_service_when_none_answers() {
    let env = Env::new();
    assert!(!env.socket().exists());
    mount_starting_a_service(&env, &[]);
    assert_eq!(
        status_json(&env)["runtimes"][0]["root_pid"],
        std::process::id()
    );
    ok(&env.run(&["unmount"]));
    ok(&env.run(&["shutdown"]));
    assert!(!env.socket().exists());
    let log = std::fs::read_to_string(env.socket().with_extension("log")).unwrap();
    assert_plain_log(&log, "the auto-started service's log");
}

#[test]
fn an_auto_started_service_that_dies_is_reported_with_its_log() {
    let env = Env::new();
    let out = env
        .cmd(&["mount", "--backend", "fuse-t", "--mountpoint"])
        .arg(env.mountpoint())
        .arg(env.layer())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("exited (exit status: 1)"), "{err}");
    // FUSE-T exists only on macOS: the service fails to mount with the probe's hint.
    assert!(
        err.contains("the nfs transport is not available on this platform"),
        "{err}"
    );
    assert!(err.contains("hint: on Linux use `--backend kext`"), "{err}");
    assert!(err.contains("spfs-fuse.log"), "{err}");
}

#[test]
fn a_stale_socket_from_a_killed_service_is_cleaned_and_a_new_service_starts() {
    let env = Env::new();
    let mut service = env.service();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(service.pid(), libc::SIGKILL) };
    service.wait_exit();
    assert!(
        env.socket().exists(),
        "a SIGKILLed service leaves its socket"
    );
    // A real mount may be left behind too; clearing it is the host's job.
    let _next = env.service();
    eventually("the new service to answer", || {
        env.run(&["status", "--json"]).status.success()
    });
    assert_eq!(status_json(&env)["runtimes"].as_array().unwrap().len(), 0);
}

#[test]
fn clients_without_a_service_fail_fast() {
    let env = Env::new();
    let started = Instant::now();
    let out = env.run(&["status"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no spfs-fuse service answers"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// After a SIGKILL the mount is stale and the socket left behind; the next `mount` starts a
/// service that clears both, registers again the runtime whose root (this test) still runs,
/// and serves the new runtime.
#[test]
fn mount_recovers_from_a_service_killed_with_sigkill() {
    let env = Env::new();
    let mut service = env.service();
    ok(&env.run(&["mount", &env.layer()]));
    assert_eq!(
        std::fs::read_to_string(env.mountpoint().join("hello")).unwrap(),
        "hi\n"
    );
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(service.pid(), libc::SIGKILL) };
    service.wait_exit();
    let stale = std::fs::metadata(env.mountpoint().join("hello")).unwrap_err();
    assert_dead_mount(&stale, "a stale mount");

    let root = Sleeper::as_uid(0);
    mount_starting_a_service(&env, &["--root-process", &root.pid()]);
    // This test's own runtime came back with the new service, beside the new one.
    assert_eq!(
        std::fs::read_to_string(env.mountpoint().join("hello")).unwrap(),
        "hi\n"
    );
    let mut expected = vec![std::process::id().to_string(), root.pid()];
    expected.sort();
    assert_eq!(root_pids(&status_json(&env)), expected);
    ok(&env.run(&["shutdown"]));
    eventually("the auto-started service to unmount", || {
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(env.mountpoint().to_str().unwrap())
    });
}

/// A runtime ends within a second of its root process, with no client call.
#[test]
fn a_runtime_ends_within_a_second_of_its_root() {
    let env = Env::new();
    let _service = env.service();
    let mut root = Sleeper::as_uid(0);
    ok(&env.run(&["mount", "--root-process", &root.pid(), &env.layer()]));
    assert_eq!(status_json(&env)["runtimes"].as_array().unwrap().len(), 1);
    root.0.kill().unwrap();
    let exited = Instant::now();
    root.0.wait().unwrap();
    while !status_json(&env)["runtimes"].as_array().unwrap().is_empty() {
        assert!(
            exited.elapsed() < Duration::from_secs(1),
            "the runtime outlived its root by a second"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
