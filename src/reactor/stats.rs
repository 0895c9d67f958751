//! Per-reactor counters. Each reactor writes its own (relaxed atomics, no
//! sharing on the hot path); the admin side reads them all through one
//! narrow type, [`Counters`], as a [`Snapshot`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

#[derive(Default, Debug)]
pub struct Stats {
    /// Open client connections (any state).
    open: AtomicUsize,
    /// Connections currently streaming.
    pub streaming: AtomicUsize,
    pub accepted: AtomicU64,
    pub accept_errors: AtomicU64,
    pub refused_full: AtomicU64,
    /// Listeners cut for exceeding `MAX_PENDING_BYTES`.
    pub slow_disconnects: AtomicU64,
    /// Event frames handed to sockets.
    pub delivered: AtomicU64,
}

impl Stats {
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    pub fn set_open(&self, n: usize) {
        self.open.store(n, Relaxed);
    }
}

/// Every reactor's counters, read-only: what the admin side sees.
#[derive(Clone)]
pub struct Counters {
    reactors: Arc<[Arc<Stats>]>,
}

/// The counters summed over every reactor at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub connections: u64,
    pub streaming: u64,
    pub accepted: u64,
    pub accept_errors: u64,
    pub refused_full: u64,
    pub slow_disconnects: u64,
    pub delivered: u64,
    /// Open connections of each reactor.
    pub per_reactor: Vec<usize>,
}

impl Counters {
    pub fn new(reactors: Arc<[Arc<Stats>]>) -> Self {
        Self { reactors }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for r in self.reactors.iter() {
            s.connections += r.open() as u64;
            s.streaming += r.streaming.load(Relaxed) as u64;
            s.accepted += r.accepted.load(Relaxed);
            s.accept_errors += r.accept_errors.load(Relaxed);
            s.refused_full += r.refused_full.load(Relaxed);
            s.slow_disconnects += r.slow_disconnects.load(Relaxed);
            s.delivered += r.delivered.load(Relaxed);
            s.per_reactor.push(r.open());
        }
        s
    }
}
