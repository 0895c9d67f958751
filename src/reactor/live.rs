//! The settings a `SIGHUP` may change while listeners stay connected: the
//! JWT verifier and the configuration new requests are answered with
//! (CORS, `JWT_COOKIE`, `TRUSTED_PROXIES`, token expiry).
//!
//! Contract:
//! - The main thread [`LiveCell::publish`]es a whole new [`Live`] (all or
//!   nothing: it was validated before); reactors never wait for it.
//! - Each reactor keeps its own `Arc<Live>` and checks one atomic
//!   generation per request it reads ([`LiveCell::generation`], an acquire
//!   load of a cache line written only by a reload), taking the cell's lock
//!   only on the first request after a reload. Per-event delivery never
//!   looks at it; streams already open keep what they were admitted with.
//! - [`LiveCell::publish`] stores the new value before it bumps the
//!   generation, so a request read after `publish` returns is answered
//!   with the new settings on every reactor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::conn::auth::Verifier;

/// What new requests are checked against.
pub struct Live {
    /// The running configuration: the start-up one with the reloadable
    /// settings of the last good reload laid over it.
    pub cfg: Arc<Config>,
    pub verifier: Verifier,
}

/// The current [`Live`] and its generation, on a cache line of its own so
/// that the per-accept counters beside it in `Shared` never invalidate it.
#[repr(align(128))]
pub struct LiveCell {
    generation: AtomicU64,
    current: Mutex<Arc<Live>>,
}

impl LiveCell {
    pub fn new(live: Live) -> Self {
        Self {
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(live)),
        }
    }

    /// Bumped by every [`LiveCell::publish`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The current settings (takes the lock: once per reload per reactor).
    pub fn load(&self) -> Arc<Live> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes `live` the settings of every request read from now on.
    pub fn publish(&self, live: Live) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
        self.generation.fetch_add(1, Ordering::Release);
    }
}

/// A reactor's copy of the settings and the generation it was taken at.
pub struct LiveCopy {
    pub live: Arc<Live>,
    generation: u64,
}

impl LiveCopy {
    pub fn new(cell: &LiveCell) -> Self {
        let generation = cell.generation();
        Self {
            live: cell.load(),
            generation,
        }
    }

    /// Takes the cell's settings if a reload published new ones since.
    pub fn refresh(&mut self, cell: &LiveCell) {
        let generation = cell.generation();
        if generation != self.generation {
            self.live = cell.load();
            self.generation = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(secret: &str) -> Live {
        let cfg = Config::from_lookup(&|k| (k == "JWT_SECRET").then(|| secret.to_string()))
            .expect("config");
        Live {
            verifier: Verifier::from_config(&cfg).expect("verifier"),
            cfg: Arc::new(cfg),
        }
    }

    #[test]
    fn a_copy_follows_each_publish_and_only_then() {
        let cell = LiveCell::new(live("one"));
        let mut copy = LiveCopy::new(&cell);
        let first = Arc::as_ptr(&copy.live);
        copy.refresh(&cell);
        assert_eq!(Arc::as_ptr(&copy.live), first, "no reload: same settings");
        cell.publish(live("two"));
        copy.refresh(&cell);
        assert_eq!(copy.live.cfg.jwt_secret.as_deref(), Some("two"));
    }
}
