//! Editable runtimes through the binary and a real service on a real socket: `mount --edit`,
//! `run --edit` and `--scratch DIR` register editable runtimes in the shared and per-runtime
//! layouts, `status` shows them and their scratch, a default scratch goes with its runtime
//! (unmount, exit, `shutdown`) while a named one is kept and continued, a scratch in use is
//! refused to a second runtime, a restarted service continues each runtime's scratch, the sweep
//! removes default scratches of runtimes that are gone, and `diff` lists the scratch's changes.
//! Real mounts on Linux `/dev/fuse`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

mod support;
use spfs_testkit::require_fuse;
use support::mounts::put;
use support::{BIN, Service, Sleeper, eventually, ok, stderr, stdout};

/// A layer holding `hello` and `dir/inner`.
fn layer(dir: &Path) -> String {
    let layer = dir.join("layer");
    put(&layer, "hello", b"hi\n");
    put(&layer, "dir/inner", b"inner\n");
    layer.to_str().unwrap().to_owned()
}

/// The runtime of `root` as `status --json` shows it.
fn runtime(service: &Service, root: u32) -> serde_json::Value {
    let status = service.status_json();
    status["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["root_pid"] == root)
        .unwrap_or_else(|| panic!("no runtime of {root} in {status}"))
        .clone()
}

/// The default scratches the service holds, by name.
fn default_scratches(service: &Service) -> Vec<String> {
    let dir = spfs_probe::defaults::scratches_dir(&service.state_dir());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// `mount --edit` in `service`'s layout: editable in status (text and JSON), a private
/// default scratch named after the root under the state directory, removed by `unmount`;
/// then `run --edit`, whose runtime and scratch end with its command.
fn mount_and_run_edit(service: &Service, per_runtime: bool) {
    let dir = tempfile::tempdir().unwrap();
    let spec = layer(dir.path());
    let root = Sleeper::new();
    let pid = root.0.id();
    let out = service.cli(&["mount", "--edit", "--root-process", &pid.to_string(), &spec]);
    let place = PathBuf::from(ok(&out).trim());

    let shown = runtime(service, pid);
    assert_eq!(shown["editable"], true, "{shown}");
    assert_eq!(shown["durable"], false, "{shown}");
    let scratch = PathBuf::from(shown["scratch"].as_str().unwrap());
    let start_time = spfs_router::process::SystemProcessTable::new();
    let start_time = spfs_router::ProcessTable::info(&start_time, pid)
        .unwrap()
        .start_time;
    assert_eq!(
        scratch,
        spfs_probe::defaults::default_scratch(&service.state_dir(), pid, start_time)
    );
    assert!(scratch.is_dir());
    assert_eq!(mode(&scratch), 0o700, "the scratch is private");
    let text = ok(&service.cli(&["status"]));
    assert!(
        text.contains(&format!(
            "scratch: {} (removed with the runtime)",
            scratch.display()
        )),
        "{text}"
    );
    assert!(text.contains("EDITABLE"), "{text}");

    // The root of what the runtime sees: the shared one, writable by all (the core decides
    // who writes), or the volume's own, its owner's.
    let root_meta = std::fs::metadata(&place).unwrap();
    if per_runtime {
        assert_eq!(root_meta.permissions().mode() & 0o7777, 0o755);
        assert_eq!(root_meta.uid(), nix::unistd::geteuid().as_raw());
    } else {
        assert_eq!(root_meta.permissions().mode() & 0o7777, 0o777);
    }

    service.unmount(pid);
    assert!(
        !scratch.exists(),
        "the default scratch outlived its runtime"
    );

    // `run --edit`: the runtime is the command's, and so is the scratch.
    let inside = service.cli(&[
        "run",
        "--edit",
        &spec,
        "--",
        "sh",
        "-c",
        &format!(
            "{BIN} status --json --socket {}",
            service.socket().display()
        ),
    ]);
    let status: serde_json::Value = serde_json::from_str(&ok(&inside)).unwrap();
    let seen = &status["runtimes"][0];
    assert_eq!(seen["editable"], true, "{status}");
    assert!(
        !Path::new(seen["scratch"].as_str().unwrap()).exists(),
        "run left its default scratch behind"
    );
    assert!(default_scratches(service).is_empty());
}

#[test]
fn mount_and_run_edit_register_editable_runtimes_in_the_shared_layout() {
    if !require_fuse() {
        return;
    }
    mount_and_run_edit(&Service::start(), false);
}

#[test]
fn mount_and_run_edit_register_editable_runtimes_in_the_per_runtime_layout() {
    if !require_fuse() {
        return;
    }
    mount_and_run_edit(&Service::per_runtime(), true);
}

#[test]
fn a_named_scratch_is_kept_continued_and_refused_to_a_second_live_runtime() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = layer(dir.path());
    let first = Sleeper::new();
    let second = Sleeper::new();
    // A relative --scratch is taken from the client's working directory.
    let mount = |root: &Sleeper| {
        std::process::Command::new(BIN)
            .args(["mount", "--socket"])
            .arg(service.socket())
            .args(["--scratch", "kept", "--root-process", &root.pid(), &spec])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let scratch = dir.path().join("kept");
    ok(&mount(&first));
    let shown = runtime(&service, first.0.id());
    assert_eq!(shown["scratch"], scratch.to_str().unwrap(), "{shown}");
    assert_eq!(shown["durable"], true);
    assert!(
        ok(&service.cli(&["status"])).contains(&format!("scratch: {} (kept", scratch.display()))
    );
    std::fs::write(scratch.join("work"), "done").unwrap();

    let refused = mount(&second);
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(
        said.contains(scratch.to_str().unwrap())
            && said.contains("in use")
            && said.contains(&format!("root process {}", first.pid())),
        "{said}"
    );
    assert_eq!(support::root_pids(&service.status_json()), [first.pid()]);

    service.unmount(first.0.id());
    assert_eq!(
        std::fs::read_to_string(scratch.join("work")).unwrap(),
        "done"
    );
    // Registered again, the scratch goes on from where it was.
    ok(&mount(&second));
    let diff = ok(&service.cli(&["diff", "--root-process", &second.pid()]));
    assert_eq!(diff, "+ /work\n");
    service.unmount(second.0.id());
    assert!(
        scratch.join("work").exists(),
        "a durable scratch was removed"
    );
    assert!(default_scratches(&service).is_empty());
}

#[test]
fn diff_lists_what_the_scratch_holds_and_refuses_a_read_only_runtime() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = layer(dir.path());
    let editable = Sleeper::new();
    let read_only = Sleeper::new();
    ok(&service.cli(&["mount", "--edit", "--root-process", &editable.pid(), &spec]));
    service.mount(read_only.0.id(), &spec);
    let scratch = PathBuf::from(
        runtime(&service, editable.0.id())["scratch"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        ok(&service.cli(&["diff", "--root-process", &editable.pid()])),
        ""
    );
    // What the core writes: a new file, a copied-up one, a whiteout.
    put(&scratch, "new", b"new");
    put(&scratch, "dir/inner", b"changed");
    put(&scratch, ".wh.hello", b"");
    let diff = service.cli(&["diff", "--root-process", &editable.pid()]);
    assert_eq!(ok(&diff), "~ /dir/inner\n- /hello\n+ /new\n");
    let json: serde_json::Value = serde_json::from_str(&ok(&service.cli(&[
        "diff",
        "--json",
        "--root-process",
        &editable.pid(),
    ])))
    .unwrap();
    assert_eq!(json["changes"][1]["kind"], "removed", "{json}");
    assert_eq!(json["changes"][1]["path"], "/hello", "{json}");

    let refused = service.cli(&["diff", "--root-process", &read_only.pid()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("not editable"),
        "{}",
        stderr(&refused)
    );
    assert!(stdout(&refused).is_empty());
}

#[test]
fn a_restarted_service_continues_each_scratch_and_a_shutdown_removes_default_ones() {
    if !require_fuse() {
        return;
    }
    let mut service = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = layer(dir.path());
    let with_default = Sleeper::new();
    let with_named = Sleeper::new();
    let named = dir.path().join("named");
    ok(&service.cli(&[
        "mount",
        "--edit",
        "--root-process",
        &with_default.pid(),
        &spec,
    ]));
    ok(&service.cli(&[
        "mount",
        "--scratch",
        named.to_str().unwrap(),
        "--root-process",
        &with_named.pid(),
        &spec,
    ]));
    let default = PathBuf::from(
        runtime(&service, with_default.0.id())["scratch"]
            .as_str()
            .unwrap(),
    );
    put(&default, "work", b"w");

    // Killed, then stopped by a signal (an upgrade): every scratch stays, and comes back.
    for signal in [None, Some(nix::sys::signal::Signal::SIGTERM)] {
        match signal {
            None => service.kill(),
            Some(signal) => {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(service.pid()), signal).unwrap();
                assert!(service.wait_exit().success(), "{}", service.log());
            }
        }
        assert!(
            default.join("work").exists(),
            "{signal:?} lost the default scratch"
        );
        service.spawn();
        let restored = runtime(&service, with_default.0.id());
        assert_eq!(restored["scratch"], default.to_str().unwrap(), "{restored}");
        assert_eq!(restored["durable"], false);
        assert_eq!(
            runtime(&service, with_named.0.id())["scratch"],
            named.to_str().unwrap()
        );
        assert_eq!(
            ok(&service.cli(&["diff", "--root-process", &with_default.pid()])),
            "+ /work\n"
        );
    }

    // `shutdown` ends the runtimes for good: their default scratches go, named ones stay.
    ok(&service.cli(&["shutdown"]));
    assert!(service.wait_exit().success(), "{}", service.log());
    assert!(!default.exists(), "shutdown left a default scratch");
    assert!(named.is_dir());
}

#[test]
fn the_sweep_removes_default_scratches_of_runtimes_that_are_gone_and_nothing_else() {
    if !require_fuse() {
        return;
    }
    let mut service = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let spec = layer(dir.path());
    let live = Sleeper::new();
    ok(&service.cli(&["mount", "--edit", "--root-process", &live.pid(), &spec]));
    let held = PathBuf::from(runtime(&service, live.0.id())["scratch"].as_str().unwrap());
    // What a killed service leaves: the scratch of a root that has exited since, and a
    // directory a user named there with --scratch (not of the default form).
    let mut gone = Sleeper::new();
    let gone_pid = gone.0.id();
    gone.end();
    let scratches = spfs_probe::defaults::scratches_dir(&service.state_dir());
    let stale = spfs_probe::defaults::default_scratch(&service.state_dir(), gone_pid, 1);
    put(&stale, "sub/file", b"x");
    let durable = scratches.join("mine");
    put(&durable, "file", b"x");
    let sweep = |dry_run: bool| {
        let mut args = vec!["sweep", "--volumes-dir"];
        let volumes = dir.path().join("volumes");
        args.push(volumes.to_str().unwrap());
        if dry_run {
            args.push("--dry-run");
        }
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(&args).env("SPFS_FUSE_SOCKET", service.socket());
        ok(&cmd.output().unwrap())
    };

    let said = sweep(true);
    assert!(
        said.contains(&format!(
            "would remove the stale scratch {}",
            stale.display()
        )),
        "{said}"
    );
    assert!(stale.exists(), "a dry run removed something");
    let said = sweep(false);
    assert!(said.contains("removed the stale scratch"), "{said}");
    assert!(!stale.exists());
    assert!(held.exists(), "the sweep removed a live runtime's scratch");
    assert!(durable.exists(), "the sweep removed a scratch a user named");
    assert!(
        !sweep(false).contains("scratch"),
        "a second sweep found more"
    );

    // The service sweeps at its start too, after restoring what it continues.
    put(&stale, "file", b"x");
    service.kill();
    service.spawn();
    eventually("the start's sweep", || !stale.exists());
    assert!(
        service.log().contains("removed the stale scratch"),
        "{}",
        service.log()
    );
    assert!(held.exists() && durable.exists());
    assert_eq!(
        runtime(&service, live.0.id())["scratch"],
        held.to_str().unwrap()
    );
}

/// Writes through the mount of `run --edit --scratch DIR`: a file made, a directory made, a
/// lower file removed, a lower file appended to. `diff` inside the runtime lists them, the
/// scratch holds them in the directory-layer format, `LAYERS+SCRATCH` read-only shows the tree
/// the editable runtime showed, and the next `run` on the scratch goes on from there.
fn writes_land_in_the_scratch(service: &Service) {
    let dir = tempfile::tempdir().unwrap();
    let spec = layer(dir.path());
    let scratch = dir.path().join("scratch");
    let socket = service.socket();
    let run = |args: &[&str], script: &str| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["run", "--socket"])
            .arg(&socket)
            .args(args)
            .args(["--", "sh", "-c", script]);
        cmd.output().unwrap()
    };
    let tree = "cd \"$SPFS_ROOT\" && find . | sort && cat new dir/inner";
    let edited = run(
        &["--scratch", scratch.to_str().unwrap(), &spec],
        &format!(
            "echo hi > \"$SPFS_ROOT/new\" && mkdir \"$SPFS_ROOT/d\" && rm \"$SPFS_ROOT/hello\" \
             && echo more >> \"$SPFS_ROOT/dir/inner\" \
             && {BIN} diff --socket {} --root-process $PPID && echo === && {tree}",
            socket.display()
        ),
    );
    let said = ok(&edited);
    let (diff, seen) = said.split_once("===\n").expect(&said);
    assert_eq!(
        diff,
        "+ /d\n~ /dir/inner\n- /hello\n+ /new\n",
        "{}",
        service.log()
    );
    assert_eq!(
        seen,
        ".\n./d\n./dir\n./dir/inner\n./new\nhi\ninner\nmore\n",
        "{}",
        service.log()
    );

    // The scratch is a directory layer: plain entries, a whiteout for the removed one.
    assert_eq!(
        std::fs::read_to_string(scratch.join("new")).unwrap(),
        "hi\n"
    );
    assert!(scratch.join("d").is_dir());
    assert!(scratch.join(".wh.hello").is_file());
    assert_eq!(
        std::fs::read_to_string(scratch.join("dir/inner")).unwrap(),
        "inner\nmore\n"
    );

    // LAYERS+SCRATCH, read-only, shows the same tree.
    let stacked = format!("{spec}+{}", scratch.display());
    assert_eq!(ok(&run(&[&stacked], tree)), seen);
    // And a read-only runtime refuses writes itself.
    let refused = run(&[&spec], "echo no > \"$SPFS_ROOT/nope\"");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("Read-only"),
        "{}",
        stderr(&refused)
    );

    // Registered again on the same scratch, the runtime goes on from there.
    let again = run(
        &["--edit", "--scratch", scratch.to_str().unwrap(), &spec],
        &format!("test ! -e \"$SPFS_ROOT/hello\" && {tree}"),
    );
    assert_eq!(ok(&again), seen);
    assert!(default_scratches(service).is_empty());
}

support::in_both_layouts!(
    writes_land_in_the_scratch:
        writes_through_the_shared_mount_land_in_the_scratch_and_read_back_as_a_layer,
        writes_through_a_per_runtime_volume_land_in_the_scratch_and_read_back_as_a_layer
);

/// Regression (finding F-service-1): over FUSE io_uring, which the service uses by default
/// where the kernel offers it, every write answered `ENOSYS`; read(2) on `/dev/fuse` took
/// them. Both ways must.
#[test]
fn writes_land_in_the_scratch_without_io_uring_too() {
    if !require_fuse() {
        return;
    }
    writes_land_in_the_scratch(&Service::with_args("shared", &["--no-io-uring"]));
}

/// A shell that runs each line it reads and answers with its exit status: a runtime's root
/// whose processes act in the view when asked.
struct Repl {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Repl {
    fn new() -> Repl {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "while read -r line; do eval \"$line\" >/dev/null 2>&1; echo \"$?\"; done",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Repl { child, out }
    }

    /// Runs `line` in the shell; its exit status.
    fn status(&mut self, line: &str) -> i32 {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut answer = String::new();
        self.out.read_line(&mut answer).unwrap();
        answer.trim().parse().unwrap()
    }
}

impl Drop for Repl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `edit` in `service`'s layout: a running read-only runtime becomes editable in place; its
/// shell's working directory in the view keeps working, writes land in the new scratch, and
/// `status`, `diff` and a second `edit` say so.
fn edit_makes_a_running_runtime_editable(service: &Service) {
    let dir = tempfile::tempdir().unwrap();
    let spec = layer(dir.path());
    let mut shell = Repl::new();
    let mount_point = service.mount(shell.child.id(), &spec);
    let pid = shell.child.id().to_string();
    assert_eq!(shell.status(&format!("cd {mount_point}/dir")), 0);
    assert_ne!(
        shell.status("echo new > ../new"),
        0,
        "a read-only view took a write"
    );

    let scratch = dir.path().join("scratch");
    let printed = ok(&service.cli(&[
        "edit",
        "--root-process",
        &pid,
        "--scratch",
        scratch.to_str().unwrap(),
    ]));
    assert_eq!(printed.trim(), scratch.to_str().unwrap());
    assert_eq!(
        shell.status("test \"$(cat inner)\" = inner"),
        0,
        "the working directory was lost"
    );
    assert_eq!(shell.status("echo new > ../new && echo more >> inner"), 0);
    assert_eq!(std::fs::read(scratch.join("new")).unwrap(), b"new\n");
    assert_eq!(
        std::fs::read(scratch.join("dir/inner")).unwrap(),
        b"inner\nmore\n"
    );
    let runtime = runtime(service, shell.child.id());
    assert_eq!(runtime["editable"], true, "{runtime}");
    assert_eq!(runtime["scratch"], scratch.to_str().unwrap());
    assert_eq!(
        ok(&service.cli(&["diff", "--root-process", &pid])),
        "~ /dir/inner\n+ /new\n"
    );
    let again = service.cli(&["edit", "--root-process", &pid]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("editable already"),
        "{}",
        stderr(&again)
    );
}

support::in_both_layouts!(
    edit_makes_a_running_runtime_editable:
        edit_makes_a_running_runtime_editable_in_the_shared_layout,
        edit_makes_a_running_runtime_editable_on_its_own_volume
);
