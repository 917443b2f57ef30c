//! macOS has no child subreaper: a process the command daemonizes is adopted by launchd and
//! leaves the runtime (documented in README).

use nix::unistd::Pid;

/// Nothing to do; never a subreaper.
pub fn adopt() -> bool {
    false
}

/// Nothing is ever adopted.
pub fn reap(_child: Option<Pid>) {}
