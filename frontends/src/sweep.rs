//! The sweep: unmounting and removing stale `spfs-<pid>` volumes, the per-runtime volumes that a
//! service which died (or was killed) left behind. DESIGN.md §2.
//!
//! An entry is swept only when its name is exactly `spfs-<pid>` and no process `<pid>` is
//! alive. Whether it is a mount comes from the mount table, never from `stat`ing it: a dead
//! FUSE-T (NFS) volume can hang a `stat` for a long time.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::platform;

/// The prefix of every per-runtime volume's name: `spfs-<root pid>`.
const PREFIX: &str = "spfs-";

/// The name of the volume of the runtime whose root process is `pid`.
pub fn volume_name(pid: u32) -> String {
    format!("{PREFIX}{pid}")
}

/// The pid in a volume name: `spfs-<pid>` with the pid written the way [`volume_name`] writes
/// it (no sign, no leading zero, not 0); anything else is not a volume of ours.
pub fn volume_pid(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(PREFIX)?;
    let pid: u32 = digits.parse().ok()?;
    (pid != 0 && pid.to_string() == digits).then_some(pid)
}

/// Why the sweep could not look at the volumes directory at all. A failure on one volume is
/// not an error: it is reported as that volume's [`Outcome::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The volumes directory could not be listed.
    #[error("cannot read the volumes directory {path:?}: {source}")]
    ReadDir {
        /// The volumes directory.
        path: PathBuf,
        /// What the filesystem said.
        source: io::Error,
    },
    /// The mount table could not be read.
    #[error("cannot read the mount table: {0}")]
    MountTable(io::Error),
}

/// What the sweep does to one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Force-unmount it.
    Unmount,
    /// Remove its (empty) directory.
    Remove,
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not done: a dry run.
    Planned,
    /// Done.
    Done,
    /// Tried and failed; the message says why.
    Failed(String),
}

/// One step on one stale volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The volume.
    pub path: PathBuf,
    /// The dead root pid in its name.
    pub pid: u32,
    /// What was (or would be) done.
    pub step: Step,
    /// How it went.
    pub outcome: Outcome,
}

/// `unmounted /Volumes/spfs-12 (pid 12 is gone)`, `would remove ...`, `could not unmount ...: why`.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match (&self.outcome, self.step) {
            (Outcome::Planned, Step::Unmount) => "would unmount",
            (Outcome::Planned, Step::Remove) => "would remove",
            (Outcome::Done, Step::Unmount) => "unmounted",
            (Outcome::Done, Step::Remove) => "removed",
            (Outcome::Failed(_), Step::Unmount) => "could not unmount",
            (Outcome::Failed(_), Step::Remove) => "could not remove",
        };
        write!(
            f,
            "{verb} {} (pid {} is gone)",
            self.path.display(),
            self.pid
        )?;
        if let Outcome::Failed(why) = &self.outcome {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

/// Sweeps `volumes_dir`: every `spfs-<pid>` entry whose pid is dead is force-unmounted if it
/// is a mount, then its directory is removed (only when empty). With `dry_run` nothing is
/// changed and the steps come back [`Outcome::Planned`]. A missing directory has nothing to
/// sweep. Actions come in name order.
pub fn sweep(volumes_dir: &Path, dry_run: bool) -> Result<Vec<Action>, SweepError> {
    let read_dir = |source| SweepError::ReadDir {
        path: volumes_dir.to_path_buf(),
        source,
    };
    // The mount table names real paths; the directory itself is no volume, so resolving it
    // touches no dead mount.
    let dir = match volumes_dir.canonicalize() {
        Ok(dir) => dir,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(read_dir(err)),
    };
    let mut stale: Vec<(u32, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let Some(pid) = entry.file_name().to_str().and_then(volume_pid) else {
            continue;
        };
        if !pid_is_alive(pid) {
            stale.push((pid, entry.path()));
        }
    }
    stale.sort();
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let mounts = platform::mount_points().map_err(SweepError::MountTable)?;
    let mut actions = Vec::new();
    for (pid, path) in stale {
        let action = |step, outcome| Action {
            path: path.clone(),
            pid,
            step,
            outcome,
        };
        if mounts.contains(&path) {
            let outcome = if dry_run {
                Outcome::Planned
            } else {
                outcome_of(platform::force_unmount(&path))
            };
            let failed = matches!(outcome, Outcome::Failed(_));
            actions.push(action(Step::Unmount, outcome));
            if failed {
                continue;
            }
        } else if !is_plain_dir(&path) {
            // A file or link that happens to carry the name is not a volume of ours.
            continue;
        }
        let outcome = if dry_run {
            Outcome::Planned
        } else {
            match std::fs::remove_dir(&path) {
                // macOS removes a /Volumes mount point itself once it is unmounted.
                Err(err) if err.kind() == io::ErrorKind::NotFound => Outcome::Done,
                result => outcome_of(result),
            }
        };
        actions.push(action(Step::Remove, outcome));
    }
    Ok(actions)
}

fn outcome_of(result: io::Result<()>) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(err) => Outcome::Failed(err.to_string()),
    }
}

fn is_plain_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir())
}

/// Whether a process `pid` exists. `EPERM` means it does, owned by someone else.
fn pid_is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 sends nothing; it only checks that the process exists.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_volume_names_carry_a_pid() {
        assert_eq!(volume_pid("spfs-12"), Some(12));
        assert_eq!(volume_pid(&volume_name(4_000_000)), Some(4_000_000));
        for other in [
            "spfs-", "spfs-0", "spfs-012", "spfs-+12", "spfs-12a", "spfs-1 ", "spfs", "x-12",
            "Spfs-12",
        ] {
            assert_eq!(volume_pid(other), None, "{other}");
        }
    }

    /// A pid that was alive a moment ago and is not now (reaped).
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn only_dead_pid_directories_are_removed_and_a_dry_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let names = [
            volume_name(dead),
            volume_name(std::process::id()),
            "spfs-notes".to_string(),
            "other".to_string(),
        ];
        for name in &names {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let not_empty = dir.path().join(volume_name(dead_pid()));
        std::fs::create_dir(&not_empty).unwrap();
        std::fs::write(not_empty.join("keep"), b"").unwrap();
        // A file with a volume's name is not a volume.
        std::fs::write(dir.path().join(volume_name(dead_pid())), b"").unwrap();

        let planned = sweep(dir.path(), true).unwrap();
        let paths: Vec<_> = planned.iter().map(|a| a.path.clone()).collect();
        let real = dir.path().canonicalize().unwrap();
        let mut expected = vec![
            real.join(&names[0]),
            real.join(not_empty.file_name().unwrap()),
        ];
        expected.sort();
        assert_eq!(paths, expected);
        assert!(planned.iter().all(|a| a.outcome == Outcome::Planned));
        assert!(planned[0].to_string().starts_with("would remove "));
        for name in &names {
            assert!(dir.path().join(name).exists(), "{name}");
        }

        let done = sweep(dir.path(), false).unwrap();
        let removed = done.iter().find(|a| a.pid == dead).unwrap();
        assert_eq!(removed.outcome, Outcome::Done, "{removed}");
        let kept = done.iter().find(|a| a.pid != dead).unwrap();
        assert!(matches!(kept.outcome, Outcome::Failed(_)), "{kept}");
        assert!(!dir.path().join(&names[0]).exists());
        for name in &names[1..] {
            assert!(dir.path().join(name).exists(), "{name}");
        }
        assert!(not_empty.join("keep").exists());
    }

    #[test]
    fn a_missing_directory_has_nothing_to_sweep() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(sweep(&dir.path().join("nope"), false).unwrap(), Vec::new());
    }
}
