//! `spfs-fuse`: the command-line entry point. Thin glue over the library crates: `main` turns
//! the result of [`run`] into an exit code, and `run` is one `match` over the command.

mod client;
mod doctor;
mod endpoint;
mod service;
mod sweep_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Per-process-tree layered software environments over FUSE.
#[derive(Debug, Parser)]
#[command(name = "spfs-fuse", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The commands of spfs-fuse.
#[derive(Debug, Subcommand)]
enum Command {
    /// Diagnose the install: what is there, what is missing, and what to do about it.
    Doctor(doctor::DoctorArgs),
    /// Run the service in the foreground: own the FUSE mount and serve the control plane.
    Service(service::ServiceArgs),
    /// Register a runtime: a root process and the env spec its process tree sees.
    Mount(client::MountArgs),
    /// Remove a runtime.
    Unmount(client::UnmountArgs),
    /// Show the backend, the mount points and the registered runtimes.
    Status(client::StatusArgs),
    /// Run a command in a fresh runtime; `SPFS_ROOT` points at its view.
    Run(client::RunArgs),
    /// Make a running read-only runtime editable; prints its scratch directory.
    Edit(client::EditCmdArgs),
    /// List what an editable runtime changed: added (+), modified (~) and removed (-) paths.
    Diff(client::DiffArgs),
    /// Write an editable runtime's changes into an spfs repository as a layer (or a platform
    /// of its layers plus that layer); prints the digest. The runtime carries on from the
    /// committed stack with no changes.
    Commit(client::CommitArgs),
    /// Throw away an editable runtime's changes since its last commit: all, or those at the
    /// paths named and below.
    Reset(client::ResetArgs),
    /// Unmount and remove stale `spfs-<pid>` volumes whose process is gone.
    Sweep(sweep_cmd::SweepArgs),
    /// Ask the service to unmount and exit; it forgets its runtimes (a restart by a signal
    /// keeps them).
    Shutdown(client::ShutdownArgs),
    /// Show what an env spec resolves to: each item's kind and digest, the layers bottom
    /// first, and their entries (no service needed).
    Info(client::InfoArgs),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor(args) => doctor::run(args),
        Command::Service(args) => service::run(args),
        Command::Mount(args) => client::mount(args),
        Command::Unmount(args) => client::unmount(args),
        Command::Status(args) => client::status(args),
        Command::Run(args) => client::run(args),
        Command::Edit(args) => client::edit(args),
        Command::Diff(args) => client::diff(args),
        Command::Commit(args) => client::commit(args),
        Command::Reset(args) => client::reset(args),
        Command::Sweep(args) => sweep_cmd::run(args),
        Command::Shutdown(args) => client::shutdown(args),
        Command::Info(args) => client::info(args),
    }
}

/// Exit status for a command line that does not parse (BSD `EX_USAGE`); 2, clap's default,
/// means "ready with warnings" for `doctor`.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if err.use_stderr() => {
            let _ = err.print();
            return ExitCode::from(EXIT_USAGE);
        }
        // --help and --version
        Err(err) => err.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("spfs-fuse: {err:#}");
            ExitCode::FAILURE
        }
    }
}
