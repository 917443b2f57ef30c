//! Property test: random sequences of changes applied to an editable view and, as the
//! reference, to a plain directory holding a copy of its layers. The view must show what the
//! plain directory holds, each operation must fail or succeed as there (same errno), and the
//! scratch registered read-only on top of the layers (`LAYERS+SCRATCH`) must show the same
//! tree again. The only difference allowed is overlayfs's: renaming a directory that has a
//! lower part answers `EXDEV` (and the reference skips it).
//!
//! A second model mixes commits and resets into the changes: a commit changes nothing the
//! view shows and leaves an empty scratch (`LAYERS+COMMITTED+SCRATCH` shows the view); a
//! reset goes back to what the plain directory held at the last commit.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{materialize, root_attr, walk};
use proptest::prelude::*;
use spfs_router::spec::ResolvedSpec;
use spfs_router::{
    Caller, FsError, NodeId, ROOT, RenameMode, Routing, Scratch, SetAttr, ToErrno, Vfs, View,
};

const DIRS: [&str; 5] = ["", "d", "d/s", "e", "n"];
const NAMES: [&str; 5] = ["a", "b", "s", "n", "f"];

#[derive(Debug, Clone)]
enum Op {
    Create(usize, usize, u32),
    Write(usize, usize, u64, Vec<u8>),
    Truncate(usize, usize, u64),
    Chmod(usize, usize, u32),
    Mkdir(usize, usize),
    Unlink(usize, usize),
    Rmdir(usize, usize),
    Rename(usize, usize, usize, usize),
    Symlink(usize, usize),
    Link(usize, usize, usize, usize),
}

fn op() -> impl Strategy<Value = Op> {
    let d = 0..DIRS.len();
    let n = 0..NAMES.len();
    let mode = prop_oneof![Just(0o644u32), Just(0o600), Just(0o755)];
    prop_oneof![
        (d.clone(), n.clone(), mode.clone()).prop_map(|(d, n, m)| Op::Create(d, n, m)),
        (
            d.clone(),
            n.clone(),
            0..8u64,
            prop::collection::vec(any::<u8>(), 0..6)
        )
            .prop_map(|(d, n, o, b)| Op::Write(d, n, o, b)),
        (d.clone(), n.clone(), 0..8u64).prop_map(|(d, n, s)| Op::Truncate(d, n, s)),
        (d.clone(), n.clone(), mode).prop_map(|(d, n, m)| Op::Chmod(d, n, m)),
        (d.clone(), n.clone()).prop_map(|(d, n)| Op::Mkdir(d, n)),
        (d.clone(), n.clone()).prop_map(|(d, n)| Op::Unlink(d, n)),
        (d.clone(), n.clone()).prop_map(|(d, n)| Op::Rmdir(d, n)),
        (d.clone(), n.clone(), d.clone(), n.clone())
            .prop_map(|(a, b, c, e)| Op::Rename(a, b, c, e)),
        (d.clone(), n.clone()).prop_map(|(d, n)| Op::Symlink(d, n)),
        (d.clone(), n.clone(), d, n).prop_map(|(a, b, c, e)| Op::Link(a, b, c, e)),
    ]
}

/// The lower layer: `d/{a,s/b}`, `e/`, `f` and a symlink `n/s -> ../f`.
fn make_layer(layer: &Path) {
    fs::create_dir_all(layer.join("d/s")).unwrap();
    fs::create_dir_all(layer.join("e")).unwrap();
    fs::create_dir_all(layer.join("n")).unwrap();
    fs::write(layer.join("d/a"), b"lower a").unwrap();
    fs::write(layer.join("d/s/b"), b"lower b").unwrap();
    fs::write(layer.join("f"), b"lower f").unwrap();
    fs::set_permissions(layer.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("../f", layer.join("n/s")).unwrap();
}

fn me() -> Caller {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    Caller { pid: 0, uid, gid }
}

fn errno_of(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or(libc::EIO)
}

/// The node at `dir` in the view, or the errno of the failing lookup.
fn resolve(vfs: &Vfs, dir: &str) -> Result<NodeId, i32> {
    let mut node = ROOT;
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        node = vfs
            .lookup(0, node, part.as_bytes())
            .map_err(|e| e.to_errno())?
            .node;
    }
    Ok(node)
}

/// Applies `op` to the view: `Ok` or the errno.
fn apply_view(vfs: &Vfs, op: &Op) -> Result<(), i32> {
    let me = me();
    let e = |err: FsError| err.to_errno();
    let child = |d: usize, n: usize| -> Result<NodeId, i32> {
        let dir = resolve(vfs, DIRS[d])?;
        Ok(vfs.lookup(0, dir, NAMES[n].as_bytes()).map_err(e)?.node)
    };
    let name = |n: usize| NAMES[n].as_bytes();
    match *op {
        Op::Create(d, n, mode) => {
            let (_, handle) = vfs
                .create(&me, resolve(vfs, DIRS[d])?, name(n), mode)
                .map_err(e)?;
            vfs.release(handle);
        }
        Op::Write(d, n, offset, ref data) => {
            let node = child(d, n)?;
            if vfs.getattr(0, node).map_err(e)?.kind != spfs_router::FileKind::File {
                return Err(libc::EISDIR);
            }
            vfs.write(node, 0, offset, data).map_err(e)?;
        }
        Op::Truncate(d, n, size) => {
            let node = child(d, n)?;
            if vfs.getattr(0, node).map_err(e)?.kind != spfs_router::FileKind::File {
                return Err(libc::EISDIR);
            }
            let changes = SetAttr {
                size: Some(size),
                ..Default::default()
            };
            vfs.setattr(&me, node, None, &changes).map_err(e)?;
        }
        Op::Chmod(d, n, mode) => {
            let node = child(d, n)?;
            if vfs.getattr(0, node).map_err(e)?.kind == spfs_router::FileKind::Symlink {
                return Err(libc::ELOOP);
            }
            let changes = SetAttr {
                mode: Some(mode),
                ..Default::default()
            };
            vfs.setattr(&me, node, None, &changes).map_err(e)?;
        }
        Op::Mkdir(d, n) => {
            vfs.mkdir(&me, resolve(vfs, DIRS[d])?, name(n), 0o755)
                .map_err(e)?;
        }
        Op::Unlink(d, n) => vfs
            .unlink(&me, resolve(vfs, DIRS[d])?, name(n))
            .map_err(e)?,
        Op::Rmdir(d, n) => vfs.rmdir(&me, resolve(vfs, DIRS[d])?, name(n)).map_err(e)?,
        Op::Rename(a, b, c, d) => {
            let from = resolve(vfs, DIRS[a])?;
            let to = resolve(vfs, DIRS[c])?;
            vfs.rename(&me, (from, name(b)), (to, name(d)), RenameMode::Replace)
                .map_err(e)?;
        }
        Op::Symlink(d, n) => {
            vfs.symlink(&me, resolve(vfs, DIRS[d])?, name(n), b"../f")
                .map_err(e)?;
        }
        Op::Link(a, b, c, d) => {
            let node = child(a, b)?;
            vfs.link(&me, node, resolve(vfs, DIRS[c])?, name(d))
                .map_err(e)?;
        }
    }
    Ok(())
}

/// Applies `op` to the plain directory `root`.
fn apply_plain(root: &Path, op: &Op) -> Result<(), i32> {
    let at = |d: usize, n: usize| -> PathBuf { root.join(DIRS[d]).join(NAMES[n]) };
    let io = |err: std::io::Error| errno_of(&err);
    // The view resolves the directory first: a missing or non-directory one fails there.
    let dir_ok = |d: usize| -> Result<(), i32> {
        let meta = fs::symlink_metadata(root.join(DIRS[d])).map_err(io)?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(libc::ENOTDIR)
        }
    };
    let kind = |p: &Path| fs::symlink_metadata(p).map_err(io);
    match *op {
        Op::Create(d, n, mode) => {
            dir_ok(d)?;
            let path = at(d, n);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io)?;
        }
        Op::Write(d, n, offset, ref data) => {
            dir_ok(d)?;
            let path = at(d, n);
            if !kind(&path)?.is_file() {
                return Err(libc::EISDIR);
            }
            use std::os::unix::fs::FileExt;
            let file = fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
            file.write_all_at(data, offset).map_err(io)?;
        }
        Op::Truncate(d, n, size) => {
            dir_ok(d)?;
            let path = at(d, n);
            if !kind(&path)?.is_file() {
                return Err(libc::EISDIR);
            }
            let file = fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
            file.set_len(size).map_err(io)?;
        }
        Op::Chmod(d, n, mode) => {
            dir_ok(d)?;
            let path = at(d, n);
            if kind(&path)?.file_type().is_symlink() {
                return Err(libc::ELOOP);
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io)?;
        }
        Op::Mkdir(d, n) => {
            dir_ok(d)?;
            let path = at(d, n);
            fs::create_dir(&path).map_err(io)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(io)?;
        }
        Op::Unlink(d, n) => {
            dir_ok(d)?;
            fs::remove_file(at(d, n)).map_err(io)?;
        }
        Op::Rmdir(d, n) => {
            dir_ok(d)?;
            fs::remove_dir(at(d, n)).map_err(io)?;
        }
        Op::Rename(a, b, c, d) => {
            dir_ok(a)?;
            dir_ok(c)?;
            fs::rename(at(a, b), at(c, d)).map_err(io)?;
        }
        Op::Symlink(d, n) => {
            dir_ok(d)?;
            std::os::unix::fs::symlink("../f", at(d, n)).map_err(io)?;
        }
        Op::Link(a, b, c, d) => {
            dir_ok(a)?;
            let from = at(a, b);
            kind(&from)?;
            dir_ok(c)?;
            // linkat without AT_SYMLINK_FOLLOW links a symlink itself, as FUSE's LINK does.
            fs::hard_link(&from, at(c, d)).map_err(io)?;
        }
    }
    Ok(())
}

/// A temp dir holding the layer, the plain reference directory (a copy of it) and a scratch
/// path.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let [layer, plain, scratch] = ["layer", "plain", "scratch"].map(|n| tmp.path().join(n));
    make_layer(&layer);
    make_layer(&plain);
    (tmp, layer, plain, scratch)
}

/// The editable view of `layers` with scratch `scratch`, owned by the tests' user.
fn editable(id: u32, layers: Vec<PathBuf>, scratch: &Path) -> View {
    View::build(
        id,
        &ResolvedSpec::of_directories(layers),
        &root_attr(),
        (me().uid, me().gid),
    )
    .with_scratch(Scratch::open(scratch, true).unwrap())
}

fn read_only(dirs: Vec<PathBuf>) -> Arc<Vfs> {
    let view = View::build(
        99,
        &ResolvedSpec::of_directories(dirs),
        &root_attr(),
        (0, 0),
    );
    Arc::new(Vfs::new(Routing::Fixed(Arc::new(view))))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn an_editable_view_behaves_as_a_plain_directory_and_its_scratch_round_trips(
        ops in prop::collection::vec(op(), 1..24)
    ) {
        let (_tmp, layer, plain, scratch) = setup();
        let view = editable(3, vec![layer.clone()], &scratch);
        let vfs = Arc::new(Vfs::new(Routing::Fixed(Arc::new(view))));
        for op in &ops {
            let got = apply_view(&vfs, op);
            if got == Err(libc::EXDEV) {
                continue;
            }
            let want = apply_plain(&plain, op);
            prop_assert_eq!(got, want, "{:?}", op);
        }
        let seen = walk(&vfs, 0);
        prop_assert_eq!(&seen, &walk(&read_only(vec![plain.clone()]), 0), "view vs plain directory");
        prop_assert_eq!(&seen, &walk(&read_only(vec![layer.clone(), scratch.clone()]), 0), "view vs LAYERS+SCRATCH");
        // Registered again, the durable scratch shows the same tree.
        drop(vfs);
        let again = editable(4, vec![layer.clone()], &scratch);
        prop_assert_eq!(&seen, &walk(&Arc::new(Vfs::new(Routing::Fixed(Arc::new(again)))), 0), "view vs reloaded scratch");
        let names: Vec<_> = walkdir(&scratch);
        prop_assert!(names.iter().all(|n| !n.contains(".wh..wh..tmp.")), "no temp file left: {:?}", names);
    }
}

fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            out.push(entry.path().to_string_lossy().into_owned());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walkdir(&entry.path()));
            }
        }
    }
    out
}

/// A step of the commit and reset model: a change, a commit, or a reset of everything.
#[derive(Debug, Clone)]
enum Step {
    Change(Op),
    Commit,
    Reset,
    /// A reset of one path: the n-th changed path (`spfs-fuse diff`), or with none, a name of
    /// `NAMES` in a directory of `DIRS`.
    ResetPath(usize, usize, usize),
}

fn step() -> impl Strategy<Value = Step> {
    // No hard links: a commit stores none (spfs keeps no link identity), so two names of one
    // file become two files in the committed layer while the view keeps showing one node.
    let change = op().prop_filter("no hard links", |op| !matches!(op, Op::Link(..)));
    prop_oneof![
        8 => change.prop_map(Step::Change),
        1 => Just(Step::Commit),
        1 => Just(Step::Reset),
        2 => (0..64usize, 0..DIRS.len(), 0..NAMES.len()).prop_map(|(k, d, n)| Step::ResetPath(k, d, n)),
    ]
}

/// Writes what a walk saw as a plain directory at `root`.
fn write_tree(seen: &std::collections::BTreeMap<Vec<u8>, common::Seen>, root: &Path) {
    fs::create_dir(root).unwrap();
    // Parents first (a walk's keys sort a directory before its entries); modes last, so a
    // read-only directory is filled before it closes.
    for (path, what) in seen {
        let at = root.join(String::from_utf8_lossy(path).as_ref());
        match what {
            common::Seen::Dir(_) => fs::create_dir(&at).unwrap(),
            common::Seen::File(mode, bytes) => {
                fs::write(&at, bytes).unwrap();
                fs::set_permissions(&at, fs::Permissions::from_mode(*mode)).unwrap();
            }
            common::Seen::Symlink(target) => {
                std::os::unix::fs::symlink(String::from_utf8_lossy(target).as_ref(), &at).unwrap()
            }
        }
    }
    for (path, what) in seen.iter().rev() {
        if let common::Seen::Dir(mode) = what {
            let at = root.join(String::from_utf8_lossy(path).as_ref());
            fs::set_permissions(&at, fs::Permissions::from_mode(*mode)).unwrap();
        }
    }
}

/// Copies tree `from` to `to` (which must not exist), modes and symlinks kept. (Not `cp`: a
/// child process forked while another test reopens its scratch would hold that test's lock.)
fn copy_tree(from: &Path, to: &Path) {
    let meta = fs::symlink_metadata(from).unwrap();
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from).unwrap(), to).unwrap();
    } else if meta.is_dir() {
        fs::create_dir(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
        fs::set_permissions(to, meta.permissions()).unwrap();
    } else {
        fs::copy(from, to).unwrap();
        fs::set_permissions(to, meta.permissions()).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn commits_change_nothing_the_view_shows_and_reset_goes_back_to_the_last_commit(
        steps in prop::collection::vec(step(), 1..32)
    ) {
        let (tmp, layer, plain, scratch) = setup();
        // What the plain directory held at the last commit: a reset goes back to it.
        let mut base = tmp.path().join("base-start");
        copy_tree(&plain, &base);
        let view = Arc::new(
            editable(3, vec![layer.clone()], &scratch),
        );
        let vfs = Arc::new(Vfs::new(Routing::Fixed(view.clone())));
        let mut layers = vec![layer.clone()];
        for (k, step) in steps.iter().enumerate() {
            match step {
                Step::Change(op) => {
                    let got = apply_view(&vfs, op);
                    if got == Err(libc::EXDEV) {
                        continue;
                    }
                    let want = apply_plain(&plain, op);
                    prop_assert_eq!(got, want, "{:?}", op);
                }
                Step::Commit => {
                    let before = walk(&vfs, 0);
                    let dir = tmp.path().join(format!("commit{k}"));
                    view.commit(|tree| {
                        materialize(tree, &dir);
                        Ok::<_, std::io::Error>(())
                    })
                    .unwrap();
                    layers.push(dir);
                    prop_assert_eq!(&walk(&vfs, 0), &before, "the commit changed the view");
                    let left: Vec<String> = walkdir(&scratch)
                        .into_iter()
                        .filter(|p| !p.contains(".wh..wh..tmp."))
                        .collect();
                    prop_assert!(left.is_empty(), "the new scratch holds {:?}", left);
                    base = tmp.path().join(format!("base{k}"));
                    copy_tree(&plain, &base);
                }
                Step::Reset => {
                    vfs.reset(&view, &[]).unwrap();
                    fs::remove_dir_all(&plain).unwrap();
                    copy_tree(&base, &plain);
                }
                Step::ResetPath(k, d, n) => {
                    let changed = view.diff().unwrap();
                    let rel = match changed.get(k % changed.len().max(1)) {
                        Some(change) => change.path.strip_prefix("/").unwrap().to_path_buf(),
                        None => Path::new(DIRS[*d]).join(NAMES[*n]),
                    };
                    let before = walk(&vfs, 0);
                    let parent_is_dir = fs::symlink_metadata(plain.join(rel.parent().unwrap())).is_ok_and(|m| m.is_dir());
                    match vfs.reset(&view, &[Path::new("/").join(&rel)]) {
                        Err(spfs_router::ResetError::NotFound(_)) => {
                            prop_assert!(!parent_is_dir, "reset {:?} refused", rel);
                            continue;
                        }
                        other => {
                            prop_assert!(parent_is_dir, "reset {:?} under no directory", rel);
                            other.unwrap();
                        }
                    }
                    let after = walk(&vfs, 0);
                    let key = rel.to_string_lossy().into_owned().into_bytes();
                    let under = |p: &[u8]| p == key.as_slice() || p.starts_with(&[key.as_slice(), b"/"].concat());
                    // At the path and below: the last commit's tree, or nothing (under an
                    // added or replaced parent).
                    let at_base: Vec<_> = walk(&read_only(vec![base.clone()]), 0).into_iter().filter(|(p, _)| under(p)).collect();
                    let at_view: Vec<_> = after.iter().filter(|(p, _)| under(p)).map(|(p, s)| (p.clone(), s.clone())).collect();
                    prop_assert!(at_view.is_empty() || at_view == at_base, "reset {:?}: {:?} vs the commit's {:?}", rel, at_view, at_base);
                    // Elsewhere nothing new appears.
                    for (path, seen) in after.iter().filter(|(p, _)| !under(p)) {
                        prop_assert_eq!(before.get(path), Some(seen), "{:?} changed outside the reset path", String::from_utf8_lossy(path));
                    }
                    // The scratch holds exactly the remaining changes.
                    let mut stack = layers.clone();
                    stack.push(scratch.clone());
                    prop_assert_eq!(&after, &walk(&read_only(stack), 0), "reset {:?}: view vs LAYERS+COMMITTED+SCRATCH", rel);
                    // The reference follows the view from here on.
                    fs::remove_dir_all(&plain).unwrap();
                    write_tree(&after, &plain);
                }
            }
        }
        let seen = walk(&vfs, 0);
        prop_assert_eq!(&seen, &walk(&read_only(vec![plain.clone()]), 0), "view vs plain directory");
        let mut stack = layers.clone();
        stack.push(scratch.clone());
        prop_assert_eq!(&seen, &walk(&read_only(stack), 0), "view vs LAYERS+COMMITTED+SCRATCH");
        // Registered again over the committed stack, the scratch shows the same tree.
        drop((vfs, view));
        let again = editable(4, layers, &scratch);
        prop_assert_eq!(&seen, &walk(&Arc::new(Vfs::new(Routing::Fixed(Arc::new(again)))), 0), "view vs reloaded scratch");
        let names: Vec<_> = walkdir(&scratch);
        prop_assert!(names.iter().all(|n| !n.contains(".wh..wh..tmp.")), "no temp file left: {:?}", names);
    }
}
