//! Env specs: `LAYER+LAYER+...`, bottom first; `-` is the empty spec.

use std::fmt;
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::SpecError;

/// The most layers one view may stack. overlayfs allows 500; a view is built by walking every
/// layer, so the limit only guards the service against a spec that would take minutes to build.
pub const MAX_LAYERS: usize = 1024;

/// One item of an env spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerRef {
    /// A directory on the host, by absolute path.
    Directory(PathBuf),
}

impl fmt::Display for LayerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerRef::Directory(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A parsed env spec: its layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvSpec {
    /// The layers, bottom first. Empty for the empty spec `-`.
    pub layers: Vec<LayerRef>,
}

impl EnvSpec {
    /// Parses `spec` without touching the filesystem: syntax, absolute paths, no `..`.
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
            let path = Path::new(item);
            if !path.is_absolute() {
                return Err(SpecError::RelativePath((*item).to_owned()));
            }
            if path.components().any(|c| c == Component::ParentDir) {
                return Err(SpecError::ParentComponent((*item).to_owned()));
            }
            layers.push(LayerRef::Directory(path.to_path_buf()));
        }
        Ok(EnvSpec { layers })
    }

    /// Checks that every layer is a readable directory. Symlinks to directories are accepted
    /// for the layer itself (a user's path), never inside it.
    pub fn check(&self) -> Result<(), SpecError> {
        for layer in &self.layers {
            let LayerRef::Directory(path) = layer;
            check_directory(path)?;
        }
        Ok(())
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
    }
}
