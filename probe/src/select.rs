//! Backend selection: a pure function of the facts.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::backend::{Backend, Os};
use crate::facts::Facts;
use crate::hints;

/// The outcome of selection: the usable backends in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Selection {
    /// What was asked for.
    pub requested: Backend,
    /// Usable backends, best first. With `auto` the service falls back along this list
    /// when a mount fails; an explicit backend is the only entry, or the list is empty.
    pub candidates: Vec<Backend>,
    /// The backends that were considered and are not usable, with why.
    pub rejected: Vec<Rejection>,
    /// FUSE-T's NFS server as the probe found it ([`crate::FuseTFacts::server`]): what a
    /// `fuse-t` session runs, so the service hands it on instead of looking again.
    pub nfs_server: Option<PathBuf>,
}

/// Why a backend cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// The backend.
    pub backend: Backend,
    /// What is wrong, as a sentence fragment (`macFUSE is not installed`).
    pub reason: String,
    /// How to fix it.
    pub hint: &'static str,
}

impl Selection {
    /// The backend to use: the first candidate.
    pub fn backend(&self) -> Option<Backend> {
        self.candidates.first().copied()
    }
}

/// One line for logs: `auto: kext, then fuse-t` or `kext: none usable (macFUSE is not
/// installed)`.
impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.requested)?;
        let candidates: Vec<&str> = self.candidates.iter().map(|b| b.as_str()).collect();
        if candidates.is_empty() {
            f.write_str("none usable")?;
        } else {
            f.write_str(&candidates.join(", then "))?;
        }
        for rejection in &self.rejected {
            write!(f, " ({} rejected: {})", rejection.backend, rejection.reason)?;
        }
        Ok(())
    }
}

/// Chooses backends for `requested`. `auto` prefers `kext` when macFUSE is installed and
/// loaded or loadable (on Linux: when `/dev/fuse` and `fusermount3` are usable), then
/// `fuse-t` when FUSE-T and its server are installed. An explicit backend is checked the
/// same way and never replaced by another.
pub fn select(facts: &Facts, requested: Backend) -> Selection {
    let considered: &[Backend] = match requested {
        // FUSE-T exists only on macOS; elsewhere `auto` means the FUSE device.
        Backend::Auto if facts.os == Os::Macos => &Backend::CONCRETE,
        Backend::Auto => &[Backend::Kext],
        Backend::Kext => &[Backend::Kext],
        Backend::FuseT => &[Backend::FuseT],
    };
    let mut selection = Selection {
        requested,
        candidates: Vec::new(),
        rejected: Vec::new(),
        nfs_server: facts.fuse_t.as_ref().and_then(|t| t.server.clone()),
    };
    for &backend in considered {
        match usable(facts, backend) {
            Ok(()) => selection.candidates.push(backend),
            Err(rejection) => selection.rejected.push(rejection),
        }
    }
    selection
}

/// Whether one concrete backend can be used on this host, and if not, why.
pub fn usable(facts: &Facts, backend: Backend) -> Result<(), Rejection> {
    let reject = |reason: &str, hint: &'static str| {
        Err(Rejection {
            backend,
            reason: reason.to_owned(),
            hint,
        })
    };
    match (facts.os, backend) {
        (_, Backend::Auto) => reject(
            "`auto` is not a concrete backend",
            "ask for `kext` or `fuse-t`",
        ),
        (Os::Other, _) => reject(
            "this OS has no supported FUSE transport",
            hints::UNSUPPORTED_OS,
        ),
        (Os::Macos, Backend::Kext) => {
            let macfuse = facts.macfuse.clone().unwrap_or_default();
            if !macfuse.installed {
                reject("macFUSE is not installed", hints::INSTALL_MACFUSE)
            } else if !(macfuse.loaded || macfuse.mount_helper) {
                reject(
                    "macFUSE is installed, but its kext is not loaded and its mount helper is missing",
                    hints::REINSTALL_MACFUSE,
                )
            } else {
                Ok(())
            }
        }
        (Os::Macos, Backend::FuseT) => {
            let fuse_t = facts.fuse_t.clone().unwrap_or_default();
            if !fuse_t.installed {
                reject("FUSE-T is not installed", hints::INSTALL_FUSE_T)
            } else if fuse_t.server.is_none() {
                reject(
                    "FUSE-T is installed, but its server go-nfsv4 is missing",
                    hints::REPAIR_FUSE_T,
                )
            } else {
                Ok(())
            }
        }
        (Os::Linux, Backend::Kext) => {
            let linux = facts.linux_fuse.clone().unwrap_or_default();
            if !linux.device {
                reject("/dev/fuse does not exist", hints::LINUX_DEVICE_MISSING)
            } else if !linux.device_access {
                reject(
                    "/dev/fuse cannot be opened by this user",
                    hints::LINUX_DEVICE_PERMISSIONS,
                )
            } else if linux.fusermount.is_none() {
                reject("fusermount3 is not on PATH", hints::INSTALL_FUSE3)
            } else {
                Ok(())
            }
        }
        (Os::Linux, Backend::FuseT) => {
            reject("FUSE-T exists only on macOS", hints::FUSE_T_NEEDS_MACOS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::{FuseTFacts, MacFuseFacts, MountpointFacts, MountpointState, VolumesFacts};

    fn mac(macfuse: MacFuseFacts, fuse_t: FuseTFacts) -> Facts {
        Facts {
            os: Os::Macos,
            os_version: Some("26.1".into()),
            arch: Some("arm64".into()),
            macfuse: Some(macfuse),
            fuse_t: Some(fuse_t),
            linux_fuse: None,
            mountpoint: MountpointFacts {
                path: "/spfs".into(),
                state: MountpointState::Directory,
                owner: None,
                link: None,
            },
            volumes: VolumesFacts {
                dir: "/Volumes".into(),
                exists: true,
                stale: Vec::new(),
                owner: None,
                creatable_in: None,
            },
            service: None,
            service_user: crate::ServiceUser::root(),
        }
    }

    fn macfuse(loaded: bool, mount_helper: bool) -> MacFuseFacts {
        MacFuseFacts {
            installed: true,
            version: Some("5.0.7".into()),
            mount_helper,
            loaded,
            loaded_version: None,
            fskit_framework: false,
        }
    }

    fn fuse_t(server: bool) -> FuseTFacts {
        FuseTFacts {
            installed: true,
            version: Some("1.0.44".into()),
            server: server.then(|| "/usr/local/bin/go-nfsv4".into()),
        }
    }

    #[test]
    fn kext_is_usable_when_loaded_or_loadable() {
        for (loaded, helper, usable) in [
            (true, true, true),
            (true, false, true),
            (false, true, true),
            (false, false, false),
        ] {
            let facts = mac(macfuse(loaded, helper), FuseTFacts::default());
            let selection = select(&facts, Backend::Auto);
            let expected = if usable { vec![Backend::Kext] } else { vec![] };
            assert_eq!(
                selection.candidates, expected,
                "loaded {loaded}, helper {helper}"
            );
        }
    }

    #[test]
    fn an_explicit_backend_is_never_replaced() {
        let facts = mac(macfuse(true, true), fuse_t(false));
        let selection = select(&facts, Backend::FuseT);
        assert_eq!(selection.backend(), None);
        assert_eq!(selection.rejected[0].hint, hints::REPAIR_FUSE_T);
        assert_eq!(
            selection.to_string(),
            "fuse-t: none usable (fuse-t rejected: FUSE-T is installed, but its server go-nfsv4 is missing)"
        );
    }

    #[test]
    fn auto_lists_every_usable_backend_best_first() {
        let facts = mac(macfuse(false, true), fuse_t(true));
        let selection = select(&facts, Backend::Auto);
        assert_eq!(selection.candidates, [Backend::Kext, Backend::FuseT]);
        assert_eq!(selection.to_string(), "auto: kext, then fuse-t");
    }
}
