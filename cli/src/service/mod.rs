//! `spfs-fuse service`: the long-running process that owns the mount and serves gRPC.
//!
//! Start-up order matters. The socket is claimed first (lock, stale-file cleanup, bind with mode
//! 0600) while the process has one thread; then the host starts (it mounts); only then does the
//! socket listen. So a client that can connect talks to a service that is ready, and a client
//! that cannot gets "connection refused" and may start a service itself.

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

use crate::host::{Host, HostConfig};
use vfs::{Identity, VfsService};

/// How long the server waits for clients to finish their calls once it is stopping.
const DRAIN: Duration = Duration::from_secs(5);

/// The FUSE backend to serve views with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Pick from what the host has (today: always `kext`).
    Auto,
    /// The macFUSE kernel extension (on Linux: `/dev/fuse`), one shared mount routed by caller.
    Kext,
    /// FUSE-T: one NFS volume per runtime (not implemented yet).
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
    /// The shared mount point.
    #[arg(long, value_name = "PATH", default_value = "/spfs")]
    mountpoint: PathBuf,
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

/// Logs what the probe finds and which backend it would pick, through the same code as
/// `doctor`. The kext backend is the only one built so far, so the choice is logged (with the
/// hints of every rejected candidate) rather than acted on.
fn log_backend_choice(requested: Backend, mountpoint: &Path) {
    let Ok(requested) = requested.as_arg().parse::<spfs_probe::Backend>() else {
        return;
    };
    let config = spfs_probe::ProbeConfig {
        mountpoint: mountpoint.to_path_buf(),
        ..Default::default()
    };
    let facts = spfs_probe::Facts::collect(&config);
    let selection = spfs_probe::select(&facts, requested);
    tracing::info!(%facts, %selection, "probed the host");
    for rejected in &selection.rejected {
        tracing::warn!(backend = %rejected.backend, reason = %rejected.reason, hint = rejected.hint, "backend not usable");
    }
}

/// Runs the service in the foreground until SIGINT, SIGTERM or `Shutdown`.
pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    if args.backend == Backend::FuseT {
        bail!("the fuse-t backend is not implemented yet; use --backend kext");
    }
    let mountpoint = absolute(&args.mountpoint)?;
    log_backend_choice(args.backend, &mountpoint);
    if mountpoint.to_str().is_none() {
        bail!(
            "the mount point {} is not valid UTF-8",
            mountpoint.display()
        );
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
    let config = HostConfig {
        mountpoint,
        threads,
    };
    let served = runtime.block_on(serve(listener, config, args.backend));
    runtime.shutdown_timeout(DRAIN);
    served?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Starts the host, serves until a signal or `Shutdown`, then stops the host and (when
/// `listener` is dropped) removes the socket.
async fn serve(listener: Listener, config: HostConfig, backend: Backend) -> anyhow::Result<()> {
    // Registered before the host starts: a signal that arrives during start-up is kept and
    // stops the service as soon as it serves.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;

    let mountpoint = config.mountpoint.clone();
    let threads = config.threads;
    let host = tokio::task::spawn_blocking(move || Host::start(config))
        .await
        .context("the host start-up task failed")?
        .map_err(|err| {
            // The same hint `doctor` gives, for the failure as the transport worded it.
            match spfs_probe::hint_for_mount_error(spfs_probe::Backend::Kext, &err.to_string()) {
                Some(hint) => anyhow::anyhow!("{err}\nhint: {hint}"),
                None => anyhow::anyhow!(err),
            }
        })
        .with_context(|| format!("cannot start serving {}", mountpoint.display()))?;
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
                mountpoint = %mountpoint.display(),
                backend = backend.as_arg(),
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
                mountpoint = %mountpoint.display(),
                backend = backend.as_arg(),
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
