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

    /// Like [`Hub::publish`], but the events only fill every reactor's
    /// history (a stream's tail read at start-up): replayable, never
    /// delivered live.
    pub fn preload(
        &self,
        envelopes: Vec<envelope::Envelope>,
        now: Now,
    ) -> Result<usize, envelope::EnvelopeError> {
        self.send(envelopes, now, Inbox::send_history)
    }

    fn send(
        &self,
        envelopes: Vec<envelope::Envelope>,
        now: Now,
        send: fn(&Inbox, Batch),
    ) -> Result<usize, envelope::EnvelopeError> {
        if envelopes.is_empty() {
            return Ok(0);
        }
        // Ids and a ticket under the lock; encoding outside it.
        let (ticket, assigned) = self.reserve(envelopes.len(), now);
        let batch: Batch = envelopes
            .into_iter()
            .zip(assigned)
            .map(|(env, (seq, generated))| {
                let mut ev = env.into_event(seq, generated);
                ev.published_ms = now.mono_ms;
                Arc::new(ev)
            })
            .collect();
        let refused = batch.iter().position(|e| e.frame.len() > self.max_frame);
        // A refused batch still takes (and passes on) its turn.
        self.send_in_turn(ticket, refused.is_none().then_some(&batch), send);
        match refused {
            None => Ok(batch.len()),
            Some(i) => Err(envelope::EnvelopeError {
                index: Some(i),
                reason: format!(
                    "the encoded event is {} bytes, over the {} allowed (half of MAX_PENDING_BYTES)",
                    batch[i].frame.len(),
                    self.max_frame
                ),
            }),
        }
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
