//! Tags: `[org/]name[~N]` references and `.tag` stream files (SPFS-FORMAT.md §11).

use std::fmt;
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::{Result, SpfsError};
use super::legacy::Cursor;

/// A parsed tag reference: `[org/]name[~N]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TagSpec {
    org: Option<String>,
    name: String,
    version: usize,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl TagSpec {
    /// Parses `[org/]name[~N]`. The org may hold `/`; org components and the name use
    /// `[A-Za-z0-9._-]` and are never empty, `.` or `..`. `N` is decimal.
    pub fn parse(s: &str) -> Option<Self> {
        let (path, version) = match s.split_once('~') {
            Some((path, n)) => {
                if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (path, n.parse().ok()?)
            }
            None => (s, 0),
        };
        let (org, name) = match path.rsplit_once('/') {
            Some((org, name)) => (Some(org), name),
            None => (None, path),
        };
        if !valid_name(name) || !org.is_none_or(|o| o.split('/').all(valid_name)) {
            return None;
        }
        Some(TagSpec {
            org: org.map(str::to_owned),
            name: name.to_owned(),
            version,
        })
    }

    /// The org (`dev/nested/deep` in `dev/nested/deep/alias`), if any.
    pub fn org(&self) -> Option<&str> {
        self.org.as_deref()
    }

    /// The name (last component).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `N` of `~N`: 0 is the newest version.
    pub fn version(&self) -> usize {
        self.version
    }

    /// The tag path without the version: `org/name` or `name`.
    pub fn path(&self) -> String {
        match &self.org {
            Some(org) => format!("{org}/{}", self.name),
            None => self.name.clone(),
        }
    }

    /// The stream's file below a `tags/` directory: `org/name.tag`.
    pub fn rel_file(&self) -> PathBuf {
        let mut p = PathBuf::new();
        if let Some(org) = &self.org {
            p.extend(org.split('/'));
        }
        p.push(format!("{}.tag", self.name));
        p
    }
}

impl fmt::Display for TagSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())?;
        if self.version > 0 {
            write!(f, "~{}", self.version)?;
        }
        Ok(())
    }
}

/// One record of a tag stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRecord {
    /// The org (empty when the tag has none).
    pub org: String,
    /// The name.
    pub name: String,
    /// The tagged object.
    pub target: Digest,
    /// Who wrote it (`name@domain`).
    pub user: String,
    /// When, as RFC 3339 text.
    pub time: String,
    /// The digest of the previous head record (null for the first).
    pub parent: Digest,
    /// This record's digest: the SHA-256 of its payload.
    pub digest: Digest,
}

impl TagRecord {
    /// A record of these fields, its digest computed from them.
    pub fn new(
        org: &str,
        name: &str,
        target: Digest,
        user: &str,
        time: &str,
        parent: Digest,
    ) -> TagRecord {
        let mut record = TagRecord {
            org: org.to_owned(),
            name: name.to_owned(),
            target,
            user: user.to_owned(),
            time: time.to_owned(),
            parent,
            digest: Digest::NULL,
        };
        record.digest = Digest::of(&record.payload());
        record
    }

    /// The record's payload (SPFS-FORMAT.md §11.2), as [`parse_tag_file`] reads it: org,
    /// name, target, user, time, parent. Its SHA-256 is the record's digest.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(
            self.org.len() + self.name.len() + self.user.len() + self.time.len() + 68,
        );
        for s in [&self.org, &self.name] {
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(self.target.as_bytes());
        for s in [&self.user, &self.time] {
            p.extend_from_slice(s.as_bytes());
            p.push(0);
        }
        p.extend_from_slice(self.parent.as_bytes());
        p
    }

    /// The tag path: `org/name`, or `name` when the org is empty.
    pub fn path(&self) -> String {
        if self.org.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.org, self.name)
        }
    }
}

/// A tag stream file's bytes: `records`, oldest first, each framed by its length.
pub fn encode_tag_file<'a>(records: impl IntoIterator<Item = &'a TagRecord>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for r in records {
        let payload = r.payload();
        bytes.extend_from_slice(&(payload.len() as i64).to_be_bytes());
        bytes.extend_from_slice(&payload);
    }
    bytes
}

/// The largest record a reader accepts (a guard against hostile lengths).
const MAX_RECORD_LEN: u64 = 1 << 20;

/// Parses a tag stream file's bytes. Returns the records **newest first** (the file stores
/// them oldest first). Errors name `path`.
pub fn parse_tag_file(bytes: &[u8], path: &Path) -> Result<Vec<TagRecord>> {
    let corrupt = |reason: String| SpfsError::CorruptTag {
        path: path.to_owned(),
        reason,
    };
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let Some(len_bytes) = bytes.get(pos..pos + 8) else {
            return Err(corrupt(format!(
                "truncated: record length at offset {pos} runs past the end ({} bytes)",
                bytes.len()
            )));
        };
        let mut a = [0u8; 8];
        a.copy_from_slice(len_bytes);
        let len = i64::from_be_bytes(a);
        let record = u64::try_from(len)
            .ok()
            .filter(|&l| l <= MAX_RECORD_LEN)
            .and_then(|l| usize::try_from(l).ok())
            .and_then(|l| bytes.get(pos + 8..(pos + 8).checked_add(l)?))
            .ok_or_else(|| {
                corrupt(format!(
                    "bad length: record length {len} at offset {pos} does not fit in the file ({} bytes)",
                    bytes.len()
                ))
            })?;
        records.push(
            parse_record(record).map_err(|r| corrupt(format!("record at offset {pos}: {r}")))?,
        );
        pos += 8 + record.len();
    }
    records.reverse();
    Ok(records)
}

fn parse_record(payload: &[u8]) -> Result<TagRecord, String> {
    let mut c = Cursor::new(payload);
    let text = |b: &[u8], what: &str| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| format!("{what} is not UTF-8"))
    };
    let org = text(c.cstr("org")?, "org")?;
    let name = text(c.cstr("name")?, "name")?;
    let target = c.digest("target")?;
    let user = text(c.cstr("user")?, "user")?;
    let time = text(c.cstr("time")?, "time")?;
    let parent = c.digest("parent")?;
    c.finish()?;
    Ok(TagRecord {
        org,
        name,
        target,
        user,
        time,
        parent,
        digest: Digest::of(payload),
    })
}

/// Lists the tag paths below a `tags/` directory (sorted), skipping `*#ns` namespace
/// directories, `*.tag.lock` and `*.tag.work`.
pub(crate) fn list_tags(tags_dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    walk(tags_dir, "", &mut out, 0)?;
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>, depth: usize) -> Result<()> {
    // Deep nesting is legal but unusual; the bound only stops symlink loops.
    if depth > 64 {
        return Ok(());
    }
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SpfsError::io(dir, e)),
    };
    for entry in read {
        let entry = entry.map_err(|e| SpfsError::io(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        if path.is_dir() {
            if name.ends_with("#ns") {
                continue;
            }
            walk(&path, &format!("{prefix}{name}/"), out, depth + 1)?;
        } else if let Some(stem) = name.strip_suffix(".tag") {
            out.push(format!("{prefix}{stem}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tag_specs() {
        let t = TagSpec::parse("dev/nested/deep/alias~2").unwrap();
        assert_eq!(t.org(), Some("dev/nested/deep"));
        assert_eq!(t.name(), "alias");
        assert_eq!(t.version(), 2);
        assert_eq!(t.rel_file(), PathBuf::from("dev/nested/deep/alias.tag"));
        assert_eq!(t.to_string(), "dev/nested/deep/alias~2");
        let t = TagSpec::parse("toplevel").unwrap();
        assert_eq!((t.org(), t.version()), (None, 0));
        assert_eq!(t.rel_file(), PathBuf::from("toplevel.tag"));
    }

    #[test]
    fn rejects_bad_tag_specs() {
        for bad in [
            "",
            "~1",
            "a~",
            "a~x",
            "a~-1",
            "/a",
            "a/",
            "a//b",
            "../a",
            "a/..",
            "a b",
            "team#ns/a",
            "a~1~2",
        ] {
            assert_eq!(TagSpec::parse(bad), None, "{bad}");
        }
    }

    fn record(org: &str, name: &str, target: Digest, parent: Digest) -> Vec<u8> {
        let r = TagRecord::new(
            org,
            name,
            target,
            "dev@fixtures.local",
            "2026-11-22T07:37:14.515250+00:00",
            parent,
        );
        encode_tag_file([&r])
    }

    #[test]
    fn records_come_back_newest_first() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let mut file = record("", "t", a, Digest::NULL);
        let first = Digest::of(&file[8..]);
        file.extend(record("", "t", b, first));
        let r = parse_tag_file(&file, Path::new("t.tag")).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].target, b);
        assert_eq!(r[0].parent, first);
        assert_eq!(r[1].digest, first);
        assert_eq!(r[1].org, "");
    }

    #[test]
    fn truncated_and_negative_lengths_are_errors_naming_the_file() {
        let file = record("dev", "t", Digest::of(b"a"), Digest::NULL);
        for len in 1..file.len() {
            let err = parse_tag_file(&file[..len], Path::new("tags/dev/t.tag")).unwrap_err();
            assert!(err.to_string().contains("tags/dev/t.tag"), "{err}");
        }
        let neg = (-1i64).to_be_bytes();
        let err = parse_tag_file(&neg, Path::new("x.tag")).unwrap_err();
        assert!(err.to_string().contains("bad length"), "{err}");
    }
}
