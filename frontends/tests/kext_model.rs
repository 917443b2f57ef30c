//! What a Mac with the macFUSE kext would answer, on Linux: the kext model
//! (`support/kext/`) between simulated processes and the real adapter, mounted with the macFUSE
//! session's own policy and options. First the model's own behaviour (each a kext behaviour
//! read in its source), then isolation through it (DESIGN.md §4 rule 3 as a Mac keeps it).

#[path = "support/kext/mod.rs"]
mod kext;

use std::path::Path;
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

/// Writes `bytes` to `root/rel`, creating parents.
fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// The shared layout over two runtimes, A and B, with the views of `frontends/tests/isolation.rs`.
struct Shared {
    _layers: tempfile::TempDir,
    vfs: Arc<Vfs>,
}

fn shared() -> Shared {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    put(&a, "bin/tool", b"aaaa");
    put(&b, "bin/tool", b"bbbbbbbb");
    put(&a, "share/x/y/deep", b"deep-a");
    put(&b, "share/x/y/deep", b"deep-b");
    std::fs::create_dir_all(a.join("only-a")).unwrap();
    std::os::unix::fs::symlink("target-a", a.join("link")).unwrap();
    std::os::unix::fs::symlink("target-b", b.join("link")).unwrap();

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
            .register(pid, layer.to_str().unwrap(), &Owner::trusted(0, 0), &[])
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
    assert_eq!(root.mode, libc::S_IFDIR | libc::S_IRWXU);
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
