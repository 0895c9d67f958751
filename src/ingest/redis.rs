//! The Redis ingest thread: pub/sub on `REDIS_CHANNEL`, or `XREAD BLOCK` on
//! `REDIS_STREAM`, feeding the hub. Never touches a reactor directly.
//!
//! - **Pub/sub**: each message is an envelope (or batch); ids are assigned by
//!   the hub unless the envelope has its own.
//! - **Streams**: each entry's `envelope` field is decoded; the entry id is
//!   the SSE id (`<entry-id>.<i>` for element `i` of a batch entry). The
//!   thread remembers the last id read and resumes from it after any
//!   reconnect, so entries added during an outage are delivered, in order,
//!   once. On first connect it starts after the stream's current last entry
//!   and loads the last `HISTORY_SIZE` entries before it into the history
//!   (replayable, not delivered live), so ids survive a restart.
//! - **Outages**: a quiet pub/sub link is probed with PING every 2 s and a
//!   stream read times out after its BLOCK time plus 3 s, so a hung Redis or
//!   a silently dropped path counts as lost. A lost link is retried with
//!   capped exponential backoff; each state change is logged once; `/health`
//!   shows `redis: down` meanwhile. Listeners are not touched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{info, warn};
use redis::streams::{StreamId, StreamReadReply};

use crate::config::{ConfigError, RedisConfig, RedisSource};
use crate::hub::{envelope, Hub};

use super::RateLimitedLog;
use crate::hub::status::{IngestStatus, RedisState};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A link up at least this long resets the backoff.
const STABLE_LINK: Duration = Duration::from_secs(10);
/// `XREAD BLOCK` time; the socket read timeout is a little longer.
const XREAD_BLOCK_MS: u64 = 2000;
const XREAD_COUNT: usize = 1000;
/// Pub/sub: after this long without a message, PING (and fail if no PONG
/// comes within as long again).
const PUBSUB_IDLE: Duration = Duration::from_secs(2);

/// Validates the Redis settings into a client (no connection is made yet).
pub fn client(cfg: &RedisConfig) -> Result<redis::Client, ConfigError> {
    let bad = |message: String| ConfigError {
        var: "REDIS_URL",
        message,
    };
    let mut info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str())
        .map_err(|e| bad(format!("cannot parse {:?}: {e}", cfg.url)))?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &cfg.password {
        settings = settings.set_password(p);
    }
    if let Some(db) = cfg.db {
        settings = settings.set_db(db);
    }
    info = info.set_redis_settings(settings);
    redis::Client::open(info).map_err(|e| bad(e.to_string()))
}

/// Runs the ingest loop forever (the thread ends with the process).
pub fn run(
    client: redis::Client,
    source: RedisSource,
    history_size: usize,
    hub: Arc<Hub>,
    status: Arc<IngestStatus>,
) {
    let mut ingest = Ingest {
        hub,
        status,
        bad_log: RateLimitedLog::new(Duration::from_secs(10)),
        last_stream_id: None,
        history_size,
    };
    let mut backoff = BACKOFF_MIN;
    let mut first_attempt = true;
    loop {
        let started = Instant::now();
        let err = match &source {
            RedisSource::Channels(channels) => ingest.pubsub(&client, channels),
            RedisSource::Stream(key) => ingest.stream(&client, key),
        };
        let was_up = ingest.status.redis() == RedisState::Up;
        if ingest.status.set_redis(RedisState::Down) || first_attempt {
            warn!("redis: link down ({err}); retrying with backoff, listeners stay connected");
        }
        first_attempt = false;
        // Back off from the minimum again only after a link that held: one
        // that fails right after connecting keeps backing off.
        if was_up && started.elapsed() >= STABLE_LINK {
            backoff = BACKOFF_MIN;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

struct Ingest {
    hub: Arc<Hub>,
    status: Arc<IngestStatus>,
    bad_log: RateLimitedLog,
    /// Streams mode: the id of the last entry handed to the hub.
    last_stream_id: Option<String>,
    /// Streams mode: entries read into the history at start-up.
    history_size: usize,
}

impl Ingest {
    fn up(&self, what: &str) {
        self.status
            .redis_connects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.status.set_redis(RedisState::Up) {
            info!("redis: link up, {what}");
        }
    }

    /// Subscribes and forwards messages until the link fails.
    fn pubsub(&mut self, client: &redis::Client, channels: &[String]) -> redis::RedisError {
        let mut conn = match client.get_connection_with_timeout(CONNECT_TIMEOUT) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut ps = conn.as_pubsub();
        // A quiet link is probed with PING: a Redis that hangs or a path that
        // silently drops is noticed within two idle periods, not never.
        if let Err(e) = ps.set_read_timeout(Some(PUBSUB_IDLE)) {
            return e;
        }
        for ch in channels {
            if let Err(e) = ps.subscribe(ch) {
                return e;
            }
        }
        self.up(&format!("subscribed to {}", channels.join(", ")));
        loop {
            match ps.get_message() {
                Ok(msg) => {
                    let what = format!("message on channel {:?}", msg.get_channel_name());
                    if let Some(envs) = self.decode(msg.get_payload_bytes(), &what) {
                        self.publish(envs);
                    }
                }
                Err(e) if e.is_timeout() => {
                    if let Err(e) = ps.ping::<redis::Value>() {
                        return e;
                    }
                }
                Err(e) => return e,
            }
        }
    }

    /// Reads the stream from the last id until the link fails.
    fn stream(&mut self, client: &redis::Client, key: &str) -> redis::RedisError {
        let mut conn = match client.get_connection_with_timeout(CONNECT_TIMEOUT) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let timeout = Duration::from_millis(XREAD_BLOCK_MS) + CONNECT_TIMEOUT;
        if let Err(e) = conn.set_read_timeout(Some(timeout)) {
            return e;
        }
        if self.last_stream_id.is_none() {
            // Start after the current last entry, resolved to a concrete id so
            // that an outage before the first read loses nothing; the tail
            // before it fills the history, so a listener that reconnects to
            // this (re)started node with an older id is replayed, not gapped.
            let tail: redis::RedisResult<redis::streams::StreamRangeReply> =
                redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(self.history_size.max(1))
                    .query(&mut conn);
            let tail = match tail {
                Ok(r) => r.ids,
                Err(e) => return e,
            };
            let last = tail
                .first()
                .map_or_else(|| "0-0".to_string(), |e| e.id.clone());
            if self.history_size > 0 {
                let envs = tail
                    .iter()
                    .rev()
                    .filter_map(|entry| entry_envelopes(entry).ok())
                    .flatten()
                    .collect();
                if let Err(e) = self.hub.preload(envs, super::now()) {
                    warn!("redis: stream tail not loaded into history: {e}");
                }
            }
            self.last_stream_id = Some(last);
        }
        let from = self.last_stream_id.clone().unwrap_or_default();
        self.up(&format!("reading stream {key:?} after {from}"));
        loop {
            let from = self.last_stream_id.clone().unwrap_or_else(|| "0-0".into());
            let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(XREAD_COUNT)
                .arg("BLOCK")
                .arg(XREAD_BLOCK_MS)
                .arg("STREAMS")
                .arg(key)
                .arg(&from)
                .query(&mut conn);
            let reply = match reply {
                Ok(r) => r,
                Err(e) => return e,
            };
            let Some(reply) = reply else { continue };
            let mut batch = Vec::new();
            for entry in reply.keys.into_iter().flat_map(|k| k.ids) {
                match entry_envelopes(&entry) {
                    Ok(envs) => batch.extend(envs),
                    Err(why) => {
                        self.reject(&format!("redis: stream entry {} refused: {why}", entry.id))
                    }
                }
                self.last_stream_id = Some(entry.id);
            }
            self.publish(batch);
        }
    }

    fn decode(&mut self, payload: &[u8], what: &str) -> Option<Vec<envelope::Envelope>> {
        match envelope::decode(payload) {
            Ok(envs) => Some(envs),
            Err(e) => {
                self.reject(&format!("redis: {what} refused: {e}"));
                None
            }
        }
    }

    fn reject(&mut self, msg: &str) {
        self.status
            .rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.bad_log.warn(msg);
    }

    fn publish(&mut self, envs: Vec<envelope::Envelope>) {
        match self.hub.publish(envs, super::now()) {
            Ok(n) => {
                self.status
                    .published
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(e) => self.reject(&format!("redis: batch refused: {e}")),
        }
    }
}

/// The envelopes of one stream entry, each with its SSE id: the entry id, or
/// `<entry-id>.<i>` for element `i` of a batch of several. `Err` says why the
/// entry is refused.
fn entry_envelopes(entry: &StreamId) -> Result<Vec<envelope::Envelope>, String> {
    let Some(redis::Value::BulkString(bytes)) = entry.map.get("envelope") else {
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
