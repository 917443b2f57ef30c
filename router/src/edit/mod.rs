//! Editable views: a private scratch directory on top of a view's layers, with the kernel
//! overlayfs's semantics (DESIGN.md §4 rule 7, docs/SEMANTICS.md).
//!
//! The scratch is a directory layer of the format env specs already read: files, OCI
//! `.wh.NAME` whiteouts and `.wh..wh..opq` opaque markers. So `LAYERS+SCRATCH` registered
//! read-only shows what the editable runtime showed, and a scratch outlives the service.

mod commit;
mod diff;
pub use commit::{CommitError, MASK_MODE};
pub use diff::{Change, ChangeKind, DiffError};

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::node::NodeId;

mod ffi;
mod gate;
mod load;
mod lower;
mod overlay;
#[cfg(target_os = "linux")]
#[path = "sys_linux.rs"]
mod sys;
#[cfg(target_os = "macos")]
#[path = "sys_macos.rs"]
mod sys;
mod walk;

pub(crate) use overlay::{Edit, Make};
pub(crate) use sys::fallocate;

/// A whiteout's prefix: `.wh.NAME` hides `NAME` of the layers below.
pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The opaque marker: a directory holding it hides the lower layers' entries of itself.
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// The core's temp names: readers take them for whiteouts of an impossible name, so one a
/// crash leaves behind changes nothing (and loading the scratch removes it).
pub(crate) const TEMP_PREFIX: &str = ".wh..wh..tmp.";

/// What the kernel must forget after the core changed a view behind its back (a reset): the
/// frontend turns each into a FUSE notification (`FUSE_NOTIFY_INVAL_ENTRY` /
/// `FUSE_NOTIFY_INVAL_INODE`), sent after [`crate::View::reset`] returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// The entry `name` of directory `parent`, positive or negative: the next lookup of the
    /// name must reach the service.
    Entry {
        /// The directory's node id.
        parent: NodeId,
        /// The name in it.
        name: Vec<u8>,
    },
    /// A node's attributes and cached pages (and, for a directory, its cached listing).
    Node(NodeId),
}

/// Why a reset failed. Paths are reset in the order given; an error stops there.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The view is read-only.
    #[error("the view is not editable")]
    NotEditable,
    /// A path with `.`, `..` or an empty name.
    #[error("{0:?} is not a path inside the view (no `.` or `..`)")]
    Invalid(PathBuf),
    /// A path whose parent is not a directory of the view.
    #[error("the parent of {0:?} is not a directory of the view")]
    NotFound(PathBuf),
    /// Changing the scratch failed.
    #[error("cannot reset {path:?} in the scratch: {source}")]
    Scratch {
        /// The entry of the scratch.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
}

/// Why a scratch directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// Another live runtime writes into this scratch.
    #[error("the scratch directory {0:?} is in use by another runtime")]
    InUse(PathBuf),
    /// A scratch must be named by an absolute path.
    #[error("the scratch directory {0:?} is not an absolute path")]
    Relative(PathBuf),
    /// The path exists and is not a directory.
    #[error("the scratch {0:?} is not a directory")]
    NotADirectory(PathBuf),
    /// The directory could not be made, opened or locked.
    #[error("cannot use the scratch directory {path:?}: {source}")]
    Io {
        /// The scratch directory.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
}

/// How long [`Scratch::open`] waits for a held lock before it calls the scratch in use.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// A scratch directory held for one runtime: locked (`flock`) while it is held, so a second
/// live runtime cannot write into it, even from another service.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    durable: bool,
    /// Holds the lock for as long as the scratch is in use.
    _lock: File,
}

impl Scratch {
    /// Takes the scratch directory `dir`, making it (mode 0700) when missing. `durable`: it
    /// was named by the user and is kept when the runtime ends; a default one is removed.
    pub fn open(dir: &Path, durable: bool) -> Result<Scratch, EditError> {
        if !dir.is_absolute() {
            return Err(EditError::Relative(dir.to_path_buf()));
        }
        let io = |source| EditError::Io {
            path: dir.to_path_buf(),
            source,
        };
        match std::fs::symlink_metadata(dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(EditError::NotADirectory(dir.to_path_buf())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io)?;
            }
            Err(err) => return Err(io(err)),
        }
        let lock = File::open(dir).map_err(io)?;
        // A lock just released can still be held for a moment by a child another thread of
        // this process forked while the descriptor was open (flock locks follow the open
        // file, and the child keeps it until its exec closes it): wait that out before
        // calling the scratch in use.
        let deadline = std::time::Instant::now() + LOCK_GRACE;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(err));
            }
            if std::time::Instant::now() >= deadline {
                return Err(EditError::InUse(dir.to_path_buf()));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(Scratch {
            dir: dir.to_path_buf(),
            durable,
            _lock: lock,
        })
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the user named it (`--scratch`), so it outlives the runtime.
    pub fn is_durable(&self) -> bool {
        self.durable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_is_made_and_refused_to_a_second_holder_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/scratch");
        let first = Scratch::open(&dir, true).unwrap();
        assert!(dir.is_dir());
        assert!(matches!(Scratch::open(&dir, true), Err(EditError::InUse(p)) if p == dir));
        drop(first);
        Scratch::open(&dir, false).unwrap();
    }

    #[test]
    fn a_relative_path_or_a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            Scratch::open(Path::new("scratch"), true),
            Err(EditError::Relative(_))
        ));
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(
            Scratch::open(&file, true),
            Err(EditError::NotADirectory(_))
        ));
    }
}
