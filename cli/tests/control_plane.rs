//! The control plane end to end: the real `spfs-fuse` binary as a service on a temporary socket
//! and mount point, driven by the real client commands. Each test has its own directory, so
//! they run in parallel.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_spfs-fuse");
const READY: Duration = Duration::from_secs(15);

/// A test's directory: a socket path, a mount point and a layer directory.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("mnt")).expect("mnt");
        std::fs::create_dir(dir.path().join("layer")).expect("layer");
        std::fs::write(dir.path().join("layer/hello"), "hi\n").expect("hello");
        Env { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn socket(&self) -> PathBuf {
        self.path().join("run/spfs-fuse.sock")
    }
    fn mountpoint(&self) -> PathBuf {
        self.path().join("mnt")
    }
    fn layer(&self) -> String {
        self.path()
            .join("layer")
            .to_str()
            .expect("utf-8")
            .to_owned()
    }

    /// A client command on this test's socket.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("SPFS_FUSE_SOCKET", self.socket())
            .env_remove("RUST_LOG")
            .current_dir(self.path());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run spfs-fuse")
    }

    /// Starts a service in the foreground (as a child) and waits until it answers.
    fn service(&self) -> Service {
        let log = self.path().join("service.stderr");
        let child = self
            .cmd(&["service", "--threads", "2"])
            .arg("--mountpoint")
            .arg(self.mountpoint())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start service");
        let mut service = Service { child, log };
        service.wait_ready(&self.socket());
        service
    }
}

/// A service started by a test; SIGTERMed on drop if still running.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn wait_ready(&mut self, socket: &Path) {
        let deadline = Instant::now() + READY;
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "service exited ({status}) before answering:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "service not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "service did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.pid(), libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
#[track_caller]
fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", stderr(out));
    stdout(out)
}

fn status_json(env: &Env) -> serde_json::Value {
    serde_json::from_str(&ok(&env.run(&["status", "--json"]))).expect("status --json parses")
}

/// Polls `cond` for up to [`READY`].
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + READY;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

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

#[test]
fn sigterm_stops_the_service_with_0_and_removes_the_socket() {
    let env = Env::new();
    let mut service = env.service();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(service.pid(), libc::SIGTERM) };
    assert!(service.wait_exit().success(), "{}", service.log());
    assert!(!env.socket().exists());
}

#[test]
fn mount_starts_a_service_when_none_answers() {
    let env = Env::new();
    assert!(!env.socket().exists());
    let out = env
        .cmd(&["mount", "--mountpoint", env.mountpoint().to_str().unwrap()])
        .arg(env.layer())
        .output()
        .unwrap();
    assert_eq!(ok(&out).trim(), env.mountpoint().to_str().unwrap());
    assert!(
        stderr(&out).contains("started a service"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        status_json(&env)["runtimes"][0]["root_pid"],
        std::process::id()
    );
    ok(&env.run(&["unmount"]));
    ok(&env.run(&["shutdown"]));
    assert!(!env.socket().exists());
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
    assert!(err.contains("fuse-t backend is not implemented"), "{err}");
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

/// A second user for the tests of who may do what: `nobody`.
const OTHER_UID: u32 = 65534;

/// A sleeping process owned by `uid`, killed on drop: a root process for a runtime.
struct Sleeper(Child);

impl Sleeper {
    fn as_uid(uid: u32) -> Sleeper {
        let child = Command::new("sleep")
            .arg("60")
            .uid(uid)
            .gid(uid)
            .spawn()
            .expect("sleep");
        Sleeper(child)
    }
    fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn root_pids(status: &serde_json::Value) -> Vec<String> {
    let mut pids: Vec<String> = status["runtimes"]
        .as_array()
        .expect("runtimes")
        .iter()
        .map(|r| r["root_pid"].to_string())
        .collect();
    pids.sort();
    pids
}

#[test]
fn a_second_user_cannot_register_remove_or_list_the_first_users_runtimes() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert_ne!(
            std::env::var("SPFS_FUSE_REQUIRE_MOUNT").as_deref(),
            Ok("1"),
            "this test must run as root"
        );
        eprintln!("skipping: switching users needs root");
        return;
    }
    let env = Env::new();
    let _service = env.service();
    // Open the socket to every user, as an administrator sharing one service would: from here
    // on only the peer credentials stand between the two users.
    for (path, mode) in [
        (env.path().to_owned(), 0o755),
        (env.path().join("run"), 0o755),
        (env.socket(), 0o666),
        (env.path().join("layer"), 0o755),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let as_other = |args: &[&str]| {
        env.cmd(args)
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .output()
            .expect("run spfs-fuse as the second user")
    };
    let layer = env.layer();
    let mine = Sleeper::as_uid(0);
    let also_mine = Sleeper::as_uid(0);
    let theirs = Sleeper::as_uid(OTHER_UID);

    ok(&env.run(&["mount", "--root-process", &mine.pid(), &layer]));

    let out = as_other(&["mount", "--root-process", &also_mine.pid(), &layer]);
    assert!(!out.status.success(), "registered another user's process");
    let err = stderr(&out);
    assert!(
        err.contains("uid 65534") && err.contains("uid 0") && err.contains(&also_mine.pid()),
        "{err}"
    );

    ok(&as_other(&[
        "mount",
        "--root-process",
        &theirs.pid(),
        &layer,
    ]));

    let seen_by_other: serde_json::Value =
        serde_json::from_str(&ok(&as_other(&["status", "--json"]))).unwrap();
    assert_eq!(root_pids(&seen_by_other), [theirs.pid()], "{seen_by_other}");
    let mut both = vec![mine.pid(), theirs.pid()];
    both.sort();
    assert_eq!(root_pids(&status_json(&env)), both);

    let out = as_other(&["unmount", "--root-process", &mine.pid()]);
    assert!(!out.status.success(), "removed another user's runtime");
    let err = stderr(&out);
    assert!(err.contains("uid 65534") && err.contains("uid 0"), "{err}");
    assert_eq!(root_pids(&status_json(&env)), both);

    ok(&as_other(&["unmount", "--root-process", &theirs.pid()]));
    ok(&env.run(&["unmount", "--root-process", &mine.pid()]));
    assert!(root_pids(&status_json(&env)).is_empty());
}

#[test]
fn a_second_user_cannot_reach_a_private_socket() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: switching users needs root");
        return;
    }
    let env = Env::new();
    let _service = env.service();
    std::fs::set_permissions(env.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = env
        .cmd(&["status"])
        .uid(OTHER_UID)
        .gid(OTHER_UID)
        .output()
        .expect("run spfs-fuse as the second user");
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("ermission denied"), "{err}");
}

/// Runtimes that stay registered through the stress test, each walked by [`WALKERS`] processes.
const STRESS_RUNTIMES: usize = 4;
const WALKERS: usize = 8;
/// Files per directory and directories per stress layer.
const STRESS_FILES: usize = 10;
const STRESS_DIRS: usize = 4;

/// The text of `rel` in stress view `view`: every file names its view, so a read answered from
/// the wrong view is caught.
fn stress_content(view: &str, rel: &str) -> String {
    format!("{view}:{rel}\n")
}

fn stress_paths() -> Vec<String> {
    let mut paths = vec!["marker".to_owned()];
    for d in 0..STRESS_DIRS {
        for f in 0..STRESS_FILES {
            paths.push(format!("d{d}/f{f}"));
        }
    }
    paths
}

/// One walker of the stress test, when this binary is run again with `SPFS_STRESS_WALKER` set
/// (to `<view> <mount point> <seconds>`): stats, lists and reads its view until the time is
/// up, then prints `STRESS ok=N wrong=N errors=N` and the first problem. Otherwise it does nothing.
#[test]
fn stress_walker() {
    let Ok(job) = std::env::var("SPFS_STRESS_WALKER") else {
        return;
    };
    let mut job = job.split(' ');
    let (view, mount, seconds) = (
        job.next().unwrap().to_owned(),
        PathBuf::from(job.next().unwrap()),
        job.next().unwrap().parse::<u64>().unwrap(),
    );
    let paths = stress_paths();
    let mut listing = vec![format!("only-{view}"), "marker".to_owned()];
    listing.extend((0..STRESS_DIRS).map(|d| format!("d{d}")));
    listing.sort();
    let (mut ok, mut wrong, mut errors, mut first) = (0u64, 0u64, 0u64, String::new());
    let note = |problem: String, first: &mut String| {
        if first.is_empty() {
            *first = problem;
        }
    };
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        for rel in &paths {
            let path = mount.join(rel);
            match std::fs::metadata(&path).and_then(|_| std::fs::read_to_string(&path)) {
                Ok(text) if text == stress_content(&view, rel) => ok += 1,
                Ok(text) => {
                    wrong += 1;
                    note(format!("{rel}: read {text:?}"), &mut first);
                }
                Err(err) => {
                    errors += 1;
                    note(format!("{rel}: {err}"), &mut first);
                }
            }
        }
        match std::fs::read_dir(&mount).and_then(|entries| {
            entries
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect::<Result<Vec<_>, _>>()
        }) {
            Ok(mut names) => {
                names.sort();
                if names == listing {
                    ok += 1;
                } else {
                    wrong += 1;
                    note(format!("listed {names:?}"), &mut first);
                }
            }
            Err(err) => {
                errors += 1;
                note(format!("listing: {err}"), &mut first);
            }
        }
    }
    println!("\nSTRESS ok={ok} wrong={wrong} errors={errors} first={first}");
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// 32 processes in 4 runtimes walk, stat, list and read their views for 20 s
/// (`SPFS_STRESS_SECONDS` for a longer run) while other runtimes are registered and removed
/// every 100 ms: no answer comes from the wrong view, no read fails, nothing deadlocks, and the
/// service's memory comes back near its starting size.
#[test]
fn stress_walkers_see_only_their_views_while_runtimes_churn() {
    let seconds: u64 = std::env::var("SPFS_STRESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let env = Env::new();
    let mut layers = Vec::new();
    for v in 0..STRESS_RUNTIMES {
        let view = format!("v{v}");
        let layer = env.path().join(format!("stress-{view}"));
        for rel in stress_paths() {
            let path = layer.join(&rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, stress_content(&view, &rel)).unwrap();
        }
        std::fs::create_dir_all(layer.join(format!("only-{view}"))).unwrap();
        layers.push((view, layer.to_str().unwrap().to_owned()));
    }
    let service = env.service();
    let service_pid = service.pid();

    // Each root: a shell that waits for a line, then starts its walkers and waits for them.
    let exe = std::env::current_exe().unwrap();
    let mut roots = Vec::new();
    for (view, layer) in &layers {
        let script = format!(
            "read go; for i in $(seq {WALKERS}); do \"$0\" --exact stress_walker --nocapture --test-threads=1 & done; wait"
        );
        let mut root = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&exe)
            .env(
                "SPFS_STRESS_WALKER",
                format!("{view} {} {seconds}", env.mountpoint().display()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        ok(&env.run(&["mount", "--root-process", &root.id().to_string(), layer]));
        roots.push((view.clone(), root.stdin.take().unwrap(), root));
    }
    let rss_before = rss_kib(service_pid);
    for (_, stdin, _) in &mut roots {
        use std::io::Write;
        writeln!(stdin, "go").unwrap();
    }

    // Churn: a runtime registered and the previous one removed every 100 ms.
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut previous: Option<Sleeper> = None;
    let mut churned = 0;
    while Instant::now() < until {
        let next = Sleeper::as_uid(0);
        let layer = &layers[churned % layers.len()].1;
        ok(&env.run(&["mount", "--root-process", &next.pid(), layer]));
        if let Some(old) = previous.replace(next) {
            ok(&env.run(&["unmount", "--root-process", &old.pid()]));
        }
        churned += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(old) = previous.take() {
        ok(&env.run(&["unmount", "--root-process", &old.pid()]));
    }

    let mut totals = (0u64, 0u64, 0u64);
    for (view, stdin, root) in roots {
        drop(stdin);
        let out = root.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let reports: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("STRESS "))
            .collect();
        assert_eq!(
            reports.len(),
            WALKERS,
            "view {view}: walkers reported {text}"
        );
        for report in reports {
            let field = |name: &str| -> u64 {
                report
                    .split(' ')
                    .find_map(|f| f.strip_prefix(name))
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            let (good, wrong, errors) = (field("ok="), field("wrong="), field("errors="));
            assert_eq!((wrong, errors), (0, 0), "view {view}: {report}");
            assert!(good > 0, "view {view}: {report}");
            totals.0 += good;
            totals.1 += wrong;
            totals.2 += errors;
        }
    }
    // The churned runtimes are gone; give the service a moment to free what they held.
    std::thread::sleep(Duration::from_millis(500));
    let rss_after = rss_kib(service_pid);
    eprintln!(
        "stress: {seconds} s, {} walkers, {churned} runtimes churned, {} good answers, service RSS {rss_before} KiB before, {rss_after} KiB after",
        STRESS_RUNTIMES * WALKERS,
        totals.0
    );
    assert!(
        churned as u64 >= seconds * 3,
        "only {churned} runtimes churned"
    );
    assert!(
        rss_after <= rss_before + rss_before / 2 + 8 * 1024,
        "service memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    assert_eq!(
        status_json(&env)["runtimes"].as_array().unwrap().len(),
        STRESS_RUNTIMES,
        "only the walked runtimes stay (their roots exited, but the service does not watch them yet)"
    );
}
