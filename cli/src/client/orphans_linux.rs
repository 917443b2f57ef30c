//! Linux: `run` is the child subreaper of its command's tree, so a process the command
//! daemonizes (its parent exits, it lives on) is adopted by `run`, the runtime's root, instead
//! of by init, and keeps the runtime's view while the command runs.

use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

/// Makes this process the subreaper of its descendants (`PR_SET_CHILD_SUBREAPER`); whether
/// it now is one.
pub fn adopt() -> bool {
    // SAFETY: prctl with an integer option and argument.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot become a child subreaper");
    }
    rc == 0
}

/// Reaps every adopted process that has exited, leaving `child` (the command, which its own
/// waiter reaps) alone: `waitid(WNOWAIT)` names a zombie without reaping it, and only one
/// that is not `child` is then reaped.
pub fn reap(child: Option<Pid>) {
    loop {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        let pid = match waitid(Id::All, flags) {
            Ok(status) => status.pid(),
            Err(_) => None,
        };
        match pid {
            Some(pid) if Some(pid) != child => {
                if let Ok(WaitStatus::StillAlive) | Err(_) =
                    waitpid(pid, Some(WaitPidFlag::WNOHANG))
                {
                    return;
                }
            }
            _ => return,
        }
    }
}
