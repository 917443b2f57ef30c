//! Writing object files from given parts, for tests and benchmarks (the commit writer is
//! [`crate::write`]). The bytes follow SPFS-FORMAT.md exactly, so what this writes reads back
//! through [`Repository`](super::Repository) and hashes to the digest it returns.

use sha2::Digest as _;

use super::digest::Digest;
use super::fb::{self, EncodeEntry, entry_kind_byte};
use super::manifest::EntryKind;
use super::object::{
    DigestStrategy, Encoding, HashPrefix, Header, Object, ObjectKind, object_hasher,
};
use super::write::{WriteSettings, legacy_entry, small_object_file};

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

impl<'a> TreeEntry<'a> {
    fn encode(&self) -> EncodeEntry<'a> {
        EncodeEntry {
            name: self.name,
            kind: entry_kind_byte(self.kind),
            object: self.object,
            mode: self.mode,
            size: self.size,
        }
    }
}

fn legacy_tree(out: &mut Vec<u8>, entries: &[TreeEntry<'_>]) {
    let mut sorted: Vec<&TreeEntry<'_>> = entries.iter().collect();
    sorted.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    out.extend_from_slice(&(sorted.len() as u64).to_be_bytes());
    for e in sorted {
        legacy_entry(out, &e.encode());
    }
}

/// The digest a directory entry uses to name this tree: the SHA-256 of its legacy encoding
/// (never salted).
pub fn tree_digest(entries: &[TreeEntry<'_>]) -> Digest {
    let mut buf = Vec::new();
    legacy_tree(&mut buf, entries);
    Digest::of(&buf)
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
    let mut out = Header {
        strategy,
        encoding,
        kind: ObjectKind::Manifest,
    }
    .to_bytes()
    .to_vec();
    match encoding {
        Encoding::Legacy => out.extend_from_slice(&legacy),
        Encoding::FlatBuffers => {
            let trees: Vec<Vec<EncodeEntry<'_>>> = trees
                .iter()
                .map(|t| t.iter().map(TreeEntry::encode).collect())
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
    small_object_file(object, WriteSettings { encoding, strategy })
}
