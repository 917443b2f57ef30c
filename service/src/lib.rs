//! The spfs-fuse service: the long-running process that owns the mount and serves gRPC. The
//! `spfs-fuse service` command turns its arguments into a [`ServiceConfig`] and calls [`run`].
//!
//! Start-up order matters. The socket is claimed first (lock, stale-file cleanup, bind with mode
//! 0600, or 0666 for the system socket) while the process has one thread; then the host starts
//! (it mounts); only then does the socket listen. So a client that can connect talks to a service that is ready, and a client
//! that cannot gets "connection refused" and may start a service itself.
//!
//! The backend comes from the probe (the same code as `doctor`): with `--backend auto` the host
//! is started with each usable backend in turn until one mounts, logging the hint of every
//! failure; an explicit backend that fails to mount stops the service with its hint.

mod auth;
pub mod commit;
mod control;
mod convert;
pub mod hints;
pub mod host;
mod reaper;
pub mod scratches;
mod socket;
pub mod state;
mod write;

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use spfs_frontends::Transport;
use spfs_probe::Backend;
use spfs_proto::status::Layout;
use spfs_proto::v1::vfs_server::VfsServer;
use spfs_router::process::SystemProcessTable;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tonic::transport::Server;
use tonic::transport::server::Connected;

use control::{Identity, VfsService};
pub use hints::mount_hint;
pub use host::{
    Edit, Host, HostConfig, HostError, Mount, Mounter, SessionMounter, root_attr, volume_root_attr,
};
pub use socket::ClaimError;
pub use state::StateFile;

/// How long the server waits for clients to finish their calls once it is stopping.
const DRAIN: Duration = Duration::from_secs(5);

/// Where the service serves the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// The Unix socket at this absolute path, mode 0600: the service's user alone connects;
    /// callers are identified by their credentials.
    Unix(PathBuf),
    /// The system service's Unix socket at this absolute path, mode 0666 in a directory only
    /// the service's user (root) may write: every user connects, and the peer credentials
    /// decide what each may do.
    System(PathBuf),
    /// TCP on this address, where callers cannot be identified: every caller counts as the
    /// service's own user.
    InsecureTcp(SocketAddr),
}

/// How to run the service: what `spfs-fuse service` was asked for, with paths made absolute.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The backend asked for (`auto` tries each usable one).
    pub backend: Backend,
    /// The layout asked for; `None` is the backend's own (shared for kext, per-runtime for
    /// fuse-t).
    pub layout: Option<Layout>,
    /// The mount point of the shared and single layouts (absolute).
    pub mountpoint: PathBuf,
    /// Where per-runtime volumes go (absolute).
    pub volumes_dir: PathBuf,
    /// Where to serve the control plane.
    pub endpoint: Endpoint,
    /// Threads serving FUSE requests, per session.
    pub threads: usize,
    /// Serve through FUSE over io_uring where the kernel offers it (Linux only).
    pub io_uring: bool,
    /// Where the runtimes are kept across restarts (beside the socket); `None` keeps nothing.
    pub state: Option<StateFile>,
    /// The service's state directory (its socket's, or the private one over TCP): default
    /// scratches of editable runtimes go under it.
    pub state_dir: PathBuf,
}

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A path the service needs is not UTF-8.
    #[error("{} is not valid UTF-8", .0.display())]
    NotUtf8(PathBuf),
    /// FUSE-T was asked for with the shared layout.
    #[error(
        "the fuse-t backend cannot serve the shared layout (NFS requests carry no caller pid \
         to route by); use --layout per-runtime, or --layout single for one runtime at a time \
         at the mount point, or --backend kext"
    )]
    FuseTIsPerRuntime,
    /// Only FUSE-T is usable, and the shared layout rules it out.
    #[error(
        "no usable backend serves the shared layout ({selection}); drop --layout shared to \
         serve a volume per runtime"
    )]
    NoSharedBackend {
        /// The probe's selection, as one line.
        selection: String,
    },
    /// The control socket could not be claimed.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// No backend could be started; the last attempt's failure.
    #[error("cannot start serving {} with the {backend} backend: {source}", .place.display())]
    Start {
        /// The mount point, or the volumes directory.
        place: PathBuf,
        /// The backend tried last.
        backend: Backend,
        /// Why it failed.
        source: HostError,
        /// The one sentence that fixes it, when the failure is a known one.
        hint: Option<&'static str>,
    },
    /// A system resource the service needs (a signal handler, the async runtime, the TCP
    /// listener) could not be set up.
    #[error("cannot {action}: {source}")]
    Setup {
        /// What was being done.
        action: String,
        /// What the system said.
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
}

impl ServiceError {
    /// The hint that fixes the failure, when it is a known one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ServiceError::Start { hint, .. } => *hint,
            _ => None,
        }
    }
}

/// An [`io::Error`] while doing `action`, as a [`ServiceError`].
fn setup(action: impl Into<String>) -> impl FnOnce(io::Error) -> ServiceError {
    let action = action.into();
    move |source| ServiceError::Setup { action, source }
}

/// Sets up `tracing` logs on stderr: `RUST_LOG` decides what is shown (default `info`).
/// Colours only on a terminal: an auto-started service logs to a file, where escape codes are
/// noise. Calling it twice is harmless.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Err only if a subscriber is already set, which is what we want then.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// Where the service listens.
enum Listener {
    /// The Unix socket, claimed (bound, locked) but not listening yet.
    Unix(socket::ClaimedSocket),
    /// TCP, already listening.
    Tcp(std::net::TcpListener),
}

/// Probes the host and chooses backends, through the same code as `doctor`, and logs the facts,
/// the choice and why any backend was rejected.
fn probe_backends(
    requested: Backend,
    mountpoint: &Path,
    volumes_dir: &Path,
) -> spfs_probe::Selection {
    let config = spfs_probe::ProbeConfig {
        mountpoint: mountpoint.to_path_buf(),
        volumes_dir: Some(volumes_dir.to_path_buf()),
        stale_mount: Some(spfs_frontends::is_stale_mount),
        ..Default::default()
    };
    let facts = spfs_probe::Facts::collect(&config);
    let selection = spfs_probe::select(&facts, requested);
    tracing::info!(%facts, %selection, "probed the host");
    for rejected in &selection.rejected {
        tracing::warn!(backend = %rejected.backend, reason = %rejected.reason, hint = rejected.hint, "backend not usable");
    }
    selection
}

/// One way to start the host: a concrete backend and the layout it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attempt {
    backend: Backend,
    layout: Layout,
}

/// The backends to try, in order. An explicit backend is tried even when the probe rejects it
/// (a mount is the only sure test, and its failure carries the hint); `auto` tries the usable
/// candidates, or, when the probe finds none, every backend it considered, so a probe that is
/// wrong never blocks a mount that would work. FUSE-T cannot route by caller, so it serves the
/// per-runtime and single layouts only: with `--layout shared` it is skipped (or, asked for,
/// refused). Every backend serves the single layout.
fn attempts(
    selection: &spfs_probe::Selection,
    layout: Option<Layout>,
) -> Result<Vec<Attempt>, ServiceError> {
    let backends: Vec<Backend> = if selection.requested != Backend::Auto {
        vec![selection.requested]
    } else if selection.candidates.is_empty() {
        selection.rejected.iter().map(|r| r.backend).collect()
    } else {
        selection.candidates.clone()
    };
    if selection.requested == Backend::FuseT && layout == Some(Layout::Shared) {
        return Err(ServiceError::FuseTIsPerRuntime);
    }
    let attempts: Vec<Attempt> = backends
        .into_iter()
        .filter(|&backend| !(backend == Backend::FuseT && layout == Some(Layout::Shared)))
        .map(|backend| Attempt {
            backend,
            layout: layout.unwrap_or(match backend {
                Backend::FuseT => Layout::PerRuntime,
                Backend::Kext | Backend::Auto => Layout::Shared,
            }),
        })
        .collect();
    if attempts.is_empty() {
        // Only FUSE-T is left, and the shared layout ruled it out.
        return Err(ServiceError::NoSharedBackend {
            selection: selection.to_string(),
        });
    }
    Ok(attempts)
}

/// Whether a service on `endpoint` serves users other than its own (`as_root`: it runs as
/// root), which its mounts must then let in (macFUSE's `allow_other`, see
/// `KernelPolicy::serving_other_users`). The system service and any service run as root serve
/// every user; a per-user service (its own socket, or TCP, where every caller counts as its
/// user) serves its own user only, so it asks for nothing a user outside the admin group is
/// refused.
pub fn serves_other_users(endpoint: &Endpoint, as_root: bool) -> bool {
    as_root || matches!(endpoint, Endpoint::System(_))
}

/// The transport a backend delivers requests over: the one place a probe fact meets a session.
pub fn transport(backend: Backend) -> Transport {
    match backend {
        Backend::FuseT => Transport::Nfs,
        Backend::Kext | Backend::Auto => Transport::Device,
    }
}

/// Starts the host with each attempt in turn until one mounts. A failure names the mount
/// point and carries the hint that fixes it: the mount error's own, else the probe's reason
/// for rejecting that backend.
async fn start_host(
    attempts: Vec<Attempt>,
    selection: &spfs_probe::Selection,
    config: &ServiceConfig,
) -> Result<Host, ServiceError> {
    let mut attempts = attempts.into_iter().peekable();
    while let Some(attempt) = attempts.next() {
        let host_config = HostConfig {
            backend: attempt.backend,
            layout: attempt.layout,
            transport: transport(attempt.backend),
            mountpoint: config.mountpoint.clone(),
            volumes_dir: config.volumes_dir.clone(),
            state: config.state.clone(),
            state_dir: config.state_dir.clone(),
        };
        let mounter = SessionMounter {
            transport: transport(attempt.backend),
            threads: config.threads,
            io_uring: config.io_uring,
            nfs_server: selection.nfs_server.clone(),
            other_users: serves_other_users(&config.endpoint, nix::unistd::geteuid().is_root()),
        };
        let place = match attempt.layout {
            Layout::Shared | Layout::Single => config.mountpoint.clone(),
            Layout::PerRuntime => config.volumes_dir.clone(),
        };
        let started =
            tokio::task::spawn_blocking(move || Host::start(host_config, Box::new(mounter)))
                .await
                .unwrap_or_else(|err| {
                    Err(HostError::Internal(format!(
                        "the host start-up task failed: {err}"
                    )))
                });
        let err = match started {
            Ok(host) => {
                tracing::info!(
                    backend = %attempt.backend,
                    layout = attempt.layout.name(),
                    transport = transport(attempt.backend).name(),
                    at = %place.display(),
                    "started the host"
                );
                return Ok(host);
            }
            Err(err) => err,
        };
        let probe_hint = selection
            .rejected
            .iter()
            .find(|r| r.backend == attempt.backend)
            .map(|r| r.hint);
        let hint = err.hint().or(probe_hint);
        if selection.requested == Backend::Auto
            && let Some(next) = attempts.peek()
        {
            tracing::warn!(backend = %attempt.backend, next = %next.backend, error = %err, hint, "the backend failed to mount; trying the next one");
            continue;
        }
        return Err(ServiceError::Start {
            place,
            backend: attempt.backend,
            source: err,
            hint,
        });
    }
    Err(ServiceError::NoSharedBackend {
        selection: selection.to_string(),
    })
}

/// Runs the service in the foreground until SIGINT, SIGTERM or `Shutdown`.
pub fn run(config: ServiceConfig) -> Result<(), ServiceError> {
    init_logging();
    let _ = spfs_frontends::raise_open_file_limit(); // launchd's 256 is too few; it logs.
    let selection = probe_backends(config.backend, &config.mountpoint, &config.volumes_dir);
    let attempts = attempts(&selection, config.layout)?;
    for path in [&config.mountpoint, &config.volumes_dir] {
        if path.to_str().is_none() {
            return Err(ServiceError::NotUtf8(path.clone()));
        }
    }

    // Claim the endpoint while the process still has a single thread (see `socket::claim`).
    let listener = match &config.endpoint {
        Endpoint::InsecureTcp(addr) => {
            let listener =
                std::net::TcpListener::bind(addr).map_err(setup(format!("listen on {addr}")))?;
            listener
                .set_nonblocking(true)
                .map_err(setup("make the TCP listener non-blocking"))?;
            Listener::Tcp(listener)
        }
        Endpoint::Unix(path) => Listener::Unix(socket::claim(path, socket::Access::Private)?),
        Endpoint::System(path) => Listener::Unix(socket::claim(path, socket::Access::Everyone)?),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("spfs-fuse-grpc")
        .enable_all()
        .build()
        .map_err(setup("start the async runtime"))?;
    let served = runtime.block_on(serve(listener, &config, attempts, &selection));
    runtime.shutdown_timeout(DRAIN);
    served?;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the host, serves until a signal or `Shutdown`, then stops the host and (when
/// `listener` is dropped) removes the socket.
async fn serve(
    listener: Listener,
    config: &ServiceConfig,
    attempts: Vec<Attempt>,
    selection: &spfs_probe::Selection,
) -> Result<(), ServiceError> {
    // Registered before the host starts: a signal that arrives during start-up is kept and
    // stops the service as soon as it serves.
    let mut sigint = signal(SignalKind::interrupt()).map_err(setup("handle SIGINT"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(setup("handle SIGTERM"))?;

    let threads = config.threads;
    let host = start_host(attempts, selection, config).await?;
    let host = Arc::new(host);
    let watcher = reaper::start(&host).map_err(setup("watch root processes"))?;
    restore(&host, &watcher).await;
    // After the restore, which holds the scratches it continues: what is left belongs to no
    // runtime.
    let scratches_dir = spfs_probe::defaults::scratches_dir(&config.state_dir);
    let sweeping = tokio::task::spawn_blocking(move || {
        scratches::sweep_logged(&scratches_dir, &SystemProcessTable::new())
    });
    if let Err(err) = sweeping.await {
        tracing::error!(error = %err, "sweeping stale scratches failed");
    }

    let stop = Arc::new(Notify::new());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<VfsServer<VfsService>>().await;
    let identity = match listener {
        Listener::Unix(_) => Identity::PeerCredentials,
        Listener::Tcp(_) => Identity::ServiceUser,
    };
    let grpc = Server::builder()
        .add_service(health_service)
        .add_service(VfsServer::new(VfsService::new(
            Arc::clone(&host),
            identity,
            Arc::clone(&stop),
            watcher,
        )));

    let stopping = Arc::new(Notify::new());
    // A Shutdown call is a person's "unmount and exit": the next service starts with no
    // runtimes. A signal (launchd stopping or restarting the service for an upgrade) keeps the
    // state file, so the next start restores the runtimes whose roots still run.
    let asked_to_shut_down = Arc::new(AtomicBool::new(false));
    let shutdown = {
        let stopping = Arc::clone(&stopping);
        let asked_to_shut_down = Arc::clone(&asked_to_shut_down);
        async move {
            let why = tokio::select! {
                _ = sigint.recv() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
                () = stop.notified() => {
                    asked_to_shut_down.store(true, Ordering::Relaxed);
                    "a Shutdown call"
                }
            };
            tracing::info!("stopping on {why}");
            health.set_not_serving::<VfsServer<VfsService>>().await;
            stopping.notify_one();
        }
    };

    let mut claimed = None;
    let served = match listener {
        Listener::Unix(mut socket) => {
            let incoming = tokio::net::UnixListener::from_std(socket.listen()?)
                .map_err(setup(format!("use the socket {}", socket.path().display())))?;
            tracing::info!(
                socket = %socket.path().display(),
                threads,
                "serving"
            );
            claimed = Some(socket);
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(incoming);
            serve_until(grpc, incoming, shutdown, &stopping).await
        }
        Listener::Tcp(listener) => {
            let incoming = tokio::net::TcpListener::from_std(listener)
                .map_err(setup("use the TCP listener"))?;
            let addr = incoming
                .local_addr()
                .map_err(setup("read the TCP address"))?;
            tracing::warn!(
                %addr,
                uid = nix::unistd::geteuid().as_raw(),
                "serving TCP (--insecure-tcp): callers cannot be identified, every caller counts \
                 as this service's user"
            );
            tracing::info!(
                %addr,
                threads,
                "serving"
            );
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(incoming);
            serve_until(grpc, incoming, shutdown, &stopping).await
        }
    };

    // Calls still on a blocking thread hold the host; give them a moment, then stop it.
    let mut host = host;
    let deadline = Instant::now() + DRAIN;
    loop {
        match Arc::try_unwrap(host) {
            Ok(owned) => {
                let forget = asked_to_shut_down.load(Ordering::Relaxed);
                let stopped = tokio::task::spawn_blocking(move || {
                    if forget {
                        owned.shut_down();
                    } else {
                        owned.stop();
                    }
                });
                if let Err(err) = stopped.await {
                    tracing::error!(error = %err, "stopping the host failed");
                }
                break;
            }
            Err(shared) if Instant::now() < deadline => {
                host = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => {
                tracing::error!(
                    "host calls still running after {DRAIN:?}; exiting without stopping the host"
                );
                break;
            }
        }
    }
    if asked_to_shut_down.load(Ordering::Relaxed)
        && let Some(state) = &config.state
        && let Err(err) = state.save(&[])
    {
        tracing::warn!(state = %state.path().display(), error = %err, "cannot forget the runtimes after a Shutdown call; the next start restores them");
    }
    drop(claimed);
    served
}

/// Registers again the runtimes of the last run whose roots still live, before the first
/// call is served, and watches their roots like any other's.
async fn restore(host: &Arc<Host>, watcher: &spfs_router::process::ExitWatcher) {
    let restoring = Arc::clone(host);
    let restored = tokio::task::spawn_blocking(move || restoring.restore())
        .await
        .unwrap_or_else(|err| {
            tracing::error!(error = %err, "restoring the runtimes of the last run failed");
            Vec::new()
        });
    let mut unwatched = false;
    for root_pid in restored {
        if let Err(err) = watcher.watch(root_pid) {
            tracing::warn!(root_pid, error = %err, "cannot watch the root process");
            unwatched = true;
        }
    }
    if unwatched {
        // Gone meanwhile: remove them now rather than at the next sweep.
        let host = Arc::clone(host);
        if let Err(err) = tokio::task::spawn_blocking(move || host.remove_dead()).await {
            tracing::error!(error = %err, "removing dead runtimes failed");
        }
    }
}

/// Serves `incoming` until `shutdown` completes, then lets calls in flight finish for at most
/// [`DRAIN`] (`stopping` is notified when shutdown begins).
async fn serve_until<I, IO, IE>(
    grpc: tonic::transport::server::Router,
    incoming: I,
    shutdown: impl Future<Output = ()>,
    stopping: &Notify,
) -> Result<(), ServiceError>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server = grpc.serve_with_incoming_shutdown(incoming, shutdown);
    tokio::select! {
        served = server => Ok(served?),
        () = async {
            stopping.notified().await;
            tokio::time::sleep(DRAIN).await;
        } => {
            tracing::warn!("clients still connected after {DRAIN:?}; stopping anyway");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spfs_probe::{Backend as B, Rejection, Selection};

    fn selection(requested: B, candidates: &[B], rejected: &[B]) -> Selection {
        Selection {
            requested,
            nfs_server: None,
            candidates: candidates.to_vec(),
            rejected: rejected
                .iter()
                .map(|&backend| Rejection {
                    backend,
                    reason: "not installed".into(),
                    hint: "install it",
                })
                .collect(),
        }
    }

    fn plan(selection: &Selection, layout: Option<Layout>) -> Vec<(B, Layout)> {
        attempts(selection, layout)
            .unwrap()
            .into_iter()
            .map(|a| (a.backend, a.layout))
            .collect()
    }

    #[test]
    fn auto_tries_every_candidate_each_in_its_own_layout() {
        let both = selection(B::Auto, &[B::Kext, B::FuseT], &[]);
        assert_eq!(
            plan(&both, None),
            [(B::Kext, Layout::Shared), (B::FuseT, Layout::PerRuntime)]
        );
        assert_eq!(
            plan(&both, Some(Layout::PerRuntime)),
            [
                (B::Kext, Layout::PerRuntime),
                (B::FuseT, Layout::PerRuntime)
            ]
        );
        // FUSE-T cannot route by caller: a shared layout leaves it out.
        assert_eq!(
            plan(&both, Some(Layout::Shared)),
            [(B::Kext, Layout::Shared)]
        );
    }

    #[test]
    fn a_probe_that_finds_nothing_does_not_stop_a_mount_from_being_tried() {
        let none = selection(B::Auto, &[], &[B::Kext, B::FuseT]);
        assert_eq!(
            plan(&none, None),
            [(B::Kext, Layout::Shared), (B::FuseT, Layout::PerRuntime)]
        );
        let explicit = selection(B::FuseT, &[], &[B::FuseT]);
        assert_eq!(plan(&explicit, None), [(B::FuseT, Layout::PerRuntime)]);
    }

    #[test]
    fn every_backend_serves_the_single_layout() {
        let both = selection(B::Auto, &[B::Kext, B::FuseT], &[]);
        assert_eq!(
            plan(&both, Some(Layout::Single)),
            [(B::Kext, Layout::Single), (B::FuseT, Layout::Single)]
        );
        let fuse_t = selection(B::FuseT, &[B::FuseT], &[]);
        assert_eq!(
            plan(&fuse_t, Some(Layout::Single)),
            [(B::FuseT, Layout::Single)]
        );
    }

    #[test]
    fn fuse_t_with_the_shared_layout_is_refused() {
        let fuse_t = selection(B::FuseT, &[B::FuseT], &[]);
        let err = attempts(&fuse_t, Some(Layout::Shared)).unwrap_err();
        assert!(matches!(err, ServiceError::FuseTIsPerRuntime), "{err}");
        let only_fuse_t = selection(B::Auto, &[B::FuseT], &[B::Kext]);
        let err = attempts(&only_fuse_t, Some(Layout::Shared)).unwrap_err();
        assert!(matches!(err, ServiceError::NoSharedBackend { .. }), "{err}");
        assert!(err.to_string().contains("drop --layout shared"), "{err}");
    }

    /// Issue 14, defect 6: the system service's mounts let every user in; a per-user
    /// service's mounts its own user alone.
    #[test]
    fn the_system_service_and_root_serve_other_users_and_a_per_user_service_does_not() {
        let system = Endpoint::System("/var/run/spfs-fuse/spfs-fuse.sock".into());
        let own = Endpoint::Unix("/tmp/spfs-fuse-501/spfs-fuse.sock".into());
        let tcp = Endpoint::InsecureTcp(([127, 0, 0, 1], 7000).into());
        assert!(serves_other_users(&system, true));
        assert!(serves_other_users(&system, false));
        assert!(serves_other_users(&own, true));
        assert!(!serves_other_users(&own, false));
        assert!(!serves_other_users(&tcp, false));
    }

    #[test]
    fn each_backend_has_its_transport() {
        assert_eq!(transport(B::Kext), Transport::Device);
        assert_eq!(transport(B::FuseT), Transport::Nfs);
    }
}
