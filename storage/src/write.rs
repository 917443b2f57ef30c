//! Writing into an spfs repository (issue 17). This first piece is only the tree a commit
//! hands the writer; the writer itself comes with helper STORE's branch.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
