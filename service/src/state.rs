//! The runtimes a service keeps across restarts (an upgrade, a crash): one JSON file in the
//! service's state directory, beside its socket. The host rewrites it after every registration
//! and removal; a service that starts reads it and registers again each runtime whose root
//! process still runs (the same pid with the same start time, so a reused pid never inherits a
//! view). The file is replaced atomically (a temporary file in the same directory, synced, then
//! renamed over it), so a crash mid-write leaves the previous state, never half of one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use spfs_router::{Owner, Runtime, Scratch};

/// The format of the file; a file of another version is ignored (logged), not misread.
const VERSION: u32 = 1;

/// One runtime as the state file keeps it: what registering it again needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRuntime {
    /// The root process.
    pub root_pid: u32,
    /// Its start time when it was registered (the process table's unit).
    pub start_time: u64,
    /// The env spec it was registered with.
    pub env_spec: String,
    /// The spfs repositories its spec resolved against, in order.
    pub repos: Vec<PathBuf>,
    /// The uid that registered it.
    pub owner_uid: u32,
    /// That user's primary gid.
    pub owner_gid: u32,
    /// Whether the owner's reads were checked (a user other than the service's and root).
    pub owner_checked: bool,
    /// The scratch of an editable runtime; `None` (or absent, in the file of an older
    /// service) for a read-only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<SavedScratch>,
}

/// An editable runtime's scratch as the state file keeps it: a restored runtime continues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedScratch {
    /// The scratch directory.
    pub dir: PathBuf,
    /// Named by the user (`--scratch`), kept when the runtime ends.
    pub durable: bool,
}

impl SavedScratch {
    /// What to keep of `scratch`.
    pub fn of(scratch: &Scratch) -> SavedScratch {
        SavedScratch {
            dir: scratch.dir().to_path_buf(),
            durable: scratch.is_durable(),
        }
    }
}

impl SavedRuntime {
    /// What to keep of `runtime`, registered by `owner`.
    pub fn of(runtime: &Runtime, owner: &Owner) -> SavedRuntime {
        SavedRuntime {
            root_pid: runtime.root_pid,
            start_time: runtime.start_time,
            env_spec: runtime.spec.to_string(),
            repos: runtime.repos.clone(),
            owner_uid: owner.uid,
            owner_gid: owner.gid,
            owner_checked: owner.checked_groups.is_some(),
            scratch: runtime.view.scratch().map(SavedScratch::of),
        }
    }

    /// The owner to register it with again; a checked owner's groups are read afresh.
    pub fn owner(&self) -> Owner {
        if self.owner_checked {
            Owner::checked(self.owner_uid, self.owner_gid)
        } else {
            Owner::trusted(self.owner_uid, self.owner_gid)
        }
    }
}

/// The file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct Contents {
    version: u32,
    runtimes: Vec<SavedRuntime>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("cannot {action} the state file {}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is not a state file this service understands.
    #[error("the state file {} is not valid: {reason}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The state file at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// The state file of a service whose control socket is `socket`: beside it, named after it.
    pub fn beside_socket(socket: &Path) -> StateFile {
        StateFile::new(socket.with_extension("state.json"))
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The runtimes saved last; none when there is no file yet.
    pub fn load(&self) -> Result<Vec<SavedRuntime>, StateError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(self.io("read", source)),
        };
        let contents: Contents =
            serde_json::from_str(&text).map_err(|err| self.invalid(err.to_string()))?;
        if contents.version != VERSION {
            return Err(self.invalid(format!(
                "version {} (this service reads version {VERSION})",
                contents.version
            )));
        }
        Ok(contents.runtimes)
    }

    /// Replaces the saved runtimes with `runtimes`, atomically. The file is private to the
    /// service's user (0600): env specs and repository paths are the owners' business.
    pub fn save(&self, runtimes: &[SavedRuntime]) -> Result<(), StateError> {
        let contents = Contents {
            version: VERSION,
            runtimes: runtimes.to_vec(),
        };
        let text = serde_json::to_vec_pretty(&contents)
            .map_err(|err| self.invalid(format!("cannot encode it: {err}")))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = self
            .path
            .with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let written = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(&text)?;
                file.sync_all()
            })
            .and_then(|()| fs::rename(&temporary, &self.path));
        if let Err(source) = written {
            let _ = fs::remove_file(&temporary);
            return Err(self.io("write", source));
        }
        Ok(())
    }

    fn io(&self, action: &'static str, source: io::Error) -> StateError {
        StateError::Io {
            action,
            path: self.path.clone(),
            source,
        }
    }

    fn invalid(&self, reason: String) -> StateError {
        StateError::Invalid {
            path: self.path.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn saved(root_pid: u32) -> SavedRuntime {
        SavedRuntime {
            root_pid,
            start_time: 7,
            env_spec: "/a+/b".into(),
            repos: vec![PathBuf::from("/repo")],
            owner_uid: 501,
            owner_gid: 20,
            owner_checked: true,
            scratch: None,
        }
    }

    #[test]
    fn saved_runtimes_load_back_and_no_file_means_none() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::beside_socket(&dir.path().join("spfs-fuse.sock"));
        assert_eq!(state.path(), dir.path().join("spfs-fuse.state.json"));
        assert_eq!(state.load().unwrap(), []);
        state.save(&[saved(40), saved(41)]).unwrap();
        assert_eq!(state.load().unwrap(), [saved(40), saved(41)]);
        state.save(&[saved(41)]).unwrap();
        assert_eq!(state.load().unwrap(), [saved(41)]);
        let mode = fs::metadata(state.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing but the file is left beside it.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_editable_runtime_keeps_its_scratch_and_an_older_file_reads_as_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path().join("state.json"));
        let mut editable = saved(40);
        editable.scratch = Some(SavedScratch {
            dir: PathBuf::from("/keep/scratch"),
            durable: true,
        });
        state.save(&[editable.clone(), saved(41)]).unwrap();
        assert_eq!(state.load().unwrap(), [editable, saved(41)]);
        // What a service before editable runtimes wrote.
        fs::write(
            state.path(),
            r#"{"version": 1, "runtimes": [{"root_pid": 41, "start_time": 7,
                "env_spec": "/a+/b", "repos": ["/repo"], "owner_uid": 501, "owner_gid": 20,
                "owner_checked": true}]}"#,
        )
        .unwrap();
        assert_eq!(state.load().unwrap(), [saved(41)]);
    }

    #[test]
    fn a_file_of_another_version_or_garbage_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path().join("state.json"));
        fs::write(state.path(), r#"{"version": 2, "runtimes": []}"#).unwrap();
        let err = state.load().unwrap_err().to_string();
        assert!(
            err.contains("version 2") && err.contains("state.json"),
            "{err}"
        );
        fs::write(state.path(), "{").unwrap();
        assert!(matches!(state.load(), Err(StateError::Invalid { .. })));
    }

    #[test]
    fn a_failed_write_keeps_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::new(dir.path().join("state.json"));
        state.save(&[saved(40)]).unwrap();
        // A directory where the temporary file goes: it cannot be written, even by root.
        let temporary = dir
            .path()
            .join(format!(".state.json.{}.tmp", std::process::id()));
        fs::create_dir(&temporary).unwrap();
        assert!(matches!(state.save(&[]), Err(StateError::Io { .. })));
        assert_eq!(state.load().unwrap(), [saved(40)]);
    }

    #[test]
    fn the_owner_comes_back_checked_or_trusted_as_it_was() {
        let mut runtime = saved(40);
        assert!(runtime.owner().checked_groups.is_some());
        runtime.owner_checked = false;
        assert_eq!(runtime.owner(), Owner::trusted(501, 20));
    }
}
