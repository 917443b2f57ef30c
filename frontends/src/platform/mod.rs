//! What differs per platform when handling mount points, swapped at compile time.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;

pub use imp::{force_unmount, in_mount_table, is_stale_error, mount_points, unmount};
// Only Linux's device session widens its mount's readahead, through the device number.
#[cfg(target_os = "linux")]
pub use imp::mount_device;
