//! The exit watcher against real processes: an exit is reported promptly, once, and only for
//! processes still watched.
#![cfg(any(target_os = "linux", target_os = "macos"))]

use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

use spfs_router::process::{ExitWatcher, Pid};

/// docs/SEMANTICS.md allows a runtime one second to end after its root.
const PROMPTLY: Duration = Duration::from_secs(1);

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep")
}

fn watcher() -> (ExitWatcher, mpsc::Receiver<Pid>) {
    let (tx, rx) = mpsc::channel();
    let watcher = ExitWatcher::start(Box::new(move |pid| {
        let _ = tx.send(pid);
    }))
    .expect("start watcher");
    (watcher, rx)
}

#[test]
fn an_exit_is_reported_within_a_second_and_only_once() {
    let (watcher, exits) = watcher();
    let mut first = sleeper();
    let mut second = sleeper();
    watcher.watch(first.id()).unwrap();
    watcher.watch(second.id()).unwrap();

    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(exits.recv_timeout(PROMPTLY), Ok(second.id()));

    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(exits.recv_timeout(PROMPTLY), Ok(first.id()));
    assert!(exits.recv_timeout(Duration::from_millis(200)).is_err());
}

#[test]
fn an_exit_is_reported_before_the_parent_reaps_it() {
    let (watcher, exits) = watcher();
    let mut child = sleeper();
    watcher.watch(child.id()).unwrap();
    child.kill().unwrap();
    assert_eq!(exits.recv_timeout(PROMPTLY), Ok(child.id()));
    child.wait().unwrap();
}

#[test]
fn an_unwatched_process_is_not_reported() {
    let (watcher, exits) = watcher();
    // The race to lose: the watcher's thread takes the watch alone (the pause lets it), then
    // sees the unwatch and the exit in one poll. Many rounds give it many chances to show.
    for _ in 0..50 {
        let mut child = sleeper();
        watcher.watch(child.id()).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        watcher.unwatch(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
    }
    assert_eq!(
        exits.recv_timeout(Duration::from_millis(500)),
        Err(mpsc::RecvTimeoutError::Timeout)
    );
}

#[test]
fn a_dead_process_cannot_be_watched() {
    let (watcher, _exits) = watcher();
    let mut child = sleeper();
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let err = watcher.watch(pid).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&pid.to_string()), "{err}");
}

#[test]
fn dropping_the_watcher_stops_its_thread() {
    let (watcher, exits) = watcher();
    let mut child = sleeper();
    watcher.watch(child.id()).unwrap();
    drop(watcher);
    // The callback (and with it the sender) is gone once the thread has stopped.
    assert_eq!(
        exits.recv_timeout(PROMPTLY),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
