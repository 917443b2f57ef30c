//! The defaults every command shares: the shared mount point, the per-runtime volumes
//! directory and the control socket. The service, the client, `sweep` and `doctor` all read
//! them here, so `doctor` checks the very places the service uses.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::access::ServiceUser;
use crate::backend::Os;

/// The shared mount point: spfs packages embed absolute `/spfs` paths.
pub const MOUNTPOINT: &str = "/spfs";

/// The system service's control socket: a root service started with no `--socket` listens
/// here (mode 0666 in a root-owned directory; the peer credentials decide what each caller may
/// do), and a client with no `--socket` tries it when its own socket does not answer.
pub const SYSTEM_SOCKET: &str = "/var/run/spfs-fuse/spfs-fuse.sock";

/// The per-user volumes directory on macOS, under the home of the service's user; see
/// [`volumes_dir_for`].
pub const MACOS_USER_VOLUMES: &str = ".spfs-fuse/volumes";

/// Where per-runtime volumes go on this host unless `--volumes-dir` says otherwise, for a
/// service run by this process's user; see [`volumes_dir_for`].
pub fn volumes_dir() -> PathBuf {
    volumes_dir_for(
        Os::current(),
        ServiceUser::current().uid,
        home_dir().as_deref(),
    )
}

/// Where per-runtime volumes go on a host running `os`, for a service run by `uid` whose home
/// is `home`. The directory must be one that user may create volumes in:
///
/// - macOS, root (the system service): `/Volumes`, where volumes usually go;
/// - macOS, any other user (the per-user service, or `spfs-fuse service` run by hand):
///   `$HOME/.spfs-fuse/volumes`, else `${TMPDIR:-/tmp}/spfs-fuse-<uid>/volumes`. Not
///   `/Volumes`: it is root's, mode 1755, since macOS 10.12, so the first volume failed with
///   `EACCES`. Not `~/Library/Application Support`: a volume's path is `SPFS_ROOT`, which
///   scripts, shebangs and Makefiles split at its space. The service creates the directory at
///   its first volume;
/// - elsewhere, `/run/spfs-fuse/volumes` for root (the service that mounts for everyone),
///   else `$XDG_RUNTIME_DIR/spfs-fuse/volumes`, else `${TMPDIR:-/tmp}/spfs-fuse-<uid>/volumes`,
///   next to the default control socket.
pub fn volumes_dir_for(os: Os, uid: u32, home: Option<&Path>) -> PathBuf {
    match os {
        Os::Macos => macos_volumes_dir(uid, home, dir("TMPDIR")),
        Os::Linux | Os::Other => linux_volumes_dir(uid, dir("XDG_RUNTIME_DIR"), dir("TMPDIR")),
    }
}

/// The home directory of this process's user, `$HOME`, when it is set and absolute: where a
/// per-user service keeps its volumes on macOS and where a per-user FUSE-T is installed.
pub fn home_dir() -> Option<PathBuf> {
    dir("HOME").map(PathBuf::from)
}

fn macos_volumes_dir(uid: u32, home: Option<&Path>, tmpdir: Option<OsString>) -> PathBuf {
    match home {
        _ if uid == 0 => PathBuf::from("/Volumes"),
        Some(home) => home.join(MACOS_USER_VOLUMES),
        None => per_user_tmp(uid, tmpdir).join("volumes"),
    }
}

fn linux_volumes_dir(uid: u32, runtime_dir: Option<OsString>, tmpdir: Option<OsString>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/run/spfs-fuse/volumes");
    }
    match runtime_dir {
        Some(runtime) => Path::new(&runtime).join("spfs-fuse/volumes"),
        None => per_user_tmp(uid, tmpdir).join("volumes"),
    }
}

/// `${TMPDIR:-/tmp}/spfs-fuse-<uid>`: the per-user directory when nothing better is set.
fn per_user_tmp(uid: u32, tmpdir: Option<OsString>) -> PathBuf {
    tmpdir
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
        .join(format!("spfs-fuse-{uid}"))
}

/// The default control socket: `$SPFS_FUSE_SOCKET`, else
/// `$XDG_RUNTIME_DIR/spfs-fuse/spfs-fuse.sock`, else
/// `${TMPDIR:-/tmp}/spfs-fuse-<uid>/spfs-fuse.sock`. Empty variables count as unset, and so
/// do relative directories.
pub fn socket_path() -> PathBuf {
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

/// The state directory of a service listening on `socket`: the socket's own directory, where
/// its state file is too.
pub fn state_dir(socket: &Path) -> PathBuf {
    socket
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf)
}

/// The directory under a service's state directory (the one holding its socket and state
/// file) where it makes the default scratches of editable runtimes: `<state dir>/scratch`.
pub fn scratches_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("scratch")
}

/// The default scratch of the editable runtime rooted at `root_pid`, started at `start_time`
/// (the process table's unit): `<state dir>/scratch/<root pid>-<start time>`. Named after the
/// root process as the process table knows it, so a sweep can tell the scratch of a runtime
/// that no longer exists (the pid gone, or reused by a process started at another time).
pub fn default_scratch(state_dir: &Path, root_pid: u32, start_time: u64) -> PathBuf {
    scratches_dir(state_dir).join(format!("{root_pid}-{start_time}"))
}

/// The root pid and start time a default scratch's name carries; `None` for a name that is
/// not one (a durable scratch a user put there, a stray file), which a sweep leaves alone.
pub fn parse_default_scratch(name: &str) -> Option<(u32, u64)> {
    let (pid, start) = name.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(start) {
        return None;
    }
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// An environment variable; empty counts as unset.
fn var(name: &str) -> Option<OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// An environment variable naming a directory; relative counts as unset.
fn dir(name: &str) -> Option<OsString> {
    var(name).filter(|v| Path::new(v).is_absolute())
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
    per_user_tmp(uid, tmpdir).join("spfs-fuse.sock")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<OsString> {
        Some(OsString::from(v))
    }

    #[test]
    fn socket_path_precedence() {
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

    #[test]
    fn a_default_scratch_is_named_after_its_root_and_read_back() {
        let state = state_dir(Path::new("/run/user/5/spfs-fuse/spfs-fuse.sock"));
        assert_eq!(state, Path::new("/run/user/5/spfs-fuse"));
        let scratch = default_scratch(&state, 4242, 987_654);
        assert_eq!(
            scratch,
            PathBuf::from("/run/user/5/spfs-fuse/scratch/4242-987654")
        );
        assert_eq!(scratch.parent(), Some(scratches_dir(&state).as_path()));
        let name = scratch.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_default_scratch(name), Some((4242, 987_654)));
        for other in ["mine", "12", "12-", "-3", "1-2-3", "+1-2", "99999999999-1"] {
            assert_eq!(parse_default_scratch(other), None, "{other}");
        }
    }

    #[test]
    fn volumes_go_beside_the_socket_on_linux() {
        assert_eq!(
            linux_volumes_dir(0, s("/run/user/0"), None),
            PathBuf::from("/run/spfs-fuse/volumes")
        );
        assert_eq!(
            linux_volumes_dir(1000, s("/run/user/1000"), s("/t")),
            PathBuf::from("/run/user/1000/spfs-fuse/volumes")
        );
        assert_eq!(
            linux_volumes_dir(1000, None, None),
            PathBuf::from("/tmp/spfs-fuse-1000/volumes")
        );
    }

    /// Regression (issue 14, defect 4): every service on macOS defaulted to `/Volumes`, root's
    /// (mode 1755), so a per-user service failed at its first FUSE-T volume with `EACCES`.
    #[test]
    fn on_macos_only_root_puts_volumes_in_slash_volumes_and_a_user_in_their_home() {
        let home = Path::new("/Users/alice");
        assert_eq!(
            macos_volumes_dir(0, Some(Path::new("/var/root")), None),
            PathBuf::from("/Volumes")
        );
        assert_eq!(
            macos_volumes_dir(501, Some(home), s("/var/folders/xy/T")),
            PathBuf::from("/Users/alice/.spfs-fuse/volumes")
        );
        assert_eq!(
            macos_volumes_dir(501, None, s("/var/folders/xy/T")),
            PathBuf::from("/var/folders/xy/T/spfs-fuse-501/volumes")
        );
        assert_eq!(
            volumes_dir_for(Os::Macos, 0, Some(home)),
            PathBuf::from("/Volumes")
        );
        assert_eq!(
            volumes_dir_for(Os::Macos, 501, Some(home)),
            home.join(MACOS_USER_VOLUMES)
        );
    }
}
