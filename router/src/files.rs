//! The one cache of open source files, by node id, that every read goes through: reads on a
//! handle from OPEN and reads by node id alone (a kernel that skips OPEN) alike.
//!
//! Views never change and node ids are never reused, so an open file cached under a node id
//! can only ever be that node's file, and a handle needs to name nothing but its node. An open
//! handle pins its file; files read by node id alone stay only while they are among the last
//! few of their shard, which saves reopening a large file read in many requests (a small file
//! takes one request anyway).

use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::FsError;
use crate::node::NodeId;

/// Shards of the cache: reads of different files should not contend.
pub(crate) const SHARDS: usize = 32;

/// Unpinned files kept per shard, oldest out first.
pub(crate) const UNPINNED_PER_SHARD: usize = 4;

/// Files of removed entries kept per shard for descriptors that may still be open, oldest
/// out first: a bound for a kernel that sends no FORGET (the service's descriptors are few).
pub(crate) const KEPT_PER_SHARD: usize = 8;

/// One cached file.
#[derive(Debug)]
struct Slot {
    node: NodeId,
    file: Arc<File>,
    /// Open handles on it; a pinned slot is never let go.
    handles: u32,
    /// The file of a removed entry, kept until the kernel forgets the node: the one hold on
    /// it when the kernel sends no OPEN and no RELEASE (Linux's no-open mode).
    kept: bool,
}

impl Slot {
    fn evictable(&self) -> bool {
        self.handles == 0 && !self.kept
    }
}

/// Open source files by node id, oldest first in each shard.
#[derive(Debug)]
pub(crate) struct OpenFiles {
    shards: Vec<Mutex<Vec<Slot>>>,
}

impl Default for OpenFiles {
    fn default() -> OpenFiles {
        OpenFiles {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }
}

impl OpenFiles {
    fn shard(&self, node: NodeId) -> MutexGuard<'_, Vec<Slot>> {
        // Node ids of one view are consecutive in their low bits.
        self.shards[node as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The open file of `node`, opened with `open` on a miss; `pin` counts one more handle on
    /// it, which keeps it until [`OpenFiles::unpin`].
    pub(crate) fn get(
        &self,
        node: NodeId,
        pin: bool,
        open: impl FnOnce() -> Result<File, FsError>,
    ) -> Result<Arc<File>, FsError> {
        if let Some(file) = take(&mut self.shard(node), node, pin) {
            return Ok(file);
        }
        // Opened outside the lock: open(2) of a cold layer file may wait for the disk.
        let file = Arc::new(open()?);
        let mut shard = self.shard(node);
        // Another reader may have opened it meanwhile: keep one.
        if let Some(file) = take(&mut shard, node, pin) {
            return Ok(file);
        }
        make_room(&mut shard);
        shard.push(Slot {
            node,
            file: file.clone(),
            handles: u32::from(pin),
            kept: false,
        });
        Ok(file)
    }

    /// Drops one handle on `node`'s file; the file stays cached as an unpinned one. Returns
    /// whether a handle was open.
    pub(crate) fn unpin(&self, node: NodeId) -> bool {
        let mut shard = self.shard(node);
        match shard.iter_mut().find(|s| s.node == node && s.handles > 0) {
            Some(slot) => {
                slot.handles -= 1;
                true
            }
            None => false,
        }
    }

    /// Puts `file` in as `node`'s, replacing a cached one and keeping its handles: after a
    /// copy-up, every reader and writer of the node goes to the copy.
    pub(crate) fn put(&self, node: NodeId, file: File) {
        let file = Arc::new(file);
        let mut shard = self.shard(node);
        if let Some(slot) = shard.iter_mut().find(|s| s.node == node) {
            slot.file = file;
            return;
        }
        make_room(&mut shard);
        shard.push(Slot {
            node,
            file,
            handles: 0,
            kept: false,
        });
    }

    /// Keeps `node`'s file (cached, or `file`) until [`OpenFiles::forget`]: its entry was
    /// removed, and a descriptor the kernel never told us about may still use it.
    pub(crate) fn keep(&self, node: NodeId, file: Option<File>) {
        let mut shard = self.shard(node);
        if let Some(slot) = shard.iter_mut().find(|s| s.node == node) {
            slot.kept = true;
        } else if let Some(file) = file {
            shard.push(Slot {
                node,
                file: Arc::new(file),
                handles: 0,
                kept: true,
            });
        }
        while shard.iter().filter(|s| s.kept).count() > KEPT_PER_SHARD {
            let Some(oldest) = shard.iter_mut().find(|s| s.kept) else {
                break;
            };
            tracing::debug!(
                node = oldest.node,
                "letting go of the oldest kept file of a removed entry"
            );
            oldest.kept = false;
        }
        make_room(&mut shard);
    }

    /// The kernel forgot `node`: a kept file of a removed entry may go.
    pub(crate) fn forget(&self, node: NodeId) {
        let mut shard = self.shard(node);
        if let Some(slot) = shard.iter_mut().find(|s| s.node == node) {
            slot.kept = false;
        }
        make_room(&mut shard);
    }

    /// Lets go of `node`'s file, handles and all: after a reset the node stands for another
    /// file (its lower one), which the next read opens.
    pub(crate) fn drop_file(&self, node: NodeId) {
        self.shard(node).retain(|s| s.node != node);
    }

    /// `node`'s cached file, if any, without opening it.
    pub(crate) fn peek(&self, node: NodeId) -> Option<Arc<File>> {
        take(&mut self.shard(node), node, false)
    }

    /// Whether `node` has an open handle.
    #[cfg(test)]
    pub(crate) fn is_pinned(&self, node: NodeId) -> bool {
        self.shard(node)
            .iter()
            .any(|s| s.node == node && s.handles > 0)
    }
}

/// Lets the oldest unpinned files of `shard` go until one more fits.
fn make_room(shard: &mut Vec<Slot>) {
    while shard.iter().filter(|s| s.evictable()).count() >= UNPINNED_PER_SHARD {
        let Some(oldest) = shard.iter().position(Slot::evictable) else {
            break;
        };
        shard.remove(oldest);
    }
}

/// `node`'s cached file in `shard`, with one more handle on it when `pin`.
fn take(shard: &mut [Slot], node: NodeId, pin: bool) -> Option<Arc<File>> {
    let slot = shard.iter_mut().find(|s| s.node == node)?;
    slot.handles = slot.handles.saturating_add(u32::from(pin));
    Some(slot.file.clone())
}
