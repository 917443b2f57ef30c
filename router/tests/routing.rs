//! Caller-to-view routing with a fake process table, and with the real `/proc` on Linux.

mod common;

use std::sync::Arc;

use common::{list, root_attr};
use spfs_router::process::FakeProcessTable;
use spfs_router::{FsError, Owner, ROOT, RouteError, Router, Routing, ToErrno, Vfs};

struct Fixture {
    _tmp: tempfile::TempDir,
    processes: Arc<FakeProcessTable>,
    router: Arc<Router>,
    vfs: Vfs,
    a: String,
    b: String,
}

/// Two layers, `a` (with `only-a`) and `b` (with `only-b`), and a process tree:
/// 1 -> 10 -> 11 -> 12 and 1 -> 20; 30 is unrelated.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(a.join("only-a")).unwrap();
    std::fs::create_dir_all(b.join("only-b")).unwrap();
    let processes = Arc::new(FakeProcessTable::new());
    processes.spawn(1, 0, 1, 0);
    processes.spawn(10, 1, 10, 501);
    processes.spawn(11, 10, 11, 501);
    processes.spawn(12, 11, 12, 501);
    processes.spawn(20, 1, 20, 502);
    processes.spawn(30, 1, 30, 503);
    let router = Arc::new(Router::new(processes.clone(), root_attr()));
    let vfs = Vfs::new(Routing::Shared(router.clone()));
    Fixture {
        _tmp: tmp,
        processes,
        router,
        vfs,
        a: a.to_str().unwrap().into(),
        b: b.to_str().unwrap().into(),
    }
}

/// The fixture with runtime 10 on `a` and runtime 20 on `b`.
fn both_registered() -> Fixture {
    let f = fixture();
    f.router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    f.router
        .register(20, &f.b, &Owner::trusted(502, 502), &[], None)
        .unwrap();
    f
}

fn names(f: &Fixture, caller: u32) -> Vec<String> {
    list(&f.vfs, caller, ROOT)
        .into_iter()
        .map(|(n, _)| String::from_utf8(n).unwrap())
        .collect()
}

#[test]
fn descendants_see_the_runtime_and_others_the_empty_view() {
    let f = fixture();
    f.router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    for caller in [10, 11, 12] {
        assert_eq!(names(&f, caller), ["only-a"], "caller {caller}");
    }
    assert!(names(&f, 20).is_empty());
    assert!(names(&f, 30).is_empty());
    assert!(names(&f, 0).is_empty(), "pid 0 never walks");
    let err = f.vfs.lookup(30, ROOT, b"only-a").unwrap_err();
    assert_eq!(err.to_errno(), libc::ENOENT);
}

#[test]
fn a_depth_20_descendant_sees_the_runtime() {
    let f = fixture();
    f.router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    let mut parent = 12;
    for pid in 100..120 {
        f.processes.spawn(pid, parent, u64::from(pid), 501);
        parent = pid;
    }
    assert_eq!(names(&f, 119), ["only-a"]);
}

#[test]
fn nested_runtimes_resolve_to_the_nearest_root() {
    let f = fixture();
    f.router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    f.router
        .register(11, &f.b, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    assert_eq!(names(&f, 10), ["only-a"]);
    assert_eq!(names(&f, 11), ["only-b"]);
    assert_eq!(names(&f, 12), ["only-b"]);
}

#[test]
fn a_reused_pid_does_not_inherit_a_dead_runtime() {
    let f = fixture();
    f.router
        .register(20, &f.a, &Owner::trusted(502, 502), &[], None)
        .unwrap();
    assert_eq!(names(&f, 20), ["only-a"]);
    f.processes.exit(20);
    f.processes.spawn(20, 1, 9999, 503);
    // The cache was filled for pid 20 above; a route change is what clears it in service, but
    // a reused pid must not match even through a fresh walk.
    f.router
        .register(30, &f.b, &Owner::trusted(503, 503), &[], None)
        .unwrap();
    assert!(
        names(&f, 20).is_empty(),
        "pid 20 was reused by another process"
    );
}

#[test]
fn unregister_takes_effect_at_once() {
    let f = fixture();
    f.router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    assert_eq!(names(&f, 12), ["only-a"]);
    let inside = f.vfs.lookup(12, ROOT, b"only-a").unwrap();
    f.router.unregister(10).unwrap();
    assert!(names(&f, 12).is_empty());
    // Nodes of the removed view answer no more.
    let err = f.vfs.getattr(12, inside.node).unwrap_err();
    assert!(matches!(err, FsError::StaleNode(_)), "{err}");
    assert!(matches!(
        f.router.unregister(10),
        Err(RouteError::NotRegistered(10))
    ));
}

#[test]
fn node_ids_are_unique_across_views_and_the_root_is_shared() {
    let f = both_registered();
    let in_a = f.vfs.lookup(10, ROOT, b"only-a").unwrap();
    let in_b = f.vfs.lookup(20, ROOT, b"only-b").unwrap();
    assert_ne!(in_a.node, in_b.node);
    // Below the root, the node id alone finds the view, whoever asks.
    assert_eq!(f.vfs.getattr(30, in_a.node).unwrap(), in_a);
    assert_eq!(f.vfs.getattr(0, in_b.node).unwrap(), in_b);
    // The root is identical in every view.
    let roots: Vec<_> = [10, 20, 30]
        .iter()
        .map(|&c| f.vfs.getattr(c, ROOT).unwrap())
        .collect();
    assert!(roots.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn view_ids_are_never_reused() {
    let f = fixture();
    let first = f
        .router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap()
        .view
        .id();
    f.router.unregister(10).unwrap();
    let second = f
        .router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap()
        .view
        .id();
    assert!(second > first);
}

#[test]
fn registration_errors_name_the_problem() {
    let f = fixture();
    assert!(matches!(
        f.router.register(0, &f.a, &Owner::trusted(0, 0), &[], None),
        Err(RouteError::PidZero)
    ));
    assert!(matches!(
        f.router.register(1, &f.a, &Owner::trusted(0, 0), &[], None),
        Err(RouteError::PidOne)
    ));
    assert!(matches!(
        f.router
            .register(4242, &f.a, &Owner::trusted(0, 0), &[], None),
        Err(RouteError::NoSuchProcess(4242))
    ));
    f.router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    let dup = f
        .router
        .register(10, &f.b, &Owner::trusted(501, 501), &[], None)
        .unwrap_err();
    assert_eq!(
        dup.to_string(),
        "a runtime is already registered for root process 10"
    );
}

#[test]
fn writes_are_refused_with_erofs() {
    let f = fixture();
    f.router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    let err = f
        .vfs
        .access(
            &spfs_router::Caller {
                pid: 10,
                ..Default::default()
            },
            ROOT,
            libc::W_OK as u32,
        )
        .unwrap_err();
    assert_eq!(err.to_errno(), libc::EROFS);
}

#[cfg(target_os = "linux")]
#[test]
fn a_thread_of_a_registered_process_resolves_like_the_process() {
    use spfs_router::process::SystemProcessTable;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("marker")).unwrap();
    let router = Arc::new(Router::new(
        Arc::new(SystemProcessTable::new()),
        root_attr(),
    ));
    let me = std::process::id();
    let view = router
        .register(
            me,
            tmp.path().to_str().unwrap(),
            &Owner::trusted(0, 0),
            &[],
            None,
        )
        .unwrap()
        .view
        .id();
    let live = std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: gettid has no preconditions.
            let t = unsafe { libc::gettid() } as u32;
            (t, router.resolve(t).id())
        })
        .join()
        .unwrap()
    });
    assert_ne!(live.0, me, "a spawned thread has its own tid");
    assert_eq!(live.1, view);
    // The main thread's tid is the pid; a spawned thread's is not, and must resolve too.
    assert_eq!(router.resolve(me).id(), view);
}

#[test]
fn readdir_resumes_at_every_offset_it_handed_out() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(tmp.path().join(format!("f{i:02}")), b"x").unwrap();
    }
    let f = fixture();
    f.router
        .register(
            10,
            tmp.path().to_str().unwrap(),
            &Owner::trusted(501, 501),
            &[],
            None,
        )
        .unwrap();
    f.vfs.opendir(10, ROOT).unwrap();
    let mut all = common::Collect::default();
    f.vfs.readdir(10, ROOT, 0, &mut all).unwrap();
    assert_eq!(all.0.len(), 52, ". and .. and 50 files");
    for (i, (_, _, offset)) in all.0.iter().enumerate() {
        let mut rest = common::Collect::default();
        f.vfs.readdir(10, ROOT, *offset, &mut rest).unwrap();
        let expected: Vec<_> = all.0[i + 1..]
            .iter()
            .map(|(n, _, o)| (n.clone(), *o))
            .collect();
        let got: Vec<_> = rest.0.iter().map(|(n, _, o)| (n.clone(), *o)).collect();
        assert_eq!(got, expected, "resuming at offset {offset}");
    }
}

/// Issue 14, defect 2: no handle pins the root's view (the macFUSE kext hands one process's
/// open directory to another's opendir), so whoever reads the root gets their own view, even
/// continuing a listing another process began.
#[test]
fn the_root_lists_the_view_of_whoever_reads_it() {
    let f = both_registered();
    let from = |caller, offset| {
        let mut out = common::Collect::default();
        f.vfs.readdir(caller, ROOT, offset, &mut out).unwrap();
        out.0
            .into_iter()
            .map(|(n, _, o)| (n, o))
            .collect::<Vec<_>>()
    };
    f.vfs.opendir(10, ROOT).unwrap();
    assert_eq!(names(&f, 10), ["only-a"]);
    // B and an outsider read the root A opened: each lists its own view.
    assert_eq!(names(&f, 20), ["only-b"]);
    assert!(names(&f, 30).is_empty(), "the outsider's empty view");
    // A listing A began, continued past `.` and `..` by B, goes on in B's view.
    let after_dots = from(10, 0)[1].1;
    let continued: Vec<_> = from(20, after_dots).into_iter().map(|(n, _)| n).collect();
    assert_eq!(continued, [b"only-b".to_vec()]);
}

#[test]
fn statfs_reports_the_figures_of_the_callers_view_or_of_the_node_asked() {
    let f = fixture();
    // `a` holds only-a/ plus two files: 5000 bytes (2 blocks) and an empty one (0 blocks).
    let a = std::path::Path::new(&f.a);
    std::fs::write(a.join("only-a/big"), vec![1u8; 5000]).unwrap();
    std::fs::write(a.join("empty"), b"").unwrap();
    for (root, spec, uid) in [(10, &f.a, 501), (20, &f.b, 502)] {
        f.router
            .register(root, spec, &Owner::trusted(uid, uid), &[], None)
            .unwrap();
    }
    let in_a = f.vfs.statfs(11, ROOT).unwrap();
    assert_eq!(
        (in_a.blocks, in_a.files),
        (2, 4),
        "root, only-a, big, empty"
    );
    assert_eq!((in_a.block_size, in_a.name_max), (4096, 255));
    let in_b = f.vfs.statfs(20, ROOT).unwrap();
    assert_eq!((in_b.blocks, in_b.files), (0, 2), "root, only-b");
    let outsider = f.vfs.statfs(30, ROOT).unwrap();
    assert_eq!((outsider.blocks, outsider.files), (0, 1));
    // Below the root the node alone decides, whoever asks.
    let only_a = f.vfs.lookup(10, ROOT, b"only-a").unwrap().node;
    assert_eq!(f.vfs.statfs(30, only_a).unwrap(), in_a);
    // A removed runtime's nodes are stale.
    f.router.unregister(10).unwrap();
    assert!(matches!(
        f.vfs.statfs(0, only_a),
        Err(FsError::StaleNode(_))
    ));
}

#[test]
fn a_thread_id_in_the_fake_table_routes_by_its_process() {
    // Linux FUSE reports the calling thread's id (DESIGN.md §4 rule 4).
    let f = fixture();
    f.processes.spawn_thread(1201, 12);
    f.processes.spawn_thread(3001, 30);
    f.router
        .register(10, &f.a, &Owner::trusted(501, 501), &[], None)
        .unwrap();
    assert_eq!(names(&f, 1201), ["only-a"]);
    assert!(names(&f, 3001).is_empty());
}
