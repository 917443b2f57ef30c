//! The serving loop of our own sessions (macFUSE's device, FUSE-T's socket), over any
//! connection that reads and writes bytes, so Linux tests drive it through socket pairs.
//!
//! `fuse-backend-rs` is used only for what is generic: parsing requests (`Reader`) and
//! composing replies (`Server::handle_message` into a `Writer`). Its writer sends to a file
//! descriptor, in one system call per reply, with no lock: fine for a kernel device, wrong for
//! FUSE-T's stream socket, where replies from several workers may interleave (libfuse-t
//! serialises its sends for that reason). So every reply is composed into a buffer of ours:
//! the writer is made buffered (`split_at(0)`), the commits it makes go to `/dev/null`, and
//! the whole reply, which always lies at the start of our buffer with its length in its
//! header, is then sent by [`Connection::send`].
//!
//! A connection ends, and every worker returns, when the peer closes it (EOF), when the device
//! says the file system is gone (`ENODEV`), or on any other read error: nothing ever retries a
//! dead connection (fuse-backend-rs 0.14's FUSE-T channel spins on EOF).

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode};
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader, Writer};

use crate::adapter::Adapter;

/// Size of a request header.
pub(super) const IN_HEADER_LEN: usize = std::mem::size_of::<InHeader>();

/// Size of a reply header: `len: u32, error: i32, unique: u64`.
pub(super) const OUT_HEADER_LEN: usize = 16;

/// How requests are delimited on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Each read returns one whole request and each write must carry one whole reply: a FUSE
    /// device such as `/dev/macfuseN`.
    Message,
    /// A byte stream: a request is as long as its header says (FUSE-T's socket).
    Stream,
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
    fn receive(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let _reading = self
            .read_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        let result = match self.framing {
            Framing::Message => read_message(&self.io, buf),
            Framing::Stream => read_framed(&self.io, buf),
        };
        if !matches!(result, Ok(Some(_))) {
            self.closed.store(true, Ordering::Release);
        }
        result
    }

    /// Sends one whole reply.
    fn send(&self, reply: &[u8]) -> io::Result<()> {
        let mut io = &self.io;
        match self.framing {
            Framing::Message => {
                let written = loop {
                    match io.write(reply) {
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        other => break other?,
                    }
                };
                if written != reply.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("the device took {written} of {} reply bytes", reply.len()),
                    ));
                }
                Ok(())
            }
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

/// One read, one request. `ENOENT` means the kernel withdrew an interrupted request (libfuse
/// reads again); `ENODEV` means the file system was unmounted.
fn read_message(mut io: impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
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
/// EOF inside a request, or a length that cannot be right, loses the framing for good.
fn read_framed(mut io: impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
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
    let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len < IN_HEADER_LEN || len > buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a request claims {len} bytes (a header is {IN_HEADER_LEN}, the buffer {})",
                buf.len()
            ),
        ));
    }
    let body = fill(&mut io, &mut buf[IN_HEADER_LEN..len])?;
    if body != len - IN_HEADER_LEN {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the connection closed inside a request of {len} bytes"),
        ));
    }
    Ok(Some(len))
}

/// Requests the kernel expects no reply to.
fn expects_reply(opcode: u32) -> bool {
    ![
        Opcode::Forget as u32,
        Opcode::Interrupt as u32,
        Opcode::NotifyReply as u32,
        Opcode::BatchForget as u32,
    ]
    .contains(&opcode)
}

/// Writes an error reply for `unique` at the start of `reply`; returns its length.
pub(super) fn put_error_reply(reply: &mut [u8], unique: u64, errno: i32) -> usize {
    reply[0..4].copy_from_slice(&(OUT_HEADER_LEN as u32).to_ne_bytes());
    reply[4..8].copy_from_slice(&(-errno).to_ne_bytes());
    reply[8..16].copy_from_slice(&unique.to_ne_bytes());
    OUT_HEADER_LEN
}

/// Answers one request in `request`, composing the reply in `reply`; returns the reply's
/// length (0: none is due). Also the body of FUSE over io_uring's queues on Linux.
pub(super) fn answer(
    server: &Server<Adapter>,
    sink: &File,
    request: &mut [u8],
    reply: &mut [u8],
) -> usize {
    use std::os::fd::AsRawFd;
    let opcode = u32::from_ne_bytes([request[4], request[5], request[6], request[7]]);
    let unique = u64::from_ne_bytes(request[8..16].try_into().unwrap_or([0; 8]));
    reply[..OUT_HEADER_LEN].fill(0);
    let handled = (|| -> Result<usize, String> {
        let reader = Reader::from_fuse_buffer(FuseBuf::new(request)).map_err(|e| e.to_string())?;
        let mut whole =
            FuseDevWriter::<()>::new(sink.as_raw_fd(), reply).map_err(|e| e.to_string())?;
        let buffered = whole.split_at(0).map_err(|e| e.to_string())?;
        server
            .handle_message(reader, Writer::from(buffered), None, None)
            .map_err(|e| e.to_string())
    })();
    let len = u32::from_ne_bytes([reply[0], reply[1], reply[2], reply[3]]) as usize;
    if let Err(err) = &handled {
        // Interrupted or malformed requests land here; the kernel is fine.
        tracing::debug!(opcode, unique, error = %err, "request failed");
    }
    if (OUT_HEADER_LEN..=reply.len()).contains(&len) {
        return len;
    }
    if !expects_reply(opcode) {
        return 0;
    }
    // The server gave up without answering: answer for it, or the caller would wait forever.
    put_error_reply(reply, unique, libc::EIO)
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
            Ok(Some(len)) => len,
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
    use super::super::testing::{fixed_vfs, init_body, reply, request};
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    use spfs_router::ROOT;

    const BUF: usize = 256 * 1024 + 4096;

    /// A view of one directory holding `hello` (11 bytes) and `dir/deep`.
    fn server(layer: &std::path::Path) -> Arc<Server<Adapter>> {
        std::fs::write(layer.join("hello"), b"hello world").unwrap();
        std::fs::create_dir(layer.join("dir")).unwrap();
        std::fs::write(layer.join("dir/deep"), b"deep").unwrap();
        let vfs = fixed_vfs(PathBuf::from(layer));
        let policy = crate::policy::KernelPolicy::new(
            crate::policy::Platform::MacOs,
            super::super::Transport::Device,
            crate::policy::Layout::Fixed,
        );
        Arc::new(Server::new(Adapter::new(vfs, policy)))
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn start(
        layer: &std::path::Path,
        threads: usize,
    ) -> (UnixStream, Workers, Arc<Connection<UnixStream>>) {
        let (ours, peer) = UnixStream::pair().unwrap();
        let connection = Arc::new(Connection::new(ours, Framing::Stream));
        let workers = Workers::start(connection.clone(), server(layer), threads, BUF).unwrap();
        (peer, workers, connection)
    }

    /// FUSE-T's framing end to end: INIT, LOOKUP, GETATTR, OPEN, READ, FORGET and a miss,
    /// through two workers; then the peer closes and both workers return.
    #[test]
    fn serves_a_stream_and_stops_at_eof() {
        let layer = tempfile::tempdir().unwrap();
        let (mut peer, workers, _connection) = start(layer.path(), 2);

        peer.write_all(&request(Opcode::Init, 1, 0, &init_body()))
            .unwrap();
        let (error, unique, body) = reply(&peer);
        assert_eq!((error, unique), (0, 1));
        assert_eq!(
            (u32_at(&body, 0), u32_at(&body, 4) > 0),
            (7, true),
            "INIT major/minor"
        );

        peer.write_all(&request(Opcode::Lookup, 2, ROOT, b"hello\0"))
            .unwrap();
        let (error, unique, entry) = reply(&peer);
        assert_eq!((error, unique), (0, 2));
        let node = u64_at(&entry, 0);
        assert_ne!(node, 0);
        assert_eq!(u64_at(&entry, 8), 0, "generation");
        // Directly under the root: entry timeout 0 (DESIGN.md §4 rule 3).
        assert_eq!(u64_at(&entry, 16), 0, "entry_valid");

        // A FORGET has no reply: the next reply must be the GETATTR's.
        peer.write_all(&request(Opcode::Forget, 3, node, &1u64.to_ne_bytes()))
            .unwrap();
        peer.write_all(&request(Opcode::Getattr, 4, node, &[0u8; 16]))
            .unwrap();
        let (error, unique, attr) = reply(&peer);
        assert_eq!((error, unique), (0, 4));
        // attr_valid u64, attr_valid_nsec u32, dummy u32, then attr: ino u64, size u64.
        assert_eq!(u64_at(&attr, 16), node, "ino");
        assert_eq!(u64_at(&attr, 24), 11, "size");

        peer.write_all(&request(Opcode::Open, 5, node, &[0u8; 8]))
            .unwrap();
        let (error, unique, open) = reply(&peer);
        assert_eq!((error, unique), (0, 5));
        let fh = u64_at(&open, 0);

        // fh, offset, size, read_flags, lock_owner, flags, padding
        let mut read_in = Vec::new();
        read_in.extend(fh.to_ne_bytes());
        read_in.extend(6u64.to_ne_bytes());
        read_in.extend(4096u32.to_ne_bytes());
        read_in.extend(0u32.to_ne_bytes());
        read_in.extend(0u64.to_ne_bytes());
        read_in.extend([0u8; 8]);
        peer.write_all(&request(Opcode::Read, 6, node, &read_in))
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
        let (mut peer, workers, _connection) = start(layer.path(), 4);
        peer.write_all(&request(Opcode::Init, 1, 0, &init_body()))
            .unwrap();
        reply(&peer);
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

    /// A peer that dies inside a request, or sends a length that cannot be, ends the
    /// connection instead of leaving the workers to guess.
    #[test]
    fn broken_framing_ends_the_connection() {
        let layer = tempfile::tempdir().unwrap();
        let (mut peer, workers, _connection) = start(layer.path(), 1);
        let mut bogus = request(Opcode::Getattr, 9, ROOT, &[0u8; 16]);
        bogus[0..4].copy_from_slice(&(BUF as u32 + 1).to_ne_bytes());
        peer.write_all(&bogus).unwrap();
        assert!(workers.join(Duration::from_secs(5)));

        let layer = tempfile::tempdir().unwrap();
        let (mut peer, workers, _connection) = start(layer.path(), 1);
        peer.write_all(&request(Opcode::Getattr, 9, ROOT, &[0u8; 16])[..30])
            .unwrap();
        drop(peer);
        assert!(workers.join(Duration::from_secs(5)));
    }

    /// The device framing (one read, one request), played by a SOCK_SEQPACKET pair.
    #[cfg(target_os = "linux")]
    #[test]
    fn serves_a_message_device_and_stops_when_it_closes() {
        use super::super::testing::seqpacket_pair;
        let layer = tempfile::tempdir().unwrap();
        let (ours, peer) = seqpacket_pair();
        let ours = File::from(ours);
        let peer = File::from(peer);
        let connection = Arc::new(Connection::new(ours, Framing::Message));
        let workers = Workers::start(connection, server(layer.path()), 2, BUF).unwrap();
        let mut peer = peer;
        let mut buf = vec![0u8; 4096];
        peer.write_all(&request(Opcode::Init, 1, 0, &init_body()))
            .unwrap();
        let n = peer.read(&mut buf).unwrap();
        assert_eq!(u32_at(&buf, 0) as usize, n, "one reply per message");
        assert_eq!(u64_at(&buf, 8), 1);
        peer.write_all(&request(Opcode::Lookup, 2, ROOT, b"dir\0"))
            .unwrap();
        let n = peer.read(&mut buf).unwrap();
        assert_eq!((u32_at(&buf, 0) as usize, u64_at(&buf, 8)), (n, 2));
        assert_eq!(i32::from_ne_bytes(buf[4..8].try_into().unwrap()), 0);
        drop(peer);
        assert!(workers.join(Duration::from_secs(5)));
    }

    #[test]
    fn unanswered_requests_get_eio_but_forgets_stay_silent() {
        let layer = tempfile::tempdir().unwrap();
        let server = server(layer.path());
        let sink = File::options().write(true).open("/dev/null").unwrap();
        let mut reply_buf = vec![0u8; BUF];
        // A GETATTR without its body: the server cannot decode it and sends nothing.
        let mut getattr = request(Opcode::Getattr, 3, ROOT, b"");
        let len = answer(&server, &sink, &mut getattr, &mut reply_buf);
        assert_eq!(len, OUT_HEADER_LEN);
        let err = i32::from_ne_bytes(reply_buf[4..8].try_into().unwrap());
        assert_eq!((err, u64_at(&reply_buf, 8)), (-libc::EIO, 3));
        // One the server answers itself keeps its own error: a LOOKUP without a name.
        let mut lookup = request(Opcode::Lookup, 5, ROOT, b"");
        assert_eq!(
            answer(&server, &sink, &mut lookup, &mut reply_buf),
            OUT_HEADER_LEN
        );
        let err = i32::from_ne_bytes(reply_buf[4..8].try_into().unwrap());
        assert_eq!((err, u64_at(&reply_buf, 8)), (-libc::EINVAL, 5));
        let mut forget = request(Opcode::BatchForget, 4, 0, &[0u8; 8]);
        assert_eq!(answer(&server, &sink, &mut forget, &mut reply_buf), 0);
    }
}
