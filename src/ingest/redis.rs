//! The Redis ingest thread: pub/sub on `REDIS_CHANNEL`, or `XREAD BLOCK` on
//! `REDIS_STREAM` ([`stream`]), feeding the hub. Never touches a reactor
//! directly.
//!
//! - **Pub/sub**: each message is an envelope (or batch, all or nothing);
//!   ids are assigned by the hub unless the envelope has its own. Redis
//!   keeps nothing for an absent subscriber: what is published while the
//!   link is down is lost. Each (re)subscription counts in
//!   `redis_connects`, and a resubscription is logged as a warning that
//!   says so.
//! - **Streams**: see [`stream`]: each entry on its own, resumed after the
//!   last id read, the history warmed from the stream (the TTL window,
//!   within the byte budget) before the reactors start
//!   ([`RedisIngest::load_tail`]), trimmed entries reported as a gap; and
//!   [`replay`]: positions memory no longer holds replayed from the stream
//!   by the log reader, coalesced.
//! - **Outages**: a quiet pub/sub link is probed with PING every 2 s and a
//!   stream read times out after its BLOCK time plus 3 s, so a hung Redis or
//!   a silently dropped path counts as lost. A lost link is retried with
//!   capped exponential backoff; each state change is logged once; `/health`
//!   shows `redis: down` meanwhile. Listeners are not touched.

mod replay;
mod stream;
mod trim;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use log::{info, warn};

use crate::config::{ConfigError, RedisConfig, RedisSource};
use crate::hub::history::log::LogRequest;
use crate::hub::history::Limits;
use crate::hub::{envelope, Hub};
pub use replay::LogReader;
use replay::Through;

use super::RateLimitedLog;
use crate::hub::status::{IngestStatus, RedisState};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
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

/// The Redis ingest: built (and, in streams mode, its tail loaded) before
/// the reactors start, then [`RedisIngest::run`] on its own thread.
pub struct RedisIngest {
    client: redis::Client,
    source: RedisSource,
    ingest: Ingest,
}

impl RedisIngest {
    pub fn new(
        client: redis::Client,
        source: RedisSource,
        history: Limits,
        hub: Arc<Hub>,
        status: Arc<IngestStatus>,
    ) -> Self {
        let ingest = Ingest {
            hub,
            status,
            bad_log: RateLimitedLog::new(Duration::from_secs(10)),
            gap_log: RateLimitedLog::new(Duration::from_secs(10)),
            cursor: stream::Cursor::default(),
            history,
            through: Through::default(),
            subscribed: false,
        };
        Self {
            client,
            source,
            ingest,
        }
    }

    /// Streams mode: reads the stream's last `HISTORY_SIZE` entries into
    /// every reactor's inbox now, within a few seconds. Called before the
    /// reactors start: a reactor drains its inbox before it answers a
    /// stream, so even the first listener is replayed from the tail rather
    /// than sent a false `history-gap`. When Redis cannot be reached it
    /// says so, and the first connect loads the tail. Pub/sub: nothing.
    pub fn load_tail(&mut self) {
        if let RedisSource::Stream(key) = &self.source {
            self.ingest.load_tail_now(&self.client, key);
        }
    }

    /// Streams mode: the log reader that replays positions memory no
    /// longer holds, serving `requests` ([`replay`]).
    pub fn log_reader(&self, requests: Receiver<LogRequest>) -> Option<LogReader> {
        let RedisSource::Stream(key) = &self.source else {
            return None;
        };
        Some(LogReader {
            client: self.client.clone(),
            key: key.clone(),
            hub: self.ingest.hub.clone(),
            status: self.ingest.status.clone(),
            requests,
            through: self.ingest.through.clone(),
            cap: self.ingest.history.cap,
        })
    }

    /// Runs the ingest loop forever (the thread ends with the process).
    pub fn run(mut self) {
        run(&self.client, &self.source, &mut self.ingest);
    }
}

fn run(client: &redis::Client, source: &RedisSource, ingest: &mut Ingest) {
    let mut backoff = super::Backoff::new();
    let mut first_attempt = true;
    loop {
        let started = Instant::now();
        let err = match source {
            RedisSource::Channels(channels) => ingest.pubsub(client, channels),
            RedisSource::Stream(key) => ingest.stream(client, key),
        };
        let was_up = ingest.status.redis() == RedisState::Up;
        if ingest.status.set_redis(RedisState::Down) || first_attempt {
            warn!("redis: link down ({err}); retrying with backoff, listeners stay connected");
        }
        first_attempt = false;
        // Back off from the minimum again only after a link that held: one
        // that fails right after connecting keeps backing off.
        if was_up && started.elapsed() >= STABLE_LINK {
            backoff.reset();
        }
        backoff.sleep();
    }
}

struct Ingest {
    hub: Arc<Hub>,
    status: Arc<IngestStatus>,
    bad_log: RateLimitedLog,
    /// Streams mode: trimmed entries found.
    gap_log: RateLimitedLog,
    /// Streams mode: where reading stands.
    cursor: stream::Cursor,
    /// Streams mode: what the history keeps (the warm-up reads that much).
    history: Limits,
    /// Streams mode: the last entry handed to the hub, for the log reader.
    through: Through,
    /// Pub/sub: subscribed before (a subscription now is a resubscription).
    subscribed: bool,
}

impl Ingest {
    /// Counts a connect and marks the link up; true when it was not.
    fn link_up(&self) -> bool {
        self.status
            .redis_connects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.status.set_redis(RedisState::Up)
    }

    fn up(&self, what: &str) {
        if self.link_up() {
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
        let channels = channels.join(", ");
        if !self.subscribed {
            self.up(&format!("subscribed to {channels}"));
        } else if self.link_up() {
            warn!(
                "redis: link up, subscribed again to {channels}; whatever was published while \
                 the link was down is lost (pub/sub keeps nothing: use REDIS_STREAM when that \
                 matters)"
            );
        }
        self.subscribed = true;
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
