//! Per-reactor counters. Each reactor writes its own (relaxed atomics, no
//! sharing on the hot path); the admin side and the `MAX_CONNECTIONS` check
//! read them all.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

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
