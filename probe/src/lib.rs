//! Host facts, backend selection and the doctor report of spfs-fuse. No FUSE, no gRPC.
//!
//! The probe works in two steps. First [`Facts::collect`] reads the host: the OS and its
//! version, macFUSE, FUSE-T, `/dev/fuse`, the mount points and stale volumes. Everything is
//! read under a system root ([`ProbeConfig::sysroot`]) with commands found on a given `PATH`,
//! so tests can play any host from a directory. Then pure functions decide from those facts:
//!
//! - [`select`] gives the usable backends in the order to try them ([`Selection`]);
//! - [`Report::build`] gives the `doctor` checklist, as text ([`Report::to_text`]) or JSON
//!   ([`Report::to_json`]), with its exit status ([`Report::exit_code`]).
//!
//! The [`hints`] are the sentences that fix each failure; the service picks one for each kind
//! of failed mount.
//!
//! [`Facts`] and [`Selection`] print as one line each (`Display`) for the service's log.
//!
//! The service's use:
//!
//! ```no_run
//! use spfs_probe::{Backend, Facts, ProbeConfig, select};
//!
//! let facts = Facts::collect(&ProbeConfig::default());
//! let selection = select(&facts, Backend::Auto);
//! eprintln!("host: {facts}; backend {selection}");
//! for backend in &selection.candidates {
//!     # let mount = |_b: &Backend| -> Result<(), String> { Ok(()) };
//!     match mount(backend) {
//!         Ok(()) => break,
//!         Err(err) => eprintln!("{backend}: {err}"),
//!     }
//! }
//! ```
//!
//! Whether a service answers on the control socket is not probed here (the probe does not
//! speak gRPC): the caller sets [`Facts::service`] before building the report, usually on
//! [`defaults::socket_path`].

mod access;
mod backend;
mod command;
pub mod defaults;
mod facts;
pub mod hints;
mod report;
mod select;
pub mod socket;

pub use access::{Ownership, ServiceUser};
pub use backend::{Backend, Os, UnknownBackend};
pub use facts::{
    Facts, FuseTFacts, LinuxFuseFacts, MacFuseFacts, MountpointFacts, MountpointState,
    NFS_SERVER_ENV, PathOwner, ProbeConfig, ServiceFacts, VolumesFacts, parse_version,
};
pub use report::{Check, Report, Status};
pub use select::{Rejection, Selection, select, usable};
pub use socket::SocketDirError;
