//! What the service has been asked, for `status`: requests and their service time by kind,
//! and the root lookups of processes outside every runtime by executable name. A Mac's kernel
//! cannot be run here; these numbers are how its users measure it.
//!
//! The request path pays one relaxed atomic add per request (a fixed array indexed by request
//! kind, no lock); one request in [`TIMED_ONE_IN`] of each kind is also timed, which costs two
//! clock reads and two more adds, so the mean service time is a sample's. Outsider lookups pay more, a process name read and a short lock, but only
//! they do: a request of a runtime's process never touches [`OutsiderLookups`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::process::Pid;

/// How many request kinds [`RequestCounters`] tells apart: a frontend numbers its kinds below
/// this (FUSE opcodes all are; macFUSE's own end at 63).
pub const REQUEST_KINDS: usize = 64;

/// One request in this many of each kind (the first included) is timed: clock reads cost
/// more than the counting itself.
pub const TIMED_ONE_IN: u64 = 16;

/// How many executable names [`OutsiderLookups`] keeps apart; the rest count under
/// [`OTHER_NAMES`]. Bounded so a host spawning many distinct programs cannot grow it.
pub const OUTSIDER_NAMES: usize = 64;

/// The name lookups beyond the first [`OUTSIDER_NAMES`] names count under.
pub const OTHER_NAMES: &str = "other";

/// The name of a caller whose name could not be read (it has exited, say).
pub const UNKNOWN_NAME: &str = "unknown";

/// How long a caller's name is trusted before it is read again: a pid is reused seldom
/// within a second.
const NAME_TTL: Duration = Duration::from_secs(1);

/// A name cache that grows past this is cleared rather than trimmed.
const NAME_CACHE_CAPACITY: usize = 1024;

/// The requests of one kind: how many, and the service time of those timed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTotals {
    /// Requests served.
    pub count: u64,
    /// Requests timed: one in [`TIMED_ONE_IN`], the first included.
    pub timed: u64,
    /// The service times of the timed requests, summed, in nanoseconds.
    pub nanos: u64,
}

impl RequestTotals {
    /// The mean service time of the timed requests in nanoseconds (0 for none).
    pub fn mean_nanos(&self) -> u64 {
        self.nanos.checked_div(self.timed).unwrap_or(0)
    }
}

#[derive(Debug, Default)]
struct Slot {
    count: AtomicU64,
    timed: AtomicU64,
    nanos: AtomicU64,
}

/// Requests served and their service time, by kind (a number below [`REQUEST_KINDS`] the
/// frontend chooses: FUSE's opcode). Shared by every mount of a service, so that it sums them.
#[derive(Debug)]
pub struct RequestCounters {
    slots: [Slot; REQUEST_KINDS],
}

impl Default for RequestCounters {
    fn default() -> Self {
        RequestCounters {
            slots: std::array::from_fn(|_| Slot::default()),
        }
    }
}

impl RequestCounters {
    /// Counts one request of `kind`; returns whether to time it and hand the time to
    /// [`RequestCounters::time`]. A kind out of range is neither counted nor timed.
    // Relaxed throughout: each total is read on its own, and a total a request behind another
    // skews one mean by one request.
    pub fn count(&self, kind: usize) -> bool {
        self.slots.get(kind).is_some_and(|slot| {
            slot.count
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(TIMED_ONE_IN)
        })
    }

    /// Adds the service time of one request of `kind` that [`RequestCounters::count`] chose.
    pub fn time(&self, kind: usize, elapsed: Duration) {
        if let Some(slot) = self.slots.get(kind) {
            slot.timed.fetch_add(1, Ordering::Relaxed);
            slot.nanos.fetch_add(
                u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
    }

    /// Counts and times one request of `kind` that took `elapsed`, as if chosen for timing.
    pub fn record(&self, kind: usize, elapsed: Duration) {
        self.count(kind);
        self.time(kind, elapsed);
    }

    /// Every kind with a request served, by kind.
    pub fn totals(&self) -> Vec<(usize, RequestTotals)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(kind, slot)| {
                let count = slot.count.load(Ordering::Relaxed);
                (count > 0).then(|| {
                    let totals = RequestTotals {
                        count,
                        timed: slot.timed.load(Ordering::Relaxed),
                        nanos: slot.nanos.load(Ordering::Relaxed),
                    };
                    (kind, totals)
                })
            })
            .collect()
    }
}

/// Root lookups by processes outside every runtime (the empty view), by executable name:
/// who on the host looks into the mount without a runtime (Spotlight, `amfid`, a shell).
#[derive(Debug, Default)]
pub struct OutsiderLookups {
    counts: Mutex<HashMap<String, u64>>,
    other: AtomicU64,
    names: Mutex<HashMap<Pid, (String, Instant)>>,
}

impl OutsiderLookups {
    /// Counts one root lookup by `caller`, whose name `name_of` reads when the cache does not
    /// hold it. The name is read with no lock held.
    pub fn record(&self, caller: Pid, name_of: impl FnOnce(Pid) -> Option<String>) {
        let cached = lock(&self.names)
            .get(&caller)
            .filter(|(_, at)| at.elapsed() < NAME_TTL)
            .map(|(name, _)| name.clone());
        let name = match cached {
            Some(name) => name,
            None => {
                let name = name_of(caller).unwrap_or_else(|| UNKNOWN_NAME.to_owned());
                let mut names = lock(&self.names);
                if names.len() >= NAME_CACHE_CAPACITY {
                    names.clear();
                }
                names.insert(caller, (name.clone(), Instant::now()));
                name
            }
        };
        self.count(name);
    }

    fn count(&self, name: String) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(&name) {
            *count += 1;
        } else if counts.len() < OUTSIDER_NAMES {
            counts.insert(name, 1);
        } else {
            self.other.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The lookups counted so far by executable name, those past the cap under
    /// [`OTHER_NAMES`].
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts: BTreeMap<String, u64> = lock(&self.counts).clone().into_iter().collect();
        let other = self.other.load(Ordering::Relaxed);
        if other > 0 {
            *counts.entry(OTHER_NAMES.to_owned()).or_default() += other;
        }
        counts
    }
}

/// A poisoned lock still guards plain counts: a panic elsewhere must not stop the counting.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_kind_and_one_in_n_timed() {
        let counters = RequestCounters::default();
        counters.record(1, Duration::from_nanos(100));
        counters.record(1, Duration::from_nanos(300));
        counters.record(3, Duration::from_nanos(50));
        counters.record(REQUEST_KINDS, Duration::from_nanos(50));
        let chosen: Vec<bool> = (0..2 * TIMED_ONE_IN).map(|_| counters.count(5)).collect();
        assert_eq!(chosen.iter().filter(|&&timed| timed).count(), 2);
        assert!(chosen[0], "the first request of a kind is timed");
        let totals = counters.totals();
        let one = RequestTotals {
            count: 2,
            timed: 2,
            nanos: 400,
        };
        let three = RequestTotals {
            count: 1,
            timed: 1,
            nanos: 50,
        };
        let five = RequestTotals {
            count: 2 * TIMED_ONE_IN,
            timed: 0,
            nanos: 0,
        };
        assert_eq!(totals, [(1, one), (3, three), (5, five)]);
        assert_eq!(one.mean_nanos(), 200);
        assert_eq!(five.mean_nanos(), 0, "nothing timed yet");
    }

    #[test]
    fn outsider_names_are_capped_and_the_rest_count_as_other() {
        let lookups = OutsiderLookups::default();
        for pid in 0..(OUTSIDER_NAMES as Pid + 10) {
            lookups.record(pid, |pid| Some(format!("exe{pid}")));
        }
        // A name already kept goes on counting past the cap.
        lookups.record(0, |_| unreachable!("cached"));
        let counts = lookups.counts();
        assert_eq!(counts.len(), OUTSIDER_NAMES + 1);
        assert_eq!(counts["exe0"], 2);
        assert_eq!(counts[OTHER_NAMES], 10);
        assert!(!counts.contains_key(&format!("exe{OUTSIDER_NAMES}")));
        assert_eq!(counts.values().sum::<u64>(), OUTSIDER_NAMES as u64 + 11);
    }

    #[test]
    fn a_caller_whose_name_cannot_be_read_counts_as_unknown() {
        let lookups = OutsiderLookups::default();
        lookups.record(7, |_| None);
        lookups.record(7, |_| unreachable!("cached"));
        assert_eq!(lookups.counts()[UNKNOWN_NAME], 2);
    }

    #[test]
    fn only_root_lookups_in_the_empty_view_count_as_outsiders() {
        use std::sync::Arc;

        use crate::process::FakeProcessTable;
        use crate::{Attr, Owner, ROOT, Router, Routing, Timestamp, Vfs};

        let layer = tempfile::tempdir().unwrap();
        std::fs::create_dir(layer.path().join("bin")).unwrap();
        let processes = Arc::new(FakeProcessTable::new());
        processes.spawn(1, 0, 1, 0);
        processes.spawn(10, 1, 10, 0);
        processes.spawn(11, 10, 11, 0);
        processes.spawn(20, 1, 20, 0);
        processes.spawn_thread(21, 20);
        processes.name_process(11, "python");
        processes.name_process(20, "mdworker");
        let router = Arc::new(Router::new(
            processes,
            Attr::root(0, 0, Timestamp::default()),
        ));
        router
            .register(
                10,
                layer.path().to_str().unwrap(),
                &Owner::trusted(0, 0),
                &[],
                None,
            )
            .unwrap();
        let vfs = Vfs::new(Routing::Shared(router.clone()));

        // The runtime's child, in its view: never counted, found or not.
        let bin = vfs.lookup(11, ROOT, b"bin").unwrap();
        vfs.lookup(11, ROOT, b"missing").unwrap_err();
        // The outsider, by its process's name whichever thread asks; below the root, and
        // other requests on the root, are not root lookups.
        vfs.lookup(20, ROOT, b"bin").unwrap_err();
        vfs.lookup(21, ROOT, b"lib").unwrap_err();
        vfs.getattr(20, ROOT).unwrap();
        vfs.lookup(20, bin.node, b"x").unwrap_err();
        assert_eq!(
            router.outsider_root_lookups(),
            BTreeMap::from([("mdworker".to_owned(), 2)])
        );
    }
}
