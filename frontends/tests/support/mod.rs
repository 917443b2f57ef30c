//! Helpers for the isolation tests beyond `spfs-testkit`'s: a router over the host's real
//! processes, and layer files.

use std::path::Path;
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

/// Writes `bytes` to `root/rel`, creating parents.
pub fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}
