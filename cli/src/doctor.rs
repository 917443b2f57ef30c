//! `spfs-fuse doctor`: the install checklist, built on `spfs-probe`.
//!
//! The probe collects the host facts and builds the report; this command only adds what needs
//! the outside world (whether a service answers on the socket, the optional mount test) and
//! prints the result.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use spfs_frontends::{MountError, Platform, Session, SessionConfig};
use spfs_probe::{Backend, Check, Facts, ProbeConfig, Report, ServiceFacts, Status, defaults};
use spfs_router::{ResolvedSpec, Routing, Vfs, View};
use spfs_service::{mount_hint, root_attr};

use crate::endpoint::SocketArgs;

/// Arguments of `spfs-fuse doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The backend to check: auto, kext or fuse-t.
    #[arg(long, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also mount and unmount a scratch filesystem with the selected backend: on a Mac, the
    /// only sure way to learn whether the macFUSE kext is approved.
    #[arg(long)]
    mount_test: bool,
    /// Probe this directory as if it were `/` (for tests).
    #[arg(long, env = "SPFS_FUSE_SYSROOT", value_name = "DIR")]
    sysroot: Option<PathBuf>,
    #[command(flatten)]
    socket: SocketArgs,
    /// The shared mount point the service would use.
    #[arg(long, value_name = "P", default_value = defaults::MOUNTPOINT)]
    mountpoint: PathBuf,
    /// Where the service would put per-runtime volumes [default: the service's for the probed
    /// host and this user: on macOS /Volumes for root, else ~/.spfs-fuse/volumes; on Linux
    /// /run/spfs-fuse/volumes for root, else $XDG_RUNTIME_DIR/spfs-fuse/volumes]. The mount
    /// point and this directory are checked for the user running doctor: run it as the user
    /// of the per-user service, or with sudo for the system service.
    #[arg(long, value_name = "D")]
    volumes_dir: Option<PathBuf>,
}

impl DoctorArgs {
    /// What to probe: the places the service would use, unless named.
    fn probe_config(&self) -> ProbeConfig {
        ProbeConfig {
            sysroot: self.sysroot.clone(),
            mountpoint: self.mountpoint.clone(),
            volumes_dir: self.volumes_dir.clone(),
            stale_mount: Some(spfs_frontends::is_stale_mount),
            ..ProbeConfig::default()
        }
    }
}

/// Runs `spfs-fuse doctor`: exit status 0 ready, 2 ready with warnings, 1 not ready.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut facts = Facts::collect(&args.probe_config());
    let socket = args.socket.client_path()?;
    facts.service = Some(service_facts(&socket));

    let mut report = Report::build(&facts, args.backend);
    if args.mount_test {
        report.add_check(mount_test_check(
            report.backend,
            facts.fuse_t.as_ref().and_then(|t| t.server.clone()),
        ));
    }

    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// Whether something answers on the control socket, and with which backend. A socket that
/// accepts connections but does not speak the protocol counts as answering, backend unknown.
fn service_facts(socket: &Path) -> ServiceFacts {
    let answering = spfs_probe::socket::answers(socket);
    ServiceFacts {
        socket: socket.to_owned(),
        socket_exists: socket.symlink_metadata().is_ok(),
        answering,
        backend: answering
            .then(|| crate::client::backend_of(socket))
            .flatten(),
    }
}

/// The `mount.test` check: mount and unmount a scratch filesystem with `backend`.
fn mount_test_check(backend: Option<Backend>, nfs_server: Option<PathBuf>) -> Check {
    const ID: &str = "mount.test";
    let Some(backend) = backend else {
        return Check::new(
            ID,
            Status::Info,
            "skipped: no usable backend to mount with",
            None,
        );
    };
    match mount_test(backend, nfs_server) {
        Ok(()) => Check::new(
            ID,
            Status::Ok,
            format!("mounted, listed and unmounted a scratch filesystem with {backend}"),
            None,
        ),
        Err(err) => {
            let hint = match &err {
                MountTestError::Mount(err) => mount_hint(Platform::current(), backend, err.kind()),
                MountTestError::Scratch(_)
                | MountTestError::Listed(_)
                | MountTestError::Unanswered(_) => None,
            };
            Check::new(
                ID,
                Status::Fail,
                format!("mounting with {backend} failed: {err}"),
                Some(hint.unwrap_or(
                    "read the error above; `spfs-fuse doctor` without --mount-test lists what is missing",
                )),
            )
        }
    }
}

/// Why the mount test failed.
#[derive(Debug, thiserror::Error)]
enum MountTestError {
    /// No scratch directory to mount on.
    #[error("cannot create a scratch mount point: {0}")]
    Scratch(std::io::Error),
    /// Mounting or unmounting failed.
    #[error("{0}")]
    Mount(#[from] MountError),
    /// The empty view showed entries.
    #[error("the scratch mount listed {0} entries instead of none")]
    Listed(usize),
    /// Listing the mount failed.
    #[error("the scratch mount did not answer: {0}")]
    Unanswered(std::io::Error),
}

/// Mounts a scratch filesystem (the empty view) with `backend` in a temporary directory, lists
/// it and unmounts it again. The mount is real whatever `--sysroot` says: only the kernel can
/// tell whether it works.
fn mount_test(backend: Backend, nfs_server: Option<PathBuf>) -> Result<(), MountTestError> {
    let transport = spfs_service::transport(backend);
    let scratch = tempfile::Builder::new()
        .prefix("spfs-fuse-mount-test-")
        .tempdir()
        .map_err(MountTestError::Scratch)?;
    let root = root_attr();
    let empty = View::build(0, &ResolvedSpec::empty(), &root, (root.uid, root.gid));
    let vfs = Arc::new(Vfs::new(Routing::Fixed(Arc::new(empty))));
    let config = SessionConfig {
        mountpoint: scratch.path().to_owned(),
        fsname: "spfs-mount-test".into(),
        volname: "spfs-mount-test".into(),
        transport,
        threads: 1,
        io_uring: false,
        nfs_server,
        // As a service run by this user mounts (`spfs_service::serves_other_users`).
        other_users: nix::unistd::geteuid().is_root(),
    };
    let session = Session::mount(vfs, &config)?;
    let listed = std::fs::read_dir(scratch.path()).map(Iterator::count);
    let unmounted = session.unmount();
    match listed {
        Ok(0) => Ok(unmounted?),
        Ok(n) => Err(MountTestError::Listed(n)),
        Err(err) => Err(MountTestError::Unanswered(err)),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn doctor_checks_the_places_the_service_uses_by_default() -> anyhow::Result<()> {
        let Command::Doctor(doctor) = Cli::try_parse_from(["spfs-fuse", "doctor"])?.command else {
            anyhow::bail!("not doctor");
        };
        let Command::Service(service) = Cli::try_parse_from(["spfs-fuse", "service"])?.command
        else {
            anyhow::bail!("not service");
        };
        let service = service.config()?;
        let facts = Facts::collect(&doctor.probe_config());
        assert_eq!(facts.volumes.dir, service.volumes_dir);
        assert_eq!(facts.mountpoint.path, service.mountpoint);
        Ok(())
    }
}
