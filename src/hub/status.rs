//! What ingest reports, as data: the Redis link state shown by `/health`
//! and the ingest counters shown by `/stats`. Ingest writes it; the
//! connection code and the admin listener read it. Relaxed atomics: each
//! value is independent.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};

/// Redis link state as `/health` shows it.
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
        }
    }

    pub fn redis(&self) -> RedisState {
        match self.redis.load(Relaxed) {
            1 => RedisState::Up,
            2 => RedisState::Down,
            _ => RedisState::Disabled,
        }
    }

    /// Sets the state; returns true when it changed.
    pub fn set_redis(&self, state: RedisState) -> bool {
        self.redis.swap(state as u8, Relaxed) != state as u8
    }

    /// The `GET /health` body.
    pub fn health_json(&self) -> String {
        let (status, redis) = self.health();
        format!(r#"{{"status":"{status}","redis":"{redis}"}}"#)
    }

    /// `(status, redis)` of `GET /health` and gRPC `GetHealth`: `ok` or
    /// `degraded`, and `disabled`, `up` or `down`.
    pub fn health(&self) -> (&'static str, &'static str) {
        match self.redis() {
            RedisState::Disabled => ("ok", "disabled"),
            RedisState::Up => ("ok", "up"),
            RedisState::Down => ("degraded", "down"),
        }
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
    }
}
