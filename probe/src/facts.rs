//! Collecting host facts. Everything is read under a system root, and commands are found on a
//! given `PATH`, so tests can stand a fake host up in a directory.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::access::{Ownership, ServiceUser};
use crate::backend::{Backend, Os};
use crate::command;
use crate::defaults;

/// Where and how to probe.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// A directory that stands for `/` (`--sysroot`, `SPFS_FUSE_SYSROOT`); `None` probes the
    /// real host. Under a sysroot the OS is macOS when `System/Library/CoreServices/
    /// SystemVersion.plist` exists there, Linux otherwise.
    pub sysroot: Option<PathBuf>,
    /// The `PATH` to find commands on; `None` uses the `PATH` of this process.
    pub path: Option<OsString>,
    /// The shared mount point of the `kext` backend, as a host path.
    pub mountpoint: PathBuf,
    /// Where the per-runtime layout puts one volume per runtime, as a host path; `None` is the
    /// service's default for the probed OS, [`ProbeConfig::user`] and [`ProbeConfig::home`]
    /// ([`defaults::volumes_dir_for`]).
    pub volumes_dir: Option<PathBuf>,
    /// How long a probe command may run before it is killed.
    pub command_timeout: Duration,
    /// Tells whether a dead FUSE mount sits at a (real) path. The judgement of a mount point's
    /// answers belongs to the frontends (`spfs_frontends::is_stale_mount`), which this crate
    /// may not import (DESIGN.md §3), so the service and `doctor` hand it in; `None` reports no
    /// mount point as stale.
    pub stale_mount: Option<fn(&Path) -> bool>,
    /// The home directory of the user who will run the service, as a host path: FUSE-T
    /// installed for one user lives in its `.fuse-t`, and on macOS a user's volumes go under
    /// it. The default is `$HOME` ([`defaults::home_dir`]).
    pub home: Option<PathBuf>,
    /// The user who will run the service, whose permissions the mount point and the volumes
    /// directory are checked against. The default is this process's user: `doctor` run by a
    /// user checks for that user's service, run as root for the system service.
    pub user: ServiceUser,
    /// Reads the owner and mode of a (real) path, following symlinks; the default is
    /// `stat(2)` ([`Ownership::of`]). Fake hosts stand in for it: a checkout cannot hold a
    /// root-owned `/spfs` or a mode-1755 `/Volumes` for a test run by anyone.
    pub ownership: fn(&Path) -> io::Result<Ownership>,
    /// `FUSE_NFSSRV_PATH`: the `go-nfsv4` to run whatever is installed, as libfuse-t honours
    /// it. The default is this process's environment.
    pub nfs_server_override: Option<PathBuf>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            sysroot: None,
            path: None,
            mountpoint: PathBuf::from(defaults::MOUNTPOINT),
            volumes_dir: None,
            command_timeout: Duration::from_secs(2),
            stale_mount: None,
            home: defaults::home_dir(),
            user: ServiceUser::current(),
            ownership: Ownership::of,
            nfs_server_override: std::env::var_os(NFS_SERVER_ENV).map(PathBuf::from),
        }
    }
}

/// Everything the probe learned about the host. Selection and the doctor report are pure
/// functions of these facts. Paths are host paths (as seen without the sysroot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// The operating system.
    pub os: Os,
    /// The OS version as reported (`26.1`, `15.4`, `6.12.48+deb13-amd64`), when known.
    pub os_version: Option<String>,
    /// The machine architecture from `uname -m` (`arm64`, `x86_64`), when known.
    pub arch: Option<String>,
    /// macFUSE (the `kext` backend on macOS); `None` off macOS.
    pub macfuse: Option<MacFuseFacts>,
    /// FUSE-T (the `fuse-t` backend); `None` off macOS.
    pub fuse_t: Option<FuseTFacts>,
    /// The `/dev/fuse` device (the `kext` backend on Linux); `None` off Linux.
    pub linux_fuse: Option<LinuxFuseFacts>,
    /// The shared mount point of the `kext` backend.
    pub mountpoint: MountpointFacts,
    /// The per-runtime volumes directory of the `fuse-t` backend.
    pub volumes: VolumesFacts,
    /// Whether a service answers on the control socket. The probe does not speak gRPC: the
    /// caller fills this in; `None` means it was not checked.
    pub service: Option<ServiceFacts>,
    /// The user the mount point and the volumes directory were checked for.
    pub service_user: ServiceUser,
}

/// What is known about macFUSE.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MacFuseFacts {
    /// `Library/Filesystems/macfuse.fs/Contents/Info.plist` exists.
    pub installed: bool,
    /// `CFBundleShortVersionString` (else `CFBundleVersion`) of that plist.
    pub version: Option<String>,
    /// The mount helper `mount_macfuse` exists, so the kext can load on the first mount.
    pub mount_helper: bool,
    /// `sysctl -n vfs.generic.macfuse.version.number` succeeded: the kext is loaded.
    pub loaded: bool,
    /// The version the loaded kext reports.
    pub loaded_version: Option<String>,
    /// `Contents/Frameworks/MFMount.framework` exists: the framework that mounts through
    /// macFUSE's FSKit backend, shipped since 5.2 (macfuse/macfuse#1147). Earlier 5.x releases
    /// have the backend without it.
    pub fskit_framework: bool,
}

/// What is known about FUSE-T.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FuseTFacts {
    /// `/usr/local/lib/libfuse-t.dylib` exists (as a file or a link), or the same under
    /// `$HOME/.fuse-t` (a per-user install).
    pub installed: bool,
    /// The version in the name of the library the link points to (`libfuse-t-<version>.dylib`).
    pub version: Option<String>,
    /// Where its NFS server `go-nfsv4` was found, if anywhere: the one the `fuse-t` session
    /// runs (see [`Host::fuse_t_server`] for the order).
    pub server: Option<PathBuf>,
}

/// What is known about the Linux FUSE device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinuxFuseFacts {
    /// `/dev/fuse` exists.
    pub device: bool,
    /// `/dev/fuse` is readable and writable by this user.
    pub device_access: bool,
    /// The name of the mount helper found on `PATH`: `fusermount3` or `fusermount`.
    pub fusermount: Option<String>,
}

/// The state of the shared mount point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountpointFacts {
    /// The mount point, as a host path (default `/spfs`).
    pub path: PathBuf,
    /// What is there.
    pub state: MountpointState,
    /// The owner and mode of the directory there (of a symlink's target), when it exists.
    pub owner: Option<Ownership>,
    /// Where the mount point links to, as the link says, when it is a symlink (a
    /// `synthetic.conf` line with a target makes one).
    pub link: Option<PathBuf>,
}

/// What is at the shared mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MountpointState {
    /// A directory: ready to mount on (or already mounted).
    Directory,
    /// Missing, but listed in `/etc/synthetic.conf`: the next boot creates it.
    Synthetic,
    /// Missing and not listed anywhere.
    Missing,
    /// Something other than a directory.
    NotADirectory,
    /// A dead FUSE mount, as [`ProbeConfig::stale_mount`] judged it.
    Stale,
}

/// The per-runtime volumes directory and what is left in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumesFacts {
    /// The directory, as a host path (default `/Volumes`).
    pub dir: PathBuf,
    /// It exists as a directory.
    pub exists: bool,
    /// Names of `spfs-<pid>` entries whose pid is not alive, sorted.
    pub stale: Vec<String>,
    /// The owner and mode of the directory, when it exists.
    pub owner: Option<Ownership>,
    /// When the directory is missing: its nearest existing ancestor, in which the service
    /// creates it at its first volume.
    pub creatable_in: Option<PathOwner>,
}

/// A path and its owner and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathOwner {
    /// The path, as a host path.
    pub path: PathBuf,
    /// Its owner and mode.
    pub owner: Ownership,
}

/// Whether a service answers on the control socket; filled in by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceFacts {
    /// The socket path that was tried.
    pub socket: PathBuf,
    /// Something exists at that path.
    pub socket_exists: bool,
    /// A service accepted a connection.
    pub answering: bool,
    /// The backend the service reports, when it was asked.
    pub backend: Option<Backend>,
}

impl Facts {
    /// Reads the host described by `config`. Never fails: what cannot be read is recorded as
    /// absent or unknown. `service` is left `None` for the caller to fill in.
    pub fn collect(config: &ProbeConfig) -> Facts {
        let host = Host::new(config);
        let os = match &config.sysroot {
            None => Os::current(),
            Some(_) if host.path(SYSTEM_VERSION_PLIST).is_file() => Os::Macos,
            Some(_) => Os::Linux,
        };
        // Under Rosetta `uname -m` says x86_64 on Apple Silicon; the hardware knows better.
        let apple_silicon = os == Os::Macos
            && host
                .output("sysctl", &["-n", "hw.optional.arm64"])
                .as_deref()
                == Some("1");
        let arch = if apple_silicon {
            Some("arm64".to_owned())
        } else {
            host.output("uname", &["-m"])
                .filter(|arch| !arch.is_empty())
        };
        let os_version = match os {
            Os::Macos => host.macos_version(),
            Os::Linux => host.linux_version(),
            Os::Other => None,
        };
        let (macfuse, fuse_t, linux_fuse) = match os {
            Os::Macos => (Some(host.macfuse()), Some(host.fuse_t()), None),
            Os::Linux => (None, None, Some(host.linux_fuse())),
            Os::Other => (None, None, None),
        };
        let facts = Facts {
            os,
            os_version,
            arch,
            macfuse,
            fuse_t,
            linux_fuse,
            mountpoint: host.mountpoint(&config.mountpoint),
            volumes: host.volumes(&config.volumes_dir.clone().unwrap_or_else(|| {
                defaults::volumes_dir_for(os, config.user.uid, config.home.as_deref())
            })),
            service: None,
            service_user: config.user.clone(),
        };
        tracing::debug!(?facts, "probed the host");
        facts
    }

    /// Whether the host is an Apple Silicon Mac.
    pub fn is_apple_silicon(&self) -> bool {
        self.os == Os::Macos && matches!(self.arch.as_deref(), Some("arm64" | "aarch64"))
    }
}

/// One line for logs: `macOS 26.1 arm64; macFUSE 5.0.7 loaded; FUSE-T absent; /spfs directory`.
impl std::fmt::Display for Facts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unknown = "unknown";
        write!(
            f,
            "{} {} {}",
            self.os,
            self.os_version.as_deref().unwrap_or(unknown),
            self.arch.as_deref().unwrap_or(unknown)
        )?;
        if let Some(m) = &self.macfuse {
            match (m.installed, m.loaded, m.mount_helper) {
                (false, _, _) => f.write_str("; macFUSE absent")?,
                (true, loaded, helper) => write!(
                    f,
                    "; macFUSE {} {}{}",
                    m.version.as_deref().unwrap_or(unknown),
                    if loaded { "loaded" } else { "not loaded" },
                    if helper { "" } else { ", no mount helper" }
                )?,
            }
        }
        if let Some(t) = &self.fuse_t {
            match (t.installed, &t.server) {
                (false, _) => f.write_str("; FUSE-T absent")?,
                (true, server) => write!(
                    f,
                    "; FUSE-T {}{}",
                    t.version.as_deref().unwrap_or(unknown),
                    if server.is_some() {
                        ""
                    } else {
                        " without go-nfsv4"
                    }
                )?,
            }
        }
        if let Some(l) = &self.linux_fuse {
            write!(
                f,
                "; /dev/fuse {}; {}",
                match (l.device, l.device_access) {
                    (false, _) => "absent",
                    (true, false) => "not accessible",
                    (true, true) => "ok",
                },
                l.fusermount.as_deref().unwrap_or("no fusermount3")
            )?;
        }
        let state = serde_json::to_value(self.mountpoint.state).unwrap_or_default();
        write!(
            f,
            "; {} {}",
            self.mountpoint.path.display(),
            state.as_str().unwrap_or(unknown)
        )
    }
}

/// Parses a version leniently: `26`, `15.4`, `1.0.44` and `6.12.48+deb13-amd64` all parse;
/// missing minor and patch numbers are zero.
pub fn parse_version(text: &str) -> Option<semver::Version> {
    let text = text.trim();
    if let Ok(version) = semver::Version::parse(text) {
        return Some(version);
    }
    // Keep the leading dotted numbers, pad them to three.
    let numeric: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mut parts: Vec<&str> = numeric.split('.').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || parts.len() > 3 {
        return None;
    }
    parts.resize(3, "0");
    semver::Version::parse(&parts.join(".")).ok()
}

const SYSTEM_VERSION_PLIST: &str = "System/Library/CoreServices/SystemVersion.plist";
const MACFUSE_PLIST: &str = "Library/Filesystems/macfuse.fs/Contents/Info.plist";
const MACFUSE_HELPER: &str = "Library/Filesystems/macfuse.fs/Contents/Resources/mount_macfuse";
const MACFUSE_FSKIT_FRAMEWORK: &str =
    "Library/Filesystems/macfuse.fs/Contents/Frameworks/MFMount.framework";
const FUSE_T_LIB: &str = "usr/local/lib/libfuse-t.dylib";
const FUSE_T_SERVER: &str = "usr/local/bin/go-nfsv4";
/// libfuse-t's own default (`FUSE_NFSSRV_PROG`, `lib/fuse_darwin_private.h`) is `go-nfsv4` in
/// here; some packages name it `go-nfsv4-<version>`.
const FUSE_T_SUPPORT_BIN: &str = "Library/Application Support/fuse-t/bin";
/// Where a per-user FUSE-T install (`installer -target CurrentUserHomeDirectory`,
/// macos-fuse-t/fuse-t#54) puts the system install's tree, under the user's home.
const FUSE_T_PER_USER: &str = ".fuse-t";
/// The variable that names the NFS server to run, for libfuse-t and for us.
pub const NFS_SERVER_ENV: &str = "FUSE_NFSSRV_PATH";
const SYNTHETIC_CONF: &str = "etc/synthetic.conf";

/// The host under its sysroot, with the `PATH` to find commands on.
struct Host<'a> {
    root: PathBuf,
    path: OsString,
    config: &'a ProbeConfig,
}

impl<'a> Host<'a> {
    fn new(config: &'a ProbeConfig) -> Self {
        Host {
            root: config.sysroot.clone().unwrap_or_else(|| PathBuf::from("/")),
            path: config
                .path
                .clone()
                .or_else(|| std::env::var_os("PATH"))
                .unwrap_or_default(),
            config,
        }
    }

    /// The real path of a host path (absolute or relative to `/`).
    fn path(&self, host_path: impl AsRef<Path>) -> PathBuf {
        let host_path = host_path.as_ref();
        self.root
            .join(host_path.strip_prefix("/").unwrap_or(host_path))
    }

    fn output(&self, name: &str, args: &[&str]) -> Option<String> {
        command::output(name, args, &self.path, self.config.command_timeout)
    }

    fn macos_version(&self) -> Option<String> {
        let reported = self
            .output("sysctl", &["-n", "kern.osproductversion"])
            .or_else(|| plist_string(&self.path(SYSTEM_VERSION_PLIST), &["ProductVersion"]))?;
        // Keep the text as reported, but only when it is a version.
        parse_version(&reported).map(|_| reported)
    }

    fn linux_version(&self) -> Option<String> {
        let reported = self.output("uname", &["-r"]).or_else(|| {
            std::fs::read_to_string(self.path("proc/sys/kernel/osrelease"))
                .ok()
                .map(|text| text.trim().to_owned())
        })?;
        parse_version(&reported).map(|_| reported)
    }

    fn macfuse(&self) -> MacFuseFacts {
        let plist = self.path(MACFUSE_PLIST);
        let installed = plist.is_file();
        let loaded_version = self.output("sysctl", &["-n", "vfs.generic.macfuse.version.number"]);
        MacFuseFacts {
            installed,
            version: installed
                .then(|| plist_string(&plist, &["CFBundleShortVersionString", "CFBundleVersion"]))
                .flatten(),
            mount_helper: self.path(MACFUSE_HELPER).is_file(),
            loaded: loaded_version.is_some(),
            loaded_version: loaded_version.filter(|v| !v.is_empty()),
            fskit_framework: self.path(MACFUSE_FSKIT_FRAMEWORK).is_dir(),
        }
    }

    /// The roots a FUSE-T install may sit under, as host paths: the user's `.fuse-t` (a
    /// per-user install), then `/`.
    fn fuse_t_roots(&self) -> Vec<PathBuf> {
        let per_user = self
            .config
            .home
            .as_ref()
            .map(|home| home.join(FUSE_T_PER_USER));
        per_user.into_iter().chain([PathBuf::from("/")]).collect()
    }

    fn fuse_t(&self) -> FuseTFacts {
        // The library is a link to `libfuse-t-<version>.dylib`; the link itself is what counts.
        let lib = self
            .fuse_t_roots()
            .into_iter()
            .map(|root| self.path(root.join(FUSE_T_LIB)))
            .find(|lib| lib.symlink_metadata().is_ok());
        let version = lib.as_ref().and_then(|lib| {
            let target = std::fs::read_link(lib).ok()?;
            let name = target.file_name()?.to_str()?.to_owned();
            let version = name.strip_prefix("libfuse-t-")?.strip_suffix(".dylib")?;
            Some(version.to_owned())
        });
        FuseTFacts {
            installed: lib.is_some(),
            version,
            server: self.fuse_t_server(),
        }
    }

    /// The one discovery of FUSE-T's NFS server, as a host path. `FUSE_NFSSRV_PATH` when set
    /// ([`ProbeConfig::nfs_server_override`]): as in libfuse-t, nothing else is then looked
    /// for, so a wrong override shows as a missing server. Otherwise, under each root of
    /// [`Host::fuse_t_roots`] (`$HOME/.fuse-t` first, as a per-user install wins for its user):
    /// `usr/local/bin/go-nfsv4`, then the first `go-nfsv4*` by name in FUSE-T's support
    /// directory.
    fn fuse_t_server(&self) -> Option<PathBuf> {
        if let Some(server) = &self.config.nfs_server_override {
            return self.path(server).is_file().then(|| server.clone());
        }
        self.fuse_t_roots().into_iter().find_map(|root| {
            let standard = root.join(FUSE_T_SERVER);
            if self.path(&standard).is_file() {
                return Some(standard);
            }
            self.fuse_t_support_server(&root)
        })
    }

    /// A `go-nfsv4*` in `ROOT/Library/Application Support/fuse-t/bin`, the first by name.
    fn fuse_t_support_server(&self, root: &Path) -> Option<PathBuf> {
        let dir = root.join(FUSE_T_SUPPORT_BIN);
        let mut names: Vec<String> = std::fs::read_dir(self.path(&dir))
            .ok()?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().is_file())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| name.starts_with("go-nfsv4"))
            .collect();
        names.sort();
        let name = names.into_iter().next()?;
        Some(dir.join(name))
    }

    fn linux_fuse(&self) -> LinuxFuseFacts {
        let device = self.path("dev/fuse");
        let fusermount = ["fusermount3", "fusermount"]
            .into_iter()
            .find(|name| command::find(name, &self.path).is_some())
            .map(str::to_owned);
        LinuxFuseFacts {
            device: device.exists(),
            device_access: device.exists() && readable_and_writable(&device),
            fusermount,
        }
    }

    fn mountpoint(&self, host_path: &Path) -> MountpointFacts {
        let path = self.path(host_path);
        let state = match std::fs::metadata(&path) {
            // Asked first: a dead macFUSE mount fakes the `stat` of its root.
            _ if self.config.stale_mount.is_some_and(|stale| stale(&path)) => {
                MountpointState::Stale
            }
            Ok(meta) if meta.is_dir() => MountpointState::Directory,
            Ok(_) => MountpointState::NotADirectory,
            Err(_) if self.listed_in_synthetic_conf(host_path) => MountpointState::Synthetic,
            Err(_) => MountpointState::Missing,
        };
        let link = std::fs::symlink_metadata(&path)
            .is_ok_and(|meta| meta.file_type().is_symlink())
            .then(|| std::fs::read_link(&path).ok())
            .flatten();
        MountpointFacts {
            path: host_path.to_owned(),
            state,
            owner: (state == MountpointState::Directory)
                .then(|| self.ownership(&path))
                .flatten(),
            link,
        }
    }

    /// The owner and mode of a real path, through [`ProbeConfig::ownership`].
    fn ownership(&self, path: &Path) -> Option<Ownership> {
        (self.config.ownership)(path)
            .map_err(|err| tracing::debug!(?path, %err, "cannot read the owner"))
            .ok()
    }

    /// The nearest existing ancestor of a missing host path, and its owner.
    fn nearest_existing(&self, host_path: &Path) -> Option<PathOwner> {
        let ancestor = host_path
            .ancestors()
            .skip(1)
            .find(|ancestor| self.path(ancestor).is_dir())?;
        Some(PathOwner {
            path: ancestor.to_owned(),
            owner: self.ownership(&self.path(ancestor))?,
        })
    }

    /// Whether `/etc/synthetic.conf` names this top-level directory. Each line is a name,
    /// optionally followed by a tab and a link target.
    fn listed_in_synthetic_conf(&self, host_path: &Path) -> bool {
        let mut components = host_path
            .strip_prefix("/")
            .unwrap_or(host_path)
            .components();
        let (Some(name), None) = (components.next(), components.next()) else {
            return false; // only top-level directories can be synthetic
        };
        let Ok(text) = std::fs::read_to_string(self.path(SYNTHETIC_CONF)) else {
            return false;
        };
        text.lines()
            .filter_map(|line| line.split('\t').next())
            .any(|first| first.trim() == name.as_os_str())
    }

    fn volumes(&self, host_dir: &Path) -> VolumesFacts {
        let dir = self.path(host_dir);
        let mut stale: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| {
                let pid = name
                    .strip_prefix("spfs-")
                    .and_then(|pid| pid.parse::<i32>().ok());
                pid.is_some_and(|pid| pid > 0 && !process_alive(pid))
            })
            .collect();
        stale.sort();
        let exists = dir.is_dir();
        VolumesFacts {
            dir: host_dir.to_owned(),
            exists,
            stale,
            owner: exists.then(|| self.ownership(&dir)).flatten(),
            creatable_in: (!exists).then(|| self.nearest_existing(host_dir)).flatten(),
        }
    }
}

/// Reads the first of `keys` that holds a string in a plist file (XML or binary).
fn plist_string(path: &Path, keys: &[&str]) -> Option<String> {
    let value = plist::Value::from_file(path)
        .map_err(|err| tracing::debug!(?path, %err, "unreadable plist"))
        .ok()?;
    let dict = value.as_dictionary()?;
    keys.iter()
        .find_map(|key| dict.get(key)?.as_string())
        .map(|s| s.trim().to_owned())
}

fn readable_and_writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; access(2)
    // only reads it.
    unsafe { libc::access(path.as_ptr(), libc::R_OK | libc::W_OK) == 0 }
}

/// Whether a process with this pid exists (including one we may not signal).
fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 sends nothing; kill(2) only checks that the pid exists and whether
    // we may signal it.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_leniently() {
        let v = |s| parse_version(s).map(|v| v.to_string());
        assert_eq!(v("26").as_deref(), Some("26.0.0"));
        assert_eq!(v("15.4").as_deref(), Some("15.4.0"));
        assert_eq!(v("13.6.1").as_deref(), Some("13.6.1"));
        assert_eq!(
            v("6.12.48+deb13-amd64").as_deref(),
            Some("6.12.48+deb13-amd64")
        );
        assert_eq!(v("6.1.0-18-amd64").as_deref(), Some("6.1.0-18-amd64"));
        assert_eq!(v("5.10").as_deref(), Some("5.10.0"));
        assert_eq!(v(""), None);
        assert_eq!(v("banana"), None);
    }

    #[test]
    fn facts_print_on_one_line() {
        let facts = Facts {
            os: Os::Macos,
            os_version: Some("26.1".into()),
            arch: Some("arm64".into()),
            macfuse: Some(MacFuseFacts {
                installed: true,
                version: Some("5.0.7".into()),
                mount_helper: true,
                loaded: false,
                loaded_version: None,
                fskit_framework: false,
            }),
            fuse_t: Some(FuseTFacts::default()),
            linux_fuse: None,
            mountpoint: MountpointFacts {
                path: "/spfs".into(),
                state: MountpointState::Synthetic,
                owner: None,
                link: None,
            },
            volumes: VolumesFacts {
                dir: "/Volumes".into(),
                exists: true,
                stale: Vec::new(),
                owner: None,
                creatable_in: None,
            },
            service: None,
            service_user: ServiceUser::root(),
        };
        assert_eq!(
            facts.to_string(),
            "macOS 26.1 arm64; macFUSE 5.0.7 not loaded; FUSE-T absent; /spfs synthetic"
        );
    }

    #[test]
    fn this_process_is_alive_and_an_impossible_pid_is_not() {
        assert!(process_alive(std::process::id() as i32));
        assert!(!process_alive(99_999_999));
    }
}
