//! The glue between the host and the two halves of a commit: the core's view (its commit
//! gate, walk and rebase; its reset) and the storage writer.

use std::sync::atomic::{AtomicU64, Ordering};

use spfs_proto::status::CommitProgress;
use spfs_router::{CommitError, ResetError, View};
use spfs_storage::Digest;
use spfs_storage::write::{Node, Progress, RepoWriter, WriteError, WriteSettings};

use crate::commit::{CommitJob, ProgressSink};
use crate::host::HostError;

/// Runs `write` on the tree of `view`'s changes with its commit gate closed, then rebases the
/// view on what was committed; an error from `write` leaves the view as it was.
pub(crate) fn commit_view(
    view: &View,
    write: impl FnOnce(&Node) -> Result<Digest, HostError>,
) -> Result<Digest, HostError> {
    view.commit(write).map_err(|err| match err {
        CommitError::Write(err) => err,
        CommitError::NotUtf8(_) => HostError::Refused(err.to_string()),
        CommitError::NotEditable | CommitError::Scratch { .. } | CommitError::Rebase { .. } => {
            HostError::Internal(err.to_string())
        }
    })
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
    let failed = |err: WriteError| match err {
        WriteError::BadSetting { .. } | WriteError::BadTag(_) | WriteError::BadUser(_) => {
            HostError::Refused(err.to_string())
        }
        _ => HostError::Write(format!("cannot commit into {}: {err}", job.repo.display())),
    };
    let settings = WriteSettings::from_values(
        Some(job.encoding_format.as_str()),
        Some(job.digest_strategy.as_str()),
    )
    .map_err(failed)?;
    // As spfs: nothing changed is nothing to commit as a layer, while a platform is then one
    // of the stack as it is (crates/spfs/src/commit.rs, `commit_manifest` and
    // `commit_platform`, Error::NothingToCommit).
    let empty = matches!(tree, Node::Dir { children, .. } if children.is_empty());
    let nothing = || {
        HostError::Refused(
            "nothing to commit: the runtime has no changes since its last commit".into(),
        )
    };
    if empty && (platform.is_none() || platform.is_some_and(<[Digest]>::is_empty)) {
        return Err(nothing());
    }
    let writer = RepoWriter::init(&job.repo, settings, job.owner).map_err(failed)?;
    let layer = if empty {
        None
    } else {
        let totals = Totals::default();
        let manifest = writer
            .write_tree(tree, &|step| progress(totals.add(step)))
            .map_err(failed)?;
        Some(writer.write_layer(manifest).map_err(failed)?)
    };
    let digest = match (platform, layer) {
        (None, Some(layer)) => layer,
        (Some(below), layer) => {
            let stack: Vec<Digest> = below.iter().copied().chain(layer).collect();
            writer.write_platform(&stack).map_err(failed)?
        }
        (None, None) => return Err(nothing()),
    };
    if let Some(tag) = &job.tag {
        writer.write_tag(tag, digest, &job.user).map_err(failed)?;
    }
    Ok(digest)
}

/// A commit's running totals, added to from the writer's threads.
#[derive(Debug, Default)]
struct Totals {
    files_total: AtomicU64,
    files_hashed: AtomicU64,
    bytes_hashed: AtomicU64,
    files_written: AtomicU64,
    bytes_written: AtomicU64,
}

impl Totals {
    /// Adds `step` and returns the totals so far.
    fn add(&self, step: Progress) -> CommitProgress {
        match step {
            Progress::Planned { files } => {
                self.files_total.store(files, Ordering::Relaxed);
            }
            Progress::File { bytes, written } => {
                self.files_hashed.fetch_add(1, Ordering::Relaxed);
                self.bytes_hashed.fetch_add(bytes, Ordering::Relaxed);
                if written {
                    self.files_written.fetch_add(1, Ordering::Relaxed);
                    self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
                }
            }
        }
        CommitProgress {
            files_hashed: self.files_hashed.load(Ordering::Relaxed),
            bytes_hashed: self.bytes_hashed.load(Ordering::Relaxed),
            files_written: self.files_written.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            files_total: self.files_total.load(Ordering::Relaxed),
            bytes_total: 0,
        }
    }
}

/// A reset the core refused, as the host reports it.
pub(crate) fn reset_refused(err: ResetError) -> HostError {
    match err {
        ResetError::Invalid(_) | ResetError::NotFound(_) => HostError::Refused(err.to_string()),
        ResetError::NotEditable | ResetError::Scratch { .. } => {
            HostError::Internal(err.to_string())
        }
    }
}
