//! The differential test's harness (DESIGN.md §6): random operation sequences applied to two
//! trees through real system calls, every outcome compared, then the whole trees. The oracle
//! is the kernel's overlayfs (`sides.rs`); the subject an editable spfs-fuse view, mounted by
//! the test itself.
//!
//! Operations are generated with abstract paths, resolved against the oracle's tree as they
//! run. A failing sequence is then shrunk on its resolved form (delta debugging: dropping runs
//! of operations while it still fails), which keeps every remaining path as it was; proptest's
//! own shrinking would move the abstract paths to other entries at every step.

pub mod layers;
pub mod ops;
pub mod sides;
pub mod tree;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ops::{Fds, Listing, Op, Pick};
use sides::Side;

/// Operations started so far, so a watchdog can tell a hang from a slow run.
pub static STARTED: AtomicU64 = AtomicU64::new(0);
/// The running sequence as far as it went, the last line the operation running now: what a
/// watchdog reports when an operation never returns.
pub static RUNNING: Mutex<String> = Mutex::new(String::new());

/// Why a sequence failed.
#[derive(Debug)]
pub enum Failure {
    /// The sides differ: the operations as they ran (up to the one that differed) and the
    /// report.
    Differ(Vec<Op<String>>, String),
    /// A side could not be brought back to its layers: nothing was compared.
    Harness(String),
}

/// An operation ready to run: generated (resolved against the oracle's tree when it runs)
/// or already resolved.
pub trait Step {
    /// The operation with its paths, given the oracle's tree.
    fn resolved(&self, oracle: &std::path::Path) -> Op<String>;
}

impl Step for Op<Pick> {
    fn resolved(&self, oracle: &std::path::Path) -> Op<String> {
        self.resolve(&Listing::of(oracle))
    }
}

impl Step for Op<String> {
    fn resolved(&self, _: &std::path::Path) -> Op<String> {
        self.clone()
    }
}

/// Runs `steps` on both sides from their lower layers alone: each runs on both sides and both
/// outcomes must be equal; then both trees must be. On a difference, the report lists the
/// operations as they ran, what each side answered to the one that differed, or the trees'
/// differences.
pub fn run_sequence<S: Step>(
    oracle: &mut dyn Side,
    subject: &mut dyn Side,
    steps: &[S],
) -> Result<(), Failure> {
    oracle.reset().map_err(Failure::Harness)?;
    subject.reset().map_err(Failure::Harness)?;
    let labels = (oracle.label().to_string(), subject.label().to_string());
    let mut fds: (Fds, Fds) = Default::default();
    let mut ran = Vec::new();
    let mut log = Vec::new();
    for step in steps {
        let op = step.resolved(oracle.root());
        if let Ok(mut running) = RUNNING.lock() {
            *running = format!(
                "{}\n{:4}. {op:?} -> (running)",
                log.join("\n"),
                log.len() + 1
            );
        }
        STARTED.fetch_add(1, Ordering::Relaxed);
        let a = ops::apply(&op, oracle.root(), &mut fds.0);
        let b = ops::apply(&op, subject.root(), &mut fds.1);
        log.push(format!("{:4}. {op:?} -> {}", log.len() + 1, show(&a)));
        ran.push(op.clone());
        if a != b {
            let report = format!(
                "the outcomes differ:\n{}\n      {}: {}\n      {}: {}",
                log.join("\n"),
                labels.0,
                show(&a),
                labels.1,
                show(&b)
            );
            return Err(Failure::Differ(ran, report));
        }
    }
    drop(fds);
    let full = tree::Detail::Full;
    let (a, b) = (
        tree::snapshot(oracle.root(), full),
        tree::snapshot(subject.root(), full),
    );
    let differences = tree::differences(&a, &b, (&labels.0, &labels.1));
    if !differences.is_empty() {
        let report = format!(
            "the trees differ after:\n{}\n{}",
            log.join("\n"),
            differences.join("\n")
        );
        return Err(Failure::Differ(ran, report));
    }
    let Some(layer) = subject.as_layer() else {
        return Ok(());
    };
    let layer = layer.map_err(Failure::Harness)?;
    let a = tree::snapshot(oracle.root(), tree::Detail::Layer);
    let read_back = format!("{} read back as a layer", labels.1);
    let differences = tree::differences(&a, &layer, (&labels.0, &read_back));
    if differences.is_empty() {
        return Ok(());
    }
    let report = format!(
        "the changes read back as a layer differ after:\n{}\n{}",
        log.join("\n"),
        differences.join("\n")
    );
    Err(Failure::Differ(ran, report))
}

/// Shrinks a failing resolved sequence: drops runs of operations (halves, quarters, ...,
/// single ones) for as long as what is left still fails. Returns the smallest failing
/// sequence's report, or the harness's error.
pub fn shrink(
    oracle: &mut dyn Side,
    subject: &mut dyn Side,
    mut ops: Vec<Op<String>>,
    mut report: String,
) -> Result<String, String> {
    let mut chunk = ops.len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        while at < ops.len() {
            let mut fewer = ops.clone();
            fewer.drain(at..(at + chunk).min(ops.len()));
            match run_sequence(oracle, subject, &fewer) {
                Err(Failure::Differ(ran, shorter)) => {
                    (ops, report) = (ran, shorter);
                }
                Err(Failure::Harness(error)) => return Err(error),
                Ok(()) => at += chunk,
            }
        }
        if chunk == 1 {
            return Ok(report);
        }
        chunk = chunk.div_ceil(2);
    }
}

/// An outcome as the reports show it.
fn show(outcome: &ops::Outcome) -> String {
    match outcome {
        Ok(s) if s.is_empty() => "ok".into(),
        Ok(s) => format!("ok {s}"),
        Err(e) => format!("{e:?}"),
    }
}
