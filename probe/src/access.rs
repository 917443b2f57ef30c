//! Who runs the service, and whether that user may mount where the service would.
//!
//! XNU lets a caller other than root `mount(2)` only on a directory the caller owns (xnu
//! `bsd/vfs/vfs_syscalls.c`, mount: "If the user is not root, ensure that they own the
//! directory onto which we are attempting to mount"; it follows symlinks, so a link counts by
//! its target's owner). The mode is not looked at there. Creating a volume's directory needs
//! write and search permission on the volumes directory, by the mode's owner, group or other
//! bits, whichever class the user falls in first; `/Volumes` is root's, mode 1755, since macOS
//! 10.12. Access control lists are not read: they can only grant more than the mode shows.
//!
//! The decisions are pure functions of the probed owner and mode and of the user, so each case
//! is tested without the files or the user it describes.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

/// The user who will run the service: whose permissions decide where it may mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceUser {
    /// The effective uid; 0 is the system service.
    pub uid: u32,
    /// The effective gid and the supplementary groups.
    pub groups: Vec<u32>,
}

impl ServiceUser {
    /// Root: the system service (a LaunchDaemon, `sudo brew services start spfs-fuse`).
    pub fn root() -> ServiceUser {
        ServiceUser {
            uid: 0,
            groups: vec![0],
        }
    }

    /// The user running this process, as the kernel checks it: the effective ids.
    pub fn current() -> ServiceUser {
        // SAFETY: geteuid(2) and getegid(2) take no arguments and cannot fail.
        let (uid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut groups = vec![egid];
        groups.extend(supplementary_groups());
        groups.sort_unstable();
        groups.dedup();
        ServiceUser { uid, groups }
    }

    /// Whether this is root, whom neither check below restricts.
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether this user may `mount(2)` on a directory with this owner.
    pub fn may_mount_on(&self, owner: &Ownership) -> bool {
        self.is_root() || owner.uid == self.uid
    }

    /// Whether this user may create an entry in a directory with this owner and mode: write
    /// and search permission in the first class the user falls in (owner, group, other).
    pub fn may_create_in(&self, owner: &Ownership) -> bool {
        const WRITE_AND_SEARCH: u32 = 0o3;
        let bits = if self.uid == owner.uid {
            owner.mode >> 6
        } else if self.groups.contains(&owner.gid) {
            owner.mode >> 3
        } else {
            owner.mode
        };
        self.is_root() || bits & WRITE_AND_SEARCH == WRITE_AND_SEARCH
    }
}

/// The supplementary groups of this process; none when they cannot be read.
fn supplementary_groups() -> Vec<u32> {
    // SAFETY: with a size of 0, getgroups(2) writes nothing and returns the count.
    let count = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    let Ok(len) = usize::try_from(count) else {
        return Vec::new();
    };
    let mut groups: Vec<libc::gid_t> = vec![0; len];
    // SAFETY: `groups` has room for `count` entries, the size passed.
    let got = unsafe { libc::getgroups(count, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(got).unwrap_or(0));
    groups
}

/// The owner and permission bits of a path (what `stat(2)` says, following symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// The owner's uid.
    pub uid: u32,
    /// The group's gid.
    pub gid: u32,
    /// The permission bits, with setuid, setgid and sticky (`0o1755` for `/Volumes`); in
    /// JSON an octal string (`"1755"`).
    #[serde(serialize_with = "octal")]
    pub mode: u32,
}

fn octal<S: serde::Serializer>(mode: &u32, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{mode:04o}"))
}

impl Ownership {
    /// Reads `path`'s owner and mode, following symlinks: the default of
    /// [`crate::ProbeConfig::ownership`].
    pub fn of(path: &Path) -> io::Result<Ownership> {
        let meta = std::fs::metadata(path)?;
        Ok(Ownership {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        })
    }
}

impl std::fmt::Display for Ownership {
    /// `uid 0, gid 0, mode 1755`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "uid {}, gid {}, mode {:04o}",
            self.uid, self.gid, self.mode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: u32 = 501;
    const STAFF: u32 = 20;

    fn alice() -> ServiceUser {
        ServiceUser {
            uid: ALICE,
            groups: vec![STAFF],
        }
    }

    fn owned(uid: u32, gid: u32, mode: u32) -> Ownership {
        Ownership { uid, gid, mode }
    }

    #[test]
    fn a_user_mounts_only_on_a_directory_of_their_own_and_root_anywhere() {
        let root_owned_spfs = owned(0, 0, 0o755);
        let alices = owned(ALICE, STAFF, 0o755);
        assert!(!alice().may_mount_on(&root_owned_spfs));
        assert!(alice().may_mount_on(&alices));
        // The mode plays no part in mount(2): a read-only directory of one's own will do, and
        // a world-writable one of another user will not.
        assert!(alice().may_mount_on(&owned(ALICE, STAFF, 0o500)));
        assert!(!alice().may_mount_on(&owned(0, 0, 0o777)));
        assert!(ServiceUser::root().may_mount_on(&root_owned_spfs));
        assert!(ServiceUser::root().may_mount_on(&alices));
    }

    #[test]
    fn slash_volumes_takes_volumes_from_root_only() {
        let volumes = owned(0, 0, 0o1755);
        assert!(!alice().may_create_in(&volumes));
        assert!(ServiceUser::root().may_create_in(&volumes));
    }

    #[test]
    fn creating_needs_write_and_search_in_the_users_first_class() {
        assert!(alice().may_create_in(&owned(ALICE, STAFF, 0o700)));
        assert!(
            !alice().may_create_in(&owned(ALICE, STAFF, 0o500)),
            "no write"
        );
        assert!(
            !alice().may_create_in(&owned(ALICE, STAFF, 0o600)),
            "no search"
        );
        // The owner class decides for the owner, though others may write.
        assert!(!alice().may_create_in(&owned(ALICE, STAFF, 0o577)));
        assert!(alice().may_create_in(&owned(0, STAFF, 0o770)), "by group");
        assert!(
            !alice().may_create_in(&owned(0, STAFF, 0o757)),
            "group class decides"
        );
        assert!(
            alice().may_create_in(&owned(0, 0, 0o1777)),
            "by other, as /tmp"
        );
        assert!(!alice().may_create_in(&owned(0, 0, 0o755)));
    }

    #[test]
    fn ownership_is_read_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o750))
            .unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("target", &link).unwrap();
        let read = Ownership::of(&link).unwrap();
        assert_eq!(read, Ownership::of(&target).unwrap());
        assert_eq!(read.mode, 0o750);
        assert_eq!(read.uid, ServiceUser::current().uid);
    }
}
