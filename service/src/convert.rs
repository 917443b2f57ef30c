//! The one table from host errors to gRPC status codes, and the core's counters as the
//! status reports them. The wire's value types and their conversions live in
//! `spfs_proto::status`, shared with the client.

use spfs_frontends::adapter::Op;
use spfs_proto::status::{RequestStats, Traffic};
use spfs_router::{RequestCounters, Router};
use tonic::{Code, Status};

use crate::host::HostError;

/// The gRPC status for a host error: the host's text, verbatim, under one code per variant,
/// and the hint on a line of its own when there is one. No wildcard arm: a new variant has to
/// pick its code here.
pub(crate) fn host_error_to_status(err: &HostError) -> Status {
    let code = match err {
        HostError::InvalidSpec(_) | HostError::InvalidRoot(_) => Code::InvalidArgument,
        HostError::AlreadyRegistered(_) => Code::AlreadyExists,
        HostError::NoSuchRuntime(_) => Code::NotFound,
        // Not ALREADY_EXISTS: that is about the caller's own root process, and retrying with
        // another would not help. The mount point must first be freed, which is what
        // FAILED_PRECONDITION tells a client (do not retry until the state changes).
        HostError::MountPointHeld { .. } => Code::FailedPrecondition,
        HostError::PermissionDenied(_) => Code::PermissionDenied,
        // Like a held mount point: retrying helps only once the other runtime ends.
        HostError::Scratch(_) => Code::FailedPrecondition,
        // The runtime exists; only registering it editable would give it changes to list.
        HostError::NotEditable(_) | HostError::AlreadyEditable(_) => Code::FailedPrecondition,
        HostError::Refused(_) => Code::InvalidArgument,
        HostError::Mount { .. } | HostError::Write(_) | HostError::Internal(_) => Code::Internal,
    };
    let message = match err.hint() {
        Some(hint) => format!("{err}\nhint: {hint}"),
        None => err.to_string(),
    };
    Status::new(code, message)
}

/// What the mounts counting into `requests`, and the shared layout's `router`, have been
/// asked: requests by the adapter's opcode names, outsiders' root lookups by executable.
pub(crate) fn traffic(requests: &RequestCounters, router: &Router) -> Traffic {
    Traffic {
        requests: requests
            .totals()
            .into_iter()
            .map(|(kind, totals)| {
                let name = Op::of_kind(kind)
                    .map_or_else(|| format!("OPCODE_{kind}"), |op| op.name().to_owned());
                let stats = RequestStats {
                    count: totals.count,
                    mean_ns: totals.mean_nanos(),
                };
                (name, stats)
            })
            .collect(),
        outsider_root_lookups: router.outsider_root_lookups(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use spfs_frontends::MountError;

    use super::*;

    #[test]
    fn host_errors_keep_their_text_and_get_one_code_each() {
        let cases = [
            (HostError::InvalidSpec("bad".into()), Code::InvalidArgument),
            (HostError::InvalidRoot("dead".into()), Code::InvalidArgument),
            (HostError::AlreadyRegistered(7), Code::AlreadyExists),
            (HostError::NoSuchRuntime(7), Code::NotFound),
            (
                HostError::MountPointHeld {
                    mountpoint: PathBuf::from("/spfs"),
                    root_pid: 7,
                    env_spec: "/a".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                HostError::PermissionDenied("uid".into()),
                Code::PermissionDenied,
            ),
            (HostError::Internal("boom".into()), Code::Internal),
        ];
        for (err, code) in cases {
            let status = host_error_to_status(&err);
            assert_eq!(status.code(), code, "{err:?}");
            assert_eq!(status.message(), err.to_string());
        }
        assert_eq!(
            host_error_to_status(&HostError::AlreadyRegistered(42)).message(),
            "a runtime is already registered for root process 42"
        );
    }

    #[test]
    fn a_mount_failure_carries_its_hint_on_a_line_of_its_own() {
        let err = HostError::Mount {
            source: MountError::AlreadyMounted(PathBuf::from("/spfs")),
            hint: Some("stop the other service"),
        };
        let status = host_error_to_status(&err);
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(
            status.message(),
            format!("{err}\nhint: stop the other service")
        );
    }

    #[test]
    fn traffic_names_requests_by_opcode_and_outsiders_by_executable() {
        use std::sync::Arc;
        use std::time::Duration;

        use spfs_router::process::FakeProcessTable;
        use spfs_router::{Attr, ROOT, Routing, Timestamp, Vfs};

        let processes = Arc::new(FakeProcessTable::new());
        processes.spawn(30, 1, 30, 0);
        processes.name_process(30, "mds_stores");
        let router = Arc::new(Router::new(
            processes,
            Attr::root(0, 0, Timestamp::default()),
        ));
        let requests = Arc::new(RequestCounters::default());
        let vfs = Vfs::counting_into(Routing::Shared(router.clone()), requests.clone());
        vfs.lookup(30, ROOT, b"bin").unwrap_err();
        requests.record(Op::Lookup as usize, Duration::from_nanos(300));
        requests.record(Op::Lookup as usize, Duration::from_nanos(100));
        requests.record(60, Duration::from_nanos(10));

        let traffic = traffic(&requests, &router);
        assert_eq!(traffic.requests.len(), 2);
        assert_eq!(traffic.requests["LOOKUP"].count, 2);
        assert_eq!(traffic.requests["LOOKUP"].mean_ns, 200);
        assert_eq!(traffic.requests["OPCODE_60"].count, 1);
        assert_eq!(traffic.outsider_root_lookups["mds_stores"], 1);
    }
}
