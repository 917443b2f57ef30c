//! The default scratches of editable runtimes: one per runtime under the service's state
//! directory (`spfs_probe::defaults::default_scratch`), removed with the runtime. A service
//! that was killed (or stopped by a signal, keeping its runtimes for the next start) leaves
//! them behind; the sweep removes those whose runtime no longer exists: its root process is
//! gone (the pid, or the pid with the start time in the name) and no runtime holds the
//! scratch's lock. Durable scratches (named with `--scratch`) live elsewhere and are never
//! touched: only names of the default form (`<root pid>-<start time>`) are considered.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use spfs_router::process::ProcessTable;
use spfs_router::{EditError, Scratch};

/// Removes a default scratch directory and everything in it; a failure is logged (the next
/// sweep tries again).
pub(crate) fn remove(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => tracing::info!(scratch = %dir.display(), "removed the default scratch"),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(scratch = %dir.display(), error = %err, "cannot remove the default scratch")
        }
    }
}

/// What the sweep did (or, dry, would do) with one default scratch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptScratch {
    /// The scratch directory.
    pub dir: PathBuf,
    /// What became of it.
    pub outcome: SweepOutcome,
}

/// The outcome of sweeping one default scratch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepOutcome {
    /// Removed.
    Removed,
    /// Would be removed (`--dry-run`).
    WouldRemove,
    /// Could not be removed; what the filesystem said.
    Failed(String),
}

impl fmt::Display for SweptScratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = self.dir.display();
        match &self.outcome {
            SweepOutcome::Removed => write!(f, "removed the stale scratch {dir}"),
            SweepOutcome::WouldRemove => write!(f, "would remove the stale scratch {dir}"),
            SweepOutcome::Failed(why) => write!(f, "cannot remove the stale scratch {dir}: {why}"),
        }
    }
}

/// Removes (with `dry_run`, only lists) the default scratches in `scratches_dir` whose runtime
/// no longer exists: the root process named by the scratch is not running with that start
/// time in `processes`, and no runtime holds the scratch. A missing directory holds none.
pub fn sweep(
    scratches_dir: &Path,
    processes: &dyn ProcessTable,
    dry_run: bool,
) -> io::Result<Vec<SweptScratch>> {
    let entries = match std::fs::read_dir(scratches_dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let mut names: Vec<_> = entries
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    let mut swept = Vec::new();
    for name in names {
        let Some((pid, start_time)) = name
            .to_str()
            .and_then(spfs_probe::defaults::parse_default_scratch)
        else {
            continue;
        };
        if processes
            .info(pid)
            .is_some_and(|info| info.start_time == start_time)
        {
            continue;
        }
        let dir = scratches_dir.join(&name);
        if !dir.is_dir() {
            continue;
        }
        // Held by a live runtime (of another service on the same directory, say): not stale.
        let held = match Scratch::open(&dir, false) {
            Ok(held) => held,
            Err(EditError::InUse(_)) => continue,
            Err(err) => {
                swept.push(SweptScratch {
                    dir,
                    outcome: SweepOutcome::Failed(err.to_string()),
                });
                continue;
            }
        };
        let outcome = if dry_run {
            SweepOutcome::WouldRemove
        } else {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => SweepOutcome::Removed,
                Err(err) => SweepOutcome::Failed(err.to_string()),
            }
        };
        drop(held);
        swept.push(SweptScratch { dir, outcome });
    }
    Ok(swept)
}

/// [`sweep`] at a service's start, logging each step.
pub(crate) fn sweep_logged(scratches_dir: &Path, processes: &dyn ProcessTable) {
    match sweep(scratches_dir, processes, false) {
        Ok(swept) => {
            for scratch in swept {
                match scratch.outcome {
                    SweepOutcome::Failed(_) => tracing::warn!("sweep: {scratch}"),
                    _ => tracing::info!("sweep: {scratch}"),
                }
            }
        }
        Err(err) => {
            tracing::warn!(dir = %scratches_dir.display(), error = %err, "cannot sweep stale scratches")
        }
    }
}

#[cfg(test)]
mod tests {
    use spfs_router::process::FakeProcessTable;

    use super::*;

    #[test]
    fn the_sweep_removes_default_scratches_of_gone_runtimes_only() {
        let state = tempfile::tempdir().unwrap();
        let dir = spfs_probe::defaults::scratches_dir(state.path());
        let processes = FakeProcessTable::new();
        processes.spawn(40, 1, 7, 501);
        processes.spawn(41, 1, 8, 501);
        let scratch = |pid, start| spfs_probe::defaults::default_scratch(state.path(), pid, start);
        let live = scratch(40, 7);
        let reused = scratch(41, 7); // pid 41 now belongs to a process started later
        let gone = scratch(42, 7);
        let held = scratch(43, 7);
        let durable = dir.join("mine");
        for path in [&live, &reused, &gone, &held, &durable] {
            std::fs::create_dir_all(path.join("sub")).unwrap();
            std::fs::write(path.join("sub/file"), "x").unwrap();
        }
        let _holder = Scratch::open(&held, false).unwrap();

        let dry = sweep(&dir, &processes, true).unwrap();
        let listed: Vec<_> = dry
            .iter()
            .map(|s| (s.dir.clone(), s.outcome.clone()))
            .collect();
        assert_eq!(
            listed,
            [
                (reused.clone(), SweepOutcome::WouldRemove),
                (gone.clone(), SweepOutcome::WouldRemove)
            ]
        );
        assert!(
            reused.exists() && gone.exists(),
            "a dry run changes nothing"
        );

        let swept = sweep(&dir, &processes, false).unwrap();
        assert_eq!(swept.len(), 2);
        assert!(swept.iter().all(|s| s.outcome == SweepOutcome::Removed));
        assert!(swept[1].to_string().contains("removed the stale scratch"));
        assert!(!reused.exists() && !gone.exists());
        assert!(live.exists() && held.exists() && durable.exists());
        // Nothing to do in a directory that does not exist.
        assert!(
            sweep(&dir.join("none"), &processes, false)
                .unwrap()
                .is_empty()
        );
    }
}
