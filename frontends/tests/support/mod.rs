//! Shared helpers for mount tests: whether FUSE is usable, and re-running this test binary as
//! a child process that probes a mount.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use spfs_router::process::SystemProcessTable;
use spfs_router::{Attr, Router, Timestamp};

/// Whether this host can mount FUSE. When it cannot, a test prints why and returns early,
/// unless `SPFS_FUSE_REQUIRE_MOUNT=1`, which turns the skip into a failure (CI sets it).
pub fn require_fuse() -> bool {
    let reason = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) if unsafe { libc::geteuid() } == 0 => return true,
        Ok(_) => "mounting needs root here (the tests mount with mount(2))".to_string(),
        Err(err) => format!("/dev/fuse cannot be opened: {err}"),
    };
    if std::env::var("SPFS_FUSE_REQUIRE_MOUNT").as_deref() == Ok("1") {
        panic!("FUSE is required (SPFS_FUSE_REQUIRE_MOUNT=1) but unusable: {reason}");
    }
    eprintln!("skipping: {reason}");
    false
}

/// Root attributes for test routers.
pub fn root_attr() -> Attr {
    Attr::root(
        0,
        0,
        Timestamp {
            secs: 1_700_000_000,
            nanos: 0,
        },
    )
}

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
