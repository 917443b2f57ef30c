//! The FlatBuffers object encoding (SPFS-FORMAT.md §8), with a schema written by hand from
//! the format notes in the shape `flatc` would generate: one accessor type per table, a
//! [`Verifiable`] impl per table that checks exactly what the accessors read, and the
//! builders the writer uses (field order as spfs's generated code pushes them).
//!
//! Every buffer is checked by the `flatbuffers` verifier ([`flatbuffers::root_with_opts`])
//! before any accessor runs; the accessors' `unsafe` blocks rely on that.
//!
//! Schema (field ids in brackets):
//!
//! ```text
//! struct Digest { bytes: [u8; 32] }
//! enum EntryKind: u8 { Blob = 0, Tree = 4, Mask = 5 }
//! union Object { Platform = 1, Layer = 2, Manifest = 3, Blob = 4 }
//! union AnnotationValue { AnnotationString = 1, AnnotationDigest = 2 }
//! table AnyObject { object_type [0]: u8; object [1]: Object (required) }
//! table Platform { layers [0]: [Digest] (required) }
//! table Layer { manifest [0]: Digest; annotations [1]: [Annotation] (required) }
//! table Manifest { trees [0]: [Tree] (required) }
//! table Blob { size [0]: u64; payload [1]: Digest (required) }
//! table Tree { entries [0]: [Entry] (required) }
//! table Entry { kind [0]: EntryKind; object [1]: Digest (required); mode [2]: u32;
//!               size [3]: u64; name [4]: string (required) }
//! table Annotation { key [0]: string (required); data_type [1]: u8; data [2]: AnnotationValue (required) }
//! table AnnotationString { data [0]: string (required) }
//! table AnnotationDigest { digest [0]: Digest (required) }
//! ```

use flatbuffers::{
    Follow, ForwardsUOffset, InvalidFlatbuffer, Push, SimpleToVerifyInSlice, Table, VOffsetT,
    Vector, Verifiable, Verifier, VerifierOptions,
};

use super::digest::{DIGEST_SIZE, Digest};
use super::manifest::{RAW_BLOB, RAW_MASK, RAW_TREE, RawEntry, RawManifest};
use super::object::{Annotation, AnnotationValue, Blob, Layer, Object, ObjectKind, Platform};

/// The vtable offset of field id `i`.
const fn field(i: u16) -> VOffsetT {
    4 + 2 * i
}

/// `Object` union tags (different numbers from the header's kind byte).
mod tag {
    pub const PLATFORM: u8 = 1;
    pub const LAYER: u8 = 2;
    pub const MANIFEST: u8 = 3;
    pub const BLOB: u8 = 4;
    pub const ANNOTATION_STRING: u8 = 1;
    pub const ANNOTATION_DIGEST: u8 = 2;
}

fn union_tag(kind: ObjectKind) -> u8 {
    match kind {
        ObjectKind::Platform => tag::PLATFORM,
        ObjectKind::Layer => tag::LAYER,
        ObjectKind::Manifest => tag::MANIFEST,
        ObjectKind::Blob => tag::BLOB,
    }
}

/// The `Digest` struct: 32 bytes inline, alignment 1.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FbDigest(pub [u8; DIGEST_SIZE]);

impl<'a> Follow<'a> for FbDigest {
    type Inner = Digest;

    unsafe fn follow(buf: &'a [u8], loc: usize) -> Digest {
        // Bounds-checked even though the verifier already checked the range.
        buf.get(loc..loc.saturating_add(DIGEST_SIZE))
            .and_then(Digest::from_slice)
            .unwrap_or(Digest::NULL)
    }
}

impl Verifiable for FbDigest {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.in_buffer::<Self>(pos)
    }
}

impl SimpleToVerifyInSlice for FbDigest {}

impl Push for FbDigest {
    type Output = FbDigest;

    unsafe fn push(&self, dst: &mut [u8], _written_len: usize) {
        if let Some(dst) = dst.get_mut(..DIGEST_SIZE) {
            dst.copy_from_slice(&self.0);
        }
    }
}

/// Declares a table accessor type: a `Table` wrapper with `Follow`.
macro_rules! table {
    ($name:ident) => {
        #[derive(Clone, Copy)]
        struct $name<'a> {
            tab: Table<'a>,
        }

        impl<'a> Follow<'a> for $name<'a> {
            type Inner = $name<'a>;

            unsafe fn follow(buf: &'a [u8], loc: usize) -> Self {
                // SAFETY: `Follow::follow`'s contract: the caller guarantees a table at `loc`
                // (here: the verifier checked it).
                let tab = unsafe { Table::new(buf, loc) };
                $name { tab }
            }
        }
    };
}

table!(AnyObject);
table!(FbPlatform);
table!(FbLayer);
table!(FbManifest);
table!(FbBlob);
table!(FbTree);
table!(FbEntry);
table!(FbAnnotation);
table!(FbAnnotationString);
table!(FbAnnotationDigest);

type Offset<T> = ForwardsUOffset<T>;
type Tables<'a, T> = Offset<Vector<'a, Offset<T>>>;

impl Verifiable for AnyObject<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_union::<u8, _>(
                "object_type",
                field(0),
                "object",
                field(1),
                true,
                |key, v, pos| match key {
                    tag::PLATFORM => v.verify_union_variant::<Offset<FbPlatform>>("Platform", pos),
                    tag::LAYER => v.verify_union_variant::<Offset<FbLayer>>("Layer", pos),
                    tag::MANIFEST => v.verify_union_variant::<Offset<FbManifest>>("Manifest", pos),
                    tag::BLOB => v.verify_union_variant::<Offset<FbBlob>>("Blob", pos),
                    // Unknown tags are rejected by `object_table` before anything reads them.
                    _ => Ok(()),
                },
            )?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbPlatform<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Offset<Vector<'_, FbDigest>>>("layers", field(0), true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbLayer<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<FbDigest>("manifest", field(0), false)?
            .visit_field::<Tables<'_, FbAnnotation>>("annotations", field(1), true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbManifest<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Tables<'_, FbTree>>("trees", field(0), true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbBlob<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u64>("size", field(0), false)?
            .visit_field::<FbDigest>("payload", field(1), true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbTree<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Tables<'_, FbEntry>>("entries", field(0), true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbEntry<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<u8>("kind", field(0), false)?
            .visit_field::<FbDigest>("object", field(1), true)?
            .visit_field::<u32>("mode", field(2), false)?
            .visit_field::<u64>("size", field(3), false)?
            .visit_field::<Offset<&str>>("name", field(4), true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbAnnotation<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Offset<&str>>("key", field(0), true)?
            .visit_union::<u8, _>(
                "data_type",
                field(1),
                "data",
                field(2),
                true,
                |key, v, pos| match key {
                    tag::ANNOTATION_STRING => v.verify_union_variant::<Offset<FbAnnotationString>>(
                        "AnnotationString",
                        pos,
                    ),
                    tag::ANNOTATION_DIGEST => v.verify_union_variant::<Offset<FbAnnotationDigest>>(
                        "AnnotationDigest",
                        pos,
                    ),
                    _ => Ok(()),
                },
            )?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbAnnotationString<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<Offset<&str>>("data", field(0), true)?
            .finish();
        Ok(())
    }
}

impl Verifiable for FbAnnotationDigest<'_> {
    fn run_verifier(v: &mut Verifier, pos: usize) -> Result<(), InvalidFlatbuffer> {
        v.visit_table(pos)?
            .visit_field::<FbDigest>("digest", field(0), true)?
            .finish();
        Ok(())
    }
}

// Accessors. Each `unsafe` block reads a field whose type the table's `Verifiable` impl above
// checked, on a buffer that `verified_root` ran the verifier over.

impl<'a> AnyObject<'a> {
    fn object_type(&self) -> u8 {
        // SAFETY: verified as `u8` by `AnyObject::run_verifier`.
        unsafe { self.tab.get::<u8>(field(0), Some(0)) }.unwrap_or(0)
    }

    fn object(&self) -> Option<Table<'a>> {
        // SAFETY: verified as an offset to the table the union tag names.
        unsafe { self.tab.get::<Offset<Table<'a>>>(field(1), None) }
    }
}

impl<'a> FbPlatform<'a> {
    fn layers(&self) -> Option<Vector<'a, FbDigest>> {
        // SAFETY: verified as a vector of `Digest` structs.
        unsafe { self.tab.get::<Offset<Vector<'a, FbDigest>>>(field(0), None) }
    }
}

impl<'a> FbLayer<'a> {
    fn manifest(&self) -> Option<Digest> {
        // SAFETY: verified as an inline `Digest` struct.
        unsafe { self.tab.get::<FbDigest>(field(0), None) }
    }

    fn annotations(&self) -> Option<Vector<'a, Offset<FbAnnotation<'a>>>> {
        // SAFETY: verified as a vector of `Annotation` tables.
        unsafe {
            self.tab
                .get::<Offset<Vector<'a, Offset<FbAnnotation<'a>>>>>(field(1), None)
        }
    }
}

impl<'a> FbManifest<'a> {
    fn trees(&self) -> Option<Vector<'a, Offset<FbTree<'a>>>> {
        // SAFETY: verified as a vector of `Tree` tables.
        unsafe {
            self.tab
                .get::<Offset<Vector<'a, Offset<FbTree<'a>>>>>(field(0), None)
        }
    }
}

impl FbBlob<'_> {
    fn size(&self) -> u64 {
        // SAFETY: verified as `u64`.
        unsafe { self.tab.get::<u64>(field(0), Some(0)) }.unwrap_or(0)
    }

    fn payload(&self) -> Option<Digest> {
        // SAFETY: verified as an inline `Digest` struct.
        unsafe { self.tab.get::<FbDigest>(field(1), None) }
    }
}

impl<'a> FbTree<'a> {
    fn entries(&self) -> Option<Vector<'a, Offset<FbEntry<'a>>>> {
        // SAFETY: verified as a vector of `Entry` tables.
        unsafe {
            self.tab
                .get::<Offset<Vector<'a, Offset<FbEntry<'a>>>>>(field(0), None)
        }
    }
}

impl<'a> FbEntry<'a> {
    fn kind(&self) -> u8 {
        // SAFETY: verified as `u8`.
        unsafe { self.tab.get::<u8>(field(0), Some(RAW_BLOB)) }.unwrap_or(RAW_BLOB)
    }

    fn object(&self) -> Option<Digest> {
        // SAFETY: verified as an inline `Digest` struct.
        unsafe { self.tab.get::<FbDigest>(field(1), None) }
    }

    fn mode(&self) -> u32 {
        // SAFETY: verified as `u32`.
        unsafe { self.tab.get::<u32>(field(2), Some(0)) }.unwrap_or(0)
    }

    fn size(&self) -> u64 {
        // SAFETY: verified as `u64`.
        unsafe { self.tab.get::<u64>(field(3), Some(0)) }.unwrap_or(0)
    }

    fn name(&self) -> Option<&'a str> {
        // SAFETY: verified as an offset to a UTF-8 string.
        unsafe { self.tab.get::<Offset<&'a str>>(field(4), None) }
    }
}

impl<'a> FbAnnotation<'a> {
    fn key(&self) -> Option<&'a str> {
        // SAFETY: verified as an offset to a UTF-8 string.
        unsafe { self.tab.get::<Offset<&'a str>>(field(0), None) }
    }

    fn data_type(&self) -> u8 {
        // SAFETY: verified as `u8`.
        unsafe { self.tab.get::<u8>(field(1), Some(0)) }.unwrap_or(0)
    }

    fn data(&self) -> Option<Table<'a>> {
        // SAFETY: verified as an offset to the table `data_type` names.
        unsafe { self.tab.get::<Offset<Table<'a>>>(field(2), None) }
    }
}

/// Runs the verifier over the whole buffer and returns its root. The limits scale with the
/// buffer: every table takes at least 4 bytes, so a valid buffer never hits `max_tables`.
fn verified_root(body: &[u8]) -> Result<AnyObject<'_>, String> {
    let opts = VerifierOptions {
        max_tables: body.len() / 4 + 16,
        ..VerifierOptions::default()
    };
    flatbuffers::root_with_opts::<AnyObject<'_>>(&opts, body).map_err(|e| match e {
        InvalidFlatbuffer::RangeOutOfBounds { .. }
        | InvalidFlatbuffer::SignedOffsetOutOfBounds { .. } => {
            format!("truncated or bad length: {e}")
        }
        _ => format!("invalid FlatBuffer: {e}"),
    })
}

/// The verified root's object table, checked against the header kind.
fn object_table(body: &[u8], kind: ObjectKind) -> Result<Table<'_>, String> {
    let root = verified_root(body)?;
    let found = root.object_type();
    if found != union_tag(kind) {
        return Err(format!(
            "the header says {kind} but the FlatBuffer holds union tag {found} (expected {})",
            union_tag(kind)
        ));
    }
    root.object()
        .ok_or_else(|| "the FlatBuffer holds no object".to_owned())
}

fn missing(what: &str) -> String {
    format!("required field {what} is missing")
}

/// Decodes a blob, layer or platform body.
pub(crate) fn decode_small(body: &[u8], kind: ObjectKind) -> Result<Object, String> {
    let tab = object_table(body, kind)?;
    Ok(match kind {
        ObjectKind::Blob => {
            let blob = FbBlob { tab };
            Object::Blob(Blob {
                payload: blob.payload().ok_or_else(|| missing("Blob.payload"))?,
                size: blob.size(),
            })
        }
        ObjectKind::Platform => {
            let layers = FbPlatform { tab }
                .layers()
                .ok_or_else(|| missing("Platform.layers"))?;
            Object::Platform(Platform {
                stack: layers.iter().collect(),
            })
        }
        ObjectKind::Layer => {
            let layer = FbLayer { tab };
            let mut annotations = Vec::new();
            for a in layer.annotations().into_iter().flatten() {
                let key = a.key().ok_or_else(|| missing("Annotation.key"))?.to_owned();
                // The verifier checks the `data` offset only for the known value types, so
                // the type is checked before the offset is followed.
                let data_type = a.data_type();
                if !matches!(data_type, tag::ANNOTATION_STRING | tag::ANNOTATION_DIGEST) {
                    return Err(format!(
                        "annotation {key:?} has unknown value type {data_type}"
                    ));
                }
                let data = a.data().ok_or_else(|| missing("Annotation.data"))?;
                let value = if data_type == tag::ANNOTATION_STRING {
                    AnnotationValue::String(
                        FbAnnotationString { tab: data }
                            .data()
                            .ok_or_else(|| missing("AnnotationString.data"))?
                            .to_owned(),
                    )
                } else {
                    AnnotationValue::Digest(
                        FbAnnotationDigest { tab: data }
                            .digest()
                            .ok_or_else(|| missing("AnnotationDigest.digest"))?,
                    )
                };
                annotations.push(Annotation { key, value });
            }
            Object::Layer(Layer {
                manifest: layer.manifest(),
                annotations,
            })
        }
        ObjectKind::Manifest => return Err("internal: manifest decoded as small".into()),
    })
}

impl<'a> FbAnnotationString<'a> {
    fn data(&self) -> Option<&'a str> {
        // SAFETY: verified as an offset to a UTF-8 string.
        unsafe { self.tab.get::<Offset<&'a str>>(field(0), None) }
    }
}

impl FbAnnotationDigest<'_> {
    fn digest(&self) -> Option<Digest> {
        // SAFETY: verified as an inline `Digest` struct.
        unsafe { self.tab.get::<FbDigest>(field(0), None) }
    }
}

/// Decodes a manifest body into its stored trees.
pub(crate) fn decode_manifest(body: &[u8]) -> Result<RawManifest<'_>, String> {
    let tab = object_table(body, ObjectKind::Manifest)?;
    let trees = FbManifest { tab }
        .trees()
        .ok_or_else(|| missing("Manifest.trees"))?;
    let mut m = RawManifest::default();
    m.trees.reserve(trees.len());
    for tree in trees.iter() {
        let entries = tree.entries().ok_or_else(|| missing("Tree.entries"))?;
        let start = m.entries.len();
        m.entries.reserve(entries.len());
        for e in entries.iter() {
            let kind = e.kind();
            if !matches!(kind, RAW_BLOB | RAW_TREE | RAW_MASK) {
                return Err(format!("unknown entry kind {kind}"));
            }
            m.entries.push(RawEntry {
                name: e.name().ok_or_else(|| missing("Entry.name"))?.as_bytes(),
                kind,
                object: e.object().ok_or_else(|| missing("Entry.object"))?,
                mode: e.mode(),
                size: e.size(),
            });
        }
        m.trees.push(start..m.entries.len());
    }
    Ok(m)
}

// ---------------------------------------------------------------------------------------------
// Writing, byte for byte as spfs 0.44 writes.
//
// spfs builds every object with `flatc`'s generated `create` functions, which push a table's
// fields largest first (8-byte scalars, then 4-byte fields: offsets, the `Digest` struct and
// u32s; then bytes), each size class in reverse declaration order (flatc's `sortbysize`
// with `ForAllTableFields(..., reverse)`). Checked against the fixtures' bytes: an Entry
// holds size at +44, name +40, mode +36, object +4 (storage/tests/writer.rs compares every
// object spfs wrote). Each object gets a fresh builder: spfs resets its thread-local one,
// which also resets the alignment `finish_minimal` pads to.

pub(crate) use write::{EncodeEntry, ManifestBuilder, Wip, encode_small};
#[cfg(any(test, feature = "testing"))]
pub(crate) use write::{encode_manifest, entry_kind_byte};

mod write {
    use super::*;
    use flatbuffers::{FlatBufferBuilder, TableFinishedWIPOffset, UnionWIPOffset, WIPOffset};

    /// One entry to encode.
    #[derive(Clone, Copy, Debug)]
    pub(crate) struct EncodeEntry<'a> {
        pub name: &'a str,
        pub kind: u8,
        pub object: Digest,
        pub mode: u32,
        pub size: u64,
    }

    /// The stored `EntryKind` byte of a manifest entry kind.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn entry_kind_byte(kind: crate::manifest::EntryKind) -> u8 {
        use crate::manifest::EntryKind;
        match kind {
            EntryKind::File | EntryKind::Symlink => RAW_BLOB,
            EntryKind::Dir => RAW_TREE,
            EntryKind::Mask => RAW_MASK,
        }
    }

    /// `AnyObject::create` then `finish_minimal`: the object offset (4 bytes) is pushed
    /// before the union tag (1 byte).
    pub(super) fn finish(
        fbb: &mut FlatBufferBuilder<'_>,
        kind: ObjectKind,
        object: WIPOffset<UnionWIPOffset>,
    ) -> Vec<u8> {
        let start = fbb.start_table();
        fbb.push_slot_always(field(1), object);
        fbb.push_slot::<u8>(field(0), union_tag(kind), 0);
        let root = fbb.end_table(start);
        fbb.finish_minimal(root);
        fbb.finished_data().to_vec()
    }

    /// Encodes a FlatBuffers object body (without the header).
    pub(crate) fn encode_small(object: &Object) -> Vec<u8> {
        let mut fbb = FlatBufferBuilder::new();
        match object {
            Object::Blob(b) => {
                let start = fbb.start_table();
                fbb.push_slot::<u64>(field(0), b.size, 0);
                fbb.push_slot_always(field(1), FbDigest(*b.payload.as_bytes()));
                let t = fbb.end_table(start);
                finish(&mut fbb, ObjectKind::Blob, t.as_union_value())
            }
            Object::Platform(p) => {
                let digests: Vec<FbDigest> =
                    p.stack.iter().map(|d| FbDigest(*d.as_bytes())).collect();
                let layers = fbb.create_vector(&digests);
                let start = fbb.start_table();
                fbb.push_slot_always(field(0), layers);
                let t = fbb.end_table(start);
                finish(&mut fbb, ObjectKind::Platform, t.as_union_value())
            }
            Object::Layer(l) => {
                let mut annotations = Vec::new();
                for a in &l.annotations {
                    // spfs's LayerBuilder: the key string, then the value table, then the
                    // Annotation (data, key, then the 1-byte data_type).
                    let key = fbb.create_string(&a.key);
                    let (ty, value) = match &a.value {
                        AnnotationValue::String(s) => {
                            let s = fbb.create_string(s);
                            let start = fbb.start_table();
                            fbb.push_slot_always(field(0), s);
                            (tag::ANNOTATION_STRING, fbb.end_table(start))
                        }
                        AnnotationValue::Digest(d) => {
                            let start = fbb.start_table();
                            fbb.push_slot_always(field(0), FbDigest(*d.as_bytes()));
                            (tag::ANNOTATION_DIGEST, fbb.end_table(start))
                        }
                    };
                    let start = fbb.start_table();
                    fbb.push_slot_always(field(2), value);
                    fbb.push_slot_always(field(0), key);
                    fbb.push_slot::<u8>(field(1), ty, 0);
                    annotations.push(fbb.end_table(start));
                }
                let annotations = fbb.create_vector(&annotations);
                let start = fbb.start_table();
                fbb.push_slot_always(field(1), annotations);
                if let Some(m) = l.manifest {
                    fbb.push_slot_always(field(0), FbDigest(*m.as_bytes()));
                }
                let t = fbb.end_table(start);
                finish(&mut fbb, ObjectKind::Layer, t.as_union_value())
            }
            Object::Manifest(_) => Vec::new(),
        }
    }

    /// Builds a manifest's FlatBuffer in the order the caller creates entries and trees, as
    /// spfs's `ManifestBuilder::build_from_entry` does (sub-trees before the tree holding
    /// them; trees spfs drops as duplicates still take their bytes in the buffer).
    pub(crate) struct ManifestBuilder<'f> {
        fbb: FlatBufferBuilder<'f>,
    }

    /// A tree or entry under construction in a [`ManifestBuilder`].
    pub(crate) type Wip = WIPOffset<TableFinishedWIPOffset>;

    impl ManifestBuilder<'_> {
        /// A builder with room for about `entries` entries.
        pub(crate) fn with_entries(entries: usize) -> Self {
            ManifestBuilder {
                fbb: FlatBufferBuilder::with_capacity(entries.saturating_mul(96).max(1024)),
            }
        }

        /// `Entry::build`: the name string, then the table (size, name, mode, object, kind).
        pub(crate) fn entry(&mut self, e: &EncodeEntry<'_>) -> Wip {
            let name = self.fbb.create_string(e.name);
            let start = self.fbb.start_table();
            self.fbb.push_slot::<u64>(field(3), e.size, 0);
            self.fbb.push_slot_always(field(4), name);
            self.fbb.push_slot::<u32>(field(2), e.mode, 0);
            self.fbb
                .push_slot_always(field(1), FbDigest(*e.object.as_bytes()));
            self.fbb.push_slot::<u8>(field(0), e.kind, 0);
            self.fbb.end_table(start)
        }

        /// A tree of already built entries, in the given order.
        pub(crate) fn tree(&mut self, entries: &[Wip]) -> Wip {
            let entries = self.fbb.create_vector(entries);
            let start = self.fbb.start_table();
            self.fbb.push_slot_always(field(0), entries);
            self.fbb.end_table(start)
        }

        /// The manifest body holding `trees` (the root first).
        pub(crate) fn finish(mut self, trees: &[Wip]) -> Vec<u8> {
            let trees = self.fbb.create_vector(trees);
            let start = self.fbb.start_table();
            self.fbb.push_slot_always(field(0), trees);
            let t = self.fbb.end_table(start);
            finish(&mut self.fbb, ObjectKind::Manifest, t.as_union_value())
        }
    }

    /// Encodes a FlatBuffers manifest body from its trees (`trees[0]` is the root), each tree
    /// built after the one before it (not spfs's order: for tests of the reader).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn encode_manifest(trees: &[Vec<EncodeEntry<'_>>]) -> Vec<u8> {
        let mut b = ManifestBuilder::with_entries(trees.iter().map(Vec::len).sum());
        let mut built = Vec::with_capacity(trees.len());
        let mut entries = Vec::new();
        for tree in trees {
            entries.clear();
            for e in tree {
                entries.push(b.entry(e));
            }
            built.push(b.tree(&entries));
        }
        b.finish(&built)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flatbuffers::FlatBufferBuilder;
    use write::finish;

    #[test]
    fn blob_round_trips() {
        let blob = Object::Blob(Blob {
            payload: Digest::of(b"x"),
            size: 24,
        });
        let body = encode_small(&blob);
        let Object::Blob(b) = decode_small(&body, ObjectKind::Blob).unwrap() else {
            panic!("not a blob");
        };
        assert_eq!(b.payload, Digest::of(b"x"));
        assert_eq!(b.size, 24);
    }

    #[test]
    fn kind_mismatch_is_named() {
        let body = encode_small(&Object::Platform(Platform { stack: vec![] }));
        let err = decode_small(&body, ObjectKind::Layer).unwrap_err();
        assert!(err.contains("header says layer"), "{err}");
    }

    #[test]
    fn annotated_layer_round_trips() {
        let layer = Layer {
            manifest: None,
            annotations: vec![
                Annotation {
                    key: "k".into(),
                    value: AnnotationValue::String("v".into()),
                },
                Annotation {
                    key: "big".into(),
                    value: AnnotationValue::Digest(Digest::of(b"big")),
                },
            ],
        };
        let body = encode_small(&Object::Layer(layer.clone()));
        let Object::Layer(l) = decode_small(&body, ObjectKind::Layer).unwrap() else {
            panic!("not a layer");
        };
        assert_eq!(l, layer);
    }

    #[test]
    fn an_unknown_annotation_type_is_an_error() {
        let mut fbb = FlatBufferBuilder::new();
        let key = fbb.create_string("k");
        let start = fbb.start_table();
        fbb.push_slot_always(field(0), FbDigest([7; DIGEST_SIZE]));
        let bogus = fbb.end_table(start);
        let start = fbb.start_table();
        fbb.push_slot_always(field(0), key);
        fbb.push_slot::<u8>(field(1), 9, 0);
        fbb.push_slot_always(field(2), bogus);
        let annotation = fbb.end_table(start);
        let annotations = fbb.create_vector(&[annotation]);
        let start = fbb.start_table();
        fbb.push_slot_always(field(1), annotations);
        let layer = fbb.end_table(start);
        let body = finish(&mut fbb, ObjectKind::Layer, layer.as_union_value());
        let err = decode_small(&body, ObjectKind::Layer).unwrap_err();
        assert!(err.contains("unknown value type 9"), "{err}");
    }

    #[test]
    fn an_unknown_entry_kind_is_an_error() {
        let trees = vec![vec![EncodeEntry {
            name: "fifo",
            kind: 1,
            object: Digest::NULL,
            mode: 0o010644,
            size: 0,
        }]];
        let err = decode_manifest(&encode_manifest(&trees)).unwrap_err();
        assert!(err.contains("unknown entry kind 1"), "{err}");
    }

    #[test]
    fn manifest_round_trips_with_defaults_omitted() {
        let trees = vec![vec![
            EncodeEntry {
                name: "f",
                kind: RAW_BLOB,
                object: Digest::of(b""),
                mode: 0o100644,
                size: 0,
            },
            EncodeEntry {
                name: "m",
                kind: RAW_MASK,
                object: Digest::NULL,
                mode: 0o020644,
                size: 0,
            },
        ]];
        let body = encode_manifest(&trees);
        let m = decode_manifest(&body).unwrap();
        assert_eq!(m.trees.len(), 1);
        assert_eq!(m.trees[0], 0..2);
        assert_eq!(m.entries[1].kind, RAW_MASK);
        assert_eq!(m.entries[0].mode, 0o100644);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_handled_without_panic() {
        let trees = vec![vec![EncodeEntry {
            name: "file",
            kind: RAW_BLOB,
            object: Digest::of(b"x"),
            mode: 0o100644,
            size: 1,
        }]];
        let body = encode_manifest(&trees);
        for len in 0..body.len() {
            let _ = decode_manifest(&body[..len]);
        }
        for i in 0..body.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut b = body.clone();
                b[i] ^= flip;
                let _ = decode_manifest(&b);
            }
        }
    }
}
