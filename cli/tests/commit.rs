//! `spfs-fuse commit` and `spfs-fuse reset` through the binary and a real service on real
//! mounts (Linux `/dev/fuse`), in the shared and the per-runtime layouts: what an editable
//! runtime showed is what a fresh runtime of the commit shows (listing, modes, content
//! hashes), over several commits in a row and for a platform; the runtime carries on from
//! the committed stack (status, `diff`, a restart) with its processes' working directories and
//! open files intact; a writer racing a commit loses nothing; a reset shows at once; the
//! caller must be able to write the repository and owns what the commit writes; and a service
//! killed (SIGKILL) during commits leaves a repository that validates and a runtime that
//! commits again.

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod support;
use spfs_testkit::require_fuse;
use support::mounts::{Shell, put};
use support::{BIN, OTHER_UID, Service, Sleeper, eventually, ok, stderr};

/// A lower layer with a file to keep, one to overwrite, one to delete, a directory to replace
/// by a file and a file to replace by a directory.
fn lower(dir: &Path) -> String {
    let layer = dir.join("lower");
    put(&layer, "keep", b"keep\n");
    put(&layer, "over", b"before\n");
    put(&layer, "gone", b"gone\n");
    put(&layer, "swap/inner", b"inner\n");
    put(&layer, "back", b"a file below\n");
    put(&layer, "deep/a/b/c", b"deep\n");
    layer.to_str().unwrap().to_owned()
}

/// A test's directory with the [`lower`] layer in it, and where its repository goes
/// (`<dir>/repo`, made by the first commit).
fn setting() -> (tempfile::TempDir, String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let spec = lower(dir.path());
    let repo = dir.path().join("repo");
    (dir, spec, repo)
}

/// What a process sees under `place`: every path with its type, mode, size and link target,
/// then every file's content hash, as one line (sorted, so two views compare by `==`). A
/// directory's size is left out: it is the host filesystem's, not layer data.
fn snapshot(shell: &mut Shell, place: &str) -> String {
    shell.ask(&format!(
        "cd {place} && find . -mindepth 1 \\( -type d -printf '%p d %m\\n' \\) -o \
         -printf '%p %y %m %s %l\\n' | LC_ALL=C sort && \
         find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum"
    ))
}

/// A shell in a fresh read-only runtime of `spec`, its spfs items (if any) found in `repo`;
/// returns the shell and its view's place.
fn fresh(service: &Service, spec: &str, repo: &Path) -> (Shell, String) {
    register(service, spec, repo, &[])
}

/// [`fresh`], editable.
fn editable(service: &Service, spec: &str, repo: &Path) -> (Shell, String) {
    register(service, spec, repo, &["--edit"])
}

fn register(service: &Service, spec: &str, repo: &Path, flags: &[&str]) -> (Shell, String) {
    let shell = Shell::nested(1);
    let root = shell.pid().to_string();
    let mut args = vec!["mount", "--root-process", &root];
    args.extend(flags);
    if repo.exists() {
        args.extend(["--repo", repo.to_str().unwrap()]);
    }
    args.push(spec);
    let place = ok(&service.cli(&args)).trim().to_owned();
    (shell, place)
}

/// `commit KIND` of the runtime of `root` into `repo`, tagged `tag`.
fn try_commit(service: &Service, root: u32, kind: &str, repo: &Path, tag: &str) -> Output {
    service.cli(&[
        "commit",
        kind,
        "--root-process",
        &root.to_string(),
        "--repo",
        repo.to_str().unwrap(),
        "--tag",
        tag,
    ])
}

/// [`try_commit`], which must succeed; returns the digest.
fn commit(service: &Service, root: u32, kind: &str, repo: &Path, tag: &str) -> String {
    let digest = ok(&try_commit(service, root, kind, repo, tag))
        .trim()
        .to_owned();
    assert_eq!(digest.len(), spfs_storage::DIGEST_STRING_LEN, "{digest}");
    digest
}

/// The env spec `status` shows for the runtime of `root`.
fn env_spec(service: &Service, root: u32) -> String {
    let status = service.status_json();
    status["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["root_pid"] == root)
        .unwrap_or_else(|| panic!("no runtime of {root} in {status}"))["env_spec"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `info --json` of `reference` in `repo` (no service involved).
fn info_json(repo: &Path, reference: &str) -> String {
    let out = Command::new(BIN)
        .args(["info", "--json", "--repo"])
        .arg(repo)
        .arg(reference)
        .output()
        .unwrap();
    ok(&out)
}

/// Every object, payload and tag of `repo` checks out.
fn assert_valid(repo: &Path) {
    if !repo.exists() {
        return;
    }
    let repo = spfs_storage::Repository::open(repo).unwrap();
    let report = repo.check().expect("the repository can be read");
    assert!(
        report.problems.is_empty(),
        "the repository does not validate: {:?}",
        report.problems
    );
}

/// Edits the view at `place` through `shell` as the issue lists: create, overwrite, delete a
/// lower file, replace a lower directory by a file and a lower file by a directory, and a
/// mode and a symlink.
fn edit(shell: &mut Shell, place: &str) {
    let answer = shell.ask(&format!(
        "cd {place} && echo new > added && echo after > over && rm gone && rm -r swap && \
         echo now a file > swap && rm back && mkdir back && echo below > back/x && \
         chmod 0751 keep && ln -s keep link && mkdir -p deep/a/b2 && echo ok"
    ));
    assert_eq!(answer, "ok");
}

/// The round trip in `service`'s layout: edit, commit a layer, and a fresh runtime of the
/// lower layer plus the new tag shows what the edited view showed; the runtime carries on
/// from the committed stack (status, an empty diff, the same view), and three more commits in
/// a row do the same, each one's tag a new version.
fn round_trip(service: &Service) {
    let (_dir, spec, repo) = setting();
    let (mut shell, place) = editable(service, &spec, &repo);
    let root = shell.pid();
    edit(&mut shell, &place);
    let edited = snapshot(&mut shell, &place);

    let digest = commit(service, root, "layer", &repo, "test/edit");
    assert_valid(&repo);
    assert_eq!(
        snapshot(&mut shell, &place),
        edited,
        "the commit changed the view"
    );
    assert_eq!(env_spec(service, root), format!("{spec}+{digest}"));
    let diff = ok(&service.cli(&["diff", "--root-process", &root.to_string()]));
    assert_eq!(diff, "", "the scratch is not empty after the commit");
    {
        let (mut other, there) = fresh(service, &format!("{spec}+test/edit"), &repo);
        assert_eq!(snapshot(&mut other, &there), edited);
    }
    let info = info_json(&repo, "test/edit");
    assert!(info.contains(&digest), "{info}");

    // Several commits in a row: each on top of the last.
    let mut digests = vec![digest];
    for round in 0..3 {
        let answer = shell.ask(&format!(
            "cd {place} && echo round {round} >> over && rm -f added && echo {round} > r{round} \
             && echo ok"
        ));
        assert_eq!(answer, "ok");
        let edited = snapshot(&mut shell, &place);
        let digest = commit(service, root, "layer", &repo, "test/edit");
        assert_eq!(snapshot(&mut shell, &place), edited);
        digests.push(digest);
        let stack = std::iter::once(spec.clone())
            .chain(digests.iter().cloned())
            .collect::<Vec<_>>()
            .join("+");
        assert_eq!(env_spec(service, root), stack);
        let (mut other, there) = fresh(service, &stack, &repo);
        assert_eq!(snapshot(&mut other, &there), edited, "round {round}");
    }
    assert_valid(&repo);
    // The tag's versions are the commits, newest first.
    for (back, digest) in digests.iter().rev().enumerate() {
        let shown = info_json(&repo, &format!("test/edit~{back}"));
        assert!(shown.contains(digest.as_str()), "test/edit~{back}: {shown}");
    }
}

support::in_both_layouts!(
    round_trip:
        a_commit_shows_in_a_fresh_runtime_exactly_as_edited_in_the_shared_layout,
        a_commit_shows_in_a_fresh_runtime_exactly_as_edited_in_the_per_runtime_layout
);

/// `commit platform`: refused for a stack with a directory layer; from an spfs stack, a
/// platform of its layers plus the new one, which a fresh runtime shows alone as the edited
/// view, and the runtime carries on from it.
fn platform(service: &Service) {
    let (_dir, spec, repo) = setting();
    let (mut shell, place) = editable(service, &spec, &repo);
    edit(&mut shell, &place);
    let out = service.cli(&[
        "commit",
        "platform",
        "--root-process",
        &shell.pid().to_string(),
        "--repo",
        repo.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&spec) && err.contains("platform"), "{err}");
    let base = commit(service, shell.pid(), "layer", &repo, "test/base");

    // A runtime of spfs layers alone: the base commit, alone, on an empty spec.
    let (mut first, first_place) = editable(service, "-", &repo);
    let answer = first.ask(&format!(
        "cd {first_place} && echo one > one && mkdir d && echo two > d/two && echo ok"
    ));
    assert_eq!(answer, "ok");
    let layer = commit(service, first.pid(), "layer", &repo, "test/one");
    let (mut second, second_place) = editable(service, &format!("{base}+test/one"), &repo);
    let answer = second.ask(&format!(
        "cd {second_place} && rm one && echo three > d/three && echo ok"
    ));
    assert_eq!(answer, "ok");
    let edited = snapshot(&mut second, &second_place);
    let digest = commit(service, second.pid(), "platform", &repo, "test/platform");
    assert_valid(&repo);
    assert_eq!(env_spec(service, second.pid()), digest);
    assert_eq!(snapshot(&mut second, &second_place), edited);
    let (mut other, there) = fresh(service, "test/platform", &repo);
    assert_eq!(snapshot(&mut other, &there), edited);
    let info = info_json(&repo, "test/platform");
    assert!(
        info.contains(&base) && info.contains(&layer),
        "the platform holds the stack: {info}"
    );
}

support::in_both_layouts!(
    platform:
        commit_platform_writes_the_stack_plus_the_changes_in_the_shared_layout,
        commit_platform_writes_the_stack_plus_the_changes_in_the_per_runtime_layout
);

/// A root process running `script` in the background of nothing: it stays the root of its
/// runtime while it runs (a job a shell puts in the background is orphaned, and leaves the
/// runtime, when that shell ends). The script first waits for the runtime's place in
/// `<dir>/place` and finds it in `$P`; killed on drop.
struct Root(std::process::Child);

impl Root {
    fn spawn(dir: &Path, script: &str) -> Root {
        let place = dir.join("place");
        let script = format!(
            "while [ ! -e {0} ]; do sleep 0.01; done; P=$(cat {0}); {script}",
            place.display()
        );
        Root(Command::new("sh").arg("-c").arg(script).spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Registers its editable runtime of `spec` and tells the script where the view is.
    fn edit(&self, service: &Service, dir: &Path, spec: &str) -> String {
        let out = service.cli(&[
            "mount",
            "--edit",
            "--root-process",
            &self.pid().to_string(),
            spec,
        ]);
        let place = ok(&out).trim().to_owned();
        let temp = dir.join("place.tmp");
        std::fs::write(&temp, &place).unwrap();
        std::fs::rename(temp, dir.join("place")).unwrap();
        place
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for the file `path` and returns what it holds.
fn wait_for(path: &Path) -> String {
    eventually(&format!("{}", path.display()), || path.exists());
    std::fs::read_to_string(path).unwrap()
}

/// A process of the runtime keeps its working directory and open files (read and write)
/// across a commit, and a write after the commit lands in the new scratch.
fn cwd_and_open_files(service: &Service) {
    let (dir, spec, repo) = setting();
    let d = dir.path().display();
    let root = Root::spawn(
        dir.path(),
        &format!(
            "mkdir -p $P/work/sub && echo hello > $P/work/sub/log && cd $P/work/sub && \
             exec 3< $P/over 4>> $P/work/sub/log 5< $P/deep/a/b/c && touch {d}/opened && \
             while [ ! -e {d}/go ]; do sleep 0.01; done; \
             {{ pwd; ls; cat <&3; cat <&5; echo appended >&4; cat log; echo more > new; \
             cat new; }} > {d}/out.tmp 2>&1; mv {d}/out.tmp {d}/out; sleep 60"
        ),
    );
    let place = root.edit(service, dir.path(), &spec);
    wait_for(&dir.path().join("opened"));
    commit(service, root.pid(), "layer", &repo, "test/cwd");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let out = wait_for(&dir.path().join("out"));
    assert_eq!(
        out,
        format!("{place}/work/sub\nlog\nbefore\ndeep\nhello\nappended\nmore\n")
    );
    let diff = ok(&service.cli(&["diff", "--root-process", &root.pid().to_string()]));
    assert!(
        diff.contains("~ /work/sub/log") && diff.contains("+ /work/sub/new"),
        "only what changed after the commit: {diff}"
    );
    assert!(!diff.contains("/over"), "{diff}");
}

support::in_both_layouts!(
    cwd_and_open_files:
        processes_keep_their_working_directory_and_open_files_across_a_commit_shared,
        processes_keep_their_working_directory_and_open_files_across_a_commit_per_runtime
);

/// A writer in the runtime creates numbered files while commits run: every file it made
/// (acknowledged) is in the view afterwards, and in a fresh runtime of the last commit.
#[test]
fn a_writer_racing_commits_loses_nothing() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let (dir, spec, repo) = setting();
    let d = dir.path().display();
    let root = Root::spawn(
        dir.path(),
        &format!(
            "mkdir $P/w && i=0; while [ $i -lt 400 ]; do echo $i > $P/w/$i || break; \
             i=$((i+1)); done; echo $i > {d}/done; \
             while [ ! -e {d}/check ]; do sleep 0.01; done; \
             {{ ls $P/w | wc -l; cat $P/w/399; }} > {d}/count.tmp 2>&1; \
             mv {d}/count.tmp {d}/count; sleep 60"
        ),
    );
    root.edit(&service, dir.path(), &spec);
    let done = dir.path().join("done");
    let commit_if_any = || {
        let out = try_commit(&service, root.pid(), "layer", &repo, "test/race");
        // Before the writer's first file, or after its last, there is nothing to commit.
        let made = out.status.success();
        assert!(
            made || stderr(&out).contains("nothing to commit"),
            "{}",
            stderr(&out)
        );
        made
    };
    let mut commits = 0;
    while !done.exists() {
        commits += usize::from(commit_if_any());
    }
    assert_eq!(wait_for(&done).trim(), "400", "the writer failed");
    commit_if_any();
    assert!(commits >= 1, "no commit raced the writer");
    std::fs::write(dir.path().join("check"), "").unwrap();
    assert_eq!(wait_for(&dir.path().join("count")), "400\n399\n");
    let stack = env_spec(&service, root.pid());
    let (mut other, there) = fresh(&service, &stack, &repo);
    assert_eq!(other.ask(&format!("ls {there}/w | wc -l")), "400");
    assert_eq!(other.ask(&format!("cat {there}/w/399")), "399");
    assert_valid(&repo);
}

/// `reset PATH` and `reset` through the binary: a process of the runtime sees the layers
/// below at once (contents, a removed file back, an added one gone), other changes stay.
fn reset(service: &Service) {
    let (_dir, spec, repo) = setting();
    let (mut shell, place) = editable(service, &spec, &repo);
    let root = shell.pid().to_string();
    edit(&mut shell, &place);
    // Read through the mount first, so the kernel has it cached: contents and sizes, a
    // missing name, the listings of the root and of a directory below it.
    let seen = |shell: &mut Shell| {
        shell.ask(&format!(
            "cd {place} && cat over; wc -c < over; stat -c %s over; cat gone; ls; ls deep/a; \
             cd /"
        ))
    };
    let before = seen(&mut shell);
    assert_eq!(
        before,
        "after 6 6 cat: gone: No such file or directory added back deep keep link over swap b b2"
    );
    assert_eq!(seen(&mut shell), before);

    ok(&service.cli(&[
        "reset",
        "--root-process",
        &root,
        "/over",
        "gone",
        "deep/a/b2",
    ]));
    assert_eq!(
        seen(&mut shell),
        "before 7 7 gone added back deep gone keep link over swap b",
        "the runtime sees the reset at once"
    );
    assert_eq!(shell.ask(&format!("cat {place}/added")), "new");
    let diff = ok(&service.cli(&["diff", "--root-process", &root]));
    assert!(!diff.contains("/over") && !diff.contains("/gone"), "{diff}");
    assert!(diff.contains("+ /added"), "{diff}");

    // A path under the mount point names the same path of the view.
    ok(&service.cli(&["reset", "--root-process", &root, &format!("{place}/swap")]));
    assert_eq!(shell.ask(&format!("cat {place}/swap/inner")), "inner");

    ok(&service.cli(&["reset", "--root-process", &root]));
    let (mut lower_only, there) = fresh(service, &spec, &repo);
    assert_eq!(
        snapshot(&mut shell, &place),
        snapshot(&mut lower_only, &there)
    );
    assert_eq!(ok(&service.cli(&["diff", "--root-process", &root])), "");

    // After a commit, reset goes back to the commit, not to the start.
    assert_eq!(
        shell.ask(&format!("echo c > {place}/committed && echo ok")),
        "ok"
    );
    commit(service, shell.pid(), "layer", &repo, "test/reset");
    assert_eq!(
        shell.ask(&format!("echo later > {place}/committed && echo ok")),
        "ok"
    );
    ok(&service.cli(&["reset", "--root-process", &root]));
    assert_eq!(shell.ask(&format!("cat {place}/committed")), "c");
}

support::in_both_layouts!(
    reset:
        reset_throws_changes_away_and_the_runtime_sees_it_at_once_shared,
        reset_throws_changes_away_and_the_runtime_sees_it_at_once_per_runtime
);

/// The caller must be able to write the repository (refused before anything is written,
/// naming the directory), and what the commit writes belongs to the caller.
#[test]
fn a_commit_needs_the_callers_write_permission_and_writes_the_callers_files() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = lower(dir.path());
    for path in [
        dir.path().to_owned(),
        PathBuf::from(&spec),
        service.socket(),
    ] {
        let mode = if path == service.socket() {
            0o666
        } else {
            0o755
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    // The service's own directory, so the second user reaches the socket.
    let socket_dir = service.socket().parent().unwrap().to_owned();
    std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_other = |args: &[&str]| {
        Command::new(BIN)
            .arg(args[0])
            .arg("--socket")
            .arg(service.socket())
            .args(&args[1..])
            .uid(OTHER_UID)
            .gid(OTHER_UID)
            .output()
            .unwrap()
    };
    let mut root = Sleeper::as_uid(OTHER_UID);
    ok(&as_other(&[
        "mount",
        "--edit",
        "--root-process",
        &root.pid(),
        &spec,
    ]));
    let scratch = service.status_json()["runtimes"][0]["scratch"]
        .as_str()
        .unwrap()
        .to_owned();
    put(Path::new(&scratch), "theirs", b"theirs\n");

    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_other(&[
        "commit",
        "layer",
        "--root-process",
        &root.pid(),
        "--repo",
        locked.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("permission denied") && err.contains("no write permission"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&locked).unwrap().count(), 0);

    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let repo = open.join("repo");
    let out = as_other(&[
        "commit",
        "layer",
        "--root-process",
        &root.pid(),
        "--repo",
        repo.to_str().unwrap(),
        "--tag",
        "theirs/commit",
    ]);
    ok(&out);
    let mut seen = 0;
    for entry in walk(&repo) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (OTHER_UID, OTHER_UID),
            "{} belongs to the service's user",
            entry.display()
        );
        seen += 1;
    }
    assert!(seen > 5, "{seen} entries");
    root.end();
}

/// Every path under `dir`, `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_owned()];
    let mut i = 0;
    while i < all.len() {
        if all[i].is_dir() && !all[i].is_symlink() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&all[i])
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            all.append(&mut children);
        }
        i += 1;
    }
    all
}

/// A few dozen SIGKILLs of the service while it commits a scratch of many files: after each,
/// the repository validates and no tag names a missing object; the restarted service restores
/// the runtime, which shows what it showed; and a last commit succeeds and shows in a fresh
/// runtime.
#[test]
fn a_service_killed_during_commits_leaves_a_valid_repository_and_commits_again() {
    if !require_fuse() {
        return;
    }
    let kills: usize = std::env::var("SPFS_FUSE_COMMIT_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let mut service = Service::start();
    let (_dir, spec, repo) = setting();
    let (mut shell, place) = editable(&service, &spec, &repo);
    let root = shell.pid();
    // Each round changes many files, so each commit has much to write when the kill comes.
    let change = |shell: &mut Shell, service: &Service, round: usize| {
        let answer = shell.ask(&format!(
            "mkdir -p {place}/many && cd {place}/many && i=0; while [ $i -lt 400 ]; do \
             echo round {round} file $i > f$i; i=$((i+1)); done; \
             head -c 16000000 /dev/urandom > big && cd / && echo ok"
        ));
        assert_eq!(answer, "ok", "the service's log:\n{}", service.log());
    };
    // How long such a commit takes, to spread the kills over it; a commit that finishes
    // before its kill teaches the estimate again (the machine's load changes).
    change(&mut shell, &service, kills + 1);
    let started = Instant::now();
    commit(&service, root, "layer", &repo, "test/killed");
    let mut took = started.elapsed();
    let (mut interrupted, mut finished) = (0, 0);
    for round in 0..kills {
        change(&mut shell, &service, round);
        let edited = snapshot(&mut shell, &place);
        let started = Instant::now();
        let mut client = Command::new(BIN)
            .args(["commit", "layer", "--socket"])
            .arg(service.socket())
            .args(["--root-process", &root.to_string(), "--repo"])
            .arg(&repo)
            .args(["--tag", "test/killed"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // From before the first payload to the tag and the rebase (20% to 100% of a commit),
        // and now and then after it.
        let share = if round % 6 == 5 {
            6
        } else {
            round as u32 % 5 + 1
        };
        let kill_at = took * share / 5;
        let mut exited = None;
        while started.elapsed() < kill_at && exited.is_none() {
            exited = client.try_wait().unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        service.kill();
        let status = match exited {
            Some(status) => {
                took = started.elapsed();
                status
            }
            None => client.wait().unwrap(),
        };
        if status.success() {
            finished += 1;
        } else {
            interrupted += 1;
        }
        assert_valid(&repo);
        service.spawn();
        eventually("the runtime to be restored", || {
            service.status_json()["runtimes"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        });
        assert_eq!(snapshot(&mut shell, &place), edited, "after kill {round}");
    }
    eprintln!(
        "a commit took {took:?} last; {interrupted} commits killed midway, {finished} finished \
         before the kill"
    );
    assert!(
        interrupted * 3 >= kills,
        "too few kills landed during a commit"
    );
    change(&mut shell, &service, kills);
    let edited = snapshot(&mut shell, &place);
    let digest = commit(&service, root, "layer", &repo, "test/killed");
    assert_valid(&repo);
    let stack = env_spec(&service, root);
    assert!(stack.ends_with(&digest), "{stack}");
    let (mut other, there) = fresh(&service, &stack, &repo);
    assert_eq!(snapshot(&mut other, &there), edited);
    assert_eq!(snapshot(&mut shell, &place), edited);
}

/// On a terminal a commit shows its progress on stderr (files and bytes hashed and written,
/// redrawn in place); anywhere else it prints the digest alone. `script` gives it a terminal.
#[test]
fn a_commit_shows_progress_on_a_terminal_and_is_quiet_elsewhere() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let (dir, spec, repo) = setting();
    let (mut shell, place) = editable(&service, &spec, &repo);
    let root = shell.pid().to_string();
    edit(&mut shell, &place);
    let command = |tag: &str| {
        format!(
            "{BIN} commit layer --socket {} --root-process {root} --repo {} --tag {tag}",
            service.socket().display(),
            repo.display()
        )
    };
    // Everything the terminal got (stdout and stderr alike), to a file beside the repository.
    let typescript = dir.path().join("typescript");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command("test/tty")])
        .arg(&typescript)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = std::fs::read_to_string(&typescript).unwrap();
    assert!(
        shown.contains("\r\x1b[Khashed ") && shown.contains("wrote "),
        "no progress line on the terminal: {shown:?}"
    );
    let digest = info_json(&repo, "test/tty");
    assert!(
        shown
            .lines()
            .any(|line| line.len() >= 56 && digest.contains(&line[..56])),
        "{shown:?}"
    );

    // Not a terminal: the digest on stdout, nothing on stderr.
    assert_eq!(
        shell.ask(&format!("echo more > {place}/more && echo ok")),
        "ok"
    );
    let out = try_commit(&service, shell.pid(), "layer", &repo, "test/quiet");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed.len(),
        spfs_storage::DIGEST_STRING_LEN + 1,
        "{printed:?}"
    );
}

/// The encoding and digest strategy come from spfs's own variables, spelled in any case as
/// spfs takes them (the fixtures' `legacy` repository was written with lower-case `legacy`):
/// the layer object's header says which (SPFS-FORMAT.md §5: byte 9 the strategy, byte 10 the
/// encoding), and spfs 0.44's defaults apply without them.
#[test]
fn a_commit_takes_spfs_settings_from_the_environment_in_any_case() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let (_dir, spec, repo) = setting();
    let (mut shell, place) = editable(&service, &spec, &repo);
    let root = shell.pid().to_string();
    let mut header = |env: &[(&str, &str)], name: &str| {
        assert_eq!(
            shell.ask(&format!("echo {name} > {place}/{name} && echo ok")),
            "ok"
        );
        let out = Command::new(BIN)
            .args(["commit", "layer", "--socket"])
            .arg(service.socket())
            .args(["--root-process", &root, "--repo"])
            .arg(&repo)
            .env_remove("SPFS_STORAGE__ENCODING_FORMAT")
            .env_remove("SPFS_STORAGE__DIGEST_STRATEGY")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let digest = spfs_storage::Digest::parse(ok(&out).trim()).unwrap();
        let path = spfs_storage::Repository::open(&repo)
            .unwrap()
            .object_path(&digest);
        std::fs::read(path).unwrap()[9..11].to_vec()
    };
    assert_eq!(header(&[], "a"), [1, 1], "FlatBuffers, WithKindAndSalt");
    assert_eq!(
        header(
            &[
                ("SPFS_STORAGE__ENCODING_FORMAT", "legacy"),
                ("SPFS_STORAGE__DIGEST_STRATEGY", "legacy")
            ],
            "b"
        ),
        [0, 0]
    );
    assert_eq!(
        header(&[("SPFS_STORAGE__ENCODING_FORMAT", "LEGACY")], "c"),
        [1, 0],
        "salted digests in the legacy encoding"
    );
    assert_valid(&repo);
}
