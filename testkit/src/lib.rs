//! What the tests of every spfs-fuse crate share: whether this host can mount FUSE (the mount
//! gate), the spfs fixture repositories the repository carries, and the root attributes test
//! routers are built with. A dev-dependency only; nothing here ships.

use std::path::{Path, PathBuf};

use spfs_router::{Attr, Timestamp};

/// The environment variable that turns a mount test's skip into a failure (`.ci/run` sets it).
pub const REQUIRE_MOUNT_ENV: &str = "SPFS_FUSE_REQUIRE_MOUNT";

/// Whether the environment demands that mount tests run rather than skip.
pub fn mount_required() -> bool {
    std::env::var(REQUIRE_MOUNT_ENV).as_deref() == Ok("1")
}

/// Skips a test that cannot run here: prints `reason` and returns `false`, or, when
/// [`mount_required`], fails the test with it instead.
#[track_caller]
pub fn skip(reason: &str) -> bool {
    if mount_required() {
        panic!("mounting is required ({REQUIRE_MOUNT_ENV}=1) but cannot run here: {reason}");
    }
    eprintln!("skipping: {reason}");
    false
}

/// The mount gate: whether this host can mount FUSE (`/dev/fuse` opens and we are root, since
/// the tests mount with mount(2)). When it cannot, the test should return early; see [`skip`].
#[track_caller]
pub fn require_fuse() -> bool {
    let reason = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) if is_root() => return true,
        Ok(_) => "mounting needs root here (the tests mount with mount(2))".to_string(),
        Err(err) => format!("/dev/fuse cannot be opened: {err}"),
    };
    skip(&reason)
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The root attributes every test router and test view is built with.
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

/// The spfs fixture repositories (written by spfs 0.44 itself), one directory each:
/// `fixtures/spfs/` at the top of the repository.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/spfs")
}

/// Copies a directory tree (files and directories only). Fixtures are copied before use: git
/// keeps no empty directories (a repository needs its `payloads/`), and error tests damage
/// their copy.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of fixture repository `name` under `to`, and the `expected.json` that spfs wrote
/// beside it, as text.
pub fn fixture_copy(name: &str, to: &Path) -> String {
    let source = fixtures_dir().join(name);
    assert!(
        source.is_dir(),
        "fixture {} is missing from the repository",
        source.display()
    );
    copy_dir(&source, to);
    std::fs::read_to_string(to.join("expected.json")).expect("expected.json")
}
