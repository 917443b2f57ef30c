//! The FUSE headers of requests and replies, read from and written into message bytes through
//! `fuse-backend-rs`'s ABI types ([`InHeader`], [`OutHeader`]): no byte offsets anywhere else.
//!
//! Every structure is copied, never referenced in place: a request may lie anywhere in a
//! buffer (after io_uring's own header, say), where a reference could be misaligned.

use std::mem::size_of;

pub(crate) use fuse_backend_rs::abi::fuse_abi::{InHeader, OutHeader};
use vm_memory::ByteValued;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
