//! Reading a 100,100-entry spfs manifest (100 directories × 10 sub-directories × 99 files),
//! written in the current encoding (FlatBuffers, salted digests) and in the legacy one, and
//! registering a runtime of a platform built on it.
//!
//! Measures `Repository::read_manifest` on a layer: reading the object file, verifying the
//! FlatBuffer, hashing every tree to link directories, and flattening into 64-byte entries.
//! Then `Router::register` of a platform `[that layer, a small upper layer]` (overrides, a
//! mask, new files): resolving the tag-less digest, expanding the platform, reading both
//! manifests and merging them into the view. Before the timings it prints the object size,
//! the bytes each manifest entry keeps while registering, and the bytes each view entry keeps
//! for the runtime's life.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use spfs_router::process::FakeProcessTable;
use spfs_router::{Attr, Owner, Router, Timestamp};
use spfs_storage::encode::{self, TreeEntry};
use spfs_storage::{
    Digest, DigestStrategy, Encoding, EntryKind, Layer, Object, ObjectSource, Platform, Repository,
};

const DIRS: usize = 100;
const SUBDIRS: usize = 10;
const FILES: usize = 99;

/// Writes the big manifest and a layer pointing at it; returns the layer's digest.
fn write_layer(root: &Path, encoding: Encoding, strategy: DigestStrategy) -> Digest {
    fs::create_dir_all(root.join("objects")).unwrap();
    fs::create_dir_all(root.join("payloads")).unwrap();
    let dir_names: Vec<String> = (0..DIRS).map(|d| format!("dir-{d:03}")).collect();
    let sub_names: Vec<String> = (0..SUBDIRS).map(|s| format!("sub-{s:02}")).collect();
    let file_names: Vec<String> = (0..FILES).map(|f| format!("file-{f:03}.txt")).collect();

    // Leaf trees first (their digests name them), then the middle ones, then the root;
    // stored root first, depth first.
    let mut stored: Vec<Vec<TreeEntry<'_>>> = Vec::new();
    let mut root_entries = Vec::new();
    let mut below_root = Vec::new();
    for (d, dir) in dir_names.iter().enumerate() {
        let mut middle = Vec::new();
        let mut leaves = Vec::new();
        for (s, sub) in sub_names.iter().enumerate() {
            let leaf: Vec<TreeEntry<'_>> = file_names
                .iter()
                .enumerate()
                .map(|(f, name)| {
                    let n = (d * SUBDIRS + s) * FILES + f;
                    let link = f % 20 == 19;
                    TreeEntry {
                        name,
                        kind: if link {
                            EntryKind::Symlink
                        } else {
                            EntryKind::File
                        },
                        object: Digest::of(format!("content {n}").as_bytes()),
                        mode: if link { 0o120777 } else { 0o100644 },
                        size: 10 + n as u64 % 1000,
                    }
                })
                .collect();
            middle.push(TreeEntry {
                name: sub,
                kind: EntryKind::Dir,
                object: encode::tree_digest(&leaf),
                mode: 0o040755,
                size: 0,
            });
            leaves.push(leaf);
        }
        root_entries.push(TreeEntry {
            name: dir,
            kind: EntryKind::Dir,
            object: encode::tree_digest(&middle),
            mode: 0o040755,
            size: 0,
        });
        below_root.push(middle);
        below_root.extend(leaves);
    }
    stored.push(root_entries);
    stored.extend(below_root);

    write_manifest_layer(root, &stored, encoding, strategy)
}

/// Writes a manifest of `trees` (root first) and a layer pointing at it; returns the layer.
fn write_manifest_layer(
    root: &Path,
    trees: &[Vec<TreeEntry<'_>>],
    encoding: Encoding,
    strategy: DigestStrategy,
) -> Digest {
    let (manifest, bytes) = encode::manifest_file(trees, encoding, strategy);
    store(root, manifest, &bytes);
    let layer = Object::Layer(Layer {
        manifest: Some(manifest),
        annotations: Vec::new(),
    });
    write_object(root, &layer, encoding, strategy)
}

fn write_object(
    root: &Path,
    object: &Object,
    encoding: Encoding,
    strategy: DigestStrategy,
) -> Digest {
    let (digest, bytes) = encode::object_file(object, encoding, strategy);
    store(root, digest, &bytes);
    digest
}

fn store(root: &Path, digest: Digest, bytes: &[u8]) {
    let path = root.join("objects").join(digest.rel_path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, bytes).unwrap();
}

/// A small upper layer over the big one: in `dir-000`..`dir-009`/`sub-00`, one file gets a
/// new mode, one is masked and one is new. Returns the platform `[big, upper]`.
fn write_platform(
    root: &Path,
    big: Digest,
    encoding: Encoding,
    strategy: DigestStrategy,
) -> Digest {
    let dirs: Vec<String> = (0..10).map(|d| format!("dir-{d:03}")).collect();
    let file = |name: &'static str, kind, mode| TreeEntry {
        name,
        kind,
        object: if kind == EntryKind::Mask {
            Digest::NULL
        } else {
            Digest::of(name.as_bytes())
        },
        mode,
        size: if kind == EntryKind::Mask {
            0
        } else {
            name.len() as u64
        },
    };
    let leaf = vec![
        file("file-000.txt", EntryKind::File, 0o100755),
        file("file-001.txt", EntryKind::Mask, 0o020644),
        file("new-file.txt", EntryKind::File, 0o100644),
    ];
    let dir = |name, object| TreeEntry {
        name,
        kind: EntryKind::Dir,
        object,
        mode: 0o040755,
        size: 0,
    };
    let middle = vec![dir("sub-00", encode::tree_digest(&leaf))];
    let top: Vec<TreeEntry<'_>> = dirs
        .iter()
        .map(|name| dir(name, encode::tree_digest(&middle)))
        .collect();
    let upper = write_manifest_layer(root, &[top, middle, leaf], encoding, strategy);
    let platform = Object::Platform(Platform {
        stack: vec![big, upper],
    });
    write_object(root, &platform, encoding, strategy)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("spfs_manifest");
    group.sample_size(20);
    for (label, encoding, strategy) in [
        (
            "current",
            Encoding::FlatBuffers,
            DigestStrategy::WithKindAndSalt,
        ),
        ("legacy", Encoding::Legacy, DigestStrategy::Legacy),
    ] {
        let root = dir.path().join(label);
        let layer = write_layer(&root, encoding, strategy);
        let repo = Repository::open(&root).unwrap();

        let start = Instant::now();
        let manifest = repo.read_manifest(&layer).unwrap();
        let first = start.elapsed();
        let object_size = fs::metadata(repo.object_path(&manifest.digest()))
            .unwrap()
            .len();
        let start = Instant::now();
        repo.verify_object(&manifest.digest()).unwrap();
        let verify = start.elapsed();
        eprintln!(
            "spfs_manifest/{label}: {} entries, object file {} bytes ({:.1} bytes/entry), \
             in memory {} bytes ({:.1} bytes/entry), first read {:.1} ms, read + verify {:.1} ms",
            manifest.len(),
            object_size,
            object_size as f64 / manifest.len() as f64,
            manifest.heap_size(),
            manifest.heap_size() as f64 / manifest.len() as f64,
            first.as_secs_f64() * 1e3,
            verify.as_secs_f64() * 1e3,
        );
        group.bench_function(format!("read_manifest_100k/{label}"), |b| {
            b.iter(|| black_box(repo.read_manifest(black_box(&layer)).unwrap()))
        });

        let platform = write_platform(&root, layer, encoding, strategy).to_string();
        let processes = Arc::new(FakeProcessTable::new());
        processes.spawn(100, 1, 100, 0);
        let router = Router::new(processes, Attr::root(0, 0, Timestamp::default()));
        let owner = Owner::trusted(0, 0);
        let repos = [root.clone()];
        let start = Instant::now();
        let runtime = router
            .register(100, &platform, &owner, &repos, None)
            .unwrap();
        let first = start.elapsed();
        let entries = runtime.view.len();
        eprintln!(
            "register/spfs-platform-100k/{label}: {entries} view entries, first registration \
             {:.1} ms, view {} bytes ({:.1} bytes/entry) for the runtime's life, plus \
             {:.1} bytes/entry of manifests while registering",
            first.as_secs_f64() * 1e3,
            runtime.view.heap_bytes(),
            runtime.view.heap_bytes() as f64 / entries as f64,
            manifest.heap_size() as f64 / entries as f64,
        );
        drop(runtime);
        router.unregister(100).unwrap();
        group.bench_function(format!("register_platform_100k/{label}"), |b| {
            b.iter_batched(
                || (),
                |_| {
                    router
                        .register(100, &platform, &owner, &repos, None)
                        .unwrap();
                    router.unregister(100).unwrap();
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
