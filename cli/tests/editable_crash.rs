//! Nothing lost (issue 16): a service killed with SIGKILL while an editable runtime is busy
//! changing its view leaves a scratch that registers again and shows every operation the
//! runtime saw complete. Through the binary, a real service on a real socket, a real mount.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use spfs_testkit::require_fuse;
use support::mounts::put;
use support::{BIN, Service, ok};

/// Lower files the workload removes (every third step) and the log it appends to.
const LOWER_FILES: usize = 400;

/// Each step `i` changes the view, then records `i` outside the view: a recorded step is one
/// the runtime saw complete. New file `f<i>` holding `i`, `i` appended to the lower file `log`
/// (copied up at the first append), every third step the lower file `l<i>` removed (a whiteout),
/// every fifth a new directory `d<i>` and a rename of `f<i>` into it.
const WORKLOAD: &str = r#"
i=1
while [ "$i" -le 100000 ]; do
    echo "$i" > "$SPFS_ROOT/f$i"
    echo "$i" >> "$SPFS_ROOT/log"
    if [ $((i % 3)) -eq 0 ] && [ "$i" -lt 400 ]; then rm "$SPFS_ROOT/l$i"; fi
    if [ $((i % 5)) -eq 0 ]; then mkdir "$SPFS_ROOT/d$i" && mv "$SPFS_ROOT/f$i" "$SPFS_ROOT/d$i/moved"; fi
    echo "$i" > "$PROGRESS.new" && mv "$PROGRESS.new" "$PROGRESS"
    i=$((i + 1))
done
"#;

/// The last step the workload recorded, 0 before the first.
fn progress(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Checks that `root` (a view of the layer with the scratch on top) shows steps 1..=done, and
/// no step past `done + 1` (the one cut short may or may not show).
fn check_steps(root: &Path, done: usize) {
    for i in 1..=done {
        let (path, what) = if i % 5 == 0 {
            (root.join(format!("d{i}/moved")), "renamed")
        } else {
            (root.join(format!("f{i}")), "written")
        };
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!("step {i} of {done}: {} not {what}: {err}", path.display())
        });
        assert_eq!(text, format!("{i}\n"), "step {i}: {}", path.display());
    }
    for i in (3..LOWER_FILES).step_by(3) {
        let present = root.join(format!("l{i}")).exists();
        if i <= done {
            assert!(!present, "step {i}: the removed lower file l{i} is back");
        } else if i > done + 1 {
            assert!(present, "l{i} is gone though no step removed it");
        }
    }
    assert!(!root.join(format!("f{}", done + 2)).exists());
    let log = std::fs::read_to_string(root.join("log")).expect("the log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(
        lines[0], "lower",
        "the copied-up log lost its lower content"
    );
    let appended: Vec<usize> = lines[1..].iter().map(|l| l.parse().unwrap()).collect();
    let expected: Vec<usize> = (1..=appended.len()).collect();
    assert_eq!(appended, expected, "the log's appends are not steps 1..");
    assert!(
        appended.len() == done || appended.len() == done + 1,
        "{} appends for {done} steps",
        appended.len()
    );
}

#[test]
fn a_service_killed_mid_work_leaves_a_scratch_that_shows_every_completed_step() {
    if !require_fuse() {
        return;
    }
    let mut service = Service::start();
    let dir = tempfile::tempdir().unwrap();
    let layer = dir.path().join("layer");
    put(&layer, "log", b"lower\n");
    for i in 0..LOWER_FILES {
        put(&layer, &format!("l{i}"), b"lower file\n");
    }
    let scratch = dir.path().join("scratch");
    let progress_file = dir.path().join("progress");
    let mut run = Command::new(BIN)
        .args(["run", "--socket"])
        .arg(service.socket())
        .arg("--scratch")
        .arg(&scratch)
        .arg(&layer)
        .args(["--", "sh", "-ec", WORKLOAD])
        .env("PROGRESS", &progress_file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");

    let started = Instant::now();
    while progress(&progress_file) < 60 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the workload made no progress: {}",
            service.log()
        );
        if let Some(status) = run.try_wait().unwrap() {
            let out = run.wait_with_output().unwrap();
            panic!(
                "the workload ended early ({status}): {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                service.log()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    service.kill();
    // Its view gone, the workload fails and stops; whatever it recorded had completed.
    let out = run.wait_with_output().unwrap();
    assert!(!out.status.success(), "the workload outlived its service");
    let done = progress(&progress_file);
    assert!(done >= 60);

    // The scratch holds no temp file a reader would take for an entry, and reads back as a
    // directory layer on its own, with no service involved...
    service.spawn();
    let merged = format!("{}+{}", layer.display(), scratch.display());
    let listing = ok(&service.cli(&["run", &merged, "--", "sh", "-c", "ls -a \"$SPFS_ROOT\""]));
    assert!(!listing.contains(".wh."), "{listing}");
    // ...and through a view of both: every completed step is there.
    let script = format!("cp -a \"$SPFS_ROOT\" {}", dir.path().join("copy").display());
    ok(&service.cli(&["run", &merged, "--", "sh", "-ec", &script]));
    check_steps(&dir.path().join("copy"), done);

    // The scratch registers again as an editable runtime and goes on.
    let again = "test \"$(cat \"$SPFS_ROOT/f1\")\" = 1 && echo more >> \"$SPFS_ROOT/log\" && tail -n1 \"$SPFS_ROOT/log\"";
    let more = ok(&service.cli(&[
        "run",
        "--scratch",
        scratch.to_str().unwrap(),
        layer.to_str().unwrap(),
        "--",
        "sh",
        "-ec",
        again,
    ]));
    assert_eq!(more.trim(), "more");
}
