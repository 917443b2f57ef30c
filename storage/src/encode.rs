//! Writing object files, for tests and benchmarks: spfs-fuse itself never writes to a
//! repository. The bytes follow SPFS-FORMAT.md exactly, so what this writes reads back through
//! [`Repository`](super::Repository) and hashes to the digest it returns.

use sha2::Digest as _;

use super::digest::Digest;
use super::fb::{self, EncodeEntry};
use super::manifest::{EntryKind, RAW_BLOB, RAW_MASK, RAW_TREE};
use super::object::{
    AnnotationValue, DigestStrategy, Encoding, HashPrefix, Header, Object, ObjectKind,
    object_hasher,
};

/// One entry of a tree to encode.
#[derive(Clone, Copy, Debug)]
pub struct TreeEntry<'a> {
    /// The name (no `/`, no NUL).
    pub name: &'a str,
    /// What it is; files and symlinks are told apart by `mode`.
    pub kind: EntryKind,
    /// Payload digest (file, symlink), child tree digest ([`tree_digest`]) or null (mask).
    pub object: Digest,
    /// The full `st_mode`.
    pub mode: u32,
    /// Content or target length; 0 for directories and masks.
    pub size: u64,
}

fn raw_kind(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::File | EntryKind::Symlink => RAW_BLOB,
        EntryKind::Dir => RAW_TREE,
        EntryKind::Mask => RAW_MASK,
    }
}

fn legacy_tree(out: &mut Vec<u8>, entries: &[TreeEntry<'_>]) {
    let mut sorted: Vec<&TreeEntry<'_>> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    out.extend_from_slice(&(sorted.len() as u64).to_be_bytes());
    for e in sorted {
        out.extend_from_slice(e.object.as_bytes());
        out.extend_from_slice(match e.kind {
            EntryKind::Dir => b"tree\0",
            EntryKind::Mask => b"mask\0",
            EntryKind::File | EntryKind::Symlink => b"file\0",
        });
        out.extend_from_slice(&u64::from(e.mode).to_be_bytes());
        out.extend_from_slice(&e.size.to_be_bytes());
        out.extend_from_slice(e.name.as_bytes());
        out.push(0);
    }
}

/// The digest a directory entry uses to name this tree: the SHA-256 of its legacy encoding
/// (never salted).
pub fn tree_digest(entries: &[TreeEntry<'_>]) -> Digest {
    let mut buf = Vec::new();
    legacy_tree(&mut buf, entries);
    Digest::of(&buf)
}

fn header(kind: ObjectKind, encoding: Encoding, strategy: DigestStrategy) -> Vec<u8> {
    Header {
        strategy,
        encoding,
        kind,
    }
    .to_bytes()
    .to_vec()
}

/// A manifest object file (`trees[0]` is the root) and its digest.
pub fn manifest_file(
    trees: &[Vec<TreeEntry<'_>>],
    encoding: Encoding,
    strategy: DigestStrategy,
) -> (Digest, Vec<u8>) {
    let mut legacy = Vec::new();
    for (i, tree) in trees.iter().enumerate() {
        legacy_tree(&mut legacy, tree);
        if i == 0 {
            legacy.extend_from_slice(&((trees.len() - 1) as u64).to_be_bytes());
        }
    }
    let mut h = object_hasher(HashPrefix::of(strategy, ObjectKind::Manifest));
    h.update(&legacy);
    let digest = Digest::from_bytes(h.finalize().into());
    let mut out = header(ObjectKind::Manifest, encoding, strategy);
    match encoding {
        Encoding::Legacy => out.extend_from_slice(&legacy),
        Encoding::FlatBuffers => {
            let trees: Vec<Vec<EncodeEntry<'_>>> = trees
                .iter()
                .map(|t| {
                    t.iter()
                        .map(|e| EncodeEntry {
                            name: e.name,
                            kind: raw_kind(e.kind),
                            object: e.object,
                            mode: e.mode,
                            size: e.size,
                        })
                        .collect()
                })
                .collect();
            out.extend_from_slice(&fb::encode_manifest(&trees));
        }
    }
    (digest, out)
}

/// A blob, layer or platform object file and its digest. (A manifest gives an empty body:
/// use [`manifest_file`].) The legacy encoding cannot hold layer annotations; they are
/// dropped from the file but still hashed, as spfs would.
pub fn object_file(
    object: &Object,
    encoding: Encoding,
    strategy: DigestStrategy,
) -> (Digest, Vec<u8>) {
    let kind = object.kind();
    let mut hashed = Vec::new();
    let mut legacy = Vec::new();
    match object {
        Object::Blob(b) => {
            legacy.extend_from_slice(b.payload.as_bytes());
            legacy.extend_from_slice(&b.size.to_be_bytes());
        }
        Object::Layer(l) => {
            if let Some(m) = &l.manifest {
                legacy.extend_from_slice(m.as_bytes());
            }
            hashed.extend_from_slice(&legacy);
            for a in &l.annotations {
                hashed.extend_from_slice(a.key.as_bytes());
                hashed.push(0);
                match &a.value {
                    AnnotationValue::String(s) => {
                        hashed.push(1);
                        hashed.extend_from_slice(s.as_bytes());
                        hashed.push(0);
                    }
                    AnnotationValue::Digest(d) => {
                        hashed.push(2);
                        hashed.extend_from_slice(d.as_bytes());
                    }
                }
            }
        }
        Object::Platform(p) => {
            legacy.extend_from_slice(&(p.stack.len() as u64).to_be_bytes());
            for d in p.stack.iter().rev() {
                legacy.extend_from_slice(d.as_bytes());
            }
        }
        Object::Manifest(_) => {}
    }
    if !matches!(object, Object::Layer(_)) {
        hashed.clone_from(&legacy);
    }
    let digest = match object {
        Object::Blob(b) => b.payload,
        _ => {
            let mut h = object_hasher(HashPrefix::of(strategy, kind));
            h.update(&hashed);
            Digest::from_bytes(h.finalize().into())
        }
    };
    let mut out = header(kind, encoding, strategy);
    match encoding {
        Encoding::Legacy => out.extend_from_slice(&legacy),
        Encoding::FlatBuffers => out.extend_from_slice(&fb::encode_small(object)),
    }
    (digest, out)
}
