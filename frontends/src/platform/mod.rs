//! What differs per platform when handling mount points, and the parts of the kernel policy
//! only one platform's FUSE ABI can name, swapped at compile time.

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod imp;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;
mod nofile;

pub use imp::{
    CURRENT, force_unmount, grants_no_open, in_mount_table, linux_dir_cache, linux_init,
    mount_points, rename_mode,
};
pub use nofile::raise_open_file_limit;
// Only macFUSE's session unmounts with a plain system call (compiled on Linux for its tests).
#[cfg(any(target_os = "macos", test))]
pub use imp::unmount;
// Only Linux's device session widens its mount's readahead, through the device number.
#[cfg(target_os = "linux")]
pub use imp::mount_device;
