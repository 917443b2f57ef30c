//! A whole-repository check: what a reader needs to trust every object, payload and tag
//! (after a commit was stopped anywhere, nothing a reader can reach may be half-written).

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::digest::{Digest, digest_from_parts};
use super::error::{Result, SpfsError};
use super::manifest::EntryKind;
use super::object::{self, DecodeOptions, Object};
use super::repo::Repository;
use super::tag::parse_tag_file;

/// What [`Repository::check`] found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Objects checked.
    pub objects: usize,
    /// Payloads checked.
    pub payloads: usize,
    /// Tag stream files checked (every namespace).
    pub tag_streams: usize,
    /// Everything wrong, each naming its file (empty: the repository is sound).
    pub problems: Vec<SpfsError>,
}

impl CheckReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Lists `dir/XX/REST` files named by digests (skipping `work/`, `proxy/` and anything else).
fn stored_digests(dir: &Path) -> Result<Vec<(Digest, PathBuf)>> {
    let mut out = Vec::new();
    let top = match fs::read_dir(dir) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(SpfsError::io(dir, e)),
    };
    for sub in top {
        let sub = sub.map_err(|e| SpfsError::io(dir, e))?;
        let Ok(prefix) = sub.file_name().into_string() else {
            continue;
        };
        if prefix.len() != 2 || !sub.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = sub.path();
        for f in fs::read_dir(&path).map_err(|e| SpfsError::io(&path, e))? {
            let f = f.map_err(|e| SpfsError::io(&path, e))?;
            if let Some(d) = f
                .file_name()
                .to_str()
                .and_then(|rest| digest_from_parts(&prefix, rest))
            {
                out.push((d, f.path()));
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The SHA-256 and length of a file, read in large chunks.
fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((Digest::from_bytes(h.finalize().into()), len))
}

fn tag_files(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    if depth > 64 {
        return Ok(());
    }
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SpfsError::io(dir, e)),
    };
    for entry in read {
        let entry = entry.map_err(|e| SpfsError::io(dir, e))?;
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            tag_files(&path, out, depth + 1)?;
        } else if path.extension().is_some_and(|e| e == "tag") {
            out.push(path);
        }
    }
    Ok(())
}

impl Repository {
    /// Checks the whole repository: every object decodes and hashes to its name (a blob's
    /// payload exists with the recorded size), every payload hashes to its name, every
    /// object a layer, platform or manifest refers to exists (a manifest's files and
    /// symlinks: their payloads), and every tag stream (all namespaces) parses and its
    /// targets exist. Temporary files (`work/`, `*.tag.work`, `*.tag.lock`) are ignored:
    /// spfs leaves them too when it is killed. Errors only when a directory cannot be read.
    pub fn check(&self) -> Result<CheckReport> {
        let mut report = CheckReport::default();
        let objects = stored_digests(&self.root().join("objects"))?;
        let payloads = stored_digests(&self.root().join("payloads"))?;
        let have_object: HashSet<Digest> = objects.iter().map(|o| o.0).collect();
        let have_payload: HashSet<Digest> = payloads.iter().map(|p| p.0).collect();
        let missing = |path: &Path, what: String| SpfsError::CorruptObject {
            path: path.to_owned(),
            reason: what,
        };
        for (digest, path) in &objects {
            report.objects += 1;
            let bytes = match fs::read(path) {
                Ok(b) => b,
                Err(e) => {
                    report.problems.push(SpfsError::io(path, e));
                    continue;
                }
            };
            let opts = DecodeOptions {
                verify: Some(*digest),
            };
            let object = match object::decode(&bytes, path, *digest, opts) {
                Ok((_, o)) => o,
                Err(e) => {
                    report.problems.push(e);
                    continue;
                }
            };
            let mut need_object = |d: &Digest, what: &str| {
                if !have_object.contains(d) {
                    report.problems.push(missing(
                        path,
                        format!("refers to {what} {d}, which is missing"),
                    ));
                }
            };
            match &object {
                Object::Blob(b) => {
                    let payload = self.payload_path(&b.payload);
                    match fs::symlink_metadata(&payload) {
                        Ok(m) if m.len() == b.size => {}
                        Ok(m) => report.problems.push(missing(
                            path,
                            format!("records size {}, its payload has {}", b.size, m.len()),
                        )),
                        Err(_) => report.problems.push(missing(
                            path,
                            format!("its payload {} is missing", payload.display()),
                        )),
                    }
                }
                Object::Layer(l) => {
                    if let Some(m) = &l.manifest {
                        need_object(m, "manifest");
                    }
                }
                Object::Platform(p) => {
                    for d in &p.stack {
                        need_object(d, "stack item");
                    }
                }
                Object::Manifest(m) => {
                    for e in m.entries() {
                        if matches!(e.kind(), EntryKind::File | EntryKind::Symlink)
                            && !have_payload.contains(&e.digest())
                        {
                            let name = String::from_utf8_lossy(m.name(e)).into_owned();
                            report.problems.push(missing(
                                path,
                                format!(
                                    "entry {name:?} refers to payload {}, which is missing",
                                    e.digest()
                                ),
                            ));
                        }
                    }
                }
            }
        }
        for (digest, path) in &payloads {
            report.payloads += 1;
            match hash_file(path) {
                Ok((actual, _)) if actual == *digest => {}
                Ok((actual, _)) => report.problems.push(SpfsError::DigestMismatch {
                    path: path.clone(),
                    actual,
                }),
                Err(e) => report.problems.push(SpfsError::io(path, e)),
            }
        }
        let mut tags = Vec::new();
        tag_files(&self.root().join("tags"), &mut tags, 0)?;
        tags.sort();
        for path in tags {
            report.tag_streams += 1;
            let records = match fs::read(&path) {
                Ok(b) => parse_tag_file(&b, &path),
                Err(e) => Err(SpfsError::io(&path, e)),
            };
            match records {
                Ok(records) => {
                    for r in records {
                        if !have_object.contains(&r.target) {
                            report.problems.push(SpfsError::CorruptTag {
                                path: path.clone(),
                                reason: format!("a version targets {}, which is missing", r.target),
                            });
                        }
                    }
                }
                Err(e) => report.problems.push(e),
            }
        }
        Ok(report)
    }
}
