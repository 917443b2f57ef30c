//! The two views and the outsider the isolation tests run (through a real mount and through
//! the kext model): the layers of runtimes `a` and `b`, and what each observer must see.

use std::path::{Path, PathBuf};

/// Writes `bytes` to `root/rel`, creating parents.
pub fn put(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes the layers of views `a` and `b` under `root`; returns their directories. The same
/// names differ in content (`bin/tool`, `share/x/y/deep`), in target (`link`), or exist in
/// one view only (`only-a`).
pub fn make_layers(root: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (root.join("a"), root.join("b"));
    put(&a, "bin/tool", b"aaaa");
    put(&b, "bin/tool", b"bbbbbbbb");
    put(&a, "share/x/y/deep", b"deep-a");
    put(&b, "share/x/y/deep", b"deep-b");
    std::fs::create_dir_all(a.join("only-a")).unwrap();
    std::os::unix::fs::symlink("target-a", a.join("link")).unwrap();
    std::os::unix::fs::symlink("target-b", b.join("link")).unwrap();
    (a, b)
}

/// What one observer of `view` (`a`, `b`, or anything else for an outsider) must see at the
/// mount, as a compact string per path.
pub fn expected(view: &str) -> Vec<String> {
    match view {
        "a" => vec![
            "tool=aaaa".into(),
            "link=target-a".into(),
            "list=bin,link,only-a,share".into(),
            "only-a=dir".into(),
            "deep=deep-a".into(),
        ],
        "b" => vec![
            "tool=bbbbbbbb".into(),
            "link=target-b".into(),
            "list=bin,link,share".into(),
            "only-a=ENOENT".into(),
            "deep=deep-b".into(),
        ],
        _ => vec![
            "tool=ENOENT".into(),
            "link=ENOENT".into(),
            "list=".into(),
            "only-a=ENOENT".into(),
            "deep=ENOENT".into(),
        ],
    }
}

/// One observation in the form of [`expected`]: `bin/tool`'s content, `link`'s target, the
/// root's names (sorted here), what `only-a` is, and `share/x/y/deep`'s content.
pub fn observation(
    tool: String,
    link: String,
    mut names: Vec<String>,
    only_a: String,
    deep: String,
) -> Vec<String> {
    names.sort();
    vec![
        format!("tool={tool}"),
        format!("link={link}"),
        format!("list={}", names.join(",")),
        format!("only-a={only_a}"),
        format!("deep={deep}"),
    ]
}
