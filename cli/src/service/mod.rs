//! `spfs-fuse service`: the long-running process that owns the mount and serves gRPC.
//!
//! Start-up order matters. The socket is claimed first (lock, stale-file cleanup, bind with mode
//! 0600) while the process has one thread; then the host starts (it mounts); only then does the
//! socket listen. So a client that can connect talks to a service that is ready, and a client
//! that cannot gets "connection refused" and may start a service itself.
//!
//! The backend comes from the probe (the same code as `doctor`): with `--backend auto` the host
//! is started with each usable backend in turn until one mounts, logging the hint of every
//! failure; an explicit backend that fails to mount stops the service with its hint.

mod auth;
mod reaper;
mod socket;
mod vfs;
pub(crate) mod wire;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use spfs_proto::v1::vfs_server::VfsServer;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tonic::transport::Server;
use tonic::transport::server::{Connected, Router};

pub(crate) use socket::{absolute, answers, log_path, prepare_socket_dir, resolve_socket_path};

use crate::host::{Host, HostConfig, Layout};
use spfs_frontends::Transport;
use vfs::{Identity, VfsService};

/// How long the server waits for clients to finish their calls once it is stopping.
const DRAIN: Duration = Duration::from_secs(5);

/// The FUSE backend to serve views with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Pick from what the host has: `kext` when usable, then `fuse-t`; fall back along that
    /// list when a mount fails.
    Auto,
    /// The macFUSE kernel extension (on Linux: `/dev/fuse`), one shared mount routed by caller.
    Kext,
    /// FUSE-T: one NFS volume per runtime (macOS only).
    FuseT,
}

impl Backend {
    /// The value as written on the command line.
    pub(crate) fn as_arg(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Kext => "kext",
            Backend::FuseT => "fuse-t",
        }
    }
}

/// Arguments of `spfs-fuse service`.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// The FUSE backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Where runtimes appear: one shared mount routed by caller, or a volume per runtime
    /// [default: shared for kext, per-runtime for fuse-t].
    #[arg(long, value_enum)]
    layout: Option<Layout>,
    /// The shared mount point (shared layout).
    #[arg(long, value_name = "PATH", default_value = "/spfs")]
    mountpoint: PathBuf,
    /// Where the per-runtime layout mounts `spfs-<root pid>` volumes [default: /Volumes on
    /// macOS; on Linux /run/spfs-fuse/volumes for root, else
    /// $XDG_RUNTIME_DIR/spfs-fuse/volumes].
    #[arg(long, value_name = "DIR")]
    volumes_dir: Option<PathBuf>,
    /// The Unix socket to serve on [default: $XDG_RUNTIME_DIR/spfs-fuse/spfs-fuse.sock, else
    /// /tmp/spfs-fuse-<uid>/spfs-fuse.sock].
    #[arg(long, value_name = "PATH", env = "SPFS_FUSE_SOCKET")]
    socket: Option<PathBuf>,
    /// Serve TCP on ADDR (e.g. 127.0.0.1:37737) instead of the Unix socket. Needs
    /// --insecure-tcp.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Accept that over TCP callers cannot be identified: every caller counts as the service's
    /// own user.
    #[arg(long, requires = "listen")]
    insecure_tcp: bool,
    /// Threads serving FUSE requests [default: the number of cores].
    #[arg(long, value_name = "N")]
    threads: Option<NonZeroUsize>,
    /// Linux: serve `/dev/fuse` through read(2) alone, even where the kernel offers FUSE over
    /// io_uring (Linux 6.14+ with /sys/module/fuse/parameters/enable_uring set to Y), whose
    /// per-CPU queues are otherwise used.
    #[arg(long)]
    no_io_uring: bool,
}

/// Sets up `tracing` logs on stderr: `RUST_LOG` decides what is shown (default `info`).
/// Calling it twice is harmless.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Err only if a subscriber is already set, which is what we want then.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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
    requested: spfs_probe::Backend,
    mountpoint: &Path,
    volumes_dir: &Path,
) -> spfs_probe::Selection {
    let config = spfs_probe::ProbeConfig {
        mountpoint: mountpoint.to_path_buf(),
        volumes_dir: volumes_dir.to_path_buf(),
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
    backend: spfs_probe::Backend,
    layout: Layout,
}

/// The backends to try, in order. An explicit backend is tried even when the probe rejects it
/// (a mount is the only sure test, and its failure carries the hint); `auto` tries the usable
/// candidates, or, when the probe finds none, every backend it considered, so a probe that is
/// wrong never blocks a mount that would work. FUSE-T cannot route by caller, so it serves only
/// the per-runtime layout: with `--layout shared` it is skipped (or, asked for, refused).
fn attempts(
    selection: &spfs_probe::Selection,
    layout: Option<Layout>,
) -> anyhow::Result<Vec<Attempt>> {
    use spfs_probe::Backend as B;
    let backends: Vec<B> = if selection.requested != B::Auto {
        vec![selection.requested]
    } else if selection.candidates.is_empty() {
        selection.rejected.iter().map(|r| r.backend).collect()
    } else {
        selection.candidates.clone()
    };
    if selection.requested == B::FuseT && layout == Some(Layout::Shared) {
        bail!(
            "the fuse-t backend serves only the per-runtime layout (NFS requests carry no \
             caller pid to route by); drop --layout shared or use --backend kext"
        );
    }
    let attempts: Vec<Attempt> = backends
        .into_iter()
        .filter(|&backend| !(backend == B::FuseT && layout == Some(Layout::Shared)))
        .map(|backend| Attempt {
            backend,
            layout: layout.unwrap_or(match backend {
                B::FuseT => Layout::PerRuntime,
                B::Kext | B::Auto => Layout::Shared,
            }),
        })
        .collect();
    if attempts.is_empty() {
        // Only FUSE-T is left, and the shared layout ruled it out.
        bail!(
            "no usable backend serves the shared layout ({selection}); drop --layout shared \
             to serve a volume per runtime"
        );
    }
    Ok(attempts)
}

/// The transport a backend delivers requests over.
fn transport(backend: spfs_probe::Backend) -> Transport {
    match backend {
        spfs_probe::Backend::FuseT => Transport::Nfs,
        spfs_probe::Backend::Kext | spfs_probe::Backend::Auto => Transport::Device,
    }
}

/// Starts the host with each attempt in turn until one mounts. A failure names the mount
/// point and ends with the hint that fixes it: the mount error's own, else the probe's reason
/// for rejecting that backend.
async fn start_host(
    attempts: Vec<Attempt>,
    selection: &spfs_probe::Selection,
    base: &HostConfig,
) -> anyhow::Result<Host> {
    let mut attempts = attempts.into_iter().peekable();
    while let Some(attempt) = attempts.next() {
        let config = HostConfig {
            backend: attempt.backend,
            layout: attempt.layout,
            transport: transport(attempt.backend),
            ..base.clone()
        };
        let place = match attempt.layout {
            Layout::Shared => config.mountpoint.clone(),
            Layout::PerRuntime => config.volumes_dir.clone(),
        };
        let started = tokio::task::spawn_blocking(move || Host::start(config))
            .await
            .context("the host start-up task failed")?;
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
            Err(err) => err.to_string(),
        };
        let probe_hint = selection
            .rejected
            .iter()
            .find(|r| r.backend == attempt.backend)
            .map(|r| r.hint);
        let err = match probe_hint {
            Some(hint) if !err.contains("\nhint: ") => format!("{err}\nhint: {hint}"),
            _ => err,
        };
        if selection.requested == spfs_probe::Backend::Auto
            && let Some(next) = attempts.peek()
        {
            tracing::warn!(backend = %attempt.backend, next = %next.backend, error = %err, "the backend failed to mount; trying the next one");
            continue;
        }
        return Err(anyhow::anyhow!(err)).with_context(|| {
            format!(
                "cannot start serving {} with the {} backend",
                place.display(),
                attempt.backend
            )
        });
    }
    bail!("no backend to try")
}

/// Runs the service in the foreground until SIGINT, SIGTERM or `Shutdown`.
pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let mountpoint = absolute(&args.mountpoint)?;
    let volumes_dir = match &args.volumes_dir {
        Some(dir) => absolute(dir)?,
        None => spfs_frontends::sweep::default_volumes_dir(),
    };
    let requested: spfs_probe::Backend = args.backend.as_arg().parse()?;
    let selection = probe_backends(requested, &mountpoint, &volumes_dir);
    let attempts = attempts(&selection, args.layout)?;
    for path in [&mountpoint, &volumes_dir] {
        if path.to_str().is_none() {
            bail!("{} is not valid UTF-8", path.display());
        }
    }
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);

    // Claim the endpoint while the process still has a single thread (see `socket::claim`).
    let listener = match args.listen {
        Some(addr) => {
            if !args.insecure_tcp {
                bail!(
                    "--listen serves TCP, where callers cannot be identified, so any local user \
                     could change any view; add --insecure-tcp to accept that, or use --socket"
                );
            }
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr}"))?;
            listener
                .set_nonblocking(true)
                .context("cannot make the TCP listener non-blocking")?;
            Listener::Tcp(listener)
        }
        None => {
            let path = resolve_socket_path(args.socket.as_deref())?;
            Listener::Unix(socket::claim(&path)?)
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("spfs-fuse-grpc")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The backend, layout and transport are filled in per attempt.
    let config = HostConfig {
        backend: spfs_probe::Backend::Kext,
        layout: Layout::Shared,
        transport: Transport::Device,
        mountpoint,
        volumes_dir,
        threads,
        io_uring: !args.no_io_uring,
    };
    let served = runtime.block_on(serve(listener, config, attempts, &selection));
    runtime.shutdown_timeout(DRAIN);
    served?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts the host, serves until a signal or `Shutdown`, then stops the host and (when
/// `listener` is dropped) removes the socket.
async fn serve(
    listener: Listener,
    config: HostConfig,
    attempts: Vec<Attempt>,
    selection: &spfs_probe::Selection,
) -> anyhow::Result<()> {
    // Registered before the host starts: a signal that arrives during start-up is kept and
    // stops the service as soon as it serves.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let threads = config.threads;
    let host = start_host(attempts, selection, &config).await?;
    let host = Arc::new(host);
    let watcher = reaper::start(&host).context("cannot watch root processes")?;

    let stop = Arc::new(Notify::new());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<VfsServer<VfsService>>().await;
    let identity = match listener {
        Listener::Unix(_) => Identity::PeerCredentials,
        Listener::Tcp(_) => Identity::ServiceUser,
    };
    let router = Server::builder()
        .add_service(health_service)
        .add_service(VfsServer::new(VfsService::new(
            Arc::clone(&host),
            identity,
            Arc::clone(&stop),
            watcher,
        )));

    let stopping = Arc::new(Notify::new());
    let shutdown = {
        let stopping = Arc::clone(&stopping);
        async move {
            let why = tokio::select! {
                _ = sigint.recv() => "SIGINT",
                _ = sigterm.recv() => "SIGTERM",
                () = stop.notified() => "a Shutdown call",
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
                .context("cannot use the socket")?;
            tracing::info!(
                socket = %socket.path().display(),
                threads,
                "serving"
            );
            claimed = Some(socket);
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(incoming);
            serve_until(router, incoming, shutdown, &stopping).await
        }
        Listener::Tcp(listener) => {
            let incoming =
                tokio::net::TcpListener::from_std(listener).context("cannot use the listener")?;
            let addr = incoming
                .local_addr()
                .context("cannot read the TCP address")?;
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
            serve_until(router, incoming, shutdown, &stopping).await
        }
    };

    // Calls still on a blocking thread hold the host; give them a moment, then stop it.
    let mut host = host;
    let deadline = Instant::now() + DRAIN;
    loop {
        match Arc::try_unwrap(host) {
            Ok(owned) => {
                tokio::task::spawn_blocking(move || owned.stop())
                    .await
                    .context("stopping the host failed")?;
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
    drop(claimed);
    served
}

/// Serves `incoming` until `shutdown` completes, then lets calls in flight finish for at most
/// [`DRAIN`] (`stopping` is notified when shutdown begins).
async fn serve_until<I, IO, IE>(
    router: Router,
    incoming: I,
    shutdown: impl Future<Output = ()>,
    stopping: &Notify,
) -> anyhow::Result<()>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let server = router.serve_with_incoming_shutdown(incoming, shutdown);
    tokio::select! {
        served = server => served.context("the gRPC server failed"),
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
    fn fuse_t_with_the_shared_layout_is_refused() {
        let fuse_t = selection(B::FuseT, &[B::FuseT], &[]);
        let err = attempts(&fuse_t, Some(Layout::Shared)).unwrap_err();
        assert!(err.to_string().contains("per-runtime layout"), "{err}");
        let only_fuse_t = selection(B::Auto, &[B::FuseT], &[B::Kext]);
        let err = attempts(&only_fuse_t, Some(Layout::Shared)).unwrap_err();
        assert!(err.to_string().contains("drop --layout shared"), "{err}");
    }

    #[test]
    fn each_backend_has_its_transport() {
        assert_eq!(transport(B::Kext), Transport::Device);
        assert_eq!(transport(B::FuseT), Transport::Nfs);
    }
}
