//! `spfs-fuse info REF... [--repo PATH]... [--json]`: what an env spec resolves to, for people
//! debugging their environments. Runs in the client with the core's own resolution, so it
//! answers exactly what a registration would build, without a service.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use spfs_router::{Attr, EnvSpec, LayerRef, LayerSource, ResolvedSpec, Timestamp, View};
use spfs_storage::{EntryKind, Repositories};

use super::{RepoArgs, current_dir, resolve_spec};

/// Arguments of `spfs-fuse info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Env spec items, bottom first: directories, spfs tags, digests or partial digests. Several
    /// arguments (or `A+B`) stack like one spec.
    #[arg(value_name = "REF", required = true)]
    refs: Vec<String>,
    #[command(flatten)]
    repo: RepoArgs,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One layer as `info` reports it.
struct LayerInfo {
    /// `layer`, `manifest` (a manifest used as a layer) or `directory`.
    kind: &'static str,
    /// The layer object's digest, or the directory.
    name: String,
    /// The manifest's digest, for spfs layers.
    manifest: Option<String>,
    /// Paths the layer holds (masks and whiteouts not counted).
    entries: usize,
}

/// Runs `spfs-fuse info`.
pub fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let cwd = current_dir()?;
    let spec_text = resolve_spec(&args.refs.join("+"), &cwd)?;
    let repos = args.repo.for_spec(&spec_text, &cwd);
    let spec = EnvSpec::parse(&spec_text)?;
    let opened = Repositories::open(&repos).context("cannot open the spfs repositories")?;
    let resolved = spec.resolve(Arc::new(opened))?;
    // SAFETY: geteuid and getegid cannot fail and have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let root = Attr::root(uid, gid, Timestamp::default());
    let layers: Vec<LayerInfo> = resolved
        .layers
        .iter()
        .map(|layer| layer_info(layer, &root))
        .collect();
    let view = View::build(1, &resolved, &root, (uid, gid));
    let entries = view.len() - 1;

    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &info_json(&resolved, &layers, entries, &repos))?;
        writeln!(out)?;
    } else {
        write!(out, "{}", info_text(&resolved, &layers, entries, &repos))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn layer_info(layer: &LayerSource, root: &Attr) -> LayerInfo {
    match layer {
        LayerSource::Directory(path) => {
            let alone = ResolvedSpec::from_layers(
                vec![LayerSource::Directory(path.clone())],
                Arc::default(),
            );
            LayerInfo {
                kind: "directory",
                name: path.display().to_string(),
                manifest: None,
                entries: View::build(1, &alone, root, (root.uid, root.gid)).len() - 1,
            }
        }
        LayerSource::Spfs { digest, manifest } => LayerInfo {
            kind: if *digest == manifest.digest() {
                "manifest"
            } else {
                "layer"
            },
            name: digest.to_string(),
            manifest: Some(manifest.digest().to_string()),
            entries: manifest
                .entries()
                .iter()
                .filter(|e| e.kind() != EntryKind::Mask)
                .count(),
        },
    }
}

/// An item's kind: `directory`, or the spfs object's kind.
fn item_kind(item: &spfs_router::ResolvedItem) -> String {
    match (&item.item, item.object) {
        (LayerRef::Directory(_), _) => "directory".to_owned(),
        (_, Some((_, kind))) => kind.to_string(),
        (LayerRef::Spfs(_), None) => "spfs".to_owned(),
    }
}

fn info_json(
    resolved: &ResolvedSpec,
    layers: &[LayerInfo],
    entries: usize,
    repos: &[PathBuf],
) -> serde_json::Value {
    serde_json::json!({
        "repos": repos,
        "items": resolved.items.iter().map(|item| serde_json::json!({
            "item": item.item.to_string(),
            "kind": item_kind(item),
            "digest": item.object.map(|(digest, _)| digest.to_string()),
        })).collect::<Vec<_>>(),
        "layers": layers.iter().map(|layer| serde_json::json!({
            "kind": layer.kind,
            "digest": layer.manifest.as_ref().map(|_| &layer.name),
            "path": layer.manifest.is_none().then_some(&layer.name),
            "manifest": layer.manifest,
            "entries": layer.entries,
        })).collect::<Vec<_>>(),
        "entries": entries,
    })
}

fn info_text(
    resolved: &ResolvedSpec,
    layers: &[LayerInfo],
    entries: usize,
    repos: &[PathBuf],
) -> String {
    let mut text = String::new();
    if !repos.is_empty() {
        let repos: Vec<String> = repos.iter().map(|r| r.display().to_string()).collect();
        text.push_str(&format!("repositories: {}\n", repos.join(" ")));
    }
    text.push_str("items:\n");
    let width = resolved
        .items
        .iter()
        .map(|i| i.item.to_string().len())
        .max()
        .unwrap_or(0);
    for item in &resolved.items {
        let digest = item
            .object
            .map(|(digest, _)| digest.to_string())
            .unwrap_or_default();
        let line = format!(
            "  {:<width$}  {:<9}  {digest}",
            item.item.to_string(),
            item_kind(item)
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str("layers (bottom first):\n");
    for (i, layer) in layers.iter().enumerate() {
        text.push_str(&format!(
            "  {:>2}  {:<9}  {}  {} entries\n",
            i + 1,
            layer.kind,
            layer.name,
            layer.entries
        ));
    }
    text.push_str(&format!("view: {entries} entries\n"));
    text
}
