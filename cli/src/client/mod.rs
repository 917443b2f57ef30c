//! The client commands: `mount`, `unmount`, `status`, `run`, `shutdown`.

use std::process::ExitCode;

/// Arguments of `spfs-fuse mount`.
#[derive(Debug, clap::Args)]
pub struct MountArgs {}
/// Arguments of `spfs-fuse unmount`.
#[derive(Debug, clap::Args)]
pub struct UnmountArgs {}
/// Arguments of `spfs-fuse status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {}
/// Arguments of `spfs-fuse run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {}
/// Arguments of `spfs-fuse shutdown`.
#[derive(Debug, clap::Args)]
pub struct ShutdownArgs {}

/// Runs `spfs-fuse mount`.
pub fn mount(_args: MountArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("mount is not implemented yet")
}
/// Runs `spfs-fuse unmount`.
pub fn unmount(_args: UnmountArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("unmount is not implemented yet")
}
/// Runs `spfs-fuse status`.
pub fn status(_args: StatusArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("status is not implemented yet")
}
/// Runs `spfs-fuse run`.
pub fn run(_args: RunArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("run is not implemented yet")
}
/// Runs `spfs-fuse shutdown`.
pub fn shutdown(_args: ShutdownArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("shutdown is not implemented yet")
}
