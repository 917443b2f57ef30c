//! Errors of the spfs repository reader. Each message names the value that is wrong: the
//! reference, the digest or the file path.

use std::io;
use std::path::PathBuf;

use super::digest::Digest;
use super::object::ObjectKind;

/// Everything that can go wrong while reading an spfs repository.
#[derive(Debug, thiserror::Error)]
pub enum SpfsError {
    /// The path is not an spfs repository (a required directory is missing).
    #[error("{path} is not an spfs repository: {reason}")]
    NotARepository {
        /// The repository root that was given.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The repository's `VERSION` names a version this reader does not support.
    #[error(
        "{path}: unsupported spfs repository version {version:?} (this reader reads major version 0)"
    )]
    UnsupportedVersion {
        /// The `VERSION` file.
        path: PathBuf,
        /// Its trimmed content.
        version: String,
    },
    /// Reading a file or directory failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A string is neither a full digest, a partial digest nor a tag.
    #[error("invalid reference {0:?}: not a digest, a partial digest or a tag ([org/]name[~N])")]
    InvalidReference(String),
    /// A string is not a full 56-character digest.
    #[error("invalid digest {0:?}: expected 56 characters of upper-case base32 ending in ====")]
    InvalidDigest(String),
    /// A tag stream does not exist.
    #[error("unknown tag {0}")]
    UnknownTag(String),
    /// A tag exists but has fewer versions than `~N` asks for.
    #[error("unknown tag version {reference}: the tag has only {versions} version(s)")]
    UnknownTagVersion {
        /// The reference as given, e.g. `dev/history~3`.
        reference: String,
        /// How many versions the stream holds.
        versions: usize,
    },
    /// No object has this full digest.
    #[error("unknown object {0}")]
    UnknownObject(Digest),
    /// No object starts with this partial digest.
    #[error("unknown partial digest {0}: no object starts with it")]
    UnknownPartialDigest(String),
    /// More than one object starts with this partial digest.
    #[error("ambiguous partial digest {reference}: it matches {} objects ({})", .matches.len(), list(.matches))]
    AmbiguousDigest {
        /// The prefix as given.
        reference: String,
        /// The digests it matches (at most a few are kept).
        matches: Vec<Digest>,
    },
    /// An object file is corrupt or truncated.
    #[error("corrupt spfs object {path}: {reason}")]
    CorruptObject {
        /// The object's file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag file is corrupt or truncated.
    #[error("corrupt spfs tag file {path}: {reason}")]
    CorruptTag {
        /// The `.tag` file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An object's content does not hash to its name.
    #[error("spfs object {path} does not match its digest: its content hashes to {actual}")]
    DigestMismatch {
        /// The object's (or payload's) file.
        path: PathBuf,
        /// The digest recomputed from the content.
        actual: Digest,
    },
    /// An object of the wrong kind was found where another was needed.
    #[error("object {digest} is a {found}, expected {expected}")]
    WrongKind {
        /// The object.
        digest: Digest,
        /// What the caller needed.
        expected: &'static str,
        /// What the object is.
        found: ObjectKind,
    },
    /// A blob cannot be mounted as a layer.
    #[error("object {0} is a blob: a blob cannot be used as a filesystem layer")]
    NotMountable(Digest),
    /// A layer holds only annotations and no manifest.
    #[error("layer {0} has no manifest (it holds only annotations)")]
    LayerWithoutManifest(Digest),
    /// Platforms nest deeper than the reader follows (a guard against hostile data).
    #[error("platform {0} nests platforms more than {max} levels deep", max = super::repo::MAX_PLATFORM_DEPTH)]
    PlatformTooDeep(Digest),
    /// A manifest expands to more entries than the reader accepts (a guard against hostile data).
    #[error("manifest {path} expands to more than {max} entries")]
    ManifestTooLarge {
        /// The manifest's file.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
}

impl SpfsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        SpfsError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        SpfsError::CorruptObject {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

fn list(digests: &[Digest]) -> String {
    digests
        .iter()
        .map(Digest::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Shorthand for results of the spfs reader.
pub type Result<T, E = SpfsError> = std::result::Result<T, E>;
