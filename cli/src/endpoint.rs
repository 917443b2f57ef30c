//! The control socket option, the same words for every command that takes it, and making the
//! paths a command passes on absolute.

use std::path::{Path, PathBuf};

use anyhow::Context;
use spfs_probe::defaults;
use spfs_probe::socket::answers;

/// Where the service's control socket is.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// The service's control socket [default: $XDG_RUNTIME_DIR/spfs-fuse/spfs-fuse.sock, else
    /// ${TMPDIR:-/tmp}/spfs-fuse-<uid>/spfs-fuse.sock; a client whose own socket does not
    /// answer uses the system service's /var/run/spfs-fuse/spfs-fuse.sock if that answers, and
    /// a service run by root listens there].
    #[arg(long, value_name = "PATH", env = "SPFS_FUSE_SOCKET")]
    pub socket: Option<PathBuf>,
}

/// The system service's socket: `$SPFS_FUSE_SYSTEM_SOCKET` (tests, unusual installs), else
/// [`defaults::SYSTEM_SOCKET`].
pub fn system_socket() -> PathBuf {
    std::env::var_os("SPFS_FUSE_SYSTEM_SOCKET")
        .filter(|path| Path::new(path).is_absolute())
        .map_or_else(|| PathBuf::from(defaults::SYSTEM_SOCKET), PathBuf::from)
}

impl SocketArgs {
    /// Whether a socket was named (`--socket` or `SPFS_FUSE_SOCKET`).
    pub fn named(&self) -> bool {
        self.socket
            .as_deref()
            .is_some_and(|path| !path.as_os_str().is_empty())
    }

    /// The socket a client talks to: the one named; else its own, unless that does not answer
    /// and the system service's does. A client that starts a service when none answers starts
    /// it on its own socket: only a per-user service is ever started by a client.
    pub fn client_path(&self) -> anyhow::Result<PathBuf> {
        let own = self.path()?;
        if self.named() || answers(&own) {
            return Ok(own);
        }
        let system = system_socket();
        Ok(if answers(&system) { system } else { own })
    }

    /// The socket a service started with these arguments (and no `--listen`) listens on: the
    /// one named; else, for root, the system service's; else the user's own.
    pub fn service_path(&self) -> anyhow::Result<PathBuf> {
        if !self.named() && nix::unistd::geteuid().is_root() {
            return Ok(system_socket());
        }
        self.path()
    }

    /// The socket named, made absolute (an auto-started service runs in `/`), else the default.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        let given = self.socket.as_deref();
        spfs_probe::socket::resolve_socket_path(given).with_context(|| {
            format!(
                "cannot make the socket path {} absolute",
                given.unwrap_or(Path::new("")).display()
            )
        })
    }
}

/// `path` made absolute against the working directory (lexically: no symlinks resolved).
pub fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}
