//! Benchmarks of the core's hot paths: caller resolution, lookup and readdir in a large
//! directory, and building a view of three layers with ~24,000 files.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use spfs_router::process::{FakeProcessTable, SystemProcessTable};
use spfs_router::{DirEntry, DirectoryReplier, FileKind, Owner, ROOT, Router, Routing, Vfs};

use spfs_testkit::root_attr;

/// A tree of depth 8 below registered root 100: 100 -> 101 -> ... -> 108, and `others`
/// more runtimes rooted at children of pid 1 (200, 201, ...), all of `layer`.
fn deep_router(layer: &Path, others: u32) -> Arc<Router> {
    let processes = Arc::new(FakeProcessTable::new());
    processes.spawn(1, 0, 1, 0);
    processes.spawn(100, 1, 100, 0);
    for pid in 101..=108 {
        processes.spawn(pid, pid - 1, u64::from(pid), 0);
    }
    for pid in 200..200 + others {
        processes.spawn(pid, 1, u64::from(pid), 0);
    }
    let router = Arc::new(Router::new(processes, root_attr()));
    for root in std::iter::once(100).chain(200..200 + others) {
        router
            .register(
                root,
                layer.to_str().unwrap(),
                &Owner::trusted(0, 0),
                &[],
                None,
            )
            .unwrap();
    }
    router
}

/// Makes three layers of ~8,000 files each in 333 directories; the upper two override ~10%.
pub fn make_stack(root: &Path) -> Vec<String> {
    let mut layers = Vec::new();
    for layer in 0..3 {
        let base = root.join(format!("layer{layer}"));
        let (dirs, files_per_dir, prefix) = if layer == 0 {
            (1000, 21, "f")
        } else {
            (400, 3, "f")
        };
        for d in 0..dirs {
            let dir = base.join(format!("d{:03}/s{}", d, d % 7));
            std::fs::create_dir_all(&dir).unwrap();
            for f in 0..files_per_dir {
                let name = if layer == 0 {
                    format!("{prefix}{f}")
                } else {
                    format!("{prefix}{}", f * 7)
                };
                std::fs::write(dir.join(name), [layer as u8; 64]).unwrap();
            }
        }
        layers.push(base.to_str().unwrap().to_owned());
    }
    layers
}

struct Count(usize);
impl DirectoryReplier for Count {
    fn add(&mut self, entry: DirEntry<'_>) -> bool {
        black_box(entry.name);
        self.0 += 1;
        true
    }
}

fn benches(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for i in 0..10_000 {
        std::fs::write(big.join(format!("entry-{i:05}")), b"").unwrap();
    }

    // The routing cost of a root LOOKUP with 1 and with 64 registered runtimes, cached and
    // uncached: what `ci/bench.sh`'s routing rows measure end to end, without the kernel.
    let small = tmp.path().join("small");
    std::fs::create_dir_all(small.join("bin")).unwrap();
    let mut group = c.benchmark_group("route/root-lookup");
    for runtimes in [1, 64] {
        let vfs = Vfs::new(Routing::Shared(deep_router(&small, runtimes - 1)));
        group.bench_function(format!("cached/{runtimes}-runtimes"), |b| {
            b.iter(|| black_box(vfs.lookup(black_box(108), ROOT, b"bin").unwrap()))
        });
        let Routing::Shared(router) = vfs.routing() else {
            unreachable!("built shared")
        };
        group.bench_function(format!("uncached/{runtimes}-runtimes"), |b| {
            b.iter(|| {
                router.clear_cache();
                black_box(vfs.lookup(black_box(108), ROOT, b"bin").unwrap())
            })
        });
    }
    group.finish();

    let router = deep_router(&big, 0);
    c.bench_function("resolve/cached/depth8", |b| {
        b.iter(|| black_box(router.resolve(black_box(108))))
    });
    c.bench_function("resolve/uncached/depth8/fake", |b| {
        b.iter(|| {
            router.clear_cache();
            black_box(router.resolve(black_box(108)))
        })
    });
    let system = Arc::new(Router::new(
        Arc::new(SystemProcessTable::new()),
        root_attr(),
    ));
    system
        .register(
            std::os::unix::process::parent_id(),
            big.to_str().unwrap(),
            &Owner::trusted(0, 0),
            &[],
            None,
        )
        .unwrap();
    let me = std::process::id();
    c.bench_function("resolve/uncached/depth1/proc", |b| {
        b.iter(|| {
            system.clear_cache();
            black_box(system.resolve(black_box(me)))
        })
    });

    let vfs = Vfs::new(Routing::Shared(router.clone()));
    let dir = vfs.lookup(108, ROOT, b"entry-04567").unwrap();
    assert_eq!(dir.kind, FileKind::File);
    let view = router.resolve(108);
    c.bench_function("lookup/10k-dir", |b| {
        b.iter(|| black_box(view.child(0, black_box(b"entry-07777"))))
    });
    c.bench_function("lookup/10k-dir/vfs-root", |b| {
        b.iter(|| {
            black_box(
                vfs.lookup(black_box(108), ROOT, black_box(b"entry-07777"))
                    .unwrap(),
            )
        })
    });
    c.bench_function("readdir/10k-dir", |b| {
        b.iter(|| {
            let mut count = Count(0);
            vfs.readdir(108, ROOT, 0, &mut count).unwrap();
            assert_eq!(count.0, 10_002);
        })
    });

    let stack = tempfile::tempdir().unwrap();
    let layers = make_stack(stack.path()).join("+");
    let processes = Arc::new(FakeProcessTable::new());
    processes.spawn(100, 1, 100, 0);
    let registrar = Router::new(processes, root_attr());
    let runtime = registrar
        .register(100, &layers, &Owner::trusted(0, 0), &[], None)
        .unwrap();
    let entries = runtime.view.len();
    eprintln!(
        "view of 3 layers: {entries} entries, {} heap bytes, {:.1} bytes/entry",
        runtime.view.heap_bytes(),
        runtime.view.heap_bytes() as f64 / entries as f64
    );
    registrar.unregister(100).unwrap();
    let mut group = c.benchmark_group("register");
    group.sample_size(20);
    group.bench_function("3-layers-24k-files", |b| {
        b.iter_batched(
            || (),
            |_| {
                registrar
                    .register(100, &layers, &Owner::trusted(0, 0), &[], None)
                    .unwrap();
                registrar.unregister(100).unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(core, benches);
criterion_main!(core);
