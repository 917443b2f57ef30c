//! Hints: the one actionable sentence that tells a person how to fix a failed check or mount.
//! `doctor` and the service use the same text; the service's table picks one for each kind
//! of mount failure.

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

/// macFUSE refused `allow_other` (serving other users) to a service that is neither root nor
/// in the admin group.
pub const ALLOW_OTHER_NEEDS_ADMIN: &str = "macFUSE lets only root or the admin group serve \
     other users (`allow_other`): run the service as root (the system service: `sudo brew \
     services start spfs-fuse`), or add this user to the admin group (`sudo dseditgroup -o \
     edit -a \"$USER\" -t user admin`), or serve only this user (a per-user service on its own \
     socket: `brew services start spfs-fuse`)";

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

/// The mount point is not the per-user service's own (macOS: a plain `synthetic.conf` line
/// makes a root-owned `/spfs`, and XNU lets a user mount only on a directory that user owns).
pub const MOUNTPOINT_NOT_OWNED: &str = "make /spfs a symlink to a directory you own: \
     `mkdir -p ~/.spfs`, then in /etc/synthetic.conf replace the line `spfs` with \
     `spfs<TAB>Users/NAME/.spfs` (NAME your user name, a tab between the two) and reboot; or run \
     the system service as root: `sudo brew services start spfs-fuse`";

/// The per-user service cannot create volumes in the volumes directory (`/Volumes` is root's,
/// mode 1755, since macOS 10.12).
pub const VOLUMES_DIR_NOT_WRITABLE: &str = "start the service with `--volumes-dir DIR` on a \
     directory you can write, or without it for the per-user default ~/.spfs-fuse/volumes; \
     /Volumes is for the system service, run as root: `sudo brew services start spfs-fuse`";

/// The mount point is a symlink (a `synthetic.conf` line with a target) to a directory that
/// does not exist.
pub const MKDIR_LINK_TARGET: &str = "create the directory the mount point links to, as the user \
     who runs the service (`mkdir -p ~/.spfs` for a `spfs<TAB>Users/NAME/.spfs` line)";
