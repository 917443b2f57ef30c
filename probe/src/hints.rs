//! Hints: the one actionable sentence that tells a person how to fix a failed check or mount.
//! `doctor` and the service use the same text.

use crate::backend::Backend;

/// macFUSE is missing.
pub const INSTALL_MACFUSE: &str = "install macFUSE: `brew install --cask macfuse`, then approve \
     its system extension in System Settings > Privacy & Security and reboot";

/// macFUSE is installed but cannot mount: its mount helper is gone.
pub const REINSTALL_MACFUSE: &str =
    "reinstall macFUSE, whose mount helper is missing: `brew reinstall --cask macfuse`";

/// The macFUSE kext is not approved (or not yet loaded) on Apple Silicon.
pub const APPROVE_KEXT_APPLE_SILICON: &str = "approve the macFUSE kext: first shut down, hold \
     the power button to enter Recovery, and in Startup Security Utility choose Reduced Security \
     with user management of kernel extensions; then click Allow in System Settings > Privacy & \
     Security and reboot; `spfs-fuse doctor --mount-test` confirms it";

/// The macFUSE kext is not approved (or not yet loaded) on an Intel Mac.
pub const APPROVE_KEXT_INTEL: &str = "approve the macFUSE kext: click Allow in System Settings > \
     Privacy & Security and reboot; `spfs-fuse doctor --mount-test` confirms it";

/// The macFUSE kext is not approved, when the machine is not known.
pub const APPROVE_KEXT: &str = "approve the macFUSE kext: click Allow in System Settings > \
     Privacy & Security and reboot (on Apple Silicon, first choose Reduced Security in \
     Recovery's Startup Security Utility)";

/// FUSE-T is missing.
pub const INSTALL_FUSE_T: &str = "install FUSE-T: `brew install --cask macos-fuse-t/cask/fuse-t`";

/// FUSE-T is installed but its NFS server `go-nfsv4` is missing.
pub const REPAIR_FUSE_T: &str = "repair FUSE-T, whose server go-nfsv4 is missing: \
     `brew reinstall --cask macos-fuse-t/cask/fuse-t`";

/// Neither macOS backend is installed.
pub const INSTALL_A_MACOS_BACKEND: &str = "install macFUSE (`brew install --cask macfuse`) or \
     FUSE-T (`brew install --cask macos-fuse-t/cask/fuse-t`)";

/// FUSE-T was asked for on a host that is not macOS.
pub const FUSE_T_NEEDS_MACOS: &str =
    "on Linux use `--backend kext` (the /dev/fuse device) or `--backend auto`";

/// The host is neither macOS nor Linux.
pub const UNSUPPORTED_OS: &str = "spfs-fuse runs on macOS and Linux only";

/// `/dev/fuse` is missing on Linux.
pub const LINUX_DEVICE_MISSING: &str = "load the FUSE module with `modprobe fuse` (in a \
     container, start it with `--device /dev/fuse --cap-add SYS_ADMIN`)";

/// `/dev/fuse` exists but this user may not open it.
pub const LINUX_DEVICE_PERMISSIONS: &str = "let this user open /dev/fuse: run as root, or \
     `chmod 0666 /dev/fuse` (Debian's `fuse3` package installs it that way)";

/// `fusermount3` is not on `PATH`.
pub const INSTALL_FUSE3: &str = "install fusermount3: `apt-get install fuse3` (Debian/Ubuntu) or \
     `dnf install fuse3` (Fedora)";

/// `/spfs` does not exist on macOS, where the root volume is read-only.
pub const ADD_TO_SYNTHETIC_CONF: &str = "create /spfs: `printf 'spfs\\n' | sudo tee -a \
     /etc/synthetic.conf` and reboot, or start the service with `--mountpoint DIR`";

/// `/spfs` is in `/etc/synthetic.conf` but the machine has not rebooted since.
pub const REBOOT_FOR_SYNTHETIC: &str = "reboot to create /spfs from /etc/synthetic.conf (or run \
     `/System/Library/Filesystems/apfs.fs/Contents/Resources/apfs.util -t`)";

/// The mount point is missing on Linux.
pub const MKDIR_MOUNTPOINT: &str = "create the mount point: `sudo mkdir -p /spfs`, or start the \
     service with `--mountpoint DIR`";

/// Something other than a directory is at the mount point.
pub const MOUNTPOINT_NOT_A_DIRECTORY: &str =
    "move the file at the mount point away, or start the service with `--mountpoint DIR`";

/// A dead FUSE mount is left at the mount point (macOS).
pub const STALE_MOUNT_MACOS: &str =
    "force-unmount the dead mount: `umount -f /spfs` (or `diskutil unmount force /spfs`)";

/// A dead FUSE mount is left at the mount point (Linux).
pub const STALE_MOUNT_LINUX: &str =
    "force-unmount the dead mount: `fusermount3 -uz /spfs` (or `umount -l /spfs`)";

/// The per-runtime volumes directory is missing.
pub const VOLUMES_DIR_MISSING: &str =
    "create the volumes directory, or start the service with `--volumes-dir DIR`";

/// Stale `spfs-<pid>` volumes are left behind.
pub const SWEEP: &str = "unmount and remove them: `spfs-fuse sweep`";

/// Something answers on the socket path but no service accepts connections.
pub const STALE_SOCKET: &str =
    "a service died and left its socket: remove it; commands start a new service when needed";

/// Maps the text of a failed mount to the hint that fixes it, when the failure is a known
/// one. The service logs it (and, with an explicit backend, exits with it); `doctor
/// --mount-test` shows it. Matching is case-insensitive on fragments of the messages that
/// `mount_macfuse`, FUSE-T, `fusermount3` and the kernel print.
pub fn hint_for_mount_error(backend: Backend, message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    let has = |fragment: &str| m.contains(fragment);
    let not_found = has("no such file or directory") || has("not found") || has("os error 2)");
    // Dead mounts look the same whichever backend left them.
    if has("transport endpoint is not connected") || has("os error 107)") {
        return Some(STALE_MOUNT_LINUX);
    }
    if has("device not configured") || has("os error 6)") {
        return Some(STALE_MOUNT_MACOS);
    }
    let mountpoint_missing =
        has("bad mount point") || (has("mountpoint") || has("mount point")) && not_found;
    let kext = || {
        if has("the file system is not available") || has("kmerrordomain code=27") {
            Some(APPROVE_KEXT)
        } else if mountpoint_missing {
            Some(if cfg!(target_os = "macos") {
                ADD_TO_SYNTHETIC_CONF
            } else {
                MKDIR_MOUNTPOINT
            })
        } else if (has("mount_macfuse") || has("macfuse.fs")) && not_found {
            Some(REINSTALL_MACFUSE)
        } else if has("fusermount") && not_found {
            Some(INSTALL_FUSE3)
        } else if has("fuse: device not found") || has("/dev/fuse") && not_found {
            Some(LINUX_DEVICE_MISSING)
        } else if has("/dev/fuse") && (has("permission denied") || has("os error 13)")) {
            Some(LINUX_DEVICE_PERMISSIONS)
        } else {
            None
        }
    };
    let fuse_t = || {
        if has("go-nfsv4") && (not_found || has("exited")) {
            Some(REPAIR_FUSE_T)
        } else if has("libfuse-t") {
            Some(INSTALL_FUSE_T)
        } else if mountpoint_missing {
            Some(VOLUMES_DIR_MISSING)
        } else {
            None
        }
    };
    match backend {
        Backend::Kext => kext(),
        Backend::FuseT => fuse_t(),
        Backend::Auto => kext().or_else(fuse_t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_mount_failures_map_to_their_hint() {
        let cases = [
            (
                Backend::Kext,
                "mount_macfuse: the file system is not available (1)",
                APPROVE_KEXT,
            ),
            (
                Backend::Kext,
                "Error Domain=KMErrorDomain Code=27 \"Extension with identifier io.macfuse.filesystems.macfuse not approved to load.\"",
                APPROVE_KEXT,
            ),
            (
                Backend::Kext,
                "failed to spawn /Library/Filesystems/macfuse.fs/Contents/Resources/mount_macfuse: No such file or directory (os error 2)",
                REINSTALL_MACFUSE,
            ),
            (
                Backend::Kext,
                "sh: 1: fusermount3: not found",
                INSTALL_FUSE3,
            ),
            (
                Backend::Kext,
                "fuse: device not found, try 'modprobe fuse' first",
                LINUX_DEVICE_MISSING,
            ),
            (
                Backend::Kext,
                "open /dev/fuse: Permission denied (os error 13)",
                LINUX_DEVICE_PERMISSIONS,
            ),
            (
                Backend::Auto,
                "failed to open /dev/fuse: No such file or directory (os error 2)",
                LINUX_DEVICE_MISSING,
            ),
            (
                Backend::Kext,
                "stat /spfs: Transport endpoint is not connected (os error 107)",
                STALE_MOUNT_LINUX,
            ),
            (
                Backend::FuseT,
                "stat /Volumes/spfs-12: Device not configured (os error 6)",
                STALE_MOUNT_MACOS,
            ),
            (
                Backend::FuseT,
                "could not start /usr/local/bin/go-nfsv4: No such file or directory",
                REPAIR_FUSE_T,
            ),
            (
                Backend::FuseT,
                "dlopen(/usr/local/lib/libfuse-t.dylib): image not found",
                INSTALL_FUSE_T,
            ),
        ];
        for (backend, message, hint) in cases {
            assert_eq!(
                hint_for_mount_error(backend, message),
                Some(hint),
                "{message}"
            );
        }
    }

    #[test]
    fn a_missing_mountpoint_gets_the_platform_hint() {
        let hint = hint_for_mount_error(
            Backend::Kext,
            "fusermount3: bad mount point /spfs: No such file or directory",
        );
        let expected = if cfg!(target_os = "macos") {
            ADD_TO_SYNTHETIC_CONF
        } else {
            MKDIR_MOUNTPOINT
        };
        // "fusermount3 ... No such file" must not read as a missing fusermount3.
        assert_eq!(hint, Some(expected));
    }

    #[test]
    fn unknown_failures_have_no_hint() {
        assert_eq!(hint_for_mount_error(Backend::Kext, "something odd"), None);
        assert_eq!(
            hint_for_mount_error(
                Backend::FuseT,
                "mount_macfuse: the file system is not available"
            ),
            None
        );
    }
}
