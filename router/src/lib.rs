//! The shared core of spfs-fuse: layered views, one node-id space for all views, and
//! caller-to-view routing. It knows nothing of FUSE, gRPC or the command line.
//!
//! - [`spec`]: env specs (`LAYER+LAYER+...`, `-` for the empty view), resolved against spfs
//!   repositories at registration;
//! - [`access`]: what a runtime's owner may read;
//! - [`view`]: layers merged into one read-only tree;
//! - [`edit`]: editable views, a private scratch layer on top of a view;
//! - [`node`]: node ids that carry their view;
//! - [`process`]: process tables (Linux `/proc`, macOS libproc, a fake for tests);
//! - [`route`]: the route table and caller resolution;
//! - [`vfs`]: the filesystem operations a frontend serves;
//! - [`traffic`]: requests served by kind, and lookups by processes outside every runtime;
//! - [`error`]: errors and the one errno table.

pub mod access;
pub mod edit;
pub mod error;
mod files;
pub mod node;
pub mod process;
pub mod route;
pub mod spec;
pub mod traffic;
pub mod vfs;
pub mod view;

pub use access::{AccessError, Owner};
pub use edit::{CommitError, EditError, Invalidation, ResetError, Scratch};
pub use error::{FsError, RouteError, SpecError, ToErrno};
pub use node::{NodeId, ROOT, ViewId};
pub use process::{Pid, ProcessInfo, ProcessTable};
pub use route::{Router, Runtime};
pub use spec::{EnvSpec, LayerRef, LayerSource, ResolvedItem, ResolvedSpec};
pub use traffic::{OutsiderLookups, RequestCounters, RequestTotals};
pub use vfs::{
    Caller, DirEntry, DirectoryReplier, RenameMode, Routing, SetAttr, StatFs, TimeSet, Vfs,
    Writable, XattrSet,
};
pub use view::{Attr, FileKind, Timestamp, View};
