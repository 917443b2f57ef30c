//! The macOS process table: `proc_pidinfo(PROC_PIDT_SHORTBSDINFO)` for the parent and owner
//! (it works for other users' processes, unlike `PROC_PIDTBSDINFO`), and
//! `sysctl(KERN_PROC_PID)` for the start time; `proc_pidpath`, else `proc_name`, for the
//! executable name `status` reports.

use std::mem;

use super::{Pid, ProcessInfo, ProcessTable};

/// The host's processes, read through libproc and sysctl.
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
        // macFUSE reports the calling process, not a thread.
        Some(task)
    }

    fn info(&self, pid: Pid) -> Option<ProcessInfo> {
        if pid == 0 {
            return None;
        }
        let short = short_bsd_info(pid)?;
        // An exited process waiting to be reaped runs nothing and cannot root a runtime.
        if short.pbsi_status == libc::SZOMB {
            return None;
        }
        Some(ProcessInfo {
            ppid: short.pbsi_ppid,
            start_time: start_time(pid)?,
            uid: short.pbsi_uid,
        })
    }

    fn name(&self, pid: Pid) -> Option<String> {
        if pid == 0 {
            return None;
        }
        // The path's file name is whole; `proc_name` (`p_comm`) is cut at 16 bytes, but it
        // answers where the path is refused (another user's process, to a non-root service).
        let mut path = [0u8; libc::PROC_PIDPATHINFO_MAXSIZE as usize];
        // SAFETY: the buffer is writable for its whole length, which is what we pass.
        let len = unsafe {
            libc::proc_pidpath(
                pid as libc::c_int,
                path.as_mut_ptr().cast(),
                path.len() as u32,
            )
        };
        if let Some(path) = usize::try_from(len).ok().and_then(|len| path.get(..len))
            && let Some(name) = path.rsplit(|&b| b == b'/').next()
            && !name.is_empty()
        {
            return Some(String::from_utf8_lossy(name).into_owned());
        }
        let mut comm = [0u8; 2 * libc::MAXCOMLEN + 1];
        // SAFETY: the buffer is writable for its whole length, which is what we pass.
        let len = unsafe {
            libc::proc_name(
                pid as libc::c_int,
                comm.as_mut_ptr().cast(),
                comm.len() as u32,
            )
        };
        let name = comm.get(..usize::try_from(len).ok()?)?;
        (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
    }
}

fn short_bsd_info(pid: Pid) -> Option<libc::proc_bsdshortinfo> {
    // SAFETY: proc_bsdshortinfo is plain old data, so all-zero bytes are a valid value.
    let mut info: libc::proc_bsdshortinfo = unsafe { mem::zeroed() };
    let size = mem::size_of::<libc::proc_bsdshortinfo>() as libc::c_int;
    // SAFETY: the buffer is a valid, writable proc_bsdshortinfo of exactly `size` bytes.
    let written = unsafe {
        libc::proc_pidinfo(
            pid as libc::c_int,
            libc::PROC_PIDT_SHORTBSDINFO,
            0,
            (&mut info as *mut libc::proc_bsdshortinfo).cast(),
            size,
        )
    };
    (written == size).then_some(info)
}

/// The start time of `pid` in microseconds since the epoch. `kinfo_proc` begins with
/// `kp_proc.p_un.__p_starttime`, a `timeval`, so only the first 16 bytes of the reply are read
/// and no other part of the struct's layout is assumed.
fn start_time(pid: Pid) -> Option<u64> {
    // kinfo_proc is 648 bytes on 64-bit macOS; leave room in case it grows.
    let mut buf = [0u8; 1024];
    let mut len: libc::size_t = buf.len();
    let mut mib = [
        libc::CTL_KERN,
        libc::KERN_PROC,
        libc::KERN_PROC_PID,
        pid as libc::c_int,
    ];
    // SAFETY: mib has 4 valid entries; buf is writable for `len` bytes and sysctl updates `len`
    // to the number of bytes it wrote.
    let rc = unsafe {
        libc::sysctl(
            mib.as_mut_ptr(),
            4,
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 || len < 16 {
        // len is 0 when no such process exists.
        return None;
    }
    let secs = i64::from_ne_bytes(buf[0..8].try_into().ok()?);
    let micros = i32::from_ne_bytes(buf[8..12].try_into().ok()?);
    Some(
        (secs as u64)
            .wrapping_mul(1_000_000)
            .wrapping_add(micros as u64),
    )
}
