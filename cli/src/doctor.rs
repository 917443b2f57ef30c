//! `spfs-fuse doctor`: the install checklist, built on `spfs-probe`.

use std::process::ExitCode;

/// Arguments of `spfs-fuse doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {}

/// Runs `spfs-fuse doctor`.
pub fn run(_args: DoctorArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("doctor is not implemented yet")
}
