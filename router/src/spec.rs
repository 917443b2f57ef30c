//! Env specs: `LAYER+LAYER+...`, bottom first; `-` is the empty spec.
//!
//! An item is an absolute directory path or an spfs reference: a tag (`org/name`, `name~N`),
//! a full digest or a unique partial digest (SPFS-FORMAT.md §12.1). Parsing never touches the
//! filesystem; [`EnvSpec::resolve`] reads the directories and repositories at registration.
//!
//! Mixing rule: directory items stay where they are written. Each run of consecutive spfs items
//! is stacked the way spfs stacks an env spec (§12.3: repeated items keep their last position,
//! platforms expand, repeated layers keep their first), so a spec of spfs items alone gives
//! exactly spfs's layers, and a spec of directories alone is unchanged.

use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::error::SpecError;
use spfs_storage::{Digest, Manifest, ObjectKind, ObjectSource, Reference, Repositories};

/// The most layers one view may stack. overlayfs allows 500; a view is built by walking every
/// layer, so the limit only guards the service against a spec that would take minutes to build.
pub const MAX_LAYERS: usize = 1024;

/// The most spfs entries (masks included) the layers of one spec may hold together: view
/// entries are indexed by `u32`, and a merged view holds at most this many.
pub const MAX_SPFS_ENTRIES: usize = (u32::MAX / 2) as usize;

/// One item of an env spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerRef {
    /// A directory on the host, by absolute path.
    Directory(PathBuf),
    /// An spfs reference (tag, digest or partial digest) as written; it parses as a
    /// [`Reference`].
    Spfs(String),
}

impl fmt::Display for LayerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerRef::Directory(path) => write!(f, "{}", path.display()),
            LayerRef::Spfs(reference) => f.write_str(reference),
        }
    }
}

/// A parsed env spec: its layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvSpec {
    /// The layers, bottom first. Empty for the empty spec `-`.
    pub layers: Vec<LayerRef>,
}

/// Where one layer's entries come from, read and ready to build a view from (a [`LayerRef`]
/// after resolution).
#[derive(Debug)]
pub enum LayerSource {
    /// A host directory (OCI whiteouts).
    Directory(PathBuf),
    /// An spfs layer (or a manifest used as one) with its manifest read (masks).
    Spfs {
        /// The layer object's digest (the manifest's own for a manifest used directly).
        digest: Digest,
        /// Its manifest.
        manifest: Manifest,
    },
}

/// What one item of a spec resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedItem {
    /// The item as written.
    pub item: LayerRef,
    /// For an spfs reference: the object it names and its kind.
    pub object: Option<(Digest, ObjectKind)>,
}

/// An env spec resolved against its repositories: the layers to merge, bottom first.
#[derive(Debug, Default)]
pub struct ResolvedSpec {
    /// The items as written, each with what it resolved to.
    pub items: Vec<ResolvedItem>,
    /// The layers, bottom first, platforms expanded.
    pub layers: Vec<LayerSource>,
    /// Where payloads are read from.
    pub repos: Arc<Repositories>,
    /// Entries of the spfs layers' manifests so far, masks included.
    spfs_entries: usize,
}

impl EnvSpec {
    /// Parses `spec` without touching the filesystem: syntax, absolute paths without `..`,
    /// spfs references.
    pub fn parse(spec: &str) -> Result<EnvSpec, SpecError> {
        if spec.is_empty() {
            return Err(SpecError::Empty);
        }
        if spec == "-" {
            return Ok(EnvSpec::default());
        }
        let items: Vec<&str> = spec.split('+').collect();
        if items.len() > MAX_LAYERS {
            return Err(SpecError::TooManyLayers(items.len()));
        }
        let mut layers = Vec::with_capacity(items.len());
        for (position, item) in items.iter().enumerate() {
            if item.is_empty() {
                return Err(SpecError::EmptyComponent {
                    spec: spec.to_owned(),
                    position: position + 1,
                });
            }
            layers.push(parse_item(item)?);
        }
        Ok(EnvSpec { layers })
    }

    /// Whether any item is an spfs reference (and so needs a repository).
    pub fn has_spfs(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, LayerRef::Spfs(_)))
    }

    /// The spfs items, in order.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().filter_map(|l| match l {
            LayerRef::Spfs(reference) => Some(reference.as_str()),
            LayerRef::Directory(_) => None,
        })
    }

    /// The directory items, in order.
    pub fn directories(&self) -> impl Iterator<Item = &Path> {
        self.layers.iter().filter_map(|l| match l {
            LayerRef::Directory(path) => Some(path.as_path()),
            LayerRef::Spfs(_) => None,
        })
    }

    /// Checks that every directory layer is a readable directory. Symlinks to directories are
    /// accepted for the layer itself (a user's path), never inside it.
    pub fn check(&self) -> Result<(), SpecError> {
        self.directories().try_for_each(check_directory)
    }

    /// Resolves every item against `repos` (searched in order) and reads the manifests of the
    /// spfs layers. Errors name the item, and for a corrupt object its file.
    pub fn resolve(&self, repos: Arc<Repositories>) -> Result<ResolvedSpec, SpecError> {
        self.check()?;
        let mut resolved = ResolvedSpec {
            items: Vec::with_capacity(self.layers.len()),
            layers: Vec::new(),
            repos,
            spfs_entries: 0,
        };
        let mut run: Vec<(String, Digest)> = Vec::new();
        for item in &self.layers {
            match item {
                LayerRef::Directory(path) => {
                    resolved.push_spfs_run(&mut run)?;
                    resolved.items.push(ResolvedItem {
                        item: item.clone(),
                        object: None,
                    });
                    resolved.layers.push(LayerSource::Directory(path.clone()));
                }
                LayerRef::Spfs(reference) => {
                    if resolved.repos.repositories().is_empty() {
                        return Err(SpecError::NoRepository(reference.clone()));
                    }
                    let found =
                        resolved
                            .repos
                            .resolve(reference)
                            .map_err(|error| SpecError::Spfs {
                                item: reference.clone(),
                                error,
                            })?;
                    resolved.items.push(ResolvedItem {
                        item: item.clone(),
                        object: Some((found.digest, found.kind)),
                    });
                    run.push((reference.clone(), found.digest));
                }
            }
        }
        resolved.push_spfs_run(&mut run)?;
        if resolved.layers.len() > MAX_LAYERS {
            return Err(SpecError::TooManyLayers(resolved.layers.len()));
        }
        Ok(resolved)
    }
}

impl ResolvedSpec {
    /// The empty spec: no layers, no repositories.
    pub fn empty() -> ResolvedSpec {
        ResolvedSpec::default()
    }

    /// A spec of host directories only, bottom first: what tests and tools that have no
    /// repository build views from.
    pub fn of_directories(directories: impl IntoIterator<Item = PathBuf>) -> ResolvedSpec {
        ResolvedSpec::from_layers(
            directories
                .into_iter()
                .map(LayerSource::Directory)
                .collect(),
            Arc::new(Repositories::default()),
        )
    }

    /// A spec of layers resolved elsewhere (no items), reading payloads from `repos`.
    pub fn from_layers(layers: Vec<LayerSource>, repos: Arc<Repositories>) -> ResolvedSpec {
        let spfs_entries = layers
            .iter()
            .map(|l| match l {
                LayerSource::Spfs { manifest, .. } => manifest.len(),
                LayerSource::Directory(_) => 0,
            })
            .sum();
        ResolvedSpec {
            items: Vec::new(),
            layers,
            repos,
            spfs_entries,
        }
    }

    /// Expands a run of consecutive spfs items into layers and reads their manifests.
    fn push_spfs_run(&mut self, run: &mut Vec<(String, Digest)>) -> Result<(), SpecError> {
        if run.is_empty() {
            return Ok(());
        }
        let items: Vec<Digest> = run.iter().map(|(_, d)| *d).collect();
        let named = run
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let wrap = |error| SpecError::Spfs {
            item: named.clone(),
            error,
        };
        for layer in self.repos.layers_of_stack(&items).map_err(wrap)? {
            if self.layers.len() >= MAX_LAYERS {
                return Err(SpecError::TooManyLayers(self.layers.len() + 1));
            }
            let manifest = self.repos.read_manifest(&layer.manifest).map_err(wrap)?;
            self.spfs_entries += manifest.len();
            if self.spfs_entries > MAX_SPFS_ENTRIES {
                return Err(SpecError::TooManyEntries(self.spfs_entries));
            }
            self.layers.push(LayerSource::Spfs {
                digest: layer.digest,
                manifest,
            });
        }
        run.clear();
        Ok(())
    }
}

/// One item: an absolute directory path, else an spfs reference.
fn parse_item(item: &str) -> Result<LayerRef, SpecError> {
    let path = Path::new(item);
    if path.is_absolute() {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(SpecError::ParentComponent(item.to_owned()));
        }
        return Ok(LayerRef::Directory(path.to_path_buf()));
    }
    // `./x` and `../x` are tag-shaped (`.` is a valid tag character) but nobody means a tag.
    if matches!(
        path.components().next(),
        Some(Component::CurDir | Component::ParentDir)
    ) {
        return Err(SpecError::RelativePath(item.to_owned()));
    }
    match Reference::parse(item) {
        Ok(_) => Ok(LayerRef::Spfs(item.to_owned())),
        Err(_) => Err(SpecError::InvalidItem(item.to_owned())),
    }
}

impl fmt::Display for EnvSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.layers.is_empty() {
            return f.write_str("-");
        }
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str("+")?;
            }
            write!(f, "{layer}")?;
        }
        Ok(())
    }
}

fn check_directory(path: &Path) -> Result<(), SpecError> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(SpecError::MissingPath(path.to_path_buf()));
        }
        Err(source) => {
            return Err(SpecError::Unreadable {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    if !meta.is_dir() {
        return Err(SpecError::NotADirectory(path.to_path_buf()));
    }
    fs::read_dir(path).map_err(|source| SpecError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_is_the_empty_spec() {
        assert_eq!(EnvSpec::parse("-").unwrap(), EnvSpec::default());
        assert_eq!(EnvSpec::default().to_string(), "-");
    }

    #[test]
    fn layers_are_bottom_first_and_display_round_trips() {
        let spec = EnvSpec::parse("/a/b+/c").unwrap();
        assert_eq!(
            spec.layers,
            vec![
                LayerRef::Directory("/a/b".into()),
                LayerRef::Directory("/c".into())
            ]
        );
        assert_eq!(spec.to_string(), "/a/b+/c");
        assert!(!spec.has_spfs());
    }

    #[test]
    fn spfs_references_mix_with_directories() {
        let spec = EnvSpec::parse("/base+dev/lower+name~2+LP6F+toplevel").unwrap();
        assert_eq!(
            spec.layers,
            vec![
                LayerRef::Directory("/base".into()),
                LayerRef::Spfs("dev/lower".into()),
                LayerRef::Spfs("name~2".into()),
                LayerRef::Spfs("LP6F".into()),
                LayerRef::Spfs("toplevel".into()),
            ]
        );
        assert!(spec.has_spfs());
        assert_eq!(spec.to_string(), "/base+dev/lower+name~2+LP6F+toplevel");
        assert!(matches!(
            EnvSpec::parse("/a+has space").unwrap_err(),
            SpecError::InvalidItem(item) if item == "has space"
        ));
        assert!(matches!(
            EnvSpec::parse("./lib").unwrap_err(),
            SpecError::RelativePath(item) if item == "./lib"
        ));
    }

    #[test]
    fn spfs_items_need_a_repository() {
        let spec = EnvSpec::parse("dev/lower").unwrap();
        let err = spec.resolve(Arc::default()).unwrap_err();
        assert!(
            matches!(err, SpecError::NoRepository(ref r) if r == "dev/lower"),
            "{err}"
        );
    }
}
