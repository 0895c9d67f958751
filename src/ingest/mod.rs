//! Ingest: where events come from. HTTP publish lives in the admin listener;
//! [`redis`] runs the Redis thread (pub/sub or streams). Both decode with the
//! one decoder ([`crate::hub::envelope::decode`]) and hand events to the hub.
//!
//! This module also holds what ingest reports: the Redis link state shown by
//! `/health` and the counters shown by `/stats`.

pub mod redis;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::{Duration, Instant};

use log::warn;

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
    /// Times the Redis link was (re)established.
    pub redis_connects: AtomicU64,
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
        match self.redis() {
            RedisState::Disabled => r#"{"status":"ok","redis":"disabled"}"#,
            RedisState::Up => r#"{"status":"ok","redis":"up"}"#,
            RedisState::Down => r#"{"status":"degraded","redis":"down"}"#,
        }
        .to_string()
    }
}

/// Logs at most once per interval, counting what it held back.
pub struct RateLimitedLog {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    pub fn warn(&mut self, msg: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            warn!("{msg} ({} similar messages suppressed)", self.suppressed);
        } else {
            warn!("{msg}");
        }
        self.last = Some(now);
        self.suppressed = 0;
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

    #[test]
    fn rate_limited_log_suppresses_within_interval() {
        let mut l = RateLimitedLog::new(Duration::from_secs(3600));
        l.warn("a");
        l.warn("b");
        l.warn("c");
        assert_eq!(l.suppressed, 2);
    }
}
