//! The probe against fake hosts: each `tests/hosts/<name>/` holds a `root/` that stands for `/`
//! and a `bin/` of fake commands (`sysctl`, `uname`, `fusermount3`) that is the whole `PATH`.
//! The text and JSON of the doctor report are snapshots; the verdict is asserted too.

use std::path::{Path, PathBuf};

use spfs_probe::{Backend, Facts, ProbeConfig, Report};

fn hosts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts")
}

fn probe(host: &str) -> Facts {
    let dir = hosts_dir().join(host);
    assert!(dir.is_dir(), "no fake host {}", dir.display());
    let config = ProbeConfig {
        sysroot: Some(dir.join("root")),
        path: Some(dir.join("bin").into_os_string()),
        // A Linux host's default volumes directory depends on who runs the probe; a fixed
        // one keeps its snapshots the same for everyone. macOS hosts get theirs, /Volumes.
        volumes_dir: host.starts_with("linux").then(|| PathBuf::from("/Volumes")),
        ..ProbeConfig::default()
    };
    Facts::collect(&config)
}

/// Snapshots the report of `host` for `backend` as text and as JSON, and checks the verdict.
fn check_host(host: &str, backend: Backend, expect_backend: Option<Backend>, expect_exit: u8) {
    let report = Report::build(&probe(host), backend);
    let name = format!("{host}--{backend}");
    insta::assert_snapshot!(format!("{name}--text"), report.to_text());
    insta::assert_snapshot!(format!("{name}--json"), report.to_json());
    assert_eq!(report.backend, expect_backend, "{name}: backend");
    assert_eq!(
        report.exit_code(),
        expect_exit,
        "{name}: exit code\n{}",
        report.to_text()
    );
}

macro_rules! hosts {
    ($($test:ident: $host:literal, $backend:ident => $expect:expr, exit $exit:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_host($host, Backend::$backend, $expect, $exit);
            }
        )*

        /// Every fake host has at least one test, so none is forgotten.
        #[test]
        fn every_fake_host_is_tested() {
            let tested = [$($host),*];
            for entry in std::fs::read_dir(hosts_dir()).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                assert!(tested.contains(&name.as_str()), "fake host {name} has no test");
            }
        }
    };
}

const KEXT: Option<Backend> = Some(Backend::Kext);
const FUSE_T: Option<Backend> = Some(Backend::FuseT);

hosts! {
    apple_silicon_macos26_macfuse5_loaded: "macos26-arm64-macfuse-loaded", Auto => KEXT, exit 0;
    macfuse_loaded_but_fuse_t_asked_for: "macos26-arm64-macfuse-loaded", FuseT => None, exit 1;
    macos15_macfuse_installed_not_loaded: "macos15-macfuse-not-loaded", Auto => KEXT, exit 2;
    intel_macos13_only_fuse_t: "macos13-intel-fuse-t-only", Auto => FUSE_T, exit 0;
    only_fuse_t_but_kext_asked_for: "macos13-intel-fuse-t-only", Kext => None, exit 1;
    both_installed_prefers_kext: "macos26-both-installed", Auto => KEXT, exit 0;
    both_installed_fuse_t_asked_for: "macos26-both-installed", FuseT => FUSE_T, exit 0;
    neither_installed: "macos15-neither-installed", Auto => None, exit 1;
    fuse_t_server_missing: "macos15-fuse-t-server-missing", Auto => None, exit 1;
    spfs_only_in_synthetic_conf: "macos26-spfs-only-in-synthetic-conf", Auto => KEXT, exit 2;
    stale_fuse_t_volumes: "macos15-fuse-t-stale-volumes", Auto => FUSE_T, exit 2;
    linux_with_dev_fuse: "linux-dev-fuse", Auto => KEXT, exit 0;
    linux_fuse_t_asked_for: "linux-dev-fuse", FuseT => None, exit 1;
    linux_without_dev_fuse: "linux-no-dev-fuse", Auto => None, exit 1;
    linux_without_fusermount: "linux-no-fusermount", Kext => None, exit 1;
}

#[test]
fn fuse_t_version_comes_from_the_dangling_library_link() {
    let facts = probe("macos13-intel-fuse-t-only");
    let fuse_t = facts.fuse_t.unwrap();
    assert!(fuse_t.installed);
    assert_eq!(fuse_t.version.as_deref(), Some("1.0.44"));
    // This host's sysctl does not know kern.osproductversion: the plist is read instead.
    assert_eq!(facts.os_version.as_deref(), Some("13.6.1"));
}

#[test]
fn only_volumes_of_dead_processes_are_stale() {
    let facts = probe("macos15-fuse-t-stale-volumes");
    // spfs-1 belongs to a live process (init or launchd); "Macintosh HD" is no spfs volume.
    assert_eq!(facts.volumes.stale, ["spfs-99999998", "spfs-99999999"]);
}

#[test]
fn apple_silicon_is_recognised_under_rosetta() {
    // This host's `uname -m` says x86_64; `sysctl hw.optional.arm64` says 1.
    let facts = probe("macos15-macfuse-not-loaded");
    assert_eq!(facts.arch.as_deref(), Some("arm64"));
    assert!(facts.is_apple_silicon());
}

/// Regression (issue 14, defect 3): a dead macFUSE mount's `stat` succeeds (the kext fakes its
/// root's attributes), so the mount point's state comes from the frontends' judgement, which
/// the service and `doctor` hand in; the report then names the stale mount and its fix.
#[test]
fn a_mount_point_judged_stale_is_reported_stale_though_stat_succeeds() {
    let dir = hosts_dir().join("macos26-arm64-macfuse-loaded");
    let config = |stale_mount: fn(&Path) -> bool| ProbeConfig {
        sysroot: Some(dir.join("root")),
        path: Some(dir.join("bin").into_os_string()),
        stale_mount: Some(stale_mount),
        ..ProbeConfig::default()
    };
    let spfs = dir.join("root/spfs");
    assert!(spfs.is_dir(), "the fake host's /spfs answers stat");

    let facts = Facts::collect(&config(|path| path.ends_with("root/spfs")));
    assert_eq!(facts.mountpoint.state, spfs_probe::MountpointState::Stale);
    let report = Report::build(&facts, Backend::Auto).to_text();
    assert!(
        report.contains("a dead FUSE mount is left at /spfs"),
        "{report}"
    );

    let facts = Facts::collect(&config(|_| false));
    assert_eq!(
        facts.mountpoint.state,
        spfs_probe::MountpointState::Directory
    );
}
