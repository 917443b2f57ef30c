//! Conversions between the wire types of `spfs.fuse.v1` and the host's types, both ways, and
//! the one table from host errors to gRPC status codes (and back to a message on the client).
//! Nothing else in the crate builds a wire message field by field.

use std::path::PathBuf;

use spfs_proto::v1 as pb;
use tonic::{Code, Status};

use crate::host::{HostError, HostStatus, RuntimeStatus};

/// A runtime as the wire carries it.
pub(crate) fn runtime_to_wire(runtime: RuntimeStatus) -> pb::Runtime {
    pb::Runtime {
        root_pid: runtime.root_pid,
        env_spec: runtime.env_spec,
        owner_uid: runtime.owner_uid,
        mount_point: runtime.mount_point.to_string_lossy().into_owned(),
        alive: runtime.alive,
    }
}

/// A runtime from the wire.
pub(crate) fn runtime_from_wire(runtime: pb::Runtime) -> RuntimeStatus {
    RuntimeStatus {
        root_pid: runtime.root_pid,
        env_spec: runtime.env_spec,
        owner_uid: runtime.owner_uid,
        mount_point: PathBuf::from(runtime.mount_point),
        alive: runtime.alive,
    }
}

/// Mount's reply for a runtime the host just registered.
pub(crate) fn mount_response(runtime: RuntimeStatus) -> pb::MountResponse {
    pb::MountResponse {
        mount_point: runtime.mount_point.to_string_lossy().into_owned(),
        runtime: Some(runtime_to_wire(runtime)),
    }
}

/// Where the runtime's view appears, from Mount's reply.
pub(crate) fn mount_point_from_wire(response: pb::MountResponse) -> PathBuf {
    PathBuf::from(response.mount_point)
}

/// Status's reply for what the host reports.
pub(crate) fn status_to_wire(status: HostStatus) -> pb::StatusResponse {
    pb::StatusResponse {
        backend: status.backend,
        transport: status.transport,
        layout: status.layout,
        mount_points: status
            .mount_points
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        runtimes: status.runtimes.into_iter().map(runtime_to_wire).collect(),
    }
}

/// What the host reported, from Status's reply.
pub(crate) fn status_from_wire(status: pb::StatusResponse) -> HostStatus {
    HostStatus {
        backend: status.backend,
        transport: status.transport,
        layout: status.layout,
        mount_points: status.mount_points.into_iter().map(PathBuf::from).collect(),
        runtimes: status.runtimes.into_iter().map(runtime_from_wire).collect(),
    }
}

/// The gRPC status for a host error: the host's text, verbatim, under one code per variant.
/// No wildcard arm: a new variant has to pick its code here.
pub(crate) fn host_error_to_status(err: &HostError) -> Status {
    let code = match err {
        HostError::InvalidSpec(_) | HostError::InvalidRoot(_) => Code::InvalidArgument,
        HostError::AlreadyRegistered(_) => Code::AlreadyExists,
        HostError::NoSuchRuntime(_) => Code::NotFound,
        HostError::PermissionDenied(_) => Code::PermissionDenied,
        HostError::Internal(_) => Code::Internal,
    };
    Status::new(code, err.to_string())
}

/// An error status the service answered with, as the client reports it: a short word for the
/// kind, then the service's own message, verbatim.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", kind(*code))]
pub(crate) struct Refusal {
    /// The gRPC code.
    pub(crate) code: Code,
    /// The service's message.
    pub(crate) message: String,
}

impl From<Status> for Refusal {
    fn from(status: Status) -> Self {
        let message = if status.message().is_empty() {
            status.code().description().to_owned()
        } else {
            status.message().to_owned()
        };
        Refusal {
            code: status.code(),
            message,
        }
    }
}

/// The word the client puts before the service's message, by code (the reverse of
/// [`host_error_to_status`], plus what the transport itself can answer).
fn kind(code: Code) -> &'static str {
    match code {
        Code::InvalidArgument => "invalid argument",
        Code::AlreadyExists => "already exists",
        Code::NotFound => "not found",
        Code::PermissionDenied => "permission denied",
        Code::Internal => "service error",
        Code::Unavailable => "service unavailable",
        Code::DeadlineExceeded => "timed out",
        Code::Cancelled => "cancelled",
        Code::ResourceExhausted => "too large",
        Code::Unimplemented => "not supported by this service",
        Code::Unauthenticated
        | Code::Ok
        | Code::Unknown
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_errors_keep_their_text_and_get_one_code_each() {
        let cases = [
            (HostError::InvalidSpec("bad".into()), Code::InvalidArgument),
            (HostError::InvalidRoot("dead".into()), Code::InvalidArgument),
            (HostError::AlreadyRegistered(7), Code::AlreadyExists),
            (HostError::NoSuchRuntime(7), Code::NotFound),
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
            let refusal = Refusal::from(status);
            assert!(refusal.to_string().ends_with(&err.to_string()), "{refusal}");
        }
        let refusal = Refusal::from(host_error_to_status(&HostError::AlreadyRegistered(42)));
        assert_eq!(
            refusal.to_string(),
            "already exists: a runtime is already registered for root process 42"
        );
    }

    #[test]
    fn status_round_trips_through_the_wire() {
        let runtime = RuntimeStatus {
            root_pid: 12,
            env_spec: "/a+/b".into(),
            owner_uid: 501,
            mount_point: "/spfs".into(),
            alive: true,
        };
        let status = HostStatus {
            backend: "kext".into(),
            transport: "device".into(),
            layout: "shared".into(),
            mount_points: vec!["/spfs".into()],
            runtimes: vec![runtime.clone()],
        };
        let back = status_from_wire(status_to_wire(status.clone()));
        assert_eq!(back.backend, status.backend);
        assert_eq!(back.transport, status.transport);
        assert_eq!(back.layout, status.layout);
        assert_eq!(back.mount_points, status.mount_points);
        assert_eq!(back.runtimes, status.runtimes);
        assert_eq!(
            mount_point_from_wire(mount_response(runtime)),
            PathBuf::from("/spfs")
        );
    }
}
