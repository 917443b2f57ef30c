//! The Linux process table, read from `/proc`.

use std::fs;

use super::{Pid, ProcessInfo, ProcessTable};

/// The host's processes, read from `/proc`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemProcessTable;

impl SystemProcessTable {
    /// The host's process table.
    pub fn new() -> Self {
        SystemProcessTable
    }
}

impl ProcessTable for SystemProcessTable {
    fn process_of(&self, task: Pid) -> Option<Pid> {
        // /proc/<tid> exists for every thread even though listings show only processes.
        let status = fs::read_to_string(format!("/proc/{task}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse().ok())
    }

    fn info(&self, pid: Pid) -> Option<ProcessInfo> {
        if pid == 0 {
            return None;
        }
        let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
        let (ppid, start_time) = parse_stat(&stat)?;
        let uid = fs::metadata(format!("/proc/{pid}"))
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))?;
        Some(ProcessInfo {
            ppid,
            start_time,
            uid,
        })
    }

    fn name(&self, pid: Pid) -> Option<String> {
        // `comm`: the executable's file name (at most 15 bytes), readable for every process,
        // unlike `/proc/<pid>/exe`.
        if pid == 0 {
            return None;
        }
        let comm = fs::read(format!("/proc/{pid}/comm")).ok()?;
        let name = comm.strip_suffix(b"\n").unwrap_or(&comm);
        Some(String::from_utf8_lossy(name).into_owned())
    }
}

/// The parent pid (field 4) and start time (field 22) of a `/proc/<pid>/stat` line, or `None`
/// for a process that has exited and waits to be reaped (state `Z` or `X`): it runs nothing
/// and cannot root a runtime. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted from the last `)`.
fn parse_stat(stat: &[u8]) -> Option<(Pid, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // Fields after the name start at 3 (state); ppid is 4, starttime is 22.
    if matches!(fields.next()?, "Z" | "X" | "x") {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let start_time = fields.nth(17)?.parse().ok()?;
    Some((ppid, start_time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_an_awkward_name() {
        let line = b"4242 (a (weird) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 0";
        assert_eq!(parse_stat(line), Some((17, 987654)));
    }

    #[test]
    fn a_zombie_is_no_process() {
        let line = b"4242 (sleep) Z 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100 0";
        assert_eq!(parse_stat(line), None);
    }

    #[test]
    fn this_process_has_its_parent() {
        let table = SystemProcessTable::new();
        let me = std::process::id();
        let info = table.info(me).expect("own process");
        assert_eq!(info.ppid, std::os::unix::process::parent_id());
        assert_eq!(table.process_of(me), Some(me));
        assert_eq!(table.info(0), None);
    }

    #[test]
    fn a_process_is_named_after_its_executable() {
        let table = SystemProcessTable::new();
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("sleep");
        // Until the child execs, it bears the name of the thread that forked it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut name = table.name(child.id());
        while name.as_deref() != Some("sleep") && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
            name = table.name(child.id());
        }
        child.kill().ok();
        child.wait().ok();
        assert_eq!(name.as_deref(), Some("sleep"));
        assert_eq!(table.name(0), None);
    }
}
