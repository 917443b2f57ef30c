//! Editable views against the kernel's overlayfs (issue 16, DESIGN.md §4 rule 7): the same
//! three directory layers as the lower layers of an overlayfs mount (empty upper directory,
//! `redirect_dir=off,metacopy=off,index=off`) and of an editable spfs-fuse view served over a
//! real `/dev/fuse` mount; random operation sequences run on both through real system calls;
//! every outcome (value or errno) and at the end both whole trees must be equal.
//!
//! One overlay mount and one FUSE session serve every sequence: between sequences the overlay
//! is mounted again over an emptied upper directory, and this test process registers itself
//! again as the runtime's root with a fresh scratch. `SPFS_FUSE_ORACLE_CASES` sets the number
//! of sequences (default 200), `SPFS_FUSE_ORACLE_SEED` replays a run. The harness is checked
//! too: two overlay mounts always agree, and a plain directory is told from overlayfs.
//!
//! Linux only: the oracle is the Linux kernel's overlayfs.
#![cfg(target_os = "linux")]

#[path = "support/oracle/mod.rs"]
mod oracle;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oracle::Failure;
use oracle::ops::{Op, Pick};
use oracle::sides::{Copy, Overlay, Side};
use oracle::tree::Detail;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use spfs_frontends::{Session, SessionConfig, Transport};
use spfs_router::edit::Scratch;
use spfs_router::process::SystemProcessTable;
use spfs_router::{Owner, Router, Routing, Vfs};
use spfs_testkit::{is_root, require_fuse, root_attr, skip};

/// Operations per sequence.
const OPS: usize = 50;
/// Sequences by default (`SPFS_FUSE_ORACLE_CASES` sets another number).
const CASES: u32 = 200;

/// Whether the kernel's overlayfs can be mounted here; see [`skip`] when not.
fn require_overlay() -> bool {
    if !is_root() {
        return skip("mounting the kernel's overlayfs needs root");
    }
    let known = std::fs::read_to_string("/proc/filesystems").is_ok_and(|fs| {
        fs.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    });
    // The module may load on first use: try once before giving up.
    if !known
        && std::process::Command::new("modprobe")
            .arg("overlay")
            .status()
            .is_err()
    {
        return skip("the kernel has no overlayfs (`overlay` is not in /proc/filesystems)");
    }
    true
}

/// A sequence of `OPS` operations.
fn sequence() -> impl Strategy<Value = Vec<Op<Pick>>> {
    proptest::collection::vec(oracle::ops::op(), OPS)
}

/// A runner for `cases` sequences, seeded from `SPFS_FUSE_ORACLE_SEED` or at random (printed,
/// to replay a failure).
fn runner(cases: u32) -> TestRunner {
    let seed = std::env::var("SPFS_FUSE_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!(
        "oracle: {cases} sequences of {OPS} operations; SPFS_FUSE_ORACLE_SEED={seed} replays them"
    );
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        // Shrinking happens on the resolved operations instead (`oracle::shrink`).
        max_shrink_iters: 0,
        ..Config::default()
    })
}

/// Runs `runner`'s sequences on both sides; the report of the smallest failing sequence
/// (shrunk on its resolved operations, see `oracle::shrink`). A side that cannot be reset
/// stops the run.
fn compare(
    runner: &mut TestRunner,
    oracle: &mut dyn Side,
    subject: &mut dyn Side,
    hung: &AtomicBool,
) -> Result<(), String> {
    let sides = RefCell::new((oracle, subject));
    let failed = RefCell::new(None);
    let broken = RefCell::new(None);
    let _ = runner.run(&sequence(), |ops| {
        if failed.borrow().is_some() || broken.borrow().is_some() || hung.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut sides = sides.borrow_mut();
        let (oracle, subject) = &mut *sides;
        match oracle::run_sequence(*oracle, *subject, &ops) {
            Ok(()) => {}
            Err(Failure::Differ(ran, report)) => *failed.borrow_mut() = Some((ran, report)),
            Err(Failure::Harness(error)) => *broken.borrow_mut() = Some(error),
        }
        Ok(())
    });
    if let Some(error) = broken.into_inner() {
        panic!("the harness failed: {error}");
    }
    let Some((ran, report)) = failed.into_inner() else {
        return Ok(());
    };
    if hung.load(Ordering::Relaxed) {
        return Err(format!("an operation hung:\n{report}"));
    }
    eprintln!(
        "oracle: a sequence of {} operations failed; shrinking it",
        ran.len()
    );
    let (oracle, subject) = sides.into_inner();
    match oracle::shrink(oracle, subject, ran, report) {
        Ok(report) => Err(report),
        Err(error) => panic!("the harness failed while shrinking: {error}"),
    }
}

/// How long an operation may take before the watchdog calls it a hang.
const HANG: std::time::Duration = std::time::Duration::from_secs(60);

/// Watches the sequences running on the FUSE mount at `mnt`: when no operation starts for
/// [`HANG`], prints the sequence so far and aborts the mount's FUSE connection, so the stuck
/// call returns (ENOTCONN) instead of hanging the test, and sets the returned flag. Stops when
/// `done` is set.
fn watchdog(mnt: &Path, done: Arc<AtomicBool>) -> Arc<AtomicBool> {
    use std::os::unix::fs::MetadataExt;
    let hung = Arc::new(AtomicBool::new(false));
    let dev = std::fs::metadata(mnt).map(|m| m.dev()).unwrap_or(0);
    // The connection's directory is named by the mount's device minor number.
    let abort = format!("/sys/fs/fuse/connections/{}/abort", libc::minor(dev));
    let flag = hung.clone();
    std::thread::spawn(move || {
        let (mut seen, mut since) = (u64::MAX, std::time::Instant::now());
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let started = oracle::STARTED.load(Ordering::Relaxed);
            if started != seen {
                (seen, since) = (started, std::time::Instant::now());
            } else if since.elapsed() > HANG {
                let running = oracle::RUNNING
                    .lock()
                    .map(|r| r.clone())
                    .unwrap_or_default();
                eprintln!("oracle: an operation hung for {HANG:?}; aborting {abort}:\n{running}");
                flag.store(true, Ordering::Relaxed);
                let _ = std::fs::write(&abort, "1");
                return;
            }
        }
    });
    hung
}

/// Mounts `routing` at `mnt` through `/dev/fuse`.
fn mount(routing: Routing, mnt: &Path) -> Session {
    std::fs::create_dir_all(mnt).unwrap();
    let config = SessionConfig {
        mountpoint: mnt.to_path_buf(),
        fsname: "spfs-oracle".into(),
        volname: "spfs-oracle".into(),
        transport: Transport::Device,
        threads: 2,
        io_uring: false,
        nfs_server: None,
        other_users: false,
    };
    Session::mount(Arc::new(Vfs::new(routing)), &config).unwrap()
}

/// The editable spfs-fuse view of the layers: a shared-layout session whose runtime's root is
/// this test process, registered again with a fresh scratch at each reset. Beside it, a second
/// session where the same process's runtime is `LAYERS+SCRATCH`, read-only: the scratch read
/// back as a layer.
struct SpfsView {
    /// The editable view's router and session, then the read-back's.
    mounts: [(Arc<Router>, Option<Session>, PathBuf); 2],
    spec: String,
    scratches: PathBuf,
    resets: usize,
}

/// The runtime of this test process.
fn this_process() -> u32 {
    std::process::id()
}

impl SpfsView {
    fn new(lowers: &[PathBuf], base: &Path) -> SpfsView {
        let mounts = ["top/mnt", "layer/mnt"].map(|at| {
            let router = Arc::new(Router::new(
                Arc::new(SystemProcessTable::new()),
                root_attr(),
            ));
            let mnt = base.join(at);
            let session = mount(Routing::Shared(router.clone()), &mnt);
            (router, Some(session), mnt)
        });
        let spec = lowers
            .iter()
            .map(|l| l.display().to_string())
            .collect::<Vec<_>>()
            .join("+");
        SpfsView {
            mounts,
            spec,
            scratches: base.join("scratches"),
            resets: 0,
        }
    }

    /// The scratch in use now.
    fn scratch(&self) -> PathBuf {
        self.scratches.join(self.resets.to_string())
    }
}

impl Side for SpfsView {
    fn label(&self) -> &str {
        "spfs-fuse"
    }

    fn root(&self) -> &Path {
        &self.mounts[0].2
    }

    fn reset(&mut self) -> Result<(), String> {
        // The old runtime's scratch is unlocked once its view is gone.
        for (router, _, _) in &self.mounts {
            let _ = router.unregister(this_process());
        }
        let old = self.scratch();
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| format!("{old:?}: {e}"))?;
        }
        self.resets += 1;
        let scratch = Scratch::open(&self.scratch(), false).map_err(|e| e.to_string())?;
        self.mounts[0]
            .0
            .register(
                this_process(),
                &self.spec,
                &Owner::trusted(0, 0),
                &[],
                Some(scratch),
            )
            .map_err(|e| format!("registering {}: {e}", self.spec))?;
        Ok(())
    }

    fn as_layer(&mut self) -> Option<Result<BTreeMap<String, String>, String>> {
        let spec = format!("{}+{}", self.spec, self.scratch().display());
        let (router, _, mnt) = &self.mounts[1];
        let _ = router.unregister(this_process());
        Some(
            router
                .register(this_process(), &spec, &Owner::trusted(0, 0), &[], None)
                .map(|_| oracle::tree::snapshot(mnt, Detail::Layer))
                .map_err(|e| format!("reading the scratch back as {spec}: {e}")),
        )
    }
}

impl Drop for SpfsView {
    fn drop(&mut self) {
        for (router, session, _) in &mut self.mounts {
            let _ = router.unregister(this_process());
            if let Some(session) = session.take() {
                let _ = session.unmount();
            }
        }
    }
}

/// The number of sequences: `SPFS_FUSE_ORACLE_CASES`, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("SPFS_FUSE_ORACLE_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The mapping writer: this test binary run again by a `MmapWrite` operation (see
/// `oracle::ops::mmap_write`); does nothing in a normal run.
#[test]
fn oracle_mmap_child() {
    if let Ok(spec) = std::env::var(oracle::ops::MMAP_CHILD_ENV) {
        oracle::ops::mmap_child(&spec);
    }
}

#[test]
fn an_editable_view_answers_as_the_kernel_overlayfs() {
    if !require_fuse() || !require_overlay() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let lowers = oracle::layers::make_layers(&tmp.path().join("layers"));
    let mut overlay = match Overlay::new("overlayfs", &lowers, &tmp.path().join("overlay")) {
        Ok(overlay) => overlay,
        Err(reason) => {
            skip(&reason);
            return;
        }
    };
    let mut view = SpfsView::new(&lowers, &tmp.path().join("spfs"));
    let done = Arc::new(AtomicBool::new(false));
    let hung = watchdog(view.root(), done.clone());
    let result = compare(&mut runner(cases(CASES)), &mut overlay, &mut view, &hung);
    done.store(true, Ordering::Relaxed);
    drop(view);
    assert!(
        !hung.load(Ordering::Relaxed),
        "an operation on the editable view hung (see above)"
    );
    if let Err(report) = result {
        panic!("an editable view and overlayfs differ; smallest sequence found:\n{report}");
    }
}

/// The layers in a directory of their own, and an overlayfs mount of them in `at` there.
fn layers_and_overlay(at: &str) -> (tempfile::TempDir, Vec<PathBuf>, Overlay) {
    let tmp = tempfile::tempdir().unwrap();
    let lowers = oracle::layers::make_layers(&tmp.path().join("layers"));
    let overlay = Overlay::new("overlayfs", &lowers, &tmp.path().join(at)).unwrap();
    (tmp, lowers, overlay)
}

/// The harness itself: the kernel's overlayfs against itself always agrees (nothing in the
/// comparison depends on the instant, inode numbers or the mount).
#[test]
fn two_overlay_mounts_always_agree() {
    if !require_overlay() {
        return;
    }
    let (tmp, lowers, mut a) = layers_and_overlay("a");
    let mut b = Overlay::new("overlayfs again", &lowers, &tmp.path().join("b")).unwrap();
    if let Err(report) = compare(&mut runner(40), &mut a, &mut b, &AtomicBool::new(false)) {
        panic!("two overlay mounts of the same layers differ:\n{report}");
    }
}

/// The harness tells a filesystem without overlayfs's semantics from overlayfs, and shrinks
/// the difference to a short, readable sequence.
#[test]
fn a_plain_directory_is_told_from_overlayfs() {
    if !require_overlay() {
        return;
    }
    let (tmp, _lowers, mut overlay) = layers_and_overlay("overlay");
    let mut copy = Copy::new(overlay.root(), &tmp.path().join("copy"));
    let report = compare(
        &mut runner(200),
        &mut overlay,
        &mut copy,
        &AtomicBool::new(false),
    )
    .expect_err("a plain directory passed for overlayfs");
    eprintln!("{report}");
    let steps = report.lines().filter(|l| l.contains(". ")).count();
    assert!(steps <= 3, "not shrunk to a short sequence:\n{report}");
    assert!(report.contains("EXDEV"), "{report}");
}
