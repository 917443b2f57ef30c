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

pub(crate) use fuse_backend_rs::abi::fuse_abi::{InHeader, OutHeader};
use fuse_backend_rs::abi::fuse_abi::{
    NotifyInvalEntryOut, NotifyInvalInodeOut, NotifyOpcode, Opcode,
};
use fuse_backend_rs::api::server::Server;
use fuse_backend_rs::transport::{FuseBuf, FuseDevWriter, Reader, Writer};
use vm_memory::ByteValued;

use spfs_router::Invalidation;

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

/// The FUSE notification that makes the kernel forget `what`, as libfuse composes it
/// (`fuse_lowlevel_notify_inval_entry` / `_inode`): a reply header with unique 0 and the
/// notify code in its error field, then `fuse_notify_inval_entry_out` and the name with its
/// NUL (Linux wants exactly `namelen + 1` bytes after the struct, `fs/fuse/dev.c`), or
/// `fuse_notify_inval_inode_out` with offset 0 and length 0: every cached page and the
/// attributes. The codes and structs are the same in Linux's and macFUSE's `fuse_kernel.h`.
pub(crate) fn notification(what: &Invalidation) -> Vec<u8> {
    let (code, body) = match what {
        Invalidation::Entry { parent, name } => {
            let out = NotifyInvalEntryOut {
                parent: *parent,
                namelen: name.len() as u32,
                padding: 0,
            };
            let body = [out.as_slice(), name, &[0]].concat();
            (NotifyOpcode::InvalEntry, body)
        }
        Invalidation::Node(node) => {
            let out = NotifyInvalInodeOut {
                ino: *node,
                off: 0,
                len: 0,
            };
            (NotifyOpcode::InvalInode, out.as_slice().to_vec())
        }
    };
    let header = OutHeader {
        len: (OUT_HEADER_LEN + body.len()) as u32,
        error: code as i32,
        unique: 0,
    };
    [header.as_slice(), &body].concat()
}

/// Writes one whole message (a reply or a notification) to a FUSE device in one `write(2)`,
/// as the device wants it: a short write is an error, never a partial message.
pub(crate) fn write_message(
    mut device: impl std::io::Write,
    message: &[u8],
) -> std::io::Result<()> {
    let written = loop {
        match device.write(message) {
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            other => break other?,
        }
    };
    if written != message.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!(
                "the device took {written} of {} message bytes",
                message.len()
            ),
        ));
    }
    Ok(())
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

    /// `<linux/fuse.h>` (and macFUSE's `fuse_kernel.h`): a notification is a
    /// `fuse_out_header` with unique 0 and the code in `error` (INVAL_INODE 2, INVAL_ENTRY 3),
    /// then `fuse_notify_inval_inode_out` {ino, off, len} or `fuse_notify_inval_entry_out`
    /// {parent, namelen, padding} and the name with a NUL.
    #[test]
    fn notifications_have_the_kernel_layout() {
        let entry = notification(&Invalidation::Entry {
            parent: 0x0000_0002_0000_0007,
            name: b"tool".to_vec(),
        });
        assert_eq!(entry.len(), 16 + 16 + 5);
        assert_eq!(entry[0..4], 37u32.to_ne_bytes());
        assert_eq!(entry[4..8], 3i32.to_ne_bytes());
        assert_eq!(entry[8..16], 0u64.to_ne_bytes());
        assert_eq!(entry[16..24], 0x0000_0002_0000_0007u64.to_ne_bytes());
        assert_eq!(entry[24..28], 4u32.to_ne_bytes());
        assert_eq!(entry[28..32], [0; 4]);
        assert_eq!(&entry[32..], b"tool\0");

        let node = notification(&Invalidation::Node(42));
        assert_eq!(node.len(), 16 + 24);
        assert_eq!(node[0..4], 40u32.to_ne_bytes());
        assert_eq!(node[4..8], 2i32.to_ne_bytes());
        assert_eq!(node[8..16], 0u64.to_ne_bytes());
        assert_eq!(node[16..24], 42u64.to_ne_bytes());
        assert_eq!(node[24..40], [0; 16], "offset 0, length 0: everything");
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
