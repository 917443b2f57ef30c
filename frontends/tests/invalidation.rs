//! Kernel invalidation on a real `/dev/fuse` mount: what the kernel caches below the root
//! (pages, attributes, entries, negative entries and listings, all for a long time:
//! `policy.rs`) goes stale when the core changes a view behind its back, as a reset does, and
//! the session's [`Invalidator`] makes the kernel forget it. Each test first shows the stale
//! answer the kernel keeps without a notification (so it would fail if the kernel stopped
//! caching, or if the notifications did nothing), then sends the notifications and shows the
//! new state; with and without FUSE over io_uring, whose connections still take notifications
//! as a write(2) to the device.
//!
//! The change behind the kernel's back is made with the editable core's own calls on the
//! mounted [`Vfs`] (a write, a create, an unlink), never through the mount; and, end to end,
//! by the core's reset of changes made through the mount, with the invalidations the reset
//! itself returns.
//!
//! [`Invalidator`]: spfs_frontends::Invalidator

#![cfg(target_os = "linux")]

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[path = "support/config.rs"]
mod config;

use config::device_config;
use spfs_frontends::Session;
use spfs_router::spec::ResolvedSpec;
use spfs_router::{Caller, Invalidation, NodeId, ROOT, Routing, Scratch, Vfs, View};
use spfs_testkit::{require_fuse, root_attr};

/// An editable per-runtime volume of a layer with `bin/tool`, `share/x/tool` and
/// `share/x/other`, and the core behind it.
struct Mounted {
    _tmp: tempfile::TempDir,
    view: Arc<View>,
    vfs: Arc<Vfs>,
    session: Session,
    mnt: PathBuf,
}

fn mount(io_uring: bool) -> Mounted {
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("layer");
    fs::create_dir_all(layer.join("bin")).unwrap();
    fs::write(layer.join("bin/tool"), b"tool bytes").unwrap();
    fs::create_dir_all(layer.join("share/x")).unwrap();
    fs::write(layer.join("share/x/tool"), b"tool").unwrap();
    fs::write(layer.join("share/x/other"), b"other").unwrap();
    let view = View::build(
        7,
        &ResolvedSpec::of_directories([layer.clone()]),
        &root_attr(),
        (0, 0),
    )
    .with_scratch(Scratch::open(&tmp.path().join("scratch"), true).unwrap());
    let view = Arc::new(view);
    let vfs = Arc::new(Vfs::new(Routing::Fixed(view.clone())));
    let mnt = tmp.path().join("mnt");
    let session = Session::mount(vfs.clone(), &device_config(&mnt, io_uring)).unwrap();
    let mnt = mnt.canonicalize().unwrap();
    Mounted {
        _tmp: tmp,
        view,
        vfs,
        session,
        mnt,
    }
}

/// The caller the core's calls are made as: this process, root.
fn me() -> Caller {
    Caller {
        pid: std::process::id(),
        uid: 0,
        gid: 0,
    }
}

impl Mounted {
    /// The node id the core gives `path` (relative to the mount).
    fn node(&self, path: &str) -> NodeId {
        path.split('/').fold(ROOT, |dir, name| {
            self.vfs
                .lookup(me().pid, dir, name.as_bytes())
                .unwrap()
                .node
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Writes `data` over file `path` in the core, behind the kernel's back.
    fn write_behind(&self, path: &str, data: &[u8]) {
        let node = self.node(path);
        let handle = self.vfs.open(me().pid, node, true).unwrap();
        self.vfs.write(node, handle, 0, data).unwrap();
        self.vfs.release(handle);
    }

    /// Creates file `name` in directory `dir` holding `data`, behind the kernel's back.
    fn create_behind(&self, dir: &str, name: &str, data: &[u8]) {
        let (attr, handle) = self
            .vfs
            .create(&me(), self.node(dir), name.as_bytes(), 0o644)
            .unwrap();
        self.vfs.write(attr.node, handle, 0, data).unwrap();
        self.vfs.release(handle);
    }

    /// Removes file `name` from directory `dir`, behind the kernel's back.
    fn unlink_behind(&self, dir: &str, name: &str) {
        self.vfs
            .unlink(&me(), self.node(dir), name.as_bytes())
            .unwrap();
    }
}

/// The sorted names of directory `path`.
fn listing(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn exists(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(err) if err.kind() == ErrorKind::NotFound => false,
        Err(err) => panic!("{}: {err}", path.display()),
    }
}

fn entry(parent: NodeId, name: &str) -> Invalidation {
    Invalidation::Entry {
        parent,
        name: name.as_bytes().to_vec(),
    }
}

#[test]
fn a_files_new_content_shows_after_its_node_is_invalidated() {
    new_content(false);
}

#[test]
fn a_files_new_content_shows_after_its_node_is_invalidated_over_io_uring() {
    new_content(true);
}

fn new_content(io_uring: bool) {
    if !require_fuse() {
        return;
    }
    let m = mount(io_uring);
    let tool = m.path("bin/tool");
    assert_eq!(fs::read(&tool).unwrap(), b"tool bytes");
    assert_eq!(fs::metadata(&tool).unwrap().size(), 10);

    m.write_behind("bin/tool", b"new content, longer");
    assert_eq!(
        fs::read(&tool).unwrap(),
        b"tool bytes",
        "without a notification the kernel answers from its page cache"
    );
    assert_eq!(
        fs::metadata(&tool).unwrap().size(),
        10,
        "and its attributes"
    );

    m.session
        .invalidator()
        .invalidate(&[Invalidation::Node(m.node("bin/tool"))])
        .unwrap();
    assert_eq!(fs::metadata(&tool).unwrap().size(), 19);
    assert_eq!(fs::read(&tool).unwrap(), b"new content, longer");
    assert_eq!(io_uring, m.session.io_uring_answers().is_some());
}

#[test]
fn names_made_and_removed_behind_the_kernel_show_after_their_entries_are_invalidated() {
    names(false);
}

#[test]
fn names_made_and_removed_behind_the_kernel_show_after_invalidation_over_io_uring() {
    names(true);
}

/// In `share/x`, two levels down: the listing of a directory directly under the root
/// refreshes by itself, since every walk through it LOOKs it up again (entry timeout 0 at the
/// root, DESIGN.md §4 rule 3) and the reply's new mtime drops its cached listing.
fn names(io_uring: bool) {
    if !require_fuse() {
        return;
    }
    let m = mount(io_uring);
    let dir = m.path("share/x");
    let (new, other) = (dir.join("new"), dir.join("other"));
    // The kernel now holds a negative entry for `new`, an entry and attributes for `other`,
    // and the listing of `share/x`.
    assert!(!exists(&new));
    assert_eq!(fs::read(&other).unwrap(), b"other");
    // Twice: a listing leaves the directory's atime invalid (`fuse_invalidate_atime`), and
    // the next one refreshes its attributes with a GETATTR, whose mtime would drop the
    // cached listing. From then on the listing comes from the cache.
    assert_eq!(listing(&dir), ["other", "tool"]);
    assert_eq!(listing(&dir), ["other", "tool"]);

    m.create_behind("share/x", "new", b"made behind");
    m.unlink_behind("share/x", "other");
    assert!(
        !exists(&new),
        "without a notification the miss is still cached"
    );
    assert!(exists(&other), "and so is the removed name");
    assert_eq!(listing(&dir), ["other", "tool"], "and the listing");

    let x = m.node("share/x");
    m.session
        .invalidator()
        .invalidate(&[entry(x, "new"), entry(x, "other"), Invalidation::Node(x)])
        .unwrap();
    assert_eq!(fs::read(&new).unwrap(), b"made behind");
    assert!(!exists(&other));
    assert_eq!(listing(&dir), ["new", "tool"]);
}

/// The reset end to end: changes made through the mount (so the kernel caches the edited
/// state), then the core's reset behind the kernel's back, which the kernel does not see
/// until the service hands the reset's own invalidations to the session.
#[test]
fn a_reset_shows_after_the_invalidations_it_returns_are_sent() {
    reset_all(false);
}

#[test]
fn a_reset_shows_after_the_invalidations_it_returns_are_sent_over_io_uring() {
    reset_all(true);
}

fn reset_all(io_uring: bool) {
    if !require_fuse() {
        return;
    }
    let m = mount(io_uring);
    let (tool, dir) = (m.path("bin/tool"), m.path("share/x"));
    fs::write(&tool, b"edited through the mount").unwrap();
    fs::write(dir.join("new"), b"new").unwrap();
    fs::remove_file(dir.join("other")).unwrap();
    let edited = |m: &Mounted| {
        (
            fs::read(m.path("bin/tool")).unwrap(),
            exists(&m.path("share/x/new")),
            exists(&m.path("share/x/other")),
            listing(&m.path("share/x")),
        )
    };
    let want_edited = (
        b"edited through the mount".to_vec(),
        true,
        false,
        vec!["new".to_string(), "tool".to_string()],
    );
    // Twice, so the listing is cached (see `names`).
    assert_eq!(edited(&m), want_edited);
    assert_eq!(edited(&m), want_edited);

    let forget = m.vfs.reset(&m.view, &[]).unwrap();
    assert!(!forget.is_empty());
    assert_eq!(
        edited(&m),
        want_edited,
        "without notifications the kernel shows the edits"
    );

    m.session.invalidator().invalidate(&forget).unwrap();
    assert_eq!(
        edited(&m),
        (
            b"tool bytes".to_vec(),
            false,
            true,
            vec!["other".to_string(), "tool".to_string()]
        ),
        "after them, the layers: {forget:?}"
    );
    assert_eq!(fs::metadata(&tool).unwrap().size(), 10);
}

/// `reset PATH`: only what changed at the path and below is thrown away and forgotten; the
/// kernel keeps showing the other edits, which are still the view's.
#[test]
fn a_reset_of_one_path_shows_there_after_its_invalidations_and_nowhere_else() {
    if !require_fuse() {
        return;
    }
    let m = mount(false);
    let (tool, dir) = (m.path("bin/tool"), m.path("share/x"));
    fs::write(&tool, b"edited").unwrap();
    fs::write(dir.join("new"), b"new").unwrap();
    fs::remove_file(dir.join("other")).unwrap();
    for _ in 0..2 {
        assert_eq!(listing(&dir), ["new", "tool"]);
    }
    assert!(!exists(&dir.join("other")));

    let forget = m.vfs.reset(&m.view, &[PathBuf::from("share/x")]).unwrap();
    assert!(exists(&dir.join("new")), "stale until the notifications");
    m.session.invalidator().invalidate(&forget).unwrap();
    assert_eq!(listing(&dir), ["other", "tool"]);
    assert!(!exists(&dir.join("new")));
    assert_eq!(fs::read(dir.join("other")).unwrap(), b"other");
    assert_eq!(
        fs::read(&tool).unwrap(),
        b"edited",
        "outside the path: kept"
    );
}

/// What the kernel never cached, or no longer has, is not an error: the core may name more
/// than the kernel holds (a reset does not know what was looked up).
#[test]
fn invalidating_what_the_kernel_never_cached_succeeds() {
    if !require_fuse() {
        return;
    }
    let m = mount(false);
    let invalidator = m.session.invalidator();
    let bin = m.node("bin");
    invalidator
        .invalidate(&[
            entry(bin, "never-looked-up"),
            Invalidation::Node(m.node("share/x/other")),
            Invalidation::Node(0x0000_7777_0000_0001),
            entry(0x0000_7777_0000_0001, "x"),
        ])
        .unwrap();
    // After the session ends the handle sends nothing, and says so by succeeding.
    let Mounted { session, _tmp, .. } = m;
    drop(session);
    invalidator.invalidate(&[Invalidation::Node(bin)]).unwrap();
}

/// Notifications never wait on the service: sent while other threads walk, stat, read and
/// list the very names and nodes they name (each such request holding the kernel's locks the
/// notification needs, until a worker answers it), every one of them returns. Prints what a
/// notification costs.
#[test]
fn notifications_sent_while_requests_are_in_flight_all_return() {
    for io_uring in [false, true] {
        if !require_fuse() {
            return;
        }
        let m = mount(io_uring);
        let (x, tool) = (m.node("share/x"), m.node("share/x/tool"));
        let what = [
            entry(x, "tool"),
            Invalidation::Node(tool),
            Invalidation::Node(x),
        ];
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy: Vec<_> = (0..4)
            .map(|_| {
                let (dir, stop) = (m.path("share/x"), stop.clone());
                std::thread::spawn(move || {
                    let mut rounds = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        assert_eq!(fs::read(dir.join("tool")).unwrap(), b"tool");
                        assert!(!exists(&dir.join("missing")));
                        assert_eq!(listing(&dir), ["other", "tool"]);
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        let invalidator = m.session.invalidator();
        // Half a second of notifications, so they overlap many requests.
        let started = std::time::Instant::now();
        let mut rounds = 0u32;
        while started.elapsed() < std::time::Duration::from_millis(500) {
            invalidator.invalidate(&what).unwrap();
            rounds += 1;
        }
        let elapsed = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let walks: u64 = busy.into_iter().map(|t| t.join().unwrap()).sum();
        eprintln!(
            "io_uring {io_uring}: {} notifications in {elapsed:?} ({:.1} us each) beside {walks} \
             walks of 4 threads",
            rounds as usize * what.len(),
            elapsed.as_secs_f64() * 1e6 / f64::from(rounds) / what.len() as f64,
        );
    }
}
