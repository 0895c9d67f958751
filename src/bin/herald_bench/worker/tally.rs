//! Delivery accounting: which events a listener should get ([`Targets`],
//! this worker's slice of each event's audience) and what it got ([`Tally`]:
//! unique, duplicates, gaps, strays, latency, last delivery per event).
//!
//! Contract: an event counts once per listener, only once the listener is
//! armed; a sequence number below the listener's next one is a duplicate,
//! and a skip is a gap only for broadcasts.

use std::collections::HashMap;

use crate::bench::hist::Histogram;
use crate::bench::probe::{self, Audience};
use crate::bench::sse::Event;

/// Sequence numbers at or above this are not tracked per event.
const MAX_TRACKED_SEQ: u64 = 1 << 24;

/// Delivery counters, kept apart from the connections so that a parser can
/// update them while it is borrowed.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) unique: u64,
    pub(super) duplicates: u64,
    pub(super) gaps: u64,
    pub(super) strays: u64,
    pub(super) unarmed: u64,
    pub(super) history_gaps: u64,
    pub(super) other_events: u64,
    pub(super) latency: Histogram,
    pub(super) last_delivery_us: Vec<u64>,
}

/// The targets of each event that fall in this worker's slice, memoised.
pub(super) struct Targets {
    pub(super) audience: Audience,
    pub(super) first: u64,
    pub(super) count: u64,
    pub(super) total: u64,
    pub(super) memo: HashMap<u64, Option<Vec<u64>>>,
}

impl Targets {
    /// This worker's targets of event `seq` (global indices, sorted), or
    /// `None` for a broadcast (every event, or every `every`-th).
    pub(super) fn local(&mut self, seq: u64) -> Option<&[u64]> {
        if self.audience == Audience::All {
            return None;
        }
        let (first, count, total, audience) = (self.first, self.count, self.total, self.audience);
        self.memo
            .entry(seq)
            .or_insert_with(|| {
                let all = audience.targets(seq, total)?;
                Some(
                    all.into_iter()
                        .filter(|g| (first..first + count).contains(g))
                        .collect(),
                )
            })
            .as_deref()
    }
}

impl Tally {
    pub(super) fn on_event(
        &mut self,
        e: &Event<'_>,
        now_us: u64,
        global: u64,
        conn: ConnView<'_>,
        targets: &mut Targets,
    ) {
        let Some((t, n)) = probe::decode(e.data) else {
            if e.event_type == "history-gap" {
                self.history_gaps += 1;
            } else {
                self.other_events += 1;
            }
            return;
        };
        if !conn.armed {
            self.unarmed += 1;
            return;
        }
        let broadcast = match targets.local(n) {
            None => true,
            Some(local) => {
                if local.binary_search(&global).is_err() {
                    self.strays += 1;
                    return;
                }
                false
            }
        };
        if n < *conn.next_seq {
            self.duplicates += 1;
            return;
        }
        // A skipped broadcast is a gap only when every event is one (with
        // targeted events between, the listener's own are counted instead).
        if broadcast && targets.audience == Audience::All && n > *conn.next_seq {
            self.gaps += 1;
        }
        *conn.next_seq = n + 1;
        self.unique += 1;
        self.latency.record(now_us.saturating_sub(t));
        if n < MAX_TRACKED_SEQ {
            let n = n as usize;
            if self.last_delivery_us.len() <= n {
                self.last_delivery_us.resize(n + 1, 0);
            }
            self.last_delivery_us[n] = self.last_delivery_us[n].max(now_us);
        }
    }
}

/// The parts of a [`Conn`](super::Conn) an event updates.
pub(super) struct ConnView<'a> {
    pub(super) armed: bool,
    pub(super) next_seq: &'a mut u64,
}
