//! Every environment variable herald reads: its default, its validation and its
//! help text, in one place.
//!
//! [`Config::from_lookup`] takes a lookup function rather than reading the
//! process environment directly, so validation is unit-testable. A bad value
//! is a [`ConfigError`] naming the variable; `main` turns it into exit code 2.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// `(name, default, meaning)` for `herald --help`, in the order shown.
pub const VARS: &[(&str, &str, &str)] = &[
    (
        "LISTEN_ADDR",
        "0.0.0.0:8080",
        "public listener (SSE, /health); wins over APP_PORT",
    ),
    (
        "APP_PORT",
        "",
        "port for the public listener on 0.0.0.0 when LISTEN_ADDR is unset",
    ),
    (
        "ADMIN_ADDR",
        "127.0.0.1:9090",
        "admin listener (/health, POST /publish)",
    ),
    ("WORKERS", "one per core", "number of reactor threads"),
    ("PIN_CORES", "true", "pin each reactor to a core"),
    (
        "IO_BACKEND",
        "auto",
        "auto | epoll | uring: auto uses io_uring when the probe passes, else epoll",
    ),
    (
        "JWT_SECRET",
        "",
        "HMAC key: accepts HS256/HS384/HS512 tokens",
    ),
    (
        "JWT_PUBLIC_KEY",
        "",
        "PEM public key (RSA, EC P-256/P-384, Ed25519)",
    ),
    (
        "JWT_PUBLIC_KEY_FILE",
        "",
        "path of a PEM public key file (instead of JWT_PUBLIC_KEY)",
    ),
    (
        "JWT_ISSUER",
        "",
        "comma list of accepted `iss` (= application); empty: any",
    ),
    (
        "JWT_AUDIENCE",
        "",
        "comma list of accepted `aud`; empty: not checked",
    ),
    ("JWT_LEEWAY_SECONDS", "5", "clock leeway for exp/nbf"),
    ("JWT_COOKIE", "herald_token", "cookie holding the token"),
    (
        "ALLOW_ANONYMOUS",
        "false",
        "accept listeners without a token (broadcasts only)",
    ),
    (
        "HEADER_TIMEOUT_MS",
        "10000",
        "time allowed for a complete request head",
    ),
    (
        "RETRY_MS",
        "3000",
        "the `retry:` sent at the start of each stream",
    ),
    (
        "HEARTBEAT_SECONDS",
        "30",
        "ping a stream idle this long; 0 = off",
    ),
    (
        "HEARTBEAT_MODE",
        "event",
        "event (`event: ping`) | comment (`: ping`)",
    ),
    (
        "MAX_PENDING_BYTES",
        "262144",
        "unsent bytes after which a slow listener is cut",
    ),
    (
        "MAX_CONNECTIONS",
        "10000000",
        "open client connections on the public listener",
    ),
    (
        "CORS_ALLOWED_ORIGINS",
        "*",
        "`*` or a comma list of origins (credentialed)",
    ),
    ("PUBLISH_TOKEN", "", "bearer token for POST /publish"),
    (
        "ADMIN_TOKEN",
        "",
        "bearer token for every admin endpoint but /health",
    ),
    (
        "APP_ENV",
        "test",
        "test (text logs) | prod (JSON-lines logs)",
    ),
    ("LOG_LEVEL", "info", "error | warn | info | debug | trace"),
    (
        "SHUTDOWN_TIMEOUT_MS",
        "5000",
        "how long SIGTERM/SIGINT waits for reactors",
    ),
];

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
    pub workers: usize,
    pub pin_cores: bool,
    pub io_backend: IoBackend,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<PublicKey>,
    pub jwt_issuers: Vec<String>,
    pub jwt_audience: Vec<String>,
    pub jwt_leeway_secs: u64,
    pub jwt_cookie: String,
    pub allow_anonymous: bool,
    pub header_timeout_ms: u64,
    pub retry_ms: u64,
    pub heartbeat_secs: u64,
    pub heartbeat_mode: HeartbeatMode,
    pub max_pending_bytes: usize,
    pub max_connections: usize,
    pub history_size: usize,
    pub history_on_connect: usize,
    pub redis: Option<RedisConfig>,
    pub cors: Cors,
    pub publish_token: Option<String>,
    pub admin_token: Option<String>,
    pub log_format: LogFormat,
    pub log_level: log::LevelFilter,
    pub shutdown_timeout_ms: u64,
}

struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The value of `var`, or `None` when unset or empty.
    fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        what: &str,
    ) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| err(var, format!("expected {what}, got {v:?}"))),
        }
    }

    fn bool(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(err(var, format!("expected true or false, got {v:?}"))),
            },
        }
    }

    fn list(&self, var: &str) -> Vec<String> {
        self.get(var)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn choice<T: Copy>(
        &self,
        var: &'static str,
        default: T,
        choices: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let Some(v) = self.get(var) else {
            return Ok(default);
        };
        let v = v.trim().to_ascii_lowercase();
        choices
            .iter()
            .find(|(name, _)| *name == v)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                err(
                    var,
                    format!("expected one of {}, got {v:?}", names.join(", ")),
                )
            })
    }
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var,
        message: message.into(),
    }
}

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
        let max_connections = env.parse("MAX_CONNECTIONS", 10_000_000usize, "a count")?;
        if max_connections == 0 {
            return Err(err("MAX_CONNECTIONS", "at least 1"));
        }
        let origins = env.list("CORS_ALLOWED_ORIGINS");
        let cors = if origins.is_empty() || origins.iter().any(|o| o == "*") {
            Cors::Any
        } else {
            Cors::List(origins)
        };
        let header_timeout_ms = env.parse("HEADER_TIMEOUT_MS", 10_000u64, "milliseconds")?;
        if !(1..=3_600_000).contains(&header_timeout_ms) {
            return Err(err("HEADER_TIMEOUT_MS", "expected 1..=3600000 (one hour)"));
        }

        let history_size = env.parse("HISTORY_SIZE", 100usize, "a count")?;
        if history_size > 1_000_000 {
            return Err(err("HISTORY_SIZE", "at most 1000000"));
        }
        let history_on_connect = env.parse("HISTORY_ON_CONNECT", 0usize, "a count")?;
        let redis = redis_config(&env)?;

        Ok(Config {
            listen_addr,
            admin_addr,
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
            history_size,
            history_on_connect,
            redis,
            cors,
            publish_token: env.get("PUBLISH_TOKEN"),
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
            shutdown_timeout_ms: env.parse("SHUTDOWN_TIMEOUT_MS", 5000u64, "milliseconds")?,
        })
    }

    /// The `herald --help` text: every variable with its default.
    pub fn help() -> String {
        let mut out = String::from(
            "herald: a Server-Sent Events push server\n\n\
             Usage: herald            run with configuration from the environment\n       \
             herald doctor     check this host against the configuration\n       \
             herald --help     this text\n\n\
             Environment (name, default, meaning):\n",
        );
        for (name, default, meaning) in VARS {
            let default = if default.is_empty() {
                "(unset)"
            } else {
                default
            };
            out.push_str(&format!("  {name:<22} {default:<16} {meaning}\n"));
        }
        out.push_str("\nA bad value stops start-up with exit code 2 and names the variable.\n");
        out
    }
}

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

fn parse_addr(var: &'static str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.trim().parse().map_err(|_| {
        err(
            var,
            format!("expected an address like 0.0.0.0:8080, got {v:?}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = load(&[]).unwrap();
        assert_eq!(c.listen_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.admin_addr, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(c.jwt_cookie, "herald_token");
        assert_eq!(c.max_pending_bytes, 262_144);
        assert_eq!(c.heartbeat_mode, HeartbeatMode::Event);
        assert_eq!(c.cors, Cors::Any);
        assert!(!c.allow_anonymous);
    }

    #[test]
    fn listen_addr_wins_over_app_port() {
        let c = load(&[("APP_PORT", "7000"), ("LISTEN_ADDR", "127.0.0.1:7001")]).unwrap();
        assert_eq!(c.listen_addr.port(), 7001);
        let c = load(&[("APP_PORT", "7000")]).unwrap();
        assert_eq!(c.listen_addr.port(), 7000);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("WORKERS", "zero"),
            ("WORKERS", "0"),
            ("APP_PORT", "99999"),
            ("LISTEN_ADDR", "nowhere"),
            ("PIN_CORES", "maybe"),
            ("HEARTBEAT_MODE", "loud"),
            ("IO_BACKEND", "kqueue"),
            ("MAX_PENDING_BYTES", "-1"),
            ("LOG_LEVEL", "chatty"),
            ("APP_ENV", "staging"),
            ("HISTORY_SIZE", "many"),
            ("REDIS_URL", "http://localhost"),
            ("HISTORY_ON_CONNECT", "-3"),
            ("HEADER_TIMEOUT_MS", "99999999999"),
        ] {
            let e = load(&[(var, value)]).unwrap_err();
            assert_eq!(e.var, var, "{var}={value}");
        }
    }

    #[test]
    fn redis_settings() {
        assert_eq!(load(&[]).unwrap().redis, None);
        let r = load(&[
            ("REDIS_HOST", "10.0.0.5"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "3"),
        ])
        .unwrap()
        .redis
        .unwrap();
        assert_eq!(r.url, "redis://10.0.0.5:6380");
        assert_eq!(r.db, Some(3));
        assert_eq!(r.source, RedisSource::Channels(vec!["herald".into()]));
        let r = load(&[("REDIS_URL", "rediss://h:1"), ("REDIS_CHANNEL", "a, b")])
            .unwrap()
            .redis
            .unwrap();
        assert_eq!(
            r.source,
            RedisSource::Channels(vec!["a".into(), "b".into()])
        );
        let r = load(&[("REDIS_URL", "redis://h"), ("REDIS_STREAM", "s")])
            .unwrap()
            .redis
            .unwrap();
        assert_eq!(r.source, RedisSource::Stream("s".into()));
        assert_eq!(
            load(&[("REDIS_HOST", "h"), ("REDIS_PORT", "x")])
                .unwrap_err()
                .var,
            "REDIS_PORT"
        );
        assert_eq!(
            load(&[("REDIS_URL", "redis://h"), ("REDIS_DB", "x")])
                .unwrap_err()
                .var,
            "REDIS_DB"
        );
    }

    #[test]
    fn cors_list() {
        let c = load(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        )])
        .unwrap();
        assert_eq!(
            c.cors,
            Cors::List(vec!["https://a.example".into(), "https://b.example".into()])
        );
    }

    #[test]
    fn readme_documents_every_variable() {
        let readme = include_str!("../README.md");
        for (name, _, _) in VARS {
            assert!(readme.contains(&format!("`{name}`")), "README lacks {name}");
        }
    }

    #[test]
    fn help_lists_every_variable() {
        let help = Config::help();
        for (name, _, _) in VARS {
            assert!(help.contains(name), "{name}");
        }
    }
}
