//! Property test: random layer stacks on disk, whiteouts and opaque directories included,
//! walked through the view API, must give exactly what a simple model of the merge rules gives.
//!
//! The model applies layers bottom to top the way OCI applies layer changesets: an opaque
//! marker empties its directory, `.wh.NAME` removes `NAME` and everything under it, a
//! non-directory replaces whatever was at its path, and a directory replaces a non-directory.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use common::{Seen, root_attr, walk};
use proptest::prelude::*;
use spfs_router::process::FakeProcessTable;
use spfs_router::{Owner, Router, Routing, Vfs};

/// One entry of a generated layer.
#[derive(Debug, Clone)]
enum Gen {
    File {
        exec: bool,
    },
    Symlink,
    Whiteout,
    Dir {
        opaque: bool,
        children: BTreeMap<Vec<u8>, Gen>,
    },
}

/// Names include one that is not UTF-8.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"a".to_vec()),
        Just(b"b".to_vec()),
        Just(b"c".to_vec()),
        Just(b"n\xff".to_vec())
    ]
}

fn tree() -> impl Strategy<Value = Gen> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(|exec| Gen::File { exec }),
        Just(Gen::Symlink),
        Just(Gen::Whiteout),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        (
            prop::bool::weighted(0.2),
            prop::collection::btree_map(name(), inner, 0..4),
        )
            .prop_map(|(opaque, children)| Gen::Dir { opaque, children })
    })
}

fn layer() -> impl Strategy<Value = Gen> {
    (
        prop::bool::weighted(0.1),
        prop::collection::btree_map(name(), tree(), 0..4),
    )
        .prop_map(|(opaque, children)| Gen::Dir { opaque, children })
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = prefix.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

fn content(layer: usize, path: &[u8]) -> Vec<u8> {
    let mut bytes = format!("layer {layer}: ").into_bytes();
    bytes.extend_from_slice(path);
    bytes
}

fn target(layer: usize, path: &[u8]) -> Vec<u8> {
    let mut bytes = format!("../target-{layer}-").into_bytes();
    bytes.extend(path.iter().map(|&b| if b == b'/' { b'_' } else { b }));
    bytes
}

/// Writes a generated layer under `dir`.
fn write(layer: usize, dir: &Path, prefix: &[u8], children: &BTreeMap<Vec<u8>, Gen>, opaque: bool) {
    if opaque {
        std::fs::write(dir.join(".wh..wh..opq"), b"").unwrap();
    }
    for (name, entry) in children {
        let path = join(prefix, name);
        let on_disk = dir.join(OsStr::from_bytes(name));
        match entry {
            Gen::File { exec } => {
                std::fs::write(&on_disk, content(layer, &path)).unwrap();
                let mode = if *exec { 0o755 } else { 0o640 };
                std::fs::set_permissions(&on_disk, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            Gen::Symlink => {
                std::os::unix::fs::symlink(OsStr::from_bytes(&target(layer, &path)), &on_disk)
                    .unwrap()
            }
            Gen::Whiteout => {
                let mut wh = b".wh.".to_vec();
                wh.extend_from_slice(name);
                std::fs::write(dir.join(OsStr::from_bytes(&wh)), b"").unwrap();
            }
            Gen::Dir { opaque, children } => {
                std::fs::create_dir(&on_disk).unwrap();
                // Directory modes differ per layer so the model checks whose attributes win.
                std::fs::set_permissions(
                    &on_disk,
                    std::fs::Permissions::from_mode(0o750 + layer as u32),
                )
                .unwrap();
                write(layer, &on_disk, &path, children, *opaque);
            }
        }
    }
}

fn remove_subtree(model: &mut BTreeMap<Vec<u8>, Seen>, path: &[u8]) {
    let mut under = path.to_vec();
    under.push(b'/');
    model.retain(|p, _| p != path && !p.starts_with(&under));
}

/// Applies one layer to the model, the OCI way.
fn apply(
    layer: usize,
    model: &mut BTreeMap<Vec<u8>, Seen>,
    prefix: &[u8],
    children: &BTreeMap<Vec<u8>, Gen>,
    opaque: bool,
) {
    if opaque {
        if prefix.is_empty() {
            model.clear();
        } else {
            let mut under = prefix.to_vec();
            under.push(b'/');
            model.retain(|p, _| !p.starts_with(&under));
        }
    }
    for (name, entry) in children {
        if let Gen::Whiteout = entry {
            remove_subtree(model, &join(prefix, name));
        }
    }
    for (name, entry) in children {
        let path = join(prefix, name);
        match entry {
            Gen::Whiteout => {}
            Gen::File { exec } => {
                remove_subtree(model, &path);
                let mode = if *exec { 0o755 } else { 0o640 };
                model.insert(path.clone(), Seen::File(mode, content(layer, &path)));
            }
            Gen::Symlink => {
                remove_subtree(model, &path);
                model.insert(path.clone(), Seen::Symlink(target(layer, &path)));
            }
            Gen::Dir { opaque, children } => {
                if !matches!(model.get(&path), Some(Seen::Dir(_))) {
                    remove_subtree(model, &path);
                }
                model.insert(path.clone(), Seen::Dir(0o750 + layer as u32));
                apply(layer, model, &path, children, *opaque);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn view_matches_the_merge_model(layers in prop::collection::vec(layer(), 1..5)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut dirs = Vec::new();
        let mut model = BTreeMap::new();
        for (i, generated) in layers.iter().enumerate() {
            let dir = tmp.path().join(format!("layer{i}"));
            std::fs::create_dir(&dir).unwrap();
            let Gen::Dir { opaque, children } = generated else { unreachable!() };
            write(i, &dir, b"", children, *opaque);
            apply(i, &mut model, b"", children, *opaque);
            dirs.push(dir.to_str().unwrap().to_owned());
        }
        let processes = Arc::new(FakeProcessTable::new());
        processes.spawn(10, 1, 100, 0);
        let router = Arc::new(Router::new(processes, root_attr()));
        router.register(10, &dirs.join("+"), &Owner::trusted(0, 0), &[], None).unwrap();
        let vfs = Arc::new(Vfs::new(Routing::Shared(router)));
        prop_assert_eq!(walk(&vfs, 10), model);
    }
}
