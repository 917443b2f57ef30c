//! The probe against fake hosts: each `tests/hosts/<name>/` holds a `root/` that stands for `/`
//! and a `bin/` of fake commands (`sysctl`, `uname`, `fusermount3`) that is the whole `PATH`.
//! The text and JSON of the doctor report are snapshots; the verdict is asserted too.
//!
//! A checkout cannot hold a root-owned `/spfs` or a mode-1755 `/Volumes` for whoever runs the
//! tests, so owners and modes come from the host's `owners` file ([`fake_ownership`]), and
//! each test says whom the service runs as ([`Who`]).

use std::io;
use std::path::{Path, PathBuf};

use spfs_probe::{Backend, Facts, Ownership, ProbeConfig, Report, ServiceUser};

fn hosts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts")
}

fn probe(host: &str) -> Facts {
    Facts::collect(&config(host))
}

/// Whom the fake host's service runs as, and where it is told to put its volumes.
#[derive(Clone, Copy)]
struct Who {
    /// Added to the snapshot's name; empty for root.
    suffix: &'static str,
    uid: u32,
    volumes_dir: Option<&'static str>,
}

/// The system service, as `doctor` run with sudo checks it.
const ROOT: Who = Who {
    suffix: "",
    uid: 0,
    volumes_dir: None,
};
/// alice's per-user service, with the default volumes directory.
const ALICE: Who = Who {
    suffix: "--alice",
    uid: 501,
    volumes_dir: None,
};
/// alice's per-user service told `--volumes-dir /Volumes`, the default before issue 14.
const ALICE_IN_SLASH_VOLUMES: Who = Who {
    suffix: "--alice-in-slash-volumes",
    uid: 501,
    volumes_dir: Some("/Volumes"),
};

/// How `host` is probed for root's service. Whoever runs the tests, the fake host's home is
/// alice's, and no `FUSE_NFSSRV_PATH` is set.
fn config(host: &str) -> ProbeConfig {
    config_for(host, ROOT)
}

fn config_for(host: &str, who: Who) -> ProbeConfig {
    let dir = hosts_dir().join(host);
    assert!(dir.is_dir(), "no fake host {}", dir.display());
    // A Linux host's default volumes directory depends on who runs the probe; a fixed one
    // keeps its snapshots the same for everyone. macOS hosts get theirs: /Volumes for root,
    // alice's own for alice.
    let linux_volumes = host.starts_with("linux").then_some("/Volumes");
    ProbeConfig {
        sysroot: Some(dir.join("root")),
        path: Some(dir.join("bin").into_os_string()),
        volumes_dir: who.volumes_dir.or(linux_volumes).map(PathBuf::from),
        home: Some(PathBuf::from("/Users/alice")),
        nfs_server_override: None,
        user: ServiceUser {
            uid: who.uid,
            groups: vec![if who.uid == 0 { 0 } else { 20 }],
        },
        ownership: fake_ownership,
        ..ProbeConfig::default()
    }
}

/// What `stat` says on a fake host: the host's `owners` file lists `HOSTPATH UID GID MODE`
/// (mode in octal), and any other path is root's, mode 0755, as a Mac's system directories
/// are. Symlinks are followed inside the fake root.
fn fake_ownership(path: &Path) -> io::Result<Ownership> {
    let real = path.canonicalize()?;
    let hosts = hosts_dir().canonicalize()?;
    let inside = real
        .strip_prefix(&hosts)
        .map_err(|_| io::Error::other(format!("{} is in no fake host", real.display())))?;
    let mut parts = inside.components();
    let host = parts.next().ok_or_else(|| io::Error::other("no host"))?;
    parts.next(); // root
    let host_path = Path::new("/").join(parts.as_path());
    let owners = std::fs::read_to_string(hosts.join(host).join("owners")).unwrap_or_default();
    let listed = owners
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.first().map(Path::new) == Some(host_path.as_path()));
    let Some(fields) = listed else {
        return Ok(Ownership {
            uid: 0,
            gid: 0,
            mode: 0o755,
        });
    };
    let number = |at: usize, radix: u32| {
        fields
            .get(at)
            .and_then(|field| u32::from_str_radix(field, radix).ok())
            .ok_or_else(|| io::Error::other(format!("bad owners line for {}", host_path.display())))
    };
    Ok(Ownership {
        uid: number(1, 10)?,
        gid: number(2, 10)?,
        mode: number(3, 8)?,
    })
}

/// Snapshots the report of `host` for `backend` as text and as JSON, and checks the verdict.
fn check_host(
    host: &str,
    backend: Backend,
    who: Who,
    expect_backend: Option<Backend>,
    expect_exit: u8,
) {
    let report = Report::build(&Facts::collect(&config_for(host, who)), backend);
    let name = format!("{host}--{backend}{}", who.suffix);
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

/// Whom a test's service runs as: root unless named.
macro_rules! who {
    () => {
        ROOT
    };
    ($who:ident) => {
        $who
    };
}

macro_rules! hosts {
    ($($test:ident: $host:literal, $backend:ident $(as $who:ident)? => $expect:expr, exit $exit:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_host($host, Backend::$backend, who!($($who)?), $expect, $exit);
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
    // Who runs the service and where it mounts (issue 14, defects 4 and 5).
    root_owned_spfs_fails_a_per_user_service: "macos26-spfs-root-owned", Auto as ALICE => KEXT, exit 1;
    root_owned_spfs_serves_the_system_service: "macos26-spfs-root-owned", Auto => KEXT, exit 0;
    spfs_linked_to_a_directory_of_the_user: "macos26-spfs-linked-to-home", Auto as ALICE => KEXT, exit 0;
    slash_volumes_fails_a_per_user_fuse_t_service: "macos13-intel-fuse-t-for-a-user", Auto as ALICE_IN_SLASH_VOLUMES => FUSE_T, exit 1;
    a_per_user_fuse_t_service_gets_volumes_of_its_own: "macos13-intel-fuse-t-for-a-user", Auto as ALICE => FUSE_T, exit 0;
    slash_volumes_serves_the_system_fuse_t_service: "macos13-intel-fuse-t-for-a-user", Auto => FUSE_T, exit 0;
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

/// A `synthetic.conf` link to a directory never made leaves `/spfs` dangling: the fix is to
/// make the directory, not to reboot.
#[test]
fn a_dangling_mount_point_link_is_reported_with_its_target() {
    let sysroot = tempfile::tempdir().unwrap();
    let host = hosts_dir().join("macos26-spfs-linked-to-home/root");
    for dir in ["System/Library/CoreServices", "etc"] {
        std::fs::create_dir_all(sysroot.path().join(dir)).unwrap();
    }
    for file in [
        "System/Library/CoreServices/SystemVersion.plist",
        "etc/synthetic.conf",
    ] {
        std::fs::copy(host.join(file), sysroot.path().join(file)).unwrap();
    }
    std::os::unix::fs::symlink("Users/alice/.spfs", sysroot.path().join("spfs")).unwrap();
    let facts = Facts::collect(&ProbeConfig {
        sysroot: Some(sysroot.path().to_owned()),
        ..config("macos26-spfs-linked-to-home")
    });
    assert_eq!(
        facts.mountpoint.link,
        Some(PathBuf::from("Users/alice/.spfs"))
    );
    let report = Report::build(&facts, Backend::Kext).to_text();
    assert!(
        report.contains("/spfs links to Users/alice/.spfs, which does not exist"),
        "{report}"
    );
}
