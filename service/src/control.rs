//! The `spfs.fuse.v1.Vfs` gRPC service: every call finds out who is calling, runs the host call
//! on a blocking thread, and turns the result into a reply (errors through `convert`).

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spfs_proto::status::{CommitKind, CommitProgress};
use spfs_proto::v1 as pb;
use spfs_proto::v1::vfs_server::Vfs;
use spfs_router::Owner;
use tokio::sync::Notify;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use spfs_router::process::{ExitWatcher, ProcessTable, SystemProcessTable};

use crate::commit::{CommitJob, tag_user};
use crate::host::{Edit, Host, HostError};
use crate::{auth, convert};

/// How often a commit's progress goes to the client at most: a terminal line redrawn ten
/// times a second reads as smooth, and the writer's threads are not slowed by the channel.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The events of one commit, as the client reads them.
type CommitEvents =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::CommitEvent, Status>> + Send>>;

/// How callers are identified.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Identity {
    /// From the Unix socket's peer credentials.
    PeerCredentials,
    /// Over TCP (`--insecure-tcp`): there are none; every caller counts as the service's user.
    ServiceUser,
}

/// Who made a call.
#[derive(Debug, Clone, Copy)]
struct Caller {
    uid: u32,
    gid: u32,
    pid: Option<i32>,
}

/// The service: the host, how to identify callers, and how to ask the server to stop.
#[derive(Debug)]
pub(crate) struct VfsService {
    host: Arc<Host>,
    identity: Identity,
    stop: Arc<Notify>,
    service_uid: u32,
    processes: Arc<dyn ProcessTable>,
    watcher: Arc<ExitWatcher>,
}

impl VfsService {
    /// A service over `host`; `stop` is notified when a caller asks the service to shut down,
    /// and `watcher` learns of every root registered and removed.
    pub(crate) fn new(
        host: Arc<Host>,
        identity: Identity,
        stop: Arc<Notify>,
        watcher: Arc<ExitWatcher>,
    ) -> Self {
        VfsService {
            host,
            identity,
            stop,
            service_uid: nix::unistd::geteuid().as_raw(),
            processes: Arc::new(SystemProcessTable::new()),
            watcher,
        }
    }

    /// The caller of `request`, from the peer credentials of its connection.
    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        match self.identity {
            Identity::ServiceUser => Ok(Caller {
                uid: self.service_uid,
                gid: nix::unistd::getegid().as_raw(),
                pid: None,
            }),
            Identity::PeerCredentials => {
                let cred = request
                    .extensions()
                    .get::<UdsConnectInfo>()
                    .and_then(|info| info.peer_cred)
                    .ok_or_else(|| {
                        Status::permission_denied("cannot read the caller's socket credentials")
                    })?;
                Ok(Caller {
                    uid: cred.uid(),
                    gid: cred.gid(),
                    pid: cred.pid(),
                })
            }
        }
    }

    /// Runs a blocking host call off the async threads.
    async fn on_host<T, F>(&self, call: F) -> Result<T, HostError>
    where
        F: FnOnce(&Host) -> Result<T, HostError> + Send + 'static,
        T: Send + 'static,
    {
        let host = Arc::clone(&self.host);
        tokio::task::spawn_blocking(move || call(&host))
            .await
            .unwrap_or_else(|err| Err(HostError::Internal(format!("the host call failed: {err}"))))
    }
}

/// Logs a refused call (at info: refusals are expected answers, not service faults) and turns
/// the error into its status.
fn refuse(err: &HostError) -> Status {
    let status = convert::host_error_to_status(err);
    match err {
        HostError::Mount { .. } | HostError::Internal(_) => {
            tracing::error!(code = ?status.code(), error = %err, "failed")
        }
        _ => tracing::info!(code = ?status.code(), error = %err, "refused"),
    }
    status
}

/// The job a Commit request asks for, by `caller`; refused when malformed.
fn commit_job(
    request: pb::CommitRequest,
    caller: Caller,
    service_uid: u32,
) -> Result<(u32, CommitJob), HostError> {
    let pb::CommitRequest {
        root_pid,
        kind,
        repo,
        tag,
        encoding_format,
        digest_strategy,
        user,
    } = request;
    let kind = CommitKind::try_from(kind).map_err(|err| HostError::Refused(err.to_string()))?;
    let repo = PathBuf::from(repo);
    if !repo.is_absolute() {
        return Err(HostError::Refused(format!(
            "the repository {} is not an absolute path",
            repo.display()
        )));
    }
    // The service's own user needs no change of owner: the files are its own already.
    let owner = (caller.uid, caller.gid);
    Ok((
        root_pid,
        CommitJob {
            kind,
            repo,
            tag: (!tag.is_empty()).then_some(tag),
            encoding_format,
            digest_strategy,
            user,
            owner: (caller.uid != service_uid).then_some(owner),
        },
    ))
}

#[tonic::async_trait]
impl Vfs for VfsService {
    type CommitStream = CommitEvents;

    async fn commit(
        &self,
        request: Request<pb::CommitRequest>,
    ) -> Result<Response<CommitEvents>, Status> {
        let caller = self.caller(&request)?;
        let (root_pid, job) = commit_job(request.into_inner(), caller, self.service_uid)
            .map_err(|err| refuse(&err))?;
        let span = tracing::info_span!("commit", caller_uid = caller.uid, caller_pid = ?caller.pid, root_pid, kind = %job.kind);
        let service_uid = self.service_uid;
        // Checked before the stream starts, so a refusal is the call's own status.
        let checking = job.repo.clone();
        self.on_host(move |host| {
            let runtime = host
                .runtime(root_pid)
                .ok_or(HostError::NoSuchRuntime(root_pid))?;
            auth::may_commit(caller.uid, &runtime)?;
            let owner = Owner::for_caller(caller.uid, caller.gid, service_uid);
            auth::may_write_repo(&owner, &checking)
        })
        .instrument(span.clone())
        .await
        .map_err(|err| refuse(&err))?;

        let (events, received) = tokio::sync::mpsc::channel(16);
        let host = Arc::clone(&self.host);
        let committing = async move {
            let progress_events = events.clone();
            let last = Mutex::new(None::<Instant>);
            let result = tokio::task::spawn_blocking(move || {
                let mut job = job;
                if job.user.is_empty() {
                    // Reads the user database: off the async threads.
                    job.user = tag_user(|_| None, caller.uid);
                }
                let progress = |totals: CommitProgress| {
                    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                    if last.is_some_and(|at| at.elapsed() < PROGRESS_EVERY) {
                        return;
                    }
                    *last = Some(Instant::now());
                    // A full channel or a client gone drops this event: the commit goes on,
                    // and the next event carries the newer totals.
                    let _ = progress_events.try_send(Ok(pb::CommitEvent {
                        event: Some(pb::commit_event::Event::Progress(totals.into())),
                    }));
                };
                host.commit(root_pid, &job, &progress)
            })
            .await
            .unwrap_or_else(|err| Err(HostError::Internal(format!("the commit failed: {err}"))));
            let event = match result {
                Ok(committed) => Ok(pb::CommitEvent {
                    event: Some(pb::commit_event::Event::Result(pb::CommitResult {
                        digest: committed.digest.to_string(),
                        kind: pb::CommitKind::from(committed.kind).into(),
                        tag: committed.tag.unwrap_or_default(),
                        runtime: Some(committed.runtime.into()),
                    })),
                }),
                Err(err) => Err(refuse(&err)),
            };
            // The client may be gone; the commit stands either way.
            let _ = events.send(event).await;
        };
        // A commit runs to its end even when the client goes away: nothing is left half-done.
        tokio::spawn(committing.instrument(span));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(received),
        )))
    }

    async fn reset(
        &self,
        request: Request<pb::ResetRequest>,
    ) -> Result<Response<pb::ResetResponse>, Status> {
        let caller = self.caller(&request)?;
        let pb::ResetRequest { root_pid, paths } = request.into_inner();
        let span = tracing::info_span!("reset", caller_uid = caller.uid, caller_pid = ?caller.pid, root_pid);
        async move {
            let paths: Vec<PathBuf> = paths.into_iter().map(PathBuf::from).collect();
            self.on_host(move |host| {
                let runtime = host
                    .runtime(root_pid)
                    .ok_or(HostError::NoSuchRuntime(root_pid))?;
                auth::may_reset(caller.uid, &runtime)?;
                host.reset(root_pid, &paths)
            })
            .await
            .map_err(|err| refuse(&err))?;
            Ok(Response::new(pb::ResetResponse {}))
        }
        .instrument(span)
        .await
    }

    async fn mount(
        &self,
        request: Request<pb::MountRequest>,
    ) -> Result<Response<pb::MountResponse>, Status> {
        let caller = self.caller(&request)?;
        let pb::MountRequest {
            root_pid,
            env_spec,
            repos,
            editable,
            scratch,
        } = request.into_inner();
        let edit = match (editable, scratch.is_empty()) {
            (_, false) => Edit::Scratch(scratch.into()),
            (true, true) => Edit::DefaultScratch,
            (false, true) => Edit::ReadOnly,
        };
        let span = tracing::info_span!("mount", caller_uid = caller.uid, caller_pid = ?caller.pid, root_pid);
        async move {
            auth::may_register(self.processes.as_ref(), caller.uid, root_pid)
                .map_err(|err| refuse(&err))?;
            let spec = env_spec.clone();
            let repos: Vec<std::path::PathBuf> = repos.into_iter().map(Into::into).collect();
            let service_uid = self.service_uid;
            let watcher = Arc::clone(&self.watcher);
            match self
                .on_host(move |host| {
                    // Looking the caller's groups up reads the user database: off the async
                    // threads, like the registration itself.
                    let owner = Owner::for_caller(caller.uid, caller.gid, service_uid);
                    let runtime = host.mount(root_pid, &spec, &owner, &repos, &edit)?;
                    if let Err(err) = watcher.watch(root_pid) {
                        // Gone already (or unwatchable): remove it now rather than at the
                        // next sweep.
                        tracing::warn!(root_pid, error = %err, "cannot watch the root process");
                        host.remove_dead();
                    }
                    Ok(runtime)
                })
                .await
            {
                Ok(runtime) => {
                    tracing::info!(env_spec, mount_point = %runtime.mount_point.display(), "registered");
                    Ok(Response::new(runtime.into()))
                }
                Err(err) => Err(refuse(&err)),
            }
        }
        .instrument(span)
        .await
    }

    async fn unmount(
        &self,
        request: Request<pb::UnmountRequest>,
    ) -> Result<Response<pb::UnmountResponse>, Status> {
        let caller = self.caller(&request)?;
        let pb::UnmountRequest { root_pid } = request.into_inner();
        let span = tracing::info_span!("unmount", caller_uid = caller.uid, caller_pid = ?caller.pid, root_pid);
        let watcher = Arc::clone(&self.watcher);
        async move {
            let removed = self
                .on_host(move |host| {
                    if let Some(runtime) = host.runtime(root_pid) {
                        auth::may_remove(caller.uid, &runtime)?;
                    }
                    host.unmount(root_pid)?;
                    watcher.unwatch(root_pid);
                    Ok(())
                })
                .await;
            match removed {
                Ok(()) => {
                    tracing::info!("removed");
                    Ok(Response::new(pb::UnmountResponse {}))
                }
                Err(err) => Err(refuse(&err)),
            }
        }
        .instrument(span)
        .await
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let caller = self.caller(&request)?;
        let span =
            tracing::debug_span!("status", caller_uid = caller.uid, caller_pid = ?caller.pid);
        async move {
            let mut status = self
                .on_host(|host| Ok(host.status()))
                .await
                .map_err(|err| refuse(&err))?;
            auth::filter_status(caller.uid, &mut status);
            Ok(Response::new(status.into()))
        }
        .instrument(span)
        .await
    }

    async fn edit(
        &self,
        request: Request<pb::EditRequest>,
    ) -> Result<Response<pb::EditResponse>, Status> {
        let caller = self.caller(&request)?;
        let pb::EditRequest { root_pid, scratch } = request.into_inner();
        let edit = if scratch.is_empty() {
            Edit::DefaultScratch
        } else {
            Edit::Scratch(scratch.into())
        };
        let span = tracing::info_span!("edit", caller_uid = caller.uid, caller_pid = ?caller.pid, root_pid);
        async move {
            let runtime = self
                .on_host(move |host| {
                    let runtime = host
                        .runtime(root_pid)
                        .ok_or(HostError::NoSuchRuntime(root_pid))?;
                    auth::may_make_editable(caller.uid, &runtime)?;
                    host.make_editable(root_pid, &edit)
                })
                .await
                .map_err(|err| refuse(&err))?;
            Ok(Response::new(pb::EditResponse {
                runtime: Some(runtime.into()),
            }))
        }
        .instrument(span)
        .await
    }

    async fn diff(
        &self,
        request: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        let caller = self.caller(&request)?;
        let pb::DiffRequest { root_pid } = request.into_inner();
        let span = tracing::debug_span!("diff", caller_uid = caller.uid, caller_pid = ?caller.pid, root_pid);
        async move {
            let changes = self
                .on_host(move |host| {
                    if let Some(runtime) = host.runtime(root_pid) {
                        auth::may_read_changes(caller.uid, &runtime)?;
                    }
                    host.diff(root_pid)
                })
                .await
                .map_err(|err| refuse(&err))?;
            tracing::debug!(changes = changes.len(), "listed the changes");
            Ok(Response::new(pb::DiffResponse {
                changes: changes.into_iter().map(Into::into).collect(),
            }))
        }
        .instrument(span)
        .await
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        let caller = self.caller(&request)?;
        let _span =
            tracing::info_span!("shutdown", caller_uid = caller.uid, caller_pid = ?caller.pid)
                .entered();
        if caller.uid != self.service_uid && caller.uid != 0 {
            return Err(refuse(&HostError::PermissionDenied(format!(
                "uid {} may not stop a service run by uid {}",
                caller.uid, self.service_uid
            ))));
        }
        tracing::info!("asked to shut down");
        self.stop.notify_one();
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}
