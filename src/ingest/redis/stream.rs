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
//! - **Tail.** Before the first read, the last `HISTORY_SIZE` entries fill
//!   the history (replayable, not delivered live) and reading starts after
//!   them. [`Ingest::load_tail`] runs at boot, before the reactors, so even
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

use log::warn;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{RedisResult, Value};

use super::trim::{EntryId, Info, Tally};
use super::{Ingest, CONNECT_TIMEOUT, XREAD_BLOCK_MS, XREAD_COUNT};
use crate::hub::{envelope, Refused};

/// The boot-time tail load gives up after this long (then the reader
/// thread loads it on its first connect).
const TAIL_BUDGET: Duration = Duration::from_secs(5);

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

    /// Reads the last `HISTORY_SIZE` entries into the history and starts
    /// reading after the newest (a concrete id, so that an outage before
    /// the first read loses nothing).
    fn load_tail(&mut self, conn: &mut redis::Connection, key: &str) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(self.history_size.max(1))
            .cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .ignore_errors();
        let (tail, info): (RedisResult<StreamRangeReply>, RedisResult<Value>) = pipe.query(conn)?;
        let tail = tail?.ids;
        // XINFO fails only for a stream that does not exist yet.
        let info = info.ok().map(|v| Info::parse(&v));
        if self.history_size > 0 {
            let (groups, ids) = self.decode_entries(tail.iter().rev());
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
        self.cursor.last = Some(last);
        self.cursor.tally = Tally::start(info.as_ref());
        if let Some(info) = &info {
            self.say_if_uncounted(info);
        }
        Ok(())
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
        self.cursor.last = Some(last);
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
fn entry_envelopes(entry: &StreamId) -> Result<Vec<envelope::Envelope>, String> {
    let Some(Value::BulkString(bytes)) = entry.map.get("envelope") else {
        return Err("no `envelope` field".into());
    };
    let envs = envelope::decode(bytes).map_err(|e| e.to_string())?;
    let single = envs.len() == 1;
    Ok(envs
        .into_iter()
        .enumerate()
        .map(|(i, mut env)| {
            env.id = Some(if single {
                entry.id.clone()
            } else {
                format!("{}.{i}", entry.id)
            });
            env
        })
        .collect())
}
