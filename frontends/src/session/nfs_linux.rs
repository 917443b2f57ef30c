//! Linux has no FUSE-T: the NFS transport is refused (the per-runtime layout runs over
//! `/dev/fuse` there).

use std::sync::Arc;

use spfs_router::Vfs;

use super::{Mounted, SessionConfig};
use crate::error::MountError;

/// Refuses: FUSE-T exists only on macOS.
pub(super) fn mount(
    _vfs: Arc<Vfs>,
    config: &SessionConfig,
) -> Result<Box<dyn Mounted>, MountError> {
    Err(MountError::Unsupported {
        path: config.mountpoint.clone(),
        transport: config.transport.name(),
    })
}
