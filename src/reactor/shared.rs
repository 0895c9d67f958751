//! What every reactor of the process shares: the start-up configuration,
//! the reloadable settings and JWT verifier ([`super::live`]), ingest
//! state, the open-connection count, presence, the rate limiter,
//! connection ids, and where hand-offs go (listings, registry records), the
//! refusal log throttle. Read-only but for atomics, the presence locks and
//! the live settings' cell (written on `SIGHUP` only).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::conn::auth::Verifier;
use crate::conn::ratelimit::RateLimiter;
use crate::hub::history::log::LogRequest;
use crate::hub::history::Limits;
use crate::hub::registry::{IdCodec, Query, Record};
use crate::hub::status::IngestStatus;
use crate::presence::{Presence, Scope};

use super::live::{Live, LiveCell};

/// Read-only state every reactor sees, plus the one process-wide count.
pub struct Shared {
    /// The configuration at start-up: what only a restart changes. What a
    /// `SIGHUP` may change is read through [`Shared::live`].
    pub cfg: Arc<Config>,
    /// The verifier and the settings new requests are answered with.
    pub live: LiveCell,
    /// Ingest state, for `GET /health`.
    pub status: Arc<IngestStatus>,
    /// Client connections open across all reactors (for `MAX_CONNECTIONS`):
    /// one atomic add per accept and one subtract per close.
    pub open: AtomicUsize,
    /// Who is online across reactors (presence events, per-user limit).
    pub presence: Arc<Presence>,
    /// `/sse` attempts per client address, across reactors.
    pub limiter: RateLimiter,
    /// Connection ids (shared with the admin side, which decodes them).
    pub ids: IdCodec,
    /// Where public-listener connection listings are answered (the server
    /// sets it; without it they get 503).
    pub queries: Option<Sender<Query>>,
    /// With the Redis registry: where user streams' opens and closes go.
    pub records: Option<Sender<Record>>,
    /// In streams mode: where replays of positions no longer in memory are
    /// asked of the log reader.
    pub log: Option<Sender<LogRequest>>,
    /// Unsent bytes a listener may have in userspace before it is cut:
    /// `MAX_PENDING_BYTES` less what the kernel's send queue may hold (the
    /// server sets it from the granted `SO_SNDBUF`; all of it by default).
    pub pending_max: usize,
    /// Throttles the refusal log lines ([`super::refusals`]).
    pub refusal_log: super::refusals::RefusalLog,
}

impl Shared {
    /// What every reactor's history keeps and gives.
    pub fn history_limits(&self) -> Limits {
        Limits {
            cap: self.cfg.history_size,
            ttl_ms: self.cfg.history_ttl_secs * 1000,
            max_bytes: self.cfg.history_max_bytes,
        }
    }

    /// What every reactor shares, built from the configuration: presence
    /// (announcing to `feed` when presence events are on) and the rate
    /// limiter as configured, nothing open yet.
    pub fn new(
        cfg: Arc<Config>,
        verifier: Verifier,
        status: Arc<IngestStatus>,
        feed: Option<crossbeam_channel::Sender<crate::presence::Change>>,
    ) -> Self {
        let scope = if cfg.registry_redis {
            Scope::Cluster
        } else {
            Scope::Local
        };
        let presence = Presence::new(
            cfg.max_connections_per_user,
            feed,
            cfg.presence_events,
            scope,
            cfg.presence_list_max,
        );
        let limiter = RateLimiter::new(cfg.rate_limit_per_min, cfg.rate_limit_burst);
        let seed = uuid::Uuid::new_v4().as_u128() as u64;
        let pending_max = cfg.max_pending_bytes;
        let live = LiveCell::new(Live {
            cfg: cfg.clone(),
            verifier,
        });
        Self {
            cfg,
            live,
            status,
            open: AtomicUsize::new(0),
            presence: Arc::new(presence),
            limiter,
            ids: IdCodec::new(seed),
            queries: None,
            records: None,
            log: None,
            pending_max,
            refusal_log: Default::default(),
        }
    }
}
