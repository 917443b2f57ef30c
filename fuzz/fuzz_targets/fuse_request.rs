//! Arbitrary bytes as FUSE requests to the adapter, over a view of the example layers: whatever
//! arrives from the device, the adapter answers or refuses, and never panics (DESIGN.md §4
//! rule 6). The input is cut into messages at each header's own length field, the way the
//! kernel frames them, so one input can walk a lookup into a read.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use spfs_frontends::adapter::Adapter;
use spfs_frontends::session::MemoryServer;
use spfs_frontends::{KernelPolicy, Platform, RoutingKind, Transport};
use spfs_router::process::FakeProcessTable;
use spfs_router::{Attr, Owner, Router, Routing, Scratch, Timestamp, Vfs};

/// The runtime's root process; requests may claim any pid, this one or its child 101 route to
/// the view and all others to the empty view.
const ROOT_PID: u32 = 100;

/// The largest reply a request can ask for (a 1 MiB read plus its header).
const REPLY_BYTES: usize = (1 << 20) + 4096;

/// The sessions' own answering path, the one every transport serves through.
static TARGET: LazyLock<MemoryServer> = LazyLock::new(|| {
    let processes = Arc::new(FakeProcessTable::new());
    processes.spawn(ROOT_PID, 1, 1, 0);
    processes.spawn(ROOT_PID + 1, ROOT_PID, 2, 0);
    let root = Attr::root(0, 0, Timestamp { secs: 0, nanos: 0 });
    let router = Arc::new(Router::new(processes, root));
    let examples = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples"))
        .expect("the example layers exist");
    let examples = examples.display();
    // Editable, so the write requests reach the overlay too; its scratch is this run's own.
    let scratch = std::env::temp_dir().join(format!("spfs-fuzz-scratch-{}", std::process::id()));
    router
        .register(
            ROOT_PID,
            &format!("{examples}/base+{examples}/tools"),
            &Owner::trusted(0, 0),
            &[],
            Some(Scratch::open(&scratch, false).expect("the scratch opens")),
        )
        .expect("the example layers register");
    let vfs = Arc::new(Vfs::new(Routing::Shared(router)));
    // The shared layout's policy as the Linux device session runs it.
    let adapter = Adapter::new(
        vfs,
        KernelPolicy::new(Platform::current(), Transport::Device, RoutingKind::Shared),
    );
    MemoryServer::new(adapter).expect("/dev/null opens")
});

fuzz_target!(|data: &[u8]| {
    let target = &*TARGET;
    let mut reply = vec![0u8; REPLY_BYTES];
    let mut rest = data;
    for _ in 0..16 {
        if rest.is_empty() {
            break;
        }
        let claimed = rest
            .get(..4)
            .map(|len| u32::from_le_bytes(len.try_into().unwrap()) as usize)
            .unwrap_or(rest.len());
        let len = claimed.clamp(1, rest.len());
        let mut message = rest[..len].to_vec();
        rest = &rest[len..];
        // Errors are answers; only a panic is a finding.
        target.answer(&mut message, &mut reply);
    }
});
