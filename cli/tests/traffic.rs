//! What `status` reports of the requests served, through the real binary and a real mount:
//! requests by opcode with their mean service time, and root lookups by processes outside
//! every runtime by executable name (how a Mac's users see what its kernel asks).

use std::process::Command;

mod support;
use spfs_testkit::require_fuse;
use support::mounts::{Shell, put};
use support::{Service, ok};

/// Walks by a runtime's process.
const WALKS: u64 = 20;

#[test]
fn status_counts_requests_by_opcode_and_outsiders_by_executable() {
    if !require_fuse() {
        return;
    }
    let service = Service::start();
    let layer = tempfile::tempdir().unwrap();
    put(layer.path(), "bin/tool", b"tool\n");
    let mut inside = Shell::nested(1);
    service.mount(inside.pid(), &layer.path().display().to_string());
    let m = service.mountpoint();
    let m = m.display();
    for _ in 0..WALKS {
        // The root's names are never cached (rule 3): each walk looks `bin` up again.
        assert_eq!(inside.ask(&format!("cat {m}/bin/tool")), "tool");
        assert_eq!(inside.ask(&format!("stat -c %F {m}")), "directory");
    }
    // An outsider: a shell whose `ls` looks names up in the root and sees the empty view.
    let outsider = Command::new("sh")
        .arg("-c")
        .arg(format!("ls {m}/x; ls {m}/bin; true"))
        .output()
        .unwrap();
    assert!(outsider.status.success());

    let status = service.status_json();
    let requests = &status["requests"];
    for opcode in ["LOOKUP", "GETATTR"] {
        let count = requests[opcode]["count"].as_u64().unwrap_or(0);
        let mean = requests[opcode]["mean_ns"].as_u64().unwrap_or(0);
        assert!(count > 0, "{opcode} served: {status}");
        // Plausible: a request served from memory takes more than nothing and far less than
        // a tenth of a second, even on a loaded test machine.
        assert!((1..100_000_000).contains(&mean), "{opcode} mean: {status}");
    }
    assert!(
        requests["LOOKUP"]["count"].as_u64().unwrap() >= WALKS,
        "one root lookup per walk at least: {status}"
    );
    let outsiders = status["outsider_root_lookups"].as_object().unwrap();
    assert!(
        outsiders.get("ls").and_then(|c| c.as_u64()).unwrap_or(0) >= 2,
        "ls looked up x and bin: {status}"
    );
    for inside_name in ["cat", "stat"] {
        assert!(
            !outsiders.contains_key(inside_name),
            "the runtime's processes are no outsiders: {status}"
        );
    }

    let text = ok(&service.cli(&["status"]));
    assert!(text.contains("requests:     "), "{text}");
    assert!(text.contains("LOOKUP "), "{text}");
    assert!(
        text.contains("outsiders:    ") && text.contains("ls "),
        "{text}"
    );
}
