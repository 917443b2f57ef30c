//! Helpers of the tests on real mounts: a service that can be killed and restarted on the same
//! mount point or volumes directory (and never leaves a mount behind), shells that stay inside
//! a runtime, and layer files.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::BIN;

/// A service on its own mount point (or volumes directory) and socket, shut down (or killed)
/// when dropped, leaving no mount behind.
pub struct Service {
    dir: tempfile::TempDir,
    child: Option<Child>,
    layout: &'static str,
}

impl Service {
    /// A service of the shared layout on `<dir>/mnt`.
    pub fn start() -> Service {
        Service::with_layout("shared")
    }

    /// A service of the per-runtime layout with its volumes in `<dir>/volumes`.
    pub fn per_runtime() -> Service {
        Service::with_layout("per-runtime")
    }

    fn with_layout(layout: &'static str) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let mut service = Service {
            dir,
            child: None,
            layout,
        };
        service.spawn();
        service
    }

    /// Starts (or restarts) the service process and waits until it answers; its log starts
    /// afresh.
    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("service.log")).unwrap();
        let child = Command::new(BIN)
            .args(["service", "--threads", "2", "--layout", self.layout])
            .arg("--mountpoint")
            .arg(self.mountpoint())
            .arg("--volumes-dir")
            .arg(self.volumes_dir())
            .arg("--socket")
            .arg(self.socket())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.cli(&["status"]).status.success() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("service exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("service did not answer within 20 s: {}", self.log());
    }

    pub fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    pub fn volumes_dir(&self) -> PathBuf {
        self.dir.path().join("volumes")
    }

    /// The pid of the service process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("spfs.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("service.log")).unwrap_or_default()
    }

    /// Runs a client command against this service (`--socket` goes right after the command,
    /// before any `--`).
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg(args[0])
            .arg("--socket")
            .arg(self.socket())
            .args(&args[1..])
            .output()
            .unwrap()
    }

    pub fn mount(&self, root: u32, spec: &str) -> String {
        let out = self.cli(&["mount", "--root-process", &root.to_string(), spec]);
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn unmount(&self, root: u32) {
        let out = self.cli(&["unmount", "--root-process", &root.to_string()]);
        assert!(
            out.status.success(),
            "unmount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.cli(&["shutdown"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Never leave a mount behind, even after a failed test.
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

/// A shell that runs one line of script per line sent to it and answers with one line.
pub struct Shell {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Shell {
    /// A shell `depth` levels of `sh -c` below the process whose pid is the shell's.
    pub fn nested(depth: usize) -> Shell {
        let mut script = String::from("while read -r line; do eval \"$line\"; done");
        for _ in 1..depth {
            // `; exit $?` keeps each level a real parent: no shell may exec its last command.
            script = format!("sh -c '{}'; exit $?", script.replace('\'', "'\\''"));
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Shell {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `line` and returns its one-line answer.
    pub fn ask(&mut self, line: &str) -> String {
        // Errors come back as the answer (never a silent hang), and `echo` ends every answer.
        writeln!(
            self.stdin,
            "{{ {line} ; }} 2>&1 | tr '\\n' ' ' | sed 's/ $//'; echo"
        )
        .unwrap();
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer.trim_end().to_string()
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
