//! Every environment variable herald reads: its default, its validation and its
//! help text, in one place.
//!
//! [`Config::from_lookup`] takes a lookup function rather than reading the
//! process environment directly, so validation is unit-testable. A bad value
//! is a [`ConfigError`] naming the variable; `main` turns it into exit code 2.
//!
//! This file holds the validated types; the rest is split by job:
//! - `vars`: [`VARS`], the table behind `herald --help` (and the README
//!   check), and [`Config::help`];
//! - `cors`: `CORS_ALLOWED_ORIGINS` entries checked and normalised;
//! - `kafka`: the `KAFKA_` settings, checked together;
//! - `env`: typed reads of one variable (bool, number, list, choice, address);
//! - `load`: [`Config::from_env`] / [`Config::from_lookup`], which validate
//!   every variable into a [`Config`];
//! - `envfile`: `HERALD_ENV_FILE`, the environment file(s) laid over the
//!   process environment ([`Source`]), read again on `SIGHUP`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

mod cidr;
mod cors;
mod env;
mod envfile;
mod kafka;
mod load;
#[cfg(test)]
mod tests;
mod typos;
mod vars;

pub use cidr::Cidr;
pub use envfile::{parse as parse_env_file, FileVars, Source};
pub use kafka::{KafkaConfig, Sasl, SaslMechanism};
pub use typos::typos;
pub use vars::VARS;

/// A configuration mistake: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoBackend {
    Auto,
    Epoll,
    Uring,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatMode {
    Event,
    Comment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the public key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Pem(String),
    File(PathBuf),
}

/// Where Redis ingest reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisSource {
    Channels(Vec<String>),
    Stream(String),
}

/// Redis ingest settings; absent when neither `REDIS_URL` nor `REDIS_HOST`
/// is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: Option<i64>,
    pub source: RedisSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    Any,
    List(Vec<String>),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The gRPC management API (`GRPC_ADDR`); off when unset.
    pub grpc_addr: Option<SocketAddr>,
    pub workers: usize,
    pub pin_cores: bool,
    pub io_backend: IoBackend,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PublicKey>,
    pub jwt_issuers: Vec<String>,
    pub jwt_audience: Vec<String>,
    pub jwt_leeway_secs: u64,
    pub jwt_cookie: String,
    /// End a stream at its token's `exp` + `jwt_leeway_secs`.
    pub close_on_token_expiry: bool,
    pub allow_anonymous: bool,
    pub header_timeout_ms: u64,
    pub retry_ms: u64,
    pub heartbeat_secs: u64,
    pub heartbeat_mode: HeartbeatMode,
    pub max_pending_bytes: usize,
    pub max_connections: usize,
    /// `MAX_CONNECTIONS` was unset: [`Config::fit_host`] sets it to what
    /// this host can hold.
    pub max_connections_auto: bool,
    /// Events one replay sends at most (`HISTORY_SIZE`).
    pub history_size: usize,
    pub history_ttl_secs: u64,
    pub history_max_bytes: usize,
    pub history_on_connect: usize,
    /// `INTERNAL_EVENTS_STRATEGY=generate`: presence events (SPEC §5).
    pub presence_events: bool,
    pub presence_list_max: usize,
    /// Streams one user may hold in one app (0 = no limit).
    pub max_connections_per_user: u32,
    /// `/sse` attempts per client address per minute (0 = no limit), and
    /// the burst allowed on top.
    pub rate_limit_per_min: u32,
    pub rate_limit_burst: u32,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<Cidr>,
    pub redis: Option<RedisConfig>,
    /// `KAFKA_BROKERS` set: read every partition of `KAFKA_TOPICS`.
    pub kafka: Option<KafkaConfig>,
    /// `CONNECTION_REGISTRY=redis`: connections and presence are kept in
    /// Redis for every node (SPEC §7); a node's entries expire
    /// `registry_ttl_secs` after it stops refreshing them.
    pub registry_redis: bool,
    pub registry_ttl_secs: u64,
    pub cors: Cors,
    pub publish_token: Option<String>,
    /// Largest `POST /publish` body (413 beyond) and batch (400 beyond).
    pub publish_max_bytes: usize,
    pub publish_max_batch: usize,
    pub admin_token: Option<String>,
    pub log_format: LogFormat,
    pub log_level: log::LevelFilter,
    pub shutdown_timeout_ms: u64,
    /// SIGTERM: streams are told `retry:` values and closed so that their
    /// reconnects spread evenly over this many milliseconds (0: all closed
    /// at once, with no final `retry:`).
    pub drain_spread_ms: u64,
}
