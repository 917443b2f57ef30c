//! Helpers for the isolation tests beyond `spfs-testkit`'s: a router over the host's real
//! processes, the views the tests observe (`views.rs`), and the mount configuration
//! (`config.rs`).

pub mod config;
pub mod views;

use std::sync::Arc;

use spfs_router::Router;
use spfs_router::process::SystemProcessTable;

use spfs_testkit::root_attr;

/// A router over the host's real processes.
pub fn system_router() -> Arc<Router> {
    Arc::new(Router::new(
        Arc::new(SystemProcessTable::new()),
        root_attr(),
    ))
}
