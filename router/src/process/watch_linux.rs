//! Linux: one pidfd per watched process, all polled by one thread that a pipe wakes when the
//! set changes. The thread owns every pidfd, so none is closed while it is being polled.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;

use super::{ExitCallback, Pid};

enum Command {
    Watch(Pid, OwnedFd),
    Unwatch(Pid),
    Stop,
}

/// Calls back once for each watched process that exits, from a thread of its own.
pub struct ExitWatcher {
    commands: Mutex<mpsc::Sender<Command>>,
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ExitWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitWatcher").finish_non_exhaustive()
    }
}

impl ExitWatcher {
    /// Starts the watching thread; `on_exit` runs on it with the pid of each process that ends.
    pub fn start(on_exit: ExitCallback) -> io::Result<ExitWatcher> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("spfs-exit-watch".into())
            .spawn(move || run(&read, &rx, &on_exit))?;
        Ok(ExitWatcher {
            commands: Mutex::new(tx),
            wake: write,
            thread: Some(thread),
        })
    }

    /// Watches `pid`. Fails with [`io::ErrorKind::NotFound`] when no such process exists.
    pub fn watch(&self, pid: Pid) -> io::Result<()> {
        let pid_arg = libc::pid_t::try_from(pid).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pid {pid} is out of range"),
            )
        })?;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid_arg, 0) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ESRCH) => io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("process {pid} does not exist"),
                ),
                _ => err,
            });
        }
        // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        self.send(Command::Watch(pid, fd));
        Ok(())
    }

    /// Stops watching `pid`; no call back comes for an exit after this call unless `pid` is
    /// watched again.
    pub fn unwatch(&self, pid: Pid) {
        self.send(Command::Unwatch(pid));
    }

    fn send(&self, command: Command) {
        let sent = self
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(command);
        if sent.is_ok() {
            // SAFETY: writing one byte from a valid buffer to our own pipe. A full pipe
            // (EAGAIN) already holds a wake-up, so the result does not matter.
            unsafe { libc::write(self.wake.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        }
    }
}

impl Drop for ExitWatcher {
    fn drop(&mut self) {
        self.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watching thread: applies commands, then polls the wake pipe and every pidfd.
fn run(wake: &OwnedFd, commands: &mpsc::Receiver<Command>, on_exit: &ExitCallback) {
    let mut watched: HashMap<Pid, OwnedFd> = HashMap::new();
    while apply(commands, &mut watched) {
        let mut pids = Vec::with_capacity(watched.len());
        let mut polled = Vec::with_capacity(watched.len() + 1);
        polled.push(libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for (pid, fd) in &watched {
            pids.push(*pid);
            polled.push(libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `polled` is a valid array of pollfd of the length passed.
        let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, -1) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %err, "polling root processes failed; exits are no longer watched");
                return;
            }
            continue;
        }
        if polled[0].revents != 0 {
            drain(wake);
        }
        // An unwatch sent before the process exited may have arrived in the same poll as the
        // exit: apply it first, so that exit is not reported. A pid watched anew meanwhile has
        // a new pidfd, which is asked again.
        if !apply(commands, &mut watched) {
            return;
        }
        for (pid, entry) in pids.iter().zip(&polled[1..]) {
            if entry.revents != 0 && watched.get(pid).is_some_and(has_exited) {
                watched.remove(pid);
                tracing::debug!(pid, "watched process exited");
                on_exit(*pid);
            }
        }
    }
}

/// Applies every queued command to `watched`; false once the watcher is to stop.
fn apply(commands: &mpsc::Receiver<Command>, watched: &mut HashMap<Pid, OwnedFd>) -> bool {
    loop {
        match commands.try_recv() {
            Ok(Command::Watch(pid, fd)) => {
                watched.insert(pid, fd);
            }
            Ok(Command::Unwatch(pid)) => {
                watched.remove(&pid);
            }
            Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return false,
            Err(mpsc::TryRecvError::Empty) => return true,
        }
    }
}

/// Whether the process behind `pidfd` has exited, without waiting.
fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut entry = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut entry, 1, 0) > 0 }
}

/// Empties the wake pipe, which is non-blocking.
fn drain(wake: &OwnedFd) {
    let mut buf = [0u8; 64];
    // SAFETY: reading into a valid buffer of the length passed, from our own pipe.
    while unsafe { libc::read(wake.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}
