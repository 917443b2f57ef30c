//! Runtimes end with their root process: an exit watcher reports each root's exit at once, and
//! a periodic sweep catches whatever a report missed (a root that exited between registering
//! and being watched, say). Either way the host removes every runtime whose root is gone.

use std::io;
use std::sync::{Arc, Weak};
use std::time::Duration;

use spfs_router::process::ExitWatcher;
use tokio::sync::mpsc;

use crate::host::Host;

/// How often the safety-net sweep looks for runtimes whose root is gone.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Starts watching for root exits on behalf of `host`. The returned watcher must be told of
/// each root that is registered ([`ExitWatcher::watch`]) and removed ([`ExitWatcher::unwatch`]).
/// The reaping task holds the host weakly, so it never keeps a stopping service's host alive,
/// and ends once the host is gone.
pub(crate) fn start(host: &Arc<Host>) -> io::Result<Arc<ExitWatcher>> {
    let (exits, mut exited) = mpsc::unbounded_channel();
    let watcher = ExitWatcher::start(Box::new(move |pid| {
        let _ = exits.send(pid);
    }))?;
    let host = Arc::downgrade(host);
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        loop {
            let why = tokio::select! {
                pid = exited.recv() => match pid {
                    Some(pid) => format!("root process {pid} exited"),
                    None => return,
                },
                _ = sweep.tick() => "periodic sweep".to_owned(),
            };
            if !reap(&host, why).await {
                return;
            }
        }
    });
    Ok(Arc::new(watcher))
}

/// Removes the runtimes whose root is gone; false once the host itself is gone.
async fn reap(host: &Weak<Host>, why: String) -> bool {
    let Some(host) = host.upgrade() else {
        return false;
    };
    match tokio::task::spawn_blocking(move || host.remove_dead()).await {
        Ok(removed) if !removed.is_empty() => {
            tracing::info!(?removed, %why, "removed runtimes whose root process is gone");
        }
        Ok(_) => tracing::debug!(%why, "no runtime to remove"),
        Err(err) => tracing::error!(error = %err, "removing dead runtimes failed"),
    }
    true
}
