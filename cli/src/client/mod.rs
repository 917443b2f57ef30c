//! The client commands: `mount`, `unmount`, `status`, `run`, `edit`, `diff`, `commit`, `reset`,
//! `shutdown`, and `info`.
//!
//! Each one connects to the service (over its Unix socket, or TCP with `--connect`), makes one
//! or two calls with a deadline, and prints the result. `mount` and `run` start a service when
//! none answers. `info` needs no service: it resolves a spec right here.

mod commit;
mod connect;
mod info;
#[cfg(target_os = "linux")]
#[path = "orphans_linux.rs"]
mod orphans;
#[cfg(target_os = "macos")]
#[path = "orphans_macos.rs"]
mod orphans;
mod run;

use std::ffi::OsString;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use spfs_probe::Backend;
use spfs_proto::status::{Change, ServiceStatus, Traffic};
use spfs_proto::v1 as pb;

use crate::endpoint::SocketArgs;
use connect::{CALL_DEADLINE, Client, MOUNT_DEADLINE, Target, call, request};

pub use commit::{CommitArgs, ResetArgs, commit, reset};
pub(crate) use connect::backend_of;
pub use info::{InfoArgs, info};
pub use run::run;

/// Where to reach the service; every client command takes these.
#[derive(Debug, Clone, clap::Args)]
pub struct EndpointArgs {
    #[command(flatten)]
    socket: SocketArgs,
    /// Reach a service started with `--listen` over TCP at ADDR instead (wins over --socket).
    #[arg(long, value_name = "ADDR")]
    connect: Option<String>,
}

/// How to start a service if none answers (`mount` and `run`).
#[derive(Debug, Clone, clap::Args)]
pub struct AutoStartArgs {
    /// For an auto-started service: its mount point [default: the service's, /spfs].
    #[arg(long, value_name = "PATH")]
    mountpoint: Option<PathBuf>,
    /// For an auto-started service: its backend, auto, kext or fuse-t [default: the
    /// service's, auto].
    #[arg(long)]
    backend: Option<Backend>,
}

/// Where spfs references in an env spec resolve (`mount`, `run`, `info`).
#[derive(Debug, Clone, clap::Args)]
pub struct RepoArgs {
    /// An spfs repository to resolve tags and digests in; repeat it to search several, in
    /// order [default, only when the spec has spfs references: $SPFS_STORAGE__ROOT, else
    /// ~/.local/share/spfs].
    #[arg(long = "repo", value_name = "PATH")]
    repos: Vec<PathBuf>,
}

impl RepoArgs {
    /// The repositories to send with `spec`, as absolute paths: the ones named, else the
    /// calling user's storage root when the spec has spfs references, else none, so plain
    /// directory specs work with no repository present.
    fn for_spec(&self, spec: &str, cwd: &Path) -> Vec<PathBuf> {
        let named = if self.repos.is_empty() {
            let has_spfs = spfs_router::EnvSpec::parse(spec).is_ok_and(|s| s.has_spfs());
            if !has_spfs {
                return Vec::new();
            }
            vec![spfs_storage::default_storage_root()]
        } else {
            self.repos.clone()
        };
        named.iter().map(|repo| absolute(repo, cwd)).collect()
    }
}

/// The env spec a runtime is registered with, and where its spfs references resolve
/// (`mount`, `run`).
#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// The env spec: LAYER+LAYER+..., bottom first; `-` is empty. A layer is a directory
    /// (relative paths are taken from the current directory) or an spfs tag, digest or partial
    /// digest.
    #[arg(value_name = "ENV_SPEC")]
    env_spec: String,
    #[command(flatten)]
    repo: RepoArgs,
}

impl SpecArgs {
    /// The spec with its relative directories made absolute against `cwd`, and the
    /// repositories to send with it.
    fn resolve(&self, cwd: &Path) -> anyhow::Result<(String, Vec<PathBuf>)> {
        let spec = resolve_spec(&self.env_spec, cwd)?;
        let repos = self.repo.for_spec(&spec, cwd);
        Ok((spec, repos))
    }
}

/// Whether the runtime is editable, and where its changes go (`mount`, `run`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EditArgs {
    /// Register an editable runtime: a private scratch directory on top of the layers takes
    /// every change (by default one of the service's own, removed with the runtime).
    #[arg(long)]
    edit: bool,
    /// The scratch directory of an editable runtime (implies --edit; relative paths are taken
    /// from the current directory): made when missing, kept when the runtime ends, continued
    /// when registered again. A scratch in use by a live runtime is refused.
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
}

impl EditArgs {
    /// What the registration sends: whether the runtime is editable, and its scratch as an
    /// absolute path (empty for the service's default).
    fn request(&self, cwd: &Path) -> anyhow::Result<Edit> {
        let scratch = match &self.scratch {
            Some(dir) => scratch_path(dir, cwd)?,
            None => String::new(),
        };
        Ok(Edit {
            editable: self.edit || !scratch.is_empty(),
            scratch,
        })
    }
}

/// The scratch directory `dir` as sent: absolute, against `cwd`.
fn scratch_path(dir: &Path, cwd: &Path) -> anyhow::Result<String> {
    let dir = absolute(dir, cwd);
    dir.to_str()
        .map(str::to_owned)
        .with_context(|| format!("the scratch {} is not valid UTF-8", dir.display()))
}

/// The registration's editing fields, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Edit {
    editable: bool,
    scratch: String,
}

/// `path` made absolute against `cwd`, without `.` components.
fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    cwd.join(path)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

/// Arguments of `spfs-fuse mount`.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The root process of the runtime [default: the parent of this command, i.e. your shell].
    #[arg(long, value_name = "PID")]
    root_process: Option<u32>,
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    edit: EditArgs,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    auto: AutoStartArgs,
}

/// Arguments of `spfs-fuse diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The root process of the editable runtime [default: the parent of this command].
    #[arg(long, value_name = "PID")]
    root_process: Option<u32>,
    /// Print a JSON object instead of one `+ path` (added), `~ path` (modified) or `- path`
    /// (removed) line per change.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Arguments of `spfs-fuse edit`.
#[derive(Debug, clap::Args)]
pub struct EditCmdArgs {
    /// The root process of the read-only runtime to make editable [default: the parent of
    /// this command, i.e. your shell].
    #[arg(long, value_name = "PID")]
    root_process: Option<u32>,
    /// The scratch directory (relative paths are taken from the current directory): made
    /// when missing, kept when the runtime ends, continued when registered again [default:
    /// one of the service's own, removed with the runtime].
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Arguments of `spfs-fuse unmount`.
#[derive(Debug, clap::Args)]
pub struct UnmountArgs {
    /// The root process whose runtime to remove [default: the parent of this command].
    #[arg(long, value_name = "PID")]
    root_process: Option<u32>,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Arguments of `spfs-fuse status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// Arguments of `spfs-fuse run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    spec: SpecArgs,
    #[command(flatten)]
    edit: EditArgs,
    /// The command to run, after `--`.
    #[arg(value_name = "CMD", last = true, required = true)]
    command: Vec<OsString>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    auto: AutoStartArgs,
}

/// Arguments of `spfs-fuse shutdown`.
#[derive(Debug, clap::Args)]
pub struct ShutdownArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
}

/// How long `shutdown` waits for the service to be gone.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Runs `spfs-fuse mount`.
pub fn mount(args: MountArgs) -> anyhow::Result<ExitCode> {
    let cwd = current_dir()?;
    let (spec, repos) = args.spec.resolve(&cwd)?;
    let edit = args.edit.request(&cwd)?;
    let root_pid = args.root_process.unwrap_or_else(parent_pid);
    let target = Target::from_args(&args.endpoint)?;
    let mount_point = block_on(async {
        let mut client = connect::connect_or_start(&target, &args.auto).await?;
        register(&mut client, root_pid, spec, &repos, edit).await
    })?;
    println!("{}", mount_point.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs `spfs-fuse unmount`.
pub fn unmount(args: UnmountArgs) -> anyhow::Result<ExitCode> {
    let root_pid = args.root_process.unwrap_or_else(parent_pid);
    let target = Target::from_args(&args.endpoint)?;
    block_on(unregister(&target, root_pid))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `spfs-fuse edit`: makes a running read-only runtime editable, as `spfs edit` does,
/// and prints where its changes go.
pub fn edit(args: EditCmdArgs) -> anyhow::Result<ExitCode> {
    let root_pid = args.root_process.unwrap_or_else(parent_pid);
    let scratch = match &args.scratch {
        Some(dir) => scratch_path(dir, &std::env::current_dir()?)?,
        None => String::new(),
    };
    let target = Target::from_args(&args.endpoint)?;
    let runtime = block_on(async {
        let mut client = connect::connect(&target).await?;
        let reply = call(
            MOUNT_DEADLINE,
            client.edit(request(
                pb::EditRequest { root_pid, scratch },
                MOUNT_DEADLINE,
            )),
        )
        .await?;
        reply
            .runtime
            .context("the service sent no runtime back from edit")
    })?;
    println!("{}", runtime.scratch);
    Ok(ExitCode::SUCCESS)
}

/// Runs `spfs-fuse status`.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let target = Target::from_args(&args.endpoint)?;
    let status = block_on(async {
        let mut client = connect::connect(&target).await?;
        let reply = call(
            CALL_DEADLINE,
            client.status(request(pb::StatusRequest {}, CALL_DEADLINE)),
        )
        .await?;
        Ok(ServiceStatus::from(reply))
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &status_json(&status))?;
        writeln!(out)?;
    } else {
        write!(out, "{}", status_text(&status))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `spfs-fuse diff`: what an editable runtime changed, one line per path.
pub fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let root_pid = args.root_process.unwrap_or_else(parent_pid);
    let target = Target::from_args(&args.endpoint)?;
    let changes = block_on(async {
        let mut client = connect::connect(&target).await?;
        let reply = call(
            CALL_DEADLINE,
            client.diff(request(pb::DiffRequest { root_pid }, CALL_DEADLINE)),
        )
        .await?;
        reply
            .changes
            .into_iter()
            .map(|change| {
                Change::try_from(change)
                    .context("the service sent a change this client does not know")
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &diff_json(root_pid, &changes))?;
        writeln!(out)?;
    } else {
        write!(out, "{}", diff_text(&changes))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `diff`: one `+ path`, `~ path` or `- path` line per change.
fn diff_text(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|change| format!("{} {}\n", change.kind.mark(), change.path))
        .collect()
}

/// `diff --json`: the root process and its changes, each with its kind and path.
fn diff_json(root_pid: u32, changes: &[Change]) -> serde_json::Value {
    serde_json::json!({
        "root_pid": root_pid,
        "changes": changes.iter().map(|change| serde_json::json!({
            "kind": change.kind.name(),
            "path": change.path,
        })).collect::<Vec<_>>(),
    })
}

/// Runs `spfs-fuse shutdown`: asks the service to stop and waits until it is gone.
pub fn shutdown(args: ShutdownArgs) -> anyhow::Result<ExitCode> {
    let target = Target::from_args(&args.endpoint)?;
    block_on(async {
        let mut client = connect::connect(&target).await?;
        call(
            CALL_DEADLINE,
            client.shutdown(request(pb::ShutdownRequest {}, CALL_DEADLINE)),
        )
        .await?;
        drop(client);
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while !is_gone(&target) {
            if Instant::now() >= deadline {
                bail!(
                    "the service at {target} accepted Shutdown but is still there after {} s",
                    SHUTDOWN_WAIT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Whether the service at `target` is gone: nothing answers, and (for a socket) the service
/// removed its socket file, which it does last.
fn is_gone(target: &Target) -> bool {
    match target {
        Target::Unix(path) => !path.exists() && !target.answers(),
        Target::Tcp(_) => !target.answers(),
    }
}

/// Registers a runtime and returns where its view appears.
async fn register(
    client: &mut Client,
    root_pid: u32,
    env_spec: String,
    repos: &[PathBuf],
    edit: Edit,
) -> anyhow::Result<PathBuf> {
    let repos = repos
        .iter()
        .map(|repo| {
            repo.to_str().map(str::to_owned).with_context(|| {
                format!("the repository path {} is not valid UTF-8", repo.display())
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let reply = call(
        MOUNT_DEADLINE,
        client.mount(request(
            pb::MountRequest {
                root_pid,
                env_spec,
                repos,
                editable: edit.editable,
                scratch: edit.scratch,
            },
            MOUNT_DEADLINE,
        )),
    )
    .await?;
    Ok(reply.mount_point())
}

/// Removes the runtime of `root_pid`.
async fn unregister(target: &Target, root_pid: u32) -> anyhow::Result<()> {
    let mut client = connect::connect(target).await?;
    call(
        CALL_DEADLINE,
        client.unmount(request(pb::UnmountRequest { root_pid }, CALL_DEADLINE)),
    )
    .await?;
    Ok(())
}

/// Runs `future` to completion on a runtime for this one command.
pub(crate) fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// The pid of this command's parent: the shell that ran it.
fn parent_pid() -> u32 {
    nix::unistd::getppid().as_raw().unsigned_abs()
}

fn current_dir() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// The env spec with every layer that names an existing path relative to `cwd` made absolute.
/// The service only takes absolute paths. Anything else (absolute paths, `-`, items that are no
/// path here, such as spfs tags or digests) is sent as it is, so the service's error names it.
pub(crate) fn resolve_spec(spec: &str, cwd: &Path) -> anyhow::Result<String> {
    if spec == "-" {
        return Ok(spec.to_owned());
    }
    let layers = spec
        .split('+')
        .map(|layer| resolve_layer(layer, cwd))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(layers.join("+"))
}

fn resolve_layer(layer: &str, cwd: &Path) -> anyhow::Result<String> {
    let path = Path::new(layer);
    if layer.is_empty() || path.is_absolute() {
        return Ok(layer.to_owned());
    }
    let joined = cwd.join(path);
    if !joined.exists() {
        return Ok(layer.to_owned());
    }
    // `a/./b` is just `a/b`; `..` needs the real directory tree (symlinks), so ask the kernel.
    let absolute = if path.components().any(|c| c == Component::ParentDir) {
        std::fs::canonicalize(&joined)
            .with_context(|| format!("cannot resolve the layer {layer}"))?
    } else {
        joined
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect()
    };
    match absolute.into_os_string().into_string() {
        Ok(text) => Ok(text),
        Err(raw) => bail!(
            "the layer {layer} resolves to {}, which is not valid UTF-8",
            Path::new(&raw).display()
        ),
    }
}

/// `status --json`: the status as one JSON object.
fn status_json(status: &ServiceStatus) -> serde_json::Value {
    serde_json::json!({
        "backend": status.backend,
        "transport": status.transport,
        "layout": status.layout,
        "mount_points": status.mount_points,
        "runtimes": status.runtimes.iter().map(|runtime| serde_json::json!({
            "root_pid": runtime.root_pid,
            "env_spec": runtime.env_spec,
            "owner_uid": runtime.owner_uid,
            "mount_point": runtime.mount_point,
            "alive": runtime.alive,
            "editable": runtime.scratch.is_some(),
            "scratch": runtime.scratch.as_ref().map(|s| &s.dir),
            "durable": runtime.scratch.as_ref().is_some_and(|s| s.durable),
        })).collect::<Vec<_>>(),
        "requests": status.traffic.requests.iter().map(|(opcode, stats)| {
            (opcode.clone(), serde_json::json!({
                "count": stats.count,
                "mean_ns": stats.mean_ns,
            }))
        }).collect::<serde_json::Map<_, _>>(),
        "outsider_root_lookups": status.traffic.outsider_root_lookups,
    })
}

/// The opcodes `status` names in its one line of requests: the most asked.
const STATUS_TOP_OPCODES: usize = 4;

/// `status`'s lines on what the mounts were asked: the requests in all and the most asked
/// opcodes with their mean service time, then who outside every runtime looked into the root.
fn traffic_text(traffic: &Traffic) -> String {
    let total: u64 = traffic.requests.values().map(|stats| stats.count).sum();
    let mut busiest: Vec<_> = traffic.requests.iter().collect();
    busiest.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(b.0)));
    let busiest: Vec<String> = busiest
        .iter()
        .take(STATUS_TOP_OPCODES)
        .map(|(opcode, stats)| format!("{opcode} {} x {} ns", stats.count, stats.mean_ns))
        .collect();
    let mut text = if busiest.is_empty() {
        "requests:     none\n".to_owned()
    } else {
        format!("requests:     {total} ({})\n", busiest.join(", "))
    };
    let outsiders: Vec<String> = traffic
        .outsider_root_lookups
        .iter()
        .map(|(exe, count)| format!("{exe} {count}"))
        .collect();
    if !outsiders.is_empty() {
        text.push_str(&format!("outsiders:    {}\n", outsiders.join(", ")));
    }
    text
}

/// `status`: the backend and mount points, then one line per runtime.
fn status_text(status: &ServiceStatus) -> String {
    let mount_points = status
        .mount_points
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let mut text = format!(
        "backend:      {}\ntransport:    {}\nlayout:       {}\nmount points: {}\n",
        status.backend, status.transport, status.layout, mount_points
    );
    text.push_str(&traffic_text(&status.traffic));
    if status.runtimes.is_empty() {
        text.push_str("runtimes:     none\n");
        return text;
    }
    text.push_str(&format!("runtimes:     {}\n", status.runtimes.len()));
    let rows: Vec<[String; 6]> = status
        .runtimes
        .iter()
        .map(|r| {
            [
                r.root_pid.to_string(),
                r.owner_uid.to_string(),
                if r.alive { "yes" } else { "no" }.to_owned(),
                if r.scratch.is_some() { "yes" } else { "no" }.to_owned(),
                r.mount_point.display().to_string(),
                r.env_spec.clone(),
            ]
        })
        .collect();
    let header = [
        "ROOT PID",
        "OWNER UID",
        "ALIVE",
        "EDITABLE",
        "MOUNT POINT",
        "ENV SPEC",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let scratches = std::iter::once(None).chain(status.runtimes.iter().map(|r| r.scratch.as_ref()));
    for (row, scratch) in std::iter::once(&header).chain(&rows).zip(scratches) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str("  ");
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
        if let Some(scratch) = scratch {
            let fate = if scratch.durable {
                "kept when the runtime ends"
            } else {
                "removed with the runtime"
            };
            text.push_str(&format!(
                "    scratch: {} ({fate})\n",
                scratch.dir.display()
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_layers_that_exist_become_absolute_and_others_stay() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cwd = dir.path().join("work");
        std::fs::create_dir_all(cwd.join("a/b"))?;
        std::fs::create_dir_all(dir.path().join("sibling"))?;
        let cwd_text = cwd.to_str().context("utf-8")?;
        assert_eq!(resolve_spec("-", &cwd)?, "-");
        assert_eq!(
            resolve_spec("a+./a/b+/abs/x+org/name+missing", &cwd)?,
            format!("{cwd_text}/a+{cwd_text}/a/b+/abs/x+org/name+missing")
        );
        let sibling = std::fs::canonicalize(dir.path().join("sibling"))?;
        assert_eq!(
            resolve_spec("../sibling", &cwd)?,
            sibling.to_str().context("utf-8")?
        );
        assert_eq!(resolve_spec("a++b", &cwd)?, format!("{cwd_text}/a++b"));
        Ok(())
    }

    #[test]
    fn repositories_are_sent_only_when_named_or_needed() {
        let cwd = Path::new("/work/dir");
        let none = RepoArgs { repos: Vec::new() };
        assert!(none.for_spec("/a+/b", cwd).is_empty());
        assert!(none.for_spec("-", cwd).is_empty());
        assert_eq!(
            none.for_spec("/a+dev/lower", cwd),
            vec![absolute(&spfs_storage::default_storage_root(), cwd)]
        );
        let named = RepoArgs {
            repos: vec!["./r1".into(), "/abs/r2".into()],
        };
        assert_eq!(
            named.for_spec("/a", cwd),
            vec![PathBuf::from("/work/dir/r1"), PathBuf::from("/abs/r2")]
        );
    }

    #[test]
    fn status_text_lists_each_runtime() {
        let status = ServiceStatus {
            backend: "kext".into(),
            transport: "device".into(),
            layout: "shared".into(),
            mount_points: vec!["/spfs".into()],
            runtimes: vec![
                spfs_proto::status::RuntimeStatus {
                    root_pid: 4242,
                    env_spec: "/layers/a+/layers/b".into(),
                    owner_uid: 501,
                    mount_point: "/spfs".into(),
                    alive: true,
                    scratch: None,
                },
                spfs_proto::status::RuntimeStatus {
                    root_pid: 4343,
                    env_spec: "/layers/a".into(),
                    owner_uid: 501,
                    mount_point: "/spfs".into(),
                    alive: true,
                    scratch: Some(spfs_proto::status::ScratchStatus {
                        dir: "/keep/mine".into(),
                        durable: true,
                    }),
                },
            ],
            traffic: Traffic {
                requests: [("LOOKUP", 30, 300), ("GETATTR", 10, 100), ("READ", 1, 5000)]
                    .into_iter()
                    .map(|(opcode, count, mean_ns)| {
                        let stats = spfs_proto::status::RequestStats { count, mean_ns };
                        (opcode.to_owned(), stats)
                    })
                    .collect(),
                outsider_root_lookups: [("mds".to_owned(), 3), ("ls".to_owned(), 1)].into(),
            },
        };
        let text = status_text(&status);
        assert!(
            text.contains(
                "requests:     41 (LOOKUP 30 x 300 ns, GETATTR 10 x 100 ns, READ 1 x 5000 ns)\n"
            ),
            "{text}"
        );
        assert!(text.contains("outsiders:    ls 1, mds 3\n"), "{text}");
        assert!(text.contains("backend:      kext\n"), "{text}");
        assert!(
            text.contains(
                "  4242      501        yes    no        /spfs        /layers/a+/layers/b\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  4343      501        yes    yes       /spfs        /layers/a\n    \
                 scratch: /keep/mine (kept when the runtime ends)\n"
            ),
            "{text}"
        );
        let json = status_json(&status);
        assert_eq!(json["runtimes"][0]["root_pid"], 4242);
        assert_eq!(json["runtimes"][0]["editable"], false);
        assert!(json["runtimes"][0]["scratch"].is_null());
        assert_eq!(json["runtimes"][1]["editable"], true);
        assert_eq!(json["runtimes"][1]["scratch"], "/keep/mine");
        assert_eq!(json["runtimes"][1]["durable"], true);
        assert_eq!(json["mount_points"][0], "/spfs");
        assert_eq!(json["requests"]["LOOKUP"]["count"], 30);
        assert_eq!(json["requests"]["LOOKUP"]["mean_ns"], 300);
        assert_eq!(json["outsider_root_lookups"]["mds"], 3);
    }

    #[test]
    fn a_scratch_makes_the_runtime_editable_and_is_sent_absolute() {
        let cwd = Path::new("/work/dir");
        let read_only = EditArgs::default();
        assert_eq!(read_only.request(cwd).unwrap(), Edit::default());
        let default = EditArgs {
            edit: true,
            scratch: None,
        };
        assert_eq!(
            default.request(cwd).unwrap(),
            Edit {
                editable: true,
                scratch: String::new()
            }
        );
        let named = EditArgs {
            edit: false,
            scratch: Some("./s/x".into()),
        };
        assert_eq!(
            named.request(cwd).unwrap(),
            Edit {
                editable: true,
                scratch: "/work/dir/s/x".into()
            }
        );
    }

    #[test]
    fn diff_prints_a_line_per_change_and_json() {
        use spfs_proto::status::ChangeKind;
        let changes = [
            ("/d", ChangeKind::Added),
            ("/lower", ChangeKind::Removed),
            ("/x", ChangeKind::Modified),
        ]
        .map(|(path, kind)| Change {
            path: path.into(),
            kind,
        });
        assert_eq!(diff_text(&changes), "+ /d\n- /lower\n~ /x\n");
        assert_eq!(diff_text(&[]), "");
        let json = diff_json(7, &changes);
        assert_eq!(json["root_pid"], 7);
        assert_eq!(json["changes"][1]["kind"], "removed");
        assert_eq!(json["changes"][1]["path"], "/lower");
    }

    #[test]
    fn status_text_says_when_nothing_was_asked() {
        let text = traffic_text(&Traffic::default());
        assert_eq!(text, "requests:     none\n");
    }
}
