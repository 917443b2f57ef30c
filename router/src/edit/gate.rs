//! The commit gate: every change to an editable view holds it shared, a commit holds it
//! alone, so a change racing a commit lands in the commit or after it, never nowhere.
//!
//! Uncontended, entering is one atomic add and one load (no lock, no shared write besides
//! the counter), since every WRITE request passes it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// The gate of one editable view.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Changes inside the gate.
    inside: AtomicUsize,
    /// Whether a commit closed it (or is closing it).
    closed: AtomicBool,
    /// Taken to close or open the gate and to wait on `moved`.
    lock: Mutex<()>,
    /// Signalled when the gate opens, and when the last change leaves a closed gate.
    moved: Condvar,
}

/// A change inside the gate; leaving on drop.
#[must_use]
pub(crate) struct Pass<'a>(&'a Gate);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// The gate held closed by a commit; opened on drop.
#[must_use]
pub(crate) struct Closed<'a>(&'a Gate);

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        let _lock = self.0.locked();
        self.0.closed.store(false, Ordering::SeqCst);
        self.0.moved.notify_all();
    }
}

impl Gate {
    fn locked(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters for a change, waiting while a commit holds the gate closed.
    pub(crate) fn enter(&self) -> Pass<'_> {
        loop {
            // SeqCst on both sides: either this sees `closed`, or the closer sees `inside`.
            self.inside.fetch_add(1, Ordering::SeqCst);
            if !self.closed.load(Ordering::SeqCst) {
                return Pass(self);
            }
            self.leave();
            let mut lock = self.locked();
            while self.closed.load(Ordering::SeqCst) {
                lock = self.moved.wait(lock).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Enters without a guard: the caller leaves with [`Gate::leave`] (a pass that must
    /// outlive the borrow of the view, such as a writable file handed to a frontend).
    pub(crate) fn enter_unguarded(&self) {
        std::mem::forget(self.enter());
    }

    /// Leaves after a change.
    pub(crate) fn leave(&self) {
        if self.inside.fetch_sub(1, Ordering::SeqCst) == 1 && self.closed.load(Ordering::SeqCst) {
            let _lock = self.locked();
            self.moved.notify_all();
        }
    }

    /// Closes the gate: waits for another commit to finish, then for every change inside
    /// to leave. Changes arriving meanwhile wait until the returned guard is dropped.
    pub(crate) fn close(&self) -> Closed<'_> {
        let mut lock = self.locked();
        while self.closed.load(Ordering::SeqCst) {
            lock = self.moved.wait(lock).unwrap_or_else(|e| e.into_inner());
        }
        self.closed.store(true, Ordering::SeqCst);
        while self.inside.load(Ordering::SeqCst) != 0 {
            lock = self.moved.wait(lock).unwrap_or_else(|e| e.into_inner());
        }
        Closed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_commit_waits_for_changes_inside_and_changes_wait_for_the_commit() {
        let gate = Arc::new(Gate::default());
        let pass = gate.enter();
        let (tx, rx) = std::sync::mpsc::channel();
        let closer = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let closed = gate.close();
                tx.send("closed").unwrap();
                std::thread::sleep(Duration::from_millis(50));
                tx.send("opening").unwrap();
                drop(closed);
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        drop(pass);
        assert_eq!(rx.recv().unwrap(), "closed");
        let _again = gate.enter();
        // The change got in only after the commit opened the gate.
        assert_eq!(rx.try_recv().unwrap(), "opening");
        closer.join().unwrap();
    }

    #[test]
    fn an_uncontended_pass_is_cheap() {
        let gate = Gate::default();
        let start = std::time::Instant::now();
        for _ in 0..1_000_000 {
            drop(gate.enter());
        }
        let per = start.elapsed() / 1_000_000;
        eprintln!("one uncontended pass: {per:?}");
        assert!(per < Duration::from_micros(1), "{per:?}");
    }
}
