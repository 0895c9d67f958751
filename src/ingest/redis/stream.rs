//! Streams mode: `XREAD BLOCK` on `REDIS_STREAM`, each entry decoded and
//! handed to the hub on its own.
//!
//! Contract:
//! - **Ids.** The entry id is the SSE id (`<entry-id>.<i>` for element `i`
//!   of a batch entry).
//! - **One entry, one verdict.** An entry that cannot be decoded, or that
//!   holds an event over the size cap, is counted (`rejected_total`), logged
//!   (rate-limited) and skipped; the other entries of the same `XREAD` still
//!   go to the hub as one batch, and a batch entry is all or nothing.
//! - **Resume.** The last id read is kept across reconnects, so entries
//!   added during an outage are delivered, in order, once.
//! - **Warm-up.** Before the first read, the entries of the last
//!   `HISTORY_TTL_SECONDS` (within `HISTORY_MAX_BYTES`, each aged by its
//!   entry id) fill the history (replayable, not delivered live) and
//!   reading starts after them. [`Ingest::load_tail`] runs at boot, before the reactors, so even
//!   the first listener is replayed from it; if Redis is unreachable then,
//!   the first connect does it.
//! - **Trimmed, never silent.** An `XINFO STREAM` pipelined behind every
//!   `XREAD` tells whether entries were removed (trimmed, or `XDEL`ed)
//!   before herald read them ([`super::trim`], Redis 7+; before that it is
//!   said once that this cannot be known). If so, the hub records a gap
//!   before this read's entries ([`crate::hub::Hub::gap`], for the last id
//!   read: live listeners get `history-gap`, replays crossing it report it),
//!   `stream_gaps` counts it, and a warning is logged (rate-limited).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use log::{info, warn};
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{RedisResult, Value};

use super::trim::{EntryId, Info, Tally};
use super::{Ingest, CONNECT_TIMEOUT, XREAD_BLOCK_MS, XREAD_COUNT};
use crate::hub::history::log::Pos;
use crate::hub::{envelope, Refused};

/// Entries per read while warming the history.
const WARM_PAGE: usize = 1000;

/// How a warm-up went.
#[derive(Default)]
pub(super) struct Warmed {
    reads: u64,
    error: Option<redis::RedisError>,
}

/// What an entry will roughly cost in history: its fields twice (the
/// envelope, then the encoded frame) plus the event's own overhead.
fn entry_size(entry: &StreamId) -> usize {
    let fields: usize = entry
        .map
        .values()
        .map(|v| match v {
            Value::BulkString(b) => b.len(),
            _ => 16,
        })
        .sum();
    2 * fields + entry.id.len() + 200
}

/// The boot-time tail load gives up after this long (then the reader
/// thread loads it on its first connect).
const TAIL_BUDGET: Duration = Duration::from_secs(10);

/// Where reading a stream stands.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    /// The id of the last entry read (delivered or refused); `None` until
    /// the tail is loaded.
    pub last: Option<String>,
    /// Entries added against entries read.
    pub tally: Tally,
    /// Said that this Redis cannot count what was trimmed.
    pub said_uncounted: bool,
}

impl Ingest {
    /// Connects (within [`TAIL_BUDGET`]) and loads the stream's tail into
    /// the history. On failure says so and leaves it to the first connect.
    pub(super) fn load_tail_now(&mut self, client: &redis::Client, key: &str) {
        let deadline = Instant::now() + TAIL_BUDGET;
        let loaded = client
            .get_connection_with_timeout(CONNECT_TIMEOUT)
            .and_then(|mut conn| {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100));
                conn.set_read_timeout(Some(left))?;
                conn.set_write_timeout(Some(left))?;
                self.load_tail(&mut conn, key)
            });
        if let Err(e) = loaded {
            warn!(
                "redis: stream {key:?} tail not loaded at start-up ({e}); it is loaded on the \
                 first connect, and listeners that reconnect before that get history-gap"
            );
        }
    }

    /// Warms the history with the entries of the last `HISTORY_TTL_SECONDS`
    /// within `HISTORY_MAX_BYTES` (newest first, [`WARM_PAGE`] a read; what
    /// was read before a failure is kept), and starts reading after the
    /// newest (a concrete id, so that an outage before the first read loses
    /// nothing).
    fn load_tail(&mut self, conn: &mut redis::Connection, key: &str) -> RedisResult<()> {
        let info: RedisResult<Value> = redis::cmd("XINFO").arg("STREAM").arg(key).query(conn);
        // XINFO fails only for a stream that does not exist yet.
        let info = info.ok().map(|v| Info::parse(&v));
        let (tail, warmed) = self.read_window(conn, key);
        if !tail.is_empty() {
            let (mut groups, ids) = self.decode_entries(tail.iter().rev());
            let now = super::super::now().unix_ms;
            for env in groups.iter_mut().flatten() {
                let ms = env.id.as_deref().and_then(Pos::parse).map_or(now, |p| p.ms);
                env.age_ms = now.saturating_sub(ms);
            }
            let (_, refused) = self.hub.preload_each(groups, super::super::now());
            self.refused(&ids, refused);
        }
        // After the newest id ever added (the newest entry may be deleted).
        let newest = info.as_ref().and_then(|i| i.last_generated);
        let last = match (newest, tail.first()) {
            (Some(id), _) => id.to_string(),
            (None, Some(entry)) => entry.id.clone(),
            (None, None) => "0-0".into(),
        };
        if !tail.is_empty() {
            info!(
                "redis: history warmed with {} entries of stream {key:?} ({} reads)",
                tail.len(),
                warmed.reads
            );
        }
        self.read_through(&last);
        self.cursor.last = Some(last);
        self.cursor.tally = Tally::start(info.as_ref());
        if let Some(info) = &info {
            self.say_if_uncounted(info);
        }
        warmed.error.map_or(Ok(()), Err)
    }

    /// The newest entries within the TTL and the byte budget, newest first,
    /// each with its age set so it leaves the history on time.
    fn read_window(&self, conn: &mut redis::Connection, key: &str) -> (Vec<StreamId>, Warmed) {
        let limits = self.history;
        let mut out: Vec<StreamId> = Vec::new();
        let mut warmed = Warmed::default();
        if limits.cap == 0 || limits.max_bytes == 0 {
            return (out, warmed);
        }
        let now = super::super::now().unix_ms;
        let oldest_ms = now.saturating_sub(limits.ttl_ms);
        let mut bytes = 0usize;
        let mut end = "+".to_string();
        loop {
            let page: RedisResult<StreamRangeReply> = redis::cmd("XREVRANGE")
                .arg(key)
                .arg(&end)
                .arg(format!("{oldest_ms}-0"))
                .arg("COUNT")
                .arg(WARM_PAGE)
                .query(conn);
            let page = match page {
                Ok(p) => p.ids,
                Err(e) => {
                    warmed.error = Some(e);
                    break;
                }
            };
            warmed.reads += 1;
            self.status.warm_reads.fetch_add(1, Relaxed);
            let full = page.len() == WARM_PAGE;
            for entry in page {
                // Roughly what the event will cost: the envelope and its frame.
                bytes += entry_size(&entry);
                if bytes > limits.max_bytes {
                    return (out, warmed);
                }
                end = format!("({}", entry.id);
                out.push(entry);
            }
            if !full {
                break;
            }
        }
        (out, warmed)
    }

    /// Reads the stream from the last id until the link fails.
    pub(super) fn stream(&mut self, client: &redis::Client, key: &str) -> redis::RedisError {
        let mut conn = match client.get_connection_with_timeout(CONNECT_TIMEOUT) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let timeout = Duration::from_millis(XREAD_BLOCK_MS) + CONNECT_TIMEOUT;
        if let Err(e) = conn.set_read_timeout(Some(timeout)) {
            return e;
        }
        if self.cursor.last.is_none() {
            if let Err(e) = self.load_tail(&mut conn, key) {
                return e;
            }
        }
        let from = self.cursor.last.clone().unwrap_or_default();
        self.up(&format!("reading stream {key:?} after {from}"));
        loop {
            let from = self.cursor.last.clone().unwrap_or_else(|| "0-0".into());
            let mut pipe = redis::pipe();
            pipe.cmd("XREAD")
                .arg("COUNT")
                .arg(XREAD_COUNT)
                .arg("BLOCK")
                .arg(XREAD_BLOCK_MS)
                .arg("STREAMS")
                .arg(key)
                .arg(&from)
                .cmd("XINFO")
                .arg("STREAM")
                .arg(key)
                .ignore_errors();
            type Reply = (RedisResult<Option<StreamReadReply>>, RedisResult<Value>);
            let (read, info) = match pipe.query::<Reply>(&mut conn) {
                Ok(r) => r,
                Err(e) => return e,
            };
            let read = match read {
                Ok(r) => r,
                Err(e) => return e,
            };
            let entries: Vec<StreamId> = read
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                .unwrap_or_default();
            // XINFO fails only for a stream that does not exist (yet).
            let info = info.ok().map(|v| Info::parse(&v));
            self.check_trimmed(&from, &entries, info.as_ref());
            self.deliver(entries);
        }
    }

    /// Records a gap (before `entries` are delivered) when entries were
    /// removed before herald read them; `from`: the last id read before.
    fn check_trimmed(&mut self, from: &str, entries: &[StreamId], info: Option<&Info>) {
        if let Some(info) = info {
            self.say_if_uncounted(info);
        }
        let read: Vec<EntryId> = entries
            .iter()
            .filter_map(|e| EntryId::parse(&e.id))
            .collect();
        let from_id = EntryId::parse(from).unwrap_or_default();
        let lost = self.cursor.tally.after_read(from_id, &read, info);
        if lost == 0 {
            return;
        }
        self.status.stream_gaps.fetch_add(1, Relaxed);
        self.gap_log.warn(&format!(
            "redis: {lost} stream entries were trimmed or deleted before herald read them \
             (found after {from}); listeners are sent history-gap"
        ));
        self.hub.gap(from, super::super::now());
    }

    /// Says once that this Redis (before 7.0) cannot count trimmed entries.
    fn say_if_uncounted(&mut self, info: &Info) {
        if info.entries_added.is_none() && !self.cursor.said_uncounted {
            self.cursor.said_uncounted = true;
            warn!(
                "redis: this Redis does not count stream entries (entries-added, Redis 7.0): \
                 entries trimmed before herald reads them cannot be detected; keep MAXLEN \
                 well above what arrives during an outage"
            );
        }
    }

    /// Hands one `XREAD`'s entries to the hub: the good ones as one batch.
    fn deliver(&mut self, entries: Vec<StreamId>) {
        let Some(last) = entries.last().map(|e| e.id.clone()) else {
            return;
        };
        let (groups, ids) = self.decode_entries(entries.iter());
        let (n, refused) = self.hub.publish_each(groups, super::super::now());
        self.status.published.fetch_add(n as u64, Relaxed);
        self.refused(&ids, refused);
        self.read_through(&last);
        self.cursor.last = Some(last);
    }

    /// Tells the log reader what has been handed to the hub.
    fn read_through(&self, id: &str) {
        if let Ok(mut t) = self.through.lock() {
            *t = Some(id.to_string());
        }
    }

    /// The envelopes of each entry that decodes (one group per entry) and
    /// those entries' ids; the others are rejected here.
    fn decode_entries<'a>(
        &mut self,
        entries: impl Iterator<Item = &'a StreamId>,
    ) -> (Vec<Vec<envelope::Envelope>>, Vec<&'a str>) {
        let mut groups = Vec::new();
        let mut ids = Vec::new();
        for entry in entries {
            match entry_envelopes(entry) {
                Ok(envs) => {
                    groups.push(envs);
                    ids.push(entry.id.as_str());
                }
                Err(why) => {
                    self.reject(&format!("redis: stream entry {} refused: {why}", entry.id))
                }
            }
        }
        (groups, ids)
    }

    /// Rejects the entries the hub refused.
    fn refused(&mut self, ids: &[&str], refused: Vec<Refused>) {
        for r in refused {
            let id = ids.get(r.group).copied().unwrap_or("?");
            self.reject(&format!("redis: stream entry {id} refused: {}", r.error));
        }
    }
}

/// The envelopes of one stream entry, each with its SSE id: the entry id, or
/// `<entry-id>.<i>` for element `i` of a batch of several. `Err` says why the
/// entry is refused.
pub(super) fn entry_envelopes(entry: &StreamId) -> Result<Vec<envelope::Envelope>, String> {
    let Some(Value::BulkString(bytes)) = entry.map.get("envelope") else {
        return Err("no `envelope` field".into());
    };
    let envs = envelope::decode(bytes).map_err(|e| e.to_string())?;
    Ok(envelope::positioned(envs, &entry.id, false, true))
}
