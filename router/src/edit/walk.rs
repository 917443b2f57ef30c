//! One walk of a scratch against the tree below it, for what reads a scratch as a layer: the
//! diff (what changed) and the commit (the tree a new spfs layer holds).
//!
//! The scratch is a directory layer (module doc of [`crate::edit`]): an entry is a change;
//! `.wh.NAME` removes a lower `NAME` (unless the scratch holds `NAME` again); a directory
//! holding `.wh..wh..opq` replaced the lower one, so every lower entry of it the scratch does
//! not hold again is removed, and the same holds inside it. Names starting with `.wh..wh.`
//! other than the opaque marker are the core's temporary files (a frozen generation's
//! directory among them), and `.nfs*` files are an NFS client's silly renames of removed
//! open files: neither is a change.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::diff::DiffError;
use super::lower::Lower;
use super::{OPAQUE_MARKER as OPAQUE, WHITEOUT_PREFIX as WHITEOUT};
use crate::view::FileKind;

/// Names with this prefix are the format's own: the opaque marker and the core's temporary
/// files ([`super::TEMP_PREFIX`]), never whiteouts of a real name.
const RESERVED: &[u8] = b".wh..wh.";
/// An NFS client's name for a removed file that is still open.
const NFS_SILLY: &[u8] = b".nfs";

/// One entry of the scratch, as the walk meets it.
pub(super) struct Met<'a> {
    /// Its path inside the view, starting with `/`.
    pub path: &'a Path,
    /// Where it is on disk.
    pub real: &'a Path,
    /// Its metadata (not following a symlink).
    pub meta: &'a Metadata,
    /// The lower entry of the same path, if any.
    pub below: Option<u32>,
    /// For a directory: whether it hides the lower directory's entries (its own marker, or
    /// an opaque parent).
    pub opaque: bool,
}

/// What a walk tells: entries of the scratch (a directory before its entries) and lower
/// entries it removed. Errors of the walk itself arrive as [`DiffError`].
pub(super) trait Visit {
    /// The visitor's error.
    type Error: From<DiffError>;
    /// The lower entry at `path` is removed.
    fn removed(&mut self, path: &Path) -> Result<(), Self::Error>;
    /// The scratch holds `entry`.
    fn entry(&mut self, lower: &dyn Lower<'_>, entry: &Met<'_>) -> Result<(), Self::Error>;
}

/// Walks scratch directory `scratch` against `lower`, telling `visit` what it finds.
pub(super) fn walk<V: Visit>(
    lower: &dyn Lower<'_>,
    scratch: &Path,
    visit: &mut V,
) -> Result<(), V::Error> {
    // Only a scratch an earlier runtime left (or one written by hand) has an opaque root.
    let opaque = scratch.join(OsStr::from_bytes(OPAQUE)).exists();
    walk_dir(lower, scratch, Path::new("/"), Some(0), opaque, visit)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiffError + '_ {
    move |source| DiffError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn walk_dir<V: Visit>(
    lower: &dyn Lower<'_>,
    real: &Path,
    path: &Path,
    below: Option<u32>,
    opaque: bool,
    visit: &mut V,
) -> Result<(), V::Error> {
    let mut names: Vec<OsString> = std::fs::read_dir(real)
        .map_err(io(real))?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(real))?;
    names.retain(|n| !n.as_bytes().starts_with(NFS_SILLY));
    names.sort();
    let present: BTreeSet<&[u8]> = names
        .iter()
        .map(|n| n.as_bytes())
        .filter(|n| !n.starts_with(WHITEOUT))
        .collect();
    if opaque && let Some(below) = below {
        // Everything of the lower directory that the scratch does not hold again is gone.
        for (name, _) in lower.list(below) {
            if !present.contains(name) {
                visit.removed(&path.join(OsStr::from_bytes(name)))?;
            }
        }
    }
    let mut subdirs = Vec::new();
    for name in &names {
        let bytes = name.as_bytes();
        if bytes.starts_with(RESERVED) {
            continue;
        }
        if let Some(hidden) = bytes.strip_prefix(WHITEOUT) {
            // An entry of the same name in the scratch wins over its whiteout; in an opaque
            // directory the lower entries were told above.
            let gone = below.and_then(|d| lower.child(d, hidden));
            if !opaque && !present.contains(hidden) && gone.is_some() {
                visit.removed(&path.join(OsStr::from_bytes(hidden)))?;
            }
            continue;
        }
        let entry_real = real.join(name);
        let entry_path = path.join(name);
        let meta = std::fs::symlink_metadata(&entry_real).map_err(io(&entry_real))?;
        let entry_below = below.and_then(|d| lower.child(d, bytes));
        let entry_opaque =
            meta.is_dir() && (opaque || entry_real.join(OsStr::from_bytes(OPAQUE)).exists());
        visit.entry(
            lower,
            &Met {
                path: &entry_path,
                real: &entry_real,
                meta: &meta,
                below: entry_below,
                opaque: entry_opaque,
            },
        )?;
        if meta.is_dir() {
            let lower_dir = entry_below.filter(|&i| lower.kind(i) == Some(FileKind::Directory));
            subdirs.push((entry_real, entry_path, lower_dir, entry_opaque));
        }
    }
    for (real, path, below, opaque) in subdirs {
        walk_dir(lower, &real, &path, below, opaque, visit)?;
    }
    Ok(())
}
