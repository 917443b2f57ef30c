//! `spfs-fuse doctor` end to end, through the real binary, on the probe's fake hosts
//! (`probe/tests/hosts/<name>/`: a `root/` passed as `--sysroot` and a `bin/` that is the whole
//! `PATH`). The probe's own tests snapshot the report; these check what the binary adds: the
//! flags, the exit status, the JSON shape, the service check and `--mount-test`.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod support;
use spfs_testkit::require_fuse;

fn host_dir(host: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../probe/tests/hosts")
        .join(host);
    assert!(dir.is_dir(), "no fake host {}", dir.display());
    dir
}

/// `spfs-fuse doctor ARGS` on a fake host, with no service on a scratch socket.
struct Doctor {
    command: Command,
    _scratch: tempfile::TempDir,
    socket: PathBuf,
}

impl Doctor {
    fn on(host: &str) -> Doctor {
        let scratch = tempfile::tempdir().unwrap();
        let socket = scratch.path().join("spfs-fuse.sock");
        let dir = host_dir(host);
        let mut command = Command::new(env!("CARGO_BIN_EXE_spfs-fuse"));
        command
            .arg("doctor")
            .arg("--sysroot")
            .arg(dir.join("root"))
            .env("PATH", dir.join("bin"))
            .env("SPFS_FUSE_SOCKET", &socket)
            .env_remove("SPFS_FUSE_SYSROOT");
        Doctor {
            command,
            _scratch: scratch,
            socket,
        }
    }

    fn args(mut self, args: &[&str]) -> Doctor {
        self.command.args(args);
        self
    }

    fn run(&mut self) -> Output {
        self.command.output().unwrap()
    }

    fn json(&mut self) -> (i32, Value) {
        let output = self.command.arg("--json").output().unwrap();
        let json = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
            panic!(
                "doctor --json printed no JSON ({err}):\n{}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        (output.status.code().unwrap(), json)
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn check<'v>(json: &'v Value, id: &str) -> &'v Value {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {json:#}"))
}

/// Each fake host: the exit status, the backend and the candidates.
#[test]
fn exit_status_backend_and_candidates_on_every_fake_host() {
    let cases: &[(&str, &[&str], i32, Value, Value)] = &[
        (
            "macos26-arm64-macfuse-loaded",
            &[],
            0,
            "kext".into(),
            ["kext"].into(),
        ),
        (
            "macos15-macfuse-not-loaded",
            &[],
            2,
            "kext".into(),
            ["kext"].into(),
        ),
        (
            "macos13-intel-fuse-t-only",
            &[],
            0,
            "fuse-t".into(),
            ["fuse-t"].into(),
        ),
        (
            "macos13-intel-fuse-t-only",
            &["--backend", "kext"],
            1,
            Value::Null,
            Value::Array(vec![]),
        ),
        (
            "macos26-both-installed",
            &[],
            0,
            "kext".into(),
            ["kext", "fuse-t"].into(),
        ),
        (
            "macos26-both-installed",
            &["--backend", "fuse-t"],
            0,
            "fuse-t".into(),
            ["fuse-t"].into(),
        ),
        (
            "macos15-neither-installed",
            &[],
            1,
            Value::Null,
            Value::Array(vec![]),
        ),
        (
            "macos15-fuse-t-server-missing",
            &[],
            1,
            Value::Null,
            Value::Array(vec![]),
        ),
        (
            "macos26-spfs-only-in-synthetic-conf",
            &[],
            2,
            "kext".into(),
            ["kext"].into(),
        ),
        (
            "macos15-fuse-t-stale-volumes",
            &[],
            2,
            "fuse-t".into(),
            ["fuse-t"].into(),
        ),
        ("linux-dev-fuse", &[], 0, "kext".into(), ["kext"].into()),
        (
            "linux-dev-fuse",
            &["--backend", "fuse-t"],
            1,
            Value::Null,
            Value::Array(vec![]),
        ),
        (
            "linux-no-dev-fuse",
            &[],
            1,
            Value::Null,
            Value::Array(vec![]),
        ),
        (
            "linux-no-fusermount",
            &[],
            1,
            Value::Null,
            Value::Array(vec![]),
        ),
    ];
    for (host, args, exit, backend, candidates) in cases {
        let what = format!("{host} {args:?}");
        let (code, json) = Doctor::on(host).args(args).json();
        assert_eq!(code, *exit, "{what}: exit status\n{json:#}");
        assert_eq!(&json["backend"], backend, "{what}: backend");
        assert_eq!(&json["candidates"], candidates, "{what}: candidates");
        assert_eq!(json["ready"], *exit != 1, "{what}: ready");

        // The text says the same, and its last line names the backend.
        let output = Doctor::on(host).args(args).run();
        assert_eq!(
            output.status.code(),
            Some(*exit),
            "{what}: text exit status"
        );
        let text = stdout(&output);
        let last = text.lines().last().unwrap();
        match backend.as_str() {
            Some(backend) => assert!(
                last.contains(&format!("backend {backend}")),
                "{what}: {last}"
            ),
            None => assert!(last.starts_with("not ready"), "{what}: {last}"),
        }
    }
}

#[test]
fn json_has_the_documented_shape() {
    let (_, json) = Doctor::on("macos26-both-installed").json();
    assert_eq!(json["os"], "macos");
    assert_eq!(json["os_version"], "26.1");
    assert_eq!(json["arch"], "arm64");
    assert_eq!(json["backend"], "kext");
    assert_eq!(json["candidates"], serde_json::json!(["kext", "fuse-t"]));
    assert_eq!(json["ready"], true);
    for check in json["checks"].as_array().unwrap() {
        let keys: Vec<&str> = check
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 4, "{check}");
        assert!(
            check["id"].is_string() && check["message"].is_string(),
            "{check}"
        );
        assert!(["ok", "info", "warn", "fail"].contains(&check["status"].as_str().unwrap()));
        assert!(
            check["hint"].is_null() || check["hint"].is_string(),
            "{check}"
        );
    }
    assert_eq!(check(&json, "macfuse.installed")["status"], "ok");
}

#[test]
fn failures_carry_hints_in_text_and_json() {
    let mut doctor = Doctor::on("macos15-fuse-t-server-missing");
    let (_, json) = doctor.json();
    let server = check(&json, "fuse-t.server");
    assert_eq!(server["status"], "fail");
    assert!(
        server["hint"]
            .as_str()
            .unwrap()
            .contains("brew reinstall --cask macos-fuse-t/cask/fuse-t")
    );

    let text = stdout(&Doctor::on("macos15-fuse-t-server-missing").run());
    let line = text
        .lines()
        .position(|l| l.contains("fuse-t.server"))
        .unwrap();
    let next = text.lines().nth(line + 1).unwrap();
    assert!(
        next.trim_start().starts_with("hint: repair FUSE-T"),
        "{text}"
    );
}

#[test]
fn the_sysroot_can_come_from_the_environment() {
    let dir = host_dir("macos13-intel-fuse-t-only");
    let output = Command::new(env!("CARGO_BIN_EXE_spfs-fuse"))
        .args([
            "doctor",
            "--json",
            "--socket",
            "/nonexistent/spfs-fuse.sock",
        ])
        .env("SPFS_FUSE_SYSROOT", dir.join("root"))
        .env("PATH", dir.join("bin"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["backend"], "fuse-t");
    assert_eq!(json["os_version"], "13.6.1");
}

#[test]
fn no_service_is_news_not_a_warning() {
    let (code, json) = Doctor::on("linux-dev-fuse").json();
    assert_eq!(code, 0);
    let service = check(&json, "service");
    assert_eq!(service["status"], "info");
    assert!(
        service["message"]
            .as_str()
            .unwrap()
            .contains("no service is running")
    );
}

#[test]
fn a_listening_service_is_reported() {
    let mut doctor = Doctor::on("linux-dev-fuse");
    let _listener = UnixListener::bind(&doctor.socket).unwrap();
    let (code, json) = doctor.json();
    assert_eq!(code, 0);
    assert_eq!(check(&json, "service")["status"], "ok");
}

#[test]
fn a_dead_socket_warns() {
    let mut doctor = Doctor::on("linux-dev-fuse");
    // Binding leaves the socket file behind when the listener is dropped: nobody answers.
    drop(UnixListener::bind(&doctor.socket).unwrap());
    let (code, json) = doctor.json();
    assert_eq!(code, 2);
    let service = check(&json, "service");
    assert_eq!(service["status"], "warn");
    assert!(service["hint"].is_string());
}

#[test]
fn mount_test_reports_before_the_verdict() {
    // With no usable backend there is nothing to mount with.
    let (code, json) = Doctor::on("linux-no-dev-fuse")
        .args(&["--mount-test"])
        .json();
    assert_eq!(check(&json, "mount.test")["status"], "info");
    assert_eq!(code, 1);

    // A mount that fails is a failed check with a hint, and the host is not ready. FUSE-T's
    // transport does not exist on Linux, so this fake Mac's mount test fails for real.
    if !cfg!(target_os = "linux") {
        return;
    }
    let (code, json) = Doctor::on("macos13-intel-fuse-t-only")
        .args(&["--mount-test"])
        .json();
    let mount_test = check(&json, "mount.test");
    assert_eq!(mount_test["status"], "fail", "{mount_test}");
    assert!(
        mount_test["message"]
            .as_str()
            .unwrap()
            .contains("mounting with fuse-t failed"),
        "{mount_test}"
    );
    assert!(mount_test["hint"].is_string(), "{mount_test}");
    assert_eq!(code, 1);
}

/// The mount test mounts for real (whatever the sysroot says), lists the scratch filesystem
/// and leaves no mount behind.
#[test]
fn mount_test_mounts_lists_and_unmounts() {
    if !require_fuse() {
        return;
    }
    let (code, json) = Doctor::on("linux-dev-fuse").args(&["--mount-test"]).json();
    let checks = json["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids[ids.len() - 2..], ["mount.test", "backend"], "{ids:?}");
    let mount_test = check(&json, "mount.test");
    assert_eq!(mount_test["status"], "ok", "{mount_test}");
    assert_eq!(code, 0, "{json}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("spfs-fuse-mount-test-"),
        "the scratch mount was left behind:\n{mounts}"
    );
}

#[test]
fn an_unknown_backend_is_refused() {
    let output = Doctor::on("linux-dev-fuse")
        .args(&["--backend", "macfuse"])
        .run();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expected auto, kext or fuse-t"), "{stderr}");
}

/// On the real host only the contract is checked, never the verdict.
#[test]
fn the_real_host_gets_a_verdict() {
    let scratch = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_spfs-fuse"))
        .args(["doctor", "--json"])
        .env("SPFS_FUSE_SOCKET", scratch.path().join("none.sock"))
        .env_remove("SPFS_FUSE_SYSROOT")
        .output()
        .unwrap();
    let code = output.status.code().unwrap();
    assert!([0, 1, 2].contains(&code), "exit status {code}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ready"], code != 1);
    assert_eq!(json["os"], std::env::consts::OS);
}

/// A real service is asked for its backend.
#[test]
fn a_running_service_reports_its_backend() {
    if !require_fuse() {
        return;
    }
    let env = support::Env::new();
    let _service = env.service();
    let output = Command::new(env!("CARGO_BIN_EXE_spfs-fuse"))
        .args(["doctor", "--json"])
        .env("SPFS_FUSE_SOCKET", env.socket())
        .env_remove("SPFS_FUSE_SYSROOT")
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let service = check(&json, "service");
    assert_eq!(service["status"], "ok", "{service}");
    assert!(
        service["message"]
            .as_str()
            .unwrap()
            .ends_with("(backend kext)"),
        "{service}"
    );
}

/// Doctor once checked `/Volumes` while the service on Linux put its volumes elsewhere: on the
/// real host, doctor and `sweep` must name the volumes directory the service uses.
#[test]
fn doctor_and_sweep_look_at_the_same_volumes_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_spfs-fuse"))
            .args(args)
            .env("XDG_RUNTIME_DIR", scratch.path())
            .env("SPFS_FUSE_SOCKET", scratch.path().join("none.sock"))
            .env_remove("SPFS_FUSE_SYSROOT")
            .output()
            .unwrap()
    };
    let doctor = run(&["doctor", "--json"]);
    let json: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let dir = json["facts"]["volumes"]["dir"].as_str().unwrap().to_owned();
    let sweep = run(&["sweep", "--dry-run"]);
    let said = format!(
        "{}{}",
        stdout(&sweep),
        String::from_utf8_lossy(&sweep.stderr)
    );
    assert!(said.contains(&dir), "sweep did not name {dir}: {said}");
}

/// Issue 14, defects 4 and 5: doctor checks the mount point and the volumes directory for the
/// user who runs it (the per-user service's user), and for root when run as root (the system
/// service); the default volumes directory follows that user as the service's does. The
/// probe's fake hosts check each verdict with their owners; this checks the binary asks the
/// kernel for the user it runs as. As root, it runs doctor as `nobody` too.
#[test]
fn doctor_checks_for_the_user_who_runs_it() {
    use std::os::unix::process::CommandExt;

    let as_user = |uid: Option<u32>| {
        let mut doctor = Doctor::on("macos13-intel-fuse-t-for-a-user");
        doctor.command.env("HOME", "/Users/alice");
        if let Some(uid) = uid {
            doctor.command.uid(uid).gid(uid);
        }
        doctor.json()
    };
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    let (_, json) = as_user(None);
    assert_eq!(json["facts"]["service_user"]["uid"], me);
    if me != 0 {
        assert_eq!(
            json["facts"]["volumes"]["dir"],
            "/Users/alice/.spfs-fuse/volumes"
        );
        return;
    }
    assert_eq!(json["facts"]["volumes"]["dir"], "/Volumes");
    assert_eq!(check(&json, "volumes.dir")["status"], "ok");

    // `nobody` gets a volumes directory in its home, which in this checkout is root's: it
    // cannot be created there, and doctor says so with the hint.
    const NOBODY: u32 = 65534;
    let (code, json) = as_user(Some(NOBODY));
    assert_eq!(json["facts"]["service_user"]["uid"], NOBODY);
    assert_eq!(
        json["facts"]["volumes"]["dir"],
        "/Users/alice/.spfs-fuse/volumes"
    );
    let volumes = check(&json, "volumes.dir");
    assert_eq!(volumes["status"], "fail", "{volumes}");
    assert!(
        volumes["hint"].as_str().unwrap().contains("--volumes-dir"),
        "{volumes}"
    );
    assert_eq!(code, 1);
}
