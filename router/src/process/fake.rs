//! An in-memory process table for tests: processes and threads are added and removed by hand.

use std::collections::HashMap;
use std::sync::RwLock;

use super::{Pid, ProcessInfo, ProcessTable};

/// A process table held in memory, for testing routing without real processes.
#[derive(Debug, Default)]
pub struct FakeProcessTable {
    processes: RwLock<HashMap<Pid, ProcessInfo>>,
    threads: RwLock<HashMap<Pid, Pid>>,
    names: RwLock<HashMap<Pid, String>>,
}

impl FakeProcessTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) process `pid` with parent `ppid`, start time `start_time`, owned by `uid`.
    pub fn spawn(&self, pid: Pid, ppid: Pid, start_time: u64, uid: u32) {
        self.processes.write().expect("fake table lock").insert(
            pid,
            ProcessInfo {
                ppid,
                start_time,
                uid,
            },
        );
    }

    /// Adds a thread `tid` of process `pid`.
    pub fn spawn_thread(&self, tid: Pid, pid: Pid) {
        self.threads
            .write()
            .expect("fake table lock")
            .insert(tid, pid);
    }

    /// Gives process `pid` the executable name `name`; a process never named has none.
    pub fn name_process(&self, pid: Pid, name: &str) {
        self.names
            .write()
            .expect("fake table lock")
            .insert(pid, name.to_owned());
    }

    /// Removes process `pid`.
    pub fn exit(&self, pid: Pid) {
        self.processes
            .write()
            .expect("fake table lock")
            .remove(&pid);
    }
}

impl ProcessTable for FakeProcessTable {
    fn process_of(&self, task: Pid) -> Option<Pid> {
        if let Some(pid) = self.threads.read().expect("fake table lock").get(&task) {
            return Some(*pid);
        }
        self.processes
            .read()
            .expect("fake table lock")
            .contains_key(&task)
            .then_some(task)
    }

    fn info(&self, pid: Pid) -> Option<ProcessInfo> {
        self.processes
            .read()
            .expect("fake table lock")
            .get(&pid)
            .copied()
    }

    fn name(&self, pid: Pid) -> Option<String> {
        if !self
            .processes
            .read()
            .expect("fake table lock")
            .contains_key(&pid)
        {
            return None;
        }
        self.names
            .read()
            .expect("fake table lock")
            .get(&pid)
            .cloned()
    }
}
