//! macOS: a kqueue with one `EVFILT_PROC`/`NOTE_EXIT` filter per watched process, waited on by
//! one thread; an `EVFILT_USER` event wakes it to stop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::{ExitCallback, Pid};

/// The ident of the one user event, which asks the thread to stop.
const STOP_EVENT: usize = 1;

/// Calls back once for each watched process that exits, from a thread of its own.
pub struct ExitWatcher {
    queue: Arc<OwnedFd>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ExitWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitWatcher").finish_non_exhaustive()
    }
}

fn event(ident: usize, filter: i16, flags: u16, fflags: u32) -> libc::kevent {
    libc::kevent {
        ident,
        filter,
        flags,
        fflags,
        data: 0,
        udata: std::ptr::null_mut(),
    }
}

/// Applies one change to the kqueue.
fn change(queue: &OwnedFd, change: &libc::kevent) -> io::Result<()> {
    // SAFETY: one valid change in, no events out.
    let done = unsafe {
        libc::kevent(
            queue.as_raw_fd(),
            change,
            1,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl ExitWatcher {
    /// Starts the watching thread; `on_exit` runs on it with the pid of each process that ends.
    pub fn start(on_exit: ExitCallback) -> io::Result<ExitWatcher> {
        // SAFETY: kqueue takes no arguments and returns a new descriptor or -1.
        let fd = unsafe { libc::kqueue() };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: kqueue returned a new descriptor that nothing else owns.
        let queue = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        change(
            &queue,
            &event(
                STOP_EVENT,
                libc::EVFILT_USER,
                libc::EV_ADD | libc::EV_CLEAR,
                0,
            ),
        )?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let queue = queue.clone();
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("spfs-exit-watch".into())
                .spawn(move || run(&queue, &stopping, &on_exit))?
        };
        Ok(ExitWatcher {
            queue,
            stopping,
            thread: Some(thread),
        })
    }

    /// Watches `pid`. Fails with [`io::ErrorKind::NotFound`] when no such process exists.
    pub fn watch(&self, pid: Pid) -> io::Result<()> {
        let added = change(
            &self.queue,
            &event(
                pid as usize,
                libc::EVFILT_PROC,
                libc::EV_ADD | libc::EV_ONESHOT,
                libc::NOTE_EXIT,
            ),
        );
        added.map_err(|err| match err.raw_os_error() {
            Some(libc::ESRCH) => io::Error::new(
                io::ErrorKind::NotFound,
                format!("process {pid} does not exist"),
            ),
            _ => err,
        })
    }

    /// Stops watching `pid`; no call back comes for an exit after this call unless `pid` is
    /// watched again.
    pub fn unwatch(&self, pid: Pid) {
        // A process that already exited has no filter left to delete: nothing to do.
        let _ = change(
            &self.queue,
            &event(pid as usize, libc::EVFILT_PROC, libc::EV_DELETE, 0),
        );
    }
}

impl Drop for ExitWatcher {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        let _ = change(
            &self.queue,
            &event(STOP_EVENT, libc::EVFILT_USER, 0, libc::NOTE_TRIGGER),
        );
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watching thread: waits for exits (and the stop event) and calls back.
fn run(queue: &OwnedFd, stopping: &AtomicBool, on_exit: &ExitCallback) {
    let mut events = [event(0, 0, 0, 0); 16];
    loop {
        // SAFETY: no changes in; `events` has room for the count passed.
        let ready = unsafe {
            libc::kevent(
                queue.as_raw_fd(),
                std::ptr::null(),
                0,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                std::ptr::null(),
            )
        };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                tracing::error!(error = %err, "waiting for root processes failed; exits are no longer watched");
                return;
            }
            continue;
        }
        for ready_event in &events[..ready as usize] {
            if ready_event.filter == libc::EVFILT_USER {
                if stopping.load(Ordering::Acquire) {
                    return;
                }
            } else if ready_event.filter == libc::EVFILT_PROC
                && ready_event.fflags & libc::NOTE_EXIT != 0
            {
                let pid = ready_event.ident as Pid;
                tracing::debug!(pid, "watched process exited");
                on_exit(pid);
            }
        }
    }
}
