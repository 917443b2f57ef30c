//! Where the control socket lives by default; every command shares this.

use std::ffi::OsString;
use std::path::PathBuf;

/// The default control socket: `$SPFS_FUSE_SOCKET`, else
/// `$XDG_RUNTIME_DIR/spfs-fuse/spfs-fuse.sock`, else
/// `${TMPDIR:-/tmp}/spfs-fuse-<uid>/spfs-fuse.sock`. Empty variables count as unset, and so
/// do relative directories.
pub fn default_socket_path() -> PathBuf {
    socket_path_from(
        var("SPFS_FUSE_SOCKET"),
        dir("XDG_RUNTIME_DIR"),
        dir("TMPDIR"),
        uid(),
    )
}

/// The per-user directory of the built-in socket path (ignoring `$SPFS_FUSE_SOCKET`): the one
/// directory the service creates for itself and keeps private. A socket named explicitly
/// lives wherever its user put it, and its directory is never changed.
pub fn private_socket_dir() -> PathBuf {
    let socket = socket_path_from(None, dir("XDG_RUNTIME_DIR"), dir("TMPDIR"), uid());
    socket.parent().map(PathBuf::from).unwrap_or(socket)
}

/// An environment variable; empty counts as unset.
fn var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// An environment variable naming a directory; relative counts as unset.
fn dir(name: &str) -> Option<OsString> {
    var(name).filter(|v| std::path::Path::new(v).is_absolute())
}

fn uid() -> u32 {
    // SAFETY: getuid(2) takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::getuid() }
}

fn socket_path_from(
    explicit: Option<OsString>,
    runtime_dir: Option<OsString>,
    tmpdir: Option<OsString>,
    uid: u32,
) -> PathBuf {
    if let Some(path) = explicit {
        return PathBuf::from(path);
    }
    if let Some(dir) = runtime_dir {
        return PathBuf::from(dir).join("spfs-fuse").join("spfs-fuse.sock");
    }
    let tmp = tmpdir.map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    tmp.join(format!("spfs-fuse-{uid}")).join("spfs-fuse.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_precedence() {
        let s = |v: &str| Some(OsString::from(v));
        assert_eq!(
            socket_path_from(s("/x.sock"), s("/run/user/5"), s("/t"), 5),
            PathBuf::from("/x.sock")
        );
        assert_eq!(
            socket_path_from(None, s("/run/user/5"), s("/t"), 5),
            PathBuf::from("/run/user/5/spfs-fuse/spfs-fuse.sock")
        );
        assert_eq!(
            socket_path_from(None, None, s("/var/folders/xy/T/"), 501),
            PathBuf::from("/var/folders/xy/T/spfs-fuse-501/spfs-fuse.sock")
        );
        assert_eq!(
            socket_path_from(None, None, None, 0),
            PathBuf::from("/tmp/spfs-fuse-0/spfs-fuse.sock")
        );
    }
}
