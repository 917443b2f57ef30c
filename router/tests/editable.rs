//! Editable views: the overlay's semantics through the `Vfs` write API, and what each change
//! leaves in the scratch (OCI directory-layer format).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Seen, materialize, root_attr, walk};
use spfs_router::spec::ResolvedSpec;
use spfs_router::{
    Attr, Caller, FileKind, FsError, Invalidation, NodeId, ROOT, RenameMode, Routing, Scratch,
    SetAttr, TimeSet, Timestamp, ToErrno, Vfs, View,
};
use spfs_storage::write::Node;

/// The owner of the test views: whoever runs the tests, so new entries need no chown.
fn me() -> Caller {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Caller { pid: 0, uid, gid }
}

/// A lower layer, a scratch, and the editable view over them.
struct Fixture {
    tmp: tempfile::TempDir,
    vfs: Arc<Vfs>,
}

impl Fixture {
    fn layer(&self) -> PathBuf {
        self.tmp.path().join("layer")
    }

    fn scratch(&self) -> PathBuf {
        self.tmp.path().join("scratch")
    }

    /// The node of `path` (slash-separated) in the view.
    fn node(&self, path: &str) -> NodeId {
        let mut node = ROOT;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            node = self.vfs.lookup(0, node, part.as_bytes()).unwrap().node;
        }
        node
    }

    fn attr(&self, path: &str) -> Attr {
        self.vfs.getattr(0, self.node(path)).unwrap()
    }

    fn read(&self, path: &str) -> Vec<u8> {
        let node = self.node(path);
        self.vfs.read(node, 0, 0, 1 << 20).unwrap()
    }

    fn errno(&self, parent: &str, name: &str) -> i32 {
        match self.vfs.lookup(0, self.node(parent), name.as_bytes()) {
            Ok(_) => 0,
            Err(err) => err.to_errno(),
        }
    }

    /// The scratch's entries under `dir` (relative), sorted.
    fn upper(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.scratch().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The lower layer: `dir/{a,b}`, `dir/sub/deep`, `file` (0640, "lower"), `link -> file`,
/// `empty/`.
fn make_layer(layer: &Path) {
    fs::create_dir_all(layer.join("dir/sub")).unwrap();
    fs::create_dir_all(layer.join("empty")).unwrap();
    fs::write(layer.join("dir/a"), b"a").unwrap();
    fs::write(layer.join("dir/b"), b"bb").unwrap();
    fs::write(layer.join("dir/sub/deep"), b"deep").unwrap();
    fs::write(layer.join("file"), b"lower").unwrap();
    fs::set_permissions(layer.join("file"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("file", layer.join("link")).unwrap();
    let old = filetime(1_600_000_000);
    for p in ["dir/a", "file", "dir", "dir/sub"] {
        set_mtime(&layer.join(p), old);
    }
}

fn filetime(secs: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: secs as _,
        tv_nsec: 0,
    }
}

fn set_mtime(path: &Path, t: libc::timespec) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string and two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) };
    assert_eq!(rc, 0);
}

fn editable_over(layers: &[PathBuf], scratch: &Path, id: u32) -> Arc<View> {
    let (uid, gid) = (me().uid, me().gid);
    let view = View::build(
        id,
        &ResolvedSpec::of_directories(layers.to_vec()),
        &root_attr(),
        (uid, gid),
    );
    Arc::new(view.with_scratch(Scratch::open(scratch, true).unwrap()))
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    make_layer(&tmp.path().join("layer"));
    let view = editable_over(&[tmp.path().join("layer")], &tmp.path().join("scratch"), 3);
    Fixture {
        vfs: Arc::new(Vfs::new(Routing::Fixed(view))),
        tmp,
    }
}

/// What `LAYERS+SCRATCH` registered read-only shows.
fn read_only_walk(layers: &[PathBuf], scratch: &Path) -> std::collections::BTreeMap<Vec<u8>, Seen> {
    let mut all = layers.to_vec();
    all.push(scratch.to_path_buf());
    let view = View::build(9, &ResolvedSpec::of_directories(all), &root_attr(), (0, 0));
    walk(&Arc::new(Vfs::new(Routing::Fixed(Arc::new(view)))), 0)
}

#[test]
fn create_write_and_read_back_land_in_the_scratch() {
    let f = fixture();
    let (attr, handle) = f.vfs.create(&me(), ROOT, b"new", 0o640).unwrap();
    assert_eq!(attr.perm, 0o640);
    assert_eq!(f.vfs.write(attr.node, handle, 0, b"hello").unwrap(), 5);
    // By node id alone, as a kernel that skips OPEN writes.
    assert_eq!(f.vfs.write(attr.node, 0, 5, b"!").unwrap(), 1);
    f.vfs.release(handle);
    assert_eq!(f.read("new"), b"hello!");
    assert_eq!(f.attr("new").size, 6);
    assert_eq!(fs::read(f.scratch().join("new")).unwrap(), b"hello!");
    let meta = fs::metadata(f.scratch().join("new")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!(f.upper(""), ["new"]);
}

#[test]
fn a_write_to_a_lower_file_copies_it_up_with_its_mode_and_times() {
    let f = fixture();
    let node = f.node("dir/a");
    // Read first, so the open-file cache holds the lower file.
    assert_eq!(f.vfs.read(node, 0, 0, 10).unwrap(), b"a");
    f.vfs.write(node, 0, 1, b"bc").unwrap();
    assert_eq!(f.read("dir/a"), b"abc");
    assert_eq!(
        fs::read(f.layer().join("dir/a")).unwrap(),
        b"a",
        "the layer is untouched"
    );
    assert_eq!(fs::read(f.scratch().join("dir/a")).unwrap(), b"abc");
    assert_eq!(f.upper("dir"), ["a"]);
    // The parent copied up as a directory with the lower's mode and times.
    let dir = fs::metadata(f.scratch().join("dir")).unwrap();
    let lower_dir = fs::metadata(f.layer().join("dir")).unwrap();
    assert_eq!(dir.mode(), lower_dir.mode());
    assert_eq!(dir.mtime(), 1_600_000_000);
    assert_eq!(
        f.attr("dir/a").node,
        node,
        "a copied-up entry keeps its node id"
    );
    // A truncate copies up a file too, keeping its mode; the times of a copy are the lower's.
    let file = f.node("file");
    let attr = f
        .vfs
        .setattr(
            &me(),
            file,
            None,
            &SetAttr {
                size: Some(2),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!((attr.size, attr.perm), (2, 0o640));
    assert_eq!(fs::read(f.scratch().join("file")).unwrap(), b"lo");
}

#[test]
fn a_copy_up_keeps_the_lower_times() {
    let f = fixture();
    let node = f.node("dir/a");
    f.vfs
        .setattr(
            &me(),
            node,
            None,
            &SetAttr {
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .unwrap();
    let meta = fs::metadata(f.scratch().join("dir/a")).unwrap();
    assert_eq!(meta.mtime(), 1_600_000_000);
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(fs::read(f.scratch().join("dir/a")).unwrap(), b"a");
}

#[test]
fn mkdir_and_unlink_leave_directories_and_whiteouts() {
    let f = fixture();
    let dir = f.vfs.mkdir(&me(), f.node("dir"), b"made", 0o750).unwrap();
    assert_eq!((dir.kind, dir.perm), (FileKind::Directory, 0o750));
    assert_eq!(f.attr("dir").nlink, 4, "dir/sub and dir/made");
    f.vfs.unlink(&me(), f.node("dir"), b"a").unwrap();
    assert_eq!(f.errno("dir", "a"), libc::ENOENT);
    assert_eq!(f.upper("dir"), [".wh.a", "made"]);
    assert_eq!(
        fs::metadata(f.scratch().join("dir/.wh.a")).unwrap().len(),
        0
    );
    // A directory over a removed lower one is opaque.
    f.vfs.rmdir(&me(), f.node("dir"), b"sub").unwrap_err(); // not empty
    f.vfs.unlink(&me(), f.node("dir/sub"), b"deep").unwrap();
    f.vfs.rmdir(&me(), f.node("dir"), b"sub").unwrap();
    assert_eq!(f.errno("dir", "sub"), libc::ENOENT);
    f.vfs.mkdir(&me(), f.node("dir"), b"sub", 0o755).unwrap();
    assert!(common::list(&f.vfs, 0, f.node("dir/sub")).is_empty());
    assert_eq!(f.upper("dir/sub"), [".wh..wh..opq"]);
    assert!(
        !f.upper("dir").contains(&".wh.sub".to_string()),
        "the whiteout goes"
    );
    // An upper-only file goes without a whiteout.
    f.vfs.create(&me(), ROOT, b"tmp", 0o600).unwrap();
    f.vfs.unlink(&me(), ROOT, b"tmp").unwrap();
    assert!(!f.upper("").iter().any(|n| n.contains("tmp")));
    assert_eq!(
        read_only_walk(&[f.layer()], &f.scratch()),
        walk(&f.vfs, 0),
        "LAYERS+SCRATCH read-only shows the same tree"
    );
}

#[test]
fn names_starting_with_wh_are_refused() {
    let f = fixture();
    let err = f.vfs.create(&me(), ROOT, b".wh.x", 0o644).unwrap_err();
    assert_eq!(err.to_errno(), libc::EINVAL);
    assert_eq!(
        f.vfs
            .mkdir(&me(), ROOT, b".wh..wh..opq", 0o755)
            .unwrap_err()
            .to_errno(),
        libc::EINVAL
    );
    assert!(f.upper("").is_empty());
}

#[test]
fn renaming_a_directory_with_a_lower_part_is_exdev() {
    let f = fixture();
    let err = f
        .vfs
        .rename(&me(), (ROOT, b"dir"), (ROOT, b"moved"), RenameMode::Replace)
        .unwrap_err();
    assert_eq!(err.to_errno(), libc::EXDEV);
    // Merged (copied up) still counts as having a lower part.
    f.vfs.write(f.node("dir/a"), 0, 0, b"x").unwrap();
    let err = f
        .vfs
        .rename(&me(), (ROOT, b"dir"), (ROOT, b"moved"), RenameMode::Replace)
        .unwrap_err();
    assert_eq!(err.to_errno(), libc::EXDEV);
    // An upper-only directory moves; over a lower name it becomes opaque.
    let made = f.vfs.mkdir(&me(), ROOT, b"made", 0o755).unwrap();
    f.vfs.rmdir(&me(), ROOT, b"empty").unwrap();
    f.vfs
        .rename(
            &me(),
            (ROOT, b"made"),
            (ROOT, b"empty"),
            RenameMode::Replace,
        )
        .unwrap();
    assert_eq!(
        f.attr("empty").node,
        made.node,
        "a renamed entry keeps its node id"
    );
    assert_eq!(f.upper("empty"), [".wh..wh..opq"]);
}

#[test]
fn rename_of_a_lower_file_copies_it_up_and_whites_out_the_old_name() {
    let f = fixture();
    let node = f.node("file");
    f.vfs
        .rename(
            &me(),
            (ROOT, b"file"),
            (f.node("dir"), b"moved"),
            RenameMode::Replace,
        )
        .unwrap();
    assert_eq!(f.attr("dir/moved").node, node);
    assert_eq!(f.read("dir/moved"), b"lower");
    assert_eq!(f.errno("", "file"), libc::ENOENT);
    assert!(f.upper("").contains(&".wh.file".to_string()));
    assert_eq!(f.upper("dir"), ["moved"]);
    let err = f
        .vfs
        .rename(
            &me(),
            (f.node("dir"), b"a"),
            (f.node("dir"), b"b"),
            RenameMode::NoReplace,
        )
        .unwrap_err();
    assert_eq!(err.to_errno(), libc::EEXIST);
    let err = f
        .vfs
        .rename(
            &me(),
            (f.node("dir"), b"a"),
            (ROOT, b"x"),
            RenameMode::Exchange,
        )
        .unwrap_err();
    assert_eq!(err.to_errno(), libc::EINVAL);
    assert_eq!(read_only_walk(&[f.layer()], &f.scratch()), walk(&f.vfs, 0));
}

#[test]
fn symlinks_links_and_times() {
    let f = fixture();
    f.vfs.symlink(&me(), ROOT, b"sl", b"dir/a").unwrap();
    assert_eq!(f.vfs.readlink(f.node("sl")).unwrap(), b"dir/a");
    let node = f.node("dir/b");
    let linked = f.vfs.link(&me(), node, ROOT, b"hard").unwrap();
    assert_eq!(linked.node, node, "a hard link is the same node");
    assert_eq!(linked.nlink, 2);
    f.vfs.write(node, 0, 0, b"XY").unwrap();
    assert_eq!(f.read("hard"), b"XY");
    let t = Timestamp {
        secs: 1_234_567_890,
        nanos: 5,
    };
    let attr = f
        .vfs
        .setattr(
            &me(),
            f.node("hard"),
            None,
            &SetAttr {
                mtime: Some(TimeSet::At(t)),
                atime: Some(TimeSet::Now),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(attr.mtime, t);
    assert_eq!(read_only_walk(&[f.layer()], &f.scratch()), walk(&f.vfs, 0));
}

#[test]
fn an_unlinked_open_file_keeps_working_through_its_handle() {
    let f = fixture();
    let (attr, handle) = f.vfs.create(&me(), ROOT, b"gone", 0o644).unwrap();
    f.vfs.write(attr.node, handle, 0, b"still here").unwrap();
    f.vfs.unlink(&me(), ROOT, b"gone").unwrap();
    assert_eq!(
        f.vfs.read(attr.node, handle, 0, 100).unwrap(),
        b"still here"
    );
    f.vfs.write(attr.node, handle, 0, b"STILL").unwrap();
    assert_eq!(f.vfs.getattr(0, attr.node).unwrap().size, 10);
    assert_eq!(f.vfs.read(attr.node, handle, 0, 5).unwrap(), b"STILL");
    // A new entry never takes an old node id.
    let (again, h2) = f.vfs.create(&me(), ROOT, b"gone", 0o644).unwrap();
    assert_ne!(again.node, attr.node);
    f.vfs.release(h2);
    f.vfs.release(handle);
}

#[test]
fn a_durable_scratch_shows_its_changes_when_registered_again() {
    let f = fixture();
    f.vfs.create(&me(), f.node("dir"), b"kept", 0o600).unwrap();
    f.vfs.unlink(&me(), f.node("dir"), b"a").unwrap();
    f.vfs.mkdir(&me(), ROOT, b"newdir", 0o700).unwrap();
    f.vfs
        .link(&me(), f.node("file"), f.node("newdir"), b"second")
        .unwrap();
    f.vfs.rmdir(&me(), ROOT, b"empty").unwrap();
    f.vfs.mkdir(&me(), ROOT, b"empty", 0o700).unwrap();
    let before = walk(&f.vfs, 0);
    let layer = f.layer();
    let scratch = f.scratch();
    // A crash left a temp file: loading removes it.
    fs::write(scratch.join("dir/.wh..wh..tmp.1.1"), b"junk").unwrap();
    let tmp = f.tmp;
    drop(f.vfs);
    let view = editable_over(std::slice::from_ref(&layer), &scratch, 4);
    assert!(view.has_changes());
    let vfs = Arc::new(Vfs::new(Routing::Fixed(view)));
    assert_eq!(walk(&vfs, 0), before);
    assert!(!scratch.join("dir/.wh..wh..tmp.1.1").exists());
    drop(tmp);
}

#[test]
fn a_read_only_view_answers_erofs_and_a_stranger_eacces() {
    let tmp = tempfile::tempdir().unwrap();
    make_layer(&tmp.path().join("layer"));
    let view = View::build(
        5,
        &ResolvedSpec::of_directories([tmp.path().join("layer")]),
        &root_attr(),
        (me().uid, me().gid),
    );
    let vfs = Vfs::new(Routing::Fixed(Arc::new(view)));
    assert_eq!(
        vfs.create(&me(), ROOT, b"x", 0o644).unwrap_err().to_errno(),
        libc::EROFS
    );
    let f = fixture();
    let stranger = Caller {
        pid: 0,
        uid: me().uid + 1000,
        gid: 1,
    };
    let err = f.vfs.mkdir(&stranger, ROOT, b"x", 0o755).unwrap_err();
    assert!(matches!(err, FsError::NotOwner { .. }));
    assert_eq!(err.to_errno(), libc::EACCES);
}

#[test]
fn a_deleted_scratch_gives_errors_not_a_panic() {
    let f = fixture();
    let (x, _) = f.vfs.create(&me(), ROOT, b"x", 0o644).unwrap();
    let file = f.node("file");
    fs::remove_dir_all(f.scratch()).unwrap();
    assert_eq!(
        f.vfs.getattr(0, x.node).unwrap_err().to_errno(),
        libc::ENOENT
    );
    assert_eq!(
        f.vfs.lookup(0, ROOT, b"x").unwrap_err().to_errno(),
        libc::ENOENT
    );
    assert_eq!(
        f.vfs
            .mkdir(&me(), ROOT, b"y", 0o755)
            .unwrap_err()
            .to_errno(),
        libc::ENOENT
    );
    assert_eq!(
        f.vfs.write(file, 0, 0, b"z").unwrap_err().to_errno(),
        libc::ENOENT
    );
    assert!(f.vfs.statfs(0, ROOT).is_err());
}

#[test]
fn statfs_of_an_editable_view_is_the_scratchs() {
    let f = fixture();
    let st = f.vfs.statfs(0, ROOT).unwrap();
    assert!(st.blocks > 0 && st.free_blocks > 0 && st.files > 0);
}

#[test]
fn a_change_in_one_runtime_is_seen_by_that_runtime_only() {
    use spfs_router::process::FakeProcessTable;
    use spfs_router::{Owner, Router};
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("layer");
    make_layer(&layer);
    let processes = Arc::new(FakeProcessTable::new());
    processes.spawn(1, 0, 1, 0);
    processes.spawn(10, 1, 10, me().uid);
    processes.spawn(11, 10, 11, me().uid);
    processes.spawn(20, 1, 20, me().uid);
    processes.spawn(30, 1, 30, me().uid);
    let router = Arc::new(Router::new(processes, root_attr()));
    let owner = Owner::trusted(me().uid, me().gid);
    let spec = layer.to_str().unwrap();
    let scratch = |n: &str| Some(Scratch::open(&tmp.path().join(n), false).unwrap());
    router
        .register(10, spec, &owner, &[], scratch("a"))
        .unwrap();
    router
        .register(20, spec, &owner, &[], scratch("b"))
        .unwrap();
    let vfs = Vfs::new(Routing::Shared(router.clone()));
    let in_a = Caller { pid: 11, ..me() };
    let (made, handle) = vfs.create(&in_a, ROOT, b"made", 0o644).unwrap();
    vfs.write(made.node, handle, 0, b"mine").unwrap();
    vfs.release(handle);
    let dir = vfs.lookup(11, ROOT, b"dir").unwrap().node;
    vfs.unlink(&in_a, dir, b"a").unwrap();
    assert_eq!(vfs.lookup(11, ROOT, b"made").unwrap().node, made.node);
    assert_eq!(vfs.read(made.node, 0, 0, 10).unwrap(), b"mine");
    for other in [20, 30] {
        assert_eq!(
            vfs.lookup(other, ROOT, b"made").unwrap_err().to_errno(),
            libc::ENOENT
        );
        assert!(
            !common::list(&vfs, other, ROOT)
                .iter()
                .any(|(n, _)| n == b"made")
        );
    }
    let b_dir = vfs.lookup(20, ROOT, b"dir").unwrap().node;
    assert_ne!(b_dir, dir, "each view has its own node ids");
    assert!(vfs.lookup(20, b_dir, b"a").is_ok(), "B still sees dir/a");
    assert!(!tmp.path().join("b/made").exists());
    // An outsider sees the empty view, which takes no writes.
    let outsider = Caller { pid: 30, ..me() };
    assert_eq!(
        vfs.create(&outsider, ROOT, b"x", 0o644)
            .unwrap_err()
            .to_errno(),
        libc::EROFS
    );
    // B's own change stays in B.
    vfs.mkdir(&Caller { pid: 20, ..me() }, ROOT, b"bdir", 0o755)
        .unwrap();
    assert_eq!(
        vfs.lookup(11, ROOT, b"bdir").unwrap_err().to_errno(),
        libc::ENOENT
    );
    assert!(
        router
            .view(spfs_router::node::decode(made.node).unwrap().0)
            .unwrap()
            .has_changes()
    );
}

#[test]
fn node_ids_are_unique_and_never_reused() {
    let f = fixture();
    let mut seen = std::collections::HashSet::new();
    for (_, attr) in common::list(&f.vfs, 0, ROOT) {
        assert!(seen.insert(attr.node));
    }
    for round in 0..20 {
        let name = format!("n{}", round % 3);
        let (attr, h) = f.vfs.create(&me(), ROOT, name.as_bytes(), 0o644).unwrap();
        f.vfs.release(h);
        assert!(
            seen.insert(attr.node),
            "node id {} handed out twice",
            attr.node
        );
        let dir = f.vfs.mkdir(&me(), ROOT, b"d", 0o755).unwrap();
        assert!(seen.insert(dir.node));
        f.vfs.rmdir(&me(), ROOT, b"d").unwrap();
        f.vfs.unlink(&me(), ROOT, name.as_bytes()).unwrap();
        // A stale id answers ENOENT, never another entry's attributes.
        assert_eq!(
            f.vfs.getattr(0, dir.node).unwrap_err().to_errno(),
            libc::ENOENT
        );
    }
}

#[test]
fn a_full_scratch_answers_enospc() {
    if !spfs_testkit::is_root() {
        spfs_testkit::skip("mounting a tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small");
    fs::create_dir(&mnt).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status();
    if !status.is_ok_and(|s| s.success()) {
        spfs_testkit::skip("mount -t tmpfs failed");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    make_layer(&tmp.path().join("layer"));
    let view = editable_over(&[tmp.path().join("layer")], &mnt.join("scratch"), 6);
    let vfs = Vfs::new(Routing::Fixed(view));
    let (attr, handle) = vfs.create(&me(), ROOT, b"big", 0o644).unwrap();
    let chunk = vec![7u8; 16 * 1024];
    let mut errno = 0;
    for i in 0..16u64 {
        if let Err(err) = vfs.write(attr.node, handle, i * chunk.len() as u64, &chunk) {
            errno = err.to_errno();
            break;
        }
    }
    assert_eq!(errno, libc::ENOSPC);
    let st = vfs.statfs(0, ROOT).unwrap();
    assert_eq!(st.free_blocks, 0);
}

#[test]
fn xattrs_fallocate_fsync_and_mknod() {
    let f = fixture();
    let node = f.node("dir/b");
    assert!(matches!(
        f.vfs.getxattr(node, b"user.k"),
        Err(FsError::NoAttribute)
    ));
    match f
        .vfs
        .setxattr(&me(), node, b"user.k", b"v", spfs_router::XattrSet::Create)
    {
        Ok(()) => {
            assert_eq!(f.vfs.getxattr(node, b"user.k").unwrap(), b"v");
            assert_eq!(f.vfs.listxattr(node).unwrap(), b"user.k\0");
            let err = f
                .vfs
                .setxattr(&me(), node, b"user.k", b"w", spfs_router::XattrSet::Create)
                .unwrap_err();
            assert_eq!(err.to_errno(), libc::EEXIST);
            f.vfs.removexattr(&me(), node, b"user.k").unwrap();
            assert!(matches!(
                f.vfs.getxattr(node, b"user.k"),
                Err(FsError::NoAttribute)
            ));
        }
        // A scratch filesystem without user xattrs: the errno reaches the caller.
        Err(err) => assert_eq!(err.to_errno(), libc::EOPNOTSUPP),
    }
    // setxattr copied the file up, content and all.
    assert_eq!(fs::read(f.scratch().join("dir/b")).unwrap(), b"bb");
    #[cfg(target_os = "linux")]
    {
        let file = f.node("file");
        f.vfs.fallocate(file, 0, 0, 0, 8192).unwrap();
        assert_eq!(f.attr("file").size, 8192);
        assert_eq!(&f.read("file")[..5], b"lower");
    }
    f.vfs.fsync(f.node("file"), 0, false).unwrap();
    // mode_t is u16 on macOS, u32 on Linux.
    #[allow(clippy::unnecessary_cast)]
    let (fifo, regular) = (libc::S_IFIFO as u32 | 0o644, libc::S_IFREG as u32 | 0o604);
    assert_eq!(
        f.vfs
            .mknod(&me(), ROOT, b"p", fifo, 0)
            .unwrap_err()
            .to_errno(),
        libc::EPERM
    );
    let regular = f.vfs.mknod(&me(), ROOT, b"r", regular, 0).unwrap();
    assert_eq!((regular.kind, regular.perm), (FileKind::File, 0o604));
}

#[test]
fn until_the_first_change_the_view_serves_the_read_only_way() {
    let f = fixture();
    let view = match f.vfs.routing() {
        Routing::Fixed(view) => view.clone(),
        Routing::Shared(_) => unreachable!(),
    };
    let before = walk(&f.vfs, 0);
    assert!(!view.has_changes(), "reads change nothing");
    assert!(f.upper("").is_empty());
    // A refused change changes nothing either.
    f.vfs.mkdir(&me(), ROOT, b"dir", 0o755).unwrap_err();
    assert!(!view.has_changes());
    f.vfs.mkdir(&me(), ROOT, b"x", 0o755).unwrap();
    assert!(view.has_changes());
    f.vfs.rmdir(&me(), ROOT, b"x").unwrap();
    assert_eq!(walk(&f.vfs, 0), before);
}

#[test]
fn a_directory_replacing_a_lower_one_is_opaque_and_a_merged_one_is_removed_whole() {
    let f = fixture();
    // Merged: dir has an upper part (dir/a copied up) and lower entries.
    f.vfs.write(f.node("dir/a"), 0, 0, b"A").unwrap();
    for name in [&b"a"[..], b"b"] {
        f.vfs.unlink(&me(), f.node("dir"), name).unwrap();
    }
    f.vfs.unlink(&me(), f.node("dir/sub"), b"deep").unwrap();
    f.vfs.rmdir(&me(), f.node("dir"), b"sub").unwrap();
    f.vfs.rmdir(&me(), ROOT, b"dir").unwrap();
    assert_eq!(f.upper(""), [".wh.dir"]);
    // Moved over a lower name, an upper-only directory hides what was below.
    f.vfs.mkdir(&me(), ROOT, b"fresh", 0o755).unwrap();
    f.vfs
        .create(&me(), f.node("fresh"), b"inside", 0o644)
        .unwrap();
    f.vfs
        .rename(&me(), (ROOT, b"fresh"), (ROOT, b"dir"), RenameMode::Replace)
        .unwrap();
    let names: Vec<_> = common::list(&f.vfs, 0, f.node("dir"))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, [b"inside".to_vec()]);
    assert_eq!(f.upper("dir"), [".wh..wh..opq", "inside"]);
    assert_eq!(
        f.upper(""),
        ["dir"],
        "the whiteout goes once the directory is in place"
    );
    assert_eq!(read_only_walk(&[f.layer()], &f.scratch()), walk(&f.vfs, 0));
}

/// F1 of the differential test: overlayfs answers EXDEV before looking at the target.
#[test]
fn regression_exdev_comes_before_a_non_empty_target() {
    let f = fixture();
    let err = f
        .vfs
        .rename(&me(), (ROOT, b"empty"), (ROOT, b"dir"), RenameMode::Replace)
        .unwrap_err();
    assert_eq!(err.to_errno(), libc::EXDEV);
}

/// F2 of the differential test: a lower file removed while open (a kernel that skips OPEN
/// never said so) keeps working: fstat shows no links, truncate and write change it.
#[test]
fn regression_a_removed_lower_file_still_open_can_be_changed() {
    let f = fixture();
    let node = f.node("dir/a");
    assert_eq!(f.vfs.read(node, 0, 0, 10).unwrap(), b"a");
    f.vfs.unlink(&me(), f.node("dir"), b"a").unwrap();
    assert_eq!(f.vfs.getattr(0, node).unwrap().nlink, 0);
    let size = SetAttr {
        size: Some(5),
        ..Default::default()
    };
    assert_eq!(f.vfs.setattr(&me(), node, None, &size).unwrap().size, 5);
    f.vfs.write(node, 0, 1, b"bc").unwrap();
    assert_eq!(f.vfs.read(node, 0, 0, 10).unwrap(), b"abc\0\0");
    assert_eq!(f.vfs.getattr(0, node).unwrap().nlink, 0);
    assert_eq!(
        f.upper("dir"),
        [".wh.a"],
        "the anonymous copy has no name in the scratch"
    );
    assert!(f.upper("").iter().all(|n| !n.starts_with(".wh..wh..tmp")));
}

#[test]
fn concurrent_changes_and_reads_neither_deadlock_nor_mix_up_files() {
    let f = fixture();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let vfs = f.vfs.clone();
            std::thread::spawn(move || {
                let me = me();
                for i in 0..100 {
                    let name = format!("t{t}-{}", i % 5);
                    let body = format!("{t}:{i}");
                    let (attr, h) = vfs.create(&me, ROOT, name.as_bytes(), 0o644).unwrap();
                    vfs.write(attr.node, h, 0, body.as_bytes()).unwrap();
                    assert_eq!(vfs.read(attr.node, 0, 0, 64).unwrap(), body.as_bytes());
                    vfs.release(h);
                    // Lower files copied up by several threads at once.
                    let a = vfs.lookup(0, ROOT, b"file").unwrap().node;
                    vfs.read(a, 0, 0, 64).unwrap();
                    vfs.getattr(0, a).unwrap();
                    common::list(&vfs, 0, ROOT);
                    vfs.unlink(&me, ROOT, name.as_bytes()).unwrap();
                }
                let file = vfs.lookup(0, ROOT, b"file").unwrap().node;
                vfs.write(file, 0, 0, b"L").unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(f.read("file"), b"Lower");
    assert_eq!(f.upper(""), ["file"]);
}

/// Linux's no-open mode: the kernel sends no RELEASE, not even for files from CREATE, so a
/// handle that pinned its file would hold it open for good (found by the adapter's isolation
/// test: thousands of deleted files held open, then EMFILE).
#[cfg(target_os = "linux")]
#[test]
fn regression_in_no_open_mode_created_files_are_not_held_open_for_good() {
    let f = fixture();
    f.vfs.set_no_open();
    // Only this test's files: the other tests of this binary open files at the same time.
    let scratch = f.scratch();
    let count = || {
        fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(&scratch))
            .count()
    };
    let start = count();
    let me = me();
    for _ in 0..1000 {
        let (attr, _never_released) = f.vfs.create(&me, ROOT, b"top", 0o644).unwrap();
        f.vfs.write(attr.node, 0, 0, b"x").unwrap();
        f.vfs.unlink(&me, ROOT, b"top").unwrap();
    }
    let held = count() - start;
    // The cache's bound: 32 shards of 4 cached files and 8 kept ones of removed entries.
    assert!(held <= 32 * (4 + 8), "{held} files held open");
}

/// Found by the differential test: in a setgid directory a new directory is setgid too, and
/// new entries take the directory's group, as the kernel makes them in overlayfs's upper.
#[test]
fn regression_a_setgid_directory_passes_its_group_and_bit_on() {
    let f = fixture();
    let dir = f.node("dir");
    let changes = SetAttr {
        mode: Some(0o2750),
        gid: Some(4242),
        ..Default::default()
    };
    f.vfs.setattr(&me(), dir, None, &changes).unwrap();
    let sub = f.vfs.mkdir(&me(), dir, b"made", 0o444).unwrap();
    let file = f.vfs.mknod(&me(), dir, b"file", 0o644, 0).unwrap();
    if spfs_testkit::is_root() {
        assert_eq!((sub.perm, sub.gid), (0o2444, 4242));
        assert_eq!((file.perm, file.gid), (0o644, 4242));
    }
}

/// F-adapter-1: a file removed while open (a kernel in no-open mode never said so) stays
/// readable and writable until the kernel forgets its node, however many files come after.
#[test]
fn regression_a_removed_file_lives_until_the_kernel_forgets_it() {
    let f = fixture();
    f.vfs.set_no_open();
    let (attr, _) = f.vfs.create(&me(), ROOT, b"tmpfile", 0o644).unwrap();
    f.vfs.write(attr.node, 0, 0, b"before").unwrap();
    f.vfs.unlink(&me(), ROOT, b"tmpfile").unwrap();
    // A lower file, changed after its removal, too; and one replaced by a rename.
    let lower = f.node("dir/a");
    f.vfs.unlink(&me(), f.node("dir"), b"a").unwrap();
    f.vfs.write(lower, 0, 1, b"!").unwrap();
    let (over, _) = f.vfs.create(&me(), ROOT, b"over", 0o644).unwrap();
    f.vfs.write(over.node, 0, 0, b"old").unwrap();
    let (newer, _) = f.vfs.create(&me(), ROOT, b"newer", 0o644).unwrap();
    f.vfs
        .rename(
            &me(),
            (ROOT, b"newer"),
            (ROOT, b"over"),
            RenameMode::Replace,
        )
        .unwrap();
    for i in 0..300 {
        let (other, _) = f
            .vfs
            .create(&me(), ROOT, format!("o{i}").as_bytes(), 0o644)
            .unwrap();
        f.vfs.write(other.node, 0, 0, b"x").unwrap();
        f.vfs.read(other.node, 0, 0, 1).unwrap();
    }
    f.vfs.write(attr.node, 0, 6, b" after").unwrap();
    assert_eq!(f.vfs.read(attr.node, 0, 0, 64).unwrap(), b"before after");
    assert_eq!(f.vfs.getattr(0, attr.node).unwrap().nlink, 0);
    assert_eq!(f.vfs.read(lower, 0, 0, 64).unwrap(), b"a!");
    assert_eq!(f.vfs.read(over.node, 0, 0, 64).unwrap(), b"old");
    assert_ne!(newer.node, over.node);
    // Forgotten, and pushed out by newer files, it is gone.
    f.vfs.forget(attr.node, 1);
    for i in 0..300 {
        let node = f
            .vfs
            .lookup(0, ROOT, format!("o{i}").as_bytes())
            .unwrap()
            .node;
        f.vfs.read(node, 0, 0, 1).unwrap();
    }
    assert_eq!(
        f.vfs.read(attr.node, 0, 0, 64).unwrap_err().to_errno(),
        libc::ENOENT
    );
}

#[test]
fn a_changed_directory_resumes_at_every_offset_it_handed_out() {
    struct One(Option<(Vec<u8>, u64)>);
    impl spfs_router::DirectoryReplier for One {
        fn add(&mut self, entry: spfs_router::DirEntry<'_>) -> bool {
            if self.0.is_some() {
                return false;
            }
            self.0 = Some((entry.name.to_vec(), entry.offset));
            true
        }
    }
    let f = fixture();
    let dir = f.node("dir");
    f.vfs.unlink(&me(), dir, b"a").unwrap();
    f.vfs.create(&me(), dir, b"c", 0o644).unwrap();
    f.vfs.mkdir(&me(), dir, b"0", 0o755).unwrap();
    let (mut offset, mut names) = (0, Vec::new());
    loop {
        let mut one = One(None);
        f.vfs.readdir(0, dir, offset, &mut one).unwrap();
        let Some((name, next)) = one.0 else { break };
        names.push(String::from_utf8(name).unwrap());
        offset = next;
    }
    assert_eq!(names, [".", "..", "0", "b", "c", "sub"]);
}

#[test]
fn a_serving_read_only_view_made_editable_keeps_every_node_and_takes_writes() {
    let tmp = tempfile::tempdir().unwrap();
    make_layer(&tmp.path().join("layer"));
    let view = Arc::new(View::build(
        6,
        &ResolvedSpec::of_directories([tmp.path().join("layer")]),
        &root_attr(),
        (me().uid, me().gid),
    ));
    let vfs = Arc::new(Vfs::new(Routing::Fixed(view.clone())));
    let before = walk(&vfs, 0);
    let dir = vfs.lookup(0, ROOT, b"dir").unwrap();
    let a = vfs.lookup(0, dir.node, b"a").unwrap();
    assert_eq!(vfs.read(a.node, 0, 0, 10).unwrap(), b"a");
    assert_eq!(
        vfs.create(&me(), dir.node, b"new", 0o644)
            .unwrap_err()
            .to_errno(),
        libc::EROFS
    );

    let scratch = tmp.path().join("scratch");
    view.make_editable(Scratch::open(&scratch, false).unwrap())
        .unwrap();
    // Nothing moved: the same nodes, the same tree, and what was open reads on.
    assert_eq!(walk(&vfs, 0), before);
    assert_eq!(vfs.lookup(0, ROOT, b"dir").unwrap().node, dir.node);
    assert_eq!(vfs.read(a.node, 0, 0, 10).unwrap(), b"a");
    let (new, _) = vfs.create(&me(), dir.node, b"new", 0o644).unwrap();
    vfs.write(a.node, 0, 1, b"!").unwrap();
    assert_eq!(vfs.lookup(0, dir.node, b"new").unwrap().node, new.node);
    assert_eq!(fs::read(scratch.join("dir/a")).unwrap(), b"a!");
    assert!(scratch.join("dir/new").is_file());
    // Editable once: a second scratch is handed back and the first stays.
    let other = tmp.path().join("other");
    let refused = view
        .make_editable(Scratch::open(&other, false).unwrap())
        .unwrap_err();
    assert_eq!(refused.dir(), other);
    assert_eq!(view.scratch().unwrap().dir(), scratch);
}

#[test]
fn concurrent_writes_to_one_lower_file_copy_it_up_once_and_all_land() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = tmp.path().join("layer");
    let lower: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
    fs::create_dir_all(&layer).unwrap();
    fs::write(layer.join("big"), &lower).unwrap();
    let scratch = tmp.path().join("scratch");
    let vfs = Arc::new(Vfs::new(Routing::Fixed(editable_over(
        std::slice::from_ref(&layer),
        &scratch,
        8,
    ))));
    let node = vfs.lookup(0, ROOT, b"big").unwrap().node;
    // As a kernel with one FUSE queue per core sends the WRITEs of one large write: at once,
    // by node id, each to its own part of the file.
    let writers: Vec<_> = (0..4u64)
        .map(|k| {
            let vfs = vfs.clone();
            std::thread::spawn(move || vfs.write(node, 0, k << 20, &[b'w' + k as u8; 4096]))
        })
        .collect();
    for writer in writers {
        assert_eq!(writer.join().unwrap().unwrap(), 4096);
    }
    let mut expected = lower;
    for k in 0..4usize {
        expected[k << 20..(k << 20) + 4096].fill(b'w' + k as u8);
    }
    assert!(
        fs::read(scratch.join("big")).unwrap() == expected,
        "a write was lost"
    );
    let left: Vec<_> = fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["big"], "a copy was left behind");
}

// ---- commit (issue 17) ----

/// The view a fixed routing serves.
fn view_of(vfs: &Vfs) -> Arc<View> {
    match vfs.routing() {
        Routing::Fixed(view) => view.clone(),
        Routing::Shared(_) => panic!("a fixed routing"),
    }
}

/// Commits the view of `vfs` into directory layer `dir`.
fn commit_into(vfs: &Vfs, dir: &Path) {
    view_of(vfs)
        .commit(|tree| {
            materialize(tree, dir);
            Ok::<_, std::io::Error>(())
        })
        .unwrap();
}

/// Every path's node id, through lookups.
fn node_ids(vfs: &Vfs) -> std::collections::BTreeMap<String, NodeId> {
    fn go(
        vfs: &Vfs,
        dir: NodeId,
        prefix: &str,
        out: &mut std::collections::BTreeMap<String, NodeId>,
    ) {
        for (name, attr) in common::list(vfs, 0, dir) {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(&name));
            if attr.kind == FileKind::Directory {
                go(vfs, attr.node, &path, out);
            }
            out.insert(path, attr.node);
        }
    }
    let mut out = std::collections::BTreeMap::new();
    go(vfs, ROOT, "", &mut out);
    out
}

/// Changes of every kind: a new file, a copied-up one, a removed lower file, a new tree, a
/// directory replaced by a new (opaque) one, a lower directory replaced by a file.
fn change_everything(f: &Fixture) {
    let (attr, handle) = f.vfs.create(&me(), ROOT, b"new", 0o640).unwrap();
    f.vfs.write(attr.node, handle, 0, b"new file").unwrap();
    f.vfs.release(handle);
    f.vfs.write(f.node("dir/a"), 0, 0, b"A").unwrap();
    f.vfs.unlink(&me(), f.node("dir"), b"b").unwrap();
    let made = f.vfs.mkdir(&me(), ROOT, b"made", 0o750).unwrap();
    f.vfs.symlink(&me(), made.node, b"ln", b"../new").unwrap();
    f.vfs.unlink(&me(), f.node("dir/sub"), b"deep").unwrap();
    f.vfs.rmdir(&me(), f.node("dir"), b"sub").unwrap();
    let sub = f.vfs.mkdir(&me(), f.node("dir"), b"sub", 0o700).unwrap();
    f.vfs.create(&me(), sub.node, b"fresh", 0o600).unwrap();
    f.vfs.rmdir(&me(), ROOT, b"empty").unwrap();
    f.vfs.create(&me(), ROOT, b"empty", 0o644).unwrap();
}

/// The scratch's entries besides the core's temp names (a frozen generation among them).
fn changes_left(f: &Fixture) -> Vec<String> {
    let mut names = f.upper("");
    names.retain(|n| !n.starts_with(".wh..wh..tmp."));
    names
}

#[test]
fn the_commit_tree_holds_the_scratch_with_masks_for_what_it_removed() {
    let f = fixture();
    change_everything(&f);
    // Neither the core's temp files nor an NFS client's silly renames are changes.
    fs::write(f.scratch().join(".wh..wh..tmp.9.9"), b"").unwrap();
    fs::write(f.scratch().join("dir/.nfs0000001"), b"").unwrap();
    let mut seen = None;
    view_of(&f.vfs)
        .commit(|tree| {
            seen = Some(tree.clone());
            Err::<(), _>("not now")
        })
        .unwrap_err();
    let Some(Node::Dir { children, .. }) = seen else {
        panic!("a directory at the root")
    };
    let names: Vec<&str> = children.keys().map(String::as_str).collect();
    assert_eq!(names, ["dir", "empty", "made", "new"]);
    assert!(matches!(children["new"], Node::File { mode, ref source }
        if mode == 0o100640 && source == &f.scratch().join("new")));
    assert!(matches!(
        children["empty"],
        Node::File { mode: 0o100644, .. }
    ));
    let Node::Dir {
        children: made,
        mode,
    } = &children["made"]
    else {
        panic!()
    };
    assert_eq!(*mode, 0o040750);
    assert_eq!(
        made["ln"],
        Node::Symlink {
            mode: 0o120777,
            target: "../new".into()
        }
    );
    let Node::Dir { children: dir, .. } = &children["dir"] else {
        panic!()
    };
    let names: Vec<&str> = dir.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "b", "sub"], "no temp or .nfs file");
    assert_eq!(dir["b"], Node::Mask { mode: 0o020000 });
    // The opaque directory: its own entries plus a mask for each lower name it hides.
    let Node::Dir { children: sub, .. } = &dir["sub"] else {
        panic!()
    };
    assert!(matches!(sub["fresh"], Node::File { .. }));
    assert_eq!(sub["deep"], Node::Mask { mode: 0o020000 });
    assert_eq!(sub.len(), 2);
}

#[test]
fn a_failed_write_leaves_the_view_exactly_as_it_was() {
    let f = fixture();
    change_everything(&f);
    let before = walk(&f.vfs, 0);
    let ids = node_ids(&f.vfs);
    let upper = f.upper("");
    let err = view_of(&f.vfs)
        .commit(|_| Err::<(), _>("the repository is full"))
        .unwrap_err();
    assert!(err.to_string().contains("the repository is full"), "{err}");
    assert_eq!(f.upper(""), upper);
    assert_eq!(walk(&f.vfs, 0), before);
    assert_eq!(node_ids(&f.vfs), ids);
    // And a commit afterwards works.
    commit_into(&f.vfs, &f.tmp.path().join("c1"));
    assert_eq!(
        read_only_walk(&[f.layer(), f.tmp.path().join("c1")], &f.scratch()),
        before
    );
}

#[test]
fn a_non_utf8_name_fails_the_commit_naming_it() {
    let f = fixture();
    let name = b"bad\xff";
    f.vfs.create(&me(), ROOT, name, 0o600).unwrap();
    let err = view_of(&f.vfs)
        .commit(|_| Ok::<_, std::io::Error>(()))
        .unwrap_err();
    assert!(matches!(err, spfs_router::CommitError::NotUtf8(_)), "{err}");
    assert!(err.to_string().contains("bad"), "{err}");
    assert!(view_of(&f.vfs).has_changes());
}

#[test]
fn after_a_commit_the_view_carries_on_unchanged_over_the_committed_stack() {
    let f = fixture();
    change_everything(&f);
    let before = walk(&f.vfs, 0);
    let ids = node_ids(&f.vfs);
    // A program holds a copied-up file and a new one open across the commit.
    let a = f.node("dir/a");
    let held = f.vfs.open(0, a, false).unwrap();
    let new = f.node("new");
    let held_new = f.vfs.open(0, new, true).unwrap();
    let c1 = f.tmp.path().join("c1");
    commit_into(&f.vfs, &c1);

    assert_eq!(walk(&f.vfs, 0), before, "the view changed");
    assert_eq!(node_ids(&f.vfs), ids, "a node id changed");
    assert_eq!(
        changes_left(&f),
        Vec::<String>::new(),
        "the new scratch is not empty"
    );
    let view = view_of(&f.vfs);
    assert!(!view.has_changes());
    assert_eq!(view.diff().unwrap(), []);
    assert_eq!(
        read_only_walk(&[f.layer(), c1.clone()], &f.scratch()),
        before
    );
    assert_eq!(f.vfs.read(a, held, 0, 10).unwrap(), b"A");

    // Later changes copy up from the committed generation and land in the new scratch only.
    f.vfs.write(new, held_new, 8, b", again").unwrap();
    f.vfs.release(held_new);
    f.vfs.release(held);
    assert_eq!(f.read("new"), b"new file, again");
    assert_eq!(
        fs::read(f.scratch().join("new")).unwrap(),
        b"new file, again"
    );
    // A committed file removed leaves a whiteout: the committed layer has it.
    f.vfs.unlink(&me(), f.node("made"), b"ln").unwrap();
    assert!(f.scratch().join("made/.wh.ln").exists());
    // A directory committed earlier now has a lower part.
    let err = f
        .vfs
        .rename(
            &me(),
            (ROOT, b"made"),
            (ROOT, b"moved"),
            RenameMode::Replace,
        )
        .unwrap_err();
    assert_eq!(err.to_errno(), libc::EXDEV);
    let later = f.vfs.mkdir(&me(), ROOT, b"later", 0o755).unwrap();
    assert!(
        !ids.values().any(|&id| id == later.node),
        "an id was reused"
    );
    assert_eq!(changes_left(&f), ["later", "made", "new"]);
    let lines: Vec<String> = view
        .diff()
        .unwrap()
        .iter()
        .map(|c| format!("{:?} {}", c.kind, c.path.display()))
        .collect();
    assert_eq!(lines, ["Added /later", "Removed /made/ln", "Modified /new"]);
    let now = walk(&f.vfs, 0);
    assert_eq!(read_only_walk(&[f.layer(), c1.clone()], &f.scratch()), now);

    // A second commit, then a third of nothing.
    let c2 = f.tmp.path().join("c2");
    commit_into(&f.vfs, &c2);
    assert_eq!(walk(&f.vfs, 0), now);
    assert_eq!(changes_left(&f), Vec::<String>::new());
    assert_eq!(
        read_only_walk(&[f.layer(), c1.clone(), c2.clone()], &f.scratch()),
        now
    );
    let c3 = f.tmp.path().join("c3");
    commit_into(&f.vfs, &c3);
    assert_eq!(fs::read_dir(&c3).unwrap().count(), 0);

    // The scratch registered again over the committed stack shows the same view.
    let (layer, scratch, tmp) = (f.layer(), f.scratch(), f.tmp);
    drop((f.vfs, view));
    let again = editable_over(&[layer, c1, c2], &scratch, 5);
    assert!(!again.has_changes());
    assert_eq!(walk(&Arc::new(Vfs::new(Routing::Fixed(again))), 0), now);
    assert_eq!(
        fs::read_dir(&scratch).unwrap().count(),
        0,
        "a generation was left"
    );
    drop(tmp);
}

#[test]
fn writers_racing_commits_lose_no_acknowledged_write() {
    const RECORD: usize = 8;
    const WRITERS: usize = 4;
    let f = fixture();
    let (attr, handle) = f.vfs.create(&me(), ROOT, b"log", 0o644).unwrap();
    let node = attr.node;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Writer `t` writes its records `i` at slot `i * WRITERS + t`, one after another: a
    // record is acknowledged when its write returned.
    let record = |t: usize, i: usize| format!("{t}:{i:05}\n").into_bytes();
    let writers: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (vfs, stop) = (f.vfs.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && acked < 20_000 {
                    let at = (acked * WRITERS + t) * RECORD;
                    vfs.write(node, handle, at as u64, &record(t, acked))
                        .unwrap();
                    acked += 1;
                }
                acked
            })
        })
        .collect();
    // Each writer's records in `bytes`: how many, checking they are whole and come first.
    let count = |bytes: &[u8], t: usize, what: &str| {
        let mut present = 0;
        for (slot, chunk) in bytes.chunks(RECORD).enumerate().skip(t).step_by(WRITERS) {
            let i = slot / WRITERS;
            if chunk == record(t, i) {
                assert_eq!(
                    present, i,
                    "{what}: writer {t}'s record {i} without an earlier one"
                );
                present += 1;
            } else {
                assert!(
                    chunk.iter().all(|&b| b == 0),
                    "{what}: a torn record {chunk:?}"
                );
            }
        }
        present
    };
    let mut layers = vec![f.layer()];
    for k in 0..30 {
        let dir = f.tmp.path().join(format!("c{k}"));
        view_of(&f.vfs)
            .commit(|tree| {
                materialize(tree, &dir);
                // The rest of a real commit (objects, the tag, the state file) takes a while.
                std::thread::sleep(std::time::Duration::from_millis(1));
                Ok::<_, std::io::Error>(())
            })
            .unwrap();
        layers.push(dir.clone());
        if let Ok(bytes) = fs::read(dir.join("log")) {
            for t in 0..WRITERS {
                count(&bytes, t, &format!("commit {k}"));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<usize> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    f.vfs.release(handle);
    let Some(Seen::File(_, stacked)) = read_only_walk(&layers, &f.scratch()).remove(&b"log"[..])
    else {
        panic!("no log in the committed stack and scratch")
    };
    let seen = f.vfs.read(node, 0, 0, 64 << 20).unwrap();
    for (t, &acked) in acked.iter().enumerate() {
        assert_eq!(count(&seen, t, "the view"), acked, "the view lost a write");
        assert_eq!(
            count(&stacked, t, "the stack"),
            acked,
            "an acknowledged write is in no commit and not in the scratch"
        );
    }
}

// ---- reset (issue 16) ----

/// What the layers `layers` alone show.
fn layers_walk(layers: &[PathBuf]) -> std::collections::BTreeMap<Vec<u8>, Seen> {
    let view = View::build(
        9,
        &ResolvedSpec::of_directories(layers.to_vec()),
        &root_attr(),
        (0, 0),
    );
    walk(&Arc::new(Vfs::new(Routing::Fixed(Arc::new(view)))), 0)
}

fn reset(f: &Fixture, paths: &[&str]) -> Vec<Invalidation> {
    let paths: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
    f.vfs.reset(&view_of(&f.vfs), &paths).unwrap()
}

#[test]
fn reset_throws_every_change_away_and_names_what_the_kernel_must_forget() {
    let f = fixture();
    let a = f.node("dir/a");
    let held = f.vfs.open(0, a, true).unwrap();
    f.vfs.write(a, held, 0, b"A").unwrap();
    change_everything(&f);
    let new = f.node("new");
    let held_new = f.vfs.open(0, new, false).unwrap();
    let forget = reset(&f, &[]);
    assert_eq!(walk(&f.vfs, 0), layers_walk(&[f.layer()]));
    assert_eq!(changes_left(&f), Vec::<String>::new());
    assert!(!view_of(&f.vfs).has_changes());
    let entry = |parent, name: &str| Invalidation::Entry {
        parent,
        name: name.as_bytes().to_vec(),
    };
    for want in [
        entry(ROOT, "new"),
        entry(ROOT, "empty"),
        entry(f.node("dir"), "b"),
        Invalidation::Node(a),
        Invalidation::Node(f.node("dir")),
    ] {
        assert!(forget.contains(&want), "{want:?} missing from {forget:?}");
    }
    // The copied-up file's node is the lower file again, open handle included; the new
    // file's handle reads it as an unlinked file.
    assert_eq!(f.vfs.read(a, held, 0, 10).unwrap(), b"a");
    assert_eq!(f.vfs.read(new, held_new, 0, 20).unwrap(), b"new file");
    assert_eq!(f.vfs.getattr(0, new).unwrap_err().to_errno(), libc::ENOENT);
    f.vfs.release(held);
    f.vfs.release(held_new);
    // And the view takes changes again.
    f.vfs.write(a, 0, 0, b"B").unwrap();
    assert_eq!(f.read("dir/a"), b"B");
}

#[test]
fn reset_after_a_commit_shows_the_committed_stack() {
    let f = fixture();
    change_everything(&f);
    let c1 = f.tmp.path().join("c1");
    commit_into(&f.vfs, &c1);
    let committed = walk(&f.vfs, 0);
    f.vfs.write(f.node("new"), 0, 0, b"NEW").unwrap();
    f.vfs.unlink(&me(), f.node("dir"), b"a").unwrap();
    f.vfs.mkdir(&me(), ROOT, b"later", 0o755).unwrap();
    reset(&f, &[]);
    assert_eq!(walk(&f.vfs, 0), committed);
    assert_eq!(layers_walk(&[f.layer(), c1]), committed);
    assert_eq!(changes_left(&f), Vec::<String>::new());
}

#[test]
fn reset_of_paths_throws_away_the_changes_there_and_below_only() {
    let f = fixture();
    change_everything(&f);
    f.vfs
        .rename(
            &me(),
            (ROOT, b"file"),
            (ROOT, b"moved"),
            RenameMode::Replace,
        )
        .unwrap();
    let lower = layers_walk(&[f.layer()]);
    // A directory: everything below it is the layers' again, the rest stays changed.
    reset(&f, &["/dir"]);
    let now = walk(&f.vfs, 0);
    for (path, seen) in &lower {
        if path.starts_with(b"dir") {
            assert_eq!(
                now.get(path),
                Some(seen),
                "{}",
                String::from_utf8_lossy(path)
            );
        }
    }
    assert!(now.contains_key(&b"new"[..]) && now.contains_key(&b"made/ln"[..]));
    assert_eq!(read_only_walk(&[f.layer()], &f.scratch()), now);
    // A path under a directory the runtime added: the layers have nothing there.
    reset(&f, &["made/ln"]);
    assert!(!walk(&f.vfs, 0).contains_key(&b"made/ln"[..]));
    // A lower file moved away: it is back at its path, and its new name is gone.
    reset(&f, &["/file"]);
    let now = walk(&f.vfs, 0);
    assert_eq!(now.get(&b"file"[..]), lower.get(&b"file"[..]));
    assert!(!now.contains_key(&b"moved"[..]));
    // A lower directory replaced by a file: the directory and its entries are back.
    reset(&f, &["/empty", "/new"]);
    let now = walk(&f.vfs, 0);
    assert_eq!(now.get(&b"empty"[..]), lower.get(&b"empty"[..]));
    assert!(!now.contains_key(&b"new"[..]));
    assert_eq!(read_only_walk(&[f.layer()], &f.scratch()), now);
    assert_eq!(changes_left(&f), ["made"]);
    // Bad paths are refused, naming them.
    let view = view_of(&f.vfs);
    let err = view.reset(&[PathBuf::from("/dir/../x")]).unwrap_err();
    assert!(err.to_string().contains("/dir/../x"), "{err}");
    let err = view.reset(&[PathBuf::from("/nothing/here")]).unwrap_err();
    assert!(err.to_string().contains("/nothing/here"), "{err}");
}

#[test]
fn a_removed_file_still_open_and_an_opaque_root_survive_a_commit() {
    let f = fixture();
    let (attr, handle) = f.vfs.create(&me(), ROOT, b"gone", 0o600).unwrap();
    f.vfs.write(attr.node, handle, 0, b"still here").unwrap();
    f.vfs.unlink(&me(), ROOT, b"gone").unwrap();
    commit_into(&f.vfs, &f.tmp.path().join("c1"));
    assert_eq!(f.vfs.read(attr.node, handle, 0, 64).unwrap(), b"still here");
    f.vfs.write(attr.node, handle, 0, b"STILL").unwrap();
    assert_eq!(f.vfs.read(attr.node, handle, 0, 64).unwrap(), b"STILL here");
    // A reset changes nothing for it either.
    reset(&f, &[]);
    f.vfs.write(attr.node, handle, 5, b"!").unwrap();
    assert_eq!(f.vfs.read(attr.node, handle, 0, 64).unwrap(), b"STILL!here");
    f.vfs.release(handle);

    // A scratch whose root replaced the layers' (left by hand or an earlier tool): the
    // commit masks every name of the layers it does not hold again.
    let tmp = tempfile::tempdir().unwrap();
    make_layer(&tmp.path().join("layer"));
    let scratch = tmp.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    fs::write(scratch.join(".wh..wh..opq"), b"").unwrap();
    fs::write(scratch.join("file"), b"mine").unwrap();
    let view = editable_over(&[tmp.path().join("layer")], &scratch, 6);
    let mut masks = Vec::new();
    view.commit(|tree| {
        let Node::Dir { children, .. } = tree else {
            panic!()
        };
        masks = children
            .iter()
            .filter(|(_, n)| matches!(n, Node::Mask { .. }))
            .map(|(name, _)| name.clone())
            .collect();
        Err::<(), _>("only looking")
    })
    .unwrap_err();
    assert_eq!(masks, ["dir", "empty", "link"]);
}

/// The whole commit path of the core: a fixture layer's tree rendered into the scratch of an
/// editable runtime over an empty stack, committed through `View::commit` (the walk of the
/// scratch) into an empty repository with the fixture's settings, gives the manifest and
/// layer digests spfs 0.44 gave, for every layer of both fixtures whose manifest holds no mask
/// (a mask from a scratch is recorded with mode 020000, as the kernel's whiteouts give spfs,
/// where the fixtures' masks were `mknod`ed with 0644).
#[test]
fn a_commit_of_a_fixture_layers_tree_gives_spfs_digests() {
    use spfs_storage::write::{Progress, RepoWriter, WriteSettings};
    use spfs_storage::{Digest, DigestStrategy, Encoding, Repository};
    let digest = |v: &serde_json::Value| Digest::parse(v.as_str().unwrap()).unwrap();
    let mut compared = Vec::new();
    for (fixture, settings) in [
        ("current", WriteSettings::default()),
        (
            "legacy",
            WriteSettings {
                encoding: Encoding::Legacy,
                strategy: DigestStrategy::Legacy,
            },
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let f = spfs_testkit::FixtureRepo::copy(fixture, &tmp.path().join("fixture"));
        let repo = Repository::open(&f.root).unwrap();
        for (tag, t) in f.expected["tags"].as_object().unwrap() {
            if t["kind"] != "layer" || !t["masks"].as_array().unwrap().is_empty() {
                continue;
            }
            let (layer, manifest) = (digest(&t["digest"]), digest(&t["manifest"]));
            let scratch = tmp
                .path()
                .join(format!("scratch-{}", tag.replace('/', "-")));
            spfs_testkit::render_manifest(&repo, &manifest, &scratch);
            let view = editable_over(&[], &scratch, 20 + compared.len() as u32);
            let out = tmp.path().join(format!("out-{}", tag.replace('/', "-")));
            let written = view
                .commit(|tree| {
                    let w = RepoWriter::init(&out, settings, None)?;
                    let m = w.write_tree(tree, &|_: Progress| {})?;
                    Ok::<_, spfs_storage::write::WriteError>((m, w.write_layer(m)?))
                })
                .unwrap();
            assert_eq!(written, (manifest, layer), "{fixture} {tag}");
            compared.push(format!("{fixture} {tag}"));
        }
    }
    // dev/lower, dev/extra, quirk/q1..q3 and the tags naming them, in each fixture.
    assert_eq!(compared.len(), 12, "{compared:?}");
}
