//! Loading: reads every variable through `env`, applies the defaults and the
//! range checks, and builds the [`Config`]; the first bad value stops it with
//! a [`ConfigError`] naming that variable.

use std::net::{IpAddr, SocketAddr};

use super::env::{err, parse_addr, Env};
use super::{
    Cidr, Config, ConfigError, HeartbeatMode, IoBackend, LogFormat, PublicKey, RedisConfig,
    RedisSource,
};

impl Config {
    /// Reads and validates the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|k| std::env::var(k).ok())
    }

    /// Reads and validates variables through `lookup` (unset = `None`).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env { lookup };
        let listen_addr = match env.get("LISTEN_ADDR") {
            Some(v) => parse_addr("LISTEN_ADDR", &v)?,
            None => {
                let port = env.parse("APP_PORT", 8080u16, "a port number")?;
                SocketAddr::new(IpAddr::from([0, 0, 0, 0]), port)
            }
        };
        let admin_addr = parse_addr(
            "ADMIN_ADDR",
            &env.get("ADMIN_ADDR")
                .unwrap_or_else(|| "127.0.0.1:9090".into()),
        )?;
        let grpc_addr = env
            .get("GRPC_ADDR")
            .map(|v| parse_addr("GRPC_ADDR", &v))
            .transpose()?;
        let cores = core_affinity::get_core_ids()
            .map(|c| c.len())
            .unwrap_or(1)
            .max(1);
        let workers = env.parse("WORKERS", cores, "a positive integer")?;
        if workers == 0 || workers > 1024 {
            return Err(err("WORKERS", format!("expected 1..=1024, got {workers}")));
        }
        let io_backend = env.choice(
            "IO_BACKEND",
            IoBackend::Auto,
            &[
                ("auto", IoBackend::Auto),
                ("epoll", IoBackend::Epoll),
                ("uring", IoBackend::Uring),
            ],
        )?;

        let jwt_secret = env.get("JWT_SECRET");
        let jwt_public_key = match (env.get("JWT_PUBLIC_KEY"), env.get("JWT_PUBLIC_KEY_FILE")) {
            (Some(_), Some(_)) => {
                return Err(err(
                    "JWT_PUBLIC_KEY_FILE",
                    "set either JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE, not both",
                ))
            }
            (Some(pem), None) => Some(PublicKey::Pem(pem.replace("\\n", "\n"))),
            (None, Some(path)) => Some(PublicKey::File(path.into())),
            (None, None) => None,
        };
        let allow_anonymous = env.bool("ALLOW_ANONYMOUS", false)?;

        let heartbeat_secs = env.parse("HEARTBEAT_SECONDS", 30u64, "seconds (0 = off)")?;
        if heartbeat_secs > 86_400 {
            return Err(err("HEARTBEAT_SECONDS", "at most 86400"));
        }
        let max_pending_bytes = env.parse("MAX_PENDING_BYTES", 256 * 1024usize, "a byte count")?;
        if max_pending_bytes < 1024 {
            return Err(err("MAX_PENDING_BYTES", "at least 1024"));
        }
        // Unset: what this host can hold, known only where the rlimits and
        // memory are read (`Config::fit_host`); until then, no limit.
        let max_connections_auto = env.get("MAX_CONNECTIONS").is_none();
        let max_connections = env.parse("MAX_CONNECTIONS", usize::MAX, "a count")?;
        if max_connections == 0 {
            return Err(err("MAX_CONNECTIONS", "at least 1"));
        }
        let cors = super::cors::parse(env.list("CORS_ALLOWED_ORIGINS"))
            .map_err(|e| err("CORS_ALLOWED_ORIGINS", e))?;
        let header_timeout_ms = env.parse("HEADER_TIMEOUT_MS", 10_000u64, "milliseconds")?;
        if !(1..=3_600_000).contains(&header_timeout_ms) {
            return Err(err("HEADER_TIMEOUT_MS", "expected 1..=3600000 (one hour)"));
        }

        let history_size = env.parse("HISTORY_SIZE", 100usize, "a count")?;
        if history_size > 1_000_000 {
            return Err(err("HISTORY_SIZE", "at most 1000000"));
        }
        let history_ttl_secs = env.parse("HISTORY_TTL_SECONDS", 600u64, "seconds")?;
        if !(1..=7 * 86_400).contains(&history_ttl_secs) {
            return Err(err("HISTORY_TTL_SECONDS", "expected 1..=604800 (a week)"));
        }
        let history_max_bytes = env.parse("HISTORY_MAX_BYTES", 256usize << 20, "a byte count")?;
        let history_on_connect = env.parse("HISTORY_ON_CONNECT", 0usize, "a count")?;
        let presence_events = env.choice(
            "INTERNAL_EVENTS_STRATEGY",
            false,
            &[("ignore", false), ("generate", true)],
        )?;
        let presence_list_max = env.parse("PRESENCE_LIST_MAX", 10_000usize, "a count")?;
        if presence_list_max > 1_000_000 {
            return Err(err("PRESENCE_LIST_MAX", "at most 1000000"));
        }
        let max_connections_per_user =
            env.parse("MAX_CONNECTIONS_PER_USER", 0u32, "a count (0 = no limit)")?;
        let rate_limit_per_min = env.parse(
            "RATE_LIMIT_PER_IP_PER_MIN",
            0u32,
            "a count per minute (0 = off)",
        )?;
        let rate_limit_burst = env.parse("RATE_LIMIT_BURST", 10u32, "a count")?;
        if rate_limit_per_min > 0 && rate_limit_burst == 0 {
            return Err(err(
                "RATE_LIMIT_BURST",
                "at least 1 when rate limiting is on",
            ));
        }
        let trusted_proxies = env
            .list("TRUSTED_PROXIES")
            .iter()
            .map(|s| Cidr::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("TRUSTED_PROXIES", e))?;
        let redis = redis_config(&env)?;
        let kafka = super::kafka::kafka_config(&env)?;
        // An admin listener off loopback without a token would let anyone
        // publish, list and end connections (SPEC §7).
        if !admin_addr.ip().is_loopback()
            && env.get("ADMIN_TOKEN").is_none()
            && !env.bool("ADMIN_INSECURE", false)?
        {
            return Err(err(
                "ADMIN_ADDR",
                format!(
                    "{admin_addr} is reachable from other hosts and ADMIN_TOKEN is unset: set \
                     ADMIN_TOKEN, bind it to loopback, or set ADMIN_INSECURE=true"
                ),
            ));
        }
        // The gRPC API can do what the admin listener does: the same rule.
        if let Some(grpc) = grpc_addr.filter(|a| !a.ip().is_loopback()) {
            if env.get("ADMIN_TOKEN").is_none() && !env.bool("ADMIN_INSECURE", false)? {
                return Err(err(
                    "GRPC_ADDR",
                    format!(
                        "{grpc} is reachable from other hosts and ADMIN_TOKEN is unset: set \
                         ADMIN_TOKEN, bind it to loopback, or set ADMIN_INSECURE=true"
                    ),
                ));
            }
        }
        let registry_redis = env.choice(
            "CONNECTION_REGISTRY",
            false,
            &[("local", false), ("redis", true)],
        )?;
        if registry_redis && redis.is_none() {
            return Err(err(
                "CONNECTION_REGISTRY",
                "redis needs REDIS_URL (or REDIS_HOST)",
            ));
        }
        let publish_max_bytes = env.parse("PUBLISH_MAX_BYTES", 1024 * 1024usize, "a byte count")?;
        if !(1024..=256 * 1024 * 1024).contains(&publish_max_bytes) {
            return Err(err("PUBLISH_MAX_BYTES", "expected 1024..=268435456"));
        }
        let publish_max_batch = env.parse("PUBLISH_MAX_BATCH", 10_000usize, "a count")?;
        if !(1..=1_000_000).contains(&publish_max_batch) {
            return Err(err("PUBLISH_MAX_BATCH", "expected 1..=1000000"));
        }
        let registry_ttl_secs = env.parse("REGISTRY_NODE_TTL_SECONDS", 15u64, "seconds")?;
        if !(3..=3600).contains(&registry_ttl_secs) {
            return Err(err("REGISTRY_NODE_TTL_SECONDS", "expected 3..=3600"));
        }

        let shutdown_timeout_ms = env.parse("SHUTDOWN_TIMEOUT_MS", 5000u64, "milliseconds")?;
        // The drain's closes take half the spread; the whole spread must fit
        // the shutdown deadline. Unset, it shrinks to a shorter deadline.
        let drain_spread_ms = match env.get("DRAIN_SPREAD_MS") {
            None => DRAIN_SPREAD_MS.min(shutdown_timeout_ms),
            Some(_) => env.parse("DRAIN_SPREAD_MS", 0u64, "milliseconds (0 = no spread)")?,
        };
        if drain_spread_ms > shutdown_timeout_ms {
            return Err(err(
                "DRAIN_SPREAD_MS",
                format!(
                    "{drain_spread_ms} is longer than SHUTDOWN_TIMEOUT_MS ({shutdown_timeout_ms}): \
                     the drain must end before the shutdown deadline"
                ),
            ));
        }

        Ok(Config {
            listen_addr,
            admin_addr,
            grpc_addr,
            workers,
            pin_cores: env.bool("PIN_CORES", true)?,
            io_backend,
            jwt_secret,
            jwt_public_key,
            jwt_issuers: env.list("JWT_ISSUER"),
            jwt_audience: env.list("JWT_AUDIENCE"),
            jwt_leeway_secs: env.parse("JWT_LEEWAY_SECONDS", 5u64, "seconds")?,
            jwt_cookie: env
                .get("JWT_COOKIE")
                .unwrap_or_else(|| "herald_token".into()),
            close_on_token_expiry: env.bool("CLOSE_ON_TOKEN_EXPIRY", true)?,
            allow_anonymous,
            header_timeout_ms,
            retry_ms: env.parse("RETRY_MS", 3000u64, "milliseconds")?,
            heartbeat_secs,
            heartbeat_mode: env.choice(
                "HEARTBEAT_MODE",
                HeartbeatMode::Event,
                &[
                    ("event", HeartbeatMode::Event),
                    ("comment", HeartbeatMode::Comment),
                ],
            )?,
            max_pending_bytes,
            max_connections,
            max_connections_auto,
            history_size,
            history_ttl_secs,
            history_max_bytes,
            history_on_connect,
            presence_events,
            presence_list_max,
            max_connections_per_user,
            rate_limit_per_min,
            rate_limit_burst,
            trusted_proxies,
            redis,
            kafka,
            registry_redis,
            registry_ttl_secs,
            cors,
            publish_token: env.get("PUBLISH_TOKEN"),
            publish_max_bytes,
            publish_max_batch,
            admin_token: env.get("ADMIN_TOKEN"),
            log_format: env.choice(
                "APP_ENV",
                LogFormat::Text,
                &[
                    ("test", LogFormat::Text),
                    ("dev", LogFormat::Text),
                    ("development", LogFormat::Text),
                    ("prod", LogFormat::Json),
                    ("production", LogFormat::Json),
                ],
            )?,
            log_level: env.choice(
                "LOG_LEVEL",
                log::LevelFilter::Info,
                &[
                    ("error", log::LevelFilter::Error),
                    ("warn", log::LevelFilter::Warn),
                    ("info", log::LevelFilter::Info),
                    ("debug", log::LevelFilter::Debug),
                    ("trace", log::LevelFilter::Trace),
                    ("off", log::LevelFilter::Off),
                ],
            )?,
            shutdown_timeout_ms,
            drain_spread_ms,
        })
    }
}

/// `DRAIN_SPREAD_MS` when unset (README: Restart): 100k listeners come
/// back at 25k/s, a quarter of what one core accepts (BENCHMARKS.md).
pub const DRAIN_SPREAD_MS: u64 = 4000;

fn redis_config(env: &Env<'_>) -> Result<Option<RedisConfig>, ConfigError> {
    let url = match (env.get("REDIS_URL"), env.get("REDIS_HOST")) {
        (Some(url), _) => {
            let url = url.trim().to_string();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(err(
                    "REDIS_URL",
                    format!("expected redis://… or rediss://…, got {url:?}"),
                ));
            }
            url
        }
        (None, Some(host)) => {
            let port = env.parse("REDIS_PORT", 6379u16, "a port number")?;
            format!("redis://{}:{port}", host.trim())
        }
        (None, None) => return Ok(None),
    };
    let db = match env.get("REDIS_DB") {
        None => None,
        Some(_) => Some(env.parse("REDIS_DB", 0i64, "a database number")?),
    };
    let source = match env.get("REDIS_STREAM") {
        Some(key) => RedisSource::Stream(key.trim().to_string()),
        None => {
            let channels = env.list("REDIS_CHANNEL");
            RedisSource::Channels(if channels.is_empty() {
                vec!["herald".into()]
            } else {
                channels
            })
        }
    };
    Ok(Some(RedisConfig {
        url,
        username: env.get("REDIS_USERNAME"),
        password: env.get("REDIS_PASSWORD"),
        db,
        source,
    }))
}
