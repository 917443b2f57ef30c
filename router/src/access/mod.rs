//! Owner-read checks: a runtime serves only what its owner may read.
//!
//! When the service runs as another user (root, say), it reads layers and repositories with
//! its own rights, so it first checks the registering user's rights from the permission bits
//! along each path: search (`x`) on every directory on the way, read and search on the layer
//! or repository itself. This is portable (no `setfsuid`, no `access(2)` as another user);
//! ACLs are not consulted, so they can only make the check stricter than the kernel.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;

use std::ffi::CStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Who registers a runtime: spfs entries appear owned by `uid`:`gid`, and when the service runs
/// as another user, what they may read bounds what they may register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The registering user.
    pub uid: u32,
    /// Their primary group.
    pub gid: u32,
    /// `Some(groups)`: check every directory layer and repository against `uid`, `gid` and
    /// these supplementary groups. `None`: the owner is the service's own user (or root).
    pub checked_groups: Option<Vec<u32>>,
}

impl Owner {
    /// An owner whose reads are not checked: the service's own user, or root.
    pub fn trusted(uid: u32, gid: u32) -> Owner {
        Owner {
            uid,
            gid,
            checked_groups: None,
        }
    }

    /// An owner checked with its supplementary groups from the user database (none when the
    /// uid has no entry there).
    pub fn checked(uid: u32, gid: u32) -> Owner {
        Owner {
            uid,
            gid,
            checked_groups: Some(supplementary_groups(uid, gid)),
        }
    }

    /// The owner of a registration made by `uid`:`gid` to a service running as `service_uid`:
    /// checked unless it is the same user or root.
    pub fn for_caller(uid: u32, gid: u32, service_uid: u32) -> Owner {
        if uid == service_uid || uid == 0 {
            Owner::trusted(uid, gid)
        } else {
            Owner::checked(uid, gid)
        }
    }

    /// Checks that the owner may list `dir`: every directory above it searchable, `dir` itself
    /// readable and searchable. Always passes for a trusted owner. A `dir` that does not exist
    /// passes when the owner may search its nearest existing ancestor (so the caller's own
    /// "does not exist" error tells them nothing they could not see for themselves).
    pub fn check_readable_dir(&self, dir: &Path) -> Result<(), AccessError> {
        let Some(groups) = &self.checked_groups else {
            return Ok(());
        };
        // Resolve symlinks first, so the bits checked are those of the directories the
        // service will really walk.
        match std::fs::canonicalize(dir) {
            Ok(real) => self.check_path(&real, R_OK | X_OK, dir, groups, "read"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                match dir
                    .ancestors()
                    .skip(1)
                    .find_map(|a| std::fs::canonicalize(a).ok())
                {
                    Some(existing) => self.check_path(&existing, X_OK, dir, groups, "read"),
                    None => Ok(()),
                }
            }
            Err(source) => Err(AccessError::Unreadable {
                uid: self.uid,
                path: dir.to_path_buf(),
                reason: source.to_string(),
            }),
        }
    }

    /// Checks that the owner may commit into the spfs repository `repo`: every directory
    /// above it searchable, `repo` and those of its `objects`, `payloads` and `tags`
    /// directories that exist writable and searchable. A repository that does not exist yet
    /// needs its nearest existing ancestor writable (the commit makes it). Always passes for a
    /// trusted owner, whose writes the kernel checks itself.
    pub fn check_writable_repo(&self, repo: &Path) -> Result<(), AccessError> {
        let Some(groups) = &self.checked_groups else {
            return Ok(());
        };
        let existing = repo
            .ancestors()
            .find_map(|a| std::fs::canonicalize(a).ok().map(|real| (a, real)));
        let Some((found, real)) = existing else {
            return Ok(());
        };
        self.check_path(&real, W_OK | X_OK, repo, groups, "write")?;
        if found != repo {
            return Ok(());
        }
        for sub in ["objects", "payloads", "tags"] {
            if let Ok(real) = std::fs::canonicalize(repo.join(sub)) {
                self.check_path(&real, W_OK | X_OK, repo, groups, "write")?;
            }
        }
        Ok(())
    }

    /// Checks search permission on every directory of `real` (absolute, no symlinks) above
    /// its last component, and `last` on the last one; errors name `named` and what the
    /// owner wanted to do with it (`action`: read, write).
    fn check_path(
        &self,
        real: &Path,
        last: u32,
        named: &Path,
        groups: &[u32],
        action: &'static str,
    ) -> Result<(), AccessError> {
        let mut steps: Vec<&Path> = real.ancestors().collect();
        steps.reverse();
        let final_step = steps.len().saturating_sub(1);
        for (i, step) in steps.into_iter().enumerate() {
            let meta = std::fs::metadata(step).map_err(|source| AccessError::Unreadable {
                uid: self.uid,
                path: step.to_path_buf(),
                reason: source.to_string(),
            })?;
            let need = if i == final_step { last } else { X_OK };
            let have = allowed(
                meta.mode(),
                meta.uid(),
                meta.gid(),
                self.uid,
                self.gid,
                groups,
            );
            if have & need != need {
                let missing = need & !have;
                return Err(AccessError::Denied {
                    uid: self.uid,
                    action,
                    layer: named.to_path_buf(),
                    path: step.to_path_buf(),
                    need: if missing & W_OK != 0 {
                        "write"
                    } else if missing & R_OK != 0 {
                        "read"
                    } else {
                        "search"
                    },
                });
            }
        }
        Ok(())
    }
}

const R_OK: u32 = 4;
const W_OK: u32 = 2;
const X_OK: u32 = 1;

/// The `rwx` bits (as 4/2/1) that `uid` with `gid` and `groups` gets on a file with `mode`,
/// owned by `file_uid`:`file_gid`, by the classic owner/group/other rule.
fn allowed(mode: u32, file_uid: u32, file_gid: u32, uid: u32, gid: u32, groups: &[u32]) -> u32 {
    if uid == 0 {
        return R_OK | W_OK | X_OK;
    }
    if file_uid == uid {
        (mode >> 6) & 7
    } else if file_gid == gid || groups.contains(&file_gid) {
        (mode >> 3) & 7
    } else {
        mode & 7
    }
}

/// Why an owner may not use a layer or repository.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A directory on the way lacks the permission the owner needs.
    #[error("uid {uid} may not {action} {layer:?}: no {need} permission on {path:?}")]
    Denied {
        /// The registering user.
        uid: u32,
        /// What they wanted to do with it: `read`, or `write` (a commit's repository).
        action: &'static str,
        /// The layer or repository named in the registration.
        layer: PathBuf,
        /// The directory whose bits refuse.
        path: PathBuf,
        /// `read`, `write` or `search`.
        need: &'static str,
    },
    /// The path cannot be inspected at all.
    #[error("uid {uid} may not read {path:?}: {reason}")]
    Unreadable {
        /// The registering user.
        uid: u32,
        /// The path.
        path: PathBuf,
        /// What inspecting it said.
        reason: String,
    },
}

/// The supplementary groups of `uid` from the user database, `gid` included.
fn supplementary_groups(uid: u32, gid: u32) -> Vec<u32> {
    let mut groups = user_name(uid)
        .map(|name| imp::group_list(&name, gid))
        .unwrap_or_default();
    groups.push(gid);
    groups.sort_unstable();
    groups.dedup();
    groups
}

/// The login name of `uid`, if the user database has one.
fn user_name(uid: u32) -> Option<std::ffi::CString> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: passwd is plain data; getpwuid_r fills it with pointers into `buf`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` outlives every use of `pwd`.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: pw_name points at a NUL-terminated string inside `buf`, still alive here.
        return Some(unsafe { CStr::from_ptr(pwd.pw_name) }.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn owner_group_other_bits() {
        assert_eq!(allowed(0o750, 10, 20, 10, 99, &[]), 7);
        assert_eq!(allowed(0o750, 10, 20, 11, 20, &[]), 5);
        assert_eq!(allowed(0o750, 10, 20, 11, 99, &[20]), 5);
        assert_eq!(allowed(0o750, 10, 20, 11, 99, &[21]), 0);
        // The owner class decides even when it grants less than "other".
        assert_eq!(allowed(0o007, 10, 20, 10, 20, &[]), 0);
        assert_eq!(allowed(0o000, 10, 20, 0, 0, &[]), 7);
    }

    #[test]
    fn a_locked_parent_or_layer_refuses_and_names_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        let locked = tmp.path().join("locked");
        std::fs::create_dir_all(open.join("layer")).unwrap();
        std::fs::create_dir_all(locked.join("layer")).unwrap();
        for (dir, mode) in [
            (tmp.path().to_path_buf(), 0o755),
            (open.clone(), 0o711),
            (open.join("layer"), 0o755),
            (locked.clone(), 0o700),
            (locked.join("layer"), 0o755),
        ] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let me = std::fs::metadata(tmp.path()).unwrap();
        let stranger = Owner {
            uid: me.uid() + 4242,
            gid: me.gid() + 4242,
            checked_groups: Some(vec![]),
        };
        stranger.check_readable_dir(&open.join("layer")).unwrap();
        let err = stranger.check_readable_dir(&open).unwrap_err();
        assert!(err.to_string().contains("no read permission"), "{err}");
        let err = stranger
            .check_readable_dir(&locked.join("layer"))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no search permission"), "{text}");
        assert!(text.contains(&format!("{locked:?}")), "{text}");
        Owner::trusted(stranger.uid, stranger.gid)
            .check_readable_dir(&locked.join("layer"))
            .unwrap();
        // What does not exist is only reported where the owner could have seen that itself.
        stranger
            .check_readable_dir(&open.join("nope/deeper"))
            .unwrap();
        let err = stranger
            .check_readable_dir(&locked.join("nope"))
            .unwrap_err();
        assert!(err.to_string().contains("no search permission"), "{err}");
    }

    #[test]
    fn a_commit_needs_write_permission_on_the_repository_and_its_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join("objects")).unwrap();
        std::fs::create_dir_all(repo.join("tags")).unwrap();
        let me = std::fs::metadata(tmp.path()).unwrap();
        let stranger = Owner {
            uid: me.uid() + 4242,
            gid: me.gid() + 4242,
            checked_groups: Some(vec![]),
        };
        let mode = |dir: &Path, mode| {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        mode(tmp.path(), 0o755);
        for dir in [repo.clone(), repo.join("objects"), repo.join("tags")] {
            mode(&dir, 0o777);
        }
        stranger.check_writable_repo(&repo).unwrap();
        mode(&repo.join("tags"), 0o755);
        let err = stranger.check_writable_repo(&repo).unwrap_err().to_string();
        assert!(
            err.contains("may not write") && err.contains("no write permission"),
            "{err}"
        );
        assert!(err.contains("tags"), "{err}");
        mode(&repo, 0o755);
        let err = stranger.check_writable_repo(&repo).unwrap_err().to_string();
        assert!(err.contains("no write permission"), "{err}");
        // A repository to be made needs its nearest existing ancestor writable.
        let err = stranger
            .check_writable_repo(&repo.join("new/deeper"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no write permission"), "{err}");
        stranger
            .check_writable_repo(&repo.join("objects/new"))
            .unwrap();
        Owner::trusted(stranger.uid, stranger.gid)
            .check_writable_repo(&repo)
            .unwrap();
    }

    #[test]
    fn the_user_database_gives_root_its_groups() {
        assert!(supplementary_groups(0, 0).contains(&0));
        assert_eq!(Owner::for_caller(0, 0, 1000).checked_groups, None);
        assert_eq!(Owner::for_caller(1000, 1000, 1000).checked_groups, None);
        assert!(Owner::for_caller(1000, 1000, 0).checked_groups.is_some());
    }
}
