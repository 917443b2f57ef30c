//! FUSE messages as the kernel writes and reads them, through `fuse-backend-rs`'s ABI structs:
//! requests (header, then the opcode's fixed argument, then any name) and replies (header, then
//! the body). On Linux these are the Linux ABI's structs; macFUSE's 7.19 ABI differs in
//! `fuse_attr` and a few inputs, which the macOS type-check and `fuse-backend-rs`'s own macOS
//! structs cover, not this model.

use fuse_backend_rs::abi::fuse_abi::{InHeader, Opcode, OutHeader};
use vm_memory::ByteValued;

/// The largest reply a request of the model can ask for: a 1 MiB read plus its headers.
pub const REPLY_BYTES: usize = (1 << 20) + 4096;

/// A request of `opcode` for `unique` on `nodeid` from process `pid`, with `body` after the
/// header.
pub fn request(opcode: Opcode, unique: u64, nodeid: u64, pid: u32, body: &[u8]) -> Vec<u8> {
    let header = InHeader {
        len: (std::mem::size_of::<InHeader>() + body.len()) as u32,
        opcode: opcode as u32,
        unique,
        nodeid,
        uid: 0,
        gid: 0,
        pid,
        padding: 0,
    };
    [header.as_slice(), body].concat()
}

/// `value`'s bytes, for a request body.
pub fn bytes<T: ByteValued>(value: &T) -> &[u8] {
    value.as_slice()
}

/// A `T` copied from the start of `bytes`; what a short body lacks reads as zeros.
pub fn read<T: ByteValued + Default>(bytes: &[u8]) -> T {
    let mut value = T::default();
    let len = std::mem::size_of::<T>().min(bytes.len());
    value.as_mut_slice()[..len].copy_from_slice(&bytes[..len]);
    value
}

/// Splits a reply of `len` bytes into its errno (0 for success) and body.
pub fn split_reply(reply: &[u8], len: usize) -> (i32, &[u8]) {
    let header: OutHeader = read(reply);
    let start = std::mem::size_of::<OutHeader>();
    (-header.error, &reply[start.min(len)..len])
}

/// The entries of a READDIR reply: node id, offset that resumes after it, name.
pub fn dirents(mut body: &[u8]) -> Vec<(u64, u64, Vec<u8>)> {
    use fuse_backend_rs::abi::fuse_abi::Dirent;
    let head = std::mem::size_of::<Dirent>();
    let mut entries = Vec::new();
    while body.len() >= head {
        let dirent: Dirent = read(body);
        let name_end = head + dirent.namelen as usize;
        let Some(name) = body.get(head..name_end) else {
            break;
        };
        entries.push((dirent.ino, dirent.off, name.to_vec()));
        // Each entry is padded to 8 bytes.
        let padded = name_end.div_ceil(8) * 8;
        body = body.get(padded..).unwrap_or_default();
    }
    entries
}
