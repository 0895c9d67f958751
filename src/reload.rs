//! `SIGHUP`: re-read the configuration and apply what can change while
//! every listener stays connected.
//!
//! Contract:
//! - The variables are read again from where they came from: the process
//!   environment with the `HERALD_ENV_FILE` file(s) laid over it
//!   ([`Source`]), validated by the same [`Config::from_lookup`] as at
//!   start-up, and the JWT keys (key files included) are loaded again.
//!   Without `HERALD_ENV_FILE` the environment cannot change, so a reload
//!   re-reads the key file (`JWT_PUBLIC_KEY_FILE`) only.
//! - All or nothing: a bad value (or an unreadable file) refuses the whole
//!   reload with one `warn` line naming the variable; the running settings
//!   stay, every one of them.
//! - What changes live, for requests read from then on (open streams keep
//!   what they were admitted with): [`LIVE`]. Everything else that differs
//!   is logged as needing a restart and ignored.
//! - The log names what changed, never a value (secrets stay out of logs).
//! - Nothing is closed: listeners, streams and the listening sockets are
//!   untouched. Reactors pick the new settings up through
//!   [`crate::reactor::live`], with no message and no lock per event.

use std::sync::Arc;

use log::{info, warn};

use crate::config::{Config, PublicKey, Source};
use crate::conn::auth::Verifier;
use crate::reactor::live::Live;
use crate::reactor::Shared;

/// The variables a reload applies. `MAX_CONNECTIONS_PER_USER` only between
/// non-zero values and with `CONNECTION_REGISTRY=local`.
pub const LIVE: &[&str] = &[
    "JWT_SECRET",
    "JWT_PUBLIC_KEY",
    "JWT_PUBLIC_KEY_FILE",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_LEEWAY_SECONDS",
    "JWT_COOKIE",
    "ALLOW_ANONYMOUS",
    "CORS_ALLOWED_ORIGINS",
    "TRUSTED_PROXIES",
    "RATE_LIMIT_PER_IP_PER_MIN",
    "RATE_LIMIT_BURST",
    "MAX_CONNECTIONS_PER_USER",
    "LOG_LEVEL",
];

/// One setting: the variable(s) it comes from, and whether two
/// configurations differ in it (compared through `Debug`, never printed).
struct Field {
    name: &'static str,
    differs: fn(&Config, &Config) -> bool,
}

macro_rules! field {
    ($name:expr, $f:ident) => {
        Field {
            name: $name,
            differs: |a, b| format!("{:?}", a.$f) != format!("{:?}", b.$f),
        }
    };
}

/// Settings applied live (see [`LIVE`]); copied by [`merge`].
const LIVE_FIELDS: &[Field] = &[
    field!("JWT_SECRET", jwt_secret),
    field!("JWT_PUBLIC_KEY/JWT_PUBLIC_KEY_FILE", jwt_public_key),
    field!("JWT_ISSUER", jwt_issuers),
    field!("JWT_AUDIENCE", jwt_audience),
    field!("JWT_LEEWAY_SECONDS", jwt_leeway_secs),
    field!("JWT_COOKIE", jwt_cookie),
    field!("ALLOW_ANONYMOUS", allow_anonymous),
    field!("CORS_ALLOWED_ORIGINS", cors),
    field!("TRUSTED_PROXIES", trusted_proxies),
    field!("RATE_LIMIT_PER_IP_PER_MIN", rate_limit_per_min),
    field!("RATE_LIMIT_BURST", rate_limit_burst),
    field!("LOG_LEVEL", log_level),
];

/// Settings that only a restart changes.
const RESTART_FIELDS: &[Field] = &[
    field!("LISTEN_ADDR/APP_PORT", listen_addr),
    field!("ADMIN_ADDR", admin_addr),
    field!("GRPC_ADDR", grpc_addr),
    field!("WORKERS", workers),
    field!("PIN_CORES", pin_cores),
    field!("IO_BACKEND", io_backend),
    field!("CLOSE_ON_TOKEN_EXPIRY", close_on_token_expiry),
    field!("HEADER_TIMEOUT_MS", header_timeout_ms),
    field!("RETRY_MS", retry_ms),
    field!("HEARTBEAT_SECONDS", heartbeat_secs),
    field!("HEARTBEAT_MODE", heartbeat_mode),
    field!("MAX_PENDING_BYTES", max_pending_bytes),
    field!("MAX_CONNECTIONS", max_connections),
    field!("HISTORY_SIZE", history_size),
    field!("HISTORY_TTL_SECONDS", history_ttl_secs),
    field!("HISTORY_MAX_BYTES", history_max_bytes),
    field!("HISTORY_ON_CONNECT", history_on_connect),
    field!("INTERNAL_EVENTS_STRATEGY", presence_events),
    field!("PRESENCE_LIST_MAX", presence_list_max),
    field!("REDIS_*", redis),
    // By value: the Debug form hides the SASL password.
    Field {
        name: "KAFKA_*",
        differs: |a, b| a.kafka != b.kafka,
    },
    field!("CONNECTION_REGISTRY", registry_redis),
    field!("REGISTRY_NODE_TTL_SECONDS", registry_ttl_secs),
    field!("PUBLISH_TOKEN", publish_token),
    field!("PUBLISH_MAX_BYTES", publish_max_bytes),
    field!("PUBLISH_MAX_BATCH", publish_max_batch),
    field!("ADMIN_TOKEN", admin_token),
    field!("APP_ENV", log_format),
    field!("SHUTDOWN_TIMEOUT_MS", shutdown_timeout_ms),
    field!("DRAIN_SPREAD_MS", drain_spread_ms),
];

/// `running` with the live settings of `new` laid over it.
fn merge(running: &Config, new: &Config, per_user_live: bool) -> Config {
    let mut m = running.clone();
    m.jwt_secret.clone_from(&new.jwt_secret);
    m.jwt_public_key.clone_from(&new.jwt_public_key);
    m.jwt_issuers.clone_from(&new.jwt_issuers);
    m.jwt_audience.clone_from(&new.jwt_audience);
    m.jwt_leeway_secs = new.jwt_leeway_secs;
    m.jwt_cookie.clone_from(&new.jwt_cookie);
    m.allow_anonymous = new.allow_anonymous;
    m.cors.clone_from(&new.cors);
    m.trusted_proxies.clone_from(&new.trusted_proxies);
    m.rate_limit_per_min = new.rate_limit_per_min;
    m.rate_limit_burst = new.rate_limit_burst;
    m.log_level = new.log_level;
    if per_user_live {
        m.max_connections_per_user = new.max_connections_per_user;
    }
    m
}

/// The public key file's text, to see a rotation behind an unchanged path.
fn key_file_text(cfg: &Config) -> Option<String> {
    match &cfg.jwt_public_key {
        Some(PublicKey::File(path)) => std::fs::read_to_string(path).ok(),
        _ => None,
    }
}

/// What one reload did: the names applied and those needing a restart.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub applied: Vec<&'static str>,
    pub restart: Vec<&'static str>,
}

/// Applies `SIGHUP`s; lives on the main thread.
pub struct Reloader {
    source: Source,
    /// The configuration as loaded at start-up (before the server's caps):
    /// what restart-only settings are compared with.
    start: Config,
    /// The key file's text in force.
    key_text: Option<String>,
    shared: Arc<Shared>,
}

impl Reloader {
    /// `start`: the configuration as loaded, before any cap was applied.
    pub fn new(start: Config, shared: Arc<Shared>) -> Self {
        Self {
            source: Source::from_env(),
            key_text: key_file_text(&start),
            start,
            shared,
        }
    }

    /// Re-reads and applies, logging the outcome (see the module docs).
    pub fn reload(&mut self) {
        crate::sys::notify::reloading();
        match self.try_reload() {
            Ok(o) if o.applied.is_empty() && o.restart.is_empty() => {
                info!("SIGHUP: configuration re-read; nothing changed")
            }
            Ok(o) => {
                if !o.restart.is_empty() {
                    warn!(
                        "SIGHUP: {} changed but need(s) a restart; ignored until then",
                        o.restart.join(", ")
                    );
                }
                if o.applied.is_empty() {
                    info!("SIGHUP: configuration re-read; nothing applied");
                } else {
                    info!(
                        "SIGHUP: configuration reloaded: {} (new connections use it; \
                         open streams stay)",
                        o.applied.join(", ")
                    );
                }
            }
            Err(e) => warn!("SIGHUP: reload refused, the running configuration stays: {e}"),
        }
        crate::sys::notify::ready(&format!("listening on {}", self.start.listen_addr));
    }

    /// The reload itself: `Err` is the refusal (naming the variable), and
    /// then nothing was changed.
    pub fn try_reload(&mut self) -> Result<Outcome, crate::config::ConfigError> {
        let (new, notes) = self.source.load()?;
        for note in notes {
            warn!("{note}");
        }
        let verifier = Verifier::from_config(&new)?;
        let key_text = key_file_text(&new);
        let running = self.shared.live.load().cfg.clone();

        let mut out = Outcome::default();
        for f in LIVE_FIELDS {
            if (f.differs)(&running, &new) {
                out.applied.push(f.name);
            }
        }
        let same_key_source = running.jwt_public_key == new.jwt_public_key;
        if same_key_source && key_text != self.key_text {
            out.applied.push("JWT_PUBLIC_KEY_FILE (contents)");
        }
        let presence = &self.shared.presence;
        let (old_max, new_max) = (
            running.max_connections_per_user,
            new.max_connections_per_user,
        );
        let per_user_live = !running.registry_redis && old_max != 0 && new_max != 0;
        if old_max != new_max {
            if per_user_live {
                out.applied.push("MAX_CONNECTIONS_PER_USER");
            } else {
                out.restart
                    .push("MAX_CONNECTIONS_PER_USER (on/off, or with the Redis registry)");
            }
        }
        for f in RESTART_FIELDS {
            if (f.differs)(&self.start, &new) {
                out.restart.push(f.name);
            }
        }

        // Everything is validated: apply it all.
        let merged = merge(&running, &new, per_user_live);
        if per_user_live {
            presence.set_per_user_max(new_max);
        }
        self.shared
            .limiter
            .set(merged.rate_limit_per_min, merged.rate_limit_burst);
        log::set_max_level(merged.log_level);
        self.shared.live.publish(Live {
            cfg: Arc::new(merged),
            verifier,
        });
        self.key_text = key_text;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        Config::from_lookup(&|k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
        .expect("valid configuration")
    }

    /// Every variable is either applied live or named as needing a
    /// restart: a new variable cannot be silently ignored by a reload.
    #[test]
    fn every_variable_is_classified() {
        let names: Vec<&str> = LIVE_FIELDS
            .iter()
            .chain(RESTART_FIELDS)
            .flat_map(|f| f.name.split('/'))
            .chain(["MAX_CONNECTIONS_PER_USER"])
            .collect();
        // Not settings of their own: a check at load, and the file list.
        let aside = ["ADMIN_INSECURE", "HERALD_ENV_FILE"];
        for (var, _, _) in crate::config::VARS {
            let covered = names.contains(var)
                || (var.starts_with("REDIS_") && names.contains(&"REDIS_*"))
                || (var.starts_with("KAFKA_") && names.contains(&"KAFKA_*"))
                || aside.contains(var);
            assert!(
                covered,
                "{var} is neither live nor restart-only in reload.rs"
            );
        }
        for var in LIVE {
            assert!(names.contains(var), "{var}");
        }
    }

    #[test]
    fn merge_takes_the_live_settings_and_keeps_the_rest() {
        let running = cfg(&[
            ("JWT_SECRET", "a"),
            ("RETRY_MS", "3000"),
            ("CORS_ALLOWED_ORIGINS", "https://a.example"),
            ("MAX_CONNECTIONS_PER_USER", "1"),
        ]);
        let new = cfg(&[
            ("JWT_SECRET", "b"),
            ("RETRY_MS", "9000"),
            ("CORS_ALLOWED_ORIGINS", "https://b.example"),
            ("MAX_CONNECTIONS_PER_USER", "2"),
        ]);
        let m = merge(&running, &new, false);
        assert_eq!(m.jwt_secret.as_deref(), Some("b"));
        assert_eq!(m.cors, new.cors);
        assert_eq!(m.retry_ms, 3000);
        assert_eq!(m.max_connections_per_user, 1);
        assert_eq!(merge(&running, &new, true).max_connections_per_user, 2);
        for f in LIVE_FIELDS {
            assert!(!(f.differs)(&m, &new), "{} not merged", f.name);
        }
        for f in RESTART_FIELDS {
            assert!(!(f.differs)(&m, &running), "{} merged", f.name);
        }
    }
}
