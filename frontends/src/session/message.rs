//! One FUSE message: its headers, read from and written into message bytes through
//! `fuse-backend-rs`'s ABI types ([`InHeader`], [`OutHeader`]), so no byte offsets anywhere
//! else; and [`answer`], which answers one request into a reply buffer of ours. The loops that
//! move messages share both: `framing.rs` (macFUSE's device, FUSE-T's socket) and
//! `uring_linux.rs` (FUSE over io_uring). [`MemoryServer`] answers through the same path for
//! requests held in memory: the kext model in the tests and the adapter benchmark.
//!
//! Every structure is copied, never referenced in place: a request may lie anywhere in a
//! buffer (after io_uring's own header, say), where a reference could be misaligned.
//!
//! `fuse-backend-rs` is used only for what is generic: parsing requests (`Reader`) and
//! composing replies (`Server::handle_message` into a `Writer`). Its writer would send each
//! reply to a file descriptor; ours is made buffered (`split_at(0)`), the commits it makes go
//! to `/dev/null`, and the whole reply lies at the start of our buffer with its length in its
//! header, for the loop to send.

use std::fs::File;
use std::mem::size_of;

use fuse_backend_rs::abi::fuse_abi::Opcode;
pub(crate) use fuse_backend_rs::abi::fuse_abi::{InHeader, OutHeader};
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader, Writer};
use vm_memory::ByteValued;

use crate::adapter::Adapter;

/// Size of a request header.
pub(crate) const IN_HEADER_LEN: usize = size_of::<InHeader>();

/// Size of a reply header.
pub(crate) const OUT_HEADER_LEN: usize = size_of::<OutHeader>();

/// A fixed-size structure of the FUSE ABI (a header, or an opcode's fixed argument), copied out
/// of or into the start of a byte slice.
pub(crate) trait AbiBytes: ByteValued + Default {
    /// The structure at the start of `bytes`; `None` if they are too short to hold one.
    fn read_from(bytes: &[u8]) -> Option<Self> {
        let mut value = Self::default();
        value
            .as_mut_slice()
            .copy_from_slice(bytes.get(..size_of::<Self>())?);
        Some(value)
    }

    /// Writes the structure at the start of `bytes`; returns its size, or `None` (writing
    /// nothing) if they are too short to hold it.
    fn write_to(&self, bytes: &mut [u8]) -> Option<usize> {
        let len = size_of::<Self>();
        bytes.get_mut(..len)?.copy_from_slice(self.as_slice());
        Some(len)
    }
}

impl<T: ByteValued + Default> AbiBytes for T {}

/// Writes a reply that carries only `errno` for request `unique` at the start of `reply`;
/// returns its length (0, writing nothing, if `reply` cannot hold a header).
pub(crate) fn put_error_reply(reply: &mut [u8], unique: u64, errno: i32) -> usize {
    let header = OutHeader {
        len: OUT_HEADER_LEN as u32,
        error: -errno,
        unique,
    };
    header.write_to(reply).unwrap_or(0)
}

/// Requests the kernel expects no reply to.
pub(super) fn expects_reply(opcode: u32) -> bool {
    ![
        Opcode::Forget as u32,
        Opcode::Interrupt as u32,
        Opcode::NotifyReply as u32,
        Opcode::BatchForget as u32,
    ]
    .contains(&opcode)
}

/// Answers one request in `request`, composing the reply in `reply`; returns the reply's
/// length (0: none is due, or `request` is shorter than a header). Also the body of FUSE over
/// io_uring's queues on Linux.
pub(super) fn answer(
    server: &Server<Adapter>,
    sink: &File,
    request: &mut [u8],
    reply: &mut [u8],
) -> usize {
    use std::os::fd::AsRawFd;
    let Some(InHeader { opcode, unique, .. }) = InHeader::read_from(request) else {
        return 0;
    };
    // A reply the server never writes must not pass for one: its length stays 0.
    if OutHeader::default().write_to(reply).is_none() {
        return 0;
    }
    let handled = (|| -> Result<usize, String> {
        let reader = Reader::from_fuse_buffer(FuseBuf::new(request)).map_err(|e| e.to_string())?;
        let mut whole =
            FuseDevWriter::<()>::new(sink.as_raw_fd(), reply).map_err(|e| e.to_string())?;
        let buffered = whole.split_at(0).map_err(|e| e.to_string())?;
        server
            .handle_message(reader, Writer::from(buffered), None, None)
            .map_err(|e| e.to_string())
    })();
    let len = OutHeader::read_from(reply).map_or(0, |header| header.len as usize);
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

/// Answers FUSE requests held in memory through [`answer`], the path every session takes, so
/// a test-side kernel (the macFUSE model in `frontends/tests/`) or a benchmark gets exactly
/// what a mounted session would reply.
pub struct MemoryServer {
    server: Server<Adapter>,
    sink: File,
}

impl MemoryServer {
    /// A server answering through `adapter`.
    pub fn new(adapter: Adapter) -> std::io::Result<MemoryServer> {
        Ok(MemoryServer {
            server: Server::new(adapter),
            sink: File::options().write(true).open("/dev/null")?,
        })
    }

    /// Answers the one request in `request` into `reply`; returns the reply's length (0: none
    /// is due). `reply` should hold the largest reply the request may ask for.
    pub fn answer(&self, request: &mut [u8], reply: &mut [u8]) -> usize {
        answer(&self.server, &self.sink, request, reply)
    }
}

impl std::fmt::Debug for MemoryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryServer").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{request, sample_server};
    use super::*;
    use spfs_router::ROOT;

    /// The kernel's layout (`fuse_in_header`, `fuse_out_header` in `<linux/fuse.h>`, the same
    /// in macFUSE's `fuse_kernel.h`): what a byte offset would have read.
    #[test]
    fn headers_read_and_write_the_kernel_layout() {
        let mut request = [0u8; 48];
        request[0..4].copy_from_slice(&48u32.to_ne_bytes());
        request[4..8].copy_from_slice(&15u32.to_ne_bytes());
        request[8..16].copy_from_slice(&7u64.to_ne_bytes());
        request[16..24].copy_from_slice(&1u64.to_ne_bytes());
        request[32..36].copy_from_slice(&4321u32.to_ne_bytes());
        let header = InHeader::read_from(&request).unwrap();
        assert_eq!(IN_HEADER_LEN, 40);
        assert_eq!(
            (header.len, header.opcode, header.unique, header.nodeid),
            (48, 15, 7, 1)
        );
        assert_eq!(header.pid, 4321);

        let mut reply = [0xffu8; 20];
        assert_eq!(put_error_reply(&mut reply, 7, libc::ENOENT), 16);
        assert_eq!(OUT_HEADER_LEN, 16);
        assert_eq!(reply[0..4], 16u32.to_ne_bytes());
        assert_eq!(reply[4..8], (-libc::ENOENT).to_ne_bytes());
        assert_eq!(reply[8..16], 7u64.to_ne_bytes());
        assert_eq!(reply[16..], [0xff; 4], "nothing past the header is touched");
    }

    #[test]
    fn short_bytes_hold_no_header_and_take_none() {
        assert!(InHeader::read_from(&[0u8; IN_HEADER_LEN - 1]).is_none());
        let mut short = [0u8; OUT_HEADER_LEN - 1];
        assert_eq!(put_error_reply(&mut short, 1, libc::EIO), 0);
        assert_eq!(short, [0u8; OUT_HEADER_LEN - 1]);
    }

    #[test]
    fn unanswered_requests_get_eio_but_forgets_stay_silent() {
        let layer = tempfile::tempdir().unwrap();
        let server = sample_server(layer.path());
        let sink = File::options().write(true).open("/dev/null").unwrap();
        let mut reply_buf = vec![0u8; 64 * 1024];
        // A GETATTR without its body: the server cannot decode it and sends nothing.
        let mut getattr = request(Opcode::Getattr, 3, ROOT, b"");
        let len = answer(&server, &sink, &mut getattr, &mut reply_buf);
        assert_eq!(len, OUT_HEADER_LEN);
        let header = OutHeader::read_from(&reply_buf).unwrap();
        assert_eq!((header.error, header.unique), (-libc::EIO, 3));
        // One the server answers itself keeps its own error: a LOOKUP without a name.
        let mut lookup = request(Opcode::Lookup, 5, ROOT, b"");
        assert_eq!(
            answer(&server, &sink, &mut lookup, &mut reply_buf),
            OUT_HEADER_LEN
        );
        let header = OutHeader::read_from(&reply_buf).unwrap();
        assert_eq!((header.error, header.unique), (-libc::EINVAL, 5));
        let mut forget = request(Opcode::BatchForget, 4, 0, &[0u8; 8]);
        assert_eq!(answer(&server, &sink, &mut forget, &mut reply_buf), 0);
        // Less than a header names no request to answer.
        let mut torn = request(Opcode::Getattr, 6, ROOT, b"")[..IN_HEADER_LEN - 1].to_vec();
        assert_eq!(answer(&server, &sink, &mut torn, &mut reply_buf), 0);
    }
}
