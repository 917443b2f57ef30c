//! FUSE sessions (one per transport) and the one FUSE adapter over the `spfs-router` core.
//!
//! - [`adapter`]: the `fuse-backend-rs` `FileSystem` over the core, and which answers are
//!   caller-dependent;
//! - [`policy`]: the kernel-facing policy (timeouts, open and INIT flags, mount options) as a
//!   value chosen per platform, transport and layout;
//! - [`session`]: mounting and serving, one file per transport (Linux `/dev/fuse`, macFUSE,
//!   FUSE-T);
//! - [`mountpoint`]: stale-mount detection and clearing;
//! - [`sweep`]: unmounting and removing stale per-runtime volumes;
//! - [`invalidate`]: telling a mount's kernel what to forget after a reset;
//! - [`error`]: mount and invalidation errors.

pub mod adapter;
pub mod error;
pub mod invalidate;
pub mod mountpoint;
mod platform;
pub mod policy;
pub mod session;
pub mod sweep;

pub use error::{InvalidateError, MountError, MountFailure};
pub use invalidate::{Invalidator, NotifyChannel};
pub use mountpoint::{is_stale_error, is_stale_mount};
pub use platform::{force_unmount, in_mount_table, raise_open_file_limit};
pub use policy::{KernelPolicy, Platform, RoutingKind};
pub use session::{Session, SessionConfig, Transport};
