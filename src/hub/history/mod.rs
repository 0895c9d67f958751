//! Replay history (SPEC §2): every event for `HISTORY_TTL_SECONDS`, within
//! `HISTORY_MAX_BYTES`, oldest out first; and the replay decision for a
//! listener that reconnects with `Last-Event-ID`.
//!
//! Contract:
//! - Each reactor keeps its own history of `Arc` pointers (no sharing, no
//!   locks). Every reactor sees the same events in the same order and
//!   applies the same budget to them, so replay gives the same answer on
//!   whichever reactor a listener lands, and the budget counts each shared
//!   frame once ([`index::cost`]), not once per reactor.
//! - The history is indexed ([`index`]): a replay walks the broadcasts of
//!   the listener's app, those for every app and the events aimed at its
//!   user, newest first, so it costs what this listener missed, not what
//!   everyone received. Other users' traffic evicts a user's events only
//!   through the node-wide byte budget.
//! - One replay sends at most `HISTORY_SIZE` events ([`Limits::cap`]): a
//!   listener that missed more gets `history-gap`, then the most recent
//!   `HISTORY_SIZE`. Eviction is always of the oldest event, so an id that
//!   is still held means that everything after it is too.
//! - An id that is not held leaves the replay [`Replay::unresolved`]: in
//!   streams mode the log may still hold it ([`log`]); otherwise it is a
//!   gap.
//! - Gap markers ([`gap`]) are replayed in place.

pub mod gap;
mod index;
pub mod log;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use gap::{gap_event, gap_frame, is_gap_marker, GAP_EVENT};

use super::filter::Filter;
use super::{Event, Target};

/// `Last-Event-ID` value asking for everything still in history, no gap.
pub const EARLIEST: &str = "earliest";

/// What the history keeps and gives.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Events one replay sends at most (`HISTORY_SIZE`; 0 keeps nothing).
    pub cap: usize,
    /// How long an event is kept (`HISTORY_TTL_SECONDS`), in milliseconds.
    pub ttl_ms: u64,
    /// What the held events may cost (`HISTORY_MAX_BYTES`).
    pub max_bytes: usize,
}

/// One reactor's history.
pub struct History {
    limits: Limits,
    store: index::Store,
}

/// Who is asking for replay: the listener's app, user and filter.
pub struct Subscriber<'a> {
    pub app: &'a str,
    pub user: Option<&'a str>,
    pub filter: Option<&'a Filter>,
}

impl Subscriber<'_> {
    /// Whether this listener would have received `ev` live.
    pub fn would_receive(&self, ev: &Event) -> bool {
        let app_ok = ev.app.as_deref().is_none_or(|a| a == self.app);
        let target_ok = match &ev.target {
            Target::All => true,
            Target::Users(ids) => self.user.is_some_and(|u| ids.iter().any(|id| &**id == u)),
            Target::Others(user) => self.user != Some(&**user),
        };
        // Internal events (gap markers, here) pass every filter, as live.
        app_ok
            && target_ok
            && (ev.internal
                || self
                    .filter
                    .is_none_or(|f| f.matches(ev.event_type(), ev.source.as_deref())))
    }
}

/// What a (re)connecting listener gets before going live.
#[derive(Debug, Default)]
pub struct Replay {
    /// Send a `history-gap` event first: the id is not held, or more than
    /// `HISTORY_SIZE` events followed it.
    pub gap: bool,
    pub events: Vec<Arc<Event>>,
    /// The id is not in memory and fewer than `HISTORY_SIZE` events are
    /// held for this listener: a log may hold what came between.
    pub unresolved: bool,
}

/// What the history holds now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub events: usize,
    pub bytes: usize,
    /// Users with at least one held event.
    pub users: usize,
}

/// A newest-first walk of what one listener could have been sent.
struct Walk {
    /// The id was met (the events are those after it).
    found: bool,
    /// More than the cap matched before the id (or the end).
    over: bool,
    /// Oldest first, at most the cap (gap markers not counted).
    events: Vec<Arc<Event>>,
}

impl History {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            store: index::Store::default(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Records an event (in ingest order, before delivering it), then
    /// evicts what is past the byte budget or older than the TTL at
    /// `now_ms` (monotonic).
    pub fn push(&mut self, ev: &Arc<Event>, now_ms: u64) {
        if self.limits.cap == 0 || self.limits.max_bytes == 0 {
            return;
        }
        self.store.push(ev);
        self.expire(now_ms);
    }

    /// Evicts, oldest first, what is over the byte budget or older than
    /// the TTL at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let cutoff = now_ms.saturating_sub(self.limits.ttl_ms);
        while let Some(oldest) = self.store.oldest() {
            let stale = oldest.published_ms < cutoff;
            if !stale && self.store.bytes() <= self.limits.max_bytes {
                break;
            }
            self.store.pop_oldest();
        }
    }

    pub fn held(&self) -> Held {
        Held {
            events: self.store.len(),
            bytes: self.store.bytes(),
            users: self.store.users(),
        }
    }

    /// Replay for a listener that last saw `last_event_id`: the events after
    /// the most recent event with that id, at most `HISTORY_SIZE` of them;
    /// `earliest` gives the most recent `HISTORY_SIZE`, no gap.
    pub fn replay(&self, who: &Subscriber<'_>, last_event_id: &str) -> Replay {
        if last_event_id == EARLIEST {
            let w = self.walk(who, None);
            return Replay {
                events: gap::tidy_markers(w.events, false),
                ..Replay::default()
            };
        }
        let w = self.walk(who, Some(last_event_id));
        Replay {
            gap: !w.found,
            unresolved: !w.found && !w.over,
            // After an id that was found, a marker right behind it is news.
            events: gap::tidy_markers(w.events, w.found),
        }
    }

    /// The last `n` events this listener would have received (for
    /// `HISTORY_ON_CONNECT`): nothing is walked for `n == 0`.
    pub fn recent(&self, who: &Subscriber<'_>, n: usize) -> Vec<Arc<Event>> {
        if n == 0 {
            return Vec::new();
        }
        let w = self.walk_capped(who, None, n);
        gap::tidy_markers(w.events, false)
    }

    fn walk(&self, who: &Subscriber<'_>, id: Option<&str>) -> Walk {
        self.walk_capped(who, id, self.limits.cap)
    }

    /// Walks this listener's events newest first until `id` (not a gap
    /// marker's) or `cap` + 1 matches.
    fn walk_capped(&self, who: &Subscriber<'_>, id: Option<&str>, cap: usize) -> Walk {
        let mut w = Walk {
            found: false,
            over: false,
            events: Vec::new(),
        };
        let mut counted = 0;
        for ev in self.store.newest_first(who.app, who.user) {
            let marker = is_gap_marker(ev);
            if id.is_some_and(|id| !marker && *ev.id == *id) {
                w.found = true;
                break;
            }
            if !who.would_receive(ev) {
                continue;
            }
            if !marker {
                if counted == cap {
                    w.over = true;
                    break;
                }
                counted += 1;
            }
            w.events.push(ev.clone());
        }
        w.events.reverse();
        w
    }
}
