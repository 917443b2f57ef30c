//! Backend selection: a pure function of the facts.

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
