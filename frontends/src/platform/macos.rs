//! macOS: stale FUSE mounts answer `ENXIO` ("Device not configured"); clear them with
//! `umount -f`, then `diskutil unmount force`.

use std::io;
use std::path::Path;
use std::process::Command;

/// Whether a `stat` error means a FUSE mount whose server is gone.
pub fn is_stale_error(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENXIO) | Some(libc::ENOTCONN))
}

/// Force-unmounts whatever is mounted at `path`.
pub fn force_unmount(path: &Path) -> io::Result<()> {
    let attempts: [&[&str]; 2] = [&["umount", "-f"], &["diskutil", "unmount", "force"]];
    let mut last = io::Error::other("no unmount command succeeded");
    for attempt in attempts {
        match Command::new(attempt[0])
            .args(&attempt[1..])
            .arg(path)
            .output()
        {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => {
                last = io::Error::other(format!(
                    "{} said: {}",
                    attempt.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}
