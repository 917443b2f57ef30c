//! `spfs-fuse sweep`: unmount and remove the stale `spfs-<pid>` volumes a dead service left in
//! the volumes directory, and the default scratches of editable runtimes that no longer exist
//! (never a durable one named with `--scratch`). The service runs the same sweeps when it
//! starts (the volumes' in the per-runtime layout).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use spfs_frontends::sweep::{self, Outcome};
use spfs_router::process::SystemProcessTable;
use spfs_service::scratches::{self, SweepOutcome};

use crate::endpoint::SocketArgs;

/// Arguments of `spfs-fuse sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Print what would be done, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The volumes directory [default: the service's: on macOS /Volumes for root, else
    /// ~/.spfs-fuse/volumes; on Linux /run/spfs-fuse/volumes for root, else
    /// $XDG_RUNTIME_DIR/spfs-fuse/volumes].
    #[arg(long, value_name = "DIR")]
    volumes_dir: Option<PathBuf>,
    /// The socket of the service whose default scratches to sweep (they live in its
    /// directory, under `scratch/`).
    #[command(flatten)]
    socket: SocketArgs,
}

/// Runs `spfs-fuse sweep`: prints one line per step; exits 1 if any step failed.
pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .volumes_dir
        .unwrap_or_else(spfs_probe::defaults::volumes_dir);
    let actions = sweep::sweep(&dir, args.dry_run)
        .with_context(|| format!("cannot sweep {}", dir.display()))?;
    if actions.is_empty() {
        println!("no stale volumes in {}", dir.display());
    }
    for action in &actions {
        println!("{action}");
    }
    let mut failed = actions
        .iter()
        .any(|a| matches!(a.outcome, Outcome::Failed(_)));

    let state_dir = spfs_probe::defaults::state_dir(&args.socket.service_path()?);
    let scratches_dir = spfs_probe::defaults::scratches_dir(&state_dir);
    let swept = scratches::sweep(&scratches_dir, &SystemProcessTable::new(), args.dry_run)
        .with_context(|| format!("cannot sweep {}", scratches_dir.display()))?;
    // Nothing said when there is nothing: most services never made a scratch.
    for scratch in &swept {
        println!("{scratch}");
    }
    failed |= swept
        .iter()
        .any(|s| matches!(s.outcome, SweepOutcome::Failed(_)));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
