//! Replay backed by the log (SPEC §2): when a `Last-Event-ID` is no longer
//! in memory, a log that still holds it (a Redis stream) gives what came
//! after it.
//!
//! Contract:
//! - A reactor never reads the log. It parks the stream and sends a
//!   [`LogRequest`]; a log reader off the reactors answers with a
//!   [`LogAnswer`] through the reactor's inbox, and [`History::join`]
//!   splices it with memory.
//! - The request names the position ([`Pos`]) and the oldest log position
//!   memory still held (`before`): the reader returns, oldest first, the
//!   listener's events in between, at most `HISTORY_SIZE` + 1 of them (the
//!   newest), and whether the position itself is still in the log.
//! - [`History::join`] drops memory events the answer already holds (by log
//!   position), so an answer that overlaps memory sends nothing twice. If
//!   memory evicted its oldest log event while the reader worked, what lay
//!   between is lost to this replay and it begins with `history-gap`.

use std::sync::Arc;

use super::{gap, Replay, Subscriber};
use crate::hub::filter::Filter;
use crate::hub::registry::ConnRef;
use crate::hub::Event;

/// A position in the log: a stream entry id `<ms>-<seq>`, and the element
/// for an event of a batch entry (`<ms>-<seq>.<i>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub ms: u64,
    pub seq: u64,
    pub elem: Option<u32>,
}

impl Pos {
    /// The position an SSE id names, if it is shaped like one.
    pub fn parse(id: &str) -> Option<Pos> {
        let (entry, elem) = match id.split_once('.') {
            Some((entry, i)) => (entry, Some(i.parse().ok()?)),
            None => (id, None),
        };
        let (ms, seq) = entry.split_once('-')?;
        Some(Pos {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
            elem,
        })
    }

    /// The entry id, without the element.
    pub fn entry(&self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }
}

/// A parked stream's question to the log reader.
#[derive(Debug)]
pub struct LogRequest {
    pub conn: ConnRef,
    /// The listener's position (its `Last-Event-ID`).
    pub after: Pos,
    /// The oldest log position memory held when asked (exclusive bound);
    /// `None`: memory held none, read to what ingest has read.
    pub before: Option<Pos>,
    pub app: Box<str>,
    pub user: Option<Box<str>>,
    pub filter: Option<Filter>,
}

impl LogRequest {
    pub fn subscriber(&self) -> Subscriber<'_> {
        Subscriber {
            app: &self.app,
            user: self.user.as_deref(),
            filter: self.filter.as_ref(),
        }
    }
}

/// The log reader's answer.
#[derive(Debug)]
pub struct LogAnswer {
    pub conn: ConnRef,
    /// The listener's events after its position and before `before`,
    /// oldest first: the newest `HISTORY_SIZE` + 1 at most.
    pub events: Vec<Arc<Event>>,
    /// The position is still in the log (not trimmed).
    pub found: bool,
}

impl super::History {
    /// The oldest log position held, the `before` of a [`LogRequest`].
    pub fn oldest_logged(&self) -> Option<Pos> {
        self.store
            .all()
            .find(|e| e.logged)
            .and_then(|e| Pos::parse(&e.id))
    }

    /// Replay from a log answer to a request made when memory's oldest log
    /// position was `before`, then what memory holds after it.
    pub fn join(&self, who: &Subscriber<'_>, answer: LogAnswer, before: Option<Pos>) -> Replay {
        let cap = self.limits.cap;
        let hole = before.is_some() && self.oldest_logged() != before;
        let newest = answer.events.last().and_then(|e| Pos::parse(&e.id));
        let memory = self.walk(who, None);
        let mut events = answer.events;
        events.extend(memory.events.into_iter().filter(|e| {
            !(e.logged && newest.is_some_and(|n| Pos::parse(&e.id).is_some_and(|p| p <= n)))
        }));
        let counted = events.iter().filter(|e| !gap::is_gap_marker(e)).count();
        let over = memory.over || counted > cap;
        if counted > cap {
            // Keep the newest `cap` (and the markers among them).
            let mut seen = 0;
            let start = events
                .iter()
                .rposition(|e| {
                    seen += usize::from(!gap::is_gap_marker(e));
                    seen > cap
                })
                .map_or(0, |i| i + 1);
            events.drain(..start);
        }
        let gap = over || hole || !answer.found;
        Replay {
            gap,
            events: gap::tidy_markers(events, !gap),
            unresolved: false,
        }
    }
}
