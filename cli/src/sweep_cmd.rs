//! `spfs-fuse sweep`: unmount and remove the stale `spfs-<pid>` volumes a dead service left in
//! the volumes directory. The service runs the same sweep when it starts per runtime.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use spfs_frontends::sweep::{self, Outcome};

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
    let failed = actions
        .iter()
        .any(|a| matches!(a.outcome, Outcome::Failed(_)));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
