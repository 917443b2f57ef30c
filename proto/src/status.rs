//! The value types the service reports and the client prints (the status of the service and of
//! each runtime, and the layouts), with their conversions to and from the wire. Both ends use
//! these, so the client never needs the service's own types.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::v1 as pb;

/// Where runtimes appear (DESIGN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One mount for every runtime; the root shows each caller its own runtime's view.
    Shared,
    /// One volume per runtime, `<volumes dir>/spfs-<root pid>`, showing that view to anyone.
    PerRuntime,
    /// One runtime at a time at the mount point, showing its view to anyone: a mount per
    /// registration, so spfs packages that embed `/spfs` run on a transport that cannot route
    /// by caller (FUSE-T). A second registration is refused while one holds the mount point.
    Single,
}

impl Layout {
    /// Every layout, in the order `--help` lists them.
    pub const ALL: [Layout; 3] = [Layout::Shared, Layout::PerRuntime, Layout::Single];

    /// The name `status`, the logs and `--layout` use.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Shared => "shared",
            Layout::PerRuntime => "per-runtime",
            Layout::Single => "single",
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A layout name that is not `shared`, `per-runtime` or `single`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLayout(pub String);

impl fmt::Display for UnknownLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown layout {:?}: expected shared, per-runtime or single",
            self.0
        )
    }
}

impl std::error::Error for UnknownLayout {}

impl FromStr for Layout {
    type Err = UnknownLayout;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::ALL
            .into_iter()
            .find(|layout| layout.name() == s)
            .ok_or_else(|| UnknownLayout(s.to_owned()))
    }
}

/// One registered runtime as the control plane reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// The root process of the runtime.
    pub root_pid: u32,
    /// The env spec it was registered with.
    pub env_spec: String,
    /// The uid that registered it.
    pub owner_uid: u32,
    /// Where the runtime's view appears.
    pub mount_point: PathBuf,
    /// Whether the root process is still running.
    pub alive: bool,
    /// The scratch of an editable runtime; `None` for a read-only one.
    pub scratch: Option<ScratchStatus>,
}

/// Where an editable runtime's changes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchStatus {
    /// The scratch directory.
    pub dir: PathBuf,
    /// Named by the user (`--scratch`): it outlives the runtime. A default one is removed
    /// with it.
    pub durable: bool,
}

/// What happened to one path of an editable runtime's view (`spfs-fuse diff`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// New: no layer below has it.
    Added,
    /// It exists below and was changed or replaced.
    Modified,
    /// It exists below and was removed.
    Removed,
}

impl ChangeKind {
    /// The one-character mark `diff` prints before the path: `+`, `~` or `-`.
    pub fn mark(self) -> char {
        match self {
            ChangeKind::Added => '+',
            ChangeKind::Modified => '~',
            ChangeKind::Removed => '-',
        }
    }

    /// The name `diff --json` uses: `added`, `modified` or `removed`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Removed => "removed",
        }
    }
}

/// One changed path of an editable runtime's view.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The path inside the view, starting with `/`.
    pub path: String,
    /// What happened to it.
    pub kind: ChangeKind,
}

impl From<Change> for pb::Change {
    fn from(change: Change) -> pb::Change {
        let kind = match change.kind {
            ChangeKind::Added => pb::ChangeKind::Added,
            ChangeKind::Modified => pb::ChangeKind::Modified,
            ChangeKind::Removed => pb::ChangeKind::Removed,
        };
        pb::Change {
            kind: kind.into(),
            path: change.path,
        }
    }
}

impl TryFrom<pb::Change> for Change {
    type Error = UnknownChangeKind;

    /// A change of a kind this client does not know (a newer service's) is refused, not
    /// guessed.
    fn try_from(change: pb::Change) -> Result<Change, UnknownChangeKind> {
        let kind = match pb::ChangeKind::try_from(change.kind) {
            Ok(pb::ChangeKind::Added) => ChangeKind::Added,
            Ok(pb::ChangeKind::Modified) => ChangeKind::Modified,
            Ok(pb::ChangeKind::Removed) => ChangeKind::Removed,
            Ok(pb::ChangeKind::Unspecified) | Err(_) => {
                return Err(UnknownChangeKind {
                    kind: change.kind,
                    path: change.path,
                });
            }
        };
        Ok(Change {
            path: change.path,
            kind,
        })
    }
}

/// A change of a kind this side does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownChangeKind {
    /// The kind's number on the wire.
    pub kind: i32,
    /// The path it is about.
    pub path: String,
}

impl fmt::Display for UnknownChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown change kind {} for {}", self.kind, self.path)
    }
}

impl std::error::Error for UnknownChangeKind {}

/// What a commit writes (`spfs-fuse commit layer|platform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommitKind {
    /// A layer of the runtime's changes.
    Layer,
    /// A platform of the runtime's layers plus the new layer.
    Platform,
}

impl CommitKind {
    /// The name the command line and the logs use: `layer` or `platform`.
    pub fn name(self) -> &'static str {
        match self {
            CommitKind::Layer => "layer",
            CommitKind::Platform => "platform",
        }
    }
}

impl fmt::Display for CommitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<CommitKind> for pb::CommitKind {
    fn from(kind: CommitKind) -> pb::CommitKind {
        match kind {
            CommitKind::Layer => pb::CommitKind::Layer,
            CommitKind::Platform => pb::CommitKind::Platform,
        }
    }
}

/// A commit kind on the wire that this side does not know (or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCommitKind(pub i32);

impl fmt::Display for UnknownCommitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown commit kind {} (expected layer or platform)",
            self.0
        )
    }
}

impl std::error::Error for UnknownCommitKind {}

impl TryFrom<i32> for CommitKind {
    type Error = UnknownCommitKind;

    /// The kind's number on the wire; an unspecified or newer kind is refused, not guessed.
    fn try_from(kind: i32) -> Result<CommitKind, UnknownCommitKind> {
        match pb::CommitKind::try_from(kind) {
            Ok(pb::CommitKind::Layer) => Ok(CommitKind::Layer),
            Ok(pb::CommitKind::Platform) => Ok(CommitKind::Platform),
            Ok(pb::CommitKind::Unspecified) | Err(_) => Err(UnknownCommitKind(kind)),
        }
    }
}

/// How far a commit has come: running totals (`spfs-fuse commit` shows them on a terminal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitProgress {
    /// Files hashed so far.
    pub files_hashed: u64,
    /// Bytes hashed so far.
    pub bytes_hashed: u64,
    /// New payloads written so far.
    pub files_written: u64,
    /// Bytes of new payloads written so far.
    pub bytes_written: u64,
    /// Files to hash in all; 0 while unknown.
    pub files_total: u64,
    /// Bytes to hash in all; 0 while unknown.
    pub bytes_total: u64,
}

impl From<CommitProgress> for pb::CommitProgress {
    fn from(p: CommitProgress) -> pb::CommitProgress {
        pb::CommitProgress {
            files_hashed: p.files_hashed,
            bytes_hashed: p.bytes_hashed,
            files_written: p.files_written,
            bytes_written: p.bytes_written,
            files_total: p.files_total,
            bytes_total: p.bytes_total,
        }
    }
}

impl From<pb::CommitProgress> for CommitProgress {
    fn from(p: pb::CommitProgress) -> CommitProgress {
        CommitProgress {
            files_hashed: p.files_hashed,
            bytes_hashed: p.bytes_hashed,
            files_written: p.files_written,
            bytes_written: p.bytes_written,
            files_total: p.files_total,
            bytes_total: p.bytes_total,
        }
    }
}

/// What `Status` reports about the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// `kext` or `fuse-t`.
    pub backend: String,
    /// `device` or `nfs`.
    pub transport: String,
    /// `shared`, `per-runtime` or `single`.
    pub layout: String,
    /// Every mount point the service serves.
    pub mount_points: Vec<PathBuf>,
    /// Every registered runtime, by root pid.
    pub runtimes: Vec<RuntimeStatus>,
    /// What the mounts have been asked since the start.
    pub traffic: Traffic,
}

/// What the service's mounts have been asked since it started: a Mac's users measure its
/// kernel with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Requests served, summed over the mounts, by the kernel's opcode name (`LOOKUP`).
    pub requests: BTreeMap<String, RequestStats>,
    /// Root lookups by processes outside every runtime, by executable name (`other` past the
    /// cap).
    pub outsider_root_lookups: BTreeMap<String, u64>,
}

/// The requests of one opcode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// How many were served.
    pub count: u64,
    /// Their mean service time in nanoseconds (over a sample: one in 16).
    pub mean_ns: u64,
}

impl From<RuntimeStatus> for pb::Runtime {
    fn from(runtime: RuntimeStatus) -> pb::Runtime {
        pb::Runtime {
            root_pid: runtime.root_pid,
            env_spec: runtime.env_spec,
            owner_uid: runtime.owner_uid,
            mount_point: runtime.mount_point.to_string_lossy().into_owned(),
            alive: runtime.alive,
            editable: runtime.scratch.is_some(),
            scratch: runtime
                .scratch
                .as_ref()
                .map(|s| s.dir.to_string_lossy().into_owned())
                .unwrap_or_default(),
            durable: runtime.scratch.as_ref().is_some_and(|s| s.durable),
        }
    }
}

impl From<pb::Runtime> for RuntimeStatus {
    fn from(runtime: pb::Runtime) -> RuntimeStatus {
        RuntimeStatus {
            root_pid: runtime.root_pid,
            env_spec: runtime.env_spec,
            owner_uid: runtime.owner_uid,
            mount_point: PathBuf::from(runtime.mount_point),
            alive: runtime.alive,
            scratch: runtime.editable.then(|| ScratchStatus {
                dir: PathBuf::from(runtime.scratch),
                durable: runtime.durable,
            }),
        }
    }
}

impl From<RuntimeStatus> for pb::MountResponse {
    /// Mount's reply for a runtime the service just registered.
    fn from(runtime: RuntimeStatus) -> pb::MountResponse {
        pb::MountResponse {
            mount_point: runtime.mount_point.to_string_lossy().into_owned(),
            runtime: Some(runtime.into()),
        }
    }
}

impl pb::MountResponse {
    /// Where the runtime's view appears.
    pub fn mount_point(&self) -> PathBuf {
        PathBuf::from(&self.mount_point)
    }
}

impl From<RequestStats> for pb::RequestStats {
    fn from(stats: RequestStats) -> pb::RequestStats {
        pb::RequestStats {
            count: stats.count,
            mean_ns: stats.mean_ns,
        }
    }
}

impl From<pb::RequestStats> for RequestStats {
    fn from(stats: pb::RequestStats) -> RequestStats {
        RequestStats {
            count: stats.count,
            mean_ns: stats.mean_ns,
        }
    }
}

impl From<ServiceStatus> for pb::StatusResponse {
    fn from(status: ServiceStatus) -> pb::StatusResponse {
        pb::StatusResponse {
            backend: status.backend,
            transport: status.transport,
            layout: status.layout,
            mount_points: status
                .mount_points
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
            runtimes: status.runtimes.into_iter().map(Into::into).collect(),
            requests: status
                .traffic
                .requests
                .into_iter()
                .map(|(opcode, stats)| (opcode, stats.into()))
                .collect(),
            outsider_root_lookups: status.traffic.outsider_root_lookups.into_iter().collect(),
        }
    }
}

impl From<pb::StatusResponse> for ServiceStatus {
    fn from(status: pb::StatusResponse) -> ServiceStatus {
        ServiceStatus {
            backend: status.backend,
            transport: status.transport,
            layout: status.layout,
            mount_points: status.mount_points.into_iter().map(PathBuf::from).collect(),
            runtimes: status.runtimes.into_iter().map(Into::into).collect(),
            traffic: Traffic {
                requests: status
                    .requests
                    .into_iter()
                    .map(|(opcode, stats)| (opcode, stats.into()))
                    .collect(),
                outsider_root_lookups: status.outsider_root_lookups.into_iter().collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_through_the_wire() {
        let runtime = RuntimeStatus {
            root_pid: 12,
            env_spec: "/a+/b".into(),
            owner_uid: 501,
            mount_point: "/spfs".into(),
            alive: true,
            scratch: None,
        };
        let editable = RuntimeStatus {
            root_pid: 13,
            scratch: Some(ScratchStatus {
                dir: "/keep/scratch".into(),
                durable: true,
            }),
            ..runtime.clone()
        };
        let status = ServiceStatus {
            backend: "kext".into(),
            transport: "device".into(),
            layout: "shared".into(),
            mount_points: vec!["/spfs".into()],
            runtimes: vec![runtime.clone(), editable],
            traffic: Traffic {
                requests: BTreeMap::from([(
                    "LOOKUP".to_owned(),
                    RequestStats {
                        count: 4,
                        mean_ns: 250,
                    },
                )]),
                outsider_root_lookups: BTreeMap::from([("mds".to_owned(), 3)]),
            },
        };
        let back = ServiceStatus::from(pb::StatusResponse::from(status.clone()));
        assert_eq!(back, status);
        assert_eq!(
            pb::MountResponse::from(runtime).mount_point(),
            PathBuf::from("/spfs")
        );
    }

    #[test]
    fn changes_round_trip_and_an_unknown_kind_is_refused() {
        for kind in [ChangeKind::Added, ChangeKind::Modified, ChangeKind::Removed] {
            let change = Change {
                path: "/a/b".into(),
                kind,
            };
            assert_eq!(
                Change::try_from(pb::Change::from(change.clone())),
                Ok(change)
            );
        }
        let unknown = pb::Change {
            kind: 9,
            path: "/x".into(),
        };
        let err = Change::try_from(unknown).unwrap_err();
        assert!(err.to_string().contains("9") && err.to_string().contains("/x"));
    }

    #[test]
    fn an_older_service_reports_no_traffic() {
        let old = pb::StatusResponse {
            backend: "kext".into(),
            ..Default::default()
        };
        assert_eq!(ServiceStatus::from(old).traffic, Traffic::default());
    }

    #[test]
    fn layout_names_round_trip() {
        for layout in Layout::ALL {
            assert_eq!(layout.name().parse::<Layout>(), Ok(layout));
        }
        assert_eq!("single".parse::<Layout>(), Ok(Layout::Single));
        assert!("one".parse::<Layout>().is_err());
    }
}
