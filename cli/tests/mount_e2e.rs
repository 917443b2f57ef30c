//! End-to-end tests through the real binary and a real mount: a service on a temporary mount
//! point and socket, runtimes registered for real `sh` process trees, and what each process
//! sees checked against the source layers.

use std::io::Write;
use std::path::Path;
use std::process::Command;

mod support;
use spfs_testkit::require_fuse;
use support::Service;
use support::assert_dead_mount;
use support::mounts::{Shell, put, sha256};

#[test]
fn two_runtimes_see_their_own_bytes_and_an_outsider_sees_nothing() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let layers = tempfile::tempdir().unwrap();
    let (base, a, b) = (
        layers.path().join("base"),
        layers.path().join("a"),
        layers.path().join("b"),
    );
    put(&base, "bin/tool", b"base tool\n");
    put(&base, "etc/conf", b"shared conf\n");
    put(&a, "bin/tool", b"tool from a\n");
    put(&b, "lib/only-b", b"b's library\n");
    std::fs::write(b.join(".wh.etc"), b"").unwrap();

    let mut in_a = Shell::nested(1);
    let mut in_b = Shell::nested(1);
    let spec_a = format!("{}+{}", base.display(), a.display());
    let spec_b = format!("{}+{}", base.display(), b.display());
    let mount = service.mount(in_a.pid(), &spec_a);
    assert_eq!(Path::new(&mount), service.mountpoint());
    service.mount(in_b.pid(), &spec_b);

    let m = service.mountpoint();
    let m = m.display();
    assert_eq!(
        in_a.ask(&format!("sha256sum {m}/bin/tool | cut -d' ' -f1")),
        sha256(&a.join("bin/tool"))
    );
    assert_eq!(
        in_b.ask(&format!("sha256sum {m}/bin/tool | cut -d' ' -f1")),
        sha256(&base.join("bin/tool"))
    );
    assert_eq!(in_a.ask(&format!("ls {m}")), "bin etc");
    assert_eq!(
        in_b.ask(&format!("ls {m}")),
        "bin lib",
        "the whiteout hides etc in b"
    );
    assert_eq!(in_b.ask(&format!("cat {m}/lib/only-b")), "b's library");
    assert_eq!(in_a.ask(&format!("test -e {m}/lib/only-b; echo $?")), "1");

    let outsider = Command::new("ls")
        .arg("-A")
        .arg(service.mountpoint())
        .output()
        .unwrap();
    assert!(outsider.status.success());
    assert_eq!(
        String::from_utf8_lossy(&outsider.stdout),
        "",
        "an outsider sees an empty directory"
    );

    let status = service.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let roots: Vec<u64> = status["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["root_pid"].as_u64().unwrap())
        .collect();
    assert_eq!(roots.len(), 2, "{status}");
    assert!(roots.contains(&u64::from(in_a.pid())) && roots.contains(&u64::from(in_b.pid())));
}

#[test]
fn a_process_six_levels_down_sees_the_view_until_unmount() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let layer = tempfile::tempdir().unwrap();
    put(layer.path(), "marker", b"here\n");
    let mut shell = Shell::nested(6);
    service.mount(shell.pid(), layer.path().to_str().unwrap());
    let m = service.mountpoint();
    // The innermost shell checks its own depth: six `sh` processes from the root down.
    let chain = shell.ask(&format!(
        "p=$$; n=0; while [ \"$p\" != {} ] && [ \"$p\" != 1 ]; do n=$((n+1)); p=$(awk '{{print $4}}' /proc/$p/stat); done; echo $n",
        shell.pid()
    ));
    assert_eq!(
        chain, "5",
        "the innermost shell is 5 parents below the root (6 levels)"
    );
    assert_eq!(shell.ask(&format!("cat {}/marker", m.display())), "here");
    service.unmount(shell.pid());
    assert_eq!(
        shell.ask(&format!("ls -A {} | wc -l", m.display())),
        "0",
        "after unmount the same process sees the empty view"
    );
}

#[test]
fn run_returns_the_exit_code_and_leaves_no_runtime() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let layer = tempfile::tempdir().unwrap();
    put(layer.path(), "bin/tool", b"x");
    let out = service.cli(&[
        "run",
        layer.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "test -f \"$SPFS_ROOT/bin/tool\" && exit 7; exit 1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = service.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["runtimes"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
}

/// A process the command daemonizes (its parent exits at once, it lives on) stays in the
/// runtime while the command runs: `run` adopts it as the child subreaper of the command's
/// tree (Linux), so it reads the view where init's child would see nothing, and it is reaped
/// once it ends, leaving no zombie behind while the command still runs.
#[cfg(target_os = "linux")]
#[test]
fn a_process_the_command_daemonizes_stays_in_the_runtime_and_is_reaped() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let layer = tempfile::tempdir().unwrap();
    put(layer.path(), "hello", b"from the view\n");
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out");
    let script = format!(
        r#"(sh -c 'sleep 0.3; cat "$SPFS_ROOT/hello" > {out} 2>&1; echo "parent $PPID" >> {out}' &)
        sleep 1.2
        # run's children: this shell only, once the daemon ended and was reaped.
        ps -o stat= --ppid $PPID | grep -c Z || true"#,
        out = out.display()
    );
    let run = service.cli(&[
        "run",
        layer.path().to_str().unwrap(),
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let seen = std::fs::read_to_string(&out).unwrap();
    let run_pid = seen.lines().last().unwrap().trim_start_matches("parent ");
    assert!(seen.starts_with("from the view\n"), "{seen}");
    assert_ne!(run_pid, "1", "the daemon was adopted by init: {seen}");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "0\n",
        "a zombie was left"
    );
}

#[test]
fn a_256_mib_file_reads_back_intact_with_8_readers() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let layer = tempfile::tempdir().unwrap();
    let big = layer.path().join("big");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..256 {
            for word in chunk.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                word.copy_from_slice(&state.to_le_bytes());
            }
            file.write_all(&chunk).unwrap();
        }
    }
    let expected = sha256(&big);
    let mut shell = Shell::nested(1);
    service.mount(shell.pid(), layer.path().to_str().unwrap());
    let m = service.mountpoint();
    // The loop's subshell waits for its readers: a reader whose parent exits is reparented out
    // of the runtime's tree and rightly sees the empty view.
    let sums = shell.ask(&format!(
        "{{ for i in 1 2 3 4 5 6 7 8; do sha256sum {}/big & done; wait; }} | cut -d' ' -f1 | sort | uniq -c | tr -s ' ' | tr '\\n' ';'",
        m.display()
    ));
    assert_eq!(sums, format!(" 8 {expected};"));
}

#[test]
fn a_service_killed_with_sigkill_is_replaced_on_the_same_mount_point() {
    if !require_fuse() {
        return;
    }
    let mut service = Service::start();
    let layer = tempfile::tempdir().unwrap();
    put(layer.path(), "marker", b"again\n");
    let mut shell = Shell::nested(1);
    service.mount(shell.pid(), layer.path().to_str().unwrap());
    service.kill();
    let stale = std::fs::metadata(service.mountpoint()).unwrap_err();
    assert_dead_mount(&stale, "the dead service left a stale mount");
    service.spawn();
    // The new service serves on the same mount point: the shell's runtime came back with it
    // (its root still runs), and a new one registers as usual.
    let cat = format!("cat {}/marker", service.mountpoint().display());
    assert_eq!(shell.ask(&cat), "again");
    let mut other = Shell::nested(1);
    service.mount(other.pid(), layer.path().to_str().unwrap());
    assert_eq!(other.ask(&cat), "again");
}
