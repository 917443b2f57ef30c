//! The probe against fake hosts: each `tests/hosts/<name>/` holds a `root/` that stands for `/`
//! and a `bin/` of fake commands (`sysctl`, `uname`, `fusermount3`) that is the whole `PATH`.
//! The text and JSON of the doctor report are snapshots; the verdict is asserted too.

use std::path::{Path, PathBuf};

use spfs_probe::{Backend, Facts, ProbeConfig, Report};

fn hosts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts")
}

fn probe(host: &str) -> Facts {
    Facts::collect(&config(host))
}

/// How `host` is probed. Whoever runs the tests, the fake host's user is alice, and no
/// `FUSE_NFSSRV_PATH` is set.
fn config(host: &str) -> ProbeConfig {
    let dir = hosts_dir().join(host);
    assert!(dir.is_dir(), "no fake host {}", dir.display());
    ProbeConfig {
        sysroot: Some(dir.join("root")),
        path: Some(dir.join("bin").into_os_string()),
        // A Linux host's default volumes directory depends on who runs the probe; a fixed
        // one keeps its snapshots the same for everyone. macOS hosts get theirs, /Volumes.
        volumes_dir: host.starts_with("linux").then(|| PathBuf::from("/Volumes")),
        home: Some(PathBuf::from("/Users/alice")),
        nfs_server_override: None,
        ..ProbeConfig::default()
    }
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
    fuse_t_installed_for_one_user: "macos15-fuse-t-per-user", Auto => FUSE_T, exit 0;
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

/// Regression (issue 14, defect 9): FUSE-T installed for one user (`installer -target
/// CurrentUserHomeDirectory`, macos-fuse-t/fuse-t#54) keeps the system install's tree under
/// `$HOME/.fuse-t`, and was not found. Its server wins over a system one for that user.
#[test]
fn a_per_user_fuse_t_is_found_under_home_before_the_system_one() {
    let facts = probe("macos15-fuse-t-per-user");
    let fuse_t = facts.fuse_t.unwrap();
    assert!(fuse_t.installed);
    assert_eq!(fuse_t.version.as_deref(), Some("1.0.49"));
    let per_user = "/Users/alice/.fuse-t/Library/Application Support/fuse-t/bin/go-nfsv4";
    assert_eq!(fuse_t.server, Some(PathBuf::from(per_user)));

    // Another user of the same Mac has no per-user install: the system's server, no library.
    let other = Facts::collect(&ProbeConfig {
        home: Some(PathBuf::from("/Users/bob")),
        ..config("macos15-fuse-t-per-user")
    });
    let fuse_t = other.fuse_t.unwrap();
    assert!(!fuse_t.installed);
    assert_eq!(
        fuse_t.server,
        Some(PathBuf::from("/usr/local/bin/go-nfsv4"))
    );
}

/// `FUSE_NFSSRV_PATH` names the server whatever is installed, as in libfuse-t; a wrong one is
/// a missing server, not a silent fallback to another.
#[test]
fn fuse_nfssrv_path_overrides_every_install() {
    let with = |path: &str| {
        Facts::collect(&ProbeConfig {
            nfs_server_override: Some(PathBuf::from(path)),
            ..config("macos15-fuse-t-per-user")
        })
        .fuse_t
        .unwrap()
        .server
    };
    assert_eq!(
        with("/opt/go-nfsv4-dev"),
        Some(PathBuf::from("/opt/go-nfsv4-dev"))
    );
    assert_eq!(with("/opt/absent"), None);
}

/// The selection carries the server the probe found, for the service to hand to the session.
#[test]
fn the_selection_carries_the_server_the_probe_found() {
    let facts = probe("macos15-fuse-t-per-user");
    let selection = spfs_probe::select(&facts, Backend::Auto);
    assert_eq!(selection.nfs_server, facts.fuse_t.unwrap().server);
}
