//! `spfs-fuse service`: the long-running process that owns the mount and serves gRPC.

use std::process::ExitCode;

/// Arguments of `spfs-fuse service`.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {}

/// Runs the service in the foreground until SIGINT, SIGTERM or `Shutdown`.
pub fn run(_args: ServiceArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("service is not implemented yet")
}
