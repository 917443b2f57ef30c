//! Reading a 100,100-entry spfs manifest (100 directories × 10 sub-directories × 99 files),
//! written in the current encoding (FlatBuffers, salted digests) and in the legacy one.
//!
//! Measures `Repository::read_manifest` on a layer: reading the object file, verifying the
//! FlatBuffer, hashing every tree to link directories, and flattening into 64-byte entries.
//! Before the timings it prints the object size and the bytes each entry keeps in memory.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use spfs_router::spfs::encode::{self, TreeEntry};
use spfs_router::spfs::{Digest, DigestStrategy, Encoding, EntryKind, Layer, Object, Repository};

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

    let (manifest, bytes) = encode::manifest_file(&stored, encoding, strategy);
    let path = root.join("objects").join(manifest.rel_path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &bytes).unwrap();
    let layer = Object::Layer(Layer {
        manifest: Some(manifest),
        annotations: Vec::new(),
    });
    let (digest, bytes) = encode::object_file(&layer, encoding, strategy);
    let path = root.join("objects").join(digest.rel_path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &bytes).unwrap();
    digest
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
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
