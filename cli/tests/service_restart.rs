//! The Homebrew service's restart rules. launchd keeps the service alive on crashes only
//! (`keep_alive crashed: true` in ci/homebrew/spfs-fuse.rb, `KeepAlive = { Crashed = true }`):
//! launchd restarts a job that dies by SIGILL, SIGABRT, SIGFPE, SIGBUS, SIGSEGV, SIGSYS or
//! SIGTRAP, and leaves stopped one that exits, whatever its status. So a service with no usable
//! backend must exit (non-zero, with its hint), never die by a signal, or it would loop; and a
//! Rust panic must die by SIGABRT, a crash, which the release profile's `panic = "abort"` makes
//! it do. The product has no way to panic on purpose, so the profile is checked by building a
//! tiny program with the workspace's release profile, verbatim.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

mod support;
use support::stderr;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The `[profile.release]` table of the workspace's manifest, verbatim.
fn release_profile() -> String {
    let manifest = std::fs::read_to_string(Path::new(WORKSPACE).join("Cargo.toml")).unwrap();
    let start = manifest
        .find("[profile.release]")
        .expect("the workspace has a release profile");
    let table = &manifest[start..];
    let end = table[1..].find("\n[").map_or(table.len(), |i| i + 2);
    table[..end].to_owned()
}

#[test]
fn a_panic_in_a_release_build_dies_by_sigabrt_which_launchd_counts_as_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "[package]\nname = \"panics\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
         [workspace]\n\n{}",
        release_profile()
    );
    std::fs::write(dir.path().join("Cargo.toml"), manifest).unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("src/main.rs"),
        "fn main() {\n    panic!(\"a bug\");\n}\n",
    )
    .unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--release", "--offline", "--quiet"])
        .current_dir(dir.path())
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .env_remove("CARGO_PROFILE_RELEASE_PANIC")
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));

    let ran = Command::new(dir.path().join("target/release/panics"))
        .output()
        .unwrap();
    assert!(stderr(&ran).contains("a bug"), "{}", stderr(&ran));
    assert_eq!(
        ran.status.signal(),
        Some(libc::SIGABRT),
        "a panic must die by SIGABRT, not exit ({:?}): launchd restarts crashes only",
        ran.status
    );
}

/// Linux plays the Mac with no usable backend: it has no FUSE-T, so `--backend fuse-t` fails
/// fast. (On a Mac with FUSE-T, as the macOS workflow's runner, that service would serve.)
#[cfg(target_os = "linux")]
#[test]
fn a_service_with_no_usable_backend_exits_1_with_its_hint_not_by_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    for layout in [None, Some("single"), Some("per-runtime")] {
        let mut service = Command::new(support::BIN);
        service
            .args(["service", "--backend", "fuse-t", "--mountpoint"])
            .arg(dir.path().join("mnt"))
            .arg("--volumes-dir")
            .arg(dir.path().join("volumes"))
            .arg("--socket")
            .arg(dir.path().join("spfs.sock"))
            .env_remove("RUST_LOG");
        if let Some(layout) = layout {
            service.args(["--layout", layout]);
        }
        let out = service.output().unwrap();
        assert_eq!(
            (out.status.code(), out.status.signal()),
            (Some(1), None),
            "{layout:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("\nhint: "),
            "{layout:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_homebrew_service_is_kept_alive_on_crashes_only() {
    let formula =
        std::fs::read_to_string(Path::new(WORKSPACE).join("ci/homebrew/spfs-fuse.rb")).unwrap();
    let keep_alive: Vec<&str> = formula
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("keep_alive"))
        .collect();
    assert_eq!(keep_alive, ["keep_alive crashed: true"]);
}
