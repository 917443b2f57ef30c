//! How our own sessions (macFUSE's device, FUSE-T's socket) move FUSE messages: a connection
//! that reads and writes bytes, framed per message or by each header's length, and the worker
//! threads that serve it, so Linux tests drive both through socket pairs.
//!
//! Each request is answered by [`answer`], into a buffer of ours, and the whole reply is then
//! sent by [`Connection::send`]: `fuse-backend-rs`'s writer would send each reply to a file
//! descriptor with no lock, fine for a kernel device, wrong for FUSE-T's stream socket, where
//! replies from several workers may interleave (libfuse-t serialises its sends for that
//! reason).
//!
//! A connection ends, and every worker returns, when the peer closes it (EOF), when the device
//! says the file system is gone (`ENODEV`), or on any other read error: nothing ever retries a
//! dead connection (fuse-backend-rs 0.14's FUSE-T channel spins on EOF).
//!
//! A request longer than the buffer is a different matter on each. The macFUSE kext marks the
//! whole mount dead (`ENODEV`) when a device read's buffer is too small for the next message
//! (osxfuse/kext `fuse_device.c`), so the device session's buffers hold the largest message it
//! can send. On a stream the header says how long the request is before any of it is read:
//! one that cannot fit is answered with an error and its body skipped, and the session goes
//! on.

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuse_backend_rs::api::server::Server;

use super::message::{
    AbiBytes, IN_HEADER_LEN, InHeader, answer, expects_reply, put_error_reply, write_message,
};
use crate::adapter::Adapter;

/// How requests are delimited on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Each read returns one whole request and each write must carry one whole reply: a FUSE
    /// device such as `/dev/macfuseN`.
    Message,
    /// A byte stream: a request is as long as its header says (FUSE-T's socket).
    Stream,
}

/// What the answer to a request that could not be read carries: the server never saw it.
const UNREADABLE: i32 = libc::EIO;

/// What one read of a connection gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Received {
    /// A whole request of this many bytes at the start of the buffer.
    Request(usize),
    /// A stream request of `len` bytes, longer than the buffer: its header is at the start of
    /// the buffer and its body has been skipped.
    TooLong {
        /// The length its header claims.
        len: usize,
    },
}

/// One FUSE connection shared by the workers.
#[derive(Debug)]
pub(crate) struct Connection<S> {
    io: S,
    framing: Framing,
    /// One reader at a time: a stream request is read in two parts, and on a device only one
    /// thread then sleeps in the kernel, which is the one a dying device wakes up.
    read_lock: Mutex<()>,
    /// One sender at a time on a stream, so replies never interleave.
    send_lock: Mutex<()>,
    closed: AtomicBool,
}

impl<S> Connection<S>
where
    for<'a> &'a S: Read + Write,
{
    /// A connection over `io`.
    pub(crate) fn new(io: S, framing: Framing) -> Connection<S> {
        Connection {
            io,
            framing,
            read_lock: Mutex::new(()),
            send_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
        }
    }

    /// The underlying socket or device.
    pub(crate) fn io(&self) -> &S {
        &self.io
    }

    /// Reads the next request into `buf`; `Ok(None)` once the connection has ended.
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        let _reading = self
            .read_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        let result = match self.framing {
            Framing::Message => read_message(&self.io, buf).map(|n| n.map(Received::Request)),
            Framing::Stream => read_framed(&self.io, buf),
        };
        if !matches!(result, Ok(Some(_))) {
            self.closed.store(true, Ordering::Release);
        }
        result
    }

    /// Sends one whole reply (or notification).
    pub(crate) fn send(&self, reply: &[u8]) -> io::Result<()> {
        let mut io = &self.io;
        match self.framing {
            Framing::Message => write_message(io, reply),
            Framing::Stream => {
                let _sending = self
                    .send_lock
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                io.write_all(reply)
            }
        }
    }
}

/// Notifications go the way replies go: one write on a device, under the send lock on a
/// stream (libfuse-t serialises them with its replies, `fuse_kern_chan.c`).
impl<S> crate::invalidate::NotifyChannel for Connection<S>
where
    S: Send + Sync,
    for<'a> &'a S: Read + Write,
{
    fn notify(&self, message: &[u8]) -> io::Result<()> {
        self.send(message)
    }
}

/// One read, one request. `ENOENT` means the kernel withdrew an interrupted request (libfuse
/// reads again); `ENODEV` means the file system was unmounted.
pub(super) fn read_message(mut io: impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match io.read(buf) {
            Ok(0) => return Ok(None),
            Ok(n) => return Ok(Some(n)),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {}
            Err(err) if err.raw_os_error() == Some(libc::ENODEV) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn fill(mut io: impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match io.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(got)
}

/// A header, then as many bytes as it says. EOF before a header is the peer's clean close;
/// EOF inside a request, or a length shorter than a header, loses the framing for good. A
/// request longer than `buf` keeps it: its body is read and dropped, and the caller answers it.
fn read_framed(mut io: impl Read, buf: &mut [u8]) -> io::Result<Option<Received>> {
    if buf.len() < IN_HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "request buffer smaller than a header",
        ));
    }
    match fill(&mut io, &mut buf[..IN_HEADER_LEN])? {
        0 => return Ok(None),
        IN_HEADER_LEN => {}
        got => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the connection closed {got} bytes into a request header"),
            ));
        }
    }
    let len = InHeader::read_from(buf).map_or(0, |header| header.len as usize);
    if len < IN_HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a request claims {len} bytes, less than its {IN_HEADER_LEN}-byte header"),
        ));
    }
    let want = (len - IN_HEADER_LEN) as u64;
    let body = if len > buf.len() {
        io::copy(&mut (&mut io).take(want), &mut io::sink())?
    } else {
        fill(&mut io, &mut buf[IN_HEADER_LEN..len])? as u64
    };
    if body != want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the connection closed inside a request of {len} bytes"),
        ));
    }
    Ok(Some(if len > buf.len() {
        Received::TooLong { len }
    } else {
        Received::Request(len)
    }))
}

/// One worker: answers requests until the connection ends.
fn serve<S>(
    worker: usize,
    connection: &Connection<S>,
    server: &Server<Adapter>,
    sink: &File,
    bufsize: usize,
) where
    for<'a> &'a S: Read + Write,
{
    let mut request = vec![0u8; bufsize];
    let mut reply = vec![0u8; bufsize];
    loop {
        let len = match connection.receive(&mut request) {
            Ok(Some(Received::Request(len))) => len,
            Ok(Some(Received::TooLong { len })) => {
                let Some(InHeader { opcode, unique, .. }) = InHeader::read_from(&request) else {
                    continue;
                };
                tracing::warn!(
                    worker,
                    opcode,
                    unique,
                    len,
                    buffer = bufsize,
                    "a request longer than the buffer is refused"
                );
                let reply_len = if expects_reply(opcode) {
                    put_error_reply(&mut reply, unique, UNREADABLE)
                } else {
                    0
                };
                if reply_len > 0
                    && let Err(err) = connection.send(&reply[..reply_len])
                {
                    tracing::debug!(worker, error = %err, "could not send a reply");
                }
                continue;
            }
            Ok(None) => {
                tracing::debug!(worker, "FUSE connection closed; worker stops");
                return;
            }
            Err(err) => {
                tracing::error!(worker, error = %err, "FUSE connection failed; worker stops");
                return;
            }
        };
        if len < IN_HEADER_LEN {
            tracing::warn!(worker, len, "ignoring a request shorter than its header");
            continue;
        }
        let reply_len = answer(server, sink, &mut request[..len], &mut reply);
        if reply_len == 0 {
            continue;
        }
        if let Err(err) = connection.send(&reply[..reply_len]) {
            // A reply to an interrupted request has nowhere to go on a device; on a stream a
            // failed send means the peer is gone, and the next read says so.
            tracing::debug!(worker, error = %err, "could not send a reply");
        }
    }
}

/// The worker threads of one connection.
#[derive(Debug)]
pub(crate) struct Workers {
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `threads` workers answering `connection` with `server`, each with request and
    /// reply buffers of `bufsize` bytes.
    pub(crate) fn start<S>(
        connection: Arc<Connection<S>>,
        server: Arc<Server<Adapter>>,
        threads: usize,
        bufsize: usize,
    ) -> io::Result<Workers>
    where
        S: Send + Sync + 'static,
        for<'a> &'a S: Read + Write,
    {
        let sink = Arc::new(File::options().write(true).open("/dev/null")?);
        let mut workers = Workers::none();
        for worker in 0..threads.max(1) {
            let (connection, server, sink) = (connection.clone(), server.clone(), sink.clone());
            let handle = std::thread::Builder::new()
                .name(format!("spfs-fuse-{worker}"))
                .spawn(move || serve(worker, &connection, &server, &sink, bufsize));
            match handle {
                Ok(handle) => workers.handles.push(handle),
                Err(err) => {
                    // The ones started end with the connection, which the caller now drops.
                    return Err(err);
                }
            }
        }
        Ok(workers)
    }

    /// No workers (for tearing down a session whose workers never started).
    pub(crate) fn none() -> Workers {
        Workers {
            handles: Vec::new(),
        }
    }

    /// Whether every worker has returned.
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn finished(&self) -> bool {
        self.handles.iter().all(|h| h.is_finished())
    }

    /// Waits up to `timeout` for every worker to return; says whether all did. Workers still
    /// running are left to end with their connection.
    pub(crate) fn join(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.handles.iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut all = true;
        for handle in self.handles {
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                all = false;
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{body, init_body, reply, request, sample_server};
    use super::*;
    use std::os::unix::net::UnixStream;

    use super::super::message::OUT_HEADER_LEN;
    use fuse_backend_rs::abi::fuse_abi::{
        AttrOut, EntryOut, ForgetIn, GetattrIn, InitOut, Opcode, OpenIn, OpenOut, ReadIn,
    };
    use spfs_router::ROOT;
    use vm_memory::ByteValued;

    const BUF: usize = 256 * 1024 + 4096;

    fn start(
        layer: &std::path::Path,
        threads: usize,
    ) -> (UnixStream, Workers, Arc<Connection<UnixStream>>) {
        let (ours, peer) = UnixStream::pair().unwrap();
        let connection = Arc::new(Connection::new(ours, Framing::Stream));
        let workers =
            Workers::start(connection.clone(), sample_server(layer), threads, BUF).unwrap();
        (peer, workers, connection)
    }

    /// [`start`], then INIT answered: a session ready for requests.
    fn start_after_init(layer: &std::path::Path, threads: usize) -> (UnixStream, Workers) {
        let (mut peer, workers, _connection) = start(layer, threads);
        peer.write_all(&request(Opcode::Init, 1, 0, &init_body()))
            .unwrap();
        reply(&peer);
        (peer, workers)
    }

    /// FUSE-T's framing end to end: INIT, LOOKUP, GETATTR, OPEN, READ, FORGET and a miss,
    /// through two workers; then the peer closes and both workers return.
    #[test]
    fn serves_a_stream_and_stops_at_eof() {
        let layer = tempfile::tempdir().unwrap();
        let (mut peer, workers, _connection) = start(layer.path(), 2);

        peer.write_all(&request(Opcode::Init, 1, 0, &init_body()))
            .unwrap();
        let (error, unique, init) = reply(&peer);
        assert_eq!((error, unique), (0, 1));
        let init: InitOut = body(&init);
        assert_eq!((init.major, init.minor > 0), (7, true), "INIT major/minor");

        peer.write_all(&request(Opcode::Lookup, 2, ROOT, b"hello\0"))
            .unwrap();
        let (error, unique, entry) = reply(&peer);
        assert_eq!((error, unique), (0, 2));
        let entry: EntryOut = body(&entry);
        let node = entry.nodeid;
        assert_ne!(node, 0);
        assert_eq!(entry.generation, 0, "generation");
        // Directly under the root: entry timeout 0 (DESIGN.md §4 rule 3).
        assert_eq!(entry.entry_valid, 0, "entry_valid");

        // A FORGET has no reply: the next reply must be the GETATTR's.
        let forget = ForgetIn { nlookup: 1 };
        peer.write_all(&request(Opcode::Forget, 3, node, forget.as_slice()))
            .unwrap();
        let getattr = GetattrIn::default();
        peer.write_all(&request(Opcode::Getattr, 4, node, getattr.as_slice()))
            .unwrap();
        let (error, unique, attr) = reply(&peer);
        assert_eq!((error, unique), (0, 4));
        let attr: AttrOut = body(&attr);
        assert_eq!((attr.attr.ino, attr.attr.size), (node, 11), "ino, size");

        let open = OpenIn::default();
        peer.write_all(&request(Opcode::Open, 5, node, open.as_slice()))
            .unwrap();
        let (error, unique, open) = reply(&peer);
        assert_eq!((error, unique), (0, 5));
        let open: OpenOut = body(&open);

        let read_in = ReadIn {
            fh: open.fh,
            offset: 6,
            size: 4096,
            ..ReadIn::default()
        };
        peer.write_all(&request(Opcode::Read, 6, node, read_in.as_slice()))
            .unwrap();
        let (error, unique, data) = reply(&peer);
        assert_eq!((error, unique, data.as_slice()), (0, 6, &b"world"[..]));

        peer.write_all(&request(Opcode::Lookup, 7, ROOT, b"missing\0"))
            .unwrap();
        let (error, unique, body) = reply(&peer);
        assert_eq!((error, unique, body.len()), (-libc::ENOENT, 7, 0));

        drop(peer);
        assert!(
            workers.join(Duration::from_secs(5)),
            "workers must return once the peer closes, not spin"
        );
    }

    /// Many requests in flight from one writer, answered by four workers: every reply arrives
    /// whole (the send lock keeps them from interleaving) and exactly once.
    #[test]
    fn concurrent_replies_never_interleave() {
        let layer = tempfile::tempdir().unwrap();
        let (peer, workers) = start_after_init(layer.path(), 4);
        const N: u64 = 500;
        let writer = {
            let mut peer = peer.try_clone().unwrap();
            std::thread::spawn(move || {
                for unique in 100..100 + N {
                    let name: &[u8] = if unique % 2 == 0 {
                        b"hello\0"
                    } else {
                        b"nope\0"
                    };
                    peer.write_all(&request(Opcode::Lookup, unique, ROOT, name))
                        .unwrap();
                }
            })
        };
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..N {
            let (error, unique, body) = reply(&peer);
            let expected = if unique % 2 == 0 { 0 } else { -libc::ENOENT };
            assert_eq!(error, expected, "reply {unique}");
            assert_eq!(body.is_empty(), error != 0);
            assert!(seen.insert(unique), "reply {unique} twice");
        }
        writer.join().unwrap();
        peer.shutdown(std::net::Shutdown::Both).unwrap();
        assert!(workers.join(Duration::from_secs(5)));
    }

    /// Shutting our own end down (what unmounting does) stops workers blocked in a read.
    #[test]
    fn shutting_down_our_end_stops_idle_workers() {
        let layer = tempfile::tempdir().unwrap();
        let (_peer, workers, connection) = start(layer.path(), 3);
        std::thread::sleep(Duration::from_millis(50));
        connection.io().shutdown(std::net::Shutdown::Both).unwrap();
        assert!(workers.join(Duration::from_secs(5)));
    }

    /// A request of `len` bytes (header included) whose body is all zeroes.
    fn request_of_len(opcode: Opcode, unique: u64, len: usize) -> Vec<u8> {
        let message = request(opcode, unique, ROOT, &vec![0u8; len - IN_HEADER_LEN]);
        assert_eq!(message.len(), len);
        message
    }

    /// Regression (issue 14, defect 8): a request longer than the buffer ended the session
    /// (and with it the FUSE-T volume). Now it gets an error reply, a request that expects
    /// none (a long BATCH_FORGET) gets none, and the next request is served.
    #[test]
    fn a_request_longer_than_the_buffer_gets_an_error_and_the_session_goes_on() {
        let layer = tempfile::tempdir().unwrap();
        let (peer, workers) = start_after_init(layer.path(), 1);
        let writer = {
            let mut peer = peer.try_clone().unwrap();
            std::thread::spawn(move || {
                peer.write_all(&request_of_len(Opcode::Setxattr, 2, 2 * BUF))
                    .unwrap();
                peer.write_all(&request_of_len(Opcode::BatchForget, 3, BUF + 1))
                    .unwrap();
                peer.write_all(&request(Opcode::Lookup, 4, ROOT, b"hello\0"))
                    .unwrap();
            })
        };
        let (error, unique, body) = reply(&peer);
        assert_eq!((error, unique, body.len()), (-UNREADABLE, 2, 0));
        let (error, unique, _) = reply(&peer);
        assert_eq!(
            (error, unique),
            (0, 4),
            "the session goes on; the forget is not answered"
        );
        writer.join().unwrap();
        drop(peer);
        assert!(workers.join(Duration::from_secs(5)));
    }

    /// A peer that dies inside a request, or sends a length that cannot be, ends the
    /// connection instead of leaving the workers to guess.
    #[test]
    fn broken_framing_ends_the_connection() {
        let layer = tempfile::tempdir().unwrap();
        let (mut peer, workers, _connection) = start(layer.path(), 1);
        let mut bogus = request(Opcode::Getattr, 9, ROOT, GetattrIn::default().as_slice());
        let mut header = InHeader::read_from(&bogus).unwrap();
        header.len = IN_HEADER_LEN as u32 - 1;
        header.write_to(&mut bogus).unwrap();
        peer.write_all(&bogus).unwrap();
        assert!(workers.join(Duration::from_secs(5)));

        // A request longer than the buffer whose body never comes.
        let layer = tempfile::tempdir().unwrap();
        let (mut peer, workers, _connection) = start(layer.path(), 1);
        peer.write_all(&request_of_len(Opcode::Setxattr, 9, 2 * BUF)[..BUF])
            .unwrap();
        drop(peer);
        assert!(workers.join(Duration::from_secs(5)));

        let layer = tempfile::tempdir().unwrap();
        let (mut peer, workers, _connection) = start(layer.path(), 1);
        peer.write_all(&request(Opcode::Getattr, 9, ROOT, GetattrIn::default().as_slice())[..30])
            .unwrap();
        drop(peer);
        assert!(workers.join(Duration::from_secs(5)));
    }

    /// The device framing (one read, one request), played by a SOCK_SEQPACKET pair.
    #[cfg(target_os = "linux")]
    #[test]
    fn serves_a_message_device_and_stops_when_it_closes() {
        use super::super::message::OutHeader;
        use super::super::testing::seqpacket_pair;
        let layer = tempfile::tempdir().unwrap();
        let (ours, peer) = seqpacket_pair();
        let ours = File::from(ours);
        let peer = File::from(peer);
        let connection = Arc::new(Connection::new(ours, Framing::Message));
        let workers = Workers::start(connection, sample_server(layer.path()), 2, BUF).unwrap();
        let mut peer = peer;
        let mut buf = vec![0u8; 4096];
        peer.write_all(&request(Opcode::Init, 1, 0, &init_body()))
            .unwrap();
        let n = peer.read(&mut buf).unwrap();
        let header = OutHeader::read_from(&buf).unwrap();
        assert_eq!(header.len as usize, n, "one reply per message");
        assert_eq!(header.unique, 1);
        peer.write_all(&request(Opcode::Lookup, 2, ROOT, b"dir\0"))
            .unwrap();
        let n = peer.read(&mut buf).unwrap();
        let header = OutHeader::read_from(&buf).unwrap();
        assert_eq!((header.len as usize, header.unique), (n, 2));
        assert_eq!(header.error, 0);
        drop(peer);
        assert!(workers.join(Duration::from_secs(5)));
    }

    /// FUSE-T's socket carries notifications between replies (libfuse-t serialises both,
    /// `fuse_kern_chan.c`): sent from another thread while two workers answer, each arrives
    /// whole, byte for byte, and no reply is torn by one.
    #[test]
    fn notifications_on_a_stream_never_interleave_with_replies() {
        use crate::invalidate::Invalidator;
        use spfs_router::Invalidation;

        const LOOKUPS: u64 = 300;
        let layer = tempfile::tempdir().unwrap();
        let (mut peer, workers, connection) = start(layer.path(), 2);
        peer.write_all(&request(Opcode::Init, 1, 0, &init_body()))
            .unwrap();
        reply(&peer);
        let invalidator = Invalidator::new(std::path::Path::new("/spfs"), connection, false);
        let what: Vec<Invalidation> = (0..LOOKUPS)
            .map(|i| Invalidation::Entry {
                parent: 2 + i,
                name: format!("name-{i}").into_bytes(),
            })
            .collect();
        let sender = {
            let (invalidator, what) = (invalidator.clone(), what.clone());
            std::thread::spawn(move || invalidator.invalidate(&what).unwrap())
        };
        // Read while writing: a unix socket's buffer counts each small message at its
        // kernel size, and a peer that only wrote would stall both sides.
        let reader = {
            let peer = peer.try_clone().unwrap();
            std::thread::spawn(move || {
                let (mut replies, mut notified) = (0, Vec::new());
                while replies < LOOKUPS || (notified.len() as u64) < LOOKUPS {
                    let (error, unique, body) = reply(&peer);
                    if unique == 0 {
                        notified.push((error, body));
                    } else {
                        assert_eq!(error, 0, "LOOKUP {unique}");
                        let _: EntryOut = super::super::testing::body(&body);
                        replies += 1;
                    }
                }
                notified
            })
        };
        for unique in 0..LOOKUPS {
            peer.write_all(&request(Opcode::Lookup, 100 + unique, ROOT, b"hello\0"))
                .unwrap();
        }
        let notified = reader.join().unwrap();
        sender.join().unwrap();
        for ((code, body), item) in notified.iter().zip(&what) {
            assert_eq!(*code, 3, "INVAL_ENTRY");
            assert_eq!(
                body[..],
                super::super::message::notification(item)[OUT_HEADER_LEN..]
            );
        }
        drop(peer);
        assert!(workers.join(Duration::from_secs(5)));
    }

    /// macFUSE's device takes one message per write: a notification is one write of the
    /// whole message.
    #[test]
    fn a_notification_on_a_device_is_one_whole_message() {
        use crate::invalidate::Invalidator;
        use spfs_router::Invalidation;

        // A datagram pair keeps message boundaries as the device does, on macOS too.
        let (kernel, device) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let (kernel, device) = (
            std::os::fd::OwnedFd::from(kernel),
            std::os::fd::OwnedFd::from(device),
        );
        let connection = Arc::new(Connection::new(File::from(device), Framing::Message));
        let invalidator = Invalidator::new(std::path::Path::new("/spfs"), connection, true);
        let what = [
            Invalidation::Node(0x0000_0003_0000_0009),
            Invalidation::Entry {
                parent: 0x0000_0003_0000_0002,
                name: b"tool".to_vec(),
            },
        ];
        invalidator.invalidate(&what).unwrap();
        let mut kernel = File::from(kernel);
        let mut buf = vec![0u8; 4096];
        for item in &what {
            let n = kernel.read(&mut buf).unwrap();
            assert_eq!(buf[..n], super::super::message::notification(item)[..]);
        }
    }
}
