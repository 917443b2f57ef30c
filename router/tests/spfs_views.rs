//! Views of spfs repositories through the core (no mount): every tag, every older tag version
//! and every object digest of both fixture repositories gives the view `expected.json` lists;
//! spfs items mix with directories; errors name what is wrong; a missing payload is EIO.

mod common;

use spfs_testkit::FixtureRepo;
use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use common::{Seen, root_attr, walk};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use spfs_router::process::FakeProcessTable;
use spfs_router::{FsError, Owner, ROOT, RouteError, Router, Routing, SpecError, ToErrno, Vfs};

const ENCODINGS: [&str; 2] = ["current", "legacy"];
const OWNER: u32 = 501;

struct Fixture {
    _dir: tempfile::TempDir,
    repo: FixtureRepo,
    router: Arc<Router>,
    vfs: Arc<Vfs>,
}

fn fixture(name: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    let repo = FixtureRepo::copy(name, &root);
    let processes = Arc::new(FakeProcessTable::new());
    processes.spawn(1, 0, 1, 0);
    for pid in 10..20 {
        processes.spawn(pid, 1, u64::from(pid), OWNER);
    }
    let router = Arc::new(Router::new(processes, root_attr()));
    let vfs = Arc::new(Vfs::new(Routing::Shared(router.clone())));
    Fixture {
        _dir: dir,
        repo,
        router,
        vfs,
    }
}

impl Fixture {
    fn register(&self, pid: u32, spec: &str) -> Result<(), RouteError> {
        self.router
            .register(
                pid,
                spec,
                &Owner::trusted(OWNER, OWNER),
                std::slice::from_ref(&self.repo.root),
                None,
            )
            .map(|_| ())
    }
}

/// The expected view as the walk reports it.
fn expected_seen(view: &Value) -> BTreeMap<Vec<u8>, (Seen, String)> {
    view.as_object()
        .unwrap()
        .iter()
        .map(|(path, e)| {
            let mode = u32::from_str_radix(e["mode"].as_str().unwrap(), 8).unwrap();
            let seen = match e["kind"].as_str().unwrap() {
                "dir" => Seen::Dir(mode & 0o7777),
                "file" => Seen::File(mode & 0o7777, Vec::new()),
                "symlink" => Seen::Symlink(e["target"].as_str().unwrap().as_bytes().to_vec()),
                other => panic!("kind {other}"),
            };
            (
                path.as_bytes().to_vec(),
                (seen, e["sha256"].as_str().unwrap_or_default().to_owned()),
            )
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_view(f: &Fixture, pid: u32, label: &str, view: &Value) {
    let seen = walk(&f.vfs, pid);
    let expected = expected_seen(view);
    let seen_paths: Vec<_> = seen.keys().map(|p| String::from_utf8_lossy(p)).collect();
    let expected_paths: Vec<_> = expected
        .keys()
        .map(|p| String::from_utf8_lossy(p))
        .collect();
    assert_eq!(seen_paths, expected_paths, "{label}: paths");
    for (path, got) in &seen {
        let (want, sha) = &expected[path];
        let p = String::from_utf8_lossy(path);
        match (got, want) {
            (Seen::File(perm, bytes), Seen::File(want_perm, _)) => {
                assert_eq!(perm, want_perm, "{label} {p}: mode");
                assert_eq!(&hex(&Sha256::digest(bytes)), sha, "{label} {p}: content");
                assert_eq!(
                    bytes.len() as u64,
                    view[p.as_ref()]["size"].as_u64().unwrap(),
                    "{label} {p}: size"
                );
            }
            _ => assert_eq!(got, want, "{label} {p}"),
        }
    }
    // Symlink modes and sizes come from the attributes.
    for (path, e) in view.as_object().unwrap() {
        if e["kind"] == "symlink" {
            let mut at = ROOT;
            for part in path.split('/') {
                at = f.vfs.lookup(pid, at, part.as_bytes()).unwrap().node;
            }
            let attr = f.vfs.getattr(pid, at).unwrap();
            assert_eq!(attr.perm, 0o777, "{label} {path}");
            assert_eq!(attr.size, e["size"].as_u64().unwrap(), "{label} {path}");
            assert_eq!(
                attr.uid, OWNER,
                "spfs entries belong to the runtime's owner"
            );
        }
    }
}

#[test]
fn every_tag_version_and_digest_gives_its_expected_view() {
    for name in ENCODINGS {
        let f = fixture(name);
        let cases = f.repo.cases();
        assert!(cases.len() > 50, "{name}: {} cases", cases.len());
        for (reference, view) in cases {
            let label = format!("{name} {reference}");
            match view {
                Some(view) => {
                    f.register(10, &reference)
                        .unwrap_or_else(|e| panic!("{label}: {e}"));
                    check_view(&f, 10, &label, view);
                    f.router.unregister(10).unwrap();
                }
                None => {
                    let err = f.register(10, &reference).unwrap_err();
                    assert!(err.to_string().contains("blob"), "{label}: {err}");
                }
            }
        }
    }
}

#[test]
fn env_specs_stack_like_spfs() {
    for name in ENCODINGS {
        let f = fixture(name);
        let tags = &f.repo.expected["tags"];
        let lower = tags["dev/lower"]["digest"].as_str().unwrap();
        let upper = tags["dev/upper"]["digest"].as_str().unwrap();
        for (spec, same_as) in [
            ("dev/lower+dev/upper", "dev/platform"),
            ("dev/history~2+dev/history~1", "dev/platform"),
            (&format!("{}+{}", &lower[..8], &upper[..8]), "dev/platform"),
            ("dev/platform+dev/extra", "dev/stacked"),
            ("dev/platform+dev/extra+dev/lower", "dev/dupes"),
            ("quirk/q1+quirk/q2+quirk/q3", "quirk/platform"),
        ] {
            f.register(11, spec)
                .unwrap_or_else(|e| panic!("{name} {spec}: {e}"));
            check_view(&f, 11, &format!("{name} {spec}"), &tags[same_as]["view"]);
            f.router.unregister(11).unwrap();
        }
    }
}

#[test]
fn a_directory_and_an_spfs_tag_mix_in_one_spec() {
    let f = fixture("current");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    let top = dir.path().join("top");
    fs::create_dir_all(base.join("bin")).unwrap();
    fs::write(base.join("bin/hello"), b"from the directory\n").unwrap();
    fs::write(base.join("only-base"), b"base\n").unwrap();
    fs::create_dir_all(&top).unwrap();
    fs::write(top.join("README.txt"), b"top wins\n").unwrap();
    fs::write(top.join(".wh.links"), b"").unwrap();
    let spec = format!("{}+dev/platform+{}", base.display(), top.display());
    f.register(12, &spec).unwrap();
    let seen = walk(&f.vfs, 12);
    let file = |p: &str| match &seen[p.as_bytes()] {
        Seen::File(_, bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("{p}: {other:?}"),
    };
    assert_eq!(
        file("only-base"),
        "base\n",
        "the directory below shows through"
    );
    assert_eq!(
        file("bin/hello"),
        "#!/bin/sh\necho \"hi from lower\"\n",
        "spfs wins above it"
    );
    assert_eq!(file("README.txt"), "top wins\n", "the directory above wins");
    assert!(
        !seen.contains_key(&b"links"[..]),
        "a whiteout above hides an spfs directory"
    );
    assert!(seen.contains_key(&b"plugins/beta/conf.ini"[..]));
    assert!(!seen.contains_key(&b"etc/obsolete.conf"[..]), "masked");
    let runtime = &f.router.runtimes()[0];
    assert_eq!(runtime.repos, vec![f.repo.root.clone()]);
    assert_eq!(runtime.spec.to_string(), spec);
}

#[test]
fn errors_name_the_tag_the_prefix_the_repository_and_the_object() {
    let f = fixture("current");
    let err = f.register(13, "dev/nope").unwrap_err();
    assert!(
        matches!(err, RouteError::Spec(SpecError::Spfs { .. })),
        "{err}"
    );
    assert_eq!(err.to_string(), "layer \"dev/nope\": unknown tag dev/nope");

    // Two objects share a first byte, so their 2-character prefix is ambiguous.
    let mut by_byte: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
    for d in f.repo.expected["objects"].as_object().unwrap().keys() {
        let first = spfs_storage::Digest::parse(d).unwrap().as_bytes()[0];
        by_byte.entry(first).or_default().push(d);
    }
    let prefix = &by_byte.values().find(|g| g.len() > 1).unwrap()[0][..2];
    let err = f.register(13, prefix).unwrap_err().to_string();
    assert!(
        err.contains(&format!("ambiguous partial digest {prefix}")),
        "{err}"
    );

    let not_repo = tempfile::tempdir().unwrap();
    let err = f
        .router
        .register(
            13,
            "dev/lower",
            &Owner::trusted(OWNER, OWNER),
            &[not_repo.path().to_path_buf()],
            None,
        )
        .unwrap_err();
    assert!(
        matches!(err, RouteError::Spec(SpecError::Repository { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("is not an spfs repository"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&not_repo.path().display().to_string()),
        "{err}"
    );

    let err = f
        .router
        .register(13, "dev/lower", &Owner::trusted(OWNER, OWNER), &[], None)
        .unwrap_err();
    assert!(
        err.to_string().contains("no spfs repository was given"),
        "{err}"
    );

    // A truncated manifest: the error names its file.
    let manifest = f.repo.expected["tags"]["dev/upper"]["manifest"]
        .as_str()
        .unwrap();
    let path = f
        .repo
        .root
        .join("objects")
        .join(&manifest[..2])
        .join(&manifest[2..]);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = f.register(13, "dev/platform").unwrap_err().to_string();
    assert!(err.contains("corrupt spfs object"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(f.router.runtimes().is_empty(), "nothing was registered");
    // The router still serves other registrations.
    f.register(13, "dev/lower").unwrap();
}

#[test]
fn a_missing_payload_is_eio_for_read_and_readlink() {
    let f = fixture("legacy");
    f.register(14, "dev/lower").unwrap();
    let view = &f.repo.expected["tags"]["dev/lower"]["view"];
    for path in ["README.txt", "bin/hi"] {
        let payload = view[path]["payload"].as_str().unwrap();
        fs::remove_file(
            f.repo
                .root
                .join("payloads")
                .join(&payload[..2])
                .join(&payload[2..]),
        )
        .unwrap();
    }
    let lookup = |path: &str| {
        let mut at = ROOT;
        for part in path.split('/') {
            at = f.vfs.lookup(14, at, part.as_bytes()).unwrap().node;
        }
        at
    };
    let err = f.vfs.open(14, lookup("README.txt"), false).unwrap_err();
    assert!(matches!(err, FsError::MissingPayload { .. }), "{err}");
    assert_eq!(err.to_errno(), libc::EIO);
    assert!(
        err.to_string()
            .contains(view["README.txt"]["payload"].as_str().unwrap())
    );
    // A read by node id alone (a kernel that skipped OPEN) fails the same way.
    let err = f.vfs.read(lookup("README.txt"), 0, 0, 100).unwrap_err();
    assert!(matches!(err, FsError::MissingPayload { .. }), "{err}");
    let err = f.vfs.readlink(lookup("bin/hi")).unwrap_err();
    assert_eq!(err.to_errno(), libc::EIO, "{err}");
    // Everything else still reads.
    let hello = lookup("bin/hello");
    let handle = f.vfs.open(14, hello, false).unwrap();
    assert_eq!(f.vfs.read(hello, handle, 0, 100).unwrap().len(), 31);
}
