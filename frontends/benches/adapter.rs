//! What a Mac pays per request on the shared macFUSE mount, where `novncache` sends every
//! lookup to the service: ns per LOOKUP (directly under the routed root, and below it),
//! GETATTR and 128 KiB READ, answered by the real adapter under the macFUSE session's policy
//! through the sessions' own in-memory path (`MemoryServer`), with no kernel or device in the
//! loop. Target: at most 1 µs per LOOKUP.
//!
//! The same requests on an editable runtime (DESIGN.md §4 rule 7), `editable-empty/` while its
//! scratch holds no change (the fast path: within 10% of the read-only figures) and
//! `editable-changed/` once a file in the read directory was written, and a 4 KiB WRITE into
//! the scratch's file (`write/4KiB`).
//!
//! `cargo bench -p spfs-frontends --bench adapter`

#[allow(dead_code)]
#[path = "../tests/support/kext/wire.rs"]
mod wire;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use fuse_backend_rs::abi::fuse_abi::{
    CreateIn, EntryOut, GetattrIn, InitIn, Opcode, OpenIn, OpenOut, ReadIn, WriteIn,
};
use spfs_frontends::adapter::Adapter;
use spfs_frontends::policy::{KernelPolicy, Platform, RoutingKind};
use spfs_frontends::session::{MemoryServer, Transport};
use spfs_router::process::FakeProcessTable;
use spfs_router::{Owner, ROOT, Router, Routing, Scratch, Vfs};

/// The runtime's root process; requests come from its child.
const ROOT_PID: u32 = 100;
const CALLER: u32 = 101;

/// The size of the read measured.
const READ_BYTES: u32 = 128 * 1024;

/// One server and a reply buffer, answering prepared requests.
struct Bench {
    server: MemoryServer,
    reply: Vec<u8>,
    unique: u64,
}

impl Bench {
    /// Sends one request; returns the reply body, failing on an error reply.
    fn call(&mut self, opcode: Opcode, node: u64, body: &[u8]) -> Vec<u8> {
        self.unique += 1;
        let mut request = wire::request(opcode, self.unique, node, CALLER, body);
        let len = self.server.answer(&mut request, &mut self.reply);
        let (errno, body) = wire::split_reply(&self.reply, len);
        assert_eq!(errno, 0, "{opcode:?} on {node}");
        body.to_vec()
    }

    /// Measures answering `request` over and over.
    fn measure(&mut self, c: &mut Criterion, name: &str, mut request: Vec<u8>) {
        let (server, reply) = (&self.server, &mut self.reply);
        c.bench_function(name, |b| {
            b.iter(|| black_box(server.answer(black_box(&mut request), reply)))
        });
    }
}

/// How the runtime measured is registered.
#[derive(Clone, Copy, PartialEq)]
enum Runtime {
    /// Read-only, as before editable runtimes.
    ReadOnly,
    /// Editable, its scratch empty.
    EditableEmpty,
    /// Editable, a file beside the ones read already created in its scratch.
    EditableChanged,
}

fn adapter(c: &mut Criterion) {
    for (runtime, prefix) in [
        (Runtime::ReadOnly, ""),
        (Runtime::EditableEmpty, "editable-empty/"),
        (Runtime::EditableChanged, "editable-changed/"),
    ] {
        measure_runtime(c, runtime, prefix);
    }
}

fn measure_runtime(c: &mut Criterion, runtime: Runtime, prefix: &str) {
    let layer = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(layer.path().join("bin")).unwrap();
    std::fs::write(layer.path().join("bin/tool"), b"tool").unwrap();
    std::fs::write(
        layer.path().join("bin/data"),
        vec![7u8; READ_BYTES as usize],
    )
    .unwrap();
    let processes = Arc::new(FakeProcessTable::new());
    processes.spawn(1, 0, 1, 0);
    processes.spawn(ROOT_PID, 1, 2, 0);
    processes.spawn(CALLER, ROOT_PID, 3, 0);
    let router = Arc::new(Router::new(processes, spfs_testkit::root_attr()));
    router
        .register(
            ROOT_PID,
            layer.path().to_str().unwrap(),
            &Owner::trusted(0, 0),
            &[],
            (runtime != Runtime::ReadOnly)
                .then(|| Scratch::open(&scratch.path().join("scratch"), false).unwrap()),
        )
        .unwrap();
    let vfs = Arc::new(Vfs::new(Routing::Shared(router)));
    let policy = KernelPolicy::new(Platform::MacOs, Transport::Device, RoutingKind::Shared);
    let mut bench = Bench {
        server: MemoryServer::new(Adapter::new(vfs, policy)).unwrap(),
        reply: vec![0; wire::REPLY_BYTES],
        unique: 0,
    };
    let init = InitIn {
        major: 7,
        minor: 19,
        max_readahead: 1 << 20,
        flags: 0,
    };
    bench.call(Opcode::Init, 0, wire::bytes(&init));
    let lookup = |node, name: &str| {
        wire::request(
            Opcode::Lookup,
            1,
            node,
            CALLER,
            &[name.as_bytes(), b"\0"].concat(),
        )
    };
    let bin: EntryOut = wire::read(&bench.call(Opcode::Lookup, ROOT, b"bin\0"));
    let tool: EntryOut = wire::read(&bench.call(Opcode::Lookup, bin.nodeid, b"tool\0"));
    let data: EntryOut = wire::read(&bench.call(Opcode::Lookup, bin.nodeid, b"data\0"));
    let open = OpenIn {
        flags: libc::O_RDONLY as u32,
        fuse_flags: 0,
    };
    let opened: OpenOut = wire::read(&bench.call(Opcode::Open, data.nodeid, wire::bytes(&open)));
    let read = ReadIn {
        fh: opened.fh,
        size: READ_BYTES,
        ..ReadIn::default()
    };
    assert_eq!(
        bench
            .call(Opcode::Read, data.nodeid, wire::bytes(&read))
            .len(),
        READ_BYTES as usize
    );

    let mut write = None;
    if runtime == Runtime::EditableChanged {
        let create = CreateIn {
            flags: libc::O_RDWR as u32,
            mode: 0o644,
            ..CreateIn::default()
        };
        let body = [wire::bytes(&create), b"new\0"].concat();
        let reply = bench.call(Opcode::Create, bin.nodeid, &body);
        let new: EntryOut = wire::read(&reply);
        let opened: OpenOut = wire::read(&reply[std::mem::size_of::<EntryOut>()..]);
        let header = WriteIn {
            fh: opened.fh,
            size: 4096,
            ..WriteIn::default()
        };
        let body = [wire::bytes(&header), &[1u8; 4096][..]].concat();
        bench.call(Opcode::Write, new.nodeid, &body);
        write = Some(wire::request(Opcode::Write, 1, new.nodeid, CALLER, &body));
    }

    let named = |name: &str| format!("{prefix}{name}");
    // The caller's view is resolved (and cached briefly) for names under the root.
    bench.measure(
        c,
        &named("lookup/under-the-routed-root"),
        lookup(ROOT, "bin"),
    );
    bench.measure(
        c,
        &named("lookup/below-the-root"),
        lookup(bin.nodeid, "tool"),
    );
    let getattr = GetattrIn::default();
    bench.measure(
        c,
        &named("getattr/below-the-root"),
        wire::request(
            Opcode::Getattr,
            1,
            tool.nodeid,
            CALLER,
            wire::bytes(&getattr),
        ),
    );
    bench.measure(
        c,
        &named("read/128KiB"),
        wire::request(Opcode::Read, 1, data.nodeid, CALLER, wire::bytes(&read)),
    );
    if let Some(write) = write {
        // Over the same 4 KiB of the scratch's file each time.
        bench.measure(c, "write/4KiB", write);
    }
}

criterion_group!(benches, adapter);
criterion_main!(benches);
