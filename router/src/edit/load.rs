//! Loading a scratch an earlier runtime left: its entries become the overlay's changes, so a
//! durable scratch registered again shows every earlier change.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::lower::Lower;
use super::overlay::State;
use super::{OPAQUE_MARKER, TEMP_PREFIX, WHITEOUT_PREFIX};
use crate::view::{FileKind, entry_kind};

/// Hard links found so far: (device, inode) to the index that took it first.
pub(super) type Links = HashMap<(u64, u64), u32>;

/// Loads scratch directory `path`, the upper part of directory `dir`, into `state`.
pub(super) fn load_dir(
    state: &mut State,
    lower: &dyn Lower<'_>,
    dir: u32,
    path: &Path,
    links: &mut Links,
) {
    let entries = match fs::read_dir(path) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "skipping a scratch directory that cannot be read");
            return;
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "skipping an unreadable scratch entry");
            }
        }
    }
    let has = |wanted: &[u8]| names.iter().any(|e| e.file_name().as_bytes() == wanted);
    let opaque = has(OPAQUE_MARKER);
    let lower_dir = lower.is_dir(dir);
    if opaque && lower_dir {
        // Only the root can be a lower directory with a marker (any other opaque directory
        // is loaded as a new one): everything below it is hidden.
        for (name, _) in lower.list(dir) {
            state.hide(dir, name);
        }
    }
    for entry in &names {
        let name = entry.file_name();
        let bytes = name.as_bytes();
        if bytes.starts_with(TEMP_PREFIX.as_bytes()) {
            let leftover = entry.path();
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&leftover),
                _ => fs::remove_file(&leftover),
            };
            match removed {
                Ok(()) => {
                    tracing::info!(path = %leftover.display(), "removed a temp file an earlier runtime left")
                }
                Err(err) => {
                    tracing::warn!(path = %leftover.display(), error = %err, "cannot remove a leftover temp file")
                }
            }
            continue;
        }
        if bytes == OPAQUE_MARKER {
            continue;
        }
        if let Some(hidden) = bytes.strip_prefix(WHITEOUT_PREFIX) {
            if !hidden.is_empty() && lower_dir && lower.child(dir, hidden).is_some() {
                state.hide(dir, hidden);
            }
            continue;
        }
        let Some(kind) = entry_kind(entry) else {
            continue;
        };
        if kind == FileKind::Directory {
            let mut whiteout = WHITEOUT_PREFIX.to_vec();
            whiteout.extend_from_slice(bytes);
            let merged = lower_dir
                && !opaque
                && !has(&whiteout)
                && !entry
                    .path()
                    .join(std::ffi::OsStr::from_bytes(OPAQUE_MARKER))
                    .exists()
                && lower.child(dir, bytes).is_some_and(|c| lower.is_dir(c));
            let index = match merged {
                true => lower.child(dir, bytes).map(|c| state.merge(lower, c)),
                false => state.add(dir, bytes, kind),
            };
            if let Some(index) = index {
                load_dir(state, lower, index, &entry.path(), links);
            }
            continue;
        }
        let id = entry.metadata().ok().map(|m| (m.dev(), m.ino(), m.nlink()));
        match id {
            Some((dev, ino, nlink)) if nlink > 1 && kind == FileKind::File => {
                match links.get(&(dev, ino)) {
                    Some(index) => state.link(dir, bytes, *index),
                    None => {
                        if let Some(index) = state.add(dir, bytes, kind) {
                            links.insert((dev, ino), index);
                        }
                    }
                }
            }
            _ => {
                state.add(dir, bytes, kind);
            }
        }
    }
}
