//! spfs repositories through the real service and a real mount: every tag, every older tag
//! version and every object digest of both fixture repositories (`fixtures/spfs`,
//! copied to a temporary directory first, since git keeps no empty directories) shows exactly
//! the view `expected.json` lists; a spec mixes a directory and a tag; each error is named
//! through the CLI; a deleted payload reads as EIO; a caller who is not the service's user
//! may only register what it can read; `info` reports what a spec resolves to.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;
use spfs_testkit::FixtureRepo;
use spfs_testkit::require_fuse;
use support::{Env, OTHER_UID, Sleeper, ok, stderr, stdout};

const ENCODINGS: [&str; 2] = ["current", "legacy"];

/// Lists the view at `$SPFS_ROOT`: one `path kind perm size target` line per entry, then one
/// `sha256  ./path` line per file.
const LIST: &str = r#"cd "$SPFS_ROOT" && find . -mindepth 1 -printf 'E\t%P\t%y\t%m\t%s\t%l\n' && find . -type f -exec sha256sum {} +"#;

/// A copy of a fixture repository in a test's directory.
struct Repo(FixtureRepo);

impl std::ops::Deref for Repo {
    type Target = FixtureRepo;
    fn deref(&self) -> &FixtureRepo {
        &self.0
    }
}

fn repo(env: &Env, name: &str) -> Repo {
    Repo(FixtureRepo::copy(
        name,
        &env.path().join("repos").join(name),
    ))
}

impl Repo {
    fn arg(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// The file of an object or payload.
    fn file(&self, dir: &str, digest: &str) -> PathBuf {
        self.root.join(dir).join(&digest[..2]).join(&digest[2..])
    }
}

/// One entry as the mount shows it, or as `expected.json` lists it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    kind: String,
    perm: String,
    size: Option<u64>,
    sha256: Option<String>,
    target: Option<String>,
}

/// Parses the output of [`LIST`].
fn parse_listing(text: &str) -> BTreeMap<String, Seen> {
    let mut seen = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for line in text.lines() {
        if let Some(entry) = line.strip_prefix("E\t") {
            let fields: Vec<&str> = entry.split('\t').collect();
            assert_eq!(fields.len(), 5, "{line:?}");
            let kind = match fields[1] {
                "d" => "dir",
                "f" => "file",
                "l" => "symlink",
                other => panic!("unexpected type {other} in {line:?}"),
            };
            seen.insert(
                fields[0].to_owned(),
                Seen {
                    kind: kind.to_owned(),
                    perm: format!("{:o}", u32::from_str_radix(fields[2], 8).unwrap()),
                    size: (kind != "dir").then(|| fields[3].parse().unwrap()),
                    sha256: None,
                    target: (kind == "symlink").then(|| fields[4].to_owned()),
                },
            );
        } else if let Some((hash, path)) = line.split_once("  ./") {
            hashes.insert(path.to_owned(), hash.to_owned());
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    for (path, hash) in hashes {
        seen.get_mut(&path).expect("hashed a listed file").sha256 = Some(hash);
    }
    seen
}

fn expected_view(view: &Value) -> BTreeMap<String, Seen> {
    view.as_object()
        .unwrap()
        .iter()
        .map(|(path, e)| {
            let kind = e["kind"].as_str().unwrap().to_owned();
            let mode = u32::from_str_radix(e["mode"].as_str().unwrap(), 8).unwrap();
            let seen = Seen {
                perm: format!("{:o}", mode & 0o7777),
                size: (kind != "dir").then(|| e["size"].as_u64().unwrap()),
                sha256: e["sha256"].as_str().map(str::to_owned),
                target: e["target"].as_str().map(str::to_owned),
                kind,
            };
            (path.clone(), seen)
        })
        .collect()
}

/// `spfs-fuse run --repo REPO... SPEC -- sh -c SCRIPT`.
fn run_in(env: &Env, repos: &[&str], spec: &str, script: &str) -> Output {
    let mut args = vec!["run"];
    for repo in repos {
        args.extend(["--repo", repo]);
    }
    args.extend([spec, "--", "sh", "-c", script]);
    env.run(&args)
}

#[track_caller]
fn assert_view(label: &str, out: &Output, view: &Value) {
    assert!(out.status.success(), "{label}: {}", stderr(out));
    let seen = parse_listing(&stdout(out));
    let expected = expected_view(view);
    let seen_paths: Vec<&String> = seen.keys().collect();
    let expected_paths: Vec<&String> = expected.keys().collect();
    assert_eq!(seen_paths, expected_paths, "{label}: nothing else is there");
    for (path, want) in &expected {
        assert_eq!(&seen[path], want, "{label}: {path}");
    }
}

#[test]
fn every_tag_version_and_digest_mounts_as_expected_in_both_encodings() {
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    let _service = env.service();
    for name in ENCODINGS {
        let repo = repo(&env, name);
        let cases = repo.cases();
        assert!(cases.len() > 50, "{name}: only {} cases", cases.len());
        for (reference, view) in cases {
            let label = format!("{name} {reference}");
            let out = run_in(&env, &[repo.arg()], &reference, LIST);
            match view {
                Some(view) => assert_view(&label, &out, view),
                None => {
                    assert!(!out.status.success(), "{label}: a blob mounted");
                    assert!(
                        stderr(&out)
                            .contains("is a blob: a blob cannot be used as a filesystem layer"),
                        "{label}: {}",
                        stderr(&out)
                    );
                }
            }
        }
    }
}

#[test]
fn a_directory_and_an_spfs_tag_mix_in_one_spec() {
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    let _service = env.service();
    let repo = repo(&env, "legacy");
    let dir = env.path().join("local");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/hello"), "from the directory\n").unwrap();
    std::fs::write(dir.join("local.txt"), "mine\n").unwrap();
    std::fs::write(dir.join(".wh.emptydir"), "").unwrap();
    // The tag over the directory, then the directory over the tag.
    let below = format!("{}+dev/platform", dir.display());
    let out = run_in(
        &env,
        &[repo.arg()],
        &below,
        r#"cat "$SPFS_ROOT/bin/hello" "$SPFS_ROOT/local.txt"; ls "$SPFS_ROOT""#,
    );
    assert_eq!(
        ok(&out),
        "#!/bin/sh\necho \"hi from lower\"\nmine\nREADME.txt\nbin\ndata\nempty.dat\nemptydir\netc\nlinks\nlocal.txt\nname with space.txt\nplugins\nprivate\n\u{fc}n\u{ef}code-\u{df}.txt\n",
    );
    let above = format!("dev/platform+{}", dir.display());
    let out = run_in(
        &env,
        &[repo.arg()],
        &above,
        r#"cat "$SPFS_ROOT/bin/hello"; test -e "$SPFS_ROOT/emptydir" || echo hidden; cat "$SPFS_ROOT/plugins/alpha.txt""#,
    );
    assert_eq!(ok(&out), "from the directory\nhidden\nalpha plugin\n");
    // `mount` too, and status shows the spec as written.
    let root = Sleeper::as_uid(0);
    ok(&env.run(&[
        "mount",
        "--repo",
        repo.arg(),
        "--root-process",
        &root.pid(),
        &above,
    ]));
    let status = support::status_json(&env);
    assert_eq!(
        status["runtimes"][0]["env_spec"],
        above.as_str(),
        "{status}"
    );
}

#[test]
fn each_error_is_named_and_the_service_keeps_serving() {
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    let _service = env.service();
    let repo = repo(&env, "current");
    let root = Sleeper::as_uid(0);
    let mount = |repos: &[&str], spec: &str| {
        let mut args = vec!["mount", "--root-process", &root.0.id().to_string()]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        for r in repos {
            args.extend(["--repo".to_owned(), (*r).to_owned()]);
        }
        args.push(spec.to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.run(&args)
    };
    let refused = |out: Output, words: &[&str]| {
        assert!(!out.status.success(), "accepted: {}", stdout(&out));
        let err = stderr(&out);
        for w in words {
            assert!(err.contains(w), "{err:?} lacks {w:?}");
        }
    };
    refused(
        mount(&[repo.arg()], "dev/nope"),
        &[
            "invalid argument",
            "layer \"dev/nope\": unknown tag dev/nope",
        ],
    );
    refused(
        mount(&[repo.arg()], "dev/history~3"),
        &["unknown tag version dev/history~3", "only 3 version"],
    );
    let prefix = ambiguous_prefix(&repo);
    refused(
        mount(&[repo.arg()], &prefix),
        &[&format!("ambiguous partial digest {prefix}")],
    );
    let not_repo = env.path().join("not-a-repo");
    std::fs::create_dir_all(not_repo.join("objects")).unwrap();
    refused(
        mount(&[not_repo.to_str().unwrap()], "dev/lower"),
        &[
            &format!("{} is not an spfs repository", not_repo.display()),
            "payloads/",
        ],
    );
    // A truncated object: the error names its file.
    let manifest = repo.tag("dev/upper")["manifest"].as_str().unwrap();
    let object = repo.file("objects", manifest);
    let bytes = std::fs::read(&object).unwrap();
    std::fs::write(&object, &bytes[..bytes.len() - 7]).unwrap();
    refused(
        mount(&[repo.arg()], "dev/platform"),
        &["corrupt spfs object", object.to_str().unwrap()],
    );
    // A magic that is not spfs's.
    let layer = repo.tag("toplevel")["digest"].as_str().unwrap();
    let object = repo.file("objects", layer);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[0] = b'X';
    std::fs::write(&object, &bytes).unwrap();
    refused(
        mount(&[repo.arg()], "toplevel"),
        &["corrupt spfs object", object.to_str().unwrap()],
    );
    // Without --repo the storage root comes from SPFS_STORAGE__ROOT ...
    let missing = env.path().join("no-storage-root");
    let out = env
        .cmd(&["mount", "--root-process", &root.pid(), "dev/lower"])
        .env("SPFS_STORAGE__ROOT", &missing)
        .output()
        .unwrap();
    refused(
        out,
        &[&format!("{} is not an spfs repository", missing.display())],
    );
    // ... and a plain directory spec needs no repository at all.
    let out = env
        .cmd(&["mount", "--root-process", &root.pid(), &env.layer()])
        .env("SPFS_STORAGE__ROOT", &missing)
        .output()
        .unwrap();
    ok(&out);
    ok(&env.run(&["unmount", "--root-process", &root.pid()]));
    // The service is still serving: the storage root from the environment works.
    let out = env
        .cmd(&[
            "run",
            "dev/lower",
            "--",
            "sh",
            "-c",
            r#"cat "$SPFS_ROOT/README.txt""#,
        ])
        .env("SPFS_STORAGE__ROOT", &repo.root)
        .output()
        .unwrap();
    assert_eq!(ok(&out), "spfs fixture: lower layer\n");
}

/// A 2-character prefix that more than one object's digest starts with, on bytes.
fn ambiguous_prefix(repo: &Repo) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let first_byte = |d: &str| {
        let value = |c: u8| ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        let b = d.as_bytes();
        ((value(b[0]) << 3) | (value(b[1]) >> 2)) as u8
    };
    let mut counts: BTreeMap<u8, (usize, String)> = BTreeMap::new();
    for d in repo.expected["objects"].as_object().unwrap().keys() {
        let entry = counts
            .entry(first_byte(d))
            .or_insert((0, d[..2].to_owned()));
        entry.0 += 1;
    }
    counts
        .into_values()
        .find(|(n, _)| *n > 1)
        .expect("two objects share a first byte")
        .1
}

#[test]
fn a_deleted_payload_reads_as_eio() {
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    let _service = env.service();
    let repo = repo(&env, "current");
    let view = &repo.tag("dev/lower")["view"];
    let payload = view["README.txt"]["payload"].as_str().unwrap();
    std::fs::remove_file(repo.file("payloads", payload)).unwrap();
    let out = run_in(
        &env,
        &[repo.arg()],
        "dev/lower",
        r#"cat "$SPFS_ROOT/README.txt"; echo "status $?"; cat "$SPFS_ROOT/etc/app.conf""#,
    );
    let text = stdout(&out) + &stderr(&out);
    assert!(text.contains("Input/output error"), "{text}");
    assert!(text.contains("status 1"), "{text}");
    assert!(
        text.contains("mode=lower"),
        "other files still read: {text}"
    );
    let log = std::fs::read_to_string(env.path().join("service.stderr")).unwrap();
    assert!(
        log.contains(payload),
        "the service log names the digest: {log}"
    );
}

#[test]
fn another_user_registers_only_what_it_can_read() {
    if !require_fuse() {
        return;
    }
    let env = Env::new();
    let _service = env.service();
    let repo = repo(&env, "current");
    // Let the other user reach the socket and the test's files.
    for dir in [
        env.path().to_path_buf(),
        env.path().join("run"),
        env.path().join("repos"),
    ] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(env.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let open = env.path().join("open");
    let locked = env.path().join("locked");
    for (dir, mode) in [(&open, 0o755), (&locked, 0o700)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let root = Sleeper::as_uid(OTHER_UID);
    let as_other = |args: &[&str]| {
        env.cmd(args)
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .output()
            .expect("run spfs-fuse as the other user")
    };
    let mount = |repo: &str, spec: &str| {
        as_other(&["mount", "--root-process", &root.pid(), "--repo", repo, spec])
    };
    let out = mount(repo.arg(), locked.to_str().unwrap());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("permission denied"), "{err}");
    assert!(
        err.contains(&format!("uid {OTHER_UID} may not read {locked:?}")),
        "{err}"
    );

    // A repository the user cannot read is refused the same way, even for a tag it holds.
    std::fs::set_permissions(&repo.root, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = mount(repo.arg(), "dev/lower");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("may not read {:?}", repo.root)),
        "{}",
        stderr(&out)
    );
    std::fs::set_permissions(&repo.root, std::fs::Permissions::from_mode(0o755)).unwrap();

    // What the user can read registers.
    ok(&mount(repo.arg(), &format!("{}+dev/lower", open.display())));
}

#[test]
fn info_reports_items_layers_and_entries() {
    let env = Env::new();
    let repo = repo(&env, "legacy");
    let out = env.run(&["info", "--repo", repo.arg(), "dev/dupes", "--json"]);
    let info: Value = serde_json::from_str(&ok(&out)).unwrap();
    let dupes = repo.tag("dev/dupes");
    assert_eq!(info["items"][0]["kind"], "platform");
    assert_eq!(info["items"][0]["digest"], dupes["digest"]);
    let layers: Vec<&Value> = info["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let expected: Vec<&Value> = dupes["layers_bottom_up"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(layers, expected, "bottom first, repeats dropped");
    assert_eq!(
        info["entries"].as_u64().unwrap() as usize,
        dupes["view"].as_object().unwrap().len()
    );
    let lower_entries = repo.tag("dev/lower")["view"].as_object().unwrap().len();
    assert_eq!(
        info["layers"][0]["entries"].as_u64().unwrap() as usize,
        lower_entries
    );

    let out = env.run(&["info", "--repo", repo.arg(), &env.layer(), "toplevel"]);
    let text = ok(&out);
    assert!(
        text.contains(&format!("{}  directory", env.layer())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "toplevel{}layer",
            " ".repeat(env.layer().len() - 8 + 2)
        )),
        "{text}"
    );
    assert!(text.contains("view: 3 entries"), "{text}");

    let out = env.run(&["info", "--repo", repo.arg(), "dev/nope"]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        "spfs-fuse: layer \"dev/nope\": unknown tag dev/nope\n"
    );
}
