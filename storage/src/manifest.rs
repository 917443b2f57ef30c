//! Manifests as flat, compact directory trees (SPFS-FORMAT.md §6, §9.3, §10).
//!
//! Both encodings decode into a [`RawManifest`] that borrows names from the file's bytes.
//! [`RawManifest::build`] then computes every tree's digest, links directory entries to their
//! trees by digest, and lays the whole tree out breadth first in one vector: each directory's
//! children are contiguous and sorted by name bytes, so a lookup is a binary search.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::{Result, SpfsError};
use super::object::{HashPrefix, object_hasher};

/// The most entries a manifest may expand to. Trees are stored once and may be referenced many
/// times, so a small hostile file could otherwise expand exponentially.
pub const MAX_MANIFEST_ENTRIES: usize = 1 << 24;

/// Entry kind value for files and symlinks (FlatBuffers `EntryKind.Blob`).
pub(crate) const RAW_BLOB: u8 = 0;
/// Entry kind value for directories (FlatBuffers `EntryKind.Tree`).
pub(crate) const RAW_TREE: u8 = 4;
/// Entry kind value for masks (FlatBuffers `EntryKind.Mask`).
pub(crate) const RAW_MASK: u8 = 5;

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// One entry as stored, before linking.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawEntry<'a> {
    pub name: &'a [u8],
    pub kind: u8,
    pub object: Digest,
    pub mode: u32,
    pub size: u64,
}

/// A manifest as stored: `trees[0]` is the root; each tree is a range of `entries`.
#[derive(Debug, Default)]
pub(crate) struct RawManifest<'a> {
    pub entries: Vec<RawEntry<'a>>,
    pub trees: Vec<Range<usize>>,
}

/// What an entry is. Files and symlinks share one stored kind; the mode's type bits tell them
/// apart. Masks are told by their stored kind, never by mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file; content in the payload named by [`Entry::digest`].
    File,
    /// A directory; its children are [`Manifest::children`].
    Dir,
    /// A symbolic link; its target is the payload named by [`Entry::digest`].
    Symlink,
    /// A mask (whiteout): hides this path and everything below it in lower layers.
    Mask,
}

impl EntryKind {
    fn legacy_str(kind: u8) -> &'static [u8] {
        match kind {
            RAW_TREE => b"tree\0",
            RAW_MASK => b"mask\0",
            _ => b"file\0",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Mask => "mask",
        })
    }
}

const NO_PARENT: u32 = u32::MAX;

/// One entry of a [`Manifest`]: 64 bytes, plus its name in the manifest's name buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    digest: Digest,
    size: u64,
    mode: u32,
    parent: u32,
    name_start: u32,
    children_start: u32,
    children_len: u32,
    name_len: u16,
    kind: EntryKind,
}

impl Entry {
    /// What the entry is.
    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    /// The full stored `st_mode`, type bits included. Take the type from [`Entry::kind`] and
    /// the permissions from `mode & 0o7777` ([`Entry::permissions`]).
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The permission bits (`mode & 0o7777`, setuid/setgid/sticky included).
    pub fn permissions(&self) -> u32 {
        self.mode & 0o7777
    }

    /// The content length of a file, the target length of a symlink, 0 otherwise.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The payload digest of a file or symlink; the child tree's digest for a directory; the
    /// null digest for a mask.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The index of the parent directory's entry; `None` for children of the root.
    pub fn parent(&self) -> Option<usize> {
        (self.parent != NO_PARENT).then_some(self.parent as usize)
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    /// Whether this is a mask.
    pub fn is_mask(&self) -> bool {
        self.kind == EntryKind::Mask
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("mode", &format_args!("{:06o}", self.mode))
            .field("size", &self.size)
            .field("digest", &self.digest)
            .field("parent", &self.parent())
            .finish_non_exhaustive()
    }
}

/// A manifest's directory tree, flattened breadth first: the root's children are
/// `entries[root_children()]`, and each directory's children are one contiguous range sorted
/// by name bytes. Names live in one shared buffer.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    digest: Digest,
    entries: Box<[Entry]>,
    names: Box<[u8]>,
    root_len: u32,
}

impl Manifest {
    /// The manifest object's digest.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Number of entries, masks included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the root directory is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries, breadth first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry at `index`.
    pub fn get(&self, index: usize) -> Option<&Entry> {
        self.entries.get(index)
    }

    /// An entry's name (never empty, `.`, `..`, and never holds `/` or NUL).
    pub fn name(&self, entry: &Entry) -> &[u8] {
        let start = entry.name_start as usize;
        self.names
            .get(start..start + usize::from(entry.name_len))
            .unwrap_or_default()
    }

    /// Indexes of the root directory's children.
    pub fn root_children(&self) -> Range<usize> {
        0..self.root_len as usize
    }

    /// Indexes of a directory's children (empty for anything else).
    pub fn children(&self, entry: &Entry) -> Range<usize> {
        let start = entry.children_start as usize;
        start..start + entry.children_len as usize
    }

    /// The child called `name` of the directory at `parent` (`None`: the root).
    pub fn find(&self, parent: Option<usize>, name: &[u8]) -> Option<usize> {
        let range = match parent {
            None => self.root_children(),
            Some(p) => self.children(self.entries.get(p)?),
        };
        let slice = self.entries.get(range.clone())?;
        slice
            .binary_search_by(|e| self.name(e).cmp(name))
            .ok()
            .map(|i| range.start + i)
    }

    /// The entry at a `/`-separated relative path.
    pub fn lookup(&self, path: &[u8]) -> Option<usize> {
        let mut at = None;
        for part in path.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
            at = Some(self.find(at, part)?);
        }
        at
    }

    /// The `/`-separated path of the entry at `index`, relative to the root.
    pub fn path(&self, index: usize) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut at = self.entries.get(index);
        // Parents always come before their children, so this walk ends; the bound is a guard.
        while let Some(e) = at {
            parts.push(self.name(e));
            if parts.len() > self.entries.len() {
                break;
            }
            at = e.parent().and_then(|p| self.entries.get(p));
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// Bytes of memory this manifest holds (entries, names and the struct itself).
    pub fn heap_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + std::mem::size_of_val::<[Entry]>(&self.entries)
            + self.names.len()
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("digest", &self.digest)
            .field("entries", &self.entries.len())
            .finish_non_exhaustive()
    }
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
        && name.len() <= usize::from(u16::MAX)
}

impl RawManifest<'_> {
    /// Links and flattens the manifest. With `verify` (the hash prefix of the object's digest
    /// strategy) it also recomputes the manifest's own digest and returns it; errors name
    /// `path`.
    pub(crate) fn build(
        self,
        digest: Digest,
        path: &Path,
        verify: Option<HashPrefix>,
    ) -> Result<(Manifest, Option<Digest>)> {
        self.build_with_limit(digest, path, verify, MAX_MANIFEST_ENTRIES)
    }

    fn build_with_limit(
        mut self,
        digest: Digest,
        path: &Path,
        verify: Option<HashPrefix>,
        max_entries: usize,
    ) -> Result<(Manifest, Option<Digest>)> {
        if self.trees.is_empty() {
            return Err(SpfsError::corrupt(path, "manifest holds no trees"));
        }
        // Digest every tree: sha256 of its legacy encoding, entries sorted by name.
        let mut manifest_hasher = verify.map(object_hasher);
        let mut tree_index: HashMap<Digest, usize> = HashMap::with_capacity(self.trees.len());
        let mut buf = Vec::new();
        for (i, range) in self.trees.iter().enumerate() {
            let entries = &mut self.entries[range.clone()];
            entries.sort_unstable_by(|a, b| a.name.cmp(b.name));
            buf.clear();
            buf.extend_from_slice(&(entries.len() as u64).to_be_bytes());
            for e in entries.iter() {
                buf.extend_from_slice(e.object.as_bytes());
                buf.extend_from_slice(EntryKind::legacy_str(e.kind));
                buf.extend_from_slice(&u64::from(e.mode).to_be_bytes());
                buf.extend_from_slice(&e.size.to_be_bytes());
                buf.extend_from_slice(e.name);
                buf.push(0);
            }
            tree_index
                .entry(Digest::from_bytes(Sha256::digest(&buf).into()))
                .or_insert(i);
            if let Some(h) = manifest_hasher.as_mut() {
                h.update(&buf);
                if i == 0 {
                    h.update(((self.trees.len() - 1) as u64).to_be_bytes());
                }
            }
        }
        let actual = manifest_hasher.map(|h| Digest::from_bytes(h.finalize().into()));

        let too_large = || SpfsError::ManifestTooLarge {
            path: path.to_owned(),
            max: max_entries,
        };
        let mut out: Vec<Entry> = Vec::with_capacity(self.entries.len());
        let mut names: Vec<u8> = Vec::new();
        let mut queue: VecDeque<(usize, u32)> = VecDeque::new();
        queue.push_back((0, NO_PARENT));
        let mut root_len = 0u32;
        while let Some((tree, parent)) = queue.pop_front() {
            let start = out.len();
            let mut previous: Option<&[u8]> = None;
            for e in &self.entries[self.trees[tree].clone()] {
                if !valid_name(e.name) || previous == Some(e.name) {
                    tracing::warn!(
                        manifest = %path.display(),
                        name = %String::from_utf8_lossy(e.name),
                        "skipping a manifest entry with an invalid or repeated name"
                    );
                    continue;
                }
                previous = Some(e.name);
                if out.len() >= max_entries {
                    return Err(too_large());
                }
                let index = u32::try_from(out.len()).map_err(|_| too_large())?;
                let kind = match e.kind {
                    RAW_TREE => {
                        let child = *tree_index.get(&e.object).ok_or_else(|| {
                            SpfsError::corrupt(
                                path,
                                format!(
                                    "directory entry {:?} refers to tree {}, which the manifest does not hold",
                                    String::from_utf8_lossy(e.name),
                                    e.object
                                ),
                            )
                        })?;
                        queue.push_back((child, index));
                        EntryKind::Dir
                    }
                    RAW_MASK => EntryKind::Mask,
                    _ if e.mode & S_IFMT == S_IFLNK => EntryKind::Symlink,
                    _ => EntryKind::File,
                };
                let name_start = u32::try_from(names.len()).map_err(|_| too_large())?;
                names.extend_from_slice(e.name);
                out.push(Entry {
                    digest: e.object,
                    size: if matches!(kind, EntryKind::File | EntryKind::Symlink) {
                        e.size
                    } else {
                        0
                    },
                    mode: e.mode,
                    parent,
                    name_start,
                    children_start: 0,
                    children_len: 0,
                    name_len: e.name.len() as u16,
                    kind,
                });
            }
            let len = (out.len() - start) as u32;
            if parent == NO_PARENT {
                root_len = len;
            } else if let Some(p) = out.get_mut(parent as usize) {
                p.children_start = start as u32;
                p.children_len = len;
            }
        }
        let manifest = Manifest {
            digest,
            entries: out.into_boxed_slice(),
            names: names.into_boxed_slice(),
            root_len,
        };
        Ok((manifest, actual))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw<'a>(name: &'a str, kind: u8, object: Digest, mode: u32, size: u64) -> RawEntry<'a> {
        RawEntry {
            name: name.as_bytes(),
            kind,
            object,
            mode,
            size,
        }
    }

    #[test]
    fn entry_is_64_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn empty_tree_digest_matches_the_format_doc() {
        let m = RawManifest {
            entries: vec![],
            trees: std::iter::once(0..0).collect(),
        };
        // The root tree of an empty manifest is the empty tree; check its digest directly.
        assert_eq!(
            Digest::of(&0u64.to_be_bytes()).to_string(),
            "V5KXB5NBQEFXV54MV5F4OCTGB4G7KHSCXL4R2TPFWIZI3YHIHX6A===="
        );
        let (m, _) = m.build(Digest::NULL, Path::new("x"), None).unwrap();
        assert!(m.is_empty());
    }

    #[test]
    fn links_shared_trees_sorts_and_skips_bad_names() {
        let empty_tree = Digest::of(&0u64.to_be_bytes());
        let file = Digest::of(b"content");
        let m = RawManifest {
            entries: vec![
                raw("b", RAW_TREE, empty_tree, 0o040755, 0),
                raw("a", RAW_TREE, empty_tree, 0o040700, 7),
                raw("..", RAW_BLOB, file, 0o100644, 7),
                raw("z/y", RAW_BLOB, file, 0o100644, 7),
                raw("link", RAW_BLOB, file, 0o120777, 7),
                raw("gone", RAW_MASK, Digest::NULL, 0o020644, 0),
            ],
            trees: vec![0..6, 6..6],
        };
        let (m, _) = m.build(Digest::NULL, Path::new("x"), None).unwrap();
        let names: Vec<_> = m.entries().iter().map(|e| m.name(e).to_vec()).collect();
        assert_eq!(names, [&b"a"[..], b"b", b"gone", b"link"]);
        let a = m.lookup(b"a").unwrap();
        assert_eq!(m.get(a).unwrap().kind(), EntryKind::Dir);
        assert_eq!(m.get(a).unwrap().size(), 0, "directory sizes are ignored");
        assert_eq!(m.get(a).unwrap().permissions(), 0o700);
        assert_eq!(
            m.get(m.lookup(b"link").unwrap()).unwrap().kind(),
            EntryKind::Symlink
        );
        assert_eq!(
            m.get(m.lookup(b"gone").unwrap()).unwrap().kind(),
            EntryKind::Mask
        );
        assert_eq!(m.lookup(b"a/none"), None);
    }

    #[test]
    fn missing_tree_is_an_error_naming_the_file() {
        let m = RawManifest {
            entries: vec![raw("d", RAW_TREE, Digest::of(b"nope"), 0o040755, 0)],
            trees: std::iter::once(0..1).collect(),
        };
        let err = m
            .build(Digest::NULL, Path::new("objects/AB/CD"), None)
            .unwrap_err();
        assert!(err.to_string().contains("objects/AB/CD"), "{err}");
        assert!(err.to_string().contains("does not hold"), "{err}");
    }

    #[test]
    fn no_trees_is_an_error() {
        let err = RawManifest::default()
            .build(Digest::NULL, Path::new("objects/AB/CD"), None)
            .unwrap_err();
        assert!(matches!(err, SpfsError::CorruptObject { .. }), "{err}");
    }

    #[test]
    fn exponential_sharing_is_capped() {
        // 30 levels, each tree holding two directories that both point at the next tree:
        // 2^31 entries from 31 stored trees.
        let mut entries = Vec::new();
        let mut trees = Vec::new();
        let mut below = Digest::of(&0u64.to_be_bytes());
        let mut levels = Vec::new();
        for _ in 0..30 {
            levels.push(below);
            let mut buf = 2u64.to_be_bytes().to_vec();
            for name in ["a", "b"] {
                buf.extend_from_slice(below.as_bytes());
                buf.extend_from_slice(b"tree\0");
                buf.extend_from_slice(&0o040755u64.to_be_bytes());
                buf.extend_from_slice(&0u64.to_be_bytes());
                buf.extend_from_slice(name.as_bytes());
                buf.push(0);
            }
            below = Digest::of(&buf);
        }
        // levels[i] is the digest of the tree i levels above the empty tree. Stored top-down:
        // tree k (k = 0 is the root) points at levels[29 - k].
        for k in 0..30 {
            let child = levels[29 - k];
            let start = entries.len();
            entries.push(raw("a", RAW_TREE, child, 0o040755, 0));
            entries.push(raw("b", RAW_TREE, child, 0o040755, 0));
            trees.push(start..start + 2);
        }
        trees.push(entries.len()..entries.len());
        let m = RawManifest { entries, trees };
        let err = m
            .build_with_limit(Digest::NULL, Path::new("big"), None, 10_000)
            .unwrap_err();
        assert!(
            matches!(err, SpfsError::ManifestTooLarge { max: 10_000, .. }),
            "{err}"
        );
    }
}
