//! `spfs-fuse service`: its arguments, turned into the service crate's configuration.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use spfs_probe::{Backend, defaults};
use spfs_proto::status::Layout;
use spfs_service::{Endpoint, ServiceConfig, StateFile};

use crate::endpoint::{SocketArgs, absolute, system_socket};

/// Arguments of `spfs-fuse service`.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// The FUSE backend: auto, kext or fuse-t.
    #[arg(long, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Where runtimes appear: shared (one mount routed by caller), per-runtime (a volume per
    /// runtime) or single (one runtime at a time at the mount point) [default: shared for
    /// kext, per-runtime for fuse-t].
    #[arg(long)]
    layout: Option<Layout>,
    /// The mount point (shared and single layouts).
    #[arg(long, value_name = "PATH", default_value = defaults::MOUNTPOINT)]
    mountpoint: PathBuf,
    /// Where the per-runtime layout mounts `spfs-<root pid>` volumes [default: on macOS
    /// /Volumes for root, else ~/.spfs-fuse/volumes; on Linux /run/spfs-fuse/volumes for
    /// root, else $XDG_RUNTIME_DIR/spfs-fuse/volumes].
    #[arg(long, value_name = "DIR")]
    volumes_dir: Option<PathBuf>,
    #[command(flatten)]
    socket: SocketArgs,
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

impl ServiceArgs {
    /// The service's configuration: paths made absolute, defaults filled in.
    pub(crate) fn config(self) -> anyhow::Result<ServiceConfig> {
        // A service on a socket keeps its runtimes beside it for the next start; over TCP
        // there is no directory of its own to keep them in.
        let mut state = None;
        // Over TCP, default scratches go in the user's private directory.
        let mut state_dir = defaults::private_socket_dir();
        let endpoint = match self.listen {
            Some(addr) if self.insecure_tcp => Endpoint::InsecureTcp(addr),
            Some(_) => bail!(
                "--listen serves TCP, where callers cannot be identified, so any local user \
                 could change any view; add --insecure-tcp to accept that, or use --socket"
            ),
            // Root with no socket named is the system service (a LaunchDaemon): every user
            // reaches it on the system socket.
            None if !self.socket.named() && nix::unistd::geteuid().is_root() => {
                let socket = system_socket();
                state = Some(StateFile::beside_socket(&socket));
                state_dir = defaults::state_dir(&socket);
                Endpoint::System(socket)
            }
            None => {
                let socket = self.socket.path()?;
                state = Some(StateFile::beside_socket(&socket));
                state_dir = defaults::state_dir(&socket);
                Endpoint::Unix(socket)
            }
        };
        let volumes_dir = match &self.volumes_dir {
            Some(dir) => absolute(dir)?,
            None => defaults::volumes_dir(),
        };
        let threads = self
            .threads
            .or_else(|| std::thread::available_parallelism().ok())
            .map_or(1, NonZeroUsize::get);
        Ok(ServiceConfig {
            backend: self.backend,
            layout: self.layout,
            mountpoint: absolute(&self.mountpoint)?,
            volumes_dir,
            endpoint,
            threads,
            io_uring: !self.no_io_uring,
            state,
            state_dir,
        })
    }
}

/// Runs the service in the foreground until SIGINT, SIGTERM or `Shutdown`.
pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    let config = args.config()?;
    match spfs_service::run(config) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The error's own text holds its causes; the hint comes last, on its own line.
        Err(err) => match err.hint() {
            Some(hint) => bail!("{err}\nhint: {hint}"),
            None => bail!("{err}"),
        },
    }
}
