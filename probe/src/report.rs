//! The doctor report: a checklist built from the facts and the selection, as text or JSON.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::backend::{Backend, Os};
use crate::facts::{Facts, MountpointState, parse_version};
use crate::hints;
use crate::select::{Selection, select};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth knowing, needs nothing (an optional component that is absent, say).
    Info,
    /// Doubtful or degraded: spfs-fuse should work, but look at the hint.
    Warn,
    /// Blocks the backend that would be used.
    Fail,
}

impl Status {
    /// The lower-case name used in text and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Info => "info",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// A stable id, listed in the README (`macfuse.installed`).
    pub id: String,
    /// How it came out.
    pub status: Status,
    /// What was found, for a person.
    pub message: String,
    /// What to do about it; set on every `warn` and `fail`.
    pub hint: Option<String>,
}

impl Check {
    /// A check with an optional hint.
    pub fn new(
        id: impl Into<String>,
        status: Status,
        message: impl Into<String>,
        hint: Option<&str>,
    ) -> Check {
        Check {
            id: id.into(),
            status,
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

/// The doctor report. Serialized, it is the JSON of `spfs-fuse doctor --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The operating system.
    pub os: Os,
    /// The OS version, when known.
    pub os_version: Option<String>,
    /// The machine architecture, when known.
    pub arch: Option<String>,
    /// The backend asked for.
    pub requested: Backend,
    /// The backend that would be used; `None` when nothing is usable.
    pub backend: Option<Backend>,
    /// All usable backends, best first.
    pub candidates: Vec<Backend>,
    /// A backend is usable and no check failed.
    pub ready: bool,
    /// The checklist, in order.
    pub checks: Vec<Check>,
    /// The facts the checks were built from.
    pub facts: Facts,
}

impl Report {
    /// Builds the checklist for `requested` from the facts. Pure: the same facts always give
    /// the same report.
    pub fn build(facts: &Facts, requested: Backend) -> Report {
        let selection = select(facts, requested);
        let checks = Checklist::new(facts, &selection).build();
        let mut report = Report {
            os: facts.os,
            os_version: facts.os_version.clone(),
            arch: facts.arch.clone(),
            requested,
            backend: selection.backend(),
            candidates: selection.candidates.clone(),
            ready: false,
            checks,
            facts: facts.clone(),
        };
        report.update_ready();
        report
    }

    /// Adds a check made outside the probe (such as `mount.test`) before the last one
    /// (`backend`), and updates `ready`.
    pub fn add_check(&mut self, check: Check) {
        let at = match self.checks.last() {
            Some(last) if last.id == "backend" => self.checks.len() - 1,
            _ => self.checks.len(),
        };
        self.checks.insert(at, check);
        self.update_ready();
    }

    fn update_ready(&mut self) {
        self.ready = self.backend.is_some() && self.failures() == 0;
    }

    /// How many checks failed.
    pub fn failures(&self) -> usize {
        self.count(Status::Fail)
    }

    /// How many checks warn.
    pub fn warnings(&self) -> usize {
        self.count(Status::Warn)
    }

    fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// The exit status of `doctor`: 0 ready with no warnings, 2 ready with warnings,
    /// 1 not ready.
    pub fn exit_code(&self) -> u8 {
        match (self.ready, self.warnings()) {
            (false, _) => 1,
            (true, 0) => 0,
            (true, _) => 2,
        }
    }

    /// The JSON of `doctor --json`, pretty-printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The checklist for a person: one line per check, the hint under it, and a last line
    /// naming the backend that would be used.
    pub fn to_text(&self) -> String {
        let width = self.checks.iter().map(|c| c.id.len()).max().unwrap_or(0);
        let mut out = String::new();
        for check in &self.checks {
            let _ = writeln!(
                out,
                "{:<4}  {:<width$}  {}",
                check.status.as_str(),
                check.id,
                check.message
            );
            if let Some(hint) = &check.hint {
                let _ = writeln!(out, "{:<4}  {:<width$}  hint: {hint}", "", "");
            }
        }
        let _ = writeln!(out, "{}", self.verdict());
        out
    }

    fn verdict(&self) -> String {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let Some(backend) = self.backend else {
            return match self.requested {
                Backend::Auto => "not ready: no usable backend".to_owned(),
                requested => format!("not ready: backend {requested} is not usable"),
            };
        };
        let mut line = format!("backend {backend}");
        if self.candidates.len() > 1 {
            let rest: Vec<&str> = self.candidates[1..].iter().map(|b| b.as_str()).collect();
            let _ = write!(line, " (fallback: {})", rest.join(", "));
        }
        if !self.ready {
            return format!(
                "not ready: {line}, {}",
                plural(self.failures(), "failed check")
            );
        }
        match self.warnings() {
            0 => format!("ready: {line}"),
            n => format!("ready: {line}, {}", plural(n, "warning")),
        }
    }
}

/// Builds the checks from the facts and the selection.
struct Checklist<'a> {
    facts: &'a Facts,
    selection: &'a Selection,
    checks: Vec<Check>,
}

/// How bad a problem with one backend is, which depends on whether that backend matters.
#[derive(Clone, Copy)]
enum Problem {
    /// The component is not installed at all: a choice, unless it is needed.
    Absent,
    /// The component is installed but cannot work.
    Broken,
    /// The component may work; only a mount will tell.
    Doubtful,
}

impl<'a> Checklist<'a> {
    fn new(facts: &'a Facts, selection: &'a Selection) -> Self {
        Checklist {
            facts,
            selection,
            checks: Vec::new(),
        }
    }

    fn build(mut self) -> Vec<Check> {
        self.host();
        match self.facts.os {
            Os::Macos => {
                self.macfuse();
                self.fuse_t();
            }
            Os::Linux => self.linux(),
            Os::Other => {}
        }
        self.mountpoint();
        self.volumes();
        self.service();
        self.backend();
        self.checks
    }

    fn push(&mut self, id: &str, status: Status, message: impl Into<String>, hint: Option<&str>) {
        self.checks.push(Check::new(id, status, message, hint));
    }

    /// The backend was asked for explicitly, or `auto` found nothing: its problems block.
    fn required(&self, backend: Backend) -> bool {
        let requested = self.selection.requested;
        requested == backend || requested == Backend::Auto && self.selection.candidates.is_empty()
    }

    fn considered(&self, backend: Backend) -> bool {
        matches!(self.selection.requested, Backend::Auto) || self.selection.requested == backend
    }

    fn candidate(&self, backend: Backend) -> bool {
        self.selection.candidates.contains(&backend)
    }

    /// Whether to look at a backend's mount point: it is usable, or it was asked for, or (on
    /// Linux, where `auto` has only the device to choose from) it is the only choice.
    fn relevant(&self, backend: Backend) -> bool {
        self.candidate(backend)
            || self.selection.requested == backend
            || self.facts.os == Os::Linux && backend == Backend::Kext && self.considered(backend)
    }

    fn severity(&self, backend: Backend, problem: Problem) -> Status {
        match problem {
            _ if self.required(backend) && !self.candidate(backend) => Status::Fail,
            Problem::Absent => Status::Info,
            Problem::Broken if self.considered(backend) => Status::Warn,
            Problem::Broken => Status::Info,
            Problem::Doubtful if self.candidate(backend) => Status::Warn,
            Problem::Doubtful => Status::Info,
        }
    }

    /// A problem with a backend; the hint is shown only where it matters.
    fn problem(
        &mut self,
        id: &str,
        backend: Backend,
        problem: Problem,
        message: String,
        hint: &str,
    ) {
        let status = self.severity(backend, problem);
        // An info line is about a backend that does not matter here: no advice needed.
        let hint = matches!(status, Status::Warn | Status::Fail).then_some(hint);
        self.push(id, status, message, hint);
    }

    fn host(&mut self) {
        let facts = self.facts;
        let arch = facts.arch.as_deref().unwrap_or("an unknown architecture");
        match (facts.os, &facts.os_version) {
            (Os::Other, _) => self.push(
                "host.os",
                Status::Fail,
                format!("{} on {arch}", std::env::consts::OS),
                Some(hints::UNSUPPORTED_OS),
            ),
            (os, Some(version)) => self.push(
                "host.os",
                Status::Ok,
                format!("{os} {version} on {arch}"),
                None,
            ),
            (os, None) => self.push(
                "host.os",
                Status::Info,
                format!("{os} (version unknown) on {arch}"),
                None,
            ),
        }
    }

    fn macfuse(&mut self) {
        let macfuse = self.facts.macfuse.clone().unwrap_or_default();
        let kext = Backend::Kext;
        if !macfuse.installed {
            self.problem(
                "macfuse.installed",
                kext,
                Problem::Absent,
                "macFUSE is not installed".into(),
                hints::INSTALL_MACFUSE,
            );
            return;
        }
        let version = macfuse.version.as_deref().unwrap_or("(version unknown)");
        self.push(
            "macfuse.installed",
            Status::Ok,
            format!("macFUSE {version} is installed"),
            None,
        );
        if macfuse.mount_helper {
            self.push(
                "macfuse.helper",
                Status::Ok,
                "the mount helper mount_macfuse is present",
                None,
            );
        } else {
            self.problem(
                "macfuse.helper",
                kext,
                Problem::Broken,
                "the mount helper mount_macfuse is missing".into(),
                hints::REINSTALL_MACFUSE,
            );
        }
        if macfuse.loaded {
            let message = match &macfuse.loaded_version {
                Some(v) => format!("the macFUSE kext {v} is loaded"),
                None => "the macFUSE kext is loaded".to_owned(),
            };
            self.push("macfuse.loaded", Status::Ok, message, None);
        } else if macfuse.mount_helper {
            let hint = self.approve_kext_hint();
            self.problem(
                "macfuse.loaded",
                kext,
                Problem::Doubtful,
                "the macFUSE kext is not loaded; it loads at the first mount once approved".into(),
                hint,
            );
        } else {
            let hint = self.approve_kext_hint();
            self.problem(
                "macfuse.loaded",
                kext,
                Problem::Broken,
                "the macFUSE kext is not loaded".into(),
                hint,
            );
        }
        if self.has_fskit_backend() {
            self.push(
                "macfuse.fskit",
                Status::Info,
                "macFUSE's FSKit backend (backend=fskit) is present and not used: it mounts over \
                 XPC, only under /Volumes, and gives no caller pid, so it cannot show each \
                 process tree its own view",
                None,
            );
        }
    }

    /// Whether macFUSE's FSKit backend is there: its mount framework (5.2 and later), or
    /// macFUSE 5 on macOS 15.4 or later, the first to have it (macFUSE 5.0.0's release
    /// notes). Whether its file system extension is enabled in System Settings cannot be
    /// read from files, so this says present, not usable.
    fn has_fskit_backend(&self) -> bool {
        let Some(macfuse) = self.facts.macfuse.as_ref().filter(|m| m.installed) else {
            return false;
        };
        let at_least = |version: Option<&str>, minimum: semver::Version| {
            version
                .and_then(parse_version)
                .is_some_and(|version| version >= minimum)
        };
        macfuse.fskit_framework
            || at_least(macfuse.version.as_deref(), semver::Version::new(5, 0, 0))
                && at_least(
                    self.facts.os_version.as_deref(),
                    semver::Version::new(15, 4, 0),
                )
    }

    fn approve_kext_hint(&self) -> &'static str {
        match self.facts.arch.as_deref() {
            _ if self.facts.is_apple_silicon() => hints::APPROVE_KEXT_APPLE_SILICON,
            Some("x86_64") => hints::APPROVE_KEXT_INTEL,
            _ => hints::APPROVE_KEXT,
        }
    }

    /// The hint of the `backend` check when nothing is usable: repair what is installed
    /// first; with `auto` on a Mac with neither backend installed, either one will do.
    fn no_backend_hint(&self) -> Option<&'static str> {
        let rejected = &self.selection.rejected;
        let installed = |backend: Backend| match backend {
            Backend::Kext if self.facts.os == Os::Macos => {
                self.facts.macfuse.as_ref().is_some_and(|m| m.installed)
            }
            Backend::FuseT => self.facts.fuse_t.as_ref().is_some_and(|f| f.installed),
            _ => true,
        };
        let macos_auto = self.facts.os == Os::Macos && self.selection.requested == Backend::Auto;
        match rejected.iter().find(|r| installed(r.backend)) {
            Some(rejection) => Some(rejection.hint),
            None if macos_auto => Some(hints::INSTALL_A_MACOS_BACKEND),
            None => rejected.first().map(|r| r.hint),
        }
    }

    fn fuse_t(&mut self) {
        let fuse_t = self.facts.fuse_t.clone().unwrap_or_default();
        let backend = Backend::FuseT;
        if !fuse_t.installed {
            self.problem(
                "fuse-t.installed",
                backend,
                Problem::Absent,
                "FUSE-T is not installed".into(),
                hints::INSTALL_FUSE_T,
            );
            return;
        }
        let version = fuse_t.version.as_deref().unwrap_or("(version unknown)");
        self.push(
            "fuse-t.installed",
            Status::Ok,
            format!("FUSE-T {version} is installed"),
            None,
        );
        match &fuse_t.server {
            Some(server) => self.push(
                "fuse-t.server",
                Status::Ok,
                format!("its server is at {}", server.display()),
                None,
            ),
            None => self.problem(
                "fuse-t.server",
                backend,
                Problem::Broken,
                "its server go-nfsv4 is missing".into(),
                hints::REPAIR_FUSE_T,
            ),
        }
    }

    fn linux(&mut self) {
        let linux = self.facts.linux_fuse.clone().unwrap_or_default();
        let kext = Backend::Kext;
        if !linux.device {
            self.problem(
                "linux.dev-fuse",
                kext,
                Problem::Broken,
                "/dev/fuse does not exist".into(),
                hints::LINUX_DEVICE_MISSING,
            );
        } else if !linux.device_access {
            self.problem(
                "linux.dev-fuse",
                kext,
                Problem::Broken,
                "/dev/fuse exists but this user cannot open it".into(),
                hints::LINUX_DEVICE_PERMISSIONS,
            );
        } else {
            self.push(
                "linux.dev-fuse",
                Status::Ok,
                "/dev/fuse exists and can be opened",
                None,
            );
        }
        match &linux.fusermount {
            Some(name) => self.push(
                "linux.fusermount",
                Status::Ok,
                format!("{name} is on PATH"),
                None,
            ),
            None => self.problem(
                "linux.fusermount",
                kext,
                Problem::Absent,
                "fusermount3 is not on PATH".into(),
                hints::INSTALL_FUSE3,
            ),
        }
    }

    /// The shared mount point matters to `kext` only.
    fn mountpoint(&mut self) {
        if !self.relevant(Backend::Kext) {
            return;
        }
        let mountpoint = &self.facts.mountpoint;
        let path = mountpoint.path.display();
        let macos = self.facts.os == Os::Macos;
        let (status, message, hint) = match mountpoint.state {
            MountpointState::Directory => match self.mountpoint_owner_problem() {
                Some(message) => (
                    self.blocking(Backend::Kext),
                    message,
                    Some(hints::MOUNTPOINT_NOT_OWNED),
                ),
                None => (Status::Ok, self.mountpoint_ok_message(), None),
            },
            // A `synthetic.conf` link whose target was never made: no reboot helps.
            MountpointState::Synthetic | MountpointState::Missing if mountpoint.link.is_some() => {
                let target = mountpoint.link.as_deref().unwrap_or(Path::new("?"));
                (
                    Status::Warn,
                    format!("{path} links to {}, which does not exist", target.display()),
                    Some(hints::MKDIR_LINK_TARGET),
                )
            }
            MountpointState::Synthetic => (
                Status::Warn,
                format!(
                    "{path} is listed in /etc/synthetic.conf but does not exist until a reboot"
                ),
                Some(hints::REBOOT_FOR_SYNTHETIC),
            ),
            MountpointState::Missing if macos => (
                Status::Warn,
                format!("{path} does not exist, and the macOS root volume is read-only"),
                Some(hints::ADD_TO_SYNTHETIC_CONF),
            ),
            MountpointState::Missing => (
                Status::Info,
                format!("{path} does not exist yet"),
                Some(hints::MKDIR_MOUNTPOINT),
            ),
            MountpointState::NotADirectory => (
                Status::Warn,
                format!("{path} exists but is not a directory"),
                Some(hints::MOUNTPOINT_NOT_A_DIRECTORY),
            ),
            MountpointState::Stale => (
                Status::Warn,
                format!("a dead FUSE mount is left at {path}"),
                Some(if macos {
                    hints::STALE_MOUNT_MACOS
                } else {
                    hints::STALE_MOUNT_LINUX
                }),
            ),
        };
        self.push("mountpoint", status, message, hint);
    }

    /// How bad a problem is that makes `backend` fail at its first mount: it fails the
    /// report when that backend would be used (or was asked for), and warns when it is only a
    /// fallback.
    fn blocking(&self, backend: Backend) -> Status {
        if self.selection.backend() == Some(backend) || self.selection.requested == backend {
            Status::Fail
        } else {
            Status::Warn
        }
    }

    /// Why the service's user may not mount on the mount point, on macOS (XNU: a user mounts
    /// only on a directory of their own). Linux's `fusermount3` asks for write access instead,
    /// and the Linux service runs as root. `None` when the mount is allowed or the owner is
    /// unknown.
    fn mountpoint_owner_problem(&self) -> Option<String> {
        let mountpoint = &self.facts.mountpoint;
        let user = &self.facts.service_user;
        let owner = mountpoint.owner.as_ref()?;
        if self.facts.os != Os::Macos || user.may_mount_on(owner) {
            return None;
        }
        let what = match &mountpoint.link {
            Some(target) => format!(
                "{} links to {}, owned by uid {}",
                mountpoint.path.display(),
                target.display(),
                owner.uid
            ),
            None => format!(
                "{} is owned by uid {}",
                mountpoint.path.display(),
                owner.uid
            ),
        };
        Some(format!(
            "{what}: a service run by uid {} may mount only on a directory it owns",
            user.uid
        ))
    }

    fn mountpoint_ok_message(&self) -> String {
        let mountpoint = &self.facts.mountpoint;
        let path = mountpoint.path.display();
        match (&mountpoint.link, &mountpoint.owner) {
            (Some(target), Some(owner)) => format!(
                "{path} exists, a link to {} owned by uid {}",
                target.display(),
                owner.uid
            ),
            (Some(target), None) => format!("{path} exists, a link to {}", target.display()),
            (None, _) => format!("{path} exists"),
        }
    }

    /// The volumes directory matters to `fuse-t` only; stale volumes are reported wherever
    /// they are found.
    fn volumes(&mut self) {
        let volumes = &self.facts.volumes;
        let dir = volumes.dir.display();
        let relevant = self.facts.os == Os::Macos && self.relevant(Backend::FuseT);
        if relevant {
            let (status, message, hint) = self.volumes_dir_check();
            self.push("volumes.dir", status, message, hint);
        }
        if !volumes.stale.is_empty() {
            let n = volumes.stale.len();
            let message = format!(
                "{n} stale volume{} in {dir} whose process is gone: {}",
                if n == 1 { "" } else { "s" },
                volumes.stale.join(", ")
            );
            self.push("volumes.stale", Status::Warn, message, Some(hints::SWEEP));
        } else if relevant && volumes.exists {
            self.push(
                "volumes.stale",
                Status::Ok,
                format!("no stale spfs volumes in {dir}"),
                None,
            );
        }
    }

    /// Whether the service's user can create volumes in the volumes directory, or create the
    /// directory itself: the service makes it at its first volume.
    fn volumes_dir_check(&self) -> (Status, String, Option<&'static str>) {
        let volumes = &self.facts.volumes;
        let user = &self.facts.service_user;
        let dir = volumes.dir.display();
        let uid = user.uid;
        match (volumes.exists, &volumes.owner, &volumes.creatable_in) {
            (true, Some(owner), _) if !user.may_create_in(owner) => (
                self.blocking(Backend::FuseT),
                format!(
                    "{dir} ({owner}) does not let a service run by uid {uid} create volumes in it"
                ),
                Some(hints::VOLUMES_DIR_NOT_WRITABLE),
            ),
            (true, _, _) => (Status::Ok, format!("{dir} exists"), None),
            (false, _, Some(parent)) if user.may_create_in(&parent.owner) => (
                Status::Ok,
                format!(
                    "{dir} does not exist yet; the service creates it in {} at its first volume",
                    parent.path.display()
                ),
                None,
            ),
            (false, _, Some(parent)) => (
                self.blocking(Backend::FuseT),
                format!(
                    "{dir} does not exist, and a service run by uid {uid} cannot create it in {} \
                     ({})",
                    parent.path.display(),
                    parent.owner
                ),
                Some(hints::VOLUMES_DIR_NOT_WRITABLE),
            ),
            (false, _, None) => (
                Status::Warn,
                format!("{dir} does not exist"),
                Some(hints::VOLUMES_DIR_MISSING),
            ),
        }
    }

    fn service(&mut self) {
        let Some(service) = &self.facts.service else {
            return;
        };
        let socket = service.socket.display();
        if service.answering {
            let message = match service.backend {
                Some(backend) => format!("a service answers on {socket} (backend {backend})"),
                None => format!("a service answers on {socket}"),
            };
            self.push("service", Status::Ok, message, None);
        } else if service.socket_exists {
            self.push(
                "service",
                Status::Warn,
                format!("{socket} exists but no service answers on it"),
                Some(hints::STALE_SOCKET),
            );
        } else {
            self.push(
                "service",
                Status::Info,
                format!("no service is running on {socket}; commands start one when needed"),
                None,
            );
        }
    }

    fn backend(&mut self) {
        let selection = self.selection;
        if let Some(backend) = selection.backend() {
            let mut message = format!("{backend} will be used");
            if selection.candidates.len() > 1 {
                let rest: Vec<&str> = selection.candidates[1..]
                    .iter()
                    .map(|b| b.as_str())
                    .collect();
                let _ = write!(message, ", then {} if a mount fails", rest.join(", "));
            }
            self.push("backend", Status::Ok, message, None);
            return;
        }
        let reasons: Vec<&str> = selection
            .rejected
            .iter()
            .map(|r| r.reason.as_str())
            .collect();
        let message = match selection.requested {
            Backend::Auto => format!("no usable backend: {}", reasons.join("; ")),
            requested => format!(
                "{requested} was asked for but cannot be used: {}",
                reasons.join("; ")
            ),
        };
        let hint = self.no_backend_hint();
        self.push("backend", Status::Fail, message, hint);
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::facts::{LinuxFuseFacts, MountpointFacts, ServiceFacts, VolumesFacts};

    fn linux_host() -> Facts {
        Facts {
            os: Os::Linux,
            os_version: Some("6.12.48".into()),
            arch: Some("x86_64".into()),
            macfuse: None,
            fuse_t: None,
            linux_fuse: Some(LinuxFuseFacts {
                device: true,
                device_access: true,
                fusermount: Some("fusermount3".into()),
            }),
            mountpoint: MountpointFacts {
                path: PathBuf::from("/spfs"),
                state: MountpointState::Directory,
                owner: None,
                link: None,
            },
            volumes: VolumesFacts {
                dir: PathBuf::from("/Volumes"),
                exists: false,
                stale: Vec::new(),
                owner: None,
                creatable_in: None,
            },
            service: None,
            service_user: crate::ServiceUser::root(),
        }
    }

    /// A Mac with macFUSE `version` loaded on macOS `os_version`.
    fn mac_with_macfuse(os_version: &str, version: &str, fskit_framework: bool) -> Facts {
        Facts {
            os: Os::Macos,
            os_version: Some(os_version.into()),
            arch: Some("arm64".into()),
            macfuse: Some(crate::facts::MacFuseFacts {
                installed: true,
                version: Some(version.into()),
                mount_helper: true,
                loaded: true,
                loaded_version: Some(version.into()),
                fskit_framework,
            }),
            fuse_t: Some(crate::facts::FuseTFacts::default()),
            linux_fuse: None,
            ..linux_host()
        }
    }

    /// macFUSE 5 on macOS 15.4 or later, or its FSKit mount framework, means the FSKit backend
    /// is there: reported for information (it changes no verdict), with why it is not used.
    #[test]
    fn macfuses_fskit_backend_is_reported_where_present_and_never_used() {
        let has_row = |facts: &Facts| {
            let report = Report::build(facts, Backend::Auto);
            let row = report
                .checks
                .iter()
                .find(|c| c.id == "macfuse.fskit")
                .cloned();
            if let Some(row) = &row {
                assert_eq!(row.status, Status::Info);
                assert!(row.message.contains("no caller pid"), "{}", row.message);
            }
            assert_eq!(report.backend, Some(Backend::Kext), "never the backend");
            row.is_some()
        };
        assert!(has_row(&mac_with_macfuse("15.4", "5.0.7", false)));
        assert!(has_row(&mac_with_macfuse("26.1", "5.2.0", true)));
        assert!(!has_row(&mac_with_macfuse("15.3", "5.0.7", false)));
        assert!(!has_row(&mac_with_macfuse("26.1", "4.10.2", false)));
        // The framework is the marker even where a version says nothing.
        assert!(has_row(&mac_with_macfuse("", "", true)));
    }

    fn check<'r>(report: &'r Report, id: &str) -> &'r Check {
        report
            .checks
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no check {id} in\n{}", report.to_text()))
    }

    #[test]
    fn a_healthy_host_is_ready_without_warnings() {
        let report = Report::build(&linux_host(), Backend::Auto);
        assert!(report.ready);
        assert_eq!(report.exit_code(), 0);
        assert_eq!(report.checks.last().unwrap().id, "backend");
    }

    #[test]
    fn dev_fuse_without_permission_fails_with_the_permissions_hint() {
        let mut facts = linux_host();
        facts.linux_fuse.as_mut().unwrap().device_access = false;
        let report = Report::build(&facts, Backend::Auto);
        let dev = check(&report, "linux.dev-fuse");
        assert_eq!(dev.status, Status::Fail);
        assert_eq!(dev.hint.as_deref(), Some(hints::LINUX_DEVICE_PERMISSIONS));
        assert_eq!(report.backend, None);
        assert_eq!(report.exit_code(), 1);
    }

    #[test]
    fn mountpoint_problems_warn_with_their_hint() {
        for (state, hint) in [
            (MountpointState::Stale, hints::STALE_MOUNT_LINUX),
            (
                MountpointState::NotADirectory,
                hints::MOUNTPOINT_NOT_A_DIRECTORY,
            ),
        ] {
            let mut facts = linux_host();
            facts.mountpoint.state = state;
            let report = Report::build(&facts, Backend::Kext);
            let mountpoint = check(&report, "mountpoint");
            assert_eq!(mountpoint.status, Status::Warn, "{state:?}");
            assert_eq!(mountpoint.hint.as_deref(), Some(hint));
            assert_eq!(report.exit_code(), 2);
        }
        // On Linux a missing mount point is only news: the service can create it as root.
        let mut facts = linux_host();
        facts.mountpoint.state = MountpointState::Missing;
        let report = Report::build(&facts, Backend::Auto);
        assert_eq!(check(&report, "mountpoint").status, Status::Info);
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn the_service_check_never_fails() {
        let service = |socket_exists, answering, backend| ServiceFacts {
            socket: PathBuf::from("/run/user/0/spfs-fuse/spfs-fuse.sock"),
            socket_exists,
            answering,
            backend,
        };
        let cases = [
            (service(false, false, None), Status::Info, 0),
            (service(true, false, None), Status::Warn, 2),
            (service(true, true, None), Status::Ok, 0),
            (service(true, true, Some(Backend::Kext)), Status::Ok, 0),
        ];
        for (facts_service, status, exit) in cases {
            let mut facts = linux_host();
            facts.service = Some(facts_service.clone());
            let report = Report::build(&facts, Backend::Auto);
            assert_eq!(
                check(&report, "service").status,
                status,
                "{facts_service:?}"
            );
            assert_eq!(report.exit_code(), exit, "{facts_service:?}");
        }
        let mut facts = linux_host();
        facts.service = Some(service(true, true, Some(Backend::Kext)));
        let report = Report::build(&facts, Backend::Auto);
        assert!(check(&report, "service").message.contains("(backend kext)"));
    }

    #[test]
    fn added_checks_go_before_the_verdict_and_count() {
        let mut report = Report::build(&linux_host(), Backend::Auto);
        report.add_check(Check::new(
            "mount.test",
            Status::Warn,
            "not run",
            Some("later"),
        ));
        let ids: Vec<&str> = report.checks.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids[ids.len() - 2..], ["mount.test", "backend"]);
        assert_eq!(report.exit_code(), 2);
        report.add_check(Check::new(
            "mount.test",
            Status::Fail,
            "failed",
            Some("fix"),
        ));
        assert!(!report.ready);
        assert_eq!(report.exit_code(), 1);
        assert!(
            report
                .to_text()
                .ends_with("not ready: backend kext, 1 failed check\n")
        );
    }

    const ALICE: u32 = 501;

    fn alice() -> crate::ServiceUser {
        crate::ServiceUser {
            uid: ALICE,
            groups: vec![20],
        }
    }

    fn owned(uid: u32, mode: u32) -> Option<crate::Ownership> {
        Some(crate::Ownership { uid, gid: 0, mode })
    }

    /// A Mac with macFUSE loaded and `/spfs` owned by `owner`, checked for `user`.
    fn mac_spfs(owner: u32, link: Option<&str>, user: crate::ServiceUser) -> Report {
        let mut facts = mac_with_macfuse("26.1", "5.0.7", false);
        facts.mountpoint.owner = owned(owner, 0o755);
        facts.mountpoint.link = link.map(PathBuf::from);
        facts.service_user = user;
        Report::build(&facts, Backend::Auto)
    }

    /// Regression (issue 14, defect 5): a plain `synthetic.conf` line makes `/spfs` root's,
    /// and XNU refuses a user's `mount(2)` on a directory the user does not own; doctor said
    /// `/spfs exists` and the per-user service failed at its mount.
    #[test]
    fn a_root_owned_mount_point_fails_for_a_per_user_service_only() {
        let report = mac_spfs(0, None, alice());
        let row = check(&report, "mountpoint");
        assert_eq!(row.status, Status::Fail, "{}", report.to_text());
        assert_eq!(row.hint.as_deref(), Some(hints::MOUNTPOINT_NOT_OWNED));
        assert!(row.message.contains("owned by uid 0"), "{}", row.message);
        assert!(row.message.contains("uid 501"), "{}", row.message);
        assert_eq!(report.exit_code(), 1);
        assert!(
            row.hint
                .as_deref()
                .unwrap()
                .contains("spfs<TAB>Users/NAME/.spfs")
        );
        assert!(
            row.hint
                .as_deref()
                .unwrap()
                .contains("sudo brew services start")
        );

        // The system service (doctor run as root) may mount on it.
        let report = mac_spfs(0, None, crate::ServiceUser::root());
        assert_eq!(check(&report, "mountpoint").status, Status::Ok);
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn a_mount_point_linked_to_the_users_own_directory_is_fine() {
        let report = mac_spfs(ALICE, Some("Users/alice/.spfs"), alice());
        let row = check(&report, "mountpoint");
        assert_eq!(row.status, Status::Ok, "{}", report.to_text());
        assert_eq!(
            row.message,
            "/spfs exists, a link to Users/alice/.spfs owned by uid 501"
        );
        // A link to someone else's directory is no better than their directory.
        let report = mac_spfs(502, Some("Users/bob/.spfs"), alice());
        let row = check(&report, "mountpoint");
        assert_eq!(row.status, Status::Fail);
        assert!(
            row.message
                .contains("links to Users/bob/.spfs, owned by uid 502")
        );
    }

    #[test]
    fn ownership_is_not_judged_on_linux_or_when_unknown() {
        let mut facts = linux_host();
        facts.mountpoint.owner = owned(0, 0o755);
        facts.service_user = alice();
        assert_eq!(
            check(&Report::build(&facts, Backend::Auto), "mountpoint").status,
            Status::Ok
        );
        let report = mac_spfs(0, None, alice());
        let mut facts = report.facts.clone();
        facts.mountpoint.owner = None;
        assert_eq!(
            check(&Report::build(&facts, Backend::Auto), "mountpoint").status,
            Status::Ok
        );
    }

    #[test]
    fn a_mount_point_linked_to_a_missing_directory_asks_for_it_not_for_a_reboot() {
        let mut facts = mac_with_macfuse("26.1", "5.0.7", false);
        facts.mountpoint.state = MountpointState::Synthetic;
        facts.mountpoint.link = Some(PathBuf::from("Users/alice/.spfs"));
        let report = Report::build(&facts, Backend::Auto);
        let row = check(&report, "mountpoint");
        assert_eq!(row.status, Status::Warn);
        assert_eq!(
            row.message,
            "/spfs links to Users/alice/.spfs, which does not exist"
        );
        assert_eq!(row.hint.as_deref(), Some(hints::MKDIR_LINK_TARGET));
    }

    /// A Mac with only FUSE-T, whose volumes directory is as given, checked for `user`.
    fn mac_volumes(volumes: VolumesFacts, user: crate::ServiceUser) -> Report {
        let mut facts = mac_with_macfuse("15.4", "", false);
        facts.macfuse = Some(crate::facts::MacFuseFacts::default());
        facts.fuse_t = Some(crate::facts::FuseTFacts {
            installed: true,
            version: Some("1.0.49".into()),
            server: Some("/usr/local/bin/go-nfsv4".into()),
        });
        facts.volumes = volumes;
        facts.service_user = user;
        Report::build(&facts, Backend::Auto)
    }

    fn slash_volumes() -> VolumesFacts {
        VolumesFacts {
            dir: PathBuf::from("/Volumes"),
            exists: true,
            stale: Vec::new(),
            owner: owned(0, 0o1755),
            creatable_in: None,
        }
    }

    /// Regression (issue 14, defect 4): `/Volumes` is root's, mode 1755, so a per-user
    /// service failed at its first FUSE-T volume with `EACCES`; doctor said `/Volumes exists`.
    #[test]
    fn slash_volumes_fails_for_a_per_user_fuse_t_service_with_a_hint() {
        let report = mac_volumes(slash_volumes(), alice());
        assert_eq!(report.backend, Some(Backend::FuseT));
        let row = check(&report, "volumes.dir");
        assert_eq!(row.status, Status::Fail, "{}", report.to_text());
        assert_eq!(row.hint.as_deref(), Some(hints::VOLUMES_DIR_NOT_WRITABLE));
        assert_eq!(
            row.message,
            "/Volumes (uid 0, gid 0, mode 1755) does not let a service run by uid 501 create \
             volumes in it"
        );
        assert_eq!(report.exit_code(), 1);

        let report = mac_volumes(slash_volumes(), crate::ServiceUser::root());
        assert_eq!(check(&report, "volumes.dir").status, Status::Ok);
        assert_eq!(report.exit_code(), 0);
    }

    #[test]
    fn a_missing_volumes_directory_is_fine_where_the_service_can_create_it() {
        let missing = |parent_owner: u32| VolumesFacts {
            dir: PathBuf::from("/Users/alice/.spfs-fuse/volumes"),
            exists: false,
            stale: Vec::new(),
            owner: None,
            creatable_in: Some(crate::PathOwner {
                path: PathBuf::from("/Users/alice"),
                owner: owned(parent_owner, 0o750).unwrap(),
            }),
        };
        let report = mac_volumes(missing(ALICE), alice());
        let row = check(&report, "volumes.dir");
        assert_eq!(row.status, Status::Ok, "{}", report.to_text());
        assert!(
            row.message.contains("creates it in /Users/alice"),
            "{}",
            row.message
        );

        let report = mac_volumes(missing(502), alice());
        let row = check(&report, "volumes.dir");
        assert_eq!(row.status, Status::Fail, "{}", report.to_text());
        assert_eq!(row.hint.as_deref(), Some(hints::VOLUMES_DIR_NOT_WRITABLE));
    }

    /// Where FUSE-T is only the fallback, its volumes directory warns instead of failing.
    #[test]
    fn an_unwritable_volumes_directory_of_the_fallback_warns() {
        let mut facts = mac_with_macfuse("26.1", "5.0.7", false);
        facts.fuse_t = Some(crate::facts::FuseTFacts {
            installed: true,
            version: Some("1.0.49".into()),
            server: Some("/usr/local/bin/go-nfsv4".into()),
        });
        facts.mountpoint.owner = owned(ALICE, 0o755);
        facts.volumes = slash_volumes();
        facts.service_user = alice();
        let report = Report::build(&facts, Backend::Auto);
        assert_eq!(report.candidates, [Backend::Kext, Backend::FuseT]);
        assert_eq!(check(&report, "volumes.dir").status, Status::Warn);
        assert_eq!(report.exit_code(), 2);
    }

    #[test]
    fn an_unsupported_os_is_not_ready() {
        let mut facts = linux_host();
        facts.os = Os::Other;
        facts.linux_fuse = None;
        let report = Report::build(&facts, Backend::Auto);
        assert_eq!(check(&report, "host.os").status, Status::Fail);
        assert_eq!(report.exit_code(), 1);
    }
}
