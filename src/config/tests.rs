//! Unit tests of [`super::Config`] loading, the help text and the README.

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
        ("TRUSTED_PROXIES", "proxy.local"),
        ("TRUSTED_PROXIES", "10.0.0.0/40"),
        ("RATE_LIMIT_PER_IP_PER_MIN", "lots"),
        ("MAX_CONNECTIONS_PER_USER", "-1"),
        ("INTERNAL_EVENTS_STRATEGY", "sometimes"),
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
    let readme = include_str!("../../README.md");
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

/// Variables read from the environment by code outside this table's reach:
/// systemd's own, not herald's.
const NOT_OURS: &[&str] = &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// Every `"NAME"` that follows `marker` (after optional whitespace) in `text`.
fn names_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        rest = &rest[i + marker.len()..];
        let arg = rest.trim_start();
        if let Some(quoted) = arg.strip_prefix('"') {
            let name = &quoted[..quoted.find('"').unwrap_or(0)];
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                out.push(name);
            }
        }
    }
    out
}

fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Walks the server's source (not the bench client's) for every variable
/// read: through the loader's `env.<kind>("NAME", …)` and through
/// `std::env::var("NAME")`. Each must be in `--help`.
#[test]
fn every_variable_read_is_in_the_help_table() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut read = std::collections::BTreeSet::new();
    let server =
        |f: &&std::path::PathBuf| !f.starts_with(src.join("bin")) && !f.ends_with("tests.rs");
    for f in files.iter().filter(server) {
        let text = std::fs::read_to_string(f).expect("read source");
        for marker in [
            "env.get(",
            "env.parse(",
            "env.bool(",
            "env.list(",
            "env.choice(",
            "env::var(",
        ] {
            read.extend(names_after(&text, marker).into_iter().map(str::to_string));
        }
    }
    assert!(
        read.len() > 30,
        "the walk found only {read:?}: is the pattern stale?"
    );
    let listed: Vec<&str> = VARS.iter().map(|(n, _, _)| *n).collect();
    let missing: Vec<&String> = read
        .iter()
        .filter(|n| !listed.contains(&n.as_str()) && !NOT_OURS.contains(&n.as_str()))
        .collect();
    assert!(missing.is_empty(), "read but not in --help: {missing:?}");
    let help = Config::help();
    for name in &listed {
        assert!(help.contains(name), "--help lacks {name}");
    }
}

#[test]
fn the_systemd_environment_file_lists_every_variable() {
    let env_file = include_str!("../../systemd/herald.env");
    for (name, _, _) in VARS {
        assert!(
            env_file.contains(&format!("{name}=")),
            "systemd/herald.env lacks {name}"
        );
    }
}
