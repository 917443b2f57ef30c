//! A reader (and, in [`write`], a writer) of spfs filesystem repositories (spfs 0.44; the
//! format is described in the project's SPFS-FORMAT.md).
//!
//! It reads both object encodings (FlatBuffers and legacy) and both digest strategies, tag
//! streams with their older versions (`name~N`), platforms, layers, manifests and payload
//! paths. It knows nothing of FUSE: views are built from its [`Manifest`]s elsewhere.
//!
//! # Use
//!
//! ```no_run
//! use spfs_storage::{ObjectSource, Repositories, Repository, default_storage_root};
//!
//! # fn main() -> Result<(), spfs_storage::SpfsError> {
//! let repos = Repositories::new(vec![Repository::open(default_storage_root())?]);
//! let item = repos.resolve("dev/platform")?;           // a tag, `tag~N`, digest or prefix
//! for layer in repos.layers_of(&item)? {                // bottom first, platforms expanded
//!     let manifest = repos.read_manifest(&layer.manifest)?;
//!     for (index, entry) in manifest.entries().iter().enumerate() {
//!         let path = manifest.path(index);              // or walk `children()`
//!         let _ = (path, entry.kind(), entry.permissions(), entry.size());
//!         let _content = repos.payload_path(&entry.digest()); // files and symlink targets
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # API
//!
//! - [`Repository::open`]`(path)`: requires `objects/` and `payloads/`; checks `VERSION`.
//! - [`Repository::resolve`]`(reference) -> `[`Resolved`]` { digest, kind }`: a full digest, a
//!   unique partial digest or a tag, in the env-spec order of precedence. Errors name the
//!   reference: [`SpfsError::UnknownTag`], [`SpfsError::UnknownTagVersion`],
//!   [`SpfsError::UnknownPartialDigest`], [`SpfsError::AmbiguousDigest`],
//!   [`SpfsError::UnknownObject`], [`SpfsError::InvalidReference`].
//! - [`ObjectSource::layers_of`]`(&Resolved)` and [`ObjectSource::layers_of_stack`]`(&[Digest])`
//!   `-> Vec<`[`MountLayer`]`>`: the layers to merge, bottom first, after spfs's expansion
//!   and de-duplication rules (SPFS-FORMAT.md §12.3). A blob is [`SpfsError::NotMountable`].
//! - [`ObjectSource::read_manifest`]`(&Digest) -> `[`Manifest`]: a layer's (or a manifest's)
//!   tree, flattened breadth first into 64-byte [`Entry`]s plus one shared name buffer.
//!   Each directory's children are one range sorted by name bytes ([`Manifest::find`] is a
//!   binary search); every entry knows its parent; [`Manifest::path`] rebuilds a path.
//!   Masks are kept as entries of kind [`EntryKind::Mask`]; merging is the caller's job.
//! - [`Repository::payload_path`]`(&Digest)`: the file holding a file's content or a
//!   symlink's target.
//! - [`Repository::read_object`], [`Repository::verify_object`] (recomputes digests),
//!   [`Repository::tag_history`], [`Repository::list_tags`].
//! - [`Repositories`]: the same over several repositories, searched in order; what both
//!   share is the [`ObjectSource`] trait.
//! - [`default_storage_root`]: `SPFS_STORAGE__ROOT`, else spfs's default.
//!
//! - [`Repository::check`]: the whole repository (objects, payloads, references, tags).
//! - [`write`]: the writer of commits ([`write::RepoWriter`], [`write::tree_of_dir`]).
//!
//! Corrupt or truncated objects give [`SpfsError::CorruptObject`] naming the object's file;
//! every byte read from disk is bounds-checked, and FlatBuffers are checked by the
//! `flatbuffers` verifier before they are read. Nothing here panics on bad input.

mod check;
mod digest;
#[cfg(feature = "testing")]
pub mod encode;
mod error;
mod fb;
mod legacy;
mod manifest;
mod object;
mod repo;
mod tag;
pub mod write;

use std::ffi::OsString;
use std::path::PathBuf;

pub use check::CheckReport;
pub use digest::{DIGEST_SIZE, DIGEST_STRING_LEN, Digest, PartialDigest};
pub use error::{Result, SpfsError};
pub use manifest::{Entry, EntryKind, MAX_MANIFEST_ENTRIES, Manifest};
pub use object::{
    Annotation, AnnotationValue, Blob, DIGEST_SALT, DigestStrategy, Encoding, HEADER_LEN, Header,
    Layer, MAGIC, Object, ObjectKind, Platform,
};
pub use repo::{
    MAX_PLATFORM_DEPTH, MountLayer, ObjectSource, Reference, Repositories, Repository, Resolved,
};
pub use tag::{TagRecord, TagSpec, encode_tag_file, parse_tag_file};

/// The environment variable naming the spfs storage root.
pub const STORAGE_ROOT_ENV: &str = "SPFS_STORAGE__ROOT";

/// The calling user's spfs storage root: `SPFS_STORAGE__ROOT` if set and not empty, otherwise
/// spfs's own default, `~/.local/share/spfs` (the same on Linux and macOS), or `/tmp/spfs`
/// when there is no home directory. spfs config files (`/etc/spfs.toml`,
/// `~/.config/spfs/spfs.toml`) are not read.
pub fn default_storage_root() -> PathBuf {
    default_storage_root_from(|name| std::env::var_os(name))
}

/// [`default_storage_root`] with the environment given as a lookup function (for tests).
pub fn default_storage_root_from(env: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    if let Some(root) = env(STORAGE_ROOT_ENV).filter(|r| !r.is_empty()) {
        return PathBuf::from(root);
    }
    match env("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/spfs"),
        None => PathBuf::from("/tmp/spfs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_types_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<Repository>();
        send_sync::<Repositories>();
        send_sync::<Manifest>();
        send_sync::<SpfsError>();
    }

    #[test]
    fn storage_root_prefers_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            default_storage_root_from(env(&[("SPFS_STORAGE__ROOT", "/repo"), ("HOME", "/home/u")])),
            PathBuf::from("/repo")
        );
        assert_eq!(
            default_storage_root_from(env(&[("SPFS_STORAGE__ROOT", ""), ("HOME", "/home/u")])),
            PathBuf::from("/home/u/.local/share/spfs")
        );
        assert_eq!(
            default_storage_root_from(env(&[])),
            PathBuf::from("/tmp/spfs")
        );
    }
}
