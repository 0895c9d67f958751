//! The log reader (streams mode): replays positions that memory no longer
//! holds from the stream itself, off the reactors.
//!
//! Contract:
//! - Requests are coalesced: after the first one arrives, the reader waits
//!   [`GATHER`] for more, then serves all that are waiting with **one**
//!   backward walk of the stream (`XREVRANGE`, [`PAGE`] entries a read),
//!   from the newest bound any of them needs down to the oldest position
//!   any of them names. Each entry is decoded and encoded once, for every
//!   request. So a reconnect storm of 100k listeners costs Redis a bounded
//!   number of range reads (`history_log_reads_total` counts them), not
//!   100k.
//! - A request takes the entries between its position and its bound (the
//!   oldest log position its reactor's memory held; without one, the last
//!   entry ingest has handed to the hub, so nothing still on its way to the
//!   reactors is replayed twice), filtered for its listener, newest first,
//!   and stops at its position or at `HISTORY_SIZE` + 1 events.
//! - The walk stops after [`SCAN_MAX`] entries; a request not settled by
//!   then (or when Redis fails) is answered "not found", so the listener
//!   gets `history-gap` and what memory holds, never a stuck stream.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use redis::streams::StreamRangeReply;

use super::{stream::entry_envelopes, CONNECT_TIMEOUT};
use crate::hub::history::log::{LogAnswer, LogRequest, Pos};
use crate::hub::status::IngestStatus;
use crate::hub::{Event, Hub};
use crate::ingest::RateLimitedLog;

/// How long the reader lets requests gather before a walk.
const GATHER: Duration = Duration::from_millis(5);
/// Requests served by one walk at most.
const MAX_GROUP: usize = 100_000;
/// Entries per `XREVRANGE`.
const PAGE: usize = 1000;
/// Entries one walk reads at most.
const SCAN_MAX: usize = 200_000;

/// The last entry id ingest handed to the hub (shared with the reader).
pub type Through = Arc<Mutex<Option<String>>>;

pub struct LogReader {
    pub(super) client: redis::Client,
    pub(super) key: String,
    pub(super) hub: Arc<Hub>,
    pub(super) status: Arc<IngestStatus>,
    pub(super) requests: Receiver<LogRequest>,
    pub(super) through: Through,
    /// `HISTORY_SIZE`.
    pub(super) cap: usize,
}

/// One request while the walk goes on.
struct Pending {
    req: LogRequest,
    /// Exclusive bound: entries at or after it are not this request's.
    bound: Option<Pos>,
    events: Vec<Arc<Event>>,
    counted: usize,
    found: bool,
    done: bool,
}

impl LogReader {
    /// Serves requests until every reactor is gone.
    pub fn run(self) {
        let mut conn = None;
        let mut fail_log = RateLimitedLog::new(Duration::from_secs(10));
        while let Ok(first) = self.requests.recv() {
            std::thread::sleep(GATHER);
            let mut group = vec![first];
            group.extend(self.requests.try_iter().take(MAX_GROUP));
            self.status
                .log_requests
                .fetch_add(group.len() as u64, Relaxed);
            let through = self.through.lock().map_or(None, |t| t.clone());
            let through = through.as_deref().and_then(Pos::parse).map(|p| Pos {
                seq: p.seq + 1,
                elem: None,
                ..p
            });
            let mut pending: Vec<Pending> = group
                .into_iter()
                .map(|req| Pending {
                    bound: req.before.or(through),
                    req,
                    events: Vec::new(),
                    counted: 0,
                    found: false,
                    done: false,
                })
                .collect();
            if let Err(e) = self.walk(&mut conn, &mut pending) {
                conn = None;
                fail_log.warn(&format!(
                    "redis: replay from stream {:?} failed ({e}); those listeners get \
                     history-gap and what memory holds",
                    self.key
                ));
            }
            for p in pending {
                let mut events = p.events;
                events.reverse();
                let answer = LogAnswer {
                    conn: p.req.conn,
                    events,
                    found: p.found,
                };
                if let Some(inbox) = self.hub.inboxes().get(p.req.conn.reactor as usize) {
                    inbox.log_answer(answer);
                }
            }
        }
    }

    /// One backward walk for every pending request.
    fn walk(
        &self,
        conn: &mut Option<redis::Connection>,
        pending: &mut [Pending],
    ) -> redis::RedisResult<()> {
        let Some(lowest) = pending.iter().map(|p| p.req.after).min() else {
            return Ok(());
        };
        let top = pending.iter().map(|p| p.bound).max().flatten();
        let Some(top) = top else {
            // Ingest has read nothing: the stream holds nothing to replay.
            return Ok(());
        };
        if conn.is_none() {
            let c = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            *conn = Some(c);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(());
        };
        let mut end = format!("({}", top.entry());
        let mut scanned = 0;
        while scanned < SCAN_MAX && pending.iter().any(|p| !p.done) {
            let page: StreamRangeReply = redis::cmd("XREVRANGE")
                .arg(&self.key)
                .arg(&end)
                .arg(lowest.entry())
                .arg("COUNT")
                .arg(PAGE)
                .query(c)?;
            self.status.log_reads.fetch_add(1, Relaxed);
            scanned += page.ids.len();
            for entry in &page.ids {
                let Some(pos) = Pos::parse(&entry.id) else {
                    continue;
                };
                // An entry that cannot be decoded was refused live too.
                let events: Vec<Arc<Event>> = match entry_envelopes(entry) {
                    Ok(envs) => envs
                        .into_iter()
                        .map(|env| Arc::new(env.into_event(0, String::new())))
                        .collect(),
                    Err(_) => Vec::new(),
                };
                for p in pending.iter_mut().filter(|p| !p.done) {
                    self.take(p, pos, &events);
                }
            }
            match page.ids.last() {
                Some(last) if page.ids.len() == PAGE => end = format!("({}", last.id),
                // The bottom of the range (or of the stream) is reached:
                // whoever did not meet its position lost it to a trim.
                _ => break,
            }
        }
        for p in pending.iter_mut() {
            p.done = true;
        }
        Ok(())
    }

    /// Offers one entry (at `pos`, its events in order) to a request.
    fn take(&self, p: &mut Pending, pos: Pos, events: &[Arc<Event>]) {
        let entry = (pos.ms, pos.seq);
        let after = (p.req.after.ms, p.req.after.seq);
        if p.bound.is_some_and(|b| entry >= (b.ms, b.seq)) {
            return;
        }
        if entry < after {
            // The position's own entry is gone, but the log reaches below it.
            p.found = true;
            p.done = true;
            return;
        }
        let who = p.req.subscriber();
        for (i, ev) in events.iter().enumerate().rev() {
            if entry == after && p.req.after.elem.is_none_or(|e| i as u32 <= e) {
                continue;
            }
            if !who.would_receive(ev) {
                continue;
            }
            if p.counted > self.cap {
                p.done = true;
                return;
            }
            p.counted += 1;
            p.events.push(ev.clone());
        }
        if entry == after {
            p.found = true;
            p.done = true;
        }
    }
}
