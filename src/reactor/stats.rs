//! Per-reactor counters. Each reactor writes its own (relaxed atomics, no
//! sharing on the hot path); the admin side reads them all through one
//! narrow type, [`Counters`], as a [`Snapshot`] summed over reactors.
//! Closes are counted by [`Why`], final responses by status, refusals by
//! problem type (SPEC §3).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crate::conn::response::Problem;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The peer closed, reset, or a read or write failed.
    Peer,
    /// Cut for passing `MAX_PENDING_BYTES`.
    Slow,
    /// Closed at shutdown.
    Shutdown,
    /// Sent nothing before the header timeout.
    Idle,
    /// Closed after a final response (an answer or a refusal).
    Responded,
    /// Ended by `DELETE /connections/{id}`.
    Kicked,
    /// Its token expired (`exp` + leeway, `CLOSE_ON_TOKEN_EXPIRY`).
    Expired,
    /// Closed by the drain at SIGTERM, after its final `retry:`.
    Drained,
}

impl Why {
    /// Every reason, in the order of the counters (and of `/metrics`).
    pub const ALL: [Why; 8] = [
        Why::Peer,
        Why::Slow,
        Why::Shutdown,
        Why::Idle,
        Why::Responded,
        Why::Kicked,
        Why::Expired,
        Why::Drained,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Why::Peer => "peer",
            Why::Slow => "slow",
            Why::Shutdown => "shutdown",
            Why::Idle => "timeout",
            Why::Responded => "responded",
            Why::Kicked => "kicked",
            Why::Expired => "expired",
            Why::Drained => "drained",
        }
    }

    /// What happened, for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Why::Peer => "client closed (or the connection failed)",
            Why::Slow => "slow: cut over MAX_PENDING_BYTES",
            Why::Shutdown => "shutdown",
            Why::Idle => "no request head within HEADER_TIMEOUT_MS",
            Why::Responded => "answered",
            Why::Kicked => "kicked: DELETE /connections/{id}",
            Why::Expired => "token expired (exp + JWT_LEEWAY_SECONDS)",
            Why::Drained => "drained at shutdown (final retry: sent)",
        }
    }
}

/// Final responses on the public listener are counted by these statuses
/// (anything else counts as the last, `0`).
pub const STATUSES: [u16; 13] = [
    200, 204, 400, 401, 403, 404, 405, 408, 413, 429, 431, 503, 0,
];

/// Upper bounds (milliseconds) of the publish-to-write latency buckets;
/// one more bucket holds the rest.
pub const LATENCY_BOUNDS_MS: [u64; 13] =
    [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

#[derive(Default, Debug)]
pub struct Stats {
    /// Open client connections (any state).
    open: AtomicUsize,
    /// Connections currently streaming.
    pub streaming: AtomicUsize,
    pub accepted: AtomicU64,
    pub accept_errors: AtomicU64,
    pub refused_full: AtomicU64,
    /// Connections ended, by [`Why`] (in [`Why::ALL`] order).
    disconnects: [AtomicU64; Why::ALL.len()],
    /// Final responses, by [`STATUSES`].
    responses: [AtomicU64; STATUSES.len()],
    /// Refusals (problem+json responses), by [`Problem`] (in
    /// [`Problem::ALL`] order).
    refusals: [AtomicU64; Problem::ALL.len()],
    /// Event frames handed to sockets.
    pub delivered: AtomicU64,
    /// Bytes the kernel took.
    pub bytes_written: AtomicU64,
    /// Streams that asked for replay (`Last-Event-ID`), events replayed,
    /// and replays that began with `history-gap`.
    pub replays: AtomicU64,
    pub replayed: AtomicU64,
    pub history_gaps: AtomicU64,
    /// What this reactor's history holds (every reactor holds the same
    /// events, sharing their frames).
    history_events: AtomicU64,
    history_bytes: AtomicU64,
    history_users: AtomicU64,
    /// Deliveries by publish-to-write latency (the last bucket: slower than
    /// every bound), and their sum in milliseconds.
    latency: [AtomicU64; LATENCY_BOUNDS_MS.len() + 1],
    latency_sum_ms: AtomicU64,
}

impl Stats {
    pub fn open(&self) -> usize {
        self.open.load(Relaxed)
    }

    pub fn set_open(&self, n: usize) {
        self.open.store(n, Relaxed);
    }

    pub fn disconnected(&self, why: Why) {
        self.disconnects[why as usize].fetch_add(1, Relaxed);
    }

    pub fn disconnects(&self, why: Why) -> u64 {
        self.disconnects[why as usize].load(Relaxed)
    }

    /// Counts a final response by its status line (`HTTP/1.1 NNN …`).
    pub fn responded(&self, response: &[u8]) {
        let status = response
            .get(9..12)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        let i = STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(STATUSES.len() - 1);
        self.responses[i].fetch_add(1, Relaxed);
    }

    /// Publishes what the history holds.
    pub fn set_history(&self, held: crate::hub::history::Held) {
        self.history_events.store(held.events as u64, Relaxed);
        self.history_bytes.store(held.bytes as u64, Relaxed);
        self.history_users.store(held.users as u64, Relaxed);
    }

    /// Counts a refusal by its problem type.
    pub fn refused(&self, p: Problem) {
        self.refusals[p as usize].fetch_add(1, Relaxed);
    }

    /// Records `count` deliveries written `ms` after their publish.
    pub fn latency(&self, ms: u64, count: u64) {
        let i = LATENCY_BOUNDS_MS.partition_point(|&b| b < ms);
        self.latency[i].fetch_add(count, Relaxed);
        self.latency_sum_ms.fetch_add(ms * count, Relaxed);
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
    /// By [`Why`], in [`Why::ALL`] order.
    pub disconnects: [u64; Why::ALL.len()],
    /// By [`STATUSES`].
    pub responses: [u64; STATUSES.len()],
    /// By [`Problem`], in [`Problem::ALL`] order.
    pub refusals: [u64; Problem::ALL.len()],
    pub delivered: u64,
    pub bytes_written: u64,
    pub replays: u64,
    pub replayed: u64,
    pub history_gaps: u64,
    /// What the history holds (the largest of the reactors' figures: they
    /// hold the same events and count shared frames once).
    pub history_events: u64,
    pub history_bytes: u64,
    pub history_users: u64,
    /// Per bucket of [`LATENCY_BOUNDS_MS`], not cumulative.
    pub latency: [u64; LATENCY_BOUNDS_MS.len() + 1],
    pub latency_sum_ms: u64,
    /// Open connections of each reactor.
    pub per_reactor: Vec<usize>,
}

impl Snapshot {
    pub fn disconnects(&self, why: Why) -> u64 {
        self.disconnects[why as usize]
    }

    pub fn refusals(&self, p: Problem) -> u64 {
        self.refusals[p as usize]
    }

    /// Connections ended for any reason.
    pub fn disconnects_total(&self) -> u64 {
        self.disconnects.iter().sum()
    }
}

impl Counters {
    pub fn new(reactors: Arc<[Arc<Stats>]>) -> Self {
        Self { reactors }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        let add = |to: &mut [u64], from: &[AtomicU64]| {
            for (t, f) in to.iter_mut().zip(from) {
                *t += f.load(Relaxed);
            }
        };
        for r in self.reactors.iter() {
            s.connections += r.open() as u64;
            s.streaming += r.streaming.load(Relaxed) as u64;
            s.accepted += r.accepted.load(Relaxed);
            s.accept_errors += r.accept_errors.load(Relaxed);
            s.refused_full += r.refused_full.load(Relaxed);
            add(&mut s.disconnects, &r.disconnects);
            add(&mut s.responses, &r.responses);
            add(&mut s.refusals, &r.refusals);
            s.delivered += r.delivered.load(Relaxed);
            s.bytes_written += r.bytes_written.load(Relaxed);
            s.replays += r.replays.load(Relaxed);
            s.replayed += r.replayed.load(Relaxed);
            s.history_gaps += r.history_gaps.load(Relaxed);
            s.history_events = s.history_events.max(r.history_events.load(Relaxed));
            s.history_bytes = s.history_bytes.max(r.history_bytes.load(Relaxed));
            s.history_users = s.history_users.max(r.history_users.load(Relaxed));
            add(&mut s.latency, &r.latency);
            s.latency_sum_ms += r.latency_sum_ms.load(Relaxed);
            s.per_reactor.push(r.open());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_by_status_and_latency_buckets() {
        let s = Stats::default();
        s.responded(b"HTTP/1.1 401 Unauthorized\r\n");
        s.responded(b"HTTP/1.1 418 I'm a teapot\r\n");
        s.responded(b"junk");
        s.refused(Problem::InvalidJwt);
        s.refused(Problem::InvalidJwt);
        s.refused(Problem::RateLimited);
        s.latency(0, 2);
        s.latency(1, 1);
        s.latency(3, 1);
        s.latency(60_000, 4);
        let snap = Counters::new(Arc::from(vec![Arc::new(s)])).snapshot();
        assert_eq!(snap.responses[3], 1, "401");
        assert_eq!(snap.responses[STATUSES.len() - 1], 2, "other");
        assert_eq!(snap.refusals(Problem::InvalidJwt), 2);
        assert_eq!(snap.refusals(Problem::RateLimited), 1);
        assert_eq!(snap.refusals(Problem::MissingToken), 0);
        assert_eq!(snap.latency[0], 3, "≤ 1 ms");
        assert_eq!(snap.latency[2], 1, "≤ 5 ms");
        assert_eq!(snap.latency[LATENCY_BOUNDS_MS.len()], 4, "slower than all");
        assert_eq!(snap.latency_sum_ms, 1 + 3 + 240_000);
    }
}
