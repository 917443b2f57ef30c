//! Test support shared by the binary's integration tests: a service on a test's own socket and
//! mount point, client commands against it, and processes to root runtimes at.
// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub mod mounts;

/// Asserts that `err` is what a FUSE mount whose server died answers, as the service itself
/// judges it (`spfs_frontends::is_stale_error`: `ENOTCONN`, and on Linux `ECONNABORTED` or
/// `ECANCELED` where the server served through FUSE over io_uring).
#[track_caller]
pub fn assert_dead_mount(err: &std::io::Error, what: &str) {
    assert!(spfs_frontends::is_stale_error(err), "{what}: {err}");
}

pub const BIN: &str = env!("CARGO_BIN_EXE_spfs-fuse");
pub const READY: Duration = Duration::from_secs(15);

/// A test's directory: a socket path, a mount point and a layer directory.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("mnt")).expect("mnt");
        std::fs::create_dir(dir.path().join("layer")).expect("layer");
        std::fs::write(dir.path().join("layer/hello"), "hi\n").expect("hello");
        Env { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn socket(&self) -> PathBuf {
        self.path().join("run/spfs-fuse.sock")
    }
    pub fn mountpoint(&self) -> PathBuf {
        self.path().join("mnt")
    }
    pub fn layer(&self) -> String {
        self.path()
            .join("layer")
            .to_str()
            .expect("utf-8")
            .to_owned()
    }

    /// A client command on this test's socket.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("SPFS_FUSE_SOCKET", self.socket())
            .env_remove("RUST_LOG")
            .current_dir(self.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run spfs-fuse")
    }

    /// Starts a service in the foreground (as a child) and waits until it answers.
    pub fn service(&self) -> Service {
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
pub struct Service {
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    pub fn wait_ready(&mut self, socket: &Path) {
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
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn wait_exit(&mut self) -> ExitStatus {
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

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", stderr(out));
    stdout(out)
}

pub fn status_json(env: &Env) -> serde_json::Value {
    serde_json::from_str(&ok(&env.run(&["status", "--json"]))).expect("status --json parses")
}

/// Polls `cond` for up to [`READY`].
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + READY;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A second user for the tests of who may do what: `nobody`.
pub const OTHER_UID: u32 = 65534;

/// A sleeping process owned by `uid`, killed on drop: a root process for a runtime.
pub struct Sleeper(pub Child);

impl Sleeper {
    pub fn as_uid(uid: u32) -> Sleeper {
        let child = Command::new("sleep")
            .arg("60")
            .uid(uid)
            .gid(uid)
            .spawn()
            .expect("sleep");
        Sleeper(child)
    }
    pub fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn root_pids(status: &serde_json::Value) -> Vec<String> {
    let mut pids: Vec<String> = status["runtimes"]
        .as_array()
        .expect("runtimes")
        .iter()
        .map(|r| r["root_pid"].to_string())
        .collect();
    pids.sort();
    pids
}
