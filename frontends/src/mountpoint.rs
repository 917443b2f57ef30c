//! Mount points: create them, tell a live mount from a stale one, and clear stale ones.
//!
//! Telling them apart is a pure function of what the probes of a mount point answered
//! ([`judge`] over [`Answers`]), so each kernel's answers can be tested on any host. The probe
//! crate, which may not import this one (DESIGN.md §3), gets the same judgement through
//! [`is_stale_mount`], which the service and `doctor` hand it.

use std::ffi::CString;
use std::fs;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::MountError;
use crate::platform;
use crate::policy::Platform;

/// What is at a mount point before mounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountpointState {
    /// Nothing there yet.
    Missing,
    /// A plain directory: ready to mount on.
    Ready,
    /// A mount whose server is gone (a crashed service).
    Stale,
    /// A live, answering mount.
    Live,
}

/// What the probes of a mount point answered, as errno values of this build's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    /// `stat` of the path: whether it sits on another device than its parent (something is
    /// mounted there), or the error.
    pub stat: Result<bool, i32>,
    /// The path is listed in the mount table (read without asking the mount).
    pub in_mount_table: bool,
    /// `statfs` of the path, asked only when something is mounted there.
    pub statfs: Option<Result<(), i32>>,
    /// Opening the path as a directory (`O_RDONLY | O_DIRECTORY`), asked only when something
    /// is mounted there.
    pub open_root: Option<Result<(), i32>>,
}

/// Whether `errno` is what `platform`'s kernel answers for a FUSE mount whose server is gone:
/// on Linux `ENOTCONN`, or for a server that used FUSE over io_uring `ECONNABORTED` (its
/// connection was aborted) and, while its rings are still being torn down, `ECANCELED`; on
/// macOS `ENXIO` ("Device not configured"; the kext's answer to opening a dead mount's root)
/// and `ENOTCONN`. The one list of stale errors.
pub fn is_stale_errno(platform: Platform, errno: i32) -> bool {
    match platform {
        Platform::Linux => matches!(errno, libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED),
        Platform::MacOs => matches!(errno, libc::ENXIO | libc::ENOTCONN),
    }
}

/// Whether an error from a path in a FUSE mount means its server is gone, on this platform.
pub fn is_stale_error(err: &io::Error) -> bool {
    err.raw_os_error()
        .is_some_and(|errno| is_stale_errno(Platform::current(), errno))
}

/// Decides what is at a mount point from what its probes answered on `platform`. `Err` holds
/// an errno that says neither live nor stale (say, `EACCES` on the path itself).
///
/// A dead macFUSE mount fakes success for `statfs` and for `getattr` of its root ("so that we
/// can be gracefully unmounted", osxfuse/kext `fuse_vfsops.c`), so neither `stat` nor `statfs`
/// can show it; opening its root answers `ENXIO` (MACOS-KERNELS.md). A stale answer from any
/// probe therefore wins over success from another. Any other failure to open the root (a
/// live mount of another user answers `EACCES`) still came from a mount that answered.
pub fn judge(platform: Platform, answers: &Answers) -> Result<MountpointState, i32> {
    let stale = |answer: Option<Result<(), i32>>| match answer {
        Some(Err(errno)) => is_stale_errno(platform, errno),
        Some(Ok(())) | None => false,
    };
    let mounted = match answers.stat {
        Err(libc::ENOENT) => return Ok(MountpointState::Missing),
        Err(errno) if is_stale_errno(platform, errno) => return Ok(MountpointState::Stale),
        Err(errno) => return Err(errno),
        Ok(other_device) => other_device || answers.in_mount_table,
    };
    if !mounted {
        return Ok(MountpointState::Ready);
    }
    if stale(answers.statfs) || stale(answers.open_root) {
        return Ok(MountpointState::Stale);
    }
    match answers.statfs {
        Some(Err(errno)) => Err(errno),
        Some(Ok(())) | None => Ok(MountpointState::Live),
    }
}

/// Asks the probes of `path` ([`Answers`]): `stat`, the mount table, and when something is
/// mounted there `statfs` and opening its root.
pub fn answers(path: &Path) -> Answers {
    let errno = |err: io::Error| err.raw_os_error().unwrap_or(libc::EIO);
    let stat = fs::metadata(path).map_err(errno).and_then(|meta| {
        let parent = path.parent().unwrap_or(Path::new("/"));
        let parent_meta = fs::metadata(parent).map_err(errno)?;
        Ok(meta.dev() != parent_meta.dev())
    });
    let in_mount_table = platform::in_mount_table(path);
    let mounted = stat == Ok(true) || (stat.is_ok() && in_mount_table);
    Answers {
        stat,
        in_mount_table,
        statfs: mounted.then(|| ask_server(path).map_err(errno)),
        open_root: mounted.then(|| open_root(path).map_err(errno)),
    }
}

/// Examines `path`.
pub fn state(path: &Path) -> Result<MountpointState, MountError> {
    judge(Platform::current(), &answers(path)).map_err(|errno| MountError::Mountpoint {
        path: path.to_path_buf(),
        source: io::Error::from_raw_os_error(errno),
    })
}

/// Whether a FUSE mount whose server is gone sits at `path`: what the probe's mount-point
/// facts are told (`spfs_probe::ProbeConfig::stale_mount`).
pub fn is_stale_mount(path: &Path) -> bool {
    matches!(state(path), Ok(MountpointState::Stale))
}

/// Sends the filesystem mounted at `path` a request that no Linux kernel cache answers:
/// `statfs` (a dead macFUSE mount fakes it).
pub(crate) fn ask_server(path: &Path) -> io::Result<()> {
    let c_path = c_path(path)?;
    let mut stats = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated and outlives the call; statfs fills `stats` or fails.
    if unsafe { libc::statfs(c_path.as_ptr(), stats.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens the root of the mount at `path` as a directory and closes it again: a dead macFUSE
/// mount answers `ENXIO` here, whatever its faked `statfs` and `getattr` say.
fn open_root(path: &Path) -> io::Result<()> {
    let c_path = c_path(path)?;
    // SAFETY: c_path is NUL-terminated and outlives the call.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened here and is closed once.
    unsafe { libc::close(fd) };
    Ok(())
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// Makes `path` ready to mount on: creates it, or clears a stale mount there. A live mount
/// is refused: it most likely belongs to another running service.
pub fn prepare(path: &Path) -> Result<(), MountError> {
    match state(path)? {
        MountpointState::Live => return Err(MountError::AlreadyMounted(path.to_path_buf())),
        MountpointState::Stale => {
            tracing::warn!(mountpoint = %path.display(), "clearing a stale mount left by a service that is gone");
            platform::force_unmount(path).map_err(|source| MountError::StaleMount {
                path: path.to_path_buf(),
                source,
            })?;
        }
        MountpointState::Ready | MountpointState::Missing => {}
    }
    match state(path)? {
        MountpointState::Ready => Ok(()),
        MountpointState::Missing => {
            fs::create_dir_all(path).map_err(|source| MountError::Mountpoint {
                path: path.to_path_buf(),
                source,
            })
        }
        other => Err(MountError::StaleMount {
            path: path.to_path_buf(),
            source: io::Error::other(format!("still {other:?} after unmounting")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mount point with something mounted on it, as `stat` and the mount table see it.
    fn mounted(statfs: Result<(), i32>, open_root: Result<(), i32>) -> Answers {
        Answers {
            stat: Ok(true),
            in_mount_table: true,
            statfs: Some(statfs),
            open_root: Some(open_root),
        }
    }

    /// Regression (issue 14, defect 3): a dead macFUSE mount fakes `statfs` and the root's
    /// `getattr`, so only opening the root shows it; trusting `statfs` made the next service
    /// refuse to start (`AlreadyMounted`).
    #[test]
    fn a_dead_macfuse_mount_is_stale_though_statfs_and_getattr_succeed() {
        let dead = mounted(Ok(()), Err(libc::ENXIO));
        assert_eq!(judge(Platform::MacOs, &dead), Ok(MountpointState::Stale));
        assert_eq!(
            judge(Platform::MacOs, &mounted(Ok(()), Ok(()))),
            Ok(MountpointState::Live)
        );
    }

    #[test]
    fn a_live_mount_of_another_user_is_live_though_its_root_cannot_be_opened() {
        let foreign = mounted(Ok(()), Err(libc::EACCES));
        assert_eq!(judge(Platform::MacOs, &foreign), Ok(MountpointState::Live));
        assert_eq!(judge(Platform::Linux, &foreign), Ok(MountpointState::Live));
    }

    #[test]
    fn dead_linux_mounts_are_stale_whichever_probe_says_so() {
        for errno in [libc::ENOTCONN, libc::ECONNABORTED, libc::ECANCELED] {
            let by_stat = Answers {
                stat: Err(errno),
                in_mount_table: true,
                statfs: None,
                open_root: None,
            };
            assert_eq!(judge(Platform::Linux, &by_stat), Ok(MountpointState::Stale));
            let by_statfs = mounted(Err(errno), Err(errno));
            assert_eq!(
                judge(Platform::Linux, &by_statfs),
                Ok(MountpointState::Stale)
            );
        }
        // ENXIO is macOS's word for it, not Linux's.
        assert_eq!(
            judge(Platform::Linux, &mounted(Ok(()), Err(libc::ENXIO))),
            Ok(MountpointState::Live)
        );
    }

    #[test]
    fn a_missing_path_a_plain_directory_and_an_unexplained_error_are_told_apart() {
        let plain = Answers {
            stat: Ok(false),
            in_mount_table: false,
            statfs: None,
            open_root: None,
        };
        for platform in [Platform::Linux, Platform::MacOs] {
            assert_eq!(judge(platform, &plain), Ok(MountpointState::Ready));
            let missing = Answers {
                stat: Err(libc::ENOENT),
                ..plain
            };
            assert_eq!(judge(platform, &missing), Ok(MountpointState::Missing));
            let denied = Answers {
                stat: Err(libc::EACCES),
                ..plain
            };
            assert_eq!(judge(platform, &denied), Err(libc::EACCES));
            assert_eq!(
                judge(platform, &mounted(Err(libc::EACCES), Ok(()))),
                Err(libc::EACCES)
            );
        }
    }

    #[test]
    fn a_plain_directory_is_ready_and_not_stale() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(state(dir.path()).unwrap(), MountpointState::Ready);
        assert!(!is_stale_mount(dir.path()));
        assert_eq!(
            state(&dir.path().join("absent")).unwrap(),
            MountpointState::Missing
        );
    }
}
