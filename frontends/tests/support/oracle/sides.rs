//! The trees operations run on: the kernel's overlayfs over the layers (the oracle), and, to
//! check the harness itself, a plain directory holding a copy of the merged layers.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use super::tree::{cpath, join, lstat, names};

/// A tree the operations run on, which can be brought back to its lower layers alone.
pub trait Side {
    /// What the reports call it.
    fn label(&self) -> &str;
    /// Where the tree is.
    fn root(&self) -> &Path;
    /// Throws every change away: the tree shows the lower layers alone again.
    fn reset(&mut self) -> Result<(), String>;

    /// The tree its changes show when read back as a layer on top of the lower ones (the
    /// scratch of an editable view registered read-only), at [`Detail::Layer`](super::tree::Detail::Layer); `None` where
    /// changes are not kept as a layer.
    fn as_layer(&mut self) -> Option<Result<BTreeMap<String, String>, String>> {
        None
    }
}

/// The kernel's overlayfs over `lowers` with an empty upper directory, mounted with
/// `redirect_dir=off,metacopy=off,index=off` (the semantics editable views promise).
pub struct Overlay {
    label: String,
    lowers: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
    mnt: PathBuf,
    mounted: bool,
}

impl Overlay {
    /// Mounts `lowers` (bottom first) under `base` (its `upper`, `work` and `mnt/`).
    pub fn new(label: &str, lowers: &[PathBuf], base: &Path) -> Result<Overlay, String> {
        let mut overlay = Overlay {
            label: label.to_string(),
            lowers: lowers.to_vec(),
            upper: base.join("upper"),
            work: base.join("work"),
            // A directory of its own, so `..` from the top of the tree holds nothing else.
            mnt: base.join("top/mnt"),
            mounted: false,
        };
        std::fs::create_dir_all(&overlay.mnt).map_err(|e| e.to_string())?;
        overlay.mount()?;
        Ok(overlay)
    }

    fn mount(&mut self) -> Result<(), String> {
        for dir in [&self.upper, &self.work] {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| format!("{dir:?}: {e}"))?;
            }
            std::fs::create_dir_all(dir).map_err(|e| format!("{dir:?}: {e}"))?;
        }
        // overlayfs lists the top lower first.
        let lowerdir: Vec<String> = self
            .lowers
            .iter()
            .rev()
            .map(|l| l.display().to_string())
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
            lowerdir.join(":"),
            self.upper.display(),
            self.work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &self.mnt,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| format!("mount -t overlay -o {options} {:?}: {e}", self.mnt))?;
        self.mounted = true;
        Ok(())
    }

    fn unmount(&mut self) -> Result<(), String> {
        if self.mounted {
            // EBUSY for a moment: most likely a child another test thread forks, holding a
            // copy of a descriptor into this mount until it execs (seen twice in whole-suite
            // runs on a loaded machine, never alone). Anything longer is a real leak, and
            // fails.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                match nix::mount::umount(&self.mnt) {
                    Err(nix::errno::Errno::EBUSY) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    result => {
                        result.map_err(|e| format!("umount {:?}: {e}", self.mnt))?;
                        break;
                    }
                }
            }
            self.mounted = false;
        }
        Ok(())
    }
}

impl Side for Overlay {
    fn label(&self) -> &str {
        &self.label
    }

    fn root(&self) -> &Path {
        &self.mnt
    }

    fn reset(&mut self) -> Result<(), String> {
        self.unmount()?;
        self.mount()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A plain directory holding a copy of a tree: a filesystem with no layers at all, which
/// the differential test must tell from overlayfs.
pub struct Copy {
    from: PathBuf,
    dir: PathBuf,
}

impl Copy {
    /// A copy of the tree at `from` (copied again at every reset) in `base/top/mnt`.
    pub fn new(from: &Path, base: &Path) -> Copy {
        std::fs::create_dir_all(base.join("top")).unwrap();
        Copy {
            from: from.to_path_buf(),
            dir: base.join("top/mnt"),
        }
    }
}

impl Side for Copy {
    fn label(&self) -> &str {
        "plain directory"
    }

    fn root(&self) -> &Path {
        &self.dir
    }

    fn reset(&mut self) -> Result<(), String> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| e.to_string())?;
        }
        copy_tree(&self.from, &self.dir)
    }
}

/// Copies the tree at `from` to `to` (files, directories, symlinks, modes and modification
/// times).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("copying {from:?}: {e}");
    let st = lstat(from).map_err(|e| err(&e))?;
    match super::tree::kind(st.st_mode) {
        'd' => {
            std::fs::create_dir(to).map_err(|e| err(&e))?;
            for (name, _) in names(from).map_err(|e| err(&e))? {
                copy_tree(&from.join(&name), &to.join(&name))?;
            }
        }
        'l' => {
            let target = std::fs::read_link(from).map_err(|e| err(&e))?;
            std::os::unix::fs::symlink(target, to).map_err(|e| err(&e))?;
        }
        _ => {
            std::fs::copy(from, to).map_err(|e| err(&e))?;
        }
    }
    if super::tree::kind(st.st_mode) != 'l' {
        let c = cpath(to);
        // SAFETY: a valid C string.
        unsafe { libc::chmod(c.as_ptr(), st.st_mode & 0o7777) };
    }
    let time = libc::timespec {
        tv_sec: st.st_mtime,
        tv_nsec: st.st_mtime_nsec,
    };
    let c = cpath(&join(to, ""));
    // SAFETY: a valid C string and two timespecs.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            [time, time].as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    Ok(())
}
