//! Test support shared by the binary's integration tests: a service on a test's own socket and
//! mount point (or volumes directory), client commands against it, and processes to root
//! runtimes at.
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

/// Two tests of one scenario `$scenario(&Service)`: `$shared` on a service of the shared
/// layout, `$per_runtime` on one of the per-runtime layout; each skips where FUSE is unusable.
#[allow(unused_macros)]
macro_rules! in_both_layouts {
    ($scenario:ident: $shared:ident, $per_runtime:ident) => {
        #[test]
        fn $shared() {
            if spfs_testkit::require_fuse() {
                $scenario(&support::Service::start());
            }
        }

        #[test]
        fn $per_runtime() {
            if spfs_testkit::require_fuse() {
                $scenario(&support::Service::per_runtime());
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use in_both_layouts;

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

    /// Starts a service in the foreground (as a child) on this test's socket and mount point,
    /// and waits until it answers.
    pub fn service(&self) -> Service {
        Service::spawned(ServicePlace {
            dir: self.path().to_owned(),
            socket: self.socket(),
            mountpoint: self.mountpoint(),
            layout: None,
            args: Vec::new(),
            owned: None,
        })
    }
}

/// Where a [`Service`] runs, and the directory it may own.
struct ServicePlace {
    dir: PathBuf,
    socket: PathBuf,
    mountpoint: PathBuf,
    /// `--layout` with `--volumes-dir <dir>/volumes`, or the service's defaults.
    layout: Option<&'static str>,
    /// More arguments of `spfs-fuse service`.
    args: Vec<&'static str>,
    /// A directory of the service's own, removed with it.
    owned: Option<tempfile::TempDir>,
}

/// A service started by a test, in the foreground (a child), logging to `<dir>/service.stderr`.
/// Dropped, it is stopped (SIGTERM, then SIGKILL); one with a directory of its own also
/// lazily unmounts whatever it left there, so a failed test leaves no mount behind.
pub struct Service {
    place: ServicePlace,
    child: Option<Child>,
}

impl Service {
    /// A service of the shared layout in a directory of its own, on `<dir>/mnt`.
    pub fn start() -> Service {
        Service::owning(Some("shared"))
    }

    /// A service of the per-runtime layout in a directory of its own, with its volumes in
    /// `<dir>/volumes`.
    pub fn per_runtime() -> Service {
        Service::owning(Some("per-runtime"))
    }

    /// A service of the single layout in a directory of its own, on `<dir>/mnt`.
    pub fn single() -> Service {
        Service::owning(Some("single"))
    }

    /// A service of `layout` in a directory of its own, started with `args` too.
    pub fn with_args(layout: &'static str, args: &[&'static str]) -> Service {
        Service::owning_with(Some(layout), args.to_vec())
    }

    fn owning(layout: Option<&'static str>) -> Service {
        Service::owning_with(layout, Vec::new())
    }

    fn owning_with(layout: Option<&'static str>, args: Vec<&'static str>) -> Service {
        let dir = tempfile::tempdir().expect("tempdir");
        Service::spawned(ServicePlace {
            dir: dir.path().to_owned(),
            socket: dir.path().join("spfs.sock"),
            mountpoint: dir.path().join("mnt"),
            layout,
            args,
            owned: Some(dir),
        })
    }

    fn spawned(place: ServicePlace) -> Service {
        let mut service = Service { place, child: None };
        service.spawn();
        service
    }

    /// Starts (or restarts) the service process and waits until it answers; its log starts
    /// afresh.
    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.log_path()).expect("log");
        let mut command = Command::new(BIN);
        command
            .args(["service", "--threads", "2", "--mountpoint"])
            .arg(&self.place.mountpoint)
            .arg("--socket")
            .arg(&self.place.socket);
        if let Some(layout) = self.place.layout {
            command
                .args(["--layout", layout, "--volumes-dir"])
                .arg(self.volumes_dir());
        }
        command.args(&self.place.args);
        let child = command
            .env_remove("RUST_LOG")
            .current_dir(&self.place.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start service");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY;
        while std::os::unix::net::UnixStream::connect(&self.place.socket).is_err() {
            if let Ok(Some(status)) = self.child_mut().try_wait() {
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

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the service is running")
    }

    fn log_path(&self) -> PathBuf {
        self.place.dir.join("service.stderr")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The pid of the service process.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("the service is running").id() as i32
    }

    pub fn mountpoint(&self) -> PathBuf {
        self.place.mountpoint.clone()
    }

    pub fn volumes_dir(&self) -> PathBuf {
        self.place.dir.join("volumes")
    }

    pub fn socket(&self) -> PathBuf {
        self.place.socket.clone()
    }

    /// The service's state directory (its socket's): its state file and, under `scratch/`,
    /// the default scratches of editable runtimes.
    pub fn state_dir(&self) -> PathBuf {
        spfs_probe::defaults::state_dir(&self.place.socket)
    }

    /// Waits for the service to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + READY;
        loop {
            if let Some(status) = self.child_mut().try_wait().expect("wait") {
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

    /// Kills the service (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the service is running");
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// Runs a client command against this service (`--socket` goes right after the command,
    /// before any `--`).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg(args[0])
            .arg("--socket")
            .arg(&self.place.socket)
            .args(&args[1..])
            .output()
            .expect("run spfs-fuse")
    }

    /// Registers a runtime for `root` and returns its mount point.
    pub fn mount(&self, root: u32, spec: &str) -> String {
        let out = self.cli(&["mount", "--root-process", &root.to_string(), spec]);
        ok(&out).trim().to_string()
    }

    /// `status --json`, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&ok(&self.cli(&["status", "--json"]))).expect("status --json parses")
    }

    /// Removes the runtime of `root`.
    pub fn unmount(&self, root: u32) {
        ok(&self.cli(&["unmount", "--root-process", &root.to_string()]));
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take()
            && let Ok(None) = child.try_wait()
        {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Never leave a mount behind, even after a failed test; only in a directory of our
        // own, where no other service of the test may be serving.
        if self.place.owned.is_none() {
            return;
        }
        let mut mounts = vec![self.mountpoint()];
        if let Ok(volumes) = std::fs::read_dir(self.volumes_dir()) {
            mounts.extend(volumes.flatten().map(|entry| entry.path()));
        }
        for mount in mounts {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(mount)
                .stderr(Stdio::null())
                .status();
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
    /// A sleeping process of this test's own user.
    pub fn new() -> Sleeper {
        Sleeper(Command::new("sleep").arg("60").spawn().expect("sleep"))
    }
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
    /// Kills the process and reaps it.
    pub fn end(&mut self) {
        self.0.kill().expect("kill");
        self.0.wait().expect("wait");
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
