//! Opening repositories, resolving references, expanding platforms (SPFS-FORMAT.md §2, §12).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, PartialDigest, digest_from_parts};
use super::error::{Result, SpfsError};
use super::manifest::Manifest;
use super::object::{self, DecodeOptions, HEADER_LEN, Header, Object, ObjectKind};
use super::tag::{self, TagRecord, TagSpec};

/// How deep platforms may nest inside platforms.
pub const MAX_PLATFORM_DEPTH: usize = 64;

/// How many candidates an ambiguous-digest error keeps.
const AMBIGUOUS_SHOWN: usize = 5;

/// A reference as a person writes it in an env spec item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// A full 56-character digest.
    Digest(Digest),
    /// A digest prefix.
    Partial(PartialDigest),
    /// A tag, `[org/]name[~N]`.
    Tag(TagSpec),
}

impl Reference {
    /// Parses `s` the way spfs parses an env spec item (SPFS-FORMAT.md §12.1): a full digest,
    /// else a partial digest (upper-case base32 of a valid length, so `ABCD` is never a tag),
    /// else a tag.
    pub fn parse(s: &str) -> Result<Self> {
        if let Ok(d) = Digest::parse(s) {
            return Ok(Reference::Digest(d));
        }
        if let Some(p) = PartialDigest::parse(s) {
            return Ok(match p.as_full() {
                Some(d) => Reference::Digest(d),
                None => Reference::Partial(p),
            });
        }
        TagSpec::parse(s)
            .map(Reference::Tag)
            .ok_or_else(|| SpfsError::InvalidReference(s.to_owned()))
    }
}

/// What a reference resolved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Resolved {
    /// The object's digest.
    pub digest: Digest,
    /// The object's kind (from its header).
    pub kind: ObjectKind,
}

/// One layer of a mount, after platforms are expanded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MountLayer {
    /// The layer object's digest, or the manifest's own when a manifest is used directly.
    pub digest: Digest,
    /// The manifest to read with `read_manifest`.
    pub manifest: Digest,
}

/// An spfs filesystem repository on disk. Cheap to clone; holds no open files.
#[derive(Clone, Debug)]
pub struct Repository {
    root: PathBuf,
    tag_namespace: Option<String>,
}

impl Repository {
    /// Opens the repository at `path`. It must hold `objects/` and `payloads/`; `VERSION`, when
    /// present and not empty, must have major version 0. Nothing else is required (git keeps
    /// no empty directories, and spfs itself reads repositories without `tags/`, `renders/` or
    /// the `work/` folders).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let root = path.as_ref().to_owned();
        match fs::metadata(&root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SpfsError::NotARepository {
                    path: root,
                    reason: "not a directory".into(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SpfsError::NotARepository {
                    path: root,
                    reason: "no such directory".into(),
                });
            }
            Err(e) => return Err(SpfsError::io(root, e)),
        }
        for dir in ["objects", "payloads"] {
            let p = root.join(dir);
            match fs::metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) | Err(_) => {
                    let version = if root.join("VERSION").exists() {
                        ""
                    } else {
                        " and no VERSION file"
                    };
                    return Err(SpfsError::NotARepository {
                        path: root,
                        reason: format!("it has no {dir}/ directory{version}"),
                    });
                }
            }
        }
        let version_path = root.join("VERSION");
        match fs::read(&version_path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).trim().to_owned();
                if !text.is_empty() {
                    let major = text.split('.').next().and_then(|m| m.parse::<u64>().ok());
                    if major != Some(0) || text.split('.').count() < 3 {
                        return Err(SpfsError::UnsupportedVersion {
                            path: version_path,
                            version: text,
                        });
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(SpfsError::io(version_path, e)),
        }
        Ok(Repository {
            root,
            tag_namespace: None,
        })
    }

    /// A repository at `root` without looking at the disk (for the writer's `init`).
    pub(crate) fn unchecked(root: &Path) -> Self {
        Repository {
            root: root.to_owned(),
            tag_namespace: None,
        }
    }

    /// Selects a tag namespace (`SPFS_STORAGE__TAG_NAMESPACE`): tags are then read from
    /// `tags/<c1>#ns/<c2>#ns/…/`. `None` is the default namespace.
    pub fn with_tag_namespace(mut self, namespace: Option<&str>) -> Self {
        self.tag_namespace = namespace.map(str::to_owned);
        self
    }

    /// The repository's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `tags/` directory of the selected namespace.
    pub(crate) fn tags_dir(&self) -> PathBuf {
        let mut p = self.root.join("tags");
        if let Some(ns) = &self.tag_namespace {
            for part in ns.split('/').filter(|s| !s.is_empty()) {
                p.push(format!("{part}#ns"));
            }
        }
        p
    }

    /// Where an object's file is (whether or not it exists).
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("objects").join(digest.rel_path())
    }

    /// Where a payload's file is (whether or not it exists). Files are served from here with
    /// positional reads; a symlink's target is its payload's content.
    pub fn payload_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("payloads").join(digest.rel_path())
    }

    /// Whether the repository holds an object with this digest.
    pub fn has_object(&self, digest: &Digest) -> bool {
        self.object_path(digest).is_file()
    }

    /// Resolves one env-spec item: a full digest, a unique partial digest or a tag
    /// (`org/name`, `name`, `name~N`), in that order of precedence (SPFS-FORMAT.md §12.1).
    pub fn resolve(&self, reference: &str) -> Result<Resolved> {
        let digest = self.resolve_digest(reference)?;
        Ok(Resolved {
            digest,
            kind: self.object_kind(&digest)?,
        })
    }

    /// Like [`Repository::resolve`], but stops at the digest without reading the object.
    pub fn resolve_digest(&self, reference: &str) -> Result<Digest> {
        match Reference::parse(reference)? {
            Reference::Digest(d) => Ok(d),
            Reference::Partial(p) => self.find_partial(&p),
            Reference::Tag(t) => self.resolve_tag(&t, reference),
        }
    }

    fn resolve_tag(&self, spec: &TagSpec, reference: &str) -> Result<Digest> {
        let history = self.tag_history_of(spec)?;
        history
            .get(spec.version())
            .map(|r| r.target)
            .ok_or_else(|| SpfsError::UnknownTagVersion {
                reference: reference.to_owned(),
                versions: history.len(),
            })
    }

    /// The records of a tag stream, newest first (`tag~i` is element `i`). `tag` is
    /// `[org/]name`; a `~N` suffix is ignored.
    pub fn tag_history(&self, tag: &str) -> Result<Vec<TagRecord>> {
        let spec =
            TagSpec::parse(tag).ok_or_else(|| SpfsError::InvalidReference(tag.to_owned()))?;
        self.tag_history_of(&spec)
    }

    fn tag_history_of(&self, spec: &TagSpec) -> Result<Vec<TagRecord>> {
        let path = self.tags_dir().join(spec.rel_file());
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Err(SpfsError::UnknownTag(spec.path()));
            }
            Err(e) => return Err(SpfsError::io(path, e)),
        };
        let records = tag::parse_tag_file(&bytes, &path)?;
        if records.is_empty() {
            return Err(SpfsError::UnknownTag(spec.path()));
        }
        Ok(records)
    }

    /// The tag paths of the selected namespace, sorted (`*#ns` directories skipped).
    pub fn list_tags(&self) -> Result<Vec<String>> {
        tag::list_tags(&self.tags_dir())
    }

    /// The one object whose digest starts with `partial`. Errors: none (unknown) or several
    /// (ambiguous); both name the prefix.
    pub fn find_partial(&self, partial: &PartialDigest) -> Result<Digest> {
        let matches = self.matching_objects(partial, AMBIGUOUS_SHOWN)?;
        match matches.as_slice() {
            [] => Err(SpfsError::UnknownPartialDigest(partial.to_string())),
            [one] => Ok(*one),
            _ => Err(SpfsError::AmbiguousDigest {
                reference: partial.to_string(),
                matches,
            }),
        }
    }

    /// Up to `limit` object digests starting with `partial`, sorted. Only the object
    /// directories that can hold such digests are listed.
    fn matching_objects(&self, partial: &PartialDigest, limit: usize) -> Result<Vec<Digest>> {
        let objects = self.root.join("objects");
        let mut found = Vec::new();
        let dirs = fs::read_dir(&objects).map_err(|e| SpfsError::io(&objects, e))?;
        let mut dir_names: Vec<String> = dirs
            .filter_map(|d| d.ok()?.file_name().into_string().ok())
            .filter(|n| partial.may_be_in_dir(n))
            .collect();
        dir_names.sort();
        for dir in dir_names {
            let path = objects.join(&dir);
            let files = match fs::read_dir(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => continue,
                Err(e) => return Err(SpfsError::io(path, e)),
            };
            for f in files {
                let f = f.map_err(|e| SpfsError::io(&path, e))?;
                let Ok(name) = f.file_name().into_string() else {
                    continue;
                };
                if let Some(d) = digest_from_parts(&dir, &name)
                    && partial.matches(&d)
                {
                    found.push(d);
                }
            }
            if found.len() >= limit {
                break;
            }
        }
        found.sort();
        found.truncate(limit);
        Ok(found)
    }

    /// Reads the object file's bytes; a missing file is [`SpfsError::UnknownObject`].
    fn read_object_file(&self, digest: &Digest) -> Result<(PathBuf, Vec<u8>)> {
        let path = self.object_path(digest);
        match fs::read(&path) {
            Ok(b) => Ok((path, b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(SpfsError::UnknownObject(*digest)),
            Err(e) => Err(SpfsError::io(path, e)),
        }
    }

    /// The object's header, reading only its first 17 bytes.
    pub fn read_header(&self, digest: &Digest) -> Result<Header> {
        let path = self.object_path(digest);
        let mut f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(SpfsError::UnknownObject(*digest));
            }
            Err(e) => return Err(SpfsError::io(path, e)),
        };
        let mut buf = Vec::with_capacity(HEADER_LEN);
        (&mut f)
            .take(HEADER_LEN as u64)
            .read_to_end(&mut buf)
            .map_err(|e| SpfsError::io(&path, e))?;
        Header::parse(&buf, &path)
    }

    /// The object's kind (from its header).
    pub fn object_kind(&self, digest: &Digest) -> Result<ObjectKind> {
        Ok(self.read_header(digest)?.kind)
    }

    /// Reads and decodes an object (manifests are flattened, see [`Manifest`]).
    pub fn read_object(&self, digest: &Digest) -> Result<Object> {
        let (path, bytes) = self.read_object_file(digest)?;
        Ok(object::decode(&bytes, &path, *digest, DecodeOptions::default())?.1)
    }

    /// Reads an object and checks that its content hashes to its name (SPFS-FORMAT.md §9).
    /// For a blob, also checks that the payload exists, hashes to the digest and has the
    /// recorded size.
    pub fn verify_object(&self, digest: &Digest) -> Result<Object> {
        let (path, bytes) = self.read_object_file(digest)?;
        let opts = DecodeOptions {
            verify: Some(*digest),
        };
        let (_, object) = object::decode(&bytes, &path, *digest, opts)?;
        if let Object::Blob(blob) = &object {
            let payload_path = self.payload_path(&blob.payload);
            let content = fs::read(&payload_path).map_err(|e| SpfsError::io(&payload_path, e))?;
            let actual = Digest::of(&content);
            if actual != *digest || content.len() as u64 != blob.size {
                return Err(SpfsError::DigestMismatch {
                    path: payload_path,
                    actual,
                });
            }
        }
        Ok(object)
    }
}

/// Where objects come from: one [`Repository`], or several searched in order
/// ([`Repositories`]). What is built from objects (manifests of layers, the layers of a stack)
/// is read the same way from either.
pub trait ObjectSource {
    /// Reads the object named `digest`.
    fn read_object(&self, digest: &Digest) -> Result<Object>;

    /// Reads the manifest of a layer, or a manifest given directly.
    fn read_manifest(&self, digest: &Digest) -> Result<Manifest> {
        read_manifest_from(self, digest)
    }

    /// The layers that mounting one resolved item stacks, bottom first (see
    /// [`ObjectSource::layers_of_stack`]).
    fn layers_of(&self, item: &Resolved) -> Result<Vec<MountLayer>> {
        self.layers_of_stack(&[item.digest])
    }

    /// The layers that mounting these items (bottom first) stacks, bottom first, following
    /// spfs's runtime procedure (SPFS-FORMAT.md §12.3): repeated items keep their **last**
    /// position; platforms expand recursively; manifests stand for themselves; repeated
    /// layers (same manifest) keep their **first** position; annotation-only layers drop out.
    /// A blob is an error.
    fn layers_of_stack(&self, items: &[Digest]) -> Result<Vec<MountLayer>> {
        expand_stack(self, items)
    }
}

impl ObjectSource for Repository {
    fn read_object(&self, digest: &Digest) -> Result<Object> {
        Repository::read_object(self, digest)
    }
}

impl ObjectSource for Repositories {
    fn read_object(&self, digest: &Digest) -> Result<Object> {
        Repositories::read_object(self, digest)
    }
}

fn read_manifest_from(src: &(impl ObjectSource + ?Sized), digest: &Digest) -> Result<Manifest> {
    match src.read_object(digest)? {
        Object::Manifest(m) => Ok(m),
        Object::Layer(layer) => {
            let manifest = layer
                .manifest
                .ok_or(SpfsError::LayerWithoutManifest(*digest))?;
            match src.read_object(&manifest)? {
                Object::Manifest(m) => Ok(m),
                other => Err(SpfsError::WrongKind {
                    digest: manifest,
                    expected: "manifest",
                    found: other.kind(),
                }),
            }
        }
        other => Err(SpfsError::WrongKind {
            digest: *digest,
            expected: "layer or manifest",
            found: other.kind(),
        }),
    }
}

/// A stack of items, bottom first, with repeats dropped keeping the **last** occurrence: spfs's
/// `Stack::push` (graph/stack.rs), which both runtimes and new platform objects use.
pub(crate) fn stack_keep_last(items: &[Digest]) -> Vec<Digest> {
    let mut stack: Vec<Digest> = Vec::with_capacity(items.len());
    for d in items {
        stack.retain(|s| s != d);
        stack.push(*d);
    }
    stack
}

fn expand_stack(src: &(impl ObjectSource + ?Sized), items: &[Digest]) -> Result<Vec<MountLayer>> {
    // Step 1: drop repeated items, keeping the last occurrence.
    let stack = stack_keep_last(items);
    // Step 2: expand. A platform met again adds only layers already present, which step 3
    // drops, so each platform is expanded once: hostile stacks that repeat a platform at
    // every level would otherwise expand exponentially.
    let mut layers = Vec::new();
    let mut expanded = HashSet::new();
    for d in &stack {
        expand(src, d, 0, &mut expanded, &mut layers)?;
    }
    // Step 3: drop repeated layers (same manifest), keeping the first occurrence.
    let mut seen = HashSet::new();
    layers.retain(|l: &MountLayer| seen.insert(l.manifest));
    Ok(layers)
}

fn expand(
    src: &(impl ObjectSource + ?Sized),
    digest: &Digest,
    depth: usize,
    expanded: &mut HashSet<Digest>,
    out: &mut Vec<MountLayer>,
) -> Result<()> {
    match src.read_object(digest)? {
        Object::Layer(layer) => {
            // Step 4: annotation-only layers add nothing to the filesystem.
            if let Some(manifest) = layer.manifest {
                out.push(MountLayer {
                    digest: *digest,
                    manifest,
                });
            }
        }
        Object::Manifest(_) => out.push(MountLayer {
            digest: *digest,
            manifest: *digest,
        }),
        Object::Platform(p) => {
            if depth >= MAX_PLATFORM_DEPTH {
                return Err(SpfsError::PlatformTooDeep(*digest));
            }
            if !expanded.insert(*digest) {
                return Ok(());
            }
            for d in &p.stack {
                expand(src, d, depth + 1, expanded, out)?;
            }
        }
        Object::Blob(_) => return Err(SpfsError::NotMountable(*digest)),
    }
    Ok(())
}

/// Several repositories searched in order: the first that knows a tag, or holds an object or
/// a payload, answers. A platform in one repository may use layers from another.
#[derive(Clone, Debug, Default)]
pub struct Repositories {
    repos: Vec<Repository>,
}

impl Repositories {
    /// Wraps already opened repositories (searched in this order).
    pub fn new(repos: Vec<Repository>) -> Self {
        Repositories { repos }
    }

    /// Opens each path with [`Repository::open`]; the first failure is returned.
    pub fn open<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Self> {
        let repos = paths
            .into_iter()
            .map(Repository::open)
            .collect::<Result<Vec<_>>>()?;
        Ok(Repositories { repos })
    }

    /// The repositories, in search order.
    pub fn repositories(&self) -> &[Repository] {
        &self.repos
    }

    /// Resolves one env-spec item (see [`Repository::resolve`]). A tag or partial digest is
    /// looked up in each repository in turn and the first match wins; an ambiguous prefix in
    /// any repository is an error. The object's kind is read from the first repository that
    /// holds it.
    pub fn resolve(&self, reference: &str) -> Result<Resolved> {
        let parsed = Reference::parse(reference)?;
        let digest = match &parsed {
            Reference::Digest(d) => *d,
            Reference::Partial(_) | Reference::Tag(_) => {
                let mut first_err = None;
                let mut found = None;
                for repo in &self.repos {
                    match repo.resolve_digest(reference) {
                        Ok(d) => {
                            found = Some(d);
                            break;
                        }
                        Err(
                            e @ (SpfsError::UnknownTag(_)
                            | SpfsError::UnknownTagVersion { .. }
                            | SpfsError::UnknownPartialDigest(_)),
                        ) => {
                            first_err.get_or_insert(e);
                        }
                        Err(e) => return Err(e),
                    }
                }
                match (found, first_err) {
                    (Some(d), _) => d,
                    (None, Some(e)) => return Err(e),
                    (None, None) => return Err(unknown(&parsed, reference)),
                }
            }
        };
        Ok(Resolved {
            digest,
            kind: self.object_kind(&digest)?,
        })
    }

    /// The first repository holding the object.
    fn holder(&self, digest: &Digest) -> Result<&Repository> {
        self.repos
            .iter()
            .find(|r| r.has_object(digest))
            .ok_or(SpfsError::UnknownObject(*digest))
    }

    /// The object's kind, from the first repository that holds it.
    pub fn object_kind(&self, digest: &Digest) -> Result<ObjectKind> {
        self.holder(digest)?.object_kind(digest)
    }

    /// Reads an object from the first repository that holds it.
    pub fn read_object(&self, digest: &Digest) -> Result<Object> {
        self.holder(digest)?.read_object(digest)
    }

    /// The payload's file in the first repository that has it; `None` when none has.
    pub fn payload_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.repos
            .iter()
            .map(|r| r.payload_path(digest))
            .find(|p| p.is_file())
    }
}

fn unknown(parsed: &Reference, reference: &str) -> SpfsError {
    match parsed {
        Reference::Digest(d) => SpfsError::UnknownObject(*d),
        Reference::Partial(p) => SpfsError::UnknownPartialDigest(p.to_string()),
        Reference::Tag(t) => SpfsError::UnknownTag(if t.version() == 0 {
            t.path()
        } else {
            reference.to_owned()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_precedence_follows_env_specs() {
        assert!(matches!(
            Reference::parse("LP6F").unwrap(),
            Reference::Partial(_)
        ));
        assert!(matches!(
            Reference::parse("ABCD").unwrap(),
            Reference::Partial(_)
        ));
        assert!(matches!(
            Reference::parse("AXT").unwrap(),
            Reference::Tag(_)
        ));
        assert!(matches!(
            Reference::parse("dev/lower~1").unwrap(),
            Reference::Tag(_)
        ));
        let full = "LP6F6D2L67ZHTED35ICWVMTTAQNGYMPTRFHXTDZLAHVEG34TBLAQ====";
        assert!(matches!(
            Reference::parse(full).unwrap(),
            Reference::Digest(_)
        ));
        assert!(matches!(
            Reference::parse(&full[..52]).unwrap(),
            Reference::Digest(_)
        ));
        assert!(matches!(
            Reference::parse("no spaces").unwrap_err(),
            SpfsError::InvalidReference(s) if s == "no spaces"
        ));
    }

    #[test]
    fn a_missing_directory_is_not_a_repository() {
        let dir = tempfile::tempdir().unwrap();
        let err = Repository::open(dir.path()).unwrap_err();
        assert!(matches!(err, SpfsError::NotARepository { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        let err = Repository::open(dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, SpfsError::NotARepository { .. }), "{err}");
    }

    #[test]
    fn version_major_must_be_zero() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("objects")).unwrap();
        fs::create_dir(dir.path().join("payloads")).unwrap();
        assert!(Repository::open(dir.path()).is_ok(), "VERSION is optional");
        fs::write(dir.path().join("VERSION"), "0.9.1\n").unwrap();
        assert!(Repository::open(dir.path()).is_ok());
        fs::write(dir.path().join("VERSION"), "1.0.0").unwrap();
        let err = Repository::open(dir.path()).unwrap_err();
        assert!(matches!(err, SpfsError::UnsupportedVersion { .. }), "{err}");
        assert!(err.to_string().contains("1.0.0"), "{err}");
    }
}
