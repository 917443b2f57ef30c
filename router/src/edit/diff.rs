//! What an editable runtime changed (`spfs-fuse diff`), read from its scratch against the view
//! of the layers below it, in the spirit of `spfs diff`.
//!
//! The scratch is a directory layer (module doc of [`crate::edit`]), so its entries say it all:
//! an entry whose path the lower view has is **modified** (a copied-up file, a replaced entry;
//! a directory only when its mode or owner differ, since a directory is also copied up just to
//! hold a changed child), one it lacks is **added** (and so is everything inside an added
//! directory), a `.wh.NAME` whiteout of a lower entry is **removed**. An opaque directory
//! (`.wh..wh..opq`) replaced the lower one: it is modified, the lower entries it hides are
//! removed, and the same holds inside it, where nothing of the lower one shows. Names starting
//! with `.wh..wh.` other than the opaque marker are the core's temporary files: not changes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::lower::Lower;
use super::walk::{Met, Visit, walk};
use crate::view::FileKind;

/// What happened to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// No layer below has the path.
    Added,
    /// A layer below has it and the runtime changed or replaced it.
    Modified,
    /// A layer below has it and the runtime removed it.
    Removed,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// The path inside the view, starting with `/`.
    pub path: PathBuf,
    /// What happened to it.
    pub kind: ChangeKind,
}

/// Why a scratch could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// Reading an entry of the scratch failed (the scratch was removed, say).
    #[error("cannot read {path:?} in the scratch: {source}")]
    Io {
        /// The entry of the scratch.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
}

/// The changes the scratch directory `scratch` holds over `lower`, ordered by path.
pub(super) fn diff_over(lower: &dyn Lower<'_>, scratch: &Path) -> Result<Vec<Change>, DiffError> {
    let mut changes = Changes(Vec::new());
    walk(lower, scratch, &mut changes)?;
    changes.0.sort();
    Ok(changes.0)
}

/// The diff's visitor: what the walk meets, as changes.
struct Changes(Vec<Change>);

impl Visit for Changes {
    type Error = DiffError;

    fn removed(&mut self, path: &Path) -> Result<(), DiffError> {
        self.0.push(Change {
            path: path.to_path_buf(),
            kind: ChangeKind::Removed,
        });
        Ok(())
    }

    fn entry(&mut self, lower: &dyn Lower<'_>, entry: &Met<'_>) -> Result<(), DiffError> {
        let kind = match entry.below {
            None => Some(ChangeKind::Added),
            // A file or symlink in the scratch replaced what was there, or changed it.
            Some(_) if !entry.meta.is_dir() => Some(ChangeKind::Modified),
            // A file replaced by a directory, or a directory replaced by a new one.
            Some(index) if lower.kind(index) != Some(FileKind::Directory) || entry.opaque => {
                Some(ChangeKind::Modified)
            }
            // A directory is also copied up just to hold a changed child: a change only when
            // its mode or owner differ.
            Some(index) => lower.attr(index).ok().and_then(|attr| {
                let meta = entry.meta;
                (meta.mode() & 0o7777 != attr.perm
                    || meta.uid() != attr.uid
                    || meta.gid() != attr.gid)
                    .then_some(ChangeKind::Modified)
            }),
        };
        if let Some(kind) = kind {
            self.0.push(Change {
                path: entry.path.to_path_buf(),
                kind,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::spec::ResolvedSpec;
    use crate::view::{Attr, Timestamp, View};

    /// The view of the one directory layer `layer`, as the service builds it.
    fn view_of(layer: &Path) -> View {
        let root = Attr::root(0, 0, Timestamp::default());
        View::build(
            2,
            &ResolvedSpec::of_directories([layer.to_path_buf()]),
            &root,
            (0, 0),
        )
    }

    fn put(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// The changes as `+ path` lines, the way `spfs-fuse diff` prints them.
    fn lines(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let mark = match c.kind {
                    ChangeKind::Added => '+',
                    ChangeKind::Modified => '~',
                    ChangeKind::Removed => '-',
                };
                format!("{mark} {}", c.path.display())
            })
            .collect()
    }

    /// A lower layer of `/keep`, `/edit`, `/gone`, `/dir/{a,b}`, `/tree/{x,y/z}`.
    fn lower() -> (tempfile::TempDir, View) {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "keep", "edit", "gone", "dir/a", "dir/b", "tree/x", "tree/y/z",
        ] {
            put(dir.path(), rel, rel);
        }
        let view = view_of(dir.path());
        (dir, view)
    }

    #[test]
    fn an_empty_scratch_changed_nothing() {
        let (_layer, view) = lower();
        let scratch = tempfile::tempdir().unwrap();
        assert_eq!(diff_over(&&view, scratch.path()).unwrap(), []);
    }

    #[test]
    fn new_entries_are_added_copied_up_ones_modified_and_whiteouts_removed() {
        let (layer, view) = lower();
        let scratch = tempfile::tempdir().unwrap();
        let s = scratch.path();
        put(s, "new", "hi");
        put(s, "edit", "changed");
        put(s, ".wh.gone", "");
        // A copied-up parent with an unchanged mode holds a change; it is not one itself.
        std::fs::create_dir(s.join("dir")).unwrap();
        let layer_mode = std::fs::metadata(layer.path().join("dir"))
            .unwrap()
            .permissions();
        std::fs::set_permissions(s.join("dir"), layer_mode).unwrap();
        put(s, "dir/.wh.a", "");
        put(s, "dir/c", "c");
        // A new directory and everything in it.
        put(s, "made/deep/file", "f");
        // The core's temporary file and a whiteout of a name no layer has are no changes.
        put(s, ".wh..wh..tmp.42", "");
        put(s, ".wh.never", "");
        assert_eq!(
            lines(&diff_over(&&view, s).unwrap()),
            [
                "- /dir/a",
                "+ /dir/c",
                "~ /edit",
                "- /gone",
                "+ /made",
                "+ /made/deep",
                "+ /made/deep/file",
                "+ /new",
            ]
        );
    }

    #[test]
    fn an_opaque_directory_replaced_the_lower_one_and_hides_all_it_had() {
        let (_layer, view) = lower();
        let scratch = tempfile::tempdir().unwrap();
        let s = scratch.path();
        put(s, "tree/.wh..wh..opq", "");
        put(s, "tree/x", "new x");
        put(s, "tree/w", "w");
        assert_eq!(
            lines(&diff_over(&&view, s).unwrap()),
            ["~ /tree", "+ /tree/w", "~ /tree/x", "- /tree/y"]
        );
    }

    #[test]
    fn a_chmod_of_a_lower_directory_and_a_file_replacing_one_are_modifications() {
        let (layer, view) = lower();
        let scratch = tempfile::tempdir().unwrap();
        let s = scratch.path();
        std::fs::create_dir(s.join("dir")).unwrap();
        let mode = std::fs::metadata(layer.path().join("dir"))
            .unwrap()
            .permissions()
            .mode();
        std::fs::set_permissions(
            s.join("dir"),
            PermissionsExt::from_mode((mode & 0o7777) ^ 0o070),
        )
        .unwrap();
        put(s, "tree", "now a file");
        // A recreated name wins over its whiteout.
        put(s, ".wh.keep", "");
        put(s, "keep", "again");
        assert_eq!(
            lines(&diff_over(&&view, s).unwrap()),
            ["~ /dir", "~ /keep", "~ /tree"]
        );
    }

    #[test]
    fn a_missing_scratch_is_an_error_naming_it() {
        let (_layer, view) = lower();
        let err = diff_over(&&view, Path::new("/nonexistent/scratch")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/scratch"), "{err}");
    }
}
