//! Who may act on which runtime (DESIGN.md §7): a caller registers or removes runtimes only for
//! processes it owns, and sees only its own runtimes; root may do anything. The uids come from
//! the socket's peer credentials, read on every call.

use std::path::Path;

use spfs_router::Owner;
use spfs_router::process::ProcessTable;

use spfs_proto::status::{Layout, RuntimeStatus, ServiceStatus};

use crate::host::HostError;

/// The superuser, who may act on every runtime.
const ROOT_UID: u32 = 0;

/// Allows `caller_uid` to register a runtime rooted at `root_pid` when it owns that process.
/// A process that does not exist passes: the host refuses it with the better message.
pub(crate) fn may_register(
    processes: &dyn ProcessTable,
    caller_uid: u32,
    root_pid: u32,
) -> Result<(), HostError> {
    if caller_uid == ROOT_UID {
        return Ok(());
    }
    match processes.info(root_pid) {
        Some(info) if info.uid != caller_uid => Err(HostError::PermissionDenied(format!(
            "uid {caller_uid} may not register a runtime for process {root_pid}, which belongs to uid {}",
            info.uid
        ))),
        _ => Ok(()),
    }
}

/// Allows `caller_uid` to remove `runtime` when it registered it.
pub(crate) fn may_remove(caller_uid: u32, runtime: &RuntimeStatus) -> Result<(), HostError> {
    may_change(caller_uid, runtime, "remove")
}

/// Allows `caller_uid` to make `runtime` editable when it could remove it: the owner or root.
pub(crate) fn may_make_editable(caller_uid: u32, runtime: &RuntimeStatus) -> Result<(), HostError> {
    may_change(caller_uid, runtime, "make editable")
}

/// Allows `caller_uid` to commit `runtime` when it could remove it: the owner or root. The
/// repository is checked apart ([`may_write_repo`]).
pub(crate) fn may_commit(caller_uid: u32, runtime: &RuntimeStatus) -> Result<(), HostError> {
    may_change(caller_uid, runtime, "commit")
}

/// Allows `caller_uid` to reset `runtime` when it could remove it: the owner or root.
pub(crate) fn may_reset(caller_uid: u32, runtime: &RuntimeStatus) -> Result<(), HostError> {
    may_change(caller_uid, runtime, "reset")
}

/// Allows `owner` (the caller, checked when it is not the service's user or root) to write
/// a commit into `repo`: the service writes with its own rights, so a caller whose own could
/// not is refused, naming the directory that refuses.
pub(crate) fn may_write_repo(owner: &Owner, repo: &Path) -> Result<(), HostError> {
    owner
        .check_writable_repo(repo)
        .map_err(|err| HostError::PermissionDenied(err.to_string()))
}

/// Allows the owner of `runtime`, or root, to `action` it.
fn may_change(caller_uid: u32, runtime: &RuntimeStatus, action: &str) -> Result<(), HostError> {
    if caller_uid == ROOT_UID || caller_uid == runtime.owner_uid {
        return Ok(());
    }
    Err(HostError::PermissionDenied(format!(
        "uid {caller_uid} may not {action} the runtime of process {}, which belongs to uid {}",
        runtime.root_pid, runtime.owner_uid
    )))
}

/// Allows `caller_uid` to list what `runtime` changed when it registered it: the paths of
/// another user's work are theirs.
pub(crate) fn may_read_changes(caller_uid: u32, runtime: &RuntimeStatus) -> Result<(), HostError> {
    if may_see(caller_uid, runtime) {
        return Ok(());
    }
    Err(HostError::PermissionDenied(format!(
        "uid {caller_uid} may not list the changes of the runtime of process {}, which belongs to uid {}",
        runtime.root_pid, runtime.owner_uid
    )))
}

/// Whether `caller_uid` may see `runtime` in `Status`.
pub(crate) fn may_see(caller_uid: u32, runtime: &RuntimeStatus) -> bool {
    caller_uid == ROOT_UID || caller_uid == runtime.owner_uid
}

/// Leaves in `status` only what `caller_uid` may see: its own runtimes, and no volume of
/// another user's runtime (a volume's name carries its root pid).
pub(crate) fn filter_status(caller_uid: u32, status: &mut ServiceStatus) {
    let (visible, hidden): (Vec<_>, Vec<_>) = std::mem::take(&mut status.runtimes)
        .into_iter()
        .partition(|r| may_see(caller_uid, r));
    status.runtimes = visible;
    if status.layout == Layout::PerRuntime.name() {
        status
            .mount_points
            .retain(|path| !hidden.iter().any(|r| &r.mount_point == path));
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use spfs_router::process::FakeProcessTable;

    use super::*;

    fn runtime(root_pid: u32, owner_uid: u32) -> RuntimeStatus {
        RuntimeStatus {
            root_pid,
            env_spec: "-".into(),
            owner_uid,
            mount_point: PathBuf::from("/spfs"),
            alive: true,
            scratch: None,
        }
    }

    fn status(layout: &str, runtimes: Vec<RuntimeStatus>) -> ServiceStatus {
        ServiceStatus {
            backend: "kext".into(),
            transport: "device".into(),
            layout: layout.into(),
            mount_points: runtimes.iter().map(|r| r.mount_point.clone()).collect(),
            runtimes,
            traffic: Default::default(),
        }
    }

    #[test]
    fn a_user_sees_only_their_runtimes_and_volumes() {
        let volume = |pid: u32, uid| RuntimeStatus {
            mount_point: PathBuf::from(format!("/Volumes/spfs-{pid}")),
            ..runtime(pid, uid)
        };
        let mut per_runtime = status("per-runtime", vec![volume(40, 501), volume(41, 502)]);
        filter_status(501, &mut per_runtime);
        assert_eq!(per_runtime.runtimes, [volume(40, 501)]);
        assert_eq!(
            per_runtime.mount_points,
            [PathBuf::from("/Volumes/spfs-40")]
        );

        let mut everything = status("per-runtime", vec![volume(40, 501), volume(41, 502)]);
        filter_status(0, &mut everything);
        assert_eq!(everything.runtimes.len(), 2);
        assert_eq!(everything.mount_points.len(), 2);

        // The shared mount point is everybody's, runtimes or not.
        let mut shared = status("shared", vec![runtime(41, 502)]);
        filter_status(501, &mut shared);
        assert!(shared.runtimes.is_empty());
        assert_eq!(shared.mount_points, [PathBuf::from("/spfs")]);
    }

    #[test]
    fn only_the_owner_or_root_registers_a_process() {
        let processes = FakeProcessTable::new();
        processes.spawn(40, 1, 7, 501);
        assert!(may_register(&processes, 501, 40).is_ok());
        assert!(may_register(&processes, 0, 40).is_ok());
        let err = may_register(&processes, 502, 40).unwrap_err().to_string();
        assert!(err.contains("uid 502") && err.contains("uid 501"), "{err}");
        // Unknown processes are the host's to refuse.
        assert!(may_register(&processes, 502, 41).is_ok());
    }

    #[test]
    fn only_the_owner_or_root_removes_or_sees_a_runtime() {
        let theirs = runtime(40, 501);
        assert!(may_remove(501, &theirs).is_ok());
        assert!(may_remove(0, &theirs).is_ok());
        let err = may_remove(502, &theirs).unwrap_err().to_string();
        assert!(err.contains("uid 502") && err.contains("uid 501"), "{err}");
        assert!(may_see(501, &theirs) && may_see(0, &theirs));
        assert!(!may_see(502, &theirs));
        assert!(may_read_changes(501, &theirs).is_ok() && may_read_changes(0, &theirs).is_ok());
        let err = may_read_changes(502, &theirs).unwrap_err().to_string();
        assert!(err.contains("changes") && err.contains("uid 502"), "{err}");
    }
}
