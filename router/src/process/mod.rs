//! Process tables: what the router needs to know of a process to route it. One implementation
//! per platform, swapped at compile time, plus an in-memory table for tests.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;

#[cfg(target_os = "linux")]
#[path = "watch_linux.rs"]
mod watch;
#[cfg(target_os = "macos")]
#[path = "watch_macos.rs"]
mod watch;

mod fake;

pub use fake::FakeProcessTable;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub use imp::SystemProcessTable;
#[cfg(any(target_os = "linux", target_os = "macos"))]
pub use watch::ExitWatcher;

/// A process id (on Linux, FUSE reports thread ids; see [`ProcessTable::process_of`]).
pub type Pid = u32;

/// What an [`ExitWatcher`] calls, on its own thread, with the pid of each watched process that
/// exits.
pub type ExitCallback = Box<dyn Fn(Pid) + Send + 'static>;

/// What the router needs of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The parent's pid (0 for the top of the tree).
    pub ppid: Pid,
    /// When the process started, in a platform unit: only compared for equality, so that a
    /// reused pid is told apart from the process that had it before.
    pub start_time: u64,
    /// The process's real user id.
    pub uid: u32,
}

/// Reads processes from the host (or a fake). Implementations must be cheap to call from many
/// threads at once.
pub trait ProcessTable: Send + Sync + std::fmt::Debug {
    /// The process a task (thread) id belongs to. On macOS the two are the same.
    fn process_of(&self, task: Pid) -> Option<Pid>;

    /// The parent, start time and owner of a process, or `None` when it does not exist.
    fn info(&self, pid: Pid) -> Option<ProcessInfo>;

    /// The executable name of a process (what `ps` shows), or `None` when it does not exist.
    /// Read only for the few requests `status` reports by caller, never to route.
    fn name(&self, pid: Pid) -> Option<String>;
}
