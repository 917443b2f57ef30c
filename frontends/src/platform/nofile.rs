//! The open-file limit. A service started by launchd gets a soft `RLIMIT_NOFILE` of 256, which
//! a few runtimes with open files, their volumes and the FUSE connections soon use up; the
//! hard limit is far higher, and any process may raise its soft limit up to it. What differs per
//! platform is only the kernel's own ceiling ([`imp::open_files_ceiling`]).

use std::io;

use super::imp;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit, or to the kernel's ceiling
/// where that is lower (macOS refuses a soft limit above `kern.maxfilesperproc`, Linux one
/// above `fs.nr_open`). Never lowers it. Returns the soft limit now in force, and logs what it
/// did, so the service calls it at start and goes on whatever it says.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let raised = raise();
    match &raised {
        Ok((before, after)) if after > before => {
            tracing::info!(before, after, "raised the soft open-file limit")
        }
        Ok((before, _)) => tracing::debug!(limit = before, "the open-file limit stays"),
        Err(err) => tracing::warn!(error = %err, "could not raise the open-file limit"),
    }
    raised.map(|(_, after)| after)
}

/// The soft limit before and after raising it.
fn raise() -> io::Result<(u64, u64)> {
    let limit = get()?;
    let (soft, hard) = (limit.rlim_cur as u64, limit.rlim_max as u64);
    let target = imp::open_files_ceiling().map_or(hard, |ceiling| hard.min(ceiling));
    if target <= soft {
        return Ok((soft, soft));
    }
    set(libc::rlimit {
        rlim_cur: target as libc::rlim_t,
        rlim_max: limit.rlim_max,
    })?;
    Ok((soft, target))
}

fn get() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

fn set(limit: libc::rlimit) -> io::Result<()> {
    // SAFETY: setrlimit only reads the struct, which outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the child runs: it lowers its own soft limit to launchd's 256 and raises it again.
    const CHILD: &str = "SPFS_TEST_NOFILE_CHILD";

    /// The check itself, in a child process of its own: lowering the limit here would starve
    /// the tests running beside it.
    #[test]
    fn nofile_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let hard = get().unwrap().rlim_max;
        set(libc::rlimit {
            rlim_cur: 256,
            rlim_max: hard,
        })
        .unwrap();
        let expected = imp::open_files_ceiling().map_or(hard as u64, |c| (hard as u64).min(c));
        assert_eq!(raise_open_file_limit().unwrap(), expected);
        assert_eq!(get().unwrap().rlim_cur as u64, expected);
        assert_eq!(
            get().unwrap().rlim_max,
            hard,
            "the hard limit is left alone"
        );
        assert!(
            expected > 256,
            "this host's hard limit is no higher than launchd's soft one"
        );
        // Never lowered: a second call changes nothing.
        assert_eq!(raise_open_file_limit().unwrap(), expected);
    }

    /// The service starts with launchd's soft limit of 256 and leaves with its hard limit.
    #[test]
    fn a_lowered_soft_open_file_limit_is_raised_to_the_hard_one() {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "platform::nofile::tests::nofile_child"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "the child's check failed: {}",
            String::from_utf8_lossy(&child.stdout)
        );
    }
}
