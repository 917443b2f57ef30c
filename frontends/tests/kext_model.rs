//! What a Mac with the macFUSE kext would answer, on Linux: the kext model
//! (`support/kext/`) between simulated processes and the real adapter, mounted with the macFUSE
//! session's own policy and options. First the model's own behaviour (each a kext behaviour
//! read in its source), then isolation through it (DESIGN.md §4 rule 3 as a Mac keeps it).

#[path = "support/kext/mod.rs"]
mod kext;
#[path = "support/views.rs"]
mod views;

use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::Opcode;
use kext::Kext;
use spfs_frontends::policy::{KernelPolicy, MountOption, Platform, RoutingKind};
use spfs_frontends::session::Transport;
use spfs_router::process::FakeProcessTable;
use spfs_router::{Owner, Router, Routing, Vfs};

/// launchd, the parent of every tree.
const INIT: u32 = 1;
/// Runtime A's root process and a child of it.
const A: u32 = 100;
const A_CHILD: u32 = 101;
/// Runtime B's root process and a child of it.
const B: u32 = 200;
const B_CHILD: u32 = 201;
/// A process in no runtime.
const OUTSIDER: u32 = 300;

/// The shared layout over two runtimes, A and B, with the views of the isolation tests.
struct Shared {
    _layers: tempfile::TempDir,
    vfs: Arc<Vfs>,
}

fn shared() -> Shared {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = views::make_layers(tmp.path());

    let processes = Arc::new(FakeProcessTable::new());
    processes.spawn(INIT, 0, 1, 0);
    for (pid, parent) in [
        (A, INIT),
        (A_CHILD, A),
        (B, INIT),
        (B_CHILD, B),
        (OUTSIDER, INIT),
    ] {
        processes.spawn(pid, parent, u64::from(pid), 0);
    }
    let router = Arc::new(Router::new(processes, spfs_testkit::root_attr()));
    for (pid, layer) in [(A, &a), (B, &b)] {
        router
            .register(
                pid,
                layer.to_str().unwrap(),
                &Owner::trusted(0, 0),
                &[],
                None,
            )
            .unwrap();
    }
    Shared {
        _layers: tmp,
        vfs: Arc::new(Vfs::new(Routing::Shared(router))),
    }
}

/// The policy the macFUSE session mounts the shared layout with.
fn macfuse_shared() -> KernelPolicy {
    KernelPolicy::new(Platform::MacOs, Transport::Device, RoutingKind::Shared)
}

/// `policy` with `option` taken out, or put in.
fn with_option(mut policy: KernelPolicy, option: MountOption, on: bool) -> KernelPolicy {
    policy.mount_options.retain(|o| *o != option);
    if on {
        policy.mount_options.push(option);
    }
    policy
}

#[test]
fn a_cached_name_answers_without_the_server_unless_the_mount_has_novncache() {
    let fs = shared();
    for (no_vncache, lookups_again) in [(false, 0), (true, 2)] {
        let policy = with_option(macfuse_shared(), MountOption::NoVnCache, no_vncache);
        let mut kext = Kext::mount(fs.vfs.clone(), &policy);
        assert_eq!(kext.read_file(A, "bin/tool").unwrap(), b"aaaa");
        assert_eq!(kext.sent(Opcode::Lookup), 2);
        kext.read_file(A_CHILD, "bin/tool").unwrap();
        assert_eq!(
            kext.sent(Opcode::Lookup),
            2 + lookups_again,
            "novncache: {no_vncache}"
        );
        // A miss is never cached, whatever the options.
        for _ in 0..2 {
            assert_eq!(kext.lstat(A, "bin/missing").unwrap_err(), libc::ENOENT);
        }
        assert_eq!(
            kext.sent(Opcode::Lookup),
            4 + lookups_again + u64::from(no_vncache) * 2
        );
    }
}

#[test]
fn attributes_are_kept_per_vnode_for_their_time_to_live() {
    let fs = shared();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    // The root's attributes are unknown until asked, then kept for the policy's long TTL.
    kext.lstat(A, "").unwrap();
    kext.lstat(B, "").unwrap();
    assert_eq!(kext.sent(Opcode::Getattr), 1);
    // A looked-up node comes with its attributes.
    let tool = kext.lstat(A, "bin/tool").unwrap();
    assert_eq!(tool.size, 4);
    assert_eq!(kext.sent(Opcode::Getattr), 1);
    kext.advance(macfuse_shared().below.attr_ttl + Duration::from_secs(1));
    kext.lstat(A, "bin/tool").unwrap();
    assert_eq!(kext.sent(Opcode::Getattr), 2, "expired: asked again");
}

#[test]
fn a_second_open_reuses_the_handle_whichever_process_opens() {
    let fs = shared();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let held = kext.open(A, "").unwrap();
    let again = kext.open(B, "").unwrap();
    assert_eq!(kext.sent(Opcode::Opendir), 1, "B's opendir sent nothing");
    kext.close(B, again);
    assert_eq!(kext.sent(Opcode::Releasedir), 0, "A still holds it");
    kext.close(A, held);
    assert_eq!(kext.sent(Opcode::Releasedir), 1);
    kext.list(B, "").unwrap();
    assert_eq!(kext.sent(Opcode::Opendir), 2, "released: opened afresh");
}

#[test]
fn a_dead_mount_fakes_statfs_and_the_roots_attributes_and_refuses_opening_its_root() {
    let fs = shared();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let alive = kext.statfs(A, "").unwrap();
    assert!(alive.blocks > 0 && alive.files > 0, "{alive:?}");
    kext.server_died();
    let before = kext.sent_total();
    let faked = kext.statfs(A, "").unwrap();
    assert_eq!((faked.blocks, faked.files, faked.bsize), (0, 0, 0));
    let root = kext.lstat(OUTSIDER, "").unwrap();
    assert_eq!(root.mode, kext::S_IFDIR | kext::S_IRWXU);
    assert_eq!(kext.open(A, "").unwrap_err(), libc::ENXIO);
    assert_eq!(kext.lstat(A, "bin").unwrap_err(), libc::ENXIO);
    assert_eq!(kext.sent_total(), before, "nothing reaches a dead server");
}

#[test]
fn readlink_asks_the_server_every_time() {
    let fs = shared();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    for _ in 0..2 {
        assert_eq!(kext.readlink(B, "link").unwrap(), b"target-b");
    }
    assert_eq!(kext.sent(Opcode::Readlink), 2);
    assert_eq!(kext.readlink(B, "bin/tool").unwrap_err(), libc::EINVAL);
}

/// Rounds of the isolation alternation, as many as the real mount's.
const ROUNDS: usize = 5_000;

/// What process `pid` sees at the mount, in the form of [`views::expected`].
fn observe(kext: &mut Kext, pid: u32) -> Vec<String> {
    fn shown(result: Result<Vec<u8>, kext::Errno>) -> String {
        match result {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(libc::ENOENT) => "ENOENT".into(),
            Err(errno) => format!("ERR:{errno}"),
        }
    }
    let tool = shown(kext.read_file(pid, "bin/tool"));
    let link = shown(kext.readlink(pid, "link"));
    let names: Vec<String> = kext
        .list(pid, "")
        .unwrap_or_default()
        .iter()
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .collect();
    let only_a = match kext.lstat(pid, "only-a") {
        Ok(attr) if kext::is_dir(attr.mode) => "dir".into(),
        Ok(_) => "other".into(),
        Err(errno) => shown(Err(errno)),
    };
    let deep = shown(kext.read_file(pid, "share/x/y/deep"));
    views::observation(tool, link, names, only_a, deep)
}

/// Wrong answers of one observer over the alternation, and the first one.
#[derive(Debug, Default)]
struct Wrong {
    count: usize,
    first: Option<Vec<String>>,
}

/// The isolation alternation of `isolation.rs` through the kext: in each of `rounds` rounds,
/// tree A (its root or its child, in turn), tree B likewise, and the outsider observe the same
/// paths. Returns the wrong answers of A, B and the outsider.
fn alternate(kext: &mut Kext, rounds: usize) -> [Wrong; 3] {
    let observers: [(&str, [u32; 2]); 3] = [
        ("a", [A, A_CHILD]),
        ("b", [B, B_CHILD]),
        ("outsider", [OUTSIDER, OUTSIDER]),
    ];
    let mut wrong: [Wrong; 3] = Default::default();
    for round in 0..rounds {
        for ((view, pids), wrong) in observers.iter().zip(&mut wrong) {
            let got = observe(kext, pids[round % 2]);
            if got != views::expected(view) {
                wrong.count += 1;
                wrong.first.get_or_insert(got);
            }
        }
    }
    wrong
}

#[test]
fn two_trees_and_an_outsider_each_see_only_their_own_view_through_the_kext() {
    let fs = shared();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let wrong = alternate(&mut kext, ROUNDS);
    assert!(wrong.iter().all(|w| w.count == 0), "{wrong:?}");
}

/// Defect 1 of issue 14, pinned: without `novncache` the kext answers B's and the outsider's
/// lookups of A's names from its name cache. If this ever passes with 0 wrong answers, the
/// model has lost the kext's name cache.
#[test]
fn without_novncache_the_kext_hands_one_views_names_to_another() {
    let fs = shared();
    let policy = with_option(macfuse_shared(), MountOption::NoVnCache, false);
    let mut kext = Kext::mount(fs.vfs.clone(), &policy);
    let wrong = alternate(&mut kext, ROUNDS);
    eprintln!(
        "without novncache, wrong answers in {ROUNDS} rounds: a {}, b {}, outsider {}",
        wrong[0].count, wrong[1].count, wrong[2].count
    );
    assert!(wrong[1].count > 0 && wrong[2].count > 0, "{wrong:?}");
}

/// Defect 2 of issue 14: while A (or Finder, or Spotlight) holds the root open, the kext hands
/// A's handle to every other process's opendir without asking; each must still list its own
/// view, and A's own listing through its handle stays A's.
#[test]
fn the_root_lists_each_callers_view_while_another_process_holds_it_open() {
    let fs = shared();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let held = kext.open(A, "").unwrap();
    let opened = kext.sent(Opcode::Opendir);
    let listed = |names: Vec<Vec<u8>>| {
        let mut names: Vec<String> = names
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        names.sort();
        format!("list={}", names.join(","))
    };
    let mut wrong = Vec::new();
    for round in 0..ROUNDS {
        let b = [B, B_CHILD][round % 2];
        for (view, pid) in [("b", b), ("outsider", OUTSIDER), ("a", A_CHILD)] {
            let got = listed(kext.list(pid, "").unwrap());
            if got != views::expected(view)[2] {
                wrong.push((view, got));
            }
        }
        let own = listed(kext.readdir(A, held).unwrap());
        if own != views::expected("a")[2] {
            wrong.push(("a through its handle", own));
        }
    }
    assert_eq!(
        kext.sent(Opcode::Opendir),
        opened,
        "every opendir reused A's handle"
    );
    kext.close(A, held);
    eprintln!(
        "root listings while A holds the root, wrong in {ROUNDS} rounds: {}",
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} wrong, first {:?}",
        wrong.len(),
        wrong.first()
    );
}

/// LOOKUPs the kext sends per walk of `path` when `walkers` take turns walking it `walks`
/// times in all, on a mount with or without `novncache`.
fn lookups_per_walk(no_vncache: bool, path: &str, walkers: &[u32], walks: usize) -> f64 {
    let fs = shared();
    let policy = with_option(macfuse_shared(), MountOption::NoVnCache, no_vncache);
    let mut kext = Kext::mount(fs.vfs.clone(), &policy);
    for walk in 0..walks {
        kext.lstat(walkers[walk % walkers.len()], path).unwrap();
    }
    kext.sent(Opcode::Lookup) as f64 / walks as f64
}

/// What `novncache` costs on a Mac: every path walk sends one LOOKUP per component, where the
/// name cache would answer all of them after the first walk. Prints the figures.
#[test]
fn novncache_costs_one_lookup_per_component_of_every_walk() {
    const WALKS: usize = 1_000;
    let deep = "share/x/y/deep";
    let cases = [
        ("one process, share/x/y/deep", deep, &[A][..]),
        ("A and B in turn, share/x/y/deep", deep, &[A, B][..]),
        ("one process, bin/tool", "bin/tool", &[A][..]),
    ];
    for (what, path, walkers) in cases {
        let with = lookups_per_walk(true, path, walkers, WALKS);
        eprintln!(
            "LOOKUPs per walk, {what}: {with:.3} with novncache, {:.3} without",
            lookups_per_walk(false, path, walkers, WALKS)
        );
        let components = path.split('/').count() as f64;
        assert_eq!(with, components, "{what}");
    }
    // Without it, the first walk of each view is all the server sees (and that is the leak).
    assert_eq!(
        lookups_per_walk(false, deep, &[A], WALKS),
        4.0 / WALKS as f64
    );
}
