//! The spfs repository reader against the fixtures in `fixtures/spfs/`: two
//! repositories written by the real spfs 0.44 (FlatBuffers + salted digests, and legacy +
//! legacy digests) and the `expected.json` next to each.
//!
//! Each test copies the fixture into a temporary directory first: git keeps no empty
//! directories, so the reader must not need them, and error tests damage their copy.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use spfs_storage::encode::{self, TreeEntry};
use spfs_storage::{
    Annotation, AnnotationValue, Digest, DigestStrategy, Encoding, EntryKind, Layer, Manifest,
    MountLayer, Object, ObjectKind, ObjectSource, Platform, Repositories, Repository, SpfsError,
};

const ENCODINGS: [&str; 2] = ["current", "legacy"];

/// A fixture repository copied into a temporary directory, with its expectations.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: Repository,
    expected: Value,
}

fn fixture(name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    let expected = spfs_testkit::FixtureRepo::copy(name, &root).expected;
    let repo = Repository::open(&root).unwrap();
    Fixture {
        _dir: dir,
        root,
        repo,
        expected,
    }
}

fn digest(v: &Value) -> Digest {
    Digest::parse(v.as_str().unwrap()).unwrap()
}

fn digests(v: &Value) -> Vec<Digest> {
    v.as_array().unwrap().iter().map(digest).collect()
}

fn kind_of(name: &str) -> ObjectKind {
    match name {
        "blob" => ObjectKind::Blob,
        "manifest" => ObjectKind::Manifest,
        "layer" => ObjectKind::Layer,
        "platform" => ObjectKind::Platform,
        other => panic!("unknown kind {other}"),
    }
}

fn tags(f: &Fixture) -> &serde_json::Map<String, Value> {
    f.expected["tags"].as_object().unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_tag_and_every_older_version_resolves() {
    for name in ENCODINGS {
        let f = fixture(name);
        for (tag, t) in tags(&f) {
            let r = f.repo.resolve(tag).unwrap();
            assert_eq!(r.digest, digest(&t["digest"]), "{name} {tag}");
            assert_eq!(r.kind, kind_of(t["kind"].as_str().unwrap()), "{name} {tag}");
            let history = digests(&t["history"]);
            for (i, d) in history.iter().enumerate() {
                let r = f.repo.resolve(&format!("{tag}~{i}")).unwrap();
                assert_eq!(r.digest, *d, "{name} {tag}~{i}");
            }
            let past = format!("{tag}~{}", history.len());
            match f.repo.resolve(&past).unwrap_err() {
                SpfsError::UnknownTagVersion {
                    reference,
                    versions,
                } => assert_eq!(
                    (reference.as_str(), versions),
                    (past.as_str(), history.len())
                ),
                other => panic!("{name} {past}: {other}"),
            }
            // The decoded records, newest first, with their digests and parent chain.
            let records = f.repo.tag_history(tag).unwrap();
            let entries = t["tag_entries"].as_array().unwrap();
            assert_eq!(records.len(), entries.len(), "{name} {tag}");
            for (rec, e) in records.iter().zip(entries) {
                assert_eq!(rec.target, digest(&e["target"]), "{name} {tag}");
                assert_eq!(rec.user, e["user"].as_str().unwrap());
                assert_eq!(rec.time, e["time"].as_str().unwrap());
                assert_eq!(rec.parent, digest(&e["parent"]));
                assert_eq!(rec.digest, digest(&e["tag_digest"]));
                assert_eq!(rec.path(), *tag);
            }
        }
        let listed = f.repo.list_tags().unwrap();
        let keys: Vec<String> = tags(&f).keys().cloned().collect();
        assert_eq!(listed, keys, "{name}: list_tags skips team#ns");
    }
}

#[test]
fn namespaced_tags_are_read_only_when_asked_for() {
    for name in ENCODINGS {
        let f = fixture(name);
        let team = f.expected["namespaced_tags"]["team"].as_object().unwrap();
        let repo = f.repo.clone().with_tag_namespace(Some("team"));
        for (tag, t) in team {
            assert_eq!(repo.resolve(tag).unwrap().digest, digest(&t["digest"]));
            assert_ne!(
                f.repo.resolve(tag).unwrap().digest,
                digest(&t["digest"]),
                "{name}: the default namespace's {tag} differs"
            );
        }
        let keys: Vec<String> = team.keys().cloned().collect();
        assert_eq!(repo.list_tags().unwrap(), keys);
    }
}

#[test]
fn every_object_decodes_with_its_kind_and_hashes_to_its_name() {
    for name in ENCODINGS {
        let f = fixture(name);
        let objects = f.expected["objects"].as_object().unwrap();
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (d, kind) in objects {
            let kind = kind.as_str().unwrap();
            *counts.entry(kind.to_owned()).or_default() += 1;
            let r = f.repo.resolve(d).unwrap();
            assert_eq!(r.kind, kind_of(kind), "{name} {d}");
            // verify_object decodes every field and recomputes the digest from them (for
            // blobs: hashes the payload), so a decoding mistake anywhere fails here.
            let object = f.repo.verify_object(&r.digest).unwrap();
            assert_eq!(object.kind(), r.kind, "{name} {d}");
            assert_eq!(f.repo.read_object(&r.digest).unwrap().kind(), r.kind);
            // The unpadded 52-character form is the same digest.
            assert_eq!(f.repo.resolve(&d[..52]).unwrap().digest, r.digest);
        }
        let expected_counts: BTreeMap<String, u64> = f.expected["object_counts"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(counts, expected_counts, "{name}");
        let header_bytes = (
            f.expected["storage"]["object_header_byte0_digest_strategy"].as_u64(),
            f.expected["storage"]["object_header_byte1_encoding"].as_u64(),
        );
        for d in objects.keys() {
            let h = f.repo.read_header(&Digest::parse(d).unwrap()).unwrap();
            let strategy = match h.strategy {
                DigestStrategy::Legacy => 0,
                DigestStrategy::WithKindAndSalt => 1,
                DigestStrategy::Unknown(b) => u64::from(b),
            };
            let encoding = match h.encoding {
                Encoding::Legacy => 0,
                Encoding::FlatBuffers => 1,
            };
            assert_eq!((Some(strategy), Some(encoding)), header_bytes, "{name} {d}");
        }
    }
}

#[test]
fn unique_partial_digests_resolve_on_bytes() {
    for name in ENCODINGS {
        let f = fixture(name);
        let all: Vec<Digest> = f.expected["objects"]
            .as_object()
            .unwrap()
            .keys()
            .map(|d| Digest::parse(d).unwrap())
            .collect();
        for d in &all {
            let text = d.to_string();
            for len in [2, 4, 5, 7, 8, 16] {
                let prefix = &text[..len];
                let p = spfs_storage::PartialDigest::parse(prefix).unwrap();
                let matching: Vec<_> = all.iter().filter(|o| p.matches(o)).collect();
                match f.repo.resolve(prefix) {
                    Ok(r) => {
                        assert_eq!(matching, [&r.digest], "{name} {prefix}");
                        assert_eq!(r.digest, *d);
                    }
                    Err(SpfsError::AmbiguousDigest { reference, matches }) => {
                        assert_eq!(reference, prefix);
                        assert!(matching.len() > 1, "{name} {prefix}");
                        assert!(matches.iter().all(|m| matching.contains(&m)));
                    }
                    Err(e) => panic!("{name} {prefix}: {e}"),
                }
            }
        }
    }
    // SPFS-FORMAT.md §12.2: "LM" decodes to the same byte as "LP".
    let f = fixture("current");
    let lower = f.repo.resolve("dev/lower").unwrap().digest;
    assert_eq!(f.repo.resolve("LP6F").unwrap().digest, lower);
    if let Ok(r) = f.repo.resolve("LM") {
        assert_eq!(r.digest, lower);
    }
}

#[test]
fn platforms_expand_bottom_first() {
    for name in ENCODINGS {
        let f = fixture(name);
        for (tag, t) in tags(&f).iter().filter(|(_, t)| t["kind"] == "platform") {
            let r = f.repo.resolve(tag).unwrap();
            let Object::Platform(p) = f.repo.read_object(&r.digest).unwrap() else {
                panic!("{name} {tag} is not a platform");
            };
            assert_eq!(p.stack, digests(&t["stack_bottom_up"]), "{name} {tag}");
            let layers = f.repo.layers_of(&r).unwrap();
            let got: Vec<Digest> = layers.iter().map(|l| l.digest).collect();
            assert_eq!(got, digests(&t["layers_bottom_up"]), "{name} {tag}");
            let got: Vec<Digest> = layers.iter().map(|l| l.manifest).collect();
            assert_eq!(got, digests(&t["manifests_bottom_up"]), "{name} {tag}");
        }
    }
}

#[test]
fn layers_name_their_manifest_and_their_masks() {
    for name in ENCODINGS {
        let f = fixture(name);
        for (tag, t) in tags(&f).iter().filter(|(_, t)| t["kind"] == "layer") {
            let r = f.repo.resolve(tag).unwrap();
            let Object::Layer(layer) = f.repo.read_object(&r.digest).unwrap() else {
                panic!("{name} {tag} is not a layer");
            };
            assert_eq!(layer.manifest, Some(digest(&t["manifest"])), "{name} {tag}");
            assert!(layer.annotations.is_empty());
            assert_eq!(
                f.repo.layers_of(&r).unwrap(),
                [MountLayer {
                    digest: r.digest,
                    manifest: digest(&t["manifest"])
                }]
            );
            let m = f.repo.read_manifest(&r.digest).unwrap();
            assert_eq!(m.digest(), digest(&t["manifest"]));
            let masks: Vec<String> = m
                .entries()
                .iter()
                .enumerate()
                .filter(|(_, e)| e.kind() == EntryKind::Mask)
                .map(|(i, _)| String::from_utf8(m.path(i)).unwrap())
                .collect();
            let expected: Vec<String> = t["masks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(masks, expected, "{name} {tag}");
        }
    }
}

/// One path of a merged view, as expected.json writes it.
#[derive(Clone, Debug, PartialEq)]
struct ViewEntry {
    kind: &'static str,
    mode: String,
    size: u64,
    payload: Option<Digest>,
}

/// Overlay semantics (SPFS-FORMAT.md §13.1), the simplest way: a map from path to entry.
fn merge(views: &mut BTreeMap<Vec<u8>, ViewEntry>, m: &Manifest) {
    let under = |views: &mut BTreeMap<Vec<u8>, ViewEntry>, path: &[u8]| {
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        views.retain(|k, _| !k.starts_with(&prefix));
    };
    // Breadth-first order: parents come before their children.
    for (i, e) in m.entries().iter().enumerate() {
        let path = m.path(i);
        let kind = match e.kind() {
            EntryKind::Mask => {
                views.remove(&path);
                under(views, &path);
                continue;
            }
            EntryKind::Dir => "dir",
            EntryKind::File => "file",
            EntryKind::Symlink => "symlink",
        };
        let lower_is_dir = views.get(&path).is_some_and(|v| v.kind == "dir");
        if kind != "dir" || !lower_is_dir {
            under(views, &path);
        }
        views.insert(
            path,
            ViewEntry {
                kind,
                mode: format!("{:06o}", e.mode()),
                size: e.size(),
                payload: (kind != "dir").then(|| e.digest()),
            },
        );
    }
}

fn check_view(f: &Fixture, label: &str, layers: &[MountLayer], expected: &Value) {
    let mut views = BTreeMap::new();
    for l in layers {
        merge(&mut views, &f.repo.read_manifest(&l.manifest).unwrap());
    }
    let expected = expected.as_object().unwrap();
    let got: BTreeSet<String> = views
        .keys()
        .map(|k| String::from_utf8(k.clone()).unwrap())
        .collect();
    let want: BTreeSet<String> = expected.keys().cloned().collect();
    assert_eq!(got, want, "{label}: paths");
    for (path, want) in expected {
        let got = &views[path.as_bytes()];
        assert_eq!(got.kind, want["kind"].as_str().unwrap(), "{label} {path}");
        assert_eq!(got.mode, want["mode"].as_str().unwrap(), "{label} {path}");
        assert_eq!(got.size, want["size"].as_u64().unwrap(), "{label} {path}");
        if got.kind == "dir" {
            continue;
        }
        let payload = got.payload.unwrap();
        assert_eq!(payload, digest(&want["payload"]), "{label} {path}");
        let file = f.repo.payload_path(&payload);
        let content = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(content.len() as u64, got.size, "{label} {path}");
        assert_eq!(Digest::of(&content), payload, "{label} {path}");
        if let Some(sha) = want.get("sha256") {
            assert_eq!(hex(Digest::of(&content).as_bytes()), sha.as_str().unwrap());
        }
        if let Some(target) = want.get("target") {
            assert_eq!(
                content,
                target.as_str().unwrap().as_bytes(),
                "{label} {path}"
            );
        }
    }
}

#[test]
fn every_view_matches_expected_json() {
    for name in ENCODINGS {
        let f = fixture(name);
        for (tag, t) in tags(&f).iter().filter(|(_, t)| t.get("view").is_some()) {
            let layers = f.repo.layers_of(&f.repo.resolve(tag).unwrap()).unwrap();
            check_view(&f, &format!("{name} {tag}"), &layers, &t["view"]);
            // Every digest a tag's history names gives the same view as the tag at that time.
            for (i, d) in digests(&t["history"]).iter().enumerate() {
                let r = f.repo.resolve(&d.to_string()).unwrap();
                assert_eq!(f.repo.resolve(&format!("{tag}~{i}")).unwrap(), r);
            }
        }
        let team = &f.expected["namespaced_tags"]["team"]["dev/upper"];
        let repo = f.repo.clone().with_tag_namespace(Some("team"));
        let layers = repo.layers_of(&repo.resolve("dev/upper").unwrap()).unwrap();
        check_view(
            &f,
            &format!("{name} team dev/upper"),
            &layers,
            &team["view"],
        );
    }
}

#[test]
fn the_blob_tag_names_its_payload() {
    for name in ENCODINGS {
        let f = fixture(name);
        let t = &tags(&f)["dev/blob"];
        let r = f.repo.resolve("dev/blob").unwrap();
        let Object::Blob(b) = f.repo.read_object(&r.digest).unwrap() else {
            panic!("{name}: dev/blob is not a blob");
        };
        assert_eq!(b.payload, r.digest);
        assert_eq!(b.size, t["size"].as_u64().unwrap());
        let content = fs::read(f.repo.payload_path(&b.payload)).unwrap();
        assert_eq!(
            hex(Digest::of(&content).as_bytes()),
            t["sha256"].as_str().unwrap()
        );
        match f.repo.layers_of(&r).unwrap_err() {
            SpfsError::NotMountable(d) => assert_eq!(d, r.digest),
            other => panic!("{name}: {other}"),
        }
    }
}

/// SPFS-FORMAT.md §15's env-spec checks, item by item through `layers_of_stack`.
#[test]
fn env_spec_stacks_follow_the_runtime_rules() {
    for name in ENCODINGS {
        let f = fixture(name);
        let layers_of = |items: &[&str]| -> Vec<Digest> {
            let items: Vec<Digest> = items
                .iter()
                .map(|i| f.repo.resolve(i).unwrap().digest)
                .collect();
            f.repo
                .layers_of_stack(&items)
                .unwrap()
                .iter()
                .map(|l| l.digest)
                .collect()
        };
        let expected = |tag: &str| digests(&tags(&f)[tag]["layers_bottom_up"]);
        assert_eq!(
            layers_of(&["dev/lower", "dev/upper"]),
            expected("dev/platform")
        );
        assert_eq!(
            layers_of(&["dev/history~2", "dev/history~1"]),
            expected("dev/platform")
        );
        let (l, u) = (
            f.repo.resolve("dev/lower").unwrap().digest.to_string(),
            f.repo.resolve("dev/upper").unwrap().digest.to_string(),
        );
        assert_eq!(layers_of(&[&l[..4], &u[..4]]), expected("dev/platform"));
        assert_eq!(
            layers_of(&["dev/platform", "dev/extra"]),
            expected("dev/stacked")
        );
        assert_eq!(
            layers_of(&["dev/platform", "dev/extra", "dev/lower"]),
            expected("dev/dupes")
        );
        // Step 1 keeps the last occurrence of a repeated item.
        assert_eq!(
            layers_of(&["dev/lower", "dev/upper", "dev/lower"]),
            vec![
                digest(&tags(&f)["dev/upper"]["digest"]),
                digest(&tags(&f)["dev/lower"]["digest"])
            ]
        );
        assert!(layers_of(&[]).is_empty());
        // A manifest used directly stands for itself.
        let m = f.repo.resolve("dev/manifest").unwrap();
        assert_eq!(
            f.repo.layers_of(&m).unwrap(),
            [MountLayer {
                digest: m.digest,
                manifest: m.digest
            }]
        );
        // "AXT" is no valid partial digest (3 characters), so it is read as a tag.
        assert!(
            matches!(f.repo.resolve("AXT").unwrap_err(), SpfsError::UnknownTag(t) if t == "AXT")
        );
    }
}

#[test]
fn several_repositories_are_searched_in_order() {
    let legacy = fixture("legacy");
    let current = fixture("current");
    let both = Repositories::new(vec![legacy.repo.clone(), current.repo.clone()]);
    // A tag both have: the first repository wins.
    let lower_legacy = legacy.repo.resolve("dev/lower").unwrap();
    assert_eq!(both.resolve("dev/lower").unwrap(), lower_legacy);
    // Digests only the second has are found there, with their layers and payloads.
    let stacked = current.repo.resolve("dev/stacked").unwrap();
    assert_eq!(both.resolve(&stacked.digest.to_string()).unwrap(), stacked);
    let layers = both.layers_of(&stacked).unwrap();
    assert_eq!(layers, current.repo.layers_of(&stacked).unwrap());
    let m = both.read_manifest(&layers[0].digest).unwrap();
    let file = m
        .entries()
        .iter()
        .find(|e| e.kind() == EntryKind::File)
        .unwrap();
    let path = both.payload_path(&file.digest()).unwrap();
    assert!(path.starts_with(&legacy.root) || path.starts_with(&current.root));
    assert_eq!(both.payload_path(&Digest::of(b"no such payload")), None);
    // A partial digest unknown in the first is looked up in the second.
    let lower_current = current.repo.resolve("dev/lower").unwrap();
    let prefix = &lower_current.digest.to_string()[..16];
    assert_eq!(both.resolve(prefix).unwrap(), lower_current);
    // Unknown everywhere: the error names the reference.
    let err = both.resolve("dev/nope").unwrap_err();
    assert!(
        matches!(&err, SpfsError::UnknownTag(t) if t == "dev/nope"),
        "{err}"
    );
    assert!(Repositories::open([legacy.root.join("tags")]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Errors. Each names what is wrong.

#[test]
fn unknown_tags_digests_and_prefixes_are_named() {
    for name in ENCODINGS {
        let f = fixture(name);
        let err = f.repo.resolve("dev/nope").unwrap_err();
        assert!(
            matches!(&err, SpfsError::UnknownTag(t) if t == "dev/nope"),
            "{err}"
        );
        assert!(err.to_string().contains("dev/nope"));
        let err = f.repo.resolve("nope~3").unwrap_err();
        assert!(
            matches!(&err, SpfsError::UnknownTag(t) if t == "nope"),
            "{err}"
        );
        let err = f.repo.resolve("dev/history~3").unwrap_err();
        assert!(err.to_string().contains("dev/history~3"), "{err}");

        let missing = Digest::of(b"no such object");
        let err = f.repo.resolve(&missing.to_string()).unwrap_err();
        assert!(
            matches!(&err, SpfsError::UnknownObject(d) if *d == missing),
            "{err}"
        );
        assert!(err.to_string().contains(&missing.to_string()));

        // A prefix no object has.
        let all: Vec<Digest> = f.expected["objects"]
            .as_object()
            .unwrap()
            .keys()
            .map(|d| Digest::parse(d).unwrap())
            .collect();
        let unused = ["AAAA", "7777", "QQQQ", "ZZZZ"]
            .into_iter()
            .find(|p| {
                let p = spfs_storage::PartialDigest::parse(p).unwrap();
                !all.iter().any(|d| p.matches(d))
            })
            .unwrap();
        let err = f.repo.resolve(unused).unwrap_err();
        assert!(
            matches!(&err, SpfsError::UnknownPartialDigest(p) if p == unused),
            "{err}"
        );

        let err = f.repo.resolve("not a reference").unwrap_err();
        assert!(matches!(&err, SpfsError::InvalidReference(_)), "{err}");
    }
}

#[test]
fn an_ambiguous_prefix_lists_its_matches() {
    for name in ENCODINGS {
        let f = fixture(name);
        // Two objects whose first bytes agree share a 2-character prefix.
        let mut by_first_byte: BTreeMap<u8, Vec<Digest>> = BTreeMap::new();
        for d in f.expected["objects"].as_object().unwrap().keys() {
            let d = Digest::parse(d).unwrap();
            by_first_byte.entry(d.as_bytes()[0]).or_default().push(d);
        }
        let group = by_first_byte.values().find(|g| g.len() > 1).unwrap();
        let prefix = &group[0].to_string()[..2];
        match f.repo.resolve(prefix).unwrap_err() {
            err @ SpfsError::AmbiguousDigest { .. } => {
                let SpfsError::AmbiguousDigest { reference, matches } = &err else {
                    unreachable!()
                };
                assert_eq!(reference, prefix);
                assert!(matches.len() >= 2);
                for d in group.iter().take(5) {
                    assert!(matches.contains(d), "{name} {prefix}: {d}");
                    assert!(err.to_string().contains(&d.to_string()), "{err}");
                }
                assert!(err.to_string().contains(prefix));
            }
            other => panic!("{name} {prefix}: {other}"),
        }
    }
}

#[test]
fn a_path_that_is_not_a_repository_is_named() {
    let empty = tempfile::tempdir().unwrap();
    let err = Repository::open(empty.path()).unwrap_err();
    assert!(matches!(err, SpfsError::NotARepository { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&empty.path().display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("objects/"), "{err}");

    for name in ENCODINGS {
        let f = fixture(name);
        // Without objects/ (or payloads/) it is not a repository, VERSION or not.
        fs::rename(f.root.join("payloads"), f.root.join("moved")).unwrap();
        let err = Repository::open(&f.root).unwrap_err();
        assert!(matches!(err, SpfsError::NotARepository { .. }), "{err}");
        assert!(err.to_string().contains("payloads/"), "{err}");
        fs::rename(f.root.join("moved"), f.root.join("payloads")).unwrap();
        fs::remove_dir_all(f.root.join("objects")).unwrap();
        let err = Repository::open(&f.root).unwrap_err();
        assert!(
            err.to_string().contains(&f.root.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("objects/"), "{err}");
        // A file is not a repository either.
        let err = Repository::open(f.root.join("VERSION")).unwrap_err();
        assert!(matches!(err, SpfsError::NotARepository { .. }), "{err}");
    }
}

#[test]
fn a_repository_without_tags_has_no_tags() {
    let f = fixture("current");
    fs::remove_dir_all(f.root.join("tags")).unwrap();
    let repo = Repository::open(&f.root).unwrap();
    assert!(repo.list_tags().unwrap().is_empty());
    assert!(matches!(
        repo.resolve("dev/lower").unwrap_err(),
        SpfsError::UnknownTag(_)
    ));
    assert!(repo.resolve("LP6F").is_ok());
}

fn assert_corrupt(err: SpfsError, file: &Path, words: &[&str]) {
    match &err {
        SpfsError::CorruptObject { path, reason } => {
            assert_eq!(path, file, "{err}");
            assert!(
                words.iter().any(|w| reason.contains(w)),
                "{err}: expected one of {words:?}"
            );
        }
        other => panic!("expected a corrupt object error, got {other}"),
    }
    assert!(err.to_string().contains(&file.display().to_string()));
}

#[test]
fn a_bad_magic_is_an_error_naming_the_object_file() {
    for name in ENCODINGS {
        let f = fixture(name);
        let layer = f.repo.resolve("dev/lower").unwrap().digest;
        let file = f.repo.object_path(&layer);
        let mut bytes = fs::read(&file).unwrap();
        bytes[2] = b'X';
        fs::write(&file, &bytes).unwrap();
        assert_corrupt(
            f.repo.resolve("dev/lower").unwrap_err(),
            &file,
            &["bad magic"],
        );
        assert_corrupt(
            f.repo.read_object(&layer).unwrap_err(),
            &file,
            &["bad magic"],
        );
        assert_corrupt(
            f.repo.layers_of_stack(&[layer]).unwrap_err(),
            &file,
            &["bad magic"],
        );
        // An empty file, and one that is not an object at all.
        fs::write(&file, b"").unwrap();
        assert_corrupt(
            f.repo.read_object(&layer).unwrap_err(),
            &file,
            &["truncated"],
        );
        fs::write(&file, b"hello, world, this is not an object").unwrap();
        assert_corrupt(
            f.repo.read_object(&layer).unwrap_err(),
            &file,
            &["bad magic"],
        );
    }
}

#[test]
fn a_truncated_object_is_an_error_naming_the_object_file() {
    for name in ENCODINGS {
        let f = fixture(name);
        let lower = f.repo.resolve("dev/lower").unwrap().digest;
        let manifest = digest(&tags(&f)["dev/lower"]["manifest"]);
        let file = f.repo.object_path(&manifest);
        let bytes = fs::read(&file).unwrap();
        // Every cut: inside the header, at its end, and anywhere in the body.
        // (A FlatBuffer may end in alignment padding, so its last byte can go unnoticed.)
        let last = if name == "legacy" {
            bytes.len() - 1
        } else {
            bytes.len() - 8
        };
        for len in [3, 12, 17, 18, bytes.len() / 2, last] {
            fs::write(&file, &bytes[..len]).unwrap();
            let err = f.repo.read_manifest(&lower).unwrap_err();
            assert_corrupt(
                err,
                &file,
                &["truncated", "bad length", "invalid FlatBuffer"],
            );
        }
        // Trailing bytes are a bad length too (legacy; a FlatBuffer tolerates padding).
        let mut long = bytes.clone();
        long.extend_from_slice(&[0; 8]);
        fs::write(&file, &long).unwrap();
        if name == "legacy" {
            assert_corrupt(
                f.repo.read_manifest(&lower).unwrap_err(),
                &file,
                &["bad length"],
            );
        }
        // An unknown encoding or kind byte.
        let mut odd = bytes.clone();
        odd[10] = 7;
        fs::write(&file, &odd).unwrap();
        assert_corrupt(
            f.repo.read_manifest(&lower).unwrap_err(),
            &file,
            &["encoding"],
        );
        let mut odd = bytes.clone();
        odd[16] = 5;
        fs::write(&file, &odd).unwrap();
        assert_corrupt(f.repo.read_manifest(&lower).unwrap_err(), &file, &["kind"]);
    }
}

#[test]
fn every_cut_and_every_flipped_byte_of_every_object_is_handled_without_panic() {
    for name in ENCODINGS {
        let f = fixture(name);
        for d in f.expected["objects"].as_object().unwrap().keys() {
            let d = Digest::parse(d).unwrap();
            let file = f.repo.object_path(&d);
            let bytes = fs::read(&file).unwrap();
            let original = f.repo.read_object(&d).unwrap();
            let step = (bytes.len() / 16).max(1);
            for len in (0..bytes.len()).step_by(step) {
                fs::write(&file, &bytes[..len]).unwrap();
                // Only a FlatBuffer's trailing alignment padding may go.
                if let Ok(object) = f.repo.read_object(&d) {
                    assert!(
                        name == "current" && len + 8 > bytes.len(),
                        "{name} {d} cut at {len}"
                    );
                    assert_eq!(object, original, "{name} {d} cut at {len}");
                }
            }
            for i in (0..bytes.len()).step_by(step) {
                let mut b = bytes.clone();
                b[i] ^= 0xa5;
                fs::write(&file, &b).unwrap();
                // A flipped byte may still decode (a name, a mode); it must not panic, and
                // digest verification must notice any change to what was decoded. (Flips in
                // FlatBuffers padding, or in the unused high half of a legacy mode, change
                // nothing.)
                let decoded = f.repo.read_object(&d);
                let kind = f.expected["objects"][d.to_string()].as_str().unwrap();
                if kind != "blob" && f.repo.verify_object(&d).is_ok() {
                    assert_eq!(decoded.unwrap(), original, "{name} {d} flip at {i}");
                }
            }
            fs::write(&file, &bytes).unwrap();
        }
    }
}

#[test]
fn a_corrupt_tag_file_is_named() {
    for name in ENCODINGS {
        let f = fixture(name);
        let file = f.root.join("tags/dev/history.tag");
        let bytes = fs::read(&file).unwrap();
        fs::write(&file, &bytes[..bytes.len() - 5]).unwrap();
        match f.repo.resolve("dev/history").unwrap_err() {
            SpfsError::CorruptTag { path, .. } => assert_eq!(path, file),
            other => panic!("{name}: {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the fixtures cannot show: annotated layers, and every header combination.

#[test]
fn annotated_and_annotation_only_layers() {
    let f = fixture("current");
    let lower = f.repo.resolve("dev/lower").unwrap().digest;
    let lower_manifest = digest(&tags(&f)["dev/lower"]["manifest"]);
    let write = |object: &Object| -> Digest {
        let (d, bytes) = encode::object_file(
            object,
            Encoding::FlatBuffers,
            DigestStrategy::WithKindAndSalt,
        );
        let path = f.repo.object_path(&d);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        d
    };
    let annotations = vec![
        Annotation {
            key: "owner".into(),
            value: AnnotationValue::String("dev".into()),
        },
        Annotation {
            key: "notes".into(),
            value: AnnotationValue::Digest(digest(&tags(&f)["dev/blob"]["digest"])),
        },
    ];
    let only = write(&Object::Layer(Layer {
        manifest: None,
        annotations: annotations.clone(),
    }));
    let annotated = write(&Object::Layer(Layer {
        manifest: Some(lower_manifest),
        annotations: annotations.clone(),
    }));
    for d in [only, annotated] {
        let Object::Layer(l) = f.repo.verify_object(&d).unwrap() else {
            panic!("not a layer");
        };
        assert_eq!(l.annotations, annotations);
    }
    let platform = write(&Object::Platform(Platform {
        stack: vec![only, lower, annotated],
    }));
    let layers = f
        .repo
        .layers_of(&f.repo.resolve(&platform.to_string()).unwrap())
        .unwrap();
    // The annotation-only layer adds nothing; `annotated` repeats lower's manifest.
    assert_eq!(
        layers,
        [MountLayer {
            digest: lower,
            manifest: lower_manifest
        }]
    );
    assert!(matches!(
        f.repo.read_manifest(&only).unwrap_err(),
        SpfsError::LayerWithoutManifest(d) if d == only
    ));
    // A platform holding a blob cannot be mounted; the error names the blob.
    let blob = digest(&tags(&f)["dev/blob"]["digest"]);
    let with_blob = write(&Object::Platform(Platform {
        stack: vec![lower, blob],
    }));
    assert!(matches!(
        f.repo.layers_of_stack(&[with_blob]).unwrap_err(),
        SpfsError::NotMountable(d) if d == blob
    ));
}

/// Rebuilds a manifest's stored trees from the flattened form: depth first, one tree per
/// distinct directory content.
fn trees_of(m: &Manifest) -> Vec<Vec<TreeEntry<'_>>> {
    fn tree<'m>(
        m: &'m Manifest,
        range: std::ops::Range<usize>,
        out: &mut Vec<Vec<TreeEntry<'m>>>,
        seen: &mut BTreeSet<Digest>,
    ) {
        let entries: Vec<TreeEntry<'m>> = m.entries()[range.clone()]
            .iter()
            .map(|e| TreeEntry {
                name: std::str::from_utf8(m.name(e)).unwrap(),
                kind: e.kind(),
                object: e.digest(),
                mode: e.mode(),
                size: e.size(),
            })
            .collect();
        if !seen.insert(encode::tree_digest(&entries)) {
            return;
        }
        out.push(entries);
        for e in &m.entries()[range] {
            if e.kind() == EntryKind::Dir {
                tree(m, m.children(e), out, seen);
            }
        }
    }
    let mut out = Vec::new();
    tree(m, m.root_children(), &mut out, &mut BTreeSet::new());
    out
}

#[test]
fn every_encoding_and_strategy_reads_back_with_the_same_digests() {
    let current = fixture("current");
    let legacy = fixture("legacy");
    for (tag, _) in tags(&current).iter().filter(|(_, t)| t["kind"] == "layer") {
        let m = current
            .repo
            .read_manifest(&current.repo.resolve(tag).unwrap().digest)
            .unwrap();
        let trees = trees_of(&m);
        // Every tree's digest is the one its directory entry names.
        for e in m.entries().iter().filter(|e| e.kind() == EntryKind::Dir) {
            let children: Vec<TreeEntry<'_>> = m.entries()[m.children(e)]
                .iter()
                .map(|c| TreeEntry {
                    name: std::str::from_utf8(m.name(c)).unwrap(),
                    kind: c.kind(),
                    object: c.digest(),
                    mode: c.mode(),
                    size: c.size(),
                })
                .collect();
            assert_eq!(encode::tree_digest(&children), e.digest(), "{tag}");
        }
        let legacy_manifest = digest(&tags(&legacy)[tag.as_str()]["manifest"]);
        for (encoding, strategy, expected) in [
            (
                Encoding::FlatBuffers,
                DigestStrategy::WithKindAndSalt,
                Some(m.digest()),
            ),
            (
                Encoding::Legacy,
                DigestStrategy::WithKindAndSalt,
                Some(m.digest()),
            ),
            (
                Encoding::Legacy,
                DigestStrategy::Legacy,
                Some(legacy_manifest),
            ),
            (
                Encoding::FlatBuffers,
                DigestStrategy::Legacy,
                Some(legacy_manifest),
            ),
        ] {
            let (d, bytes) = encode::manifest_file(&trees, encoding, strategy);
            // Tree order is reconstructed, so the digest matches only when spfs stored the
            // trees in the same depth-first order.
            if let Some(expected) = expected {
                assert_eq!(d, expected, "{tag} {encoding:?} {strategy:?}");
            }
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("objects")).unwrap();
            fs::create_dir_all(dir.path().join("payloads")).unwrap();
            let repo = Repository::open(dir.path()).unwrap();
            let path = repo.object_path(&d);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, &bytes).unwrap();
            let back = repo.read_manifest(&d).unwrap();
            let Object::Manifest(_) = repo.verify_object(&d).unwrap() else {
                panic!("not a manifest");
            };
            assert_eq!(back.len(), m.len());
            for (a, b) in back.entries().iter().zip(m.entries()) {
                assert_eq!(
                    (a.kind(), a.mode(), a.size(), a.digest()),
                    (b.kind(), b.mode(), b.size(), b.digest())
                );
                assert_eq!(back.name(a), m.name(b));
            }
        }
    }
}

#[test]
fn hostile_platforms_stay_cheap_and_bounded() {
    let f = fixture("current");
    let write = |object: &Object| -> Digest {
        let (d, bytes) = encode::object_file(
            object,
            Encoding::FlatBuffers,
            DigestStrategy::WithKindAndSalt,
        );
        let path = f.repo.object_path(&d);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        d
    };
    let platform = f.repo.resolve("dev/platform").unwrap();
    // Each level holds the level below twice: 2^48 layers if expanded naively.
    let mut top = platform.digest;
    for _ in 0..48 {
        top = write(&Object::Platform(Platform {
            stack: vec![top, top],
        }));
    }
    let layers = f.repo.layers_of_stack(&[top]).unwrap();
    assert_eq!(layers, f.repo.layers_of(&platform).unwrap());
    // Nesting deeper than MAX_PLATFORM_DEPTH is an error naming the platform.
    let mut top = platform.digest;
    for _ in 0..=spfs_storage::MAX_PLATFORM_DEPTH {
        top = write(&Object::Platform(Platform { stack: vec![top] }));
    }
    let err = f.repo.layers_of_stack(&[top]).unwrap_err();
    assert!(matches!(err, SpfsError::PlatformTooDeep(_)), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Round trips of random trees through every encoding and strategy.

mod round_trip {
    use super::*;
    use proptest::prelude::*;

    /// A directory tree: name -> node.
    #[derive(Clone, Debug)]
    enum Node {
        File {
            mode: u32,
            size: u64,
            seed: u8,
        },
        Symlink {
            size: u64,
            seed: u8,
        },
        Mask,
        Dir {
            mode: u32,
            children: BTreeMap<String, Node>,
        },
    }

    fn node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            (0o0u32..0o7777, 0u64..1 << 40, any::<u8>()).prop_map(|(p, size, seed)| Node::File {
                mode: 0o100000 | p,
                size,
                seed
            }),
            (1u64..4096, any::<u8>()).prop_map(|(size, seed)| Node::Symlink { size, seed }),
            Just(Node::Mask),
            Just(Node::Dir {
                mode: 0o040755,
                children: BTreeMap::new()
            }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            (
                0o0u32..0o7777,
                proptest::collection::btree_map(name(), inner, 0..8),
            )
                .prop_map(|(p, children)| Node::Dir {
                    mode: 0o040000 | p,
                    children,
                })
        })
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 ._ü-]{1,12}".prop_filter("not . or ..", |n| n != "." && n != "..")
    }

    /// Encodes the trees below `children` depth first; returns this tree's entries.
    fn encode_tree<'a>(
        children: &'a BTreeMap<String, Node>,
        stored: &mut Vec<Vec<TreeEntry<'a>>>,
    ) -> Vec<TreeEntry<'a>> {
        let slot = stored.len();
        stored.push(Vec::new());
        let entries: Vec<TreeEntry<'a>> = children
            .iter()
            .map(|(name, n)| match n {
                Node::File { mode, size, seed } => TreeEntry {
                    name,
                    kind: EntryKind::File,
                    object: Digest::of(&[*seed]),
                    mode: *mode,
                    size: *size,
                },
                Node::Symlink { size, seed } => TreeEntry {
                    name,
                    kind: EntryKind::Symlink,
                    object: Digest::of(&[*seed, 1]),
                    mode: 0o120777,
                    size: *size,
                },
                Node::Mask => TreeEntry {
                    name,
                    kind: EntryKind::Mask,
                    object: Digest::NULL,
                    mode: 0o020644,
                    size: 0,
                },
                Node::Dir { mode, children } => {
                    let sub = encode_tree(children, stored);
                    TreeEntry {
                        name,
                        kind: EntryKind::Dir,
                        object: encode::tree_digest(&sub),
                        mode: *mode,
                        size: 0,
                    }
                }
            })
            .collect();
        stored[slot] = entries.clone();
        entries
    }

    fn model(
        prefix: &str,
        children: &BTreeMap<String, Node>,
        out: &mut BTreeMap<String, (EntryKind, u32, u64)>,
    ) {
        for (name, n) in children {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let v = match n {
                Node::File { mode, size, .. } => (EntryKind::File, *mode, *size),
                Node::Symlink { size, .. } => (EntryKind::Symlink, 0o120777, *size),
                Node::Mask => (EntryKind::Mask, 0o020644, 0),
                Node::Dir { mode, children } => {
                    model(&path, children, out);
                    (EntryKind::Dir, *mode, 0)
                }
            };
            out.insert(path, v);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_trees_read_back_in_every_encoding(
            root in proptest::collection::btree_map(name(), node(), 0..10)
        ) {
            let mut stored = Vec::new();
            encode_tree(&root, &mut stored);
            let mut want = BTreeMap::new();
            model("", &root, &mut want);
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("objects")).unwrap();
            fs::create_dir_all(dir.path().join("payloads")).unwrap();
            let repo = Repository::open(dir.path()).unwrap();
            for encoding in [Encoding::FlatBuffers, Encoding::Legacy] {
                for strategy in [DigestStrategy::WithKindAndSalt, DigestStrategy::Legacy] {
                    let (d, bytes) = encode::manifest_file(&stored, encoding, strategy);
                    let path = repo.object_path(&d);
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(&path, &bytes).unwrap();
                    repo.verify_object(&d).unwrap();
                    let m = repo.read_manifest(&d).unwrap();
                    let mut got = BTreeMap::new();
                    for (i, e) in m.entries().iter().enumerate() {
                        let path = String::from_utf8(m.path(i)).unwrap();
                        prop_assert_eq!(m.lookup(path.as_bytes()), Some(i));
                        got.insert(path, (e.kind(), e.mode(), e.size()));
                    }
                    prop_assert_eq!(&got, &want);
                }
            }
        }
    }
}
