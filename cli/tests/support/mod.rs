//! Test support shared by the binary's integration tests.

/// Whether this host can mount FUSE; see `require_fuse` in the frontends' tests.
pub fn require_fuse() -> bool {
    let reason = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        // SAFETY: geteuid has no preconditions.
        Ok(_) if unsafe { libc::geteuid() } == 0 => return true,
        Ok(_) => "mounting needs root here".to_string(),
        Err(err) => format!("/dev/fuse cannot be opened: {err}"),
    };
    if std::env::var("SPFS_FUSE_REQUIRE_MOUNT").as_deref() == Ok("1") {
        panic!("FUSE is required (SPFS_FUSE_REQUIRE_MOUNT=1) but unusable: {reason}");
    }
    eprintln!("skipping: {reason}");
    false
}
