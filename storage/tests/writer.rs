//! The repository writer (`spfs_storage::write`) against what spfs 0.44 itself wrote: each
//! fixture layer's tree, rendered to a directory and committed into an empty repository with
//! the fixture's settings, gives the same object files byte for byte and the same payloads.
//! Then tags, concurrent commits, commits stopped at every fail point, and file owners.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use spfs_storage::write::{
    FailPoint, Node, Progress, RepoWriter, WriteError, WriteSettings, tree_of_dir,
};
use spfs_storage::{Digest, DigestStrategy, Encoding, ObjectSource, Repository};
use spfs_testkit::FixtureRepo;

const FIXTURES: [&str; 2] = ["current", "legacy"];

fn digest(v: &Value) -> Digest {
    Digest::parse(v.as_str().unwrap()).unwrap()
}

fn empty_repo(root: &Path) -> PathBuf {
    fs::create_dir_all(root.join("objects")).unwrap();
    fs::create_dir_all(root.join("payloads")).unwrap();
    root.to_path_buf()
}

fn settings_of(fixture: &str) -> WriteSettings {
    match fixture {
        "current" => WriteSettings::default(),
        _ => WriteSettings {
            encoding: Encoding::Legacy,
            strategy: DigestStrategy::Legacy,
        },
    }
}

fn quiet(_: Progress) {}

/// Every `XX/REST` file below `dir`, by relative path.
fn stored(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(top) = fs::read_dir(dir) else {
        return out;
    };
    for sub in top {
        let sub = sub.unwrap();
        let name = sub.file_name().into_string().unwrap();
        if name == "work" {
            continue;
        }
        for f in fs::read_dir(sub.path()).unwrap() {
            let f = f.unwrap();
            let key = format!("{name}/{}", f.file_name().into_string().unwrap());
            out.insert(key, fs::read(f.path()).unwrap());
        }
    }
    out
}

fn is_root() -> bool {
    spfs_testkit::is_root()
}

/// Each fixture layer: render, `tree_of_dir`, write with the fixture's settings; the manifest,
/// layer, blob objects and payloads written equal spfs's files byte for byte.
#[test]
fn every_fixture_layer_is_written_byte_for_byte_as_spfs_wrote_it() {
    let (mut compared, mut expected) = (0, 0);
    for name in FIXTURES {
        let tmp = tempfile::tempdir().unwrap();
        let f = FixtureRepo::copy(name, &tmp.path().join("fixture"));
        let fixture = Repository::open(&f.root).unwrap();
        let fixture_objects = stored(&f.root.join("objects"));
        let fixture_payloads = stored(&f.root.join("payloads"));
        let tags = f.expected["tags"].as_object().unwrap();
        let mut layers: Vec<(&String, &Value)> =
            tags.iter().filter(|(_, t)| t["kind"] == "layer").collect();
        layers.sort_by_key(|(tag, _)| tag.as_str());
        expected += layers.len();
        for (tag, t) in layers {
            let layer = digest(&t["digest"]);
            let manifest = digest(&t["manifest"]);
            let dir = tmp.path().join(format!("render-{}", tag.replace('/', "-")));
            let masks = !t["masks"].as_array().unwrap().is_empty();
            if masks && !is_root() {
                spfs_testkit::skip(&format!(
                    "{name} {tag}: rendering masks needs mknod as root"
                ));
                continue;
            }
            spfs_testkit::render_manifest(&fixture, &manifest, &dir);
            let out = empty_repo(&tmp.path().join(format!("out-{}", tag.replace('/', "-"))));
            let w = RepoWriter::open(&out, settings_of(name), None).unwrap();
            let tree = tree_of_dir(&dir).unwrap();
            let m = w.write_tree(&tree, &quiet).unwrap();
            assert_eq!(m, manifest, "{name} {tag}: manifest digest");
            assert_eq!(
                w.write_layer(m).unwrap(),
                layer,
                "{name} {tag}: layer digest"
            );
            let objects = stored(&out.join("objects"));
            // The manifest, the layer and one blob per distinct payload: nothing else.
            let entries = fixture.read_manifest(&manifest).unwrap();
            let blobs: BTreeSet<Digest> = entries
                .entries()
                .iter()
                .filter(|e| {
                    matches!(
                        e.kind(),
                        spfs_storage::EntryKind::File | spfs_storage::EntryKind::Symlink
                    )
                })
                .map(|e| e.digest())
                .collect();
            assert_eq!(
                objects.len(),
                blobs.len() + 2,
                "{name} {tag}: {:?}",
                objects.keys()
            );
            for (path, bytes) in &objects {
                let theirs = fixture_objects
                    .get(path)
                    .unwrap_or_else(|| panic!("{name} {tag}: spfs has no object {path}"));
                assert!(
                    theirs == bytes,
                    "{name} {tag}: object {path} differs\n ours   {bytes:02x?}\n theirs {theirs:02x?}"
                );
            }
            let payloads = stored(&out.join("payloads"));
            assert_eq!(payloads.len(), blobs.len(), "{name} {tag}");
            for (path, bytes) in &payloads {
                assert_eq!(
                    Some(bytes),
                    fixture_payloads.get(path),
                    "{name} {tag}: payload {path}"
                );
            }
            let report = Repository::open(&out).unwrap().check().unwrap();
            assert!(report.is_ok(), "{name} {tag}: {:?}", report.problems);
            eprintln!("{name} {tag}: manifest {manifest} and layer {layer} equal spfs's");
            compared += 1;
        }
    }
    // Every layer tag of both fixtures (only those with masks need root to render).
    assert!(compared > 0);
    if is_root() {
        assert_eq!(compared, expected);
    }
}

/// The platforms spfs wrote (bottom-up stacks from `expected.json`) come out the same.
#[test]
fn fixture_platforms_are_written_byte_for_byte() {
    for name in FIXTURES {
        let tmp = tempfile::tempdir().unwrap();
        let f = FixtureRepo::copy(name, &tmp.path().join("fixture"));
        let fixture_objects = stored(&f.root.join("objects"));
        let out = empty_repo(&tmp.path().join("out"));
        let w = RepoWriter::open(&out, settings_of(name), None).unwrap();
        let mut n = 0;
        for (tag, t) in f.expected["tags"].as_object().unwrap() {
            if t["kind"] != "platform" {
                continue;
            }
            let stack: Vec<Digest> = t["stack_bottom_up"]
                .as_array()
                .unwrap()
                .iter()
                .map(digest)
                .collect();
            let d = w.write_platform(&stack).unwrap();
            assert_eq!(d, digest(&t["digest"]), "{name} {tag}");
            let path = d.rel_path().to_str().unwrap().to_owned();
            assert_eq!(
                fs::read(out.join("objects").join(&path)).unwrap(),
                fixture_objects[&path],
                "{name} {tag}"
            );
            n += 1;
        }
        assert!(n >= 4, "{name}");
        // A repeated item keeps its last position (spfs's Stack::push).
        let [a, b] = [Digest::of(b"a"), Digest::of(b"b")];
        assert_eq!(
            w.write_platform(&[a, b, a]).unwrap(),
            w.write_platform(&[b, a]).unwrap()
        );
    }
}

fn tree(files: &[(&str, &Path)]) -> Node {
    let mut root = BTreeMap::new();
    for (path, source) in files {
        let mut parts: Vec<&str> = path.split('/').collect();
        let leaf = parts.pop().unwrap();
        let mut dir = &mut root;
        for p in parts {
            let Node::Dir { children, .. } = dir.entry(p.to_owned()).or_insert(Node::Dir {
                mode: 0o040755,
                children: BTreeMap::new(),
            }) else {
                unreachable!()
            };
            dir = children;
        }
        dir.insert(
            leaf.to_owned(),
            Node::File {
                mode: 0o100644,
                source: source.to_path_buf(),
            },
        );
    }
    root.insert("gone".into(), Node::Mask { mode: 0o020000 });
    root.insert(
        "link".into(),
        Node::Symlink {
            mode: 0o120777,
            target: "a/b".into(),
        },
    );
    Node::Dir {
        mode: 0o040755,
        children: root,
    }
}

fn sources(dir: &Path, n: usize, big: bool) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let p = dir.join(format!("f{i}"));
            let len = if big && i == 0 {
                (5 << 20) + 17
            } else {
                i * 100
            };
            let content: Vec<u8> = (0..len).map(|j| (i * 7 + j % 251) as u8).collect();
            fs::write(&p, content).unwrap();
            p
        })
        .collect()
}

#[test]
fn tags_append_versions_in_time_order_and_skip_the_same_target() {
    let tmp = tempfile::tempdir().unwrap();
    let root = empty_repo(&tmp.path().join("repo"));
    let w = RepoWriter::open(&root, WriteSettings::default(), None).unwrap();
    let repo = Repository::open(&root).unwrap();
    let [a, b, c] = [Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c")];
    w.write_tag("team/nested/t", a, "dev@here").unwrap();
    w.write_tag("team/nested/t", b, "dev@here").unwrap();
    let file = root.join("tags/team/nested/t.tag");
    let before = fs::read(&file).unwrap();
    w.write_tag("team/nested/t", b, "other@there").unwrap();
    assert_eq!(
        fs::read(&file).unwrap(),
        before,
        "same target: the stream is unchanged"
    );
    let h = repo.tag_history("team/nested/t").unwrap();
    assert_eq!(h.iter().map(|r| r.target).collect::<Vec<_>>(), [b, a]);
    assert_eq!(h[0].parent, h[1].digest, "the parent is the previous head");
    assert_eq!(h[1].parent, Digest::NULL);
    assert_eq!(
        (h[0].org.as_str(), h[0].name.as_str(), h[0].user.as_str()),
        ("team/nested", "t", "dev@here")
    );
    // spfs's time format: microseconds, `+00:00`.
    assert!(
        h[0].time.ends_with("+00:00") && h[0].time.len() <= 32,
        "{}",
        h[0].time
    );
    assert!(!root.join("tags/team/nested/t.tag.lock").exists());
    assert!(!root.join("tags/team/nested/t.tag.work").exists());
    // A record from the future stays the newest: the new one goes before it (time order).
    let mut future = before.clone();
    future.extend(spfs_storage::encode_tag_file([
        &spfs_storage::TagRecord::new(
            "team/nested",
            "t",
            c,
            "dev@future",
            "2999-01-01T00:00:00+00:00",
            h[0].digest,
        ),
    ]));
    fs::write(&file, &future).unwrap();
    w.write_tag("team/nested/t", a, "dev@here").unwrap();
    let h = repo.tag_history("team/nested/t").unwrap();
    assert_eq!(h.iter().map(|r| r.target).collect::<Vec<_>>(), [c, a, b, a]);
    assert_eq!(
        h[1].parent, h[0].digest,
        "the parent is the head when written"
    );
    // No org, and bad names.
    w.write_tag("top", c, "u").unwrap();
    assert!(root.join("tags/top.tag").is_file());
    for bad in ["", "a~1", "a b", "team#ns/x", "../x"] {
        assert!(
            matches!(w.write_tag(bad, c, "u"), Err(WriteError::BadTag(_))),
            "{bad}"
        );
    }
}

#[test]
fn a_lock_left_by_a_dead_process_is_broken_and_a_live_one_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    let root = empty_repo(&tmp.path().join("repo"));
    let w = RepoWriter::open(&root, WriteSettings::default(), None).unwrap();
    fs::create_dir_all(root.join("tags")).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim();
    // Another host's lock is never broken: its process may well be alive there.
    let lock = root.join("tags/t.tag.lock");
    fs::write(&lock, format!("spfs-fuse pid {dead} host elsewhere\n")).unwrap();
    let started = std::time::Instant::now();
    let err = w.write_tag("t", Digest::of(b"x"), "u").unwrap_err();
    assert!(matches!(err, WriteError::TagLocked(_)), "{err}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    fs::write(&lock, format!("spfs-fuse pid {dead} host {host}\n")).unwrap();
    w.write_tag("t", Digest::of(b"x"), "u").unwrap();
    // spfs's own (empty) lock is waited for, then refused after 5 s.
    fs::write(root.join("tags/t.tag.lock"), "").unwrap();
    let started = std::time::Instant::now();
    let err = w.write_tag("t", Digest::of(b"y"), "u").unwrap_err();
    assert!(matches!(err, WriteError::TagLocked(_)), "{err}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
}

#[test]
fn two_commits_at_once_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = empty_repo(&tmp.path().join("repo"));
    let src = sources(&tmp.path().join("src"), 40, true);
    let first: Vec<(String, &Path)> = (0..30)
        .map(|i| (format!("d{}/f{i}", i % 3), src[i].as_path()))
        .collect();
    let second: Vec<(String, &Path)> = (10..40)
        .map(|i| (format!("e/f{i}"), src[i].as_path()))
        .collect();
    let trees = [first, second].map(|files| {
        tree(
            &files
                .iter()
                .map(|(p, s)| (p.as_str(), *s))
                .collect::<Vec<_>>(),
        )
    });
    let layers: Vec<Digest> = std::thread::scope(|s| {
        let handles: Vec<_> = trees
            .iter()
            .map(|t| {
                let root = &root;
                s.spawn(move || {
                    let w = RepoWriter::open(root, WriteSettings::default(), None).unwrap();
                    let m = w.write_tree(t, &quiet).unwrap();
                    let l = w.write_layer(m).unwrap();
                    w.write_tag("dev/both", l, "u").unwrap();
                    l
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let repo = Repository::open(&root).unwrap();
    let report = repo.check().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.payloads, 40 + 1, "40 files and the symlink target");
    let h: BTreeSet<Digest> = repo
        .tag_history("dev/both")
        .unwrap()
        .iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(h, layers.iter().copied().collect());
}

#[test]
fn progress_counts_files_and_new_payloads() {
    let tmp = tempfile::tempdir().unwrap();
    let root = empty_repo(&tmp.path().join("repo"));
    let src = sources(&tmp.path().join("src"), 5, false);
    let t = tree(&[("a", &src[1]), ("b", &src[1]), ("c/d", &src[2])]);
    let events = std::sync::Mutex::new(Vec::new());
    let w = RepoWriter::open(&root, WriteSettings::default(), None)
        .unwrap()
        .with_threads(1);
    w.write_tree(&t, &|p| events.lock().unwrap().push(p))
        .unwrap();
    let events = events.into_inner().unwrap();
    assert_eq!(events[0], Progress::Planned { files: 4 });
    let written = events
        .iter()
        .filter(|e| matches!(e, Progress::File { written: true, .. }))
        .count();
    assert_eq!(written, 3, "a and b share one payload: {events:?}");
}

const POINTS: [FailPoint; 9] = [
    FailPoint::PayloadTemp,
    FailPoint::Payload,
    FailPoint::Blob,
    FailPoint::ObjectTemp,
    FailPoint::Manifest,
    FailPoint::Layer,
    FailPoint::Platform,
    FailPoint::TagLock,
    FailPoint::TagWork,
];

fn commit(w: &RepoWriter, t: &Node) -> Result<(Digest, Digest), WriteError> {
    let m = w.write_tree(t, &quiet)?;
    let l = w.write_layer(m)?;
    let p = w.write_platform(&[l])?;
    w.write_tag("dev/t", p, "u")?;
    Ok((l, p))
}

#[test]
fn a_commit_stopped_at_any_step_leaves_a_sound_repository() {
    for fixture in FIXTURES {
        for point in POINTS {
            let tmp = tempfile::tempdir().unwrap();
            let root = empty_repo(&tmp.path().join("repo"));
            let src = sources(&tmp.path().join("src"), 8, true);
            let files: Vec<(String, &Path)> = src
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("d/f{i}"), s.as_path()))
                .collect();
            let t = tree(
                &files
                    .iter()
                    .map(|(p, s)| (p.as_str(), *s))
                    .collect::<Vec<_>>(),
            );
            let w = RepoWriter::open(&root, settings_of(fixture), None).unwrap();
            let stopped = RepoWriter::open(&root, settings_of(fixture), None)
                .unwrap()
                .fail_at(Some(point));
            match commit(&stopped, &t) {
                Err(WriteError::FailPoint(p)) => assert_eq!(p, point),
                other => panic!("{fixture} {point:?}: {other:?}"),
            }
            let repo = Repository::open(&root).unwrap();
            let report = repo.check().unwrap();
            assert!(report.is_ok(), "{fixture} {point:?}: {:?}", report.problems);
            let (layer, platform) = commit(&w, &t).unwrap();
            let report = repo.check().unwrap();
            assert!(
                report.is_ok(),
                "{fixture} {point:?} then a commit: {:?}",
                report.problems
            );
            assert_eq!(report.payloads, 9, "{fixture} {point:?}");
            assert_eq!(repo.resolve("dev/t").unwrap().digest, platform);
            let m = repo.read_manifest(&layer).unwrap();
            assert_eq!(
                m.len(),
                8 + 1 + 2,
                "{fixture} {point:?}: d, its 8 files, gone, link"
            );
        }
    }
}

/// `write_tag` to a target that does not exist yet would fail the check; the tests above
/// tag only what they wrote. This one proves the check sees each kind of damage.
#[test]
fn the_check_names_every_kind_of_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let root = empty_repo(&tmp.path().join("repo"));
    let src = sources(&tmp.path().join("src"), 3, false);
    let t = tree(&[("a", &src[1]), ("b", &src[2])]);
    let w = RepoWriter::open(&root, WriteSettings::default(), None).unwrap();
    let (layer, _) = commit(&w, &t).unwrap();
    let repo = Repository::open(&root).unwrap();
    assert!(repo.check().unwrap().is_ok());
    let damage = |what: &str, path: PathBuf, bytes: Option<&[u8]>| {
        let saved = fs::read(&path).unwrap();
        match bytes {
            Some(b) => fs::write(&path, b).unwrap(),
            None => fs::remove_file(&path).unwrap(),
        }
        let report = repo.check().unwrap();
        assert!(!report.is_ok(), "{what}");
        let text = format!("{:?}", report.problems);
        fs::write(&path, saved).unwrap();
        assert!(repo.check().unwrap().is_ok(), "{what} repaired");
        text
    };
    let payload = repo.payload_path(&Digest::of(&fs::read(&src[1]).unwrap()));
    damage("payload content", payload.clone(), Some(b"other"));
    damage("payload missing", payload, None);
    let m = repo.read_manifest(&layer).unwrap();
    damage("manifest missing", repo.object_path(&m.digest()), None);
    damage("layer bytes", repo.object_path(&layer), Some(b"--SPFS--\n"));
    w.write_tag("dev/nothing", Digest::of(b"nothing"), "u")
        .unwrap();
    let report = repo.check().unwrap();
    assert!(
        format!("{:?}", report.problems).contains("which is missing"),
        "{:?}",
        report.problems
    );
}

#[test]
fn everything_written_belongs_to_the_owner() {
    if !is_root() {
        spfs_testkit::skip("chown to another user needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = empty_repo(&tmp.path().join("repo"));
    let src = sources(&tmp.path().join("src"), 4, true);
    let t = tree(&[("a", &src[0]), ("b/c", &src[1]), ("b/d", &src[2])]);
    let owner = (4242, 4343);
    let w = RepoWriter::open(&root, WriteSettings::default(), Some(owner)).unwrap();
    commit(&w, &t).unwrap();
    let mut seen = 0;
    // objects/ and payloads/ existed before: everything below them, and tags/, is new.
    let mut stack = vec![
        root.join("objects"),
        root.join("payloads"),
        root.join("tags"),
    ];
    let m = fs::metadata(root.join("tags")).unwrap();
    assert_eq!((m.uid(), m.gid()), owner);
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            assert_eq!((m.uid(), m.gid()), owner, "{}", e.path().display());
            let expected = if m.is_dir() { 0o777 } else { 0o666 };
            assert_eq!(m.mode() & 0o7777, expected, "{}", e.path().display());
            seen += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert!(seen > 10, "{seen}");
    let m = fs::metadata(root.join("objects")).unwrap();
    assert_eq!(m.uid(), 0);
}

/// Commit speed on a directory named by `SPFS_WRITE_BENCH_DIR`, into a new repository beside
/// it: `cargo test --release -p spfs-storage --test writer -- --ignored --nocapture`.
/// Compare with `cp -a DIR X` plus `sha256sum` of every file.
#[test]
#[ignore = "a measurement: run by hand with SPFS_WRITE_BENCH_DIR"]
fn measure_commit_speed() {
    let Some(dir) = std::env::var_os("SPFS_WRITE_BENCH_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let repo = dir.with_extension("bench-repo");
    let _ = fs::remove_dir_all(&repo);
    empty_repo(&repo);
    let started = std::time::Instant::now();
    let t = tree_of_dir(&dir).unwrap();
    let walked = started.elapsed();
    let w = RepoWriter::open(&repo, WriteSettings::default(), None).unwrap();
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let m = w
        .write_tree(&t, &|p| {
            if let Progress::File { bytes: b, .. } = p {
                bytes.fetch_add(b, std::sync::atomic::Ordering::Relaxed);
            }
        })
        .unwrap();
    w.write_layer(m).unwrap();
    let all = started.elapsed();
    eprintln!(
        "walk {walked:?}, commit {all:?} for {} MiB",
        bytes.into_inner() >> 20
    );
    // A second commit of the same tree: every payload exists, nothing is written.
    let again = std::time::Instant::now();
    assert_eq!(w.write_tree(&t, &quiet).unwrap(), m);
    eprintln!("again (all payloads present) {:?}", again.elapsed());
    fs::remove_dir_all(&repo).unwrap();
}

#[test]
fn what_spfs_cannot_store_is_refused_naming_the_path() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = empty_repo(&tmp.path().join("repo"));
    let w = RepoWriter::open(&root, WriteSettings::default(), None).unwrap();
    // A FIFO: "unsupported special file".
    let dir = tmp.path().join("fifo");
    fs::create_dir(&dir).unwrap();
    let fifo = std::ffi::CString::new(dir.join("p").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let err = tree_of_dir(&dir).unwrap_err();
    assert!(
        matches!(&err, WriteError::Unsupported { path, .. } if path.ends_with("fifo/p")),
        "{err}"
    );
    // A name that is not UTF-8.
    let dir = tmp.path().join("latin1");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(std::ffi::OsStr::from_bytes(b"caf\xe9")), "x").unwrap();
    let err = tree_of_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    // A file replaced by a symlink after the walk is not followed.
    let dir = tmp.path().join("swap");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("f"), "content").unwrap();
    let t = tree_of_dir(&dir).unwrap();
    fs::remove_file(dir.join("f")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("f")).unwrap();
    let err = w.write_tree(&t, &quiet).unwrap_err();
    assert!(err.to_string().contains("swap/f"), "{err}");
    // Names a tree cannot hold, and a root that is not a directory.
    for bad in ["", ".", "..", "a/b"] {
        let t = Node::Dir {
            mode: 0o040755,
            children: [(bad.to_owned(), Node::Mask { mode: 0o020000 })].into(),
        };
        assert!(
            matches!(w.write_tree(&t, &quiet), Err(WriteError::BadName { .. })),
            "{bad:?}"
        );
    }
    let err = w.write_tree(&Node::Mask { mode: 0 }, &quiet).unwrap_err();
    assert!(matches!(err, WriteError::RootNotADirectory), "{err}");
    assert!(Repository::open(&root).unwrap().check().unwrap().is_ok());
}

#[test]
fn init_makes_a_repository_spfs_and_the_reader_open() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("new/repo");
    let w = RepoWriter::init(&root, WriteSettings::default(), None).unwrap();
    assert_eq!(fs::read_to_string(root.join("VERSION")).unwrap(), "0.44.0");
    for dir in ["objects", "payloads", "tags"] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    let m = w.write_tree(&tree(&[]), &quiet).unwrap();
    assert!(Repository::open(&root).unwrap().has_object(&m));
    // Again: nothing changes, nothing fails.
    RepoWriter::init(&root, WriteSettings::default(), None).unwrap();
    let err = w.write_tag("t", m, "a\0b").unwrap_err();
    assert!(matches!(err, WriteError::BadUser(_)), "{err}");
}

/// `SPFS_STORAGE__ENCODING_FORMAT=legacy` alone (SPFS-FORMAT.md §5): legacy bodies, salted
/// digests. The digests are the current fixture's, the manifest body the legacy fixture's.
#[test]
fn legacy_encoding_with_salted_digests_mixes_the_two_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    let current = FixtureRepo::copy("current", &tmp.path().join("current"));
    let legacy = FixtureRepo::copy("legacy", &tmp.path().join("legacy"));
    let repo = Repository::open(&current.root).unwrap();
    let manifest = digest(&current.tag("dev/lower")["manifest"]);
    let dir = tmp.path().join("render");
    spfs_testkit::render_manifest(&repo, &manifest, &dir);
    let out = empty_repo(&tmp.path().join("out"));
    let settings = WriteSettings::from_values(Some("legacy"), None).unwrap();
    let w = RepoWriter::open(&out, settings, None).unwrap();
    let m = w.write_tree(&tree_of_dir(&dir).unwrap(), &quiet).unwrap();
    assert_eq!(m, manifest);
    assert_eq!(
        w.write_layer(m).unwrap(),
        digest(&current.tag("dev/lower")["digest"])
    );
    let ours = fs::read(out.join("objects").join(m.rel_path())).unwrap();
    let theirs_digest = digest(&legacy.tag("dev/lower")["manifest"]);
    let theirs = fs::read(legacy.root.join("objects").join(theirs_digest.rel_path())).unwrap();
    assert_eq!(&ours[9..11], &[1, 0], "salted, legacy encoding");
    assert_eq!(&ours[17..], &theirs[17..]);
    assert!(Repository::open(&out).unwrap().check().unwrap().is_ok());
}

#[test]
fn the_fixtures_spfs_wrote_pass_the_check() {
    for name in FIXTURES {
        let tmp = tempfile::tempdir().unwrap();
        let f = FixtureRepo::copy(name, &tmp.path().join(name));
        let report = Repository::open(&f.root).unwrap().check().unwrap();
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        assert_eq!((report.objects, report.payloads), (41, 25), "{name}");
        assert_eq!(
            report.tag_streams, 16,
            "{name}: 15 and one in namespace team"
        );
    }
}

mod round_trip {
    use super::*;
    use proptest::prelude::*;

    /// A random tree: directories (often with equal contents, so trees are shared), files from
    /// a small pool of contents, symlinks and masks.
    fn node(depth: u32) -> BoxedStrategy<Node> {
        let leaf = prop_oneof![
            (
                0usize..4,
                prop_oneof![Just(0o100644u32), Just(0o100755), Just(0o104750)]
            )
                .prop_map(|(c, mode)| Node::File {
                    mode,
                    source: PathBuf::from(format!("content-{c}")),
                }),
            "[a-z/.]{0,12}".prop_map(|target| Node::Symlink {
                mode: 0o120777,
                target
            }),
            prop_oneof![Just(0o020000u32), Just(0o020644), Just(0o777)]
                .prop_map(|mode| Node::Mask { mode }),
        ];
        if depth == 0 {
            return leaf.boxed();
        }
        prop_oneof![
            2 => leaf,
            1 => (
                prop_oneof![Just(0o040755u32), Just(0o040700)],
                proptest::collection::btree_map("[a-c]{1,2}|é|x y", node(depth - 1), 0..4),
            )
                .prop_map(|(mode, children)| Node::Dir { mode, children }),
        ]
        .boxed()
    }

    /// Points each file's source at the pool file in `dir`.
    fn rooted(n: &Node, dir: &Path) -> Node {
        match n {
            Node::File { mode, source } => Node::File {
                mode: *mode,
                source: dir.join(source),
            },
            Node::Dir { mode, children } => Node::Dir {
                mode: *mode,
                children: children
                    .iter()
                    .map(|(k, v)| (k.clone(), rooted(v, dir)))
                    .collect(),
            },
            other => other.clone(),
        }
    }

    /// The manifest read back, as (path, kind, mode, size, payload) rows.
    fn rows_of_manifest(repo: &Repository, d: &Digest) -> Vec<(String, String, u32, u64, Digest)> {
        let m = repo.read_manifest(d).unwrap();
        let mut rows: Vec<_> = (0..m.len())
            .map(|i| {
                let e = m.get(i).unwrap();
                let digest = if e.is_dir() { Digest::NULL } else { e.digest() };
                (
                    String::from_utf8(m.path(i)).unwrap(),
                    e.kind().to_string(),
                    e.mode(),
                    e.size(),
                    digest,
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn rows_of_tree(n: &Node, prefix: &str, out: &mut Vec<(String, String, u32, u64, Digest)>) {
        let Node::Dir { children, .. } = n else {
            return;
        };
        for (name, c) in children {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let row = match c {
                Node::Dir { mode, .. } => ("dir", *mode, 0, Digest::NULL),
                Node::File { mode, source } => {
                    let bytes = fs::read(source).unwrap();
                    ("file", *mode, bytes.len() as u64, Digest::of(&bytes))
                }
                Node::Symlink { mode, target } => (
                    "symlink",
                    *mode,
                    target.len() as u64,
                    Digest::of(target.as_bytes()),
                ),
                Node::Mask { mode } => ("mask", *mode, 0, Digest::NULL),
            };
            out.push((path.clone(), row.0.to_owned(), row.1, row.2, row.3));
            rows_of_tree(c, &path, out);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any tree reads back as written, both encodings give the same digest under the
        /// salted strategy, and the objects verify.
        #[test]
        fn any_tree_reads_back_as_written(children in proptest::collection::btree_map("[a-c]{1,2}", node(3), 0..5)) {
            let tmp = tempfile::tempdir().unwrap();
            let pool = tmp.path().join("pool");
            fs::create_dir(&pool).unwrap();
            for c in 0..4 {
                fs::write(pool.join(format!("content-{c}")), "x".repeat(c * 3)).unwrap();
            }
            let t = rooted(&Node::Dir { mode: 0o040755, children }, &pool);
            let mut digests = Vec::new();
            for encoding in [Encoding::FlatBuffers, Encoding::Legacy] {
                let root = empty_repo(&tmp.path().join(format!("{encoding:?}")));
                let settings = WriteSettings { encoding, strategy: DigestStrategy::WithKindAndSalt };
                let w = RepoWriter::open(&root, settings, None).unwrap();
                let m = w.write_tree(&t, &quiet).unwrap();
                let repo = Repository::open(&root).unwrap();
                let mut expected = Vec::new();
                rows_of_tree(&t, "", &mut expected);
                expected.sort();
                prop_assert_eq!(rows_of_manifest(&repo, &m), expected);
                let report = repo.check().unwrap();
                prop_assert!(report.is_ok(), "{:?}", report.problems);
                digests.push(m);
            }
            prop_assert_eq!(digests[0], digests[1]);
        }
    }
}
