//! Isolation through a real mount (DESIGN.md §4 rule 3): two process trees with different
//! views and an outsider stat, read, list and readlink the same paths at the same time,
//! thousands of times; each must always see its own view, through `/dev/fuse` reads and
//! through FUSE over io_uring.
//!
//! The probing processes are this test binary run again with `SPFS_ISOLATION_PROBE` set, so
//! each is a real process whose pid the router routes.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use spfs_frontends::{Session, SessionConfig, Transport};
use spfs_router::{Owner, Router, Routing, Vfs};
use spfs_testkit::require_fuse;
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
    observation(tool, link, names, only_a, deep)
}

/// The probe child: waits for "go", then compares what it sees with what its view holds,
/// `ITERATIONS` times, and prints the number of wrong answers.
#[test]
fn isolation_probe_child() {
    let Ok(spec) = std::env::var("SPFS_ISOLATION_PROBE") else {
        return;
    };
    let (view, mount) = spec.split_once(':').unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let want = expected(view);
    let mut wrong = 0;
    let mut first = None;
    for _ in 0..ITERATIONS {
        let got = observe(Path::new(mount));
        if got != want {
            wrong += 1;
            first.get_or_insert(got);
        }
    }
    println!("WRONG {wrong} {first:?}");
}

#[test]
fn two_trees_and_an_outsider_each_see_only_their_own_view() {
    each_sees_only_its_own_view(false);
}

/// The same over FUSE over io_uring, where the caller's pid comes in the queue's header; it
/// must then be what served (Linux with the kernel's switch on, as `ci/setup.sh` leaves it).
#[test]
fn the_same_holds_over_fuse_over_io_uring() {
    each_sees_only_its_own_view(true);
}

/// Mounts the shared layout of `router` at `mount` through the device, two workers.
fn mount_shared(router: &Arc<Router>, mount: &Path, io_uring: bool) -> Session {
    let vfs = Arc::new(Vfs::new(Routing::Shared(router.clone())));
    Session::mount(
        vfs,
        &SessionConfig {
            mountpoint: mount.to_path_buf(),
            fsname: "spfs-test".into(),
            volname: "spfs-test".into(),
            transport: Transport::Device,
            threads: 2,
            io_uring,
            nfs_server: None,
            other_users: false,
        },
    )
    .unwrap()
}

/// Makes `child` the root of a runtime whose view is the directory `layer`.
fn register(router: &Router, child: &Child, layer: &Path) {
    router
        .register(
            child.id(),
            layer.to_str().unwrap(),
            &Owner::trusted(0, 0),
            &[],
            None,
        )
        .unwrap();
}

/// Runs the three probes against one session, through io_uring or not, and checks that none
/// ever saw another's view.
fn each_sees_only_its_own_view(io_uring: bool) {
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
    for (view, layer) in [("a", Some(&a)), ("b", Some(&b)), ("outsider", None)] {
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
            register(&router, &child, layer);
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
    register(&router, &child, &layer);
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
