//! What a Mac with the macFUSE kext would answer, on Linux: the kext model
//! (`support/kext/`) between simulated processes and the real adapter, mounted with the macFUSE
//! session's own policy and options. First the model's own behaviour (each a kext behaviour
//! read in its source), then isolation through it (DESIGN.md §4 rule 3 as a Mac keeps it),
//! then with runtime A editable (rule 7) and writing through the kext's create, rename and
//! unlink vnops between everyone's reads.

#[path = "support/kext/mod.rs"]
mod kext;
#[path = "support/views.rs"]
mod views;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fuse_backend_rs::abi::fuse_abi::Opcode;
use kext::Kext;
use spfs_frontends::policy::{KernelPolicy, MountOption, Platform, RoutingKind};
use spfs_frontends::session::Transport;
use spfs_router::process::FakeProcessTable;
use spfs_router::{Owner, Router, Routing, Scratch, Vfs};

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
    shared_with(false)
}

/// The shared layout with runtime A editable (its scratch in the layers' directory).
fn shared_editable() -> Shared {
    shared_with(true)
}

fn shared_with(editable_a: bool) -> Shared {
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
                (editable_a && pid == A)
                    .then(|| Scratch::open(&tmp.path().join("scratch-a"), true).unwrap()),
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

/// The names A's writes make directly under the root, in turn.
const WRITTEN_AT_ROOT: [&str; 2] = ["fresh-a", "moved-a"];

/// What `lstat` of `path` shows process `pid`: "found" or the errno's name.
fn stat_shown(kext: &mut Kext, pid: u32, path: &str) -> String {
    match kext.lstat(pid, path) {
        Ok(_) => "found".into(),
        Err(libc::ENOENT) => "ENOENT".into(),
        Err(errno) => format!("ERR:{errno}"),
    }
}

/// [`observe`], and whether `pid` finds the names A makes at the root (it never may, A
/// included: A undoes them within its round).
fn observe_writes(kext: &mut Kext, pid: u32) -> Vec<String> {
    let mut seen = observe(kext, pid);
    for name in WRITTEN_AT_ROOT {
        seen.push(format!("{name}={}", stat_shown(kext, pid, name)));
    }
    seen
}

fn expected_writes(view: &str) -> Vec<String> {
    let mut want = views::expected(view);
    want.extend(WRITTEN_AT_ROOT.map(|name| format!("{name}=ENOENT")));
    want
}

/// The isolation alternation with A writing: in each round everyone observes, then A (its
/// root or its child, in turn) creates a file at the root, renames it there, makes a file
/// below and renames it over another directory's, renames a lower file away and back, and
/// unlinks what it made at the root. While A's new names exist, B and the outsider look them
/// up. Every new entry must get a node id never seen. Returns the wrong answers of A, B and
/// the outsider.
fn alternate_with_writes(kext: &mut Kext, rounds: usize) -> [Wrong; 3] {
    let observers: [(&str, [u32; 2]); 3] = [
        ("a", [A, A_CHILD]),
        ("b", [B, B_CHILD]),
        ("outsider", [OUTSIDER, OUTSIDER]),
    ];
    let mut wrong: [Wrong; 3] = Default::default();
    let note = |wrong: &mut Wrong, got: Vec<String>| {
        wrong.count += 1;
        wrong.first.get_or_insert(got);
    };
    let mut seen = HashSet::new();
    for round in 0..rounds {
        for ((view, pids), wrong) in observers.iter().zip(&mut wrong) {
            let got = observe_writes(kext, pids[round % 2]);
            if got != expected_writes(view) {
                note(wrong, got);
            }
        }
        let a = [A, A_CHILD][round % 2];
        let content = format!("round {round}");
        let [fresh, moved] = WRITTEN_AT_ROOT;
        let mut steps = vec![];
        steps.push(kext.write_file(a, fresh, content.as_bytes()).map(Some));
        for (other, at) in [(B, 1), (OUTSIDER, 2)] {
            let got = stat_shown(kext, other, fresh);
            if got != "ENOENT" {
                note(
                    &mut wrong[at],
                    vec![format!("{fresh}={got} while A has it")],
                );
            }
        }
        steps.push(kext.rename(a, fresh, moved).map(|()| None));
        if kext.read_file(a, moved).ok() != Some(content.clone().into_bytes()) {
            note(
                &mut wrong[0],
                vec![format!("round {round}: {moved} lost its content")],
            );
        }
        for (other, at) in [(B, 1), (OUTSIDER, 2)] {
            let got = stat_shown(kext, other, moved);
            if got != "ENOENT" {
                note(
                    &mut wrong[at],
                    vec![format!("{moved}={got} while A has it")],
                );
            }
        }
        steps.push(kext.write_file(a, "bin/made", content.as_bytes()).map(Some));
        if round == 0 {
            steps.push(kext.write_file(a, "share/x/kept", b"first").map(Some));
        }
        steps.push(kext.rename(a, "bin/made", "share/x/kept").map(|()| None));
        steps.push(kext.rename(a, "bin/tool", "bin/tool.away").map(|()| None));
        steps.push(kext.rename(a, "bin/tool.away", "bin/tool").map(|()| None));
        steps.push(kext.unlink(a, moved).map(|()| None));
        for step in steps {
            match step {
                Ok(Some(node)) if !seen.insert(node) => note(
                    &mut wrong[0],
                    vec![format!("round {round}: node {node} reused")],
                ),
                Ok(_) => {}
                Err(errno) => note(&mut wrong[0], vec![format!("round {round}: errno {errno}")]),
            }
        }
    }
    wrong
}

/// Rule 7 through the kext: A's creates, renames and unlinks, at the root and below, never
/// reach B's or the outsider's lookups, and A always sees its own view.
#[test]
fn an_editable_runtimes_writes_are_never_seen_by_another_view_through_the_kext() {
    let fs = shared_editable();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let wrong = alternate_with_writes(&mut kext, ROUNDS);
    assert!(wrong.iter().all(|w| w.count == 0), "{wrong:?}");
    assert!(kext.sent(Opcode::Create) >= ROUNDS as u64 * 2);
    assert!(kext.sent(Opcode::Rename) >= ROUNDS as u64 * 4);
}

/// What `novncache` also guards: the kext enters a created name in its name cache
/// (`fuse_vget_i` from `fuse_vnop_create`), entry timeout or not, so without it B's lookup of
/// a name A just created at the root answers A's node. If this ever passes with 0 wrong
/// answers, the model has lost the kext's create path.
#[test]
fn without_novncache_a_name_one_runtime_creates_reaches_another() {
    let fs = shared_editable();
    let policy = with_option(macfuse_shared(), MountOption::NoVnCache, false);
    let mut kext = Kext::mount(fs.vfs.clone(), &policy);
    let wrong = alternate_with_writes(&mut kext, 10);
    assert!(wrong[1].count > 0 && wrong[2].count > 0, "{wrong:?}");
    // With it, the same interleaving is clean.
    let fs = shared_editable();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let wrong = alternate_with_writes(&mut kext, 10);
    assert!(wrong.iter().all(|w| w.count == 0), "{wrong:?}");
}

/// The creator's open takes CREATE's handle without an OPEN (`FN_CREATING`), and another
/// process's read-write open of the file reuses that handle while it is open; the last close
/// releases it once. What went through either open is one file.
#[test]
fn a_created_files_handle_serves_its_creator_and_is_reused_by_another_writer() {
    let fs = shared_editable();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let created = kext.create(A, "bin/new", 0o644).unwrap();
    assert_eq!(kext.write(A, created, 0, b"from A").unwrap(), 6);
    let again = kext.open_rw(A_CHILD, "bin/new").unwrap();
    assert_eq!(kext.sent(Opcode::Open), 0, "no OPEN for either");
    assert_eq!(kext.write(A_CHILD, again, 6, b" and child").unwrap(), 10);
    kext.close(A, created);
    assert_eq!(kext.sent(Opcode::Release), 0, "the child still holds it");
    kext.close(A_CHILD, again);
    assert_eq!(kext.sent(Opcode::Release), 1);
    assert_eq!(kext.read_file(B, "bin/new").unwrap_err(), libc::ENOENT);
    assert_eq!(kext.read_file(A, "bin/new").unwrap(), b"from A and child");
    assert_eq!(kext.lstat(A, "bin/new").unwrap().size, 16);
}

/// The kext keeps one vnode per node id, with the attributes it was made with: a name
/// unlinked and created again must come back as a new node, or the old vnode's attributes
/// (size, type) would answer for the new file. The core never reuses a node id.
#[test]
fn a_name_created_again_gets_a_new_node_so_no_stale_vnode_answers() {
    let fs = shared_editable();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let first = kext.write_file(A, "again", b"abc").unwrap();
    assert_eq!(kext.lstat(A, "again").unwrap().size, 3);
    kext.unlink(A, "again").unwrap();
    assert_eq!(kext.lstat(A, "again").unwrap_err(), libc::ENOENT);
    let second = kext.write_file(A, "again", b"0123456789").unwrap();
    assert_ne!(first, second);
    assert_eq!(kext.lstat(A, "again").unwrap().size, 10);
    assert_eq!(kext.read_file(A, "again").unwrap(), b"0123456789");
}

/// The caller the core's calls behind the kext's back are made as: runtime A's root.
fn as_a() -> spfs_router::Caller {
    spfs_router::Caller {
        pid: A,
        uid: 0,
        gid: 0,
    }
}

/// The node id the core gives `path` in A's view.
fn node_of(vfs: &Vfs, path: &str) -> u64 {
    path.split('/').fold(spfs_router::ROOT, |dir, name| {
        vfs.lookup(A, dir, name.as_bytes()).unwrap().node
    })
}

/// Writes `data` over file `path` of A's view in the core, behind the kext's back.
fn write_behind(vfs: &Vfs, path: &str, data: &[u8]) {
    let node = node_of(vfs, path);
    let handle = vfs.open(A, node, true).unwrap();
    vfs.write(node, handle, 0, data).unwrap();
    vfs.release(handle);
}

/// A reset on a Mac: a file of A's changed in the core stays stale in the kext (its data in
/// the UBC, its size on the vnode: a LOOKUP reply does not refresh an existing vnode) until
/// INVAL_INODE, which drops both and fetches the attributes again.
#[test]
fn a_files_new_content_shows_through_the_kext_after_its_node_is_invalidated() {
    let fs = shared_editable();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    assert_eq!(kext.read_file(A, "bin/tool").unwrap(), b"aaaa");
    write_behind(&fs.vfs, "bin/tool", b"changed behind");
    assert_eq!(
        kext.read_file(A, "bin/tool").unwrap(),
        b"aaaa",
        "stale data"
    );
    assert_eq!(kext.lstat(A, "bin/tool").unwrap().size, 4, "stale size");

    let getattrs = kext.sent(Opcode::Getattr);
    kext.invalidator()
        .invalidate(&[spfs_router::Invalidation::Node(node_of(
            &fs.vfs, "bin/tool",
        ))])
        .unwrap();
    assert_eq!(kext.take_writes(), [Ok(())]);
    assert_eq!(
        kext.sent(Opcode::Getattr),
        getattrs + 1,
        "the GETATTR thread"
    );
    assert_eq!(kext.lstat(A, "bin/tool").unwrap().size, 14);
    assert_eq!(kext.read_file(A, "bin/tool").unwrap(), b"changed behind");
}

/// On a volume that keeps the name cache (a per-runtime volume: no `novncache`), a name
/// removed in the core answers from the cache until INVAL_ENTRY purges it; a name made in
/// the core shows at once (the kext caches no misses). INVAL_ENTRY alone leaves a changed
/// file's vnode stale: the core must name the node too.
#[test]
fn names_removed_behind_the_kext_go_after_inval_entry_and_changed_files_need_inval_inode() {
    let fs = shared_editable();
    let policy = with_option(macfuse_shared(), MountOption::NoVnCache, false);
    let mut kext = Kext::mount(fs.vfs.clone(), &policy);
    assert_eq!(kext.read_file(A, "bin/tool").unwrap(), b"aaaa");
    assert_eq!(kext.lstat(A, "bin/gone").unwrap_err(), libc::ENOENT);
    let bin = node_of(&fs.vfs, "bin");
    let tool = node_of(&fs.vfs, "bin/tool");
    fs.vfs
        .create(&as_a(), bin, b"gone", 0o644)
        .map(|(_, handle)| fs.vfs.release(handle))
        .unwrap();
    assert!(kext.lstat(A, "bin/gone").is_ok(), "no miss was cached");
    fs.vfs.unlink(&as_a(), bin, b"gone").unwrap();
    write_behind(&fs.vfs, "bin/tool", b"changed behind");
    let lookups = kext.sent(Opcode::Lookup);
    assert!(
        kext.lstat(A, "bin/gone").is_ok(),
        "answered from the name cache"
    );
    assert_eq!(kext.sent(Opcode::Lookup), lookups, "without asking");

    let entry = |name: &[u8]| spfs_router::Invalidation::Entry {
        parent: bin,
        name: name.to_vec(),
    };
    kext.invalidator()
        .invalidate(&[entry(b"gone"), entry(b"tool")])
        .unwrap();
    assert_eq!(kext.take_writes(), [Ok(()), Ok(())]);
    assert_eq!(kext.lstat(A, "bin/gone").unwrap_err(), libc::ENOENT);
    assert_eq!(
        kext.lstat(A, "bin/tool").unwrap().size,
        4,
        "looked up again, but the vnode keeps its attributes"
    );
    kext.invalidator()
        .invalidate(&[spfs_router::Invalidation::Node(tool)])
        .unwrap();
    assert_eq!(kext.take_writes(), [Ok(())]);
    assert_eq!(kext.read_file(A, "bin/tool").unwrap(), b"changed behind");
}

/// What the kext refuses of a notification: a length that is not the header's, a code past
/// the ABI's, a body of the wrong size (`EINVAL`), a node or parent it holds no vnode of
/// (`ENOENT`: nothing to forget, which the service's `Invalidator` counts as done), and
/// anything once the mount is dead (`ENOTCONN`).
#[test]
fn the_kext_audits_notifications_and_answers_for_what_it_does_not_hold() {
    let fs = shared();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let header = |len: usize, code: i32| {
        [
            (len as u32).to_ne_bytes().as_slice(),
            &code.to_ne_bytes(),
            &0u64.to_ne_bytes(),
        ]
        .concat()
    };
    let inode_body = [7u64.to_ne_bytes(), 0u64.to_ne_bytes(), 0u64.to_ne_bytes()].concat();
    let good = [header(40, 2), inode_body.clone()].concat();
    assert_eq!(kext.device_write(&good), Err(libc::ENOENT), "no vnode 7");
    assert_eq!(kext.device_write(&good[..39]), Err(libc::EINVAL), "torn");
    let unknown = [header(40, 7), inode_body.clone()].concat();
    assert_eq!(kext.device_write(&unknown), Err(libc::EINVAL));
    let short = [header(32, 2), inode_body[..16].to_vec()].concat();
    assert_eq!(kext.device_write(&short), Err(libc::EINVAL));
    let root = [
        header(40, 2),
        spfs_router::ROOT.to_ne_bytes().to_vec(),
        vec![0; 16],
    ]
    .concat();
    assert_eq!(kext.device_write(&root), Ok(()));
    kext.server_died();
    assert_eq!(kext.device_write(&root), Err(libc::ENOTCONN));
}

/// The reset end to end on a Mac: A edits through the kext (so the kext caches the edited
/// file's data and size), the core's reset runs behind its back, and the kext shows the edits
/// until the reset's own invalidations reach it; then A sees the layers again.
#[test]
fn a_reset_shows_through_the_kext_after_the_invalidations_it_returns() {
    let fs = shared_editable();
    let mut kext = Kext::mount(fs.vfs.clone(), &macfuse_shared());
    let fd = kext.open_rw(A, "bin/tool").unwrap();
    assert_eq!(kext.write(A, fd, 0, b"edited by A").unwrap(), 11);
    kext.close(A, fd);
    kext.write_file(A, "bin/made", b"made").unwrap();
    let edited = |kext: &mut Kext| {
        (
            kext.read_file(A, "bin/tool").unwrap(),
            kext.lstat(A, "bin/tool").unwrap().size,
            kext.lstat(A, "bin/made").is_ok(),
        )
    };
    assert_eq!(edited(&mut kext), (b"edited by A".to_vec(), 11, true));

    let Routing::Shared(router) = fs.vfs.routing() else {
        unreachable!("the shared layout")
    };
    let forget = fs.vfs.reset(&router.resolve(A), &[]).unwrap();
    assert_eq!(
        edited(&mut kext).0,
        b"edited by A",
        "the UBC still holds the edit"
    );

    kext.invalidator().invalidate(&forget).unwrap();
    let results = kext.take_writes();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(()) | Err(libc::ENOENT))),
        "{results:?}"
    );
    assert_eq!(edited(&mut kext), (b"aaaa".to_vec(), 4, false));
}
