//! Ingest: where events come from. HTTP publish lives in the admin listener;
//! [`redis`] runs the Redis thread (pub/sub or streams), [`kafka`] the
//! Kafka thread. Both decode with the
//! one decoder ([`crate::hub::envelope::decode`]) and hand events to the hub.
//!
//! What ingest reports (the Redis link state shown by `/health`, the counters
//! shown by `/stats`) is [`crate::hub::status::IngestStatus`]: plain data
//! that ingest writes and the connection and admin code read.

pub mod kafka;
pub mod redis;

use std::time::{Duration, Instant};

use log::warn;

/// The clocks read for one publish (the hub reads none).
pub fn now() -> crate::hub::Now {
    crate::hub::Now {
        unix_ms: crate::sys::clock::unix_ms(),
        mono_ms: crate::sys::clock::mono_ms(),
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

/// Capped exponential backoff between attempts at a lost link (Redis
/// ingest, the registry writer, the cluster watcher): 100 ms doubling to 5 s.
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self { next: Self::MIN }
    }

    /// Back to the shortest wait (the link held).
    pub fn reset(&mut self) {
        self.next = Self::MIN;
    }

    /// Sleeps the current wait, and doubles the next (up to the cap).
    pub fn sleep(&mut self) {
        std::thread::sleep(self.advance());
    }

    /// The current wait; the next one doubles, up to the cap (for callers
    /// that wait their own way, such as an async task).
    pub fn advance(&mut self) -> Duration {
        let now = self.next;
        self.next = (now * 2).min(Self::MAX);
        now
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..8).map(|_| b.advance().as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.advance(), Duration::from_millis(100));
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
