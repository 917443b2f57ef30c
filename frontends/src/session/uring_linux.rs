//! FUSE over io_uring (Linux 6.14+, with the `fuse` module's `enable_uring` switch on).
//!
//! Requests then reach the service through one io_uring queue per possible CPU, served by
//! `SCHED_BATCH` threads pinned to that CPU (see [`THREADS_PER_QUEUE`] and
//! [`schedule_as_batch`]). The kernel puts a request on the
//! queue of the CPU that made it, so it is answered there, without the cross-CPU wake-ups that
//! dominate a round trip through `read(2)` on this project's 2-vCPU machines (README,
//! "Performance").
//!
//! What the kernel expects, as libfuse's `lib/fuse_uring.c` does it and as Linux 6.18 here
//! answered:
//! - after INIT, each queue registers entries with `IORING_OP_URING_CMD` on a ring of 128-byte
//!   entries, on a descriptor of the connection's `/dev/fuse`: `FUSE_IO_URING_CMD_REGISTER`
//!   with two iovecs, a 288-byte header and a payload buffer of at least the largest request;
//! - once every queue holds an entry the kernel sends requests there. A request's completion
//!   fills the header (`fuse_in_header`, then the opcode's first argument, then the commit id
//!   and the payload's size) and the payload (the other arguments);
//! - the reply goes back in the same buffers with `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`, which
//!   also hands the entry back for the next request;
//! - FORGET, INTERRUPT and anything before the queues are ready still come through `read(2)`,
//!   so the device session's workers keep running beside the queues.
//!
//! Ending. When the connection ends (unmount of an idle mount), the kernel completes every
//! entry it holds with `ENOTCONN` and the queues end on their own, freeing their buffers. A
//! busy mount's connection outlives the unmount, so the session's stop is an eventfd each ring
//! polls: the thread then drops its ring, which cancels its entries and releases the device,
//! but the kernel may still be writing a last request into an entry it held, so those buffers
//! are leaked rather than freed (about 1 MiB per queue thread, once per busy unmount).
//!
//! A queue that ended any other way would hold the requests of its CPU forever, so a queue
//! thread that fails aborts the connection through `fusectl` (which needs root, as mounting
//! does here) and says so in the log: its callers get an error instead of hanging.

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuse_backend_rs::abi::fuse_abi::{
    AccessIn, BmapIn, CreateIn, FallocateIn, FlushIn, FsyncIn, GetattrIn, GetxattrIn, IoctlIn,
    LinkIn, LkIn, LseekIn, MkdirIn, MknodIn, Opcode, OpenIn, PollIn, ReadIn, ReleaseIn, Rename2In,
    RenameIn, SetattrIn, SetxattrIn, WriteIn,
};
use fuse_backend_rs::api::server::Server;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use vm_memory::ByteValued;

use super::message::{
    AbiBytes, IN_HEADER_LEN, InHeader, OUT_HEADER_LEN, OutHeader, answer, put_error_reply,
};
use crate::adapter::Adapter;

/// The kernel's switch for FUSE over io_uring.
const ENABLE_SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";

/// `fuse_uring_req_header`: `in_out` (the in or out header, in 128 bytes), `op_in` (the
/// opcode's first argument, in 128), then [`EntInOut`].
const HEADER_LEN: usize = ENT_IN_OUT_AT + size_of::<EntInOut>();
/// Where `op_in` starts in the header.
const OP_IN_AT: usize = 128;
/// The room `op_in` has.
const OP_IN_MAX: usize = 128;
/// Where [`EntInOut`] starts in the header.
const ENT_IN_OUT_AT: usize = OP_IN_AT + OP_IN_MAX;
/// `FUSE_IO_URING_CMD_REGISTER`.
const CMD_REGISTER: u32 = 1;
/// `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`.
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// Threads serving each queue, both pinned to the queue's CPU. The kernel hands a request to
/// an entry that is free, so while one thread waits on a layer's disk the other answers the
/// next request: readahead sends its READs from one CPU in bursts. The second thread stays on
/// the same CPU because background requests (RELEASEDIR, readahead) also hand entries back,
/// and a sync request that then lands on a thread of another CPU pays the wake-up this module
/// exists to avoid (measured: a warm walk took 35 ms that way, 16 ms pinned together; cold
/// 512 MiB reads 407 ms, against 440 with one thread and 432 reading /dev/fuse). One thread
/// with two entries would halve a warm walk's context switches, but a thread waiting on the
/// disk then holds back its CPU's other requests: four readers of cold small files took
/// 2,725 ms that way against 1,662 ms with two threads.
const THREADS_PER_QUEUE: usize = 2;
/// Entries per thread: one thread answers one request at a time.
const ENTRIES_PER_THREAD: usize = 1;
/// A queue's ring: 128-byte submissions, which URING_CMD's 80-byte commands need.
type Ring = IoUring<squeue::Entry128, cqueue::Entry>;
/// A completion as the loop keeps it: its user data and result.
type Completion = (u64, i32);

/// The user data of a ring's poll of the stop eventfd.
const STOP_TOKEN: u64 = u64::MAX;

/// `fuse_uring_ent_in_out`, the end of an entry's header: the request's commit id and the
/// size of its payload, and of the reply's.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct EntInOut {
    flags: u64,
    commit_id: u64,
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}
// SAFETY: `repr(C)` integers with no padding between them: any bytes are a valid value.
unsafe impl ByteValued for EntInOut {}

/// `fuse_uring_cmd_req`, the command of a URING_CMD submission: which request it commits (0
/// for none) and on which queue.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct CmdReq {
    flags: u64,
    commit_id: u64,
    qid: u16,
    padding: [u8; 6],
}
// SAFETY: `repr(C)` integers and bytes with no padding between them: any bytes are valid.
unsafe impl ByteValued for CmdReq {}

/// Whether the kernel takes FUSE over io_uring; the error says why not, for the log.
pub(super) fn kernel_allows() -> Result<(), String> {
    match std::fs::read_to_string(ENABLE_SWITCH) {
        Ok(value) if value.trim() == "Y" => Ok(()),
        Ok(_) => Err(format!(
            "the kernel has FUSE over io_uring switched off (`echo Y > {ENABLE_SWITCH}` as root \
             turns it on)"
        )),
        Err(err) => Err(format!(
            "this kernel has no FUSE over io_uring ({ENABLE_SWITCH}: {err}; it needs Linux 6.14 \
             or later)"
        )),
    }
}

/// Bytes of the first argument of each opcode a mount receives, which the kernel puts in
/// `op_in`; -1 for opcodes we do not take over io_uring (answered `ENOSYS`). The other
/// arguments (a name, a write's data) come in the payload. Opcodes with no header of their
/// own (LOOKUP, SYMLINK, UNLINK, RMDIR, REMOVEXATTR) have an empty one there since Linux made
/// `in_args[0]` always the header for io_uring ("fuse: make args->in_args[0] to be always the
/// header"); SETXATTR's is the short one, as SETXATTR_EXT is never asked for.
const OP_IN_LEN: [i16; 64] = {
    let mut table = [-1i16; 64];
    let known: [(Opcode, usize); 38] = [
        (Opcode::Lookup, 0),
        (Opcode::Getattr, size_of::<GetattrIn>()),
        (Opcode::Readlink, 0),
        (Opcode::Open, size_of::<OpenIn>()),
        (Opcode::Read, size_of::<ReadIn>()),
        (Opcode::Statfs, 0),
        (Opcode::Release, size_of::<ReleaseIn>()),
        (Opcode::Fsync, size_of::<FsyncIn>()),
        (Opcode::Getxattr, size_of::<GetxattrIn>()),
        (Opcode::Listxattr, size_of::<GetxattrIn>()),
        (Opcode::Flush, size_of::<FlushIn>()),
        (Opcode::Opendir, size_of::<OpenIn>()),
        (Opcode::Readdir, size_of::<ReadIn>()),
        (Opcode::Releasedir, size_of::<ReleaseIn>()),
        (Opcode::Fsyncdir, size_of::<FsyncIn>()),
        (Opcode::Getlk, size_of::<LkIn>()),
        (Opcode::Setlk, size_of::<LkIn>()),
        (Opcode::Setlkw, size_of::<LkIn>()),
        (Opcode::Access, size_of::<AccessIn>()),
        (Opcode::Bmap, size_of::<BmapIn>()),
        (Opcode::Ioctl, size_of::<IoctlIn>()),
        (Opcode::Poll, size_of::<PollIn>()),
        (Opcode::Readdirplus, size_of::<ReadIn>()),
        (Opcode::Lseek, size_of::<LseekIn>()),
        // The writes of editable views.
        (Opcode::Setattr, size_of::<SetattrIn>()),
        (Opcode::Symlink, 0),
        (Opcode::Mknod, size_of::<MknodIn>()),
        (Opcode::Mkdir, size_of::<MkdirIn>()),
        (Opcode::Unlink, 0),
        (Opcode::Rmdir, 0),
        (Opcode::Rename, size_of::<RenameIn>()),
        (Opcode::Link, size_of::<LinkIn>()),
        (Opcode::Write, size_of::<WriteIn>()),
        (Opcode::Setxattr, size_of::<SetxattrIn>()),
        (Opcode::Removexattr, 0),
        (Opcode::Create, size_of::<CreateIn>()),
        (Opcode::Fallocate, size_of::<FallocateIn>()),
        (Opcode::Rename2, size_of::<Rename2In>()),
    ];
    let mut i = 0;
    while i < known.len() {
        table[known[i].0 as usize] = known[i].1 as i16;
        i += 1;
    }
    table
};

/// The first argument's length for `opcode`, if we take it over io_uring.
fn op_in_len(opcode: u32) -> Option<usize> {
    let len = *OP_IN_LEN.get(opcode as usize)?;
    usize::try_from(len).ok()
}

/// The number of queues the kernel makes, one per *possible* CPU, online or not (the count,
/// as libfuse takes it: a CPU id past it is served by queue 0).
fn possible_cpus() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|text| cpu_count(&text))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Counts the CPUs of a kernel CPU list such as `0-3,8,10-11`.
fn cpu_count(list: &str) -> Option<usize> {
    list.trim()
        .split(',')
        .map(|range| {
            let (first, last) = range.split_once('-').unwrap_or((range, range));
            let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
            last.checked_sub(first).map(|n| n + 1)
        })
        .sum()
}

/// Requests one queue thread has answered, on a cache line of its own so threads never share
/// one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Answered(AtomicU64);

/// The count of requests a connection's queues have answered, readable from any thread.
#[derive(Debug, Clone)]
pub(super) struct Answers(Arc<[Answered]>);

impl Answers {
    /// Requests answered so far, over every queue.
    pub(super) fn total(&self) -> u64 {
        self.0
            .iter()
            .map(|count| count.0.load(Ordering::Relaxed))
            .sum()
    }
}

/// The running queues of one connection.
#[derive(Debug)]
pub(super) struct Queues {
    /// Written once to stop every queue.
    stop: Arc<OwnedFd>,
    threads: Vec<JoinHandle<()>>,
    /// One counter per thread, [`THREADS_PER_QUEUE`] per queue.
    answers: Answers,
}

/// What each queue thread reports once its entries are registered, or not: its queue, and
/// the outcome.
type Registered = (usize, Result<(), io::Error>);

impl Queues {
    /// Registers one queue per possible CPU on `device`, a descriptor of the connection, after
    /// INIT; `payload` is the largest request or reply body. `mountpoint` names the mount
    /// whose connection a failing queue aborts. Fails, leaving the kernel on `read(2)`, if
    /// any queue got no entry: the kernel uses the queues only once every one has one. A
    /// queue that got some keeps them, since the others may then already be in use.
    pub(super) fn start(
        device: &File,
        server: Arc<Server<Adapter>>,
        payload: usize,
        mountpoint: &Path,
    ) -> io::Result<Queues> {
        // SAFETY: eventfd takes no pointers; a descriptor it returns is ours to own.
        let stop = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if stop < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `stop` is a fresh descriptor nothing else owns.
        let stop = Arc::new(unsafe { OwnedFd::from_raw_fd(stop) });
        let count = possible_cpus();
        let answers = Answers(
            (0..count * THREADS_PER_QUEUE)
                .map(|_| Answered::default())
                .collect(),
        );
        let mut queues = Queues {
            stop,
            threads: Vec::new(),
            answers,
        };
        let (registered_tx, registered_rx) = mpsc::channel::<Registered>();
        for qid in 0..count {
            for nth in 0..THREADS_PER_QUEUE {
                let queue = Queue {
                    qid: u16::try_from(qid).map_err(|_| io::Error::other("too many CPUs"))?,
                    counter: qid * THREADS_PER_QUEUE + nth,
                    device: device.try_clone()?,
                    server: server.clone(),
                    payload,
                    stop: queues.stop.clone(),
                    answers: queues.answers.clone(),
                    mountpoint: mountpoint.to_path_buf(),
                };
                let registered = registered_tx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("spfs-uring-{qid}.{nth}"))
                    .spawn(move || queue.run(&registered));
                match spawned {
                    Ok(thread) => queues.threads.push(thread),
                    Err(err) => {
                        queues.stop();
                        return Err(err);
                    }
                }
            }
        }
        drop(registered_tx);
        let mut served = vec![false; count];
        let mut failure = None;
        for _ in 0..queues.threads.len() {
            match registered_rx.recv() {
                Ok((qid, Ok(()))) => served[qid] = true,
                Ok((qid, Err(err))) => {
                    tracing::warn!(qid, error = %err, "an io_uring queue thread could not register");
                    failure = Some(err);
                }
                // A thread that ended without a word registered nothing.
                Err(_) => break,
            }
        }
        if served.iter().all(|&served| served) {
            return Ok(queues);
        }
        queues.stop();
        Err(failure.unwrap_or_else(|| io::Error::other("an io_uring queue thread ended")))
    }

    /// The count of requests the queues answer.
    pub(super) fn answers(&self) -> Answers {
        self.answers.clone()
    }

    /// How many queues there are.
    pub(super) fn len(&self) -> usize {
        self.answers.0.len() / THREADS_PER_QUEUE
    }

    /// Stops every queue and waits (up to 5 s) for its thread; a thread still running then
    /// is left to end with its ring. Queues whose connection has just ended get a moment to
    /// see it first, since a queue that ends that way frees its buffers.
    pub(super) fn stop(self) {
        let deadline = Instant::now() + Duration::from_millis(100);
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to a descriptor we own.
        let written = unsafe { libc::write(self.stop.as_raw_fd(), one.as_ptr().cast(), 8) };
        if written != 8 {
            tracing::warn!(error = %io::Error::last_os_error(), "could not stop the io_uring queues");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for thread in self.threads {
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("an io_uring queue thread did not stop within 5 s");
            }
        }
    }
}

/// One queue's thread: what it needs.
struct Queue {
    qid: u16,
    /// Its counter in `answers`.
    counter: usize,
    device: File,
    server: Arc<Server<Adapter>>,
    payload: usize,
    stop: Arc<OwnedFd>,
    answers: Answers,
    mountpoint: PathBuf,
}

/// One entry's buffers. The kernel writes into them while it holds the entry, so they stay put
/// (boxed) and are freed only once it has given the entry back for good.
struct Entry {
    /// `fuse_uring_req_header`.
    header: Box<[u8; HEADER_LEN]>,
    /// Room for a reply header, then the payload buffer the kernel sees (iovec 1), so a reply
    /// composed at the start is already where the kernel reads its body.
    reply: Box<[u8]>,
    iov: Box<[libc::iovec; 2]>,
    /// What was last submitted for it, to submit again if the kernel asks (`EINTR`, `EAGAIN`).
    last: (u32, u64),
}

impl Entry {
    fn new(payload: usize) -> Entry {
        let mut header = Box::new([0u8; HEADER_LEN]);
        let mut reply = vec![0u8; OUT_HEADER_LEN + payload].into_boxed_slice();
        let iov = Box::new([
            libc::iovec {
                iov_base: header.as_mut_ptr().cast(),
                iov_len: HEADER_LEN,
            },
            libc::iovec {
                iov_base: reply[OUT_HEADER_LEN..].as_mut_ptr().cast(),
                iov_len: payload,
            },
        ]);
        Entry {
            header,
            reply,
            iov,
            last: (CMD_REGISTER, 0),
        }
    }

    /// The request's FUSE header, where the kernel put it.
    fn in_header(&self) -> InHeader {
        InHeader::read_from(&self.header[..]).unwrap_or_default()
    }

    /// The commit id and payload size, where the kernel put them.
    fn ent_in_out(&self) -> EntInOut {
        EntInOut::read_from(&self.header[ENT_IN_OUT_AT..]).unwrap_or_default()
    }

    /// The submission for `command` on queue `qid` of `device`, tagged with `slot`.
    fn submission(&self, device: RawFd, qid: u16, slot: usize) -> squeue::Entry128 {
        let (command, commit_id) = self.last;
        let mut cmd = [0u8; 80];
        let req = CmdReq {
            commit_id,
            qid,
            ..CmdReq::default()
        };
        req.write_to(&mut cmd);
        let built = opcode::UringCmd80::new(types::Fd(device), command)
            .cmd(cmd)
            .addr(Some(self.iov.as_ptr() as u64))
            .build()
            .user_data(slot as u64);
        // The kernel reads the iovec count from the entry's `len` (bytes 24-27), which
        // io-uring 0.7 cannot set for a URING_CMD.
        // SAFETY: `Entry128` is `repr(C)`, 128 bytes of plain integers and unions of them.
        let mut raw: [u8; 128] = unsafe { std::mem::transmute(built) };
        raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
        // SAFETY: as above; any bytes are a valid entry.
        unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
    }
}

/// Why a queue's loop ended.
enum Ended {
    /// The connection ended: the kernel gave every entry back.
    Connection,
    /// The session stopped it; the kernel may still hold entries.
    Stopped,
}

/// What one completion asks for next.
enum Step {
    /// Submit this entry again: answered (commit and fetch) or interrupted (the same again).
    Resubmit(usize),
    /// Nothing: the kernel gave the entry back for good.
    Retired,
    /// The loop ends.
    End(Ended),
}

impl Queue {
    /// Pins the thread, registers, reports, then serves until the connection ends or the
    /// session stops the queue.
    fn run(self, registered: &mpsc::Sender<Registered>) {
        pin_to_cpu(usize::from(self.qid));
        schedule_as_batch();
        let mut entries: Vec<Entry> = (0..ENTRIES_PER_THREAD)
            .map(|_| Entry::new(self.payload))
            .collect();
        let (mut ring, early, held) = match self.register(&entries) {
            Ok(registered) => registered,
            Err(err) => {
                // Nothing was left with the kernel: the entries may go.
                let _ = registered.send((usize::from(self.qid), Err(err)));
                return;
            }
        };
        let _ = registered.send((usize::from(self.qid), Ok(())));
        match self.serve(&mut ring, &mut entries, early, held) {
            Ok(Ended::Connection) => {
                tracing::debug!(qid = self.qid, "io_uring queue ended with its connection");
            }
            Ok(Ended::Stopped) => {
                drop(ring);
                std::mem::forget(entries);
            }
            Err(err) => {
                tracing::error!(
                    qid = self.qid,
                    error = %err,
                    "an io_uring queue failed; aborting the FUSE connection so that its \
                     callers fail instead of waiting forever"
                );
                if let Err(err) = abort_connection(&self.mountpoint) {
                    tracing::error!(
                        mountpoint = %self.mountpoint.display(),
                        error = %err,
                        "could not abort the FUSE connection; requests on the failed queue's \
                         CPU will wait until the service stops"
                    );
                }
                drop(ring);
                std::mem::forget(entries);
            }
        }
    }

    /// Builds the ring and registers every entry, and the stop poll. A registration the
    /// kernel refuses completes at once, so it shows right after the submit; returns the
    /// ring, the completions already there (requests, maybe) and how many entries the kernel
    /// holds. Fails only if it took none: a queue with one entry still serves.
    fn register(&self, entries: &[Entry]) -> io::Result<(Ring, Vec<Completion>, usize)> {
        let mut ring = Ring::builder().build((ENTRIES_PER_THREAD + 1).next_power_of_two() as u32)?;
        let device = self.device.as_raw_fd();
        let poll = opcode::PollAdd::new(types::Fd(self.stop.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(STOP_TOKEN);
        {
            let mut submission = ring.submission();
            for (slot, entry) in entries.iter().enumerate() {
                // SAFETY: the entry's buffers outlive the ring's use of them (see `Entry`).
                unsafe { submission.push(&entry.submission(device, self.qid, slot)) }
                    .map_err(|_| io::Error::other("the ring is full"))?;
            }
            // SAFETY: the eventfd outlives the ring (the queue holds it).
            unsafe { submission.push(&poll.into()) }
                .map_err(|_| io::Error::other("the ring is full"))?;
        }
        ring.submit()?;
        let mut early = Vec::new();
        let mut refusals = Vec::new();
        for done in ring.completion() {
            if done.result() < 0 && done.user_data() != STOP_TOKEN {
                refusals.push(io::Error::from_raw_os_error(-done.result()));
            } else {
                early.push((done.user_data(), done.result()));
            }
        }
        let held = entries.len() - refusals.len();
        match refusals.pop() {
            Some(err) if held == 0 => Err(io::Error::other(format!(
                "the kernel refused queue {}'s registration: {err}",
                self.qid
            ))),
            Some(err) => {
                tracing::warn!(qid = self.qid, error = %err, held, "the kernel refused an io_uring entry");
                Ok((ring, early, held))
            }
            None => Ok((ring, early, held)),
        }
    }

    /// Serves `entries`, `held` of which the kernel holds, starting with the completions
    /// `early` that registering found.
    fn serve(
        &self,
        ring: &mut Ring,
        entries: &mut [Entry],
        early: Vec<Completion>,
        mut held: usize,
    ) -> io::Result<Ended> {
        let device = self.device.as_raw_fd();
        let mut request = vec![0u8; IN_HEADER_LEN + OP_IN_MAX + self.payload];
        let sink = File::options().write(true).open("/dev/null")?;
        let (submitter, mut submission, mut completion) = ring.split();
        let mut pending = early;
        loop {
            for (token, result) in pending.drain(..) {
                match self.complete(token, result, entries, &mut request, &sink, &mut held)? {
                    Step::Resubmit(slot) => {
                        let next = entries[slot].submission(device, self.qid, slot);
                        // SAFETY: the entry's buffers outlive the ring's use of them.
                        unsafe { submission.push(&next) }
                            .map_err(|_| io::Error::other("the ring is full"))?;
                    }
                    Step::Retired => {}
                    Step::End(ended) => return Ok(ended),
                }
            }
            submission.sync();
            match submitter.submit_and_wait(1) {
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
            completion.sync();
            pending.extend((&mut completion).map(|done| (done.user_data(), done.result())));
        }
    }

    /// Handles one completion: `token` names the entry (or the stop poll), `result` is the
    /// kernel's.
    fn complete(
        &self,
        token: u64,
        result: i32,
        entries: &mut [Entry],
        request: &mut [u8],
        sink: &File,
        held: &mut usize,
    ) -> io::Result<Step> {
        if token == STOP_TOKEN {
            return Ok(Step::End(Ended::Stopped));
        }
        let slot = usize::try_from(token)
            .ok()
            .filter(|&slot| slot < entries.len())
            .ok_or_else(|| io::Error::other(format!("a completion for no entry ({token})")))?;
        let entry = &mut entries[slot];
        match result {
            0.. => {
                let commit_id = self.answer(entry, request, sink)?;
                self.answers.0[self.counter]
                    .0
                    .fetch_add(1, Ordering::Relaxed);
                entry.last = (CMD_COMMIT_AND_FETCH, commit_id);
                Ok(Step::Resubmit(slot))
            }
            // Interrupted before it took: the same submission again.
            _ if result == -libc::EINTR || result == -libc::EAGAIN => Ok(Step::Resubmit(slot)),
            _ if result == -libc::ENOTCONN => {
                *held = held.saturating_sub(1);
                if *held == 0 {
                    Ok(Step::End(Ended::Connection))
                } else {
                    Ok(Step::Retired)
                }
            }
            _ => Err(io::Error::from_raw_os_error(-result)),
        }
    }

    /// Answers the request in `entry`, leaving the reply's header and size where the kernel
    /// reads them; returns the request's commit id.
    fn answer(&self, entry: &mut Entry, request: &mut [u8], sink: &File) -> io::Result<u64> {
        let mut in_header = entry.in_header();
        let (opcode, unique) = (in_header.opcode, in_header.unique);
        let mut ent_in_out = entry.ent_in_out();
        let commit_id = ent_in_out.commit_id;
        if commit_id == 0 {
            // The kernel could never match a reply to it.
            return Err(io::Error::other(format!(
                "request {unique} (opcode {opcode}) came without a commit id"
            )));
        }
        let payload_len = ent_in_out.payload_sz as usize;
        let reply_len = match op_in_len(opcode) {
            Some(op_len) if payload_len <= self.payload => {
                // fuse-backend-rs parses a request as read(2) returns it: header, first
                // argument, the rest.
                let total = IN_HEADER_LEN + op_len + payload_len;
                in_header.len = total as u32;
                in_header.write_to(request);
                let rest = &mut request[IN_HEADER_LEN..];
                rest[..op_len].copy_from_slice(&entry.header[OP_IN_AT..OP_IN_AT + op_len]);
                rest[op_len..op_len + payload_len]
                    .copy_from_slice(&entry.reply[OUT_HEADER_LEN..OUT_HEADER_LEN + payload_len]);
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    answer(&self.server, sink, &mut request[..total], &mut entry.reply)
                }))
                .unwrap_or_else(|_| {
                    tracing::error!(opcode, unique, "answering a request panicked");
                    0
                })
            }
            _ => {
                tracing::debug!(opcode, unique, "an opcode we do not take over io_uring");
                put_error_reply(&mut entry.reply, unique, libc::ENOSYS)
            }
        };
        // Every request that came this way waits for a commit: answer one without a reply.
        let reply_len = if reply_len < OUT_HEADER_LEN {
            put_error_reply(&mut entry.reply, unique, libc::EIO)
        } else {
            reply_len
        };
        let out_header = OutHeader::read_from(&entry.reply).unwrap_or_default();
        out_header.write_to(&mut entry.header[..]);
        ent_in_out.payload_sz = (reply_len - OUT_HEADER_LEN) as u32;
        ent_in_out.write_to(&mut entry.header[ENT_IN_OUT_AT..]);
        Ok(commit_id)
    }
}

/// Keeps the calling thread on CPU `cpu`. A CPU the service may not use (a cpuset) leaves the
/// thread where it is: it still serves.
fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    let pinned = set
        .set(cpu)
        .and_then(|()| nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set));
    if let Err(err) = pinned {
        tracing::debug!(cpu, error = %err, "io_uring queue thread left unpinned");
    }
}

/// Makes the calling thread `SCHED_BATCH`: same CPU share, but its wake-ups never preempt the
/// running task. A background request (RELEASEDIR, RELEASE, a readahead READ) wakes a queue
/// thread on the CPU of a caller that keeps running; under `SCHED_OTHER` the thread preempts
/// it there and then, and the caller pays two extra context switches per request. A sync
/// request is not delayed: its caller sleeps right after queueing it. Measured, interleaved
/// medians of 31-41: a warm walk 13.8-14.2 ms against 15.1 ms, 2.9 context switches per
/// directory against 3.5; warm `lstat`, cold reads and a loaded machine unchanged.
fn schedule_as_batch() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread, and `param` is a valid sched_param; SCHED_BATCH
    // with priority 0 needs no privilege.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        let err = io::Error::last_os_error();
        tracing::debug!(error = %err, "io_uring queue thread left SCHED_OTHER");
    }
}

/// Where `fusectl` lists the kernel's FUSE connections.
const CONNECTIONS: &str = "/sys/fs/fuse/connections";

/// Aborts the FUSE connection of the mount at `mountpoint` through `fusectl`
/// (`/sys/fs/fuse/connections/<device>/abort`), mounting `fusectl` there first if nothing has
/// (systemd mounts it at boot; a bare VM or container may not). Needs root.
fn abort_connection(mountpoint: &Path) -> io::Result<()> {
    let (major, minor) = crate::platform::mount_device(mountpoint)?.ok_or_else(|| {
        io::Error::other(format!(
            "{} is not in the mount table",
            mountpoint.display()
        ))
    })?;
    // The directory is named after the kernel's own encoding of the device number.
    let connection = (u64::from(major) << 20) | u64::from(minor);
    let abort = PathBuf::from(format!("{CONNECTIONS}/{connection}/abort"));
    if !abort.exists() && !crate::platform::in_mount_table(Path::new(CONNECTIONS)) {
        nix::mount::mount(
            Some("fusectl"),
            CONNECTIONS,
            Some("fusectl"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| io::Error::other(format!("cannot mount fusectl on {CONNECTIONS}: {e}")))?;
    }
    std::fs::write(&abort, "1")
        .map_err(|e| io::Error::other(format!("cannot write {}: {e}", abort.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{Session, SessionConfig, Transport, testing};
    use spfs_testkit::require_fuse;

    /// What a failing queue does to its connection, on a real mount: afterwards a caller gets
    /// an error at once, where it would otherwise wait for the dead queue.
    #[test]
    fn aborting_a_connection_fails_its_callers_instead_of_hanging() {
        if !require_fuse() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mountpoint = tmp.path().join("mnt");
        let session = Session::mount(
            testing::tool_vfs(tmp.path()),
            &SessionConfig {
                io_uring: false,
                ..testing::session_config(mountpoint.clone(), Transport::Device)
            },
        )
        .unwrap();
        let mountpoint = mountpoint.canonicalize().unwrap();
        assert_eq!(std::fs::read(mountpoint.join("bin/tool")).unwrap(), b"tool");
        abort_connection(&mountpoint).unwrap();
        let err = std::fs::read_dir(mountpoint.join("bin")).unwrap_err();
        assert!(
            crate::mountpoint::is_stale_error(&err),
            "after the abort: {err}"
        );
        // A dead connection's mount is still detached when its session ends.
        drop(session);
        assert!(
            !crate::platform::in_mount_table(&mountpoint),
            "the aborted mount was left behind"
        );
    }

    /// `<linux/fuse.h>`: `fuse_uring_req_header` is 288 bytes, its commit id at 264 and the
    /// payload's size at 272; `fuse_uring_cmd_req` has the commit id at 8, the queue at 16.
    #[test]
    fn io_uring_headers_have_the_kernel_abi_layout() {
        assert_eq!(HEADER_LEN, 288);
        let mut header = [0u8; HEADER_LEN];
        header[264..272].copy_from_slice(&9u64.to_ne_bytes());
        header[272..276].copy_from_slice(&300u32.to_ne_bytes());
        let ent = EntInOut::read_from(&header[ENT_IN_OUT_AT..]).unwrap();
        assert_eq!((ent.commit_id, ent.payload_sz), (9, 300));

        let mut cmd = [0u8; 80];
        let req = CmdReq {
            commit_id: 9,
            qid: 3,
            ..CmdReq::default()
        };
        assert_eq!(req.write_to(&mut cmd), Some(24));
        assert_eq!(cmd[8..16], 9u64.to_ne_bytes());
        assert_eq!(cmd[16..18], 3u16.to_ne_bytes());
    }

    #[test]
    fn cpu_lists_count_every_cpu_in_them() {
        assert_eq!(cpu_count("0-1\n"), Some(2));
        assert_eq!(cpu_count("0"), Some(1));
        assert_eq!(cpu_count("0-3,8,10-11"), Some(7));
        assert_eq!(cpu_count("3-1"), None);
        assert_eq!(cpu_count("x"), None);
    }

    #[test]
    fn first_arguments_have_the_kernel_abi_sizes() {
        assert_eq!(op_in_len(Opcode::Lookup as u32), Some(0));
        assert_eq!(op_in_len(Opcode::Getattr as u32), Some(16));
        assert_eq!(op_in_len(Opcode::Read as u32), Some(40));
        assert_eq!(op_in_len(Opcode::Release as u32), Some(24));
        assert_eq!(op_in_len(Opcode::Getlk as u32), Some(48));
        // The writes of editable views, as Linux's `fuse_*_in` structs are sized.
        assert_eq!(op_in_len(Opcode::Write as u32), Some(40));
        assert_eq!(op_in_len(Opcode::Setattr as u32), Some(88));
        assert_eq!(op_in_len(Opcode::Create as u32), Some(16));
        assert_eq!(op_in_len(Opcode::Mknod as u32), Some(16));
        assert_eq!(op_in_len(Opcode::Mkdir as u32), Some(8));
        assert_eq!(op_in_len(Opcode::Rename as u32), Some(8));
        assert_eq!(op_in_len(Opcode::Rename2 as u32), Some(16));
        assert_eq!(op_in_len(Opcode::Link as u32), Some(8));
        assert_eq!(op_in_len(Opcode::Setxattr as u32), Some(8));
        assert_eq!(op_in_len(Opcode::Fallocate as u32), Some(32));
        for headerless in [
            Opcode::Symlink,
            Opcode::Unlink,
            Opcode::Rmdir,
            Opcode::Removexattr,
        ] {
            assert_eq!(op_in_len(headerless as u32), Some(0), "{headerless:?}");
        }
        // Not taken: 7 is no opcode.
        assert_eq!(op_in_len(Opcode::Init as u32), None);
        assert_eq!(op_in_len(7), None);
        assert_eq!(op_in_len(u32::MAX), None);
    }
}
