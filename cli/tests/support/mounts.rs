//! Helpers of the tests on real mounts: shells that stay inside a runtime, and layer files.
//! The service they mount with is [`super::Service`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

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

/// The mount points under `dir`, from this process's mount table.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut mounts: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(dir))
        .collect();
    mounts.sort();
    mounts
}

/// The entries of `dir`, sorted by name.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// What an unrelated process (a child of this test, in no runtime) reads at `path`.
pub fn cat(path: &Path) -> String {
    let out = Command::new("cat").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "cat {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
