//! The one table from a failed mount to the hint that fixes it: by the backend that mounted and
//! the kind of failure, never by the text. The service logs the hint (and, with an explicit
//! backend, exits with it); `doctor --mount-test` shows it. The hint texts are the probe's, so
//! `doctor` and the service say the same.

use spfs_frontends::{MountFailure, Platform};
use spfs_probe::Backend;
use spfs_probe::hints::{
    ADD_TO_SYNTHETIC_CONF, ALLOW_OTHER_NEEDS_ADMIN, APPROVE_KEXT, FUSE_T_NEEDS_MACOS,
    INSTALL_FUSE3, LINUX_DEVICE_MISSING, LINUX_DEVICE_PERMISSIONS, MKDIR_MOUNTPOINT,
    REINSTALL_MACFUSE, REPAIR_FUSE_T, STALE_MOUNT_LINUX, STALE_MOUNT_MACOS, VOLUMES_DIR_MISSING,
};

/// The hint for a mount with `backend` on `platform` that failed with `failure`, when one is
/// known: macOS's mount points and dead mounts need other commands than Linux's. No wildcard
/// arm: a new kind has to pick its hint here.
pub fn mount_hint(
    platform: Platform,
    backend: Backend,
    failure: MountFailure,
) -> Option<&'static str> {
    use Backend::{Auto, FuseT, Kext};
    use MountFailure as F;
    let macos = platform == Platform::MacOs;
    // What only one backend can run into gets its hint under that backend (and `auto`).
    let kext = matches!(backend, Kext | Auto);
    let fuse_t = matches!(backend, FuseT | Auto);
    match failure {
        // Dead mounts look the same whichever backend left them.
        F::StaleMount => Some(if macos {
            STALE_MOUNT_MACOS
        } else {
            STALE_MOUNT_LINUX
        }),
        F::Mountpoint => match backend {
            // Per runtime, volumes go in the volumes directory.
            FuseT => Some(VOLUMES_DIR_MISSING),
            Kext | Auto if macos => Some(ADD_TO_SYNTHETIC_CONF),
            Kext | Auto => Some(MKDIR_MOUNTPOINT),
        },
        // The error says it all: another service is there.
        F::AlreadyMounted => None,
        // An installed mount_macfuse that does not mount is, above all, a kext that is not
        // approved or not loaded; `doctor --mount-test` is how a person confirms it.
        F::HelperRefused => kext.then_some(APPROVE_KEXT),
        // Told apart from other refusals by mount(2)'s errno, not the helper's words.
        F::AllowOtherDenied => kext.then_some(ALLOW_OTHER_NEEDS_ADMIN),
        F::HelperMissing => kext.then_some(REINSTALL_MACFUSE),
        F::DeviceMissing => kext.then_some(LINUX_DEVICE_MISSING),
        F::DeviceDenied => kext.then_some(LINUX_DEVICE_PERMISSIONS),
        F::FusermountMissing => kext.then_some(INSTALL_FUSE3),
        F::ServerMissing | F::ServerExited => fuse_t.then_some(REPAIR_FUSE_T),
        // Only FUSE-T's transport is missing anywhere: off macOS.
        F::Unsupported => fuse_t.then_some(FUSE_T_NEEDS_MACOS),
        F::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_mount_failures_map_to_their_hint() {
        let cases = [
            (Backend::Kext, MountFailure::HelperRefused, APPROVE_KEXT),
            (
                Backend::Kext,
                MountFailure::AllowOtherDenied,
                ALLOW_OTHER_NEEDS_ADMIN,
            ),
            (
                Backend::Auto,
                MountFailure::AllowOtherDenied,
                ALLOW_OTHER_NEEDS_ADMIN,
            ),
            (
                Backend::Kext,
                MountFailure::HelperMissing,
                REINSTALL_MACFUSE,
            ),
            (
                Backend::Kext,
                MountFailure::FusermountMissing,
                INSTALL_FUSE3,
            ),
            (
                Backend::Kext,
                MountFailure::DeviceMissing,
                LINUX_DEVICE_MISSING,
            ),
            (
                Backend::Kext,
                MountFailure::DeviceDenied,
                LINUX_DEVICE_PERMISSIONS,
            ),
            (
                Backend::Auto,
                MountFailure::DeviceMissing,
                LINUX_DEVICE_MISSING,
            ),
            (Backend::FuseT, MountFailure::ServerMissing, REPAIR_FUSE_T),
            (Backend::FuseT, MountFailure::ServerExited, REPAIR_FUSE_T),
            (
                Backend::FuseT,
                MountFailure::Mountpoint,
                VOLUMES_DIR_MISSING,
            ),
            (
                Backend::FuseT,
                MountFailure::Unsupported,
                FUSE_T_NEEDS_MACOS,
            ),
        ];
        for (backend, failure, hint) in cases {
            assert_eq!(
                mount_hint(Platform::current(), backend, failure),
                Some(hint),
                "{backend} {failure:?}"
            );
        }
    }

    #[test]
    fn dead_mounts_and_missing_mount_points_get_the_platform_hint() {
        for (platform, stale, mkdir) in [
            (Platform::MacOs, STALE_MOUNT_MACOS, ADD_TO_SYNTHETIC_CONF),
            (Platform::Linux, STALE_MOUNT_LINUX, MKDIR_MOUNTPOINT),
        ] {
            for backend in [Backend::Kext, Backend::FuseT, Backend::Auto] {
                assert_eq!(
                    mount_hint(platform, backend, MountFailure::StaleMount),
                    Some(stale)
                );
            }
            assert_eq!(
                mount_hint(platform, Backend::Kext, MountFailure::Mountpoint),
                Some(mkdir)
            );
        }
    }

    #[test]
    fn unknown_failures_and_other_backends_failures_have_no_hint() {
        assert_eq!(
            mount_hint(Platform::current(), Backend::Kext, MountFailure::Other),
            None
        );
        assert_eq!(
            mount_hint(
                Platform::current(),
                Backend::Kext,
                MountFailure::AlreadyMounted
            ),
            None
        );
        // One backend's failure never gets another backend's hint.
        assert_eq!(
            mount_hint(
                Platform::current(),
                Backend::FuseT,
                MountFailure::HelperRefused
            ),
            None
        );
        assert_eq!(
            mount_hint(
                Platform::current(),
                Backend::Kext,
                MountFailure::ServerMissing
            ),
            None
        );
        assert_eq!(
            mount_hint(
                Platform::current(),
                Backend::FuseT,
                MountFailure::AllowOtherDenied
            ),
            None
        );
    }
}
