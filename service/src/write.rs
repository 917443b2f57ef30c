//! The glue between the host and the two halves of a commit: the core's view (its commit
//! gate, walk and rebase; its reset) and the storage writer.

use std::path::PathBuf;

use spfs_router::{Invalidation, View};
use spfs_storage::Digest;
use spfs_storage::write::Node;

use crate::commit::{CommitJob, ProgressSink};
use crate::host::HostError;

/// Runs `write` on the tree of `view`'s changes with its commit gate closed, then rebases the
/// view on what was committed; an error from `write` leaves the view as it was.
pub(crate) fn commit_view(
    view: &View,
    write: impl FnOnce(&Node) -> Result<Digest, HostError>,
) -> Result<Digest, HostError> {
    let _ = (view, write);
    Err(HostError::Internal(
        "this build cannot commit yet (the core's View::commit is missing)".into(),
    ))
}

/// Writes `tree` into `job.repo`: payloads, blobs, manifest, layer, the platform of
/// `platform` plus that layer when asked, then the tag; returns the layer's or platform's
/// digest.
pub(crate) fn write(
    tree: &Node,
    job: &CommitJob,
    platform: Option<&[Digest]>,
    progress: ProgressSink<'_>,
) -> Result<Digest, HostError> {
    let _ = (tree, job, platform, progress);
    Err(HostError::Internal(
        "this build cannot commit yet (the storage writer is missing)".into(),
    ))
}

/// Throws away `view`'s changes at `paths` (all when empty); returns what the kernel must
/// forget.
pub(crate) fn reset_view(view: &View, paths: &[PathBuf]) -> Result<Vec<Invalidation>, HostError> {
    let _ = (view, paths);
    Err(HostError::Internal(
        "this build cannot reset yet (the core's View::reset is missing)".into(),
    ))
}
