//! Writing into an spfs repository (issue 17): payloads, blob objects, manifests, layers,
//! platforms and tags, with the bytes and digests spfs 0.44 writes (SPFS-FORMAT.md §4, §7-§11).
//!
//! What a commit writes, in this order, so that a reader never meets an object whose
//! references are missing (a commit stopped anywhere leaves a valid repository):
//!
//! 1. [`RepoWriter::write_tree`]: each file's content (and symlink target) as a payload, its
//!    blob object, then the manifest. Each source file is read once, hashed while it is read;
//!    payloads already present are not written again.
//! 2. [`RepoWriter::write_layer`] (and [`RepoWriter::write_platform`]).
//! 3. [`RepoWriter::write_tag`], last.
//!
//! Files are written under a temporary name in `objects/work/`, `payloads/work/` or as
//! `<name>.tag.work`, then renamed into place (spfs's `storage/fs` does the same), so a
//! reader sees a whole file or none. Directories get mode 0777 and files 0666, as spfs
//! creates them (`FsHashStore::open_unchecked`, `write_tags_to_path`); everything created
//! belongs to the writer's `owner`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SubsecRound as _, Utc};
use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::SpfsError;
use super::fb::{self, EncodeEntry, ManifestBuilder};
use super::manifest::{RAW_BLOB, RAW_MASK, RAW_TREE};
use super::object::{
    Blob, DigestStrategy, Encoding, HashPrefix, Header, Layer, Object, ObjectKind, Platform,
    object_hasher, small_object_digest,
};
use super::repo::{Repository, stack_keep_last};
use super::tag::{TagRecord, TagSpec, encode_tag_file, parse_tag_file};

/// A directory tree to commit, as spfs's tracking manifest holds it. Names are UTF-8 (spfs
/// refuses others); a directory's children sorted by name bytes. Modes are whole `st_mode`s,
/// file-type bits included, as spfs records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory and its entries.
    Dir {
        /// Its `st_mode`.
        mode: u32,
        /// Its entries by name.
        children: BTreeMap<String, Node>,
    },
    /// A regular file, whose content is read from `source` at commit time.
    File {
        /// Its `st_mode`.
        mode: u32,
        /// The file holding its content.
        source: PathBuf,
    },
    /// A symbolic link.
    Symlink {
        /// Its `st_mode`.
        mode: u32,
        /// Its target.
        target: String,
    },
    /// A mask: the path is removed from the layers below (spfs records mode 0o020000).
    Mask {
        /// Its `st_mode`.
        mode: u32,
    },
}

/// The environment variable spfs reads the encoding of new objects from.
pub const ENCODING_FORMAT_ENV: &str = "SPFS_STORAGE__ENCODING_FORMAT";
/// The environment variable spfs reads the digest strategy of new objects from.
pub const DIGEST_STRATEGY_ENV: &str = "SPFS_STORAGE__DIGEST_STRATEGY";

/// Encoding and digest strategy of the objects written: spfs 0.44's defaults (FlatBuffers,
/// WithKindAndSalt), or what `SPFS_STORAGE__ENCODING_FORMAT` / `SPFS_STORAGE__DIGEST_STRATEGY`
/// say, spelled as spfs reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSettings {
    /// How object bodies are encoded.
    pub encoding: Encoding,
    /// How object digests are computed.
    pub strategy: DigestStrategy,
}

impl Default for WriteSettings {
    /// spfs 0.44's defaults (`config.rs`: `#[default]` on `FlatBuffers` and `WithKindAndSalt`).
    fn default() -> Self {
        WriteSettings {
            encoding: Encoding::FlatBuffers,
            strategy: DigestStrategy::WithKindAndSalt,
        }
    }
}

impl WriteSettings {
    /// The settings of this process's environment (see [`WriteSettings::from_values`]).
    pub fn from_env() -> Result<Self, WriteError> {
        let get = |name| std::env::var(name).ok();
        Self::from_values(
            get(ENCODING_FORMAT_ENV).as_deref(),
            get(DIGEST_STRATEGY_ENV).as_deref(),
        )
    }

    /// The settings from the two variables' values (`None` or empty: the default). spfs
    /// deserialises them into its enums through the `config` crate, which matches variant
    /// names ignoring case (the fixtures were made with `legacy`): `FlatBuffers`/`Legacy`
    /// and `WithKindAndSalt`/`Legacy`. Anything else is refused, as spfs refuses it.
    pub fn from_values(encoding: Option<&str>, strategy: Option<&str>) -> Result<Self, WriteError> {
        let mut settings = WriteSettings::default();
        if let Some(value) = encoding.filter(|v| !v.is_empty()) {
            settings.encoding = match value.to_ascii_lowercase().as_str() {
                "flatbuffers" => Encoding::FlatBuffers,
                "legacy" => Encoding::Legacy,
                _ => {
                    return Err(WriteError::BadSetting {
                        variable: ENCODING_FORMAT_ENV,
                        value: value.to_owned(),
                        expected: "FlatBuffers or Legacy",
                    });
                }
            };
        }
        if let Some(value) = strategy.filter(|v| !v.is_empty()) {
            settings.strategy = match value.to_ascii_lowercase().as_str() {
                "withkindandsalt" => DigestStrategy::WithKindAndSalt,
                "legacy" => DigestStrategy::Legacy,
                _ => {
                    return Err(WriteError::BadSetting {
                        variable: DIGEST_STRATEGY_ENV,
                        value: value.to_owned(),
                        expected: "WithKindAndSalt or Legacy",
                    });
                }
            };
        }
        Ok(settings)
    }

    fn header(self, kind: ObjectKind) -> Header {
        Header {
            strategy: self.strategy,
            encoding: self.encoding,
            kind,
        }
    }
}

/// What [`RepoWriter::write_tree`] reports while it works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Before any content is read: how many files and symlinks the tree holds.
    Planned {
        /// Files and symlinks to hash.
        files: u64,
    },
    /// One file or symlink was hashed (and its payload written unless it existed).
    File {
        /// Its content length.
        bytes: u64,
        /// Whether its payload was new (written), not already in the repository.
        written: bool,
    },
}

/// The steps a test can stop a commit after, as if the process died there (feature
/// `testing`): whatever was written stays, temporary files included.
#[cfg(feature = "testing")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailPoint {
    /// A payload's temporary file is written, not yet renamed.
    PayloadTemp,
    /// The first payload is in place, its blob object not yet written.
    Payload,
    /// The first blob object is in place; other payloads may be missing.
    Blob,
    /// An object's temporary file is written, not yet renamed (the first object of a step).
    ObjectTemp,
    /// The manifest is in place.
    Manifest,
    /// The layer is in place.
    Layer,
    /// The platform is in place.
    Platform,
    /// The tag's lock is taken, nothing written.
    TagLock,
    /// The tag's new stream is in `<name>.tag.work`, not yet renamed.
    TagWork,
}

/// Everything that can go wrong while writing. Each message names the path or value.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file system operation failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the repository failed (opening it, or an existing tag stream).
    #[error(transparent)]
    Read(#[from] SpfsError),
    /// A name spfs cannot store (not UTF-8, empty, `.`, `..`, holding `/` or NUL).
    #[error("cannot commit {path}: {reason}")]
    BadName {
        /// The path, as far as it is known.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file type spfs does not store (spfs: "unsupported special file").
    #[error("cannot commit {path}: unsupported special file (mode {mode:06o})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Its `st_mode`.
        mode: u32,
    },
    /// The root of a tree to commit is not a directory.
    #[error("the root of a tree to commit must be a directory")]
    RootNotADirectory,
    /// A setting's value is not one spfs accepts.
    #[error("{variable}={value:?} is not a valid value (expected {expected})")]
    BadSetting {
        /// The environment variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A tag name spfs does not accept.
    #[error("invalid tag {0:?}: expected [org/]name with [A-Za-z0-9._-] (no ~N)")]
    BadTag(String),
    /// A tag user holding a NUL (the record stores it NUL-terminated).
    #[error("invalid tag user {0:?}: it holds a NUL")]
    BadUser(String),
    /// Another writer holds the tag's lock for longer than spfs waits (5 s).
    #[error("tag already locked, cannot edit: {0} exists")]
    TagLocked(PathBuf),
    /// A test stopped the write here (feature `testing`).
    #[cfg(feature = "testing")]
    #[error("stopped at fail point {0:?}")]
    FailPoint(FailPoint),
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> WriteError + 'p {
    move |source| WriteError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Shorthand for results of the writer.
pub type WriteResult<T> = Result<T, WriteError>;

/// Files at most this long are read into memory whole: hashed first, then written only when
/// their payload is missing. Longer ones are copied through a temporary payload while hashed.
const SMALL_FILE: u64 = 4 << 20;
/// The read buffer of large files.
const COPY_BUFFER: usize = 1 << 20;
/// How long spfs waits for a tag's lock (`TagLock::new`, storage/fs/tag.rs).
const TAG_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// The character-device type bit of `st_mode` (a `u16` in macOS's libc, so spelled here).
const S_IFCHR: u32 = 0o020_000;
/// What this writer puts in a tag lock file, so a lock left by a killed process can be told
/// from a live one (spfs's own locks are empty and are only waited for).
const LOCK_PREFIX: &str = "spfs-fuse pid ";

/// Writes into one repository; every file and directory it creates belongs to `owner`.
#[derive(Debug)]
pub struct RepoWriter {
    repo: Repository,
    settings: WriteSettings,
    owner: Option<(u32, u32)>,
    threads: usize,
    #[cfg(feature = "testing")]
    fail_at: Option<FailPoint>,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl RepoWriter {
    /// A writer into the repository at `root`, which must exist (`objects/`, `payloads/`).
    pub fn open(
        root: &Path,
        settings: WriteSettings,
        owner: Option<(u32, u32)>,
    ) -> WriteResult<Self> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        Ok(RepoWriter {
            repo: Repository::open(root)?,
            settings,
            owner,
            threads,
            #[cfg(feature = "testing")]
            fail_at: None,
        })
    }

    /// Like [`RepoWriter::open`], but first makes `root` a repository when it is not one yet,
    /// as `spfs init repo` does: `objects/`, `payloads/`, `tags/` (mode 0777, owned) and a
    /// `VERSION` naming the spfs version whose format this writes (0.44.0).
    pub fn init(
        root: &Path,
        settings: WriteSettings,
        owner: Option<(u32, u32)>,
    ) -> WriteResult<Self> {
        let dirs = RepoWriter {
            repo: Repository::unchecked(root),
            settings,
            owner,
            threads: 1,
            #[cfg(feature = "testing")]
            fail_at: None,
        };
        for dir in ["objects", "payloads", "tags"] {
            dirs.ensure_dir(&root.join(dir))?;
        }
        let version = root.join("VERSION");
        if version.symlink_metadata().is_err() {
            let (tmp, mut f) = dirs.temp_file(&root.join("objects/work"))?;
            f.write_all(b"0.44.0").map_err(io_err("write", &tmp))?;
            drop(f);
            dirs.persist(&tmp, &version)?;
        }
        Self::open(root, settings, owner)
    }

    /// Writes tags into a namespace (`SPFS_STORAGE__TAG_NAMESPACE`); `None`: the default one.
    pub fn with_tag_namespace(mut self, namespace: Option<&str>) -> Self {
        self.repo = self.repo.with_tag_namespace(namespace);
        self
    }

    /// How many threads hash and write file contents (at least 1).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Stops every write at `point` with [`WriteError::FailPoint`], leaving what was written.
    #[cfg(feature = "testing")]
    pub fn fail_at(mut self, point: Option<FailPoint>) -> Self {
        self.fail_at = point;
        self
    }

    /// The repository written into.
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    #[cfg(feature = "testing")]
    fn fail(&self, point: FailPoint) -> WriteResult<()> {
        match self.fail_at {
            Some(p) if p == point => Err(WriteError::FailPoint(p)),
            _ => Ok(()),
        }
    }

    /// Payloads (only those missing), blob objects, the manifest; returns the manifest digest.
    /// `progress` is called from several threads.
    pub fn write_tree(
        &self,
        root: &Node,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> WriteResult<Digest> {
        let Node::Dir { children, .. } = root else {
            return Err(WriteError::RootNotADirectory);
        };
        let mut leaves: Vec<&Node> = Vec::new();
        collect_leaves(Path::new(""), children, &mut leaves)?;
        progress(Progress::Planned {
            files: leaves.len() as u64,
        });
        let blobs = self.write_blobs(&leaves, progress)?;
        let blobs: HashMap<*const Node, (Digest, u64)> = leaves
            .iter()
            .map(|n| std::ptr::from_ref::<Node>(n))
            .zip(blobs)
            .collect();
        let mut legacy: HashMap<Digest, Vec<u8>> = HashMap::new();
        let flatbuffers = self.settings.encoding == Encoding::FlatBuffers;
        let mut builder = ManifestBuilder::with_entries(if flatbuffers { blobs.len() } else { 0 });
        let trees = build_dir(&mut builder, children, &blobs, &mut legacy, flatbuffers)?;
        // The legacy body: the root tree, the count of the others, the others in stored order.
        let tree_bytes = |d: &Digest| legacy.get(d).map(Vec::as_slice).unwrap_or_default();
        let mut body = Vec::with_capacity(trees.iter().map(|t| tree_bytes(&t.1).len()).sum());
        for (i, (_, d)) in trees.iter().enumerate() {
            body.extend_from_slice(tree_bytes(d));
            if i == 0 {
                body.extend_from_slice(&((trees.len() - 1) as u64).to_be_bytes());
            }
        }
        let mut h = object_hasher(HashPrefix::of(self.settings.strategy, ObjectKind::Manifest));
        h.update(&body);
        let digest = Digest::from_bytes(h.finalize().into());
        let mut file = self
            .settings
            .header(ObjectKind::Manifest)
            .to_bytes()
            .to_vec();
        match self.settings.encoding {
            Encoding::Legacy => file.extend_from_slice(&body),
            Encoding::FlatBuffers => {
                drop(body);
                let wips: Vec<_> = trees.iter().filter_map(|t| t.0).collect();
                file.extend_from_slice(&builder.finish(&wips));
            }
        }
        self.write_object(&digest, &file)?;
        #[cfg(feature = "testing")]
        self.fail(FailPoint::Manifest)?;
        tracing::debug!(%digest, files = leaves.len(), "wrote a manifest");
        Ok(digest)
    }

    /// A layer object holding `manifest` (no annotations); returns its digest.
    pub fn write_layer(&self, manifest: Digest) -> WriteResult<Digest> {
        let digest = self.write_small(&Object::Layer(Layer {
            manifest: Some(manifest),
            annotations: Vec::new(),
        }))?;
        #[cfg(feature = "testing")]
        self.fail(FailPoint::Layer)?;
        Ok(digest)
    }

    /// A platform object of these layers (or platforms, manifests), bottom first; a digest
    /// given twice keeps its last position, as spfs's `Stack` does. Returns its digest.
    pub fn write_platform(&self, stack_bottom_up: &[Digest]) -> WriteResult<Digest> {
        let digest = self.write_small(&Object::Platform(Platform {
            stack: stack_keep_last(stack_bottom_up),
        }))?;
        #[cfg(feature = "testing")]
        self.fail(FailPoint::Platform)?;
        Ok(digest)
    }

    /// Appends a version to TAG (a no-op when it already points there), as spfs does: the
    /// stream is rewritten under `<name>.tag.lock` through `<name>.tag.work` and a rename, the
    /// new record inserted in time order, its parent the previous head.
    pub fn write_tag(&self, tag: &str, target: Digest, user: &str) -> WriteResult<()> {
        let spec = TagSpec::parse(tag)
            .filter(|s| s.version() == 0)
            .ok_or_else(|| WriteError::BadTag(tag.to_owned()))?;
        if user.contains('\0') {
            return Err(WriteError::BadUser(user.to_owned()));
        }
        let path = self.repo.tags_dir().join(spec.rel_file());
        if let Some(parent) = path.parent() {
            self.ensure_dir(parent)?;
        }
        let lock = TagLock::take(self, &path)?;
        #[cfg(feature = "testing")]
        self.fail(FailPoint::TagLock)?;
        let records = match fs::read(&path) {
            Ok(bytes) => parse_tag_file(&bytes, &path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        // spfs's `push_tag` (storage/tag.rs): nothing to do when the head already points there.
        if records.first().is_some_and(|head| head.target == target) {
            tracing::debug!(tag, %target, "tag already points there");
            return Ok(());
        }
        let now = Utc::now();
        let new = TagRecord::new(
            spec.org().unwrap_or_default(),
            spec.name(),
            target,
            user,
            &spfs_time(now),
            records.first().map_or(Digest::NULL, |head| head.digest),
        );
        let Some(stream) = insert_in_time_order(records, new, now, &path)? else {
            return Ok(());
        };
        let bytes = encode_tag_file(&stream);
        let mut work = path.clone().into_os_string();
        work.push(".work");
        let work = PathBuf::from(work);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&work)
            .map_err(io_err("create", &work))?;
        let written = self
            .own_file(&f, &work)
            .and_then(|()| f.write_all(&bytes).map_err(io_err("write", &work)));
        drop(f);
        if let Err(e) = written {
            let _ = fs::remove_file(&work);
            return Err(e);
        }
        #[cfg(feature = "testing")]
        self.fail(FailPoint::TagWork)?;
        if let Err(e) = fs::rename(&work, &path) {
            let _ = fs::remove_file(&work);
            return Err(io_err("rename into place", &path)(e));
        }
        drop(lock);
        tracing::info!(tag, %target, "tagged");
        Ok(())
    }

    /// Writes every leaf's payload and blob object, on up to `self.threads` threads; returns
    /// the (digest, size) of each leaf, in order.
    fn write_blobs(
        &self,
        leaves: &[&Node],
        progress: &(dyn Fn(Progress) + Sync),
    ) -> WriteResult<Vec<(Digest, u64)>> {
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let first_error: Mutex<Option<WriteError>> = Mutex::new(None);
        let results: Mutex<Vec<(usize, Digest, u64)>> =
            Mutex::new(Vec::with_capacity(leaves.len()));
        let worker = || {
            let mut buf = Vec::new();
            let mut done = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(node) = leaves.get(i) else { break };
                match self.write_leaf(node, &mut buf) {
                    Ok((digest, size, written)) => {
                        progress(Progress::File {
                            bytes: size,
                            written,
                        });
                        done.push((i, digest, size));
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                        break;
                    }
                }
            }
            results
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(done);
        };
        let threads = self.threads.min(leaves.len()).max(1);
        if threads == 1 {
            worker();
        } else {
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(worker);
                }
            });
        }
        if let Some(e) = first_error
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Err(e);
        }
        let mut results = results
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        results.sort_unstable_by_key(|r| r.0);
        Ok(results.into_iter().map(|(_, d, s)| (d, s)).collect())
    }

    /// One file's or symlink's payload and blob object: (digest, size, payload written).
    fn write_leaf(&self, node: &Node, buf: &mut Vec<u8>) -> WriteResult<(Digest, u64, bool)> {
        let (digest, size, written) = match node {
            Node::Symlink { target, .. } => {
                let digest = Digest::of(target.as_bytes());
                let written = self.write_payload_bytes(&digest, target.as_bytes())?;
                (digest, target.len() as u64, written)
            }
            Node::File { source, .. } => self.write_payload_file(source, buf)?,
            Node::Dir { .. } | Node::Mask { .. } => {
                return Err(WriteError::RootNotADirectory);
            }
        };
        if written {
            #[cfg(feature = "testing")]
            self.fail(FailPoint::Payload)?;
        }
        // spfs's `commit_blob`: the payload, then its blob object.
        let blob = Object::Blob(Blob {
            payload: digest,
            size,
        });
        let (_, bytes) = small_object_file(&blob, self.settings);
        if self.write_object(&digest, &bytes)? {
            #[cfg(feature = "testing")]
            self.fail(FailPoint::Blob)?;
        }
        Ok((digest, size, written))
    }

    /// Reads `source` once, hashing it, and stores its content as a payload unless present.
    fn write_payload_file(
        &self,
        source: &Path,
        buf: &mut Vec<u8>,
    ) -> WriteResult<(Digest, u64, bool)> {
        // O_NOFOLLOW: a file replaced by a symlink since the walk is not followed (the service
        // reads as root; a link must not pull another file into the repository).
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(source)
            .map_err(io_err("open", source))?;
        let meta = f.metadata().map_err(io_err("stat", source))?;
        if !meta.is_file() {
            return Err(WriteError::Unsupported {
                path: source.to_owned(),
                mode: meta.mode(),
            });
        }
        let len = meta.len();
        if len <= SMALL_FILE {
            buf.clear();
            f.read_to_end(buf).map_err(io_err("read", source))?;
            let digest = Digest::of(buf);
            let written = self.write_payload_bytes(&digest, buf)?;
            return Ok((digest, buf.len() as u64, written));
        }
        // Large: copy into a temporary payload while hashing; rename it, or drop it when the
        // payload already exists.
        buf.resize(COPY_BUFFER, 0);
        let work = self.repo.root().join("payloads/work");
        let (tmp, mut out) = self.temp_file(&work)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let copied = (|| -> WriteResult<()> {
            loop {
                let n = match f.read(buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_err("read", source)(e)),
                };
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io_err("write", &tmp))?;
                size += n as u64;
            }
        })();
        drop(out);
        if let Err(e) = copied {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let digest = Digest::from_bytes(hasher.finalize().into());
        let path = self.repo.payload_path(&digest);
        if path.symlink_metadata().is_ok() {
            let _ = fs::remove_file(&tmp);
            return Ok((digest, size, false));
        }
        #[cfg(feature = "testing")]
        self.fail(FailPoint::PayloadTemp)?;
        self.persist(&tmp, &path)?;
        Ok((digest, size, true))
    }

    /// Stores `bytes` as the payload `digest` unless it exists; whether it was written.
    fn write_payload_bytes(&self, digest: &Digest, bytes: &[u8]) -> WriteResult<bool> {
        self.store(Store::Payloads, digest, bytes)
    }

    /// Encodes and stores a blob, layer or platform; returns its digest.
    fn write_small(&self, object: &Object) -> WriteResult<Digest> {
        let (digest, bytes) = small_object_file(object, self.settings);
        self.write_object(&digest, &bytes)?;
        Ok(digest)
    }

    /// Stores an object file unless it exists (spfs's `write_object`); whether it was written.
    fn write_object(&self, digest: &Digest, bytes: &[u8]) -> WriteResult<bool> {
        self.store(Store::Objects, digest, bytes)
    }

    /// Writes `bytes` as `digest` in `store` through a temporary file in its `work/`, unless
    /// the file exists; whether it was written.
    fn store(&self, store: Store, digest: &Digest, bytes: &[u8]) -> WriteResult<bool> {
        let (path, work) = match store {
            Store::Objects => (self.repo.object_path(digest), "objects/work"),
            Store::Payloads => (self.repo.payload_path(digest), "payloads/work"),
        };
        if path.symlink_metadata().is_ok() {
            return Ok(false);
        }
        let (tmp, mut out) = self.temp_file(&self.repo.root().join(work))?;
        let written = out.write_all(bytes).map_err(io_err("write", &tmp));
        drop(out);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        #[cfg(feature = "testing")]
        self.fail(match store {
            Store::Objects => FailPoint::ObjectTemp,
            Store::Payloads => FailPoint::PayloadTemp,
        })?;
        self.persist(&tmp, &path)?;
        Ok(true)
    }

    /// A new file with a unique name in `dir` (created when missing), mode 0666, owned.
    fn temp_file(&self, dir: &Path) -> WriteResult<(PathBuf, File)> {
        loop {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let name = format!(
                "{}-{}-{nanos}",
                std::process::id(),
                TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = dir.join(name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&path)
            {
                Ok(f) => {
                    self.own_file(&f, &path)?;
                    return Ok((path, f));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.ensure_dir(dir)?,
                Err(e) => return Err(io_err("create", &path)(e)),
            }
        }
    }

    /// Renames a temporary file into place, creating the `XX/` directory when missing.
    fn persist(&self, tmp: &Path, path: &Path) -> WriteResult<()> {
        let result = match fs::rename(tmp, path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match path.parent() {
                Some(parent) => self
                    .ensure_dir(parent)
                    .and_then(|()| fs::rename(tmp, path).map_err(io_err("rename into", path))),
                None => Err(io_err("rename into", path)(e)),
            },
            other => other.map_err(io_err("rename into", path)),
        };
        if result.is_err() {
            let _ = fs::remove_file(tmp);
        }
        result
    }

    /// Sets a new file's mode to exactly 0666 (the umask is not spfs's) and its owner.
    fn own_file(&self, f: &File, path: &Path) -> WriteResult<()> {
        f.set_permissions(fs::Permissions::from_mode(0o666))
            .map_err(io_err("chmod", path))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::fchown(f, Some(uid), Some(gid)).map_err(io_err("chown", path))?;
        }
        Ok(())
    }

    /// Creates `dir` and its missing parents, each with mode 0777 and the owner.
    fn ensure_dir(&self, dir: &Path) -> WriteResult<()> {
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let parent = dir.parent().ok_or_else(|| io_err("create", dir)(e))?;
                self.ensure_dir(parent)?;
                match fs::create_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                    Err(e) => return Err(io_err("create", dir)(e)),
                }
            }
            Err(e) => return Err(io_err("create", dir)(e)),
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777))
            .map_err(io_err("chmod", dir))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(io_err("chown", dir))?;
        }
        Ok(())
    }
}

/// The two content-addressed stores of a repository.
#[derive(Clone, Copy)]
enum Store {
    Objects,
    Payloads,
}

/// A tag stream's `<name>.tag.lock`, removed when dropped.
struct TagLock(PathBuf);

impl TagLock {
    /// Takes the lock as spfs does (create the file exclusively, retrying up to 5 s). A lock
    /// this writer left in a process that no longer runs (killed mid-write) is broken.
    fn take(writer: &RepoWriter, tag_file: &Path) -> WriteResult<TagLock> {
        let mut lock = tag_file.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let deadline = Instant::now() + TAG_LOCK_TIMEOUT;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&lock)
            {
                Ok(mut f) => {
                    let guard = TagLock(lock);
                    writer.own_file(&f, &guard.0)?;
                    f.write_all(lock_content(std::process::id()).as_bytes())
                        .map_err(io_err("write", &guard.0))?;
                    return Ok(guard);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if lock_holder_is_gone(&lock) {
                        tracing::info!(lock = %lock.display(), "breaking a tag lock left by a process that is gone");
                        let _ = fs::remove_file(&lock);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(WriteError::TagLocked(lock));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(io_err("create", &lock)(e)),
            }
        }
    }
}

impl Drop for TagLock {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(lock = %self.0.display(), error = %e, "cannot remove a tag lock");
        }
    }
}

/// This host's name (empty when it cannot be read): a lock names its host, so that a lock
/// taken on another host sharing the repository (NFS) is never taken for a dead process here.
fn host_name() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What a tag lock taken by process `pid` of this host holds.
fn lock_content(pid: u32) -> String {
    format!("{LOCK_PREFIX}{pid} host {}\n", host_name())
}

/// Whether a lock file names (in this writer's format) a process of this host that no
/// longer exists.
fn lock_holder_is_gone(lock: &Path) -> bool {
    let Ok(text) = fs::read_to_string(lock) else {
        return false;
    };
    let Some((pid, host)) = text
        .strip_prefix(LOCK_PREFIX)
        .and_then(|rest| rest.trim_end_matches('\n').split_once(" host "))
    else {
        return false;
    };
    let Some(pid) = pid.parse::<libc::pid_t>().ok().filter(|&p| p > 0) else {
        return false;
    };
    if host != host_name() {
        return false;
    }
    // No signal: only whether the process exists (EPERM: it does, another user's).
    let probe = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    probe == Err(nix::errno::Errno::ESRCH)
}

/// The stream (oldest first) with `new` inserted as spfs's `insert_tag_in_namespace` does:
/// walking from the newest record, before the first one that sorts below it by (time,
/// target, parent, user) (`Tag`'s `Ord`); `None` when an equal record exists (spfs then
/// writes nothing).
fn insert_in_time_order(
    newest_first: Vec<TagRecord>,
    new: TagRecord,
    new_time: DateTime<Utc>,
    path: &Path,
) -> WriteResult<Option<VecDeque<TagRecord>>> {
    let key = |r: &TagRecord, time: DateTime<Utc>| (time, r.target, r.parent, r.user.clone());
    let new_key = key(&new, new_time);
    let mut out = VecDeque::with_capacity(newest_first.len() + 1);
    let mut new = Some(new);
    for next in newest_first {
        if new.is_none() {
            out.push_front(next);
            continue;
        }
        let time = parse_time(&next.time).ok_or_else(|| SpfsError::CorruptTag {
            path: path.to_owned(),
            reason: format!("record time {:?} is not RFC 3339", next.time),
        })?;
        match key(&next, time).cmp(&new_key) {
            std::cmp::Ordering::Less => {
                if let Some(n) = new.take() {
                    out.push_front(n);
                }
                out.push_front(next);
            }
            std::cmp::Ordering::Greater => out.push_front(next),
            std::cmp::Ordering::Equal => return Ok(None),
        }
    }
    if let Some(n) = new {
        out.push_front(n);
    }
    Ok(Some(out))
}

/// `time` as spfs writes it in a tag record: `trunc_subsecs(6)`, then `to_rfc3339()` (the
/// fraction with the fewest of 0, 3 or 6 digits that hold it, and `+00:00`).
fn spfs_time(time: DateTime<Utc>) -> String {
    time.trunc_subsecs(6).to_rfc3339()
}

/// An RFC 3339 time (any offset), in UTC.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The files and symlinks below `children`, depth first; every name checked before anything
/// is written.
fn collect_leaves<'a>(
    path: &Path,
    children: &'a BTreeMap<String, Node>,
    out: &mut Vec<&'a Node>,
) -> WriteResult<()> {
    for (name, node) in children {
        check_name(path, name)?;
        match node {
            Node::Dir { children, .. } => collect_leaves(&path.join(name), children, out)?,
            Node::File { .. } | Node::Symlink { .. } => out.push(node),
            Node::Mask { .. } => {}
        }
    }
    Ok(())
}

/// Appends one entry's legacy encoding (SPFS-FORMAT.md §7).
pub(crate) fn legacy_entry(out: &mut Vec<u8>, e: &EncodeEntry<'_>) {
    out.extend_from_slice(e.object.as_bytes());
    out.extend_from_slice(match e.kind {
        RAW_TREE => b"tree\0",
        RAW_MASK => b"mask\0",
        _ => b"file\0",
    });
    out.extend_from_slice(&u64::from(e.mode).to_be_bytes());
    out.extend_from_slice(&e.size.to_be_bytes());
    out.extend_from_slice(e.name.as_bytes());
    out.push(0);
}

fn check_name(parent: &Path, name: &str) -> WriteResult<()> {
    let reason = if name.is_empty() {
        "an empty name"
    } else if name == "." || name == ".." {
        "the name . or .."
    } else if name.contains(['/', '\0']) {
        "a name holding / or NUL"
    } else {
        return Ok(());
    };
    Err(WriteError::BadName {
        path: parent.join(name),
        reason,
    })
}

/// One directory's trees as spfs's `ManifestBuilder::build_from_entry` makes them: the
/// entries sorted directories first, then by name (`ManifestNode`'s `Ord`), each
/// sub-directory's trees built (into the buffer) before its entry; then this tree; the list
/// is this tree followed by the sub-directories' lists, repeated digests dropped. Returns
/// (tree, digest) pairs; `legacy` gets each distinct tree's legacy encoding.
fn build_dir(
    b: &mut ManifestBuilder<'_>,
    children: &BTreeMap<String, Node>,
    blobs: &HashMap<*const Node, (Digest, u64)>,
    legacy: &mut HashMap<Digest, Vec<u8>>,
    flatbuffers: bool,
) -> WriteResult<Vec<(Option<fb::Wip>, Digest)>> {
    let mut wips = Vec::with_capacity(if flatbuffers { children.len() } else { 0 });
    let mut subs = Vec::new();
    let mut entries: Vec<EncodeEntry<'_>> = Vec::with_capacity(children.len());
    // Directories first, in name order.
    for (name, node) in children {
        let Node::Dir {
            mode,
            children: grand,
        } = node
        else {
            continue;
        };
        let sub = build_dir(b, grand, blobs, legacy, flatbuffers)?;
        let e = EncodeEntry {
            name,
            kind: RAW_TREE,
            object: sub.first().map_or(Digest::NULL, |t| t.1),
            mode: *mode,
            size: 0,
        };
        if flatbuffers {
            wips.push(b.entry(&e));
        }
        entries.push(e);
        subs.push(sub);
    }
    for (name, node) in children {
        let e = match node {
            Node::Dir { .. } => continue,
            Node::File { mode, .. } | Node::Symlink { mode, .. } => {
                let (object, size) = blobs
                    .get(&std::ptr::from_ref(node))
                    .copied()
                    .unwrap_or((Digest::NULL, 0));
                EncodeEntry {
                    name,
                    kind: RAW_BLOB,
                    object,
                    mode: *mode,
                    size,
                }
            }
            Node::Mask { mode } => EncodeEntry {
                name,
                kind: RAW_MASK,
                object: Digest::NULL,
                mode: *mode,
                size: 0,
            },
        };
        if flatbuffers {
            wips.push(b.entry(&e));
        }
        entries.push(e);
    }
    let tree = flatbuffers.then(|| b.tree(&wips));
    // The legacy encoding (and so the digest) lists entries by name alone.
    entries.sort_unstable_by(|x, y| x.name.as_bytes().cmp(y.name.as_bytes()));
    let mut bytes =
        Vec::with_capacity(8 + entries.iter().map(|e| 58 + e.name.len()).sum::<usize>());
    bytes.extend_from_slice(&(entries.len() as u64).to_be_bytes());
    for e in &entries {
        legacy_entry(&mut bytes, e);
    }
    let digest = Digest::of(&bytes);
    legacy.entry(digest).or_insert(bytes);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let this = (tree, digest);
    for t in std::iter::once(this).chain(subs.into_iter().flatten()) {
        if seen.insert(t.1) {
            out.push(t);
        }
    }
    Ok(out)
}

/// A blob, layer or platform object file and its digest, as spfs writes it (a manifest gives
/// only a header: use [`RepoWriter::write_tree`]). The legacy encoding cannot hold layer
/// annotations; they are left out of the file but hashed.
pub(crate) fn small_object_file(object: &Object, settings: WriteSettings) -> (Digest, Vec<u8>) {
    let header = settings.header(object.kind());
    let digest = small_object_digest(&header, object, Path::new("")).unwrap_or(Digest::NULL);
    let mut out = header.to_bytes().to_vec();
    match settings.encoding {
        Encoding::FlatBuffers => out.extend_from_slice(&fb::encode_small(object)),
        Encoding::Legacy => match object {
            Object::Blob(b) => {
                out.extend_from_slice(b.payload.as_bytes());
                out.extend_from_slice(&b.size.to_be_bytes());
            }
            Object::Layer(l) => {
                if let Some(m) = &l.manifest {
                    out.extend_from_slice(m.as_bytes());
                }
            }
            Object::Platform(p) => {
                out.extend_from_slice(&(p.stack.len() as u64).to_be_bytes());
                for d in p.stack.iter().rev() {
                    out.extend_from_slice(d.as_bytes());
                }
            }
            Object::Manifest(_) => {}
        },
    }
    (digest, out)
}

/// What `spfs commit --path DIR` sees in `path` (spfs's `compute_manifest`): directories,
/// regular files, symlinks (UTF-8 targets), and character devices 0/0 (overlayfs
/// whiteouts) as masks with their `st_mode`. Names must be UTF-8; other file types are
/// refused ("unsupported special file").
pub fn tree_of_dir(path: &Path) -> WriteResult<Node> {
    let meta = fs::metadata(path).map_err(io_err("stat", path))?;
    if !meta.is_dir() {
        return Err(WriteError::RootNotADirectory);
    }
    Ok(Node::Dir {
        mode: meta.mode(),
        children: children_of(path)?,
    })
}

fn children_of(dir: &Path) -> WriteResult<BTreeMap<String, Node>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| WriteError::BadName {
                path: path.clone(),
                reason: "a name that is not UTF-8",
            })?;
        let meta = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        let mode = meta.mode();
        let ft = meta.file_type();
        let node = if ft.is_symlink() {
            let target = fs::read_link(&path)
                .map_err(io_err("read the link", &path))?
                .into_os_string()
                .into_string()
                .map_err(|_| WriteError::BadName {
                    path: path.clone(),
                    reason: "a symlink target that is not UTF-8",
                })?;
            Node::Symlink { mode, target }
        } else if ft.is_dir() {
            Node::Dir {
                mode,
                children: children_of(&path)?,
            }
        } else if mode & S_IFCHR != 0 && meta.rdev() == 0 {
            // spfs's `is_removed_entry` (runtime/overlayfs.rs): the S_IFCHR bit and device 0.
            Node::Mask { mode }
        } else if ft.is_file() {
            Node::File { mode, source: path }
        } else {
            return Err(WriteError::Unsupported { path, mode });
        };
        out.insert(name, node);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_and_read_as_spfs_does() {
        let at = |secs, nanos| DateTime::from_timestamp(secs, nanos).unwrap();
        assert_eq!(spfs_time(at(0, 0)), "1970-01-01T00:00:00+00:00");
        assert_eq!(
            spfs_time(at(1_795_333_034, 515_250_789)),
            "2026-11-22T07:37:14.515250+00:00"
        );
        assert_eq!(
            spfs_time(at(1_795_333_034, 515_000_000)),
            "2026-11-22T07:37:14.515+00:00"
        );
        for (s, secs, nanos) in [
            (
                "2026-11-22T07:37:14.515250+00:00",
                1_795_333_034,
                515_250_000,
            ),
            (
                "2026-11-22T08:37:14.51525+01:00",
                1_795_333_034,
                515_250_000,
            ),
            ("2026-11-22T07:37:14Z", 1_795_333_034, 0),
            ("2000-02-29T00:00:00-00:30", 951_784_200, 0),
        ] {
            assert_eq!(parse_time(s), Some(at(secs, nanos)), "{s}");
        }
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T07:37:14",
            "2026-13-22T07:37:14Z",
            "2026-11-22T07:37:14.+00:00",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn settings_are_spelled_as_spfs_reads_them() {
        let s = WriteSettings::from_values(Some("legacy"), Some("LEGACY")).unwrap();
        assert_eq!(
            (s.encoding, s.strategy),
            (Encoding::Legacy, DigestStrategy::Legacy)
        );
        let s = WriteSettings::from_values(Some("FlatBuffers"), Some("withKindAndSalt")).unwrap();
        assert_eq!(s, WriteSettings::default());
        assert_eq!(
            WriteSettings::from_values(Some(""), None).unwrap(),
            WriteSettings::default()
        );
        let err = WriteSettings::from_values(Some("json"), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("SPFS_STORAGE__ENCODING_FORMAT=\"json\""),
            "{err}"
        );
        let err = WriteSettings::from_values(None, Some("salted")).unwrap_err();
        assert!(
            err.to_string().contains("SPFS_STORAGE__DIGEST_STRATEGY"),
            "{err}"
        );
    }
}
