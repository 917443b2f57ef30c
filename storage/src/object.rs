//! Object files: the 17-byte header (SPFS-FORMAT.md §5), the logical object model (§6), and
//! the digest rules for objects (§9).

use std::fmt;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::{Result, SpfsError};
use super::manifest::Manifest;
use super::{fb, legacy};

/// The magic every object file starts with.
pub const MAGIC: &[u8; 9] = b"--SPFS--\n";

/// Length of the object header: magic, strategy, encoding, 5 reserved bytes, kind.
pub const HEADER_LEN: usize = 17;

/// The salt hashed before an object's body under the salted digest strategy (48 ASCII
/// characters and a NUL).
pub const DIGEST_SALT: &[u8; 49] = b"spfs digest da8d8e62-9459-11ee-adab-00155dcb338b\0";

/// The four kinds of stored objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// A payload's record: its digest and size.
    Blob,
    /// A directory tree.
    Manifest,
    /// One manifest (and annotations).
    Layer,
    /// A stack of layers, platforms or manifests, bottom first.
    Platform,
}

impl ObjectKind {
    /// The kind from its header byte (0 Blob, 1 Manifest, 2 Layer, 3 Platform).
    pub fn from_header_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(ObjectKind::Blob),
            1 => Some(ObjectKind::Manifest),
            2 => Some(ObjectKind::Layer),
            3 => Some(ObjectKind::Platform),
            _ => None,
        }
    }

    /// The header byte of this kind.
    pub fn header_byte(self) -> u8 {
        match self {
            ObjectKind::Blob => 0,
            ObjectKind::Manifest => 1,
            ObjectKind::Layer => 2,
            ObjectKind::Platform => 3,
        }
    }

    /// The lower-case name (`blob`, `manifest`, `layer`, `platform`).
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Blob => "blob",
            ObjectKind::Manifest => "manifest",
            ObjectKind::Layer => "layer",
            ObjectKind::Platform => "platform",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How an object's digest is computed (header byte 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestStrategy {
    /// `sha256(legacy body)`.
    Legacy,
    /// `sha256(SALT ‖ kind ‖ legacy body)`.
    WithKindAndSalt,
    /// A value this reader does not know; the object can be read but not verified.
    Unknown(u8),
}

impl DigestStrategy {
    fn from_byte(b: u8) -> Self {
        match b {
            0 => DigestStrategy::Legacy,
            1 => DigestStrategy::WithKindAndSalt,
            other => DigestStrategy::Unknown(other),
        }
    }

    /// The header byte of this strategy.
    pub fn header_byte(self) -> u8 {
        match self {
            DigestStrategy::Legacy => 0,
            DigestStrategy::WithKindAndSalt => 1,
            DigestStrategy::Unknown(b) => b,
        }
    }
}

/// How an object's body is encoded (header byte 10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The legacy big-endian encoding (SPFS-FORMAT.md §7).
    Legacy,
    /// A FlatBuffer (SPFS-FORMAT.md §8).
    FlatBuffers,
}

impl Encoding {
    /// The header byte of this encoding.
    pub fn header_byte(self) -> u8 {
        match self {
            Encoding::Legacy => 0,
            Encoding::FlatBuffers => 1,
        }
    }
}

/// The decoded 17-byte header of an object file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Byte 9.
    pub strategy: DigestStrategy,
    /// Byte 10.
    pub encoding: Encoding,
    /// Byte 16.
    pub kind: ObjectKind,
}

impl Header {
    /// Parses the header at the start of `bytes`; errors name `path`.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.len() < MAGIC.len() && MAGIC.starts_with(bytes) {
            return Err(SpfsError::corrupt(
                path,
                format!(
                    "truncated: {} bytes, the header alone needs {HEADER_LEN}",
                    bytes.len()
                ),
            ));
        }
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            let shown = &bytes[..bytes.len().min(MAGIC.len())];
            return Err(SpfsError::corrupt(
                path,
                format!("bad magic {shown:02x?}, expected \"--SPFS--\\n\""),
            ));
        }
        if bytes.len() < HEADER_LEN {
            return Err(SpfsError::corrupt(
                path,
                format!(
                    "truncated: {} bytes, the header alone needs {HEADER_LEN}",
                    bytes.len()
                ),
            ));
        }
        let encoding = match bytes[10] {
            0 => Encoding::Legacy,
            1 => Encoding::FlatBuffers,
            other => {
                return Err(SpfsError::corrupt(
                    path,
                    format!("unknown encoding format {other}"),
                ));
            }
        };
        let kind = ObjectKind::from_header_byte(bytes[16]).ok_or_else(|| {
            SpfsError::corrupt(path, format!("unknown object kind {}", bytes[16]))
        })?;
        Ok(Header {
            strategy: DigestStrategy::from_byte(bytes[9]),
            encoding,
            kind,
        })
    }

    /// The 17 header bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..MAGIC.len()].copy_from_slice(MAGIC);
        out[9] = self.strategy.header_byte();
        out[10] = self.encoding.header_byte();
        out[16] = self.kind.header_byte();
        out
    }
}

/// A blob object: a payload exists, with this size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The payload digest (equal to the blob's own digest).
    pub payload: Digest,
    /// The payload's length in bytes.
    pub size: u64,
}

/// The value of a layer annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnnotationValue {
    /// A string stored inline.
    String(String),
    /// A blob holding a large value.
    Digest(Digest),
}

/// One key/value annotation of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// The key.
    pub key: String,
    /// The value.
    pub value: AnnotationValue,
}

/// A layer object: one manifest, and annotations (FlatBuffers encoding only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The manifest; `None` for annotation-only layers, which add nothing to a view.
    pub manifest: Option<Digest>,
    /// The annotations, in stored order.
    pub annotations: Vec<Annotation>,
}

/// A platform object: a stack of digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// Layers, platforms or manifests, bottom first (legacy files store them top first; they
    /// are reversed on reading).
    pub stack: Vec<Digest>,
}

/// A decoded object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// A blob.
    Blob(Blob),
    /// A manifest, flattened (see [`Manifest`]).
    Manifest(Manifest),
    /// A layer.
    Layer(Layer),
    /// A platform.
    Platform(Platform),
}

impl Object {
    /// The kind of this object.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Blob(_) => ObjectKind::Blob,
            Object::Manifest(_) => ObjectKind::Manifest,
            Object::Layer(_) => ObjectKind::Layer,
            Object::Platform(_) => ObjectKind::Platform,
        }
    }
}

/// Options for decoding an object file.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DecodeOptions {
    /// Recompute the digest of manifests, layers and platforms and compare it with this.
    pub verify: Option<Digest>,
}

/// Decodes a whole object file. `digest` is the object's name (manifests keep it); errors
/// name `path`.
pub(crate) fn decode(
    bytes: &[u8],
    path: &Path,
    digest: Digest,
    opts: DecodeOptions,
) -> Result<(Header, Object)> {
    let header = Header::parse(bytes, path)?;
    let body = &bytes[HEADER_LEN..];
    let object = match (header.encoding, header.kind) {
        (_, ObjectKind::Manifest) => {
            let raw = match header.encoding {
                Encoding::Legacy => legacy::decode_manifest(body),
                Encoding::FlatBuffers => fb::decode_manifest(body),
            }
            .map_err(|reason| SpfsError::corrupt(path, reason))?;
            let prefix = match opts.verify {
                Some(_) => Some(hash_prefix(&header, path)?),
                None => None,
            };
            let (manifest, actual) = raw.build(digest, path, prefix)?;
            if let (Some(expected), Some(actual)) = (opts.verify, actual)
                && expected != actual
            {
                return Err(SpfsError::DigestMismatch {
                    path: path.to_owned(),
                    actual,
                });
            }
            return Ok((header, Object::Manifest(manifest)));
        }
        (Encoding::Legacy, kind) => legacy::decode_small(body, kind),
        (Encoding::FlatBuffers, kind) => fb::decode_small(body, kind),
    }
    .map_err(|reason| SpfsError::corrupt(path, reason))?;
    if let Some(expected) = opts.verify {
        let actual = small_object_digest(&header, &object, path)?;
        if actual != expected {
            return Err(SpfsError::DigestMismatch {
                path: path.to_owned(),
                actual,
            });
        }
    }
    Ok((header, object))
}

/// What is hashed before an object's body, by digest strategy (SPFS-FORMAT.md §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashPrefix {
    /// Nothing: the legacy strategy hashes the body alone.
    Legacy,
    /// [`DIGEST_SALT`] and then this kind byte.
    Salted(u8),
}

impl HashPrefix {
    /// The prefix of `strategy` for an object of `kind`; an unknown strategy hashes as legacy.
    pub(crate) fn of(strategy: DigestStrategy, kind: ObjectKind) -> HashPrefix {
        match strategy {
            DigestStrategy::WithKindAndSalt => HashPrefix::Salted(kind.header_byte()),
            DigestStrategy::Legacy | DigestStrategy::Unknown(_) => HashPrefix::Legacy,
        }
    }
}

/// The hash prefix the object's header asks for, to recompute its digest; an unknown strategy
/// is an error naming the file, since its digest cannot be recomputed.
fn hash_prefix(header: &Header, path: &Path) -> Result<HashPrefix> {
    match header.strategy {
        DigestStrategy::Legacy | DigestStrategy::WithKindAndSalt => {
            Ok(HashPrefix::of(header.strategy, header.kind))
        }
        DigestStrategy::Unknown(b) => Err(SpfsError::corrupt(
            path,
            format!("unknown digest strategy {b}: the digest cannot be recomputed"),
        )),
    }
}

/// Starts a hasher for an object body with `prefix` already hashed.
pub(crate) fn object_hasher(prefix: HashPrefix) -> Sha256 {
    let mut h = Sha256::new();
    if let HashPrefix::Salted(kind) = prefix {
        h.update(DIGEST_SALT);
        h.update([kind]);
    }
    h
}

/// The digest of a blob, layer or platform, from its legacy body (SPFS-FORMAT.md §9).
pub(crate) fn small_object_digest(header: &Header, object: &Object, path: &Path) -> Result<Digest> {
    let mut h = object_hasher(hash_prefix(header, path)?);
    match object {
        // A blob's digest is its payload's.
        Object::Blob(blob) => return Ok(blob.payload),
        Object::Layer(layer) => {
            if let Some(m) = &layer.manifest {
                h.update(m.as_bytes());
            }
            for a in &layer.annotations {
                h.update(a.key.as_bytes());
                h.update([0]);
                match &a.value {
                    AnnotationValue::String(s) => {
                        h.update([1]);
                        h.update(s.as_bytes());
                        h.update([0]);
                    }
                    AnnotationValue::Digest(d) => {
                        h.update([2]);
                        h.update(d.as_bytes());
                    }
                }
            }
        }
        Object::Platform(p) => {
            h.update((p.stack.len() as u64).to_be_bytes());
            for d in p.stack.iter().rev() {
                h.update(d.as_bytes());
            }
        }
        Object::Manifest(_) => {
            return Err(SpfsError::corrupt(
                path,
                "internal: manifest hashed as small",
            ));
        }
    }
    Ok(Digest::from_bytes(h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(strategy: u8, encoding: u8, kind: u8) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&[strategy, encoding, 0, 0, 0, 0, 0, kind]);
        h
    }

    #[test]
    fn header_errors_name_the_file_and_the_problem() {
        let path = Path::new("objects/AB/CDEF");
        let cases: [(Vec<u8>, &str); 5] = [
            (b"--SP".to_vec(), "truncated"),
            (b"not an object at all".to_vec(), "bad magic"),
            (header(1, 1, 0)[..12].to_vec(), "truncated"),
            (header(1, 2, 0), "unknown encoding format 2"),
            (header(1, 1, 4), "unknown object kind 4"),
        ];
        for (bytes, words) in cases {
            let err = Header::parse(&bytes, path).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("objects/AB/CDEF") && text.contains(words),
                "{text}"
            );
        }
        let h = Header::parse(&header(1, 0, 3), path).unwrap();
        assert_eq!(h.kind, ObjectKind::Platform);
        assert_eq!(h.encoding, Encoding::Legacy);
        assert_eq!(h.strategy, DigestStrategy::WithKindAndSalt);
        assert_eq!(Header::parse(&h.to_bytes(), path).unwrap(), h);
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(
            strategy in 0u8..3,
            encoding in 0u8..2,
            kind in 0u8..4,
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut bytes = header(strategy, encoding, kind);
            bytes.extend_from_slice(&body);
            let path = Path::new("fuzz");
            let _ = decode(&bytes, path, Digest::NULL, DecodeOptions::default());
            let verify = DecodeOptions { verify: Some(Digest::NULL) };
            let _ = decode(&bytes, path, Digest::NULL, verify);
        }
    }
}
