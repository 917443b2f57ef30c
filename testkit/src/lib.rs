//! What the tests of every spfs-fuse crate share: whether this host can mount FUSE (the mount
//! gate), the spfs fixture repositories the repository carries, and the root attributes test
//! routers are built with, and rendering a manifest to a directory (what `spfs commit --path`
//! would read back). A dev-dependency only; nothing here ships.

use std::path::{Path, PathBuf};

use serde_json::Value;
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

/// A copy of one fixture repository, with the `expected.json` spfs wrote beside it.
#[derive(Debug)]
pub struct FixtureRepo {
    /// Where the copy is: a repository root to hand to the reader or the service.
    pub root: PathBuf,
    /// `expected.json`: every tag, older tag version and object with the view it gives.
    pub expected: Value,
}

impl FixtureRepo {
    /// Copies fixture repository `name` (`current` or `legacy`) to `to`.
    pub fn copy(name: &str, to: &Path) -> FixtureRepo {
        let source = fixtures_dir().join(name);
        assert!(
            source.is_dir(),
            "fixture {} is missing from the repository",
            source.display()
        );
        copy_dir(&source, to);
        let text = std::fs::read_to_string(to.join("expected.json")).expect("expected.json");
        FixtureRepo {
            root: to.to_path_buf(),
            expected: serde_json::from_str(&text).expect("expected.json parses"),
        }
    }

    /// What `expected.json` says of tag `tag`.
    pub fn tag(&self, tag: &str) -> &Value {
        &self.expected["tags"][tag]
    }

    /// Every reference `expected.json` names: each tag, each older version `tag~i`, each
    /// object digest; with the view it must give, or `None` for a blob (not mountable).
    pub fn cases(&self) -> Vec<(String, Option<&Value>)> {
        let tags = self.expected["tags"].as_object().expect("tags");
        let view_of = |digest: &str| -> Option<&Value> {
            tags.values().find_map(|t| {
                let hit = t["digest"] == digest || t["manifest"] == digest;
                (hit && t["view"].is_object()).then(|| &t["view"])
            })
        };
        let mut cases = Vec::new();
        for (tag, t) in tags {
            cases.push((tag.clone(), t.get("view")));
            let history = t["history"].as_array().expect("history");
            for (i, d) in history.iter().enumerate().skip(1) {
                cases.push((format!("{tag}~{i}"), view_of(d.as_str().expect("digest"))));
            }
        }
        for (digest, kind) in self.expected["objects"].as_object().expect("objects") {
            let view = view_of(digest);
            assert_eq!(
                view.is_none(),
                kind == "blob",
                "{digest} ({kind}): only blobs have no view"
            );
            cases.push((digest.clone(), view));
        }
        cases
    }
}

/// Renders manifest `digest` (a layer's or a manifest) of `repo` into the empty or missing
/// directory `to`, as overlayfs would hold it as an upper directory: directories, files with
/// their payload's content, symlinks, and masks as whiteouts (character devices 0/0, which
/// need root), every entry with its stored mode. Returns whether the manifest holds masks.
pub fn render_manifest(
    repo: &spfs_storage::Repository,
    digest: &spfs_storage::Digest,
    to: &Path,
) -> bool {
    use spfs_storage::{EntryKind, ObjectSource};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;

    let m = repo.read_manifest(digest).expect("the manifest reads");
    std::fs::create_dir_all(to).unwrap();
    let mut masks = false;
    let mut modes = Vec::new();
    // Breadth first: every directory comes before its children.
    for (i, e) in m.entries().iter().enumerate() {
        let path = to.join(std::ffi::OsStr::from_bytes(&m.path(i)));
        match e.kind() {
            EntryKind::Dir => std::fs::create_dir(&path).unwrap(),
            EntryKind::File => {
                std::fs::copy(repo.payload_path(&e.digest()), &path).unwrap();
            }
            EntryKind::Symlink => {
                let target = std::fs::read(repo.payload_path(&e.digest())).unwrap();
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path).unwrap();
            }
            EntryKind::Mask => {
                masks = true;
                let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
                // SAFETY: a valid NUL-terminated path; mknod has no other preconditions.
                let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
                assert_eq!(
                    rc,
                    0,
                    "mknod {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        if e.kind() != EntryKind::Symlink {
            modes.push((path, e.mode() & 0o7777));
        }
    }
    // Modes last, deepest first, so read-only directories do not stop their own rendering.
    for (path, mode) in modes.into_iter().rev() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    masks
}
