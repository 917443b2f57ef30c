//! The control socket option, the same words for every command that takes it, and making the
//! paths a command passes on absolute.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Where the service's control socket is.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// The service's control socket [default: $XDG_RUNTIME_DIR/spfs-fuse/spfs-fuse.sock, else
    /// ${TMPDIR:-/tmp}/spfs-fuse-<uid>/spfs-fuse.sock].
    #[arg(long, value_name = "PATH", env = "SPFS_FUSE_SOCKET")]
    pub socket: Option<PathBuf>,
}

impl SocketArgs {
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
