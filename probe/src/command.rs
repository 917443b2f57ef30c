//! Finding commands on a `PATH` and running them with a deadline.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Finds `name` on `path` (a `PATH`-style list), the way a shell would.
pub(crate) fn find(name: &str, path: &OsStr) -> Option<PathBuf> {
    // `which` needs a working directory only for relative PATH entries.
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    which::which_in(name, Some(path), cwd).ok()
}

/// Runs `name args...` found on `path` and returns its trimmed standard output when it exits
/// with status 0 within `timeout`. A command that is missing, fails or hangs gives `None`; a
/// hung command is killed.
pub(crate) fn output(name: &str, args: &[&str], path: &OsStr, timeout: Duration) -> Option<String> {
    let program = find(name, path)?;
    run(&program, args, timeout)
}

/// How often a start refused with `ETXTBSY` is tried again, 10 ms apart.
const BUSY_RETRIES: u32 = 20;

fn run(program: &Path, args: &[&str], timeout: Duration) -> Option<String> {
    let mut attempt = 0;
    let mut child = loop {
        let started = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        match started {
            Ok(child) => break child,
            // "Text file busy": the program was just written, and another thread's child,
            // forked before that write's descriptor closed, still holds it until it execs.
            // It lets go within moments (seen in tests that write stand-in commands).
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && attempt < BUSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => {
                tracing::debug!(?program, %err, "could not start probe command");
                return None;
            }
        }
    };
    // Read on a thread so a chatty command cannot block on a full pipe while we wait.
    let mut stdout = child.stdout.take()?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                tracing::warn!(
                    ?program,
                    ?args,
                    ?timeout,
                    "probe command timed out; killing it"
                );
                let _ = child.kill();
                let _ = child.wait();
                // The reader finishes once the pipe closes, unless a grandchild holds it
                // open: do not join it then.
                return None;
            }
            Err(err) => {
                tracing::debug!(?program, %err, "could not wait for probe command");
                return None;
            }
        }
    };
    let text = reader.join().ok()?.ok()?;
    if !status.success() {
        tracing::debug!(?program, ?args, %status, "probe command failed");
        return None;
    }
    Some(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn output_is_trimmed_and_failures_are_none() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "hello", "echo \"  hi $1 \"");
        script(dir.path(), "nope", "exit 3");
        let path = dir.path().as_os_str();
        // Generous: this test is about output, not deadlines, and CI machines are busy.
        let second = Duration::from_secs(10);
        assert_eq!(
            output("hello", &["there"], path, second).as_deref(),
            Some("hi there")
        );
        assert_eq!(output("nope", &[], path, second), None);
        assert_eq!(output("missing", &[], path, second), None);
    }

    #[test]
    fn a_hung_command_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "hang", "exec sleep 30");
        let started = Instant::now();
        let out = output(
            "hang",
            &[],
            dir.path().as_os_str(),
            Duration::from_millis(200),
        );
        assert_eq!(out, None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
