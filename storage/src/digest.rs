//! Digests: 32 raw bytes, written as 56 characters of padded upper-case base32
//! (SPFS-FORMAT.md §3), and the partial digests people type (§12.1).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use sha2::{Digest as _, Sha256};

use super::error::SpfsError;

/// Length of a digest in raw bytes.
pub const DIGEST_SIZE: usize = 32;

/// Length of a digest's string form, padding included.
pub const DIGEST_STRING_LEN: usize = 56;

/// Length of a digest's string form without its `====` padding.
const UNPADDED_LEN: usize = 52;

/// RFC 4648 base32 with `=` padding. Partial digests drop their last 2 or 4 bits, so trailing
/// bits are not checked (SPFS-FORMAT.md §12.2: `LM` decodes to the same byte as `LP`).
static BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    spec.padding = Some('=');
    spec.check_trailing_bits = false;
    spec.encoding()
        .unwrap_or_else(|_| data_encoding::BASE32.clone())
});

/// A SHA-256 digest naming an object, a payload, a tree or a tag record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; DIGEST_SIZE]);

impl Digest {
    /// The null digest (32 zero bytes): "no object".
    pub const NULL: Digest = Digest([0; DIGEST_SIZE]);

    /// A digest from its raw bytes.
    pub const fn from_bytes(bytes: [u8; DIGEST_SIZE]) -> Self {
        Digest(bytes)
    }

    /// A digest from a slice that must be exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; DIGEST_SIZE]>::try_from(bytes).ok().map(Digest)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; DIGEST_SIZE] {
        &self.0
    }

    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    /// Whether this is the null digest.
    pub fn is_null(&self) -> bool {
        self.0 == [0; DIGEST_SIZE]
    }

    /// Parses the full 56-character form (with `====`).
    pub fn parse(s: &str) -> Result<Self, SpfsError> {
        if s.len() != DIGEST_STRING_LEN || !s.ends_with("====") {
            return Err(SpfsError::InvalidDigest(s.to_owned()));
        }
        let bytes = BASE32
            .decode(s.as_bytes())
            .map_err(|_| SpfsError::InvalidDigest(s.to_owned()))?;
        Digest::from_slice(&bytes).ok_or_else(|| SpfsError::InvalidDigest(s.to_owned()))
    }

    /// The 56-character string form.
    pub fn to_base32(&self) -> String {
        BASE32.encode(&self.0)
    }

    /// The path of this digest below `objects/`, `payloads/` or a render store:
    /// `XX/REST`, the first 2 characters and the other 54.
    pub fn rel_path(&self) -> PathBuf {
        let s = self.to_base32();
        let (dir, file) = s.split_at(2);
        [dir, file].iter().collect()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base32())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_base32())
    }
}

impl FromStr for Digest {
    type Err = SpfsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

/// A digest prefix typed by a person: upper-case base32 with a length whose remainder mod 8
/// is 0, 2, 4, 5 or 7 (SPFS-FORMAT.md §12.1). Matching is on the decoded bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PartialDigest {
    text: String,
    bytes: Vec<u8>,
}

impl PartialDigest {
    /// Parses a prefix; `None` when `s` is not one (wrong characters or length).
    pub fn parse(s: &str) -> Option<Self> {
        if s.is_empty()
            || s.len() > UNPADDED_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
            || !matches!(s.len() % 8, 0 | 2 | 4 | 5 | 7)
        {
            return None;
        }
        let mut padded = s.to_owned();
        while !padded.len().is_multiple_of(8) {
            padded.push('=');
        }
        let bytes = BASE32.decode(padded.as_bytes()).ok()?;
        if bytes.is_empty() {
            return None;
        }
        Some(PartialDigest {
            text: s.to_owned(),
            bytes,
        })
    }

    /// The prefix as typed.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The decoded prefix bytes (trailing partial bits dropped).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether `digest` starts with these bytes.
    pub fn matches(&self, digest: &Digest) -> bool {
        digest.as_bytes().starts_with(&self.bytes)
    }

    /// The full digest, when the prefix has all 32 bytes (52 characters, unpadded).
    pub fn as_full(&self) -> Option<Digest> {
        Digest::from_slice(&self.bytes)
    }

    /// Whether a 2-character object directory name (the first 10 bits of a digest) can hold
    /// digests with this prefix.
    pub(crate) fn may_be_in_dir(&self, dir: &str) -> bool {
        let Some(bits) = dir_bits(dir) else {
            return false;
        };
        // The prefix's first 16 bits (or 8), compared on the first min(10, known) bits.
        let known = (self.bytes.len() * 8).min(10);
        let prefix_bits = if self.bytes.len() >= 2 {
            (u16::from(self.bytes[0]) << 2) | (u16::from(self.bytes[1]) >> 6)
        } else {
            u16::from(self.bytes[0]) << 2
        };
        let shift = 10 - known;
        (bits >> shift) == (prefix_bits >> shift)
    }
}

impl fmt::Display for PartialDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for PartialDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartialDigest({})", self.text)
    }
}

/// The 10 bits that a 2-character directory name under `objects/` stands for.
fn dir_bits(dir: &str) -> Option<u16> {
    let b = dir.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let value = |c: u8| -> Option<u16> {
        match c {
            b'A'..=b'Z' => Some(u16::from(c - b'A')),
            b'2'..=b'7' => Some(u16::from(c - b'2') + 26),
            _ => None,
        }
    };
    Some((value(b[0])? << 5) | value(b[1])?)
}

/// Parses an `objects/XX/REST` pair of names back into a digest.
pub(crate) fn digest_from_parts(dir: &str, file: &str) -> Option<Digest> {
    if dir.len() != 2 || file.len() != DIGEST_STRING_LEN - 2 {
        return None;
    }
    let mut s = String::with_capacity(DIGEST_STRING_LEN);
    s.push_str(dir);
    s.push_str(file);
    Digest::parse(&s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "4OYMIQUY7QOBJGX36TEJS35ZEQT24QPEMSNZGTFESWMRW6CSXBKQ====";
    const LOWER: &str = "LP6F6D2L67ZHTED35ICWVMTTAQNGYMPTRFHXTDZLAHVEG34TBLAQ====";

    #[test]
    fn digest_of_empty_content_matches_the_format_doc() {
        assert_eq!(Digest::of(b"").to_base32(), EMPTY);
        assert_eq!(Digest::parse(EMPTY).unwrap(), Digest::of(b""));
    }

    #[test]
    fn null_digest_string() {
        assert_eq!(
            Digest::NULL.to_base32(),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA===="
        );
        assert!(Digest::NULL.is_null());
    }

    #[test]
    fn path_is_two_characters_then_the_rest() {
        let d = Digest::parse(LOWER).unwrap();
        assert_eq!(
            d.rel_path(),
            PathBuf::from("LP/6F6D2L67ZHTED35ICWVMTTAQNGYMPTRFHXTDZLAHVEG34TBLAQ====")
        );
        assert_eq!(
            digest_from_parts(
                "LP",
                "6F6D2L67ZHTED35ICWVMTTAQNGYMPTRFHXTDZLAHVEG34TBLAQ===="
            ),
            Some(d)
        );
        assert_eq!(digest_from_parts("work", "x"), None);
    }

    #[test]
    fn bad_full_digests_are_errors_naming_the_input() {
        for bad in ["", "LP6F", &LOWER[..52], &LOWER.to_lowercase(), "!!!!"] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(
                matches!(&err, SpfsError::InvalidDigest(s) if s == bad),
                "{err}"
            );
        }
    }

    #[test]
    fn partial_lengths_follow_the_format_rules() {
        for ok in ["LP", "LP6F", "LP6F6", "LP6F6D2", "LP6F6D2L"] {
            assert!(PartialDigest::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "L", "LP6", "AXTK62", "lp6f", "LP6F=", "dev/x", "LP01"] {
            assert!(PartialDigest::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn partial_matches_on_bytes_not_characters() {
        let d = Digest::parse(LOWER).unwrap();
        let lm = PartialDigest::parse("LM").unwrap();
        assert!(lm.matches(&d), "LM and LP share their first byte");
        assert!(PartialDigest::parse("LP6F").unwrap().matches(&d));
        assert!(!PartialDigest::parse("LQ").unwrap().matches(&d));
        let full = PartialDigest::parse(&LOWER[..52]).unwrap();
        assert_eq!(full.as_full(), Some(d));
    }

    #[test]
    fn partial_directory_filter_agrees_with_matching() {
        let d = Digest::parse(LOWER).unwrap();
        for p in ["LM", "LP", "LP6F", "LP6F6D2L"] {
            let p = PartialDigest::parse(p).unwrap();
            assert!(p.may_be_in_dir("LP"), "{p}");
            assert!(!p.may_be_in_dir("AB"), "{p}");
            assert!(p.matches(&d));
        }
        // "LM" has only its first 8 bits: any of LM, LN, LO, LP.
        let lm = PartialDigest::parse("LM").unwrap();
        assert!(lm.may_be_in_dir("LN"));
        assert!(!lm.may_be_in_dir("LQ"));
        assert!(!lm.may_be_in_dir("work"));
    }
}
