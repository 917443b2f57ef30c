//! Isolation through a real mount (DESIGN.md §4 rule 3): two process trees with different
//! views and an outsider stat, read, list and readlink the same paths at the same time,
//! thousands of times; each must always see its own view, through `/dev/fuse` reads and
//! through FUSE over io_uring. Then the same with runtime `a` editable (rule 7) and writing
//! between its reads: creating, renaming and unlinking names directly under the root and
//! below it, and renaming a lower file away and back. Its writes must never show in `b`'s
//! view or the outsider's, and every new entry must get a node id never seen before.
//!
//! The probing processes are this test binary run again with `SPFS_ISOLATION_PROBE` set, so
//! each is a real process whose pid the router routes.

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use spfs_frontends::Session;
use spfs_router::{Owner, Router, Routing, Scratch, Vfs};
use spfs_testkit::require_fuse;
use support::config::device_config;
use support::system_router;
use support::views::{expected, make_layers, observation, put};

const ITERATIONS: usize = 5_000;

fn observe(mount: &Path) -> Vec<String> {
    let err = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "ENOENT".to_string()
        } else {
            format!("ERR:{e}")
        }
    };
    let tool = std::fs::read(mount.join("bin/tool"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(err);
    let link = std::fs::read_link(mount.join("link"))
        .map(|t| t.display().to_string())
        .unwrap_or_else(err);
    let names: Vec<String> = std::fs::read_dir(mount)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let only_a = match std::fs::symlink_metadata(mount.join("only-a")) {
        Ok(m) if m.is_dir() => "dir".to_string(),
        Ok(_) => "other".to_string(),
        Err(e) => err(e),
    };
    let deep = std::fs::read(mount.join("share/x/y/deep"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(err);
    let mut seen = observation(tool, link, names, only_a, deep);
    // The names the editable runtime creates and renames at the root, between its own
    // observations: no observer may ever find them (for the writer they are undone by then).
    for name in WRITTEN_AT_ROOT {
        let found = std::fs::symlink_metadata(mount.join(name))
            .map(|_| "found".to_string())
            .unwrap_or_else(err);
        seen.push(format!("{name}={found}"));
    }
    seen
}

/// The names the writer makes directly under the root ([`write_round`]).
const WRITTEN_AT_ROOT: [&str; 2] = ["fresh-a", "moved-a"];

/// What an observer of `view` must see: [`expected`], and none of [`WRITTEN_AT_ROOT`].
fn wanted(view: &str) -> Vec<String> {
    let mut want = expected(view);
    want.extend(WRITTEN_AT_ROOT.map(|name| format!("{name}=ENOENT")));
    want
}

/// One round of the writer's changes at `mount`, all undone by its end so its next
/// observation is its view's again: a file created directly under the root, written, renamed
/// there and unlinked; a file created below it, renamed into another directory over an
/// earlier one and unlinked; a lower file renamed away and back. Each new entry's node id
/// goes into `seen`, which must not hold it yet. Returns what went wrong, if anything.
fn write_round(mount: &Path, round: usize, seen: &mut HashSet<u64>) -> Result<(), String> {
    let step = |what: &str, result: std::io::Result<()>| {
        result.map_err(|e| format!("round {round}: {what}: {e}"))
    };
    let mut fresh = |path: &Path| -> Result<(), String> {
        let ino = std::fs::symlink_metadata(path)
            .map_err(|e| format!("round {round}: stat {}: {e}", path.display()))?
            .ino();
        if !seen.insert(ino) {
            return Err(format!(
                "round {round}: node {ino} of {} reused",
                path.display()
            ));
        }
        Ok(())
    };
    let [top, moved] = WRITTEN_AT_ROOT.map(|name| mount.join(name));
    let content = format!("round {round}");
    step("create at the root", std::fs::write(&top, &content))?;
    fresh(&top)?;
    step("rename at the root", std::fs::rename(&top, &moved))?;
    let read = std::fs::read_to_string(&moved).unwrap_or_default();
    if read != content {
        return Err(format!("round {round}: moved-a holds {read:?}"));
    }
    let (made, kept) = (mount.join("bin/made"), mount.join("share/x/kept"));
    step("create below", std::fs::write(&made, &content))?;
    fresh(&made)?;
    if round == 0 {
        step("create the target", std::fs::write(&kept, b"first"))?;
        fresh(&kept)?;
    }
    step("rename over", std::fs::rename(&made, &kept))?;
    step("rename a lower file away", {
        std::fs::rename(mount.join("bin/tool"), mount.join("bin/tool.away"))
    })?;
    step("and back", {
        std::fs::rename(mount.join("bin/tool.away"), mount.join("bin/tool"))
    })?;
    step("unlink at the root", std::fs::remove_file(&moved))?;
    if round % 2 == 1 {
        step("unlink below", std::fs::remove_file(&kept))?;
        step("create the target again", std::fs::write(&kept, b"again"))?;
        fresh(&kept)?;
    }
    Ok(())
}

/// The probe child: waits for "go", then compares what it sees with what its view holds,
/// `ITERATIONS` times, and prints the number of wrong answers. A `writer` probe (view
/// `a-writer`: view `a`, editable) changes its view between observations ([`write_round`]).
#[test]
fn isolation_probe_child() {
    let Ok(spec) = std::env::var("SPFS_ISOLATION_PROBE") else {
        return;
    };
    let (view, mount) = spec.split_once(':').unwrap();
    let (view, writer) = match view.strip_suffix("-writer") {
        Some(view) => (view, true),
        None => (view, false),
    };
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let want = wanted(view);
    let mut wrong = 0;
    let mut first = None;
    let mut seen = HashSet::new();
    for round in 0..ITERATIONS {
        let got = observe(Path::new(mount));
        if got != want {
            wrong += 1;
            first.get_or_insert(got);
        }
        if writer && let Err(err) = write_round(Path::new(mount), round, &mut seen) {
            wrong += 1;
            first.get_or_insert(vec![err]);
        }
    }
    println!("WRONG {wrong} {first:?}");
}

#[test]
fn two_trees_and_an_outsider_each_see_only_their_own_view() {
    each_sees_only_its_own_view(false, None);
}

/// The same over FUSE over io_uring, where the caller's pid comes in the queue's header; it
/// must then be what served (Linux with the kernel's switch on, as `ci/setup.sh` leaves it).
#[test]
fn the_same_holds_over_fuse_over_io_uring() {
    each_sees_only_its_own_view(true, None);
}

/// Rule 7: runtime `a` editable and writing between its reads, under names the others read
/// too (the root's); `b` and the outsider never see a change, `a` always sees its own.
#[test]
fn an_editable_runtimes_writes_are_never_seen_by_another_runtime_or_an_outsider() {
    let tmp = tempfile::tempdir().unwrap();
    each_sees_only_its_own_view(false, Some(&tmp.path().join("scratch-a")));
}

/// The same over FUSE over io_uring, whose writes carry their data in the queue's buffers.
#[test]
fn the_same_holds_for_writes_over_fuse_over_io_uring() {
    let tmp = tempfile::tempdir().unwrap();
    each_sees_only_its_own_view(true, Some(&tmp.path().join("scratch-a")));
}

/// Mounts the shared layout of `router` at `mount` through the device, two workers.
fn mount_shared(router: &Arc<Router>, mount: &Path, io_uring: bool) -> Session {
    let vfs = Arc::new(Vfs::new(Routing::Shared(router.clone())));
    Session::mount(vfs, &device_config(mount, io_uring)).unwrap()
}

/// Makes `child` the root of a runtime whose view is the directory `layer`, editable over
/// `scratch` when given.
fn register(router: &Router, child: &Child, layer: &Path, scratch: Option<&Path>) {
    router
        .register(
            child.id(),
            layer.to_str().unwrap(),
            &Owner::trusted(0, 0),
            &[],
            scratch.map(|dir| Scratch::open(dir, true).unwrap()),
        )
        .unwrap();
}

/// Runs the three probes against one session, through io_uring or not, and checks that none
/// ever saw another's view. With `scratch`, runtime `a` is editable over it and writes
/// between its reads; what is left in the scratch after is checked too.
fn each_sees_only_its_own_view(io_uring: bool, scratch: Option<&Path>) {
    if !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = make_layers(tmp.path());
    let mount = tmp.path().join("mnt");

    let router = system_router();
    let session = mount_shared(&router, &mount, io_uring);
    let switch = std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring");
    let offered = cfg!(target_os = "linux") && switch.is_ok_and(|on| on.trim() == "Y");
    if io_uring && !offered && cfg!(target_os = "linux") {
        // Without the switch this run would only repeat the /dev/fuse one.
        assert_ne!(
            std::env::var("SPFS_FUSE_REQUIRE_MOUNT").as_deref(),
            Ok("1"),
            "FUSE over io_uring is off in this kernel; ci/setup.sh turns it on as root"
        );
        eprintln!("note: FUSE over io_uring is off; this run reads /dev/fuse");
    }
    assert_eq!(session.io_uring_answers().is_some(), io_uring && offered);

    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    let writer = if scratch.is_some() { "a-writer" } else { "a" };
    for (view, layer) in [(writer, Some(&a)), ("b", Some(&b)), ("outsider", None)] {
        let child = Command::new(&exe)
            .args([
                "--exact",
                "isolation_probe_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "SPFS_ISOLATION_PROBE",
                format!("{view}:{}", mount.display()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(layer) = layer {
            register(&router, &child, layer, scratch.filter(|_| view == writer));
        }
        children.push((view, child));
    }
    for (_, child) in &mut children {
        child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    for (view, mut child) in children {
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // The harness prints "test ... " before the probe's own line on the same line.
        // Read to the end: the child still writes its harness summary after the report.
        let lines: Vec<String> = stdout.lines().map_while(Result::ok).collect();
        let report = lines
            .iter()
            .find_map(|l| l.find("WRONG ").map(|at| l[at..].to_string()))
            .unwrap_or_default();
        assert!(child.wait().unwrap().success(), "probe {view} failed");
        assert_eq!(
            report.split(' ').nth(1),
            Some("0"),
            "probe {view} saw another view: {report}"
        );
    }
    if let Some(scratch) = scratch {
        // Everything undone but the kept file below the root: a lower file renamed away and
        // back is a copy in the scratch, and nothing whites out what `a` still sees.
        let last = ITERATIONS - 1;
        let kept = if last % 2 == 1 {
            "again".to_string()
        } else {
            format!("round {last}")
        };
        assert_eq!(
            std::fs::read_to_string(scratch.join("share/x/kept")).unwrap(),
            kept
        );
        assert_eq!(std::fs::read(scratch.join("bin/tool")).unwrap(), b"aaaa");
        for gone in [
            "fresh-a",
            "moved-a",
            "bin/made",
            "bin/tool.away",
            "bin/.wh.tool",
        ] {
            assert!(!scratch.join(gone).exists(), "{gone} left in the scratch");
        }
        assert_eq!(std::fs::read(a.join("bin/tool")).unwrap(), b"aaaa", "lower");
    }
    if io_uring && offered {
        // Each probe's every round asks for the root's entries at least.
        let answered = session.io_uring_answers().unwrap();
        assert!(
            answered >= 3 * ITERATIONS as u64,
            "{answered} over io_uring"
        );
    }
    session.unmount().unwrap();
}

/// `df` and `statvfs` on a mounted view show the view's own figures (the size of its files in
/// blocks and its entry count), and an outsider's empty view shows its own, through the kernel.
#[test]
fn df_on_a_mounted_view_shows_its_size_and_entries() {
    if !require_fuse() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (layer, mount) = (tmp.path().join("a"), tmp.path().join("mnt"));
    // Two files of one block each, in 7 entries with the root.
    put(&layer, "bin/tool", b"aaaa");
    put(&layer, "share/x/y/deep", &[7; 4096]);
    let router = system_router();
    let session = mount_shared(&router, &mount, false);
    // The runtime's root waits for its registration, then asks for its view's figures: blocks
    // and files at the root and below it, then df's total in 1024-byte blocks.
    let script =
        r#"read go; stat -f -c '%b %c %a %f' "$1" "$1/share"; df -P "$1" | awk 'NR==2 {print $2}'"#;
    let mut child = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&mount)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    register(&router, &child, &layer, None);
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 7 0 0\n2 7 0 0\n8\n"
    );

    // This test process is in no runtime: its root is the empty view.
    let outsider = nix::sys::statvfs::statvfs(&mount).unwrap();
    assert_eq!((outsider.blocks(), outsider.blocks_free()), (0, 0));
    assert_eq!((outsider.files(), outsider.files_free()), (1, 0));
    // The mount is read-write, for editable runtimes (rule 7); the empty view refuses writes
    // itself, as the read-only mount did.
    assert!(
        !outsider
            .flags()
            .contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
    );
    let write = std::fs::write(mount.join("new"), b"x").unwrap_err();
    assert_eq!(write.raw_os_error(), Some(libc::EROFS));
    let mkdir = std::fs::create_dir(mount.join("dir")).unwrap_err();
    assert_eq!(mkdir.raw_os_error(), Some(libc::EROFS));
    session.unmount().unwrap();
}
