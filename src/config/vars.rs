//! The variable table behind `herald --help`: `(name, default, meaning)`, in
//! the order shown, and the help text built from it.
//!
//! Contract: this is the one list of variables. Unit tests check that every
//! variable the source reads is here, and that README.md and
//! systemd/herald.env document every name here. Each default shown must be
//! the one `load` applies.

use super::Config;

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
    (
        "GRPC_ADDR",
        "",
        "gRPC management API (sse.SSEManagementService); unset: off",
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
        "CLOSE_ON_TOKEN_EXPIRY",
        "true",
        "end a stream when its token expires (exp + leeway)",
    ),
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
        "what the host holds",
        "open client connections; unset: min(fd limit, memory) at start-up, logged",
    ),
    (
        "HISTORY_SIZE",
        "100",
        "events one Last-Event-ID replay sends at most (0 = no history)",
    ),
    (
        "HISTORY_TTL_SECONDS",
        "600",
        "how long every event is kept for replay",
    ),
    (
        "HISTORY_MAX_BYTES",
        "268435456",
        "node-wide byte budget of the history (oldest out first)",
    ),
    (
        "HISTORY_ON_CONNECT",
        "0",
        "history events sent to a connection without Last-Event-ID",
    ),
    (
        "INTERNAL_EVENTS_STRATEGY",
        "ignore",
        "generate: presence events (on-connection, user-connected, user-disconnected)",
    ),
    (
        "PRESENCE_LIST_MAX",
        "10000",
        "most users listed in an on-connection event",
    ),
    (
        "MAX_CONNECTIONS_PER_USER",
        "0",
        "streams one user may hold in one app; 0 = no limit (503 beyond)",
    ),
    (
        "RATE_LIMIT_PER_IP_PER_MIN",
        "0",
        "/sse attempts per client address per minute; 0 = off (429 beyond)",
    ),
    (
        "RATE_LIMIT_BURST",
        "10",
        "attempts a client address may make at once on top of the rate",
    ),
    (
        "TRUSTED_PROXIES",
        "",
        "comma list of IPs/CIDRs whose X-Forwarded-For names the client",
    ),
    (
        "REDIS_URL",
        "",
        "redis:// or rediss:// URL; unset (and no REDIS_HOST) = no Redis",
    ),
    ("REDIS_HOST", "", "Redis host, instead of REDIS_URL"),
    ("REDIS_PORT", "6379", "Redis port, with REDIS_HOST"),
    ("REDIS_USERNAME", "", "ACL user name (overrides the URL's)"),
    ("REDIS_PASSWORD", "", "password (overrides the URL's)"),
    ("REDIS_DB", "", "database number (overrides the URL's)"),
    (
        "REDIS_CHANNEL",
        "herald",
        "pub/sub channel(s) to SUBSCRIBE, comma list",
    ),
    (
        "REDIS_STREAM",
        "",
        "stream key: read with XREAD instead of pub/sub",
    ),
    (
        "KAFKA_BROKERS",
        "",
        "comma list of host:port; unset = no Kafka",
    ),
    (
        "KAFKA_TOPICS",
        "",
        "comma list of topic names; every partition is read",
    ),
    (
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    ),
    (
        "KAFKA_SASL_MECHANISM",
        "",
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_ protocols)",
    ),
    ("KAFKA_SASL_USERNAME", "", "SASL user name"),
    ("KAFKA_SASL_PASSWORD", "", "SASL password"),
    (
        "KAFKA_FETCH_WAIT_MS",
        "100",
        "how long a broker may hold a fetch that finds nothing new",
    ),
    (
        "KAFKA_SSL_CA_FILE",
        "",
        "PEM CA for SSL/SASL_SSL (default: the system roots)",
    ),
    (
        "CONNECTION_REGISTRY",
        "local",
        "local | redis: keep connections and presence in Redis for every node",
    ),
    (
        "REGISTRY_NODE_TTL_SECONDS",
        "15",
        "with the Redis registry: a dead node's connections expire after this",
    ),
    (
        "CORS_ALLOWED_ORIGINS",
        "*",
        "`*` or a comma list of origins, scheme://host[:port] (credentialed)",
    ),
    ("PUBLISH_TOKEN", "", "bearer token for POST /publish"),
    (
        "PUBLISH_MAX_BYTES",
        "1048576",
        "largest POST /publish body (413 beyond)",
    ),
    (
        "PUBLISH_MAX_BATCH",
        "10000",
        "most envelopes in one POST /publish batch (400 beyond)",
    ),
    (
        "ADMIN_TOKEN",
        "",
        "bearer token for every admin endpoint but /health",
    ),
    (
        "ADMIN_INSECURE",
        "false",
        "true: allow ADMIN_ADDR or GRPC_ADDR off loopback without ADMIN_TOKEN",
    ),
    (
        "APP_ENV",
        "test",
        "test (text logs) | prod (JSON-lines logs)",
    ),
    ("LOG_LEVEL", "info", "error | warn | info | debug | trace"),
    (
        "HERALD_ENV_FILE",
        "",
        "comma list of env files laid over the environment, re-read on SIGHUP",
    ),
    (
        "SHUTDOWN_TIMEOUT_MS",
        "5000",
        "how long SIGTERM/SIGINT waits for reactors",
    ),
    (
        "DRAIN_SPREAD_MS",
        "4000",
        "SIGTERM spreads streams' reconnects over this (final retry:); 0 = all at once",
    ),
];

impl Config {
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
        out.push_str(
            "SIGHUP re-reads HERALD_ENV_FILE and the key file and applies JWT keys, issuers, \
             audiences, CORS, per-user and rate limits and LOG_LEVEL with every listener kept \
             (README, \"Reload\").\n",
        );
        out
    }
}
