//! What the coordinator and its worker processes tell each other.
//!
//! A worker is `herald-bench worker '<Plan as JSON>'`. It reads [`Command`]s,
//! one JSON line each, on stdin and writes [`Update`]s, one JSON line each, on
//! stdout; stderr is passed through. A closed stdin or the plan's deadline
//! ends it.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::args::TokenIn;
use super::hist::Histogram;
use super::probe::Audience;

/// One worker's share of the run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// This worker's listeners are users `u<first>..u<first + count>`.
    pub first: u64,
    pub count: u64,
    /// Users in the whole run (for random targets).
    pub total: u64,
    pub dst: SocketAddr,
    pub host: String,
    pub path: String,
    pub jwt_secret: Option<String>,
    pub jwt_apps: u64,
    pub token_in: TokenIn,
    pub headers: Vec<String>,
    /// Source addresses; listener `i` uses `src[i % len]`. Empty: the kernel picks.
    pub src: Vec<Ipv4Addr>,
    /// New connections per second (0 = unlimited) and handshakes in flight.
    pub rate: f64,
    pub inflight: u64,
    pub connect_timeout_ms: u64,
    pub audience: Audience,
    /// Storm: how long dropped listeners stay away before reconnecting.
    pub away_ms: u64,
    /// A stream the server ends reconnects after its last `retry:`.
    pub follow: bool,
    /// Wall-clock ms after which the worker exits no matter what.
    pub deadline_unix_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Command {
    /// Listeners streaming now expect every event from here on.
    Arm,
    /// Events `0..n` have been published.
    Published(u64),
    /// Drop every streaming listener and reconnect it with `Last-Event-ID`.
    Storm,
    /// Start no more connections: the box is running out of memory.
    Halt,
    /// Send the final [`Report`].
    Report,
    /// Close everything and exit.
    Quit,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Update {
    Progress(Progress),
    /// Reply to [`Command::Arm`]: how many listeners were armed.
    Armed(u64),
    Report(Box<Report>),
}

/// Running totals of one worker (summed across workers by the coordinator).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Connection attempts started, retries included.
    pub attempted: u64,
    /// Listeners streaming now.
    pub open: u64,
    /// Listeners of the first round given up on (failure reasons in the report).
    pub failed: u64,
    /// Every listener of the first round is streaming or given up on.
    pub settled: bool,
    /// Streams the server ended (EOF or error after the response head).
    pub dropped: u64,
    /// `Published(n)` last seen.
    pub published: u64,
    /// Deliveries armed listeners should get for the events published so far.
    pub expected: u64,
    /// Distinct benchmark events received by armed listeners.
    pub unique: u64,
    pub duplicates: u64,
    pub storm: Option<StormProgress>,
}

impl Progress {
    /// Adds another worker's totals (`published` is shared, so the maximum).
    pub fn add(&mut self, p: &Progress) {
        self.attempted += p.attempted;
        self.open += p.open;
        self.failed += p.failed;
        self.dropped += p.dropped;
        self.expected += p.expected;
        self.unique += p.unique;
        self.duplicates += p.duplicates;
        self.published = self.published.max(p.published);
        if let Some(s) = &p.storm {
            let ts = self.storm.get_or_insert_with(Default::default);
            ts.closed += s.closed;
            ts.back += s.back;
            ts.given_up += s.given_up;
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StormProgress {
    /// Listeners dropped by the storm.
    pub closed: u64,
    /// ... streaming again.
    pub back: u64,
    /// ... that failed every reconnect attempt.
    pub given_up: u64,
    /// Wall-clock µs when the last of them came back (or was given up).
    pub done_unix_us: Option<u64>,
}

/// A worker's final figures.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub progress: Progress,
    /// Connection failures by reason; reconnects (storm) are prefixed `reconnect: `.
    pub failures: BTreeMap<String, u64>,
    /// Receive time minus publish time of every counted delivery, µs.
    pub latency_us: Histogram,
    /// Per event sequence number: wall-clock µs of its last delivery here (0: none).
    pub last_delivery_us: Vec<u64>,
    /// Deliveries with a sequence number beyond the previous one + 1 (broadcast only).
    pub gaps: u64,
    /// Targeted events received by a listener that was not a target.
    pub strays: u64,
    /// Benchmark events received by listeners that were not armed.
    pub unarmed: u64,
    /// `history-gap` events (replay could not cover the missed range).
    pub history_gaps: u64,
    /// Other events (heartbeats, foreign publishers) and comment lines.
    pub other_events: u64,
    pub comments: u64,
    pub bytes_read: u64,
    /// This worker's own resident memory and CPU time at the end.
    pub rss_kb: u64,
    pub cpu_s: f64,
}

impl Report {
    /// Adds another worker's report: counts summed, latencies merged, the
    /// latest delivery per event kept.
    pub fn add(&mut self, r: &Report) {
        self.progress.add(&r.progress);
        for (k, v) in &r.failures {
            *self.failures.entry(k.clone()).or_default() += v;
        }
        self.latency_us.merge(&r.latency_us);
        if self.last_delivery_us.len() < r.last_delivery_us.len() {
            self.last_delivery_us.resize(r.last_delivery_us.len(), 0);
        }
        for (a, b) in self.last_delivery_us.iter_mut().zip(&r.last_delivery_us) {
            *a = (*a).max(*b);
        }
        self.gaps += r.gaps;
        self.strays += r.strays;
        self.unarmed += r.unarmed;
        self.history_gaps += r.history_gaps;
        self.other_events += r.other_events;
        self.comments += r.comments;
        self.bytes_read += r.bytes_read;
        self.rss_kb += r.rss_kb;
        self.cpu_s += r.cpu_s;
    }
}
