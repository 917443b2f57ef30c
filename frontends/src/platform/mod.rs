//! What differs per platform when handling mount points, swapped at compile time.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;

pub use imp::{default_volumes_dir, force_unmount, in_mount_table, is_stale_error, mount_points};
// Only macFUSE's session unmounts with a plain system call (compiled on Linux for its tests).
#[cfg(any(target_os = "macos", test))]
pub use imp::unmount;
// Only Linux's device session widens its mount's readahead, through the device number.
#[cfg(target_os = "linux")]
pub use imp::mount_device;
