//! Events and how they are made: envelope decoding, id assignment, SSE
//! encoding (once per event), listener filters, and the [`Hub`] that hands
//! each event to every reactor.
//!
//! Ingest paths (HTTP publish, Redis) call [`Hub::publish`] with the wall
//! clock's time (the hub never reads a clock). The hub takes ids and a
//! ticket under a short lock, encodes outside any lock, then waits for its
//! ticket's turn to send one `Arc` batch to each reactor's inbox (waking
//! each reactor at most once). So every reactor sees events in the same
//! order, which is ingest-sequence order, and concurrent publishers encode
//! in parallel.
//!
//! A publish is all or nothing ([`Hub::publish`], an HTTP batch); a
//! stream's entries are independent ([`Hub::publish_each`]): an entry the
//! hub refuses is left out alone and the others still go out as one batch.
//! [`Hub::gap`] records that events were lost before ingest read them.

pub mod envelope;
pub mod filter;
pub mod history;
pub mod ids;
pub mod inbox;
pub mod registry;
pub mod sse;
pub mod status;

use std::sync::{Arc, Condvar, Mutex};

use inbox::Inbox;

/// Who an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every listener (of `app`, when the event has one).
    All,
    /// Every connection of these user ids (in `app`, or in every app).
    Users(Box<[Box<str>]>),
    /// Every listener of `app` except this user's connections (presence).
    Others(Box<str>),
}

/// One event, decoded once and shared by every reactor and listener.
#[derive(Debug)]
pub struct Event {
    /// Ingest order, strictly increasing per server.
    pub seq: u64,
    /// The SSE `id:` (server-assigned `<unix-ms>-<seq>` or the envelope's own).
    pub id: Box<str>,
    pub app: Option<Box<str>>,
    pub target: Target,
    /// SSE `event:` name; `None` is an unnamed event (type `message`).
    pub name: Option<Box<str>>,
    pub source: Option<Box<str>>,
    /// The complete SSE frame, ending in a blank line.
    pub frame: Box<[u8]>,
    /// Monotonic milliseconds when it was published (for the
    /// publish-to-write latency).
    pub published_ms: u64,
    /// An internal event (SPEC §5, presence): its frame has no `id:` line
    /// (it does not move a listener's `Last-Event-ID`), it is never kept in
    /// history, and it passes every listener filter.
    pub internal: bool,
    /// It came from a log (a Redis stream entry): its id is a log position
    /// ([`history::log::Pos`]) that the log can replay from.
    pub logged: bool,
}

/// An internal event to announce to an app's listeners.
#[derive(Debug)]
pub struct Internal {
    pub app: Box<str>,
    pub name: &'static str,
    pub data: serde_json::Value,
    /// Whose connections do not get it (the user it is about).
    pub except: Option<Box<str>>,
}

/// The time of a publish, read by the caller (the hub reads no clock):
/// wall-clock milliseconds for server-assigned ids, monotonic milliseconds
/// for latency.
#[derive(Debug, Clone, Copy, Default)]
pub struct Now {
    pub unix_ms: u64,
    pub mono_ms: u64,
}

impl Event {
    /// The type used for `event_types` matching.
    pub fn event_type(&self) -> &str {
        self.name.as_deref().unwrap_or("message")
    }
}

/// A batch of events in ingest order, as sent to every reactor.
pub type Batch = Arc<[Arc<Event>]>;

/// A group of [`Hub::publish_each`] that was refused, and why.
#[derive(Debug)]
pub struct Refused {
    /// Its index among the groups.
    pub group: usize,
    /// `index` is the bad envelope's index within the group.
    pub error: envelope::EnvelopeError,
}

/// The fan-out point between ingest and reactors.
pub struct Hub {
    inboxes: Vec<Inbox>,
    /// Ids, and the next ticket to hand out.
    ids: Mutex<(ids::IdGen, u64)>,
    /// The ticket whose batch goes out next.
    turn: Mutex<u64>,
    turn_changed: Condvar,
    /// Largest SSE frame accepted, in bytes.
    max_frame: usize,
}

impl Hub {
    pub fn new(inboxes: Vec<Inbox>, max_frame: usize) -> Self {
        Self {
            inboxes,
            ids: Mutex::new((ids::IdGen::default(), 0)),
            turn: Mutex::new(0),
            turn_changed: Condvar::new(),
            max_frame,
        }
    }

    /// Assigns ids to decoded envelopes, encodes each once and sends the batch
    /// to every reactor. Returns how many events were published.
    ///
    /// A batch holding an event whose SSE frame is larger than the hub's
    /// `max_frame` is refused whole (all or nothing): such an event could
    /// never be delivered to a new listener within `MAX_PENDING_BYTES`.
    pub fn publish(
        &self,
        envelopes: Vec<envelope::Envelope>,
        now: Now,
    ) -> Result<usize, envelope::EnvelopeError> {
        self.send(envelopes, now, Inbox::send_events)
    }

    /// Publishes independent groups of envelopes (a stream's entries, one
    /// group each) as one batch. A group holding an event whose frame is
    /// over `max_frame` is refused alone, all of it; the other groups go
    /// out together, in order. Returns how many events were published, and
    /// the refused groups.
    pub fn publish_each(
        &self,
        groups: Vec<Vec<envelope::Envelope>>,
        now: Now,
    ) -> (usize, Vec<Refused>) {
        self.send_groups(groups, now, Inbox::send_events)
    }

    /// Like [`Hub::publish_each`], but the events only fill every
    /// reactor's history (a stream's tail read at start-up): replayable,
    /// never delivered live.
    pub fn preload_each(
        &self,
        groups: Vec<Vec<envelope::Envelope>>,
        now: Now,
    ) -> (usize, Vec<Refused>) {
        self.send_groups(groups, now, Inbox::send_history)
    }

    /// Records that events after `after_id` were lost before ingest read
    /// them (a stream trimmed past its reader), at this point of the event
    /// order: every reactor keeps a gap marker in its history, so a replay
    /// that crosses this point reports it, and every live listener is sent
    /// `event: history-gap` with `data: {"lastEventId":"<after_id>"}`.
    pub fn gap(&self, after_id: &str, now: Now) {
        let (ticket, assigned) = self.reserve(1, now);
        let seq = assigned.first().map_or(0, |(seq, _)| *seq);
        let marker = Arc::new(history::gap_event(seq, after_id, now.mono_ms));
        let batch: Batch = Arc::from([marker]);
        // The history first: a listener that starts between the two
        // messages hears of the gap twice (replay and live), never not at
        // all. Reactors keep internal events delivered live out of history.
        self.send_in_turn(ticket, Some(&batch), |inbox, batch| {
            inbox.send_history(batch.clone());
            inbox.send_events(batch);
        });
    }

    fn send(
        &self,
        envelopes: Vec<envelope::Envelope>,
        now: Now,
        send: fn(&Inbox, Batch),
    ) -> Result<usize, envelope::EnvelopeError> {
        let (n, mut refused) = self.send_groups(vec![envelopes], now, send);
        refused.pop().map_or(Ok(n), |r| Err(r.error))
    }

    fn send_groups(
        &self,
        groups: Vec<Vec<envelope::Envelope>>,
        now: Now,
        send: fn(&Inbox, Batch),
    ) -> (usize, Vec<Refused>) {
        let total = groups.iter().map(Vec::len).sum();
        if total == 0 {
            return (0, Vec::new());
        }
        // Ids and a ticket under the lock; encoding outside it.
        let (ticket, assigned) = self.reserve(total, now);
        let mut assigned = assigned.into_iter();
        let mut events: Vec<Arc<Event>> = Vec::with_capacity(total);
        let mut refused = Vec::new();
        for (group, envelopes) in groups.into_iter().enumerate() {
            let start = events.len();
            for (env, (seq, generated)) in envelopes.into_iter().zip(assigned.by_ref()) {
                let age_ms = env.age_ms;
                let mut ev = env.into_event(seq, generated);
                ev.published_ms = now.mono_ms.saturating_sub(age_ms);
                events.push(Arc::new(ev));
            }
            let too_big = events[start..]
                .iter()
                .position(|e| e.frame.len() > self.max_frame);
            // One event's burst is its frame, checked just above: only a
            // batch (a publish body, a batch entry) needs the sum.
            let group_events = &events[start..];
            let burst = if group_events.len() > 1 {
                burst(group_events)
            } else {
                0
            };
            let error = match too_big {
                Some(i) => Some(envelope::EnvelopeError {
                    index: Some(i),
                    reason: format!(
                        "the encoded event is {} bytes, over the {} allowed (half of MAX_PENDING_BYTES)",
                        events[start + i].frame.len(),
                        self.max_frame
                    ),
                }),
                None if burst > self.max_frame => Some(envelope::EnvelopeError {
                    index: None,
                    reason: format!(
                        "this batch would send one listener {burst} bytes at once, over the {} \
                         allowed (half of MAX_PENDING_BYTES): split it, or raise MAX_PENDING_BYTES",
                        self.max_frame
                    ),
                }),
                None => None,
            };
            if let Some(error) = error {
                refused.push(Refused { group, error });
                events.truncate(start);
            }
        }
        let batch: Batch = events.into();
        // A batch left empty still takes (and passes on) its turn.
        self.send_in_turn(ticket, (!batch.is_empty()).then_some(&batch), send);
        (batch.len(), refused)
    }

    /// Sends internal events (presence) to every reactor as one batch, in
    /// order with published events.
    pub fn announce(&self, internal: Vec<Internal>, now: Now) {
        if internal.is_empty() {
            return;
        }
        let (ticket, assigned) = self.reserve(internal.len(), now);
        let batch: Batch = internal
            .into_iter()
            .zip(assigned)
            .map(|(i, (seq, _))| {
                let frame = sse::encode_event(None, Some(i.name), sse::Payload::Json(&i.data));
                Arc::new(Event {
                    seq,
                    id: "".into(),
                    app: Some(i.app),
                    target: i.except.map_or(Target::All, Target::Others),
                    name: Some(i.name.into()),
                    source: None,
                    frame: frame.into(),
                    published_ms: now.mono_ms,
                    internal: true,
                    logged: false,
                })
            })
            .collect();
        self.send_in_turn(ticket, Some(&batch), Inbox::send_events);
    }

    /// `n` (sequence, id) pairs and a ticket, under the id lock.
    fn reserve(&self, n: usize, now: Now) -> (u64, Vec<(u64, String)>) {
        let mut guard = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let (gen, next_ticket) = &mut *guard;
        let assigned = (0..n).map(|_| gen.next(now.unix_ms)).collect();
        *next_ticket += 1;
        (*next_ticket - 1, assigned)
    }

    /// When `ticket`'s turn comes, hands `batch` (none for a refused one)
    /// to every inbox with `send`, then passes the turn on: so every inbox
    /// gets batches in sequence order.
    fn send_in_turn(&self, ticket: u64, batch: Option<&Batch>, send: fn(&Inbox, Batch)) {
        let mut turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        while *turn != ticket {
            turn = self
                .turn_changed
                .wait(turn)
                .unwrap_or_else(|p| p.into_inner());
        }
        if let Some(batch) = batch {
            for inbox in &self.inboxes {
                send(inbox, batch.clone());
            }
        }
        *turn += 1;
        drop(turn);
        self.turn_changed.notify_all();
    }

    pub fn inboxes(&self) -> &[Inbox] {
        &self.inboxes
    }
}

/// The most bytes of `events` one listener can be sent at once: every
/// event that reaches all (or all but one) of an app's listeners, plus the
/// events aimed at the user they add up to most for. A batch over the
/// per-event limit this way would cut even a listener that keeps up.
fn burst(events: &[Arc<Event>]) -> usize {
    let mut shared = 0;
    let mut per_user: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for ev in events {
        match &ev.target {
            Target::All | Target::Others(_) => shared += ev.frame.len(),
            Target::Users(users) => {
                for u in users.iter() {
                    *per_user.entry(u).or_default() += ev.frame.len();
                }
            }
        }
    }
    shared + per_user.values().copied().max().unwrap_or(0)
}

#[cfg(test)]
mod tests;
