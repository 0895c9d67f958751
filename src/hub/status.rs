//! What ingest reports, as data: the Redis and Kafka link states shown by
//! `/health`, the ingest counters shown by `/stats`, and where each Kafka
//! partition's reading stands. Ingest writes it; the
//! connection code and the admin listener read it. Relaxed atomics: each
//! value is independent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Mutex;

/// A link's state as `/health` shows it (Redis, Kafka).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisState {
    Disabled = 0,
    Up = 1,
    Down = 2,
}

/// Shared between the ingest thread (writer) and health/stats (readers).
#[derive(Debug)]
pub struct IngestStatus {
    redis: AtomicU8,
    /// Envelopes accepted and published (any path).
    pub published: AtomicU64,
    /// Messages or bodies refused by the decoder (any path).
    pub rejected: AtomicU64,
    /// Times the Redis link was (re)established (pub/sub or streams).
    pub redis_connects: AtomicU64,
    /// Streams mode: times entries were found trimmed (or deleted) before
    /// herald read them, each recorded as a `history-gap`.
    pub stream_gaps: AtomicU64,
    /// With the Redis registry: whether its writer's link is up. While it
    /// is not, streams are not held for the cluster-wide per-user count
    /// (the local limit still applies).
    pub registry_up: AtomicBool,
    /// Streams mode: replays that asked the stream for positions no longer
    /// in memory, and the range reads issued for them (coalesced).
    pub log_requests: AtomicU64,
    pub log_reads: AtomicU64,
    /// Streams mode: range reads that warmed the history at start-up.
    pub warm_reads: AtomicU64,
    kafka: AtomicU8,
    /// Kafka: where reading stands, per (topic, partition). Written by the
    /// Kafka ingest thread once per fetch, read by `/stats` and `/metrics`.
    pub partitions: Mutex<BTreeMap<(String, i32), Partition>>,
}

/// One Kafka partition's reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Partition {
    /// The last offset read (-1: none yet).
    pub last_offset: i64,
    /// The partition's high watermark at the last fetch.
    pub high_watermark: i64,
}

impl Partition {
    /// Records behind: produced but not yet read.
    pub fn lag(&self) -> i64 {
        (self.high_watermark - self.last_offset - 1).max(0)
    }
}

impl IngestStatus {
    pub fn new(redis_enabled: bool) -> Self {
        let state = if redis_enabled {
            RedisState::Down
        } else {
            RedisState::Disabled
        };
        Self {
            redis: AtomicU8::new(state as u8),
            published: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            redis_connects: AtomicU64::new(0),
            stream_gaps: AtomicU64::new(0),
            registry_up: AtomicBool::new(false),
            log_requests: AtomicU64::new(0),
            log_reads: AtomicU64::new(0),
            warm_reads: AtomicU64::new(0),
            kafka: AtomicU8::new(RedisState::Disabled as u8),
            partitions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Kafka is configured: down until its first fetch succeeds.
    pub fn with_kafka(self) -> Self {
        self.kafka.store(RedisState::Down as u8, Relaxed);
        self
    }

    pub fn kafka(&self) -> RedisState {
        state(self.kafka.load(Relaxed))
    }

    /// Sets Kafka's state; returns true when it changed.
    pub fn set_kafka(&self, state: RedisState) -> bool {
        self.kafka.swap(state as u8, Relaxed) != state as u8
    }

    /// Records a Kafka partition's reading.
    pub fn partition_read(&self, topic: &str, partition: i32, p: Partition) {
        if let Ok(mut map) = self.partitions.lock() {
            match map.get_mut(&(topic.to_string(), partition)) {
                Some(old) => *old = p,
                None => {
                    map.insert((topic.to_string(), partition), p);
                }
            }
        }
    }

    /// Every Kafka partition's reading, in order.
    pub fn partition_list(&self) -> Vec<((String, i32), Partition)> {
        self.partitions
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    pub fn redis(&self) -> RedisState {
        state(self.redis.load(Relaxed))
    }

    /// Sets the state; returns true when it changed.
    pub fn set_redis(&self, state: RedisState) -> bool {
        self.redis.swap(state as u8, Relaxed) != state as u8
    }

    /// The `GET /health` body: `degraded` while a configured link is down;
    /// `kafka` only when Kafka is configured.
    pub fn health_json(&self) -> String {
        let (status, redis) = self.health();
        match self.kafka() {
            RedisState::Disabled => format!(r#"{{"status":"{status}","redis":"{redis}"}}"#),
            kafka => format!(
                r#"{{"status":"{status}","redis":"{redis}","kafka":"{}"}}"#,
                kafka.name()
            ),
        }
    }

    /// `(status, redis)` of `GET /health` and gRPC `GetHealth`: `ok`, or
    /// `degraded` while a configured link (Redis, Kafka) is down; and
    /// `disabled`, `up` or `down`.
    pub fn health(&self) -> (&'static str, &'static str) {
        let (redis, kafka) = (self.redis(), self.kafka());
        let status = if redis == RedisState::Down || kafka == RedisState::Down {
            "degraded"
        } else {
            "ok"
        };
        (status, redis.name())
    }
}

impl RedisState {
    pub fn name(self) -> &'static str {
        match self {
            RedisState::Disabled => "disabled",
            RedisState::Up => "up",
            RedisState::Down => "down",
        }
    }
}

fn state(v: u8) -> RedisState {
    match v {
        1 => RedisState::Up,
        2 => RedisState::Down,
        _ => RedisState::Disabled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_redis_state() {
        let s = IngestStatus::new(false);
        assert_eq!(s.health_json(), r#"{"status":"ok","redis":"disabled"}"#);
        let s = IngestStatus::new(true);
        assert_eq!(s.health_json(), r#"{"status":"degraded","redis":"down"}"#);
        assert!(s.set_redis(RedisState::Up));
        assert!(!s.set_redis(RedisState::Up));
        assert_eq!(s.health_json(), r#"{"status":"ok","redis":"up"}"#);
        let s = s.with_kafka();
        assert_eq!(
            s.health_json(),
            r#"{"status":"degraded","redis":"up","kafka":"down"}"#
        );
        assert!(s.set_kafka(RedisState::Up));
        assert_eq!(
            s.health_json(),
            r#"{"status":"ok","redis":"up","kafka":"up"}"#
        );
        let k = IngestStatus::new(false).with_kafka();
        assert!(k.set_kafka(RedisState::Up));
        assert_eq!(
            k.health_json(),
            r#"{"status":"ok","redis":"disabled","kafka":"up"}"#
        );
    }
}
