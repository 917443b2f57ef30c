//! `spfs-fuse run ENV_SPEC -- CMD [ARGS...]`: register a runtime rooted at this process, run
//! CMD as its child with `SPFS_ROOT` set, remove the runtime when CMD ends, exit with CMD's
//! status. On Linux, processes CMD daemonizes are adopted here and so stay in the runtime
//! while CMD runs.

use std::ffi::OsString;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitCode, ExitStatus};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use super::connect::{self, Target};
use super::{RunArgs, block_on, current_dir, orphans, register, unregister};

/// Runs `spfs-fuse run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cwd = current_dir()?;
    let (spec, repos) = args.spec.resolve(&cwd)?;
    let edit = args.edit.request(&cwd)?;
    let target = Target::from_args(&args.endpoint)?;
    let root_pid = std::process::id();
    block_on(async {
        let mut client = connect::connect_or_start(&target, &args.auto).await?;
        let mount_point = register(&mut client, root_pid, spec, &repos, edit).await?;
        drop(client);

        let outcome = run_child(&args.command, &mount_point).await;

        // Always remove the runtime, whatever became of the command.
        if let Err(err) = unregister(&target, root_pid).await {
            eprintln!("spfs-fuse: warning: cannot remove the runtime of pid {root_pid}: {err:#}");
        }
        Ok(match outcome {
            Ok(status) => exit_code(status),
            Err(err) => {
                let program = args.command[0].to_string_lossy();
                eprintln!("spfs-fuse: cannot run {program}: {err}");
                // What shells answer: 127 for a missing command, 126 for one that cannot run.
                ExitCode::from(if err.kind() == io::ErrorKind::NotFound {
                    127
                } else {
                    126
                })
            }
        })
    })
}

/// Runs `command` with `SPFS_ROOT=mount_point`, forwarding SIGINT, SIGTERM, SIGHUP and SIGQUIT,
/// and waits for it.
///
/// A terminal sends SIGINT, SIGQUIT and SIGHUP to the whole foreground process group, the
/// child included; forwarding them then would deliver them twice (a second Ctrl-C is "force
/// quit" to many programs). So those are forwarded only when this process is not in the
/// terminal's foreground group, i.e. when someone sent them to it with kill(2). SIGTERM never
/// comes from a terminal and is always forwarded.
async fn run_child(command: &[OsString], mount_point: &std::path::Path) -> io::Result<ExitStatus> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?;
    // Handlers go in before the child exists, so no signal can end this process (and leave
    // the runtime registered) in between.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigquit = signal(SignalKind::quit())?;
    // Before the child exists, so every process of its tree that outlives its parent is
    // adopted here, in the runtime, and reaped when it ends (`orphans`).
    let adopting = orphans::adopt();
    let mut sigchld = signal(SignalKind::child())?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("SPFS_ROOT", mount_point)
        .spawn()?;
    let pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw);
    loop {
        let (signal, from_terminal) = tokio::select! {
            status = child.wait() => return status,
            _ = sigint.recv() => (Signal::SIGINT, true),
            _ = sigquit.recv() => (Signal::SIGQUIT, true),
            _ = sighup.recv() => (Signal::SIGHUP, true),
            _ = sigterm.recv() => (Signal::SIGTERM, false),
            _ = sigchld.recv(), if adopting => {
                orphans::reap(pid);
                continue;
            }
        };
        if from_terminal && in_terminal_foreground() {
            continue;
        }
        if let Some(pid) = pid {
            // ESRCH: the child just exited; wait() reports it next.
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }
}

/// Whether this process's group is the foreground group of the terminal on stdin.
fn in_terminal_foreground() -> bool {
    nix::unistd::tcgetpgrp(io::stdin()).is_ok_and(|group| group == nix::unistd::getpgrp())
}

/// CMD's exit code, or 128 + the signal that killed it, as shells report it.
fn exit_code(status: ExitStatus) -> ExitCode {
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}
