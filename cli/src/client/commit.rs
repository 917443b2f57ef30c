//! `spfs-fuse commit layer|platform` and `spfs-fuse reset`: an editable runtime's changes
//! written into an spfs repository, or thrown away.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use spfs_proto::status::{CommitKind, CommitProgress};
use spfs_proto::v1 as pb;
use spfs_service::commit::tag_user;
use tonic::Request;

use super::connect::{self, CALL_DEADLINE, Refusal, Target, call, request};
use super::{EndpointArgs, absolute, block_on, current_dir, parent_pid};

/// What `commit` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// A layer of the runtime's changes.
    Layer,
    /// A platform of the runtime's layers plus a new layer of its changes (every layer of the
    /// runtime must be an spfs layer).
    Platform,
}

impl From<KindArg> for CommitKind {
    fn from(kind: KindArg) -> CommitKind {
        match kind {
            KindArg::Layer => CommitKind::Layer,
            KindArg::Platform => CommitKind::Platform,
        }
    }
}

/// Arguments of `spfs-fuse commit`.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// What to write: `layer` (the changes) or `platform` (the runtime's layers plus a layer
    /// of the changes).
    #[arg(value_enum, value_name = "KIND")]
    kind: KindArg,
    /// The root process of the editable runtime [default: the parent of this command, i.e.
    /// your shell].
    #[arg(long, value_name = "PID")]
    root_process: Option<u32>,
    /// The spfs repository to write into [default: $SPFS_STORAGE__ROOT, else
    /// ~/.local/share/spfs]. You must be able to write it.
    #[arg(long, value_name = "PATH")]
    repo: Option<PathBuf>,
    /// Point this tag (`org/name` or `name`) at the result, as a new version on top of its
    /// older ones.
    #[arg(long, value_name = "TAG")]
    tag: Option<String>,
    /// The encoding of new objects, as spfs reads it (in any case: `legacy` too).
    #[arg(
        long,
        env = "SPFS_STORAGE__ENCODING_FORMAT",
        value_parser = ["FlatBuffers", "Legacy"],
        ignore_case = true,
        default_value = "FlatBuffers",
        value_name = "FORMAT"
    )]
    encoding_format: String,
    /// The digest strategy of new objects, as spfs reads it (in any case).
    #[arg(
        long,
        env = "SPFS_STORAGE__DIGEST_STRATEGY",
        value_parser = ["WithKindAndSalt", "Legacy"],
        ignore_case = true,
        default_value = "WithKindAndSalt",
        value_name = "STRATEGY"
    )]
    digest_strategy: String,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Arguments of `spfs-fuse reset`.
#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The root process of the editable runtime [default: the parent of this command, i.e.
    /// your shell].
    #[arg(long, value_name = "PID")]
    root_process: Option<u32>,
    /// Reset these paths and everything below them; without any, every change since the
    /// last commit. A path is inside the view (`/bin/tool`, `bin/tool`) or under the
    /// runtime's mount point (`/spfs/bin/tool`).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Runs `spfs-fuse commit`: prints the digest of the new layer or platform; progress goes to
/// stderr when it is a terminal.
pub fn commit(args: CommitArgs) -> anyhow::Result<ExitCode> {
    let root_pid = args.root_process.unwrap_or_else(parent_pid);
    let cwd = current_dir()?;
    let repo = absolute(
        &args
            .repo
            .clone()
            .unwrap_or_else(spfs_storage::default_storage_root),
        &cwd,
    );
    let repo = repo
        .to_str()
        .with_context(|| format!("the repository path {} is not valid UTF-8", repo.display()))?
        .to_owned();
    let kind = CommitKind::from(args.kind);
    let message = pb::CommitRequest {
        root_pid,
        kind: pb::CommitKind::from(kind).into(),
        repo,
        tag: args.tag.clone().unwrap_or_default(),
        encoding_format: args.encoding_format.clone(),
        digest_strategy: args.digest_strategy.clone(),
        user: tag_user(
            |name| std::env::var(name).ok(),
            nix::unistd::getuid().as_raw(),
        ),
    };
    let target = Target::from_args(&args.endpoint)?;
    let mut meter = Meter::new(std::io::stderr().is_terminal());
    let result = block_on(async {
        let mut client = connect::connect(&target).await?;
        // No deadline: a commit of many files takes as long as it takes, and the service
        // finishes it even if this command is interrupted.
        let mut events = client
            .commit(Request::new(message))
            .await
            .map_err(Refusal::from)?
            .into_inner();
        loop {
            let event = events.message().await.map_err(Refusal::from)?;
            match event.and_then(|e| e.event) {
                Some(pb::commit_event::Event::Progress(p)) => meter.show(p.into()),
                Some(pb::commit_event::Event::Result(result)) => return Ok(result),
                None => anyhow::bail!("the service ended the commit without a result"),
            }
        }
    });
    meter.finish();
    let result = result?;
    println!("{}", result.digest);
    Ok(ExitCode::SUCCESS)
}

/// Runs `spfs-fuse reset`.
pub fn reset(args: ResetArgs) -> anyhow::Result<ExitCode> {
    let root_pid = args.root_process.unwrap_or_else(parent_pid);
    let target = Target::from_args(&args.endpoint)?;
    block_on(async {
        let mut client = connect::connect(&target).await?;
        let mount_point = if args.paths.is_empty() {
            None
        } else {
            let status = call(
                CALL_DEADLINE,
                client.status(request(pb::StatusRequest {}, CALL_DEADLINE)),
            )
            .await?;
            status
                .runtimes
                .into_iter()
                .find(|r| r.root_pid == root_pid)
                .map(|r| PathBuf::from(r.mount_point))
        };
        let paths = args
            .paths
            .iter()
            .map(|path| view_path(path, mount_point.as_deref()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        call(
            CALL_DEADLINE,
            client.reset(request(pb::ResetRequest { root_pid, paths }, CALL_DEADLINE)),
        )
        .await?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `path` as a path inside the view, starting with `/`: one under `mount_point` loses that
/// prefix, a relative one is taken from the view's root.
fn view_path(path: &Path, mount_point: Option<&Path>) -> anyhow::Result<String> {
    let inside = mount_point
        .and_then(|mount| path.strip_prefix(mount).ok())
        .unwrap_or(path);
    let inside = Path::new("/").join(inside);
    inside
        .to_str()
        .map(str::to_owned)
        .with_context(|| format!("the path {} is not valid UTF-8", path.display()))
}

/// The progress line of a commit on a terminal, redrawn in place; nothing elsewhere.
struct Meter {
    terminal: bool,
    drawn: bool,
}

impl Meter {
    fn new(terminal: bool) -> Meter {
        Meter {
            terminal,
            drawn: false,
        }
    }

    fn show(&mut self, p: CommitProgress) {
        if !self.terminal {
            return;
        }
        let total = match (p.files_total, p.bytes_total) {
            (0, _) => " files".to_owned(),
            (files, 0) => format!("/{files} files"),
            (files, bytes) => format!("/{files} files ({})", size(bytes)),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[Khashed {}{total}, {}; wrote {} new payloads, {}",
            p.files_hashed,
            size(p.bytes_hashed),
            p.files_written,
            size(p.bytes_written)
        );
        let _ = err.flush();
        self.drawn = true;
    }

    fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// `bytes` for a person: B, KiB, MiB or GiB with one decimal.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_paths_are_inside_the_view_with_or_without_the_mount_point() {
        let spfs = Some(Path::new("/spfs"));
        assert_eq!(view_path(Path::new("/spfs/bin/x"), spfs).unwrap(), "/bin/x");
        assert_eq!(view_path(Path::new("bin/x"), spfs).unwrap(), "/bin/x");
        assert_eq!(view_path(Path::new("/bin/x"), spfs).unwrap(), "/bin/x");
        assert_eq!(view_path(Path::new("/spfs"), spfs).unwrap(), "/");
        assert_eq!(view_path(Path::new("/bin/x"), None).unwrap(), "/bin/x");
    }

    #[test]
    fn sizes_read_for_a_person() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(512 << 20), "512.0 MiB");
    }
}
