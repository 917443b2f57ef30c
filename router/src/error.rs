//! The core's errors and the one table that maps each of them to an errno.

use std::io;
use std::path::PathBuf;

use crate::access::AccessError;
use crate::edit::EditError;
use crate::node::NodeId;
use spfs_storage::{Digest, SpfsError};

/// Why an env spec was rejected. Each message names the offending part.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec is the empty string (the empty view is spelled `-`).
    #[error("the env spec is empty; use '-' for the empty view")]
    Empty,
    /// Two `+` in a row, or a leading or trailing `+`.
    #[error("env spec {spec:?} has an empty layer at position {position}")]
    EmptyComponent {
        /// The whole spec.
        spec: String,
        /// 1-based position of the empty layer.
        position: usize,
    },
    /// A layer path that is not absolute: the client resolves relative paths first.
    #[error("layer {0:?} is a relative path; the service takes absolute paths only")]
    RelativePath(String),
    /// A layer path with a `..` component.
    #[error("layer {0:?} contains a '..' component")]
    ParentComponent(String),
    /// A layer path that does not exist.
    #[error("layer {0:?} does not exist")]
    MissingPath(PathBuf),
    /// A layer path that is not a directory.
    #[error("layer {0:?} is not a directory")]
    NotADirectory(PathBuf),
    /// A layer directory that cannot be read.
    #[error("layer {path:?} cannot be read: {source}")]
    Unreadable {
        /// The layer directory.
        path: PathBuf,
        /// What reading it said.
        source: io::Error,
    },
    /// More layers than a view can stack.
    #[error("env spec has {0} layers; at most {max} are allowed", max = crate::spec::MAX_LAYERS)]
    TooManyLayers(usize),
    /// spfs layers holding more entries together than one view can index.
    #[error("the spfs layers of this env spec hold {0} entries; at most {max} are allowed", max = crate::spec::MAX_SPFS_ENTRIES)]
    TooManyEntries(usize),
    /// An item that is neither an absolute path nor an spfs reference.
    #[error(
        "layer {0:?} is neither an absolute directory path nor an spfs reference (a tag [org/]name[~N], a digest or a partial digest)"
    )]
    InvalidItem(String),
    /// An spfs reference in a registration that names no repository.
    #[error("layer {0:?} is an spfs reference, but no spfs repository was given (--repo PATH)")]
    NoRepository(String),
    /// A repository path that is not absolute.
    #[error("repository {0:?} is a relative path; the service takes absolute paths only")]
    RelativeRepository(PathBuf),
    /// A repository that cannot be opened (not an spfs repository, unsupported version, ...).
    #[error("{}", repository_message(references, error))]
    Repository {
        /// The spec's spfs references (`+`-joined), which needed the repository; empty when
        /// the spec has none.
        references: String,
        /// Why the repository cannot be opened.
        error: SpfsError,
    },
    /// An spfs item that cannot be resolved or read: unknown tag, ambiguous partial digest,
    /// corrupt object (the message names its file), a blob used as a layer, ...
    #[error("layer {item:?}: {error}")]
    Spfs {
        /// The item (or run of items) as written.
        item: String,
        /// What the reader said (part of the message, so not a `source`: printing the chain
        /// would say it twice).
        error: SpfsError,
    },
}

/// A repository failure, naming the spec's spfs references when there are some: a relative
/// path that exists nowhere reads as a tag, and the message should say so.
fn repository_message(references: &str, error: &SpfsError) -> String {
    match references {
        "" => error.to_string(),
        _ if !references.contains('+') => {
            format!(
                "layer {references:?} is not a directory, so it names an spfs reference, but {error}"
            )
        }
        _ => format!("layers {references:?} are spfs references, but {error}"),
    }
}

/// Why a registration or removal in the route table failed.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The env spec was rejected.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// pid 0 is the kernel's and never a root process.
    #[error("pid 0 cannot be a root process")]
    PidZero,
    /// pid 1 is every process's ancestor: its view would be everybody's.
    #[error(
        "pid 1 cannot be a root process: every process descends from it, so its view would be everybody's"
    )]
    PidOne,
    /// The root process is not running.
    #[error("root process {0} is not running")]
    NoSuchProcess(u32),
    /// A runtime is registered for this root process already.
    #[error("a runtime is already registered for root process {0}")]
    AlreadyRegistered(u32),
    /// No runtime is registered for this root process.
    #[error("no runtime is registered for root process {0}")]
    NotRegistered(u32),
    /// The registering user may not read a layer or repository the spec names.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The scratch of an editable runtime cannot be used.
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// Why a filesystem operation on a view failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// No entry of that name in the directory.
    #[error("no entry {name:?} in node {parent}")]
    NotFound {
        /// The directory searched.
        parent: NodeId,
        /// The name looked up (lossy for display).
        name: String,
    },
    /// The node id belongs to no live view: its runtime was removed, or it was never handed out.
    #[error("node {0} belongs to no live view")]
    StaleNode(NodeId),
    /// A directory operation on something that is not a directory.
    #[error("node {0} is not a directory")]
    NotADirectory(NodeId),
    /// A file operation on a directory.
    #[error("node {0} is a directory")]
    IsADirectory(NodeId),
    /// `readlink` on something that is not a symlink.
    #[error("node {0} is not a symlink")]
    NotASymlink(NodeId),
    /// A write of any kind: views are read-only.
    #[error("views are read-only")]
    ReadOnly,
    /// No extended attribute of that name.
    #[error("no such extended attribute")]
    NoAttribute,
    /// The name is taken.
    #[error("{name:?} already exists in node {parent}")]
    Exists {
        /// The directory.
        parent: NodeId,
        /// The name (lossy for display).
        name: String,
    },
    /// `rmdir` (or a rename over) a directory that still has entries.
    #[error("directory node {0} is not empty")]
    NotEmpty(NodeId),
    /// Renaming a directory that exists in a lower layer: overlayfs without `redirect_dir`
    /// answers `EXDEV`, and `mv` then copies, so the scratch never refers into lower layers.
    #[error("node {0} is a directory of a lower layer and cannot be renamed")]
    CrossDevice(NodeId),
    /// The caller may not write to this runtime (another user's editable runtime).
    #[error("user {uid} may not change a runtime of user {owner}")]
    NotOwner {
        /// The caller's user.
        uid: u32,
        /// The runtime's owner.
        owner: u32,
    },
    /// A name the scratch format cannot hold (`.wh.` names are whiteouts), or an invalid
    /// request.
    #[error("invalid name or argument: {0}")]
    Invalid(String),
    /// What a view cannot hold: FIFOs, sockets and device files.
    #[error("{0} is not supported in a view")]
    Unsupported(&'static str),
    /// The scratch directory failed underneath an editable view (deleted, full, unwritable).
    #[error("the scratch failed at {path:?}: {source}")]
    Scratch {
        /// The path in the scratch.
        path: PathBuf,
        /// What the scratch's filesystem said.
        source: io::Error,
    },
    /// A read through a file handle that belongs to another node.
    #[error("file handle {0} belongs to another node")]
    BadHandle(u64),
    /// An spfs payload (a file's content or a symlink's target) is in no repository.
    #[error("spfs payload {digest} is missing from every repository")]
    MissingPayload {
        /// The payload's digest.
        digest: Digest,
    },
    /// The layer's source failed underneath the view (deleted, truncated, unreadable).
    #[error("reading {path:?} from its layer failed: {source}")]
    Source {
        /// The source path in its layer.
        path: PathBuf,
        /// What the layer's filesystem said.
        source: io::Error,
    },
}

/// "No such attribute": `ENODATA` on Linux, `ENOATTR` on macOS.
#[cfg(target_os = "macos")]
const NO_ATTRIBUTE: i32 = libc::ENOATTR;
#[cfg(not(target_os = "macos"))]
const NO_ATTRIBUTE: i32 = libc::ENODATA;

/// Maps an error to the errno a FUSE reply carries. One arm per variant, no wildcard, so a new
/// variant forces a decision.
pub trait ToErrno {
    /// The errno for this error.
    fn to_errno(&self) -> i32;
}

impl ToErrno for FsError {
    fn to_errno(&self) -> i32 {
        match self {
            FsError::NotFound { .. } => libc::ENOENT,
            // Judgement call: ESTALE makes Linux retry the lookup once and then report ESTALE to
            // the program, which tools print as "Stale file handle"; for a removed runtime the
            // honest answer to the program is that the path is gone.
            FsError::StaleNode(_) => libc::ENOENT,
            FsError::NotADirectory(_) => libc::ENOTDIR,
            FsError::IsADirectory(_) => libc::EISDIR,
            FsError::NotASymlink(_) => libc::EINVAL,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadHandle(_) => libc::EBADF,
            FsError::NoAttribute => NO_ATTRIBUTE,
            FsError::Exists { .. } => libc::EEXIST,
            FsError::NotEmpty(_) => libc::ENOTEMPTY,
            FsError::CrossDevice(_) => libc::EXDEV,
            FsError::NotOwner { .. } => libc::EACCES,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::Unsupported(_) => libc::EPERM,
            // ENOSPC, EDQUOT, ENOENT of a deleted scratch: the caller learns the real reason.
            FsError::Scratch { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            // The view promised this entry; its content being gone is an I/O failure, not
            // "no such file".
            FsError::MissingPayload { .. } => libc::EIO,
            // Keep the layer's own errno where there is one (ENOENT for a deleted source file);
            // anything without one is an I/O error as far as the caller can tell.
            FsError::Source { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}
