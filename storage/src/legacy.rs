//! The legacy object encoding (SPFS-FORMAT.md §7): big-endian `u64` counts and fields, raw
//! 32-byte digests, NUL-terminated strings, no padding. The body ends exactly at end of file.

use super::digest::{DIGEST_SIZE, Digest};
use super::manifest::{RAW_BLOB, RAW_MASK, RAW_TREE, RawEntry, RawManifest};
use super::object::{Blob, Layer, Object, ObjectKind, Platform};

/// The smallest legacy entry: digest, `"file\0"`, mode, size, a 1-byte name and its NUL.
const MIN_ENTRY_LEN: usize = DIGEST_SIZE + 5 + 8 + 8 + 2;

/// A bounds-checked reader over an object body. Errors are messages with the body offset;
/// the caller adds the file path.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    fn truncated(&self, what: &str) -> String {
        // Offsets in messages are file offsets (the body starts after the 17-byte header).
        format!(
            "truncated: {what} at offset {} runs past the end of the file ({} bytes)",
            self.pos + super::object::HEADER_LEN,
            self.buf.len() + super::object::HEADER_LEN
        )
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.truncated(what))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, String> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn digest(&mut self, what: &str) -> Result<Digest, String> {
        let b = self.take(DIGEST_SIZE, what)?;
        Digest::from_slice(b).ok_or_else(|| self.truncated(what))
    }

    /// A string up to (not including) the next NUL, which is consumed.
    pub(crate) fn cstr(&mut self, what: &str) -> Result<&'a [u8], String> {
        let rest = &self.buf[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| format!("{} (no NUL terminator)", self.truncated(what)))?;
        let out = &rest[..len];
        self.pos += len + 1;
        Ok(out)
    }

    /// A count of items at least `min_item` bytes each, checked against the bytes left.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize, String> {
        let at = self.pos + super::object::HEADER_LEN;
        let n = self.u64(what)?;
        let fits = usize::try_from(n)
            .ok()
            .filter(|&n| n.saturating_mul(min_item) <= self.remaining());
        fits.ok_or_else(|| {
            format!(
                "bad length: {what} {n} at offset {at} does not fit in the {} bytes left",
                self.remaining()
            )
        })
    }

    pub(crate) fn finish(&self) -> Result<(), String> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(format!(
                "bad length: {} unexpected bytes after the object's end at offset {}",
                self.remaining(),
                self.pos + super::object::HEADER_LEN
            ))
        }
    }
}

/// Decodes a blob, layer or platform body.
pub(crate) fn decode_small(body: &[u8], kind: ObjectKind) -> Result<Object, String> {
    let mut c = Cursor::new(body);
    let object = match kind {
        ObjectKind::Blob => {
            let payload = c.digest("blob payload digest")?;
            let size = c.u64("blob size")?;
            Object::Blob(Blob { payload, size })
        }
        ObjectKind::Layer => Object::Layer(Layer {
            manifest: Some(c.digest("layer manifest digest")?),
            annotations: Vec::new(),
        }),
        ObjectKind::Platform => {
            let n = c.count("platform layer count", DIGEST_SIZE)?;
            let mut stack = Vec::with_capacity(n);
            for _ in 0..n {
                stack.push(c.digest("platform layer digest")?);
            }
            // Legacy platforms list the top layer first.
            stack.reverse();
            Object::Platform(Platform { stack })
        }
        ObjectKind::Manifest => return Err("internal: manifest decoded as small".into()),
    };
    c.finish()?;
    Ok(object)
}

/// Decodes a manifest body: the root tree, a count, then the other trees.
pub(crate) fn decode_manifest(body: &[u8]) -> Result<RawManifest<'_>, String> {
    let mut c = Cursor::new(body);
    let mut m = RawManifest::default();
    read_tree(&mut c, &mut m)?;
    let others = c.count("manifest tree count", 8)?;
    m.trees.reserve(others);
    for _ in 0..others {
        read_tree(&mut c, &mut m)?;
    }
    c.finish()?;
    Ok(m)
}

fn read_tree<'a>(c: &mut Cursor<'a>, m: &mut RawManifest<'a>) -> Result<(), String> {
    let n = c.count("tree entry count", MIN_ENTRY_LEN)?;
    let start = m.entries.len();
    m.entries.reserve(n);
    for _ in 0..n {
        let object = c.digest("entry digest")?;
        let kind = match c.cstr("entry kind")? {
            b"file" => RAW_BLOB,
            b"tree" => RAW_TREE,
            b"mask" => RAW_MASK,
            other => {
                return Err(format!(
                    "unknown entry kind {:?}",
                    String::from_utf8_lossy(other)
                ));
            }
        };
        // Stored as 64 bits; spfs keeps the low 32 (an st_mode).
        let mode = c.u64("entry mode")? as u32;
        let size = c.u64("entry size")?;
        let name = c.cstr("entry name")?;
        m.entries.push(RawEntry {
            name,
            kind,
            object,
            mode,
            size,
        });
    }
    m.trees.push(start..m.entries.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(out: &mut Vec<u8>, d: Digest, kind: &str, mode: u64, size: u64, name: &str) {
        out.extend_from_slice(d.as_bytes());
        out.extend_from_slice(kind.as_bytes());
        out.push(0);
        out.extend_from_slice(&mode.to_be_bytes());
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
    }

    #[test]
    fn decodes_a_manifest_with_two_trees() {
        let empty = Digest::of(&0u64.to_be_bytes());
        let mut body = 2u64.to_be_bytes().to_vec();
        entry(&mut body, empty, "tree", 0o040755, 0, "d");
        entry(&mut body, Digest::of(b"x"), "file", 0o100644, 1, "f");
        body.extend_from_slice(&1u64.to_be_bytes());
        body.extend_from_slice(&0u64.to_be_bytes());
        let m = decode_manifest(&body).unwrap();
        assert_eq!(m.trees, vec![0..2, 2..2]);
        assert_eq!(m.entries[1].name, b"f");
        assert_eq!(m.entries[1].size, 1);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut body = 1u64.to_be_bytes().to_vec();
        entry(&mut body, Digest::of(b"x"), "file", 0o100644, 1, "f");
        body.extend_from_slice(&0u64.to_be_bytes());
        assert!(decode_manifest(&body).is_ok());
        for len in 0..body.len() {
            assert!(decode_manifest(&body[..len]).is_err(), "{len}");
        }
        let mut long = body.clone();
        long.push(0);
        assert!(decode_manifest(&long).unwrap_err().contains("bad length"));
    }

    #[test]
    fn huge_counts_are_bad_lengths() {
        let body = u64::MAX.to_be_bytes();
        assert!(decode_manifest(&body).unwrap_err().contains("bad length"));
        assert!(
            decode_small(&body, ObjectKind::Platform)
                .unwrap_err()
                .contains("bad length")
        );
    }

    #[test]
    fn platforms_are_reversed_to_bottom_first() {
        let (top, bottom) = (Digest::of(b"top"), Digest::of(b"bottom"));
        let mut body = 2u64.to_be_bytes().to_vec();
        body.extend_from_slice(top.as_bytes());
        body.extend_from_slice(bottom.as_bytes());
        let Object::Platform(p) = decode_small(&body, ObjectKind::Platform).unwrap() else {
            panic!("not a platform");
        };
        assert_eq!(p.stack, vec![bottom, top]);
    }

    #[test]
    fn unknown_entry_kind_is_named() {
        let mut body = 1u64.to_be_bytes().to_vec();
        entry(&mut body, Digest::NULL, "fifo", 0o010644, 0, "p");
        body.extend_from_slice(&0u64.to_be_bytes());
        assert!(decode_manifest(&body).unwrap_err().contains("\"fifo\""));
    }
}
