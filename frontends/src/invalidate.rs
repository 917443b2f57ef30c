//! Telling a mount's kernel to forget what it cached, after the core changed a view behind its
//! back (a reset): each [`Invalidation`] becomes one FUSE notification, a message the service
//! writes to the connection unasked (unique 0, the notify code in the error field), outside
//! any request.
//!
//! What each session's kernel does with them, read in its source:
//!
//! | session | INVAL_ENTRY | INVAL_INODE | where |
//! |---|---|---|---|
//! | Linux `/dev/fuse` (read(2) workers, and FUSE over io_uring: notifications still go through a write(2) to the device) | drops the dentry (a negative one too) and the parent's attributes and cached listing; a name not in the dcache answers `ENOENT` and leaves the parent alone | drops the attributes and every cached page (a directory's cached listing too) | `fs/fuse/dir.c` `fuse_reverse_inval_entry`, `fs/fuse/inode.c` `fuse_reverse_inval_inode` |
//! | macFUSE kext | purges the name (and names in it) from the vnode name cache and drops the parent's attributes; the child vnode keeps its attributes | drops the attributes and the UBC pages, then refreshes a regular file's size with a GETATTR; only on a synchronous mount (never `nosyncwrites`) | osxfuse/kext `support/osxfuse-3` `fuse_notify.c`, `fuse_ipc.c` |
//! | FUSE-T | accepted and dropped | accepted and dropped | macos-fuse-t/libfuse sends them like replies (`fuse_lowlevel.c`); `go-nfsv4` drops them (commontoolsinc/labs#4737, FUSE-T 1.2.7) |
//!
//! On FUSE-T a reset therefore shows once the NFS client's attribute cache expires (3 to 56 s
//! measured in labs#4737), at once on a volume mounted with `noattrcache`. The notifications
//! are still sent there, as libfuse-t does, so a `go-nfsv4` that starts honouring them needs
//! nothing here.
//!
//! A notification must never be sent from inside a request handler: Linux's INVAL_ENTRY takes
//! the parent directory's lock and INVAL_INODE waits for locked pages, either of which a
//! request in flight may hold while it waits for that very handler. The service sends them
//! from its own thread, after the core's reset returned.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use spfs_router::Invalidation;

use crate::error::InvalidateError;
use crate::session::notification;

/// A connection to a mount's kernel that takes whole notifications: the session's FUSE device
/// or socket. Sessions make their own; tests stand in for a kernel with one.
pub trait NotifyChannel: Send + Sync {
    /// Sends one whole notification message.
    fn notify(&self, message: &[u8]) -> io::Result<()>;
}

/// Tells one mount's kernel what to forget. Cheap to clone, usable from any thread; once the
/// mount's session has ended it sends nothing (an unmounted kernel caches nothing).
#[derive(Clone)]
pub struct Invalidator {
    shared: Arc<Shared>,
}

struct Shared {
    mountpoint: PathBuf,
    /// `None` once the session has ended, which releases the device.
    channel: RwLock<Option<Arc<dyn NotifyChannel>>>,
    honoured: bool,
}

impl std::fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidator")
            .field("mountpoint", &self.shared.mountpoint)
            .field("honoured", &self.shared.honoured)
            .finish_non_exhaustive()
    }
}

impl Invalidator {
    /// An invalidator for the mount at `mountpoint`, sending through `channel`; `honoured`
    /// says whether that kernel acts on notifications (see the module's table).
    pub fn new(mountpoint: &Path, channel: Arc<dyn NotifyChannel>, honoured: bool) -> Invalidator {
        Invalidator {
            shared: Arc::new(Shared {
                mountpoint: mountpoint.to_path_buf(),
                channel: RwLock::new(Some(channel)),
                honoured,
            }),
        }
    }

    /// One for a mount that takes no notifications at all (or a session that could not
    /// keep its device): sends nothing, and is not [`honoured`](Invalidator::honoured).
    pub fn none(mountpoint: &Path) -> Invalidator {
        Invalidator {
            shared: Arc::new(Shared {
                mountpoint: mountpoint.to_path_buf(),
                channel: RwLock::new(None),
                honoured: false,
            }),
        }
    }

    /// Whether the mount's kernel acts on notifications (`false` on FUSE-T: there the NFS
    /// client's attribute cache decides when a change shows).
    pub fn honoured(&self) -> bool {
        self.shared.honoured
    }

    /// The mount point of the mount it tells.
    pub fn mountpoint(&self) -> &Path {
        &self.shared.mountpoint
    }

    /// Tells the kernel to forget each of `what`, in order. What the kernel holds nothing of
    /// (its answer `ENOENT`) is forgotten already; the first other refusal stops and is
    /// returned. Blocks while the kernel takes the locks it needs: never call it from a FUSE
    /// request handler.
    pub fn invalidate(&self, what: &[Invalidation]) -> Result<(), InvalidateError> {
        let channel = self
            .shared
            .channel
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(channel) = channel else {
            tracing::debug!(mountpoint = %self.shared.mountpoint.display(), count = what.len(), "no mount to invalidate");
            return Ok(());
        };
        for item in what {
            match channel.notify(&notification(item)) {
                Ok(()) => tracing::debug!(?item, "kernel told to forget"),
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    tracing::debug!(?item, "the kernel had nothing cached");
                }
                Err(source) => {
                    return Err(InvalidateError::Refused {
                        mountpoint: self.shared.mountpoint.clone(),
                        what: describe(item),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// The session has ended: send nothing more, and let the device go.
    pub(crate) fn close(&self) {
        *self
            .shared
            .channel
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// `what` for a person: "entry NAME of node P" or "node N".
fn describe(what: &Invalidation) -> String {
    match what {
        Invalidation::Entry { parent, name } => {
            format!("entry {:?} of node {parent}", String::from_utf8_lossy(name))
        }
        Invalidation::Node(node) => format!("node {node}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A kernel that records what it gets and answers each with the next errno of `answers`
    /// (0: success; success once they run out).
    #[derive(Default)]
    struct Recorder {
        got: Mutex<Vec<Vec<u8>>>,
        answers: Mutex<Vec<i32>>,
    }

    impl NotifyChannel for Recorder {
        fn notify(&self, message: &[u8]) -> io::Result<()> {
            self.got
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(message.to_vec());
            let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
            match (!answers.is_empty()).then(|| answers.remove(0)) {
                Some(errno) if errno != 0 => Err(io::Error::from_raw_os_error(errno)),
                _ => Ok(()),
            }
        }
    }

    fn entry(name: &str) -> Invalidation {
        Invalidation::Entry {
            parent: 7,
            name: name.as_bytes().to_vec(),
        }
    }

    #[test]
    fn each_invalidation_is_one_notification_and_nothing_cached_is_no_error() {
        let kernel = Arc::new(Recorder::default());
        kernel.answers.lock().unwrap().extend([libc::ENOENT, 0]);
        let invalidator = Invalidator::new(Path::new("/spfs"), kernel.clone(), true);
        let what = [entry("a"), Invalidation::Node(9)];
        invalidator.invalidate(&what).unwrap();
        let got = kernel.got.lock().unwrap().clone();
        assert_eq!(got, what.iter().map(notification).collect::<Vec<_>>());
    }

    #[test]
    fn a_refusal_stops_and_names_what_was_refused() {
        let kernel = Arc::new(Recorder::default());
        kernel.answers.lock().unwrap().push(libc::EINVAL);
        let invalidator = Invalidator::new(Path::new("/spfs"), kernel.clone(), true);
        let err = invalidator
            .invalidate(&[entry("bad"), Invalidation::Node(9)])
            .unwrap_err();
        assert_eq!(
            kernel.got.lock().unwrap().len(),
            1,
            "stopped at the refusal"
        );
        let message = err.to_string();
        assert!(
            message.contains("entry \"bad\" of node 7") && message.contains("/spfs"),
            "{message}"
        );
    }

    #[test]
    fn after_the_session_ends_nothing_is_sent() {
        let kernel = Arc::new(Recorder::default());
        let invalidator = Invalidator::new(Path::new("/spfs"), kernel.clone(), true);
        let clone = invalidator.clone();
        invalidator.close();
        clone.invalidate(&[Invalidation::Node(9)]).unwrap();
        assert!(kernel.got.lock().unwrap().is_empty());
        Invalidator::none(Path::new("/spfs"))
            .invalidate(&[Invalidation::Node(9)])
            .unwrap();
    }
}
