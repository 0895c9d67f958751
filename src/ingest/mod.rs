//! Ingest: where events come from. HTTP publish lives in the admin listener;
//! [`redis`] runs the Redis thread (pub/sub or streams). Both decode with the
//! one decoder ([`crate::hub::envelope::decode`]) and hand events to the hub.
//!
//! What ingest reports (the Redis link state shown by `/health`, the counters
//! shown by `/stats`) is [`crate::hub::status::IngestStatus`]: plain data
//! that ingest writes and the connection and admin code read.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_log_suppresses_within_interval() {
        let mut l = RateLimitedLog::new(Duration::from_secs(3600));
        l.warn("a");
        l.warn("b");
        l.warn("c");
        assert_eq!(l.suppressed, 2);
    }
}
