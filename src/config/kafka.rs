//! The Kafka settings (SPEC §4, seed 003): brokers, topics, and security,
//! checked together so that a half-configured SASL or TLS setup stops
//! start-up (exit 2) naming the variable, instead of failing at the broker.
//!
//! Rules:
//! - `KAFKA_BROKERS` unset: no Kafka (the other `KAFKA_` variables are
//!   then refused, so a typo'd broker list is not silently ignored).
//! - With brokers, `KAFKA_TOPICS` is required: exact names, no wildcards.
//! - `KAFKA_SECURITY_PROTOCOL`: `PLAINTEXT` (default), `SSL`,
//!   `SASL_PLAINTEXT`, `SASL_SSL`. The `SASL_` ones need
//!   `KAFKA_SASL_MECHANISM` (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`),
//!   `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD`; the others refuse
//!   them. `SSL`/`SASL_SSL` verify the broker against the system roots, or
//!   against `KAFKA_SSL_CA_FILE` (PEM) when set.
//! - `KAFKA_FETCH_WAIT_MS` (default 100, 1..=10000): how long a broker may
//!   hold a fetch that finds nothing new. A Kafka broker answers as soon as
//!   a record arrives, so this only sets the idle polling rate (10 fetches
//!   a second per partition); some Kafka-compatible brokers (tansu 0.6)
//!   hold every fetch for part of it, so it also bounds their latency.

use std::path::PathBuf;

use super::env::{err, Env};
use super::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

/// SASL credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// The validated Kafka settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port` each.
    pub brokers: Vec<String>,
    pub topics: Vec<String>,
    /// TLS to the brokers (`SSL`, `SASL_SSL`), with an optional CA file.
    pub tls: bool,
    pub ca_file: Option<PathBuf>,
    pub sasl: Option<Sasl>,
    /// How long the broker may hold a fetch that finds nothing new.
    pub fetch_wait_ms: i32,
}

const OTHERS: [&str; 7] = [
    "KAFKA_TOPICS",
    "KAFKA_FETCH_WAIT_MS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CA_FILE",
];

pub(super) fn kafka_config(env: &Env<'_>) -> Result<Option<KafkaConfig>, ConfigError> {
    let brokers = env.list("KAFKA_BROKERS");
    if brokers.is_empty() {
        if let Some(var) = OTHERS.iter().find(|v| env.get(v).is_some()) {
            return Err(err(
                var,
                "is set but KAFKA_BROKERS is not (no Kafka without brokers)",
            ));
        }
        return Ok(None);
    }
    for b in &brokers {
        let port_ok = b.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok || b.contains('/') {
            return Err(err(
                "KAFKA_BROKERS",
                format!("expected host:port entries, got {b:?}"),
            ));
        }
    }
    let topics = env.list("KAFKA_TOPICS");
    if topics.is_empty() {
        return Err(err(
            "KAFKA_TOPICS",
            "needed with KAFKA_BROKERS: a comma list of topic names",
        ));
    }
    if let Some(t) = topics.iter().find(|t| !valid_topic(t)) {
        return Err(err(
            "KAFKA_TOPICS",
            format!("{t:?} is not a topic name (letters, digits, '.', '_', '-'; at most 249)"),
        ));
    }
    let (tls, sasl_on) = env.choice(
        "KAFKA_SECURITY_PROTOCOL",
        (false, false),
        &[
            ("PLAINTEXT", (false, false)),
            ("SSL", (true, false)),
            ("SASL_PLAINTEXT", (false, true)),
            ("SASL_SSL", (true, true)),
        ],
    )?;
    let sasl = if sasl_on {
        let mechanism = match env.get("KAFKA_SASL_MECHANISM") {
            None => return Err(err("KAFKA_SASL_MECHANISM", "needed with a SASL_ protocol")),
            Some(_) => env.choice(
                "KAFKA_SASL_MECHANISM",
                SaslMechanism::Plain,
                &[
                    ("PLAIN", SaslMechanism::Plain),
                    ("SCRAM-SHA-256", SaslMechanism::ScramSha256),
                    ("SCRAM-SHA-512", SaslMechanism::ScramSha512),
                ],
            )?,
        };
        let need = |var: &'static str| {
            env.get(var)
                .ok_or_else(|| err(var, "needed with a SASL_ protocol"))
        };
        Some(Sasl {
            mechanism,
            username: need("KAFKA_SASL_USERNAME")?,
            password: (env.lookup)("KAFKA_SASL_PASSWORD")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| err("KAFKA_SASL_PASSWORD", "needed with a SASL_ protocol"))?,
        })
    } else {
        let sasl_vars = [
            "KAFKA_SASL_MECHANISM",
            "KAFKA_SASL_USERNAME",
            "KAFKA_SASL_PASSWORD",
        ];
        if let Some(var) = sasl_vars.iter().find(|v| env.get(v).is_some()) {
            return Err(err(
                var,
                "is set but KAFKA_SECURITY_PROTOCOL is not SASL_PLAINTEXT or SASL_SSL",
            ));
        }
        None
    };
    let ca_file = env.get("KAFKA_SSL_CA_FILE").map(PathBuf::from);
    if let Some(ca) = &ca_file {
        if !tls {
            return Err(err(
                "KAFKA_SSL_CA_FILE",
                "is set but KAFKA_SECURITY_PROTOCOL is not SSL or SASL_SSL",
            ));
        }
        if !ca.is_file() {
            return Err(err(
                "KAFKA_SSL_CA_FILE",
                format!("{} is not a readable file", ca.display()),
            ));
        }
    }
    let fetch_wait_ms = env.parse("KAFKA_FETCH_WAIT_MS", 100i32, "milliseconds")?;
    if !(1..=10_000).contains(&fetch_wait_ms) {
        return Err(err("KAFKA_FETCH_WAIT_MS", "expected 1..=10000"));
    }
    Ok(Some(KafkaConfig {
        brokers,
        topics,
        tls,
        ca_file,
        sasl,
        fetch_wait_ms,
    }))
}

/// Kafka's rule for topic names.
fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Option<KafkaConfig>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |k: &str| map.get(k).cloned();
        kafka_config(&Env { lookup: &lookup })
    }

    fn refused(pairs: &[(&str, &str)]) -> &'static str {
        load(pairs).expect_err("refused").var
    }

    #[test]
    fn brokers_and_topics() {
        assert_eq!(load(&[]).unwrap(), None);
        let k = load(&[
            ("KAFKA_BROKERS", "a:9092, b:9093"),
            ("KAFKA_TOPICS", "t1,t.2"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(k.brokers, ["a:9092", "b:9093"]);
        assert_eq!(k.topics, ["t1", "t.2"]);
        assert!(!k.tls && k.sasl.is_none());
        assert_eq!(refused(&[("KAFKA_TOPICS", "t")]), "KAFKA_TOPICS");
        assert_eq!(refused(&[("KAFKA_BROKERS", "a:9092")]), "KAFKA_TOPICS");
        for bad in ["a", "a:x", ":9092", "a:0", "kafka://a:9092"] {
            assert_eq!(
                refused(&[("KAFKA_BROKERS", bad), ("KAFKA_TOPICS", "t")]),
                "KAFKA_BROKERS",
                "{bad}"
            );
        }
        assert_eq!(
            refused(&[("KAFKA_BROKERS", "a:1"), ("KAFKA_TOPICS", "t,bad topic")]),
            "KAFKA_TOPICS"
        );
    }

    #[test]
    fn security_settings_go_together() {
        let base = [("KAFKA_BROKERS", "a:9092"), ("KAFKA_TOPICS", "t")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            v
        };
        let k = load(&with(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "u"),
            ("KAFKA_SASL_PASSWORD", "p"),
        ]))
        .unwrap()
        .unwrap();
        assert!(k.tls);
        let sasl = k.sasl.unwrap();
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert!(
            !format!("{sasl:?}").contains("\"p\""),
            "the password is never printed"
        );
        let sasl = [("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")];
        assert_eq!(refused(&with(&sasl)), "KAFKA_SASL_MECHANISM");
        let no_user = [
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "PLAIN"),
        ];
        assert_eq!(refused(&with(&no_user)), "KAFKA_SASL_USERNAME");
        let bad_mech = [
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "GSSAPI"),
        ];
        assert_eq!(refused(&with(&bad_mech)), "KAFKA_SASL_MECHANISM");
        assert_eq!(
            refused(&with(&[("KAFKA_SASL_USERNAME", "u")])),
            "KAFKA_SASL_USERNAME",
            "SASL settings without a SASL protocol"
        );
        assert_eq!(
            refused(&with(&[("KAFKA_SECURITY_PROTOCOL", "TLS")])),
            "KAFKA_SECURITY_PROTOCOL"
        );
        assert_eq!(
            refused(&with(&[("KAFKA_SSL_CA_FILE", "/etc/hostname")])),
            "KAFKA_SSL_CA_FILE",
            "a CA file without TLS"
        );
    }
}
