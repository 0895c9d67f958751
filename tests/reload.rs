//! `SIGHUP` (SPEC, "Operations"; README "Reload"): the configuration is
//! re-read — the `HERALD_ENV_FILE` file(s) over the environment, and the
//! key file — and JWT keys, issuers, audiences, CORS, limits and the log
//! level change for new connections while every open stream stays up and
//! keeps receiving. A bad value refuses the whole reload, logged by name,
//! and the old settings stay. Secrets never reach the log.

mod common;

use common::jwt::{self, KeyKind, KeyPair};
use common::{Herald, SseClient, TempDir};
use serde_json::json;

/// A token for `sub`, signed with `secret` (HS256), valid for an hour.
fn hs(secret: &str, sub: &str) -> String {
    jwt::hs256(secret, &json!({"sub": sub, "exp": jwt::now() + 3600}))
}

/// `GET /sse` with `token`: its status (the stream is dropped).
fn status_with(h: &Herald, token: &str) -> u16 {
    h.connect(&format!("/sse?token={token}"), &[]).status()
}

/// An open stream for `token`.
fn stream(h: &Herald, token: &str) -> SseClient {
    h.sse_with_token(token)
}

/// A targeted event for `user` reaches `c`.
fn receives(h: &Herald, c: &mut SseClient, user: &str) {
    let marker = format!("for {user} at {}", common::unix_ms());
    h.publish_json(&json!({"to": user, "event": "check", "message": marker}));
    let ev = c.expect_non_ping();
    assert_eq!(ev.data, marker, "{user}'s stream: {ev:?}");
}

/// Starts herald at `LOG_LEVEL=info` (the reload's summary line is info).
fn start(envs: &[(&str, &str)]) -> Herald {
    let mut all = vec![("LOG_LEVEL", "info")];
    all.extend_from_slice(envs);
    Herald::start(&all)
}

#[test]
fn sighup_rotates_the_hmac_secret_from_the_env_file_and_keeps_open_streams() {
    let dir = TempDir::new("reload-hs");
    let env = dir.join("herald.env");
    std::fs::write(&env, "# as systemd reads it\nJWT_SECRET=old-secret-value\n").unwrap();
    // As under systemd: the variable is in the environment and in the file.
    let mut h = start(&[
        ("JWT_SECRET", "old-secret-value"),
        ("HERALD_ENV_FILE", env.to_str().unwrap()),
    ]);
    let mut before = stream(&h, &hs("old-secret-value", "alice"));
    let mut before_2 = stream(&h, &hs("old-secret-value", "bob"));
    receives(&h, &mut before, "alice");

    std::fs::write(
        &env,
        "# rotated\nJWT_SECRET=\"new-secret-value\"\nLOG_LEVEL=info\n",
    )
    .unwrap();
    h.sighup();
    h.wait_log("configuration reloaded: JWT_SECRET", 1);

    assert_eq!(status_with(&h, &hs("old-secret-value", "carol")), 401);
    let mut after = stream(&h, &hs("new-secret-value", "dave"));
    // The streams opened before the reload are still up and served.
    receives(&h, &mut before, "alice");
    receives(&h, &mut before_2, "bob");
    receives(&h, &mut after, "dave");
    h.publish_ok(r#"{"message":"to everyone"}"#);
    for c in [&mut before, &mut before_2, &mut after] {
        assert_eq!(c.expect_non_ping().data, "to everyone");
    }

    // A second rotation back, the same way; herald is still the same process.
    let pid = h.pid();
    std::fs::write(&env, "JWT_SECRET='old-secret-value'\n").unwrap();
    h.sighup();
    h.wait_log("configuration reloaded: JWT_SECRET", 2);
    assert_eq!(status_with(&h, &hs("new-secret-value", "erin")), 401);
    assert_eq!(status_with(&h, &hs("old-secret-value", "erin")), 200);
    receives(&h, &mut after, "dave");
    assert_eq!(h.pid(), pid);

    let log = h.log();
    assert!(
        !log.contains("secret-value"),
        "a secret reached the log:\n{log}"
    );
}

#[test]
fn sighup_rereads_a_rotated_rsa_key_file_and_keeps_open_streams() {
    let dir = TempDir::new("reload-rsa");
    let old = KeyPair::shared(KeyKind::Rsa);
    let new = KeyPair::generate(KeyKind::Rsa);
    let path = old.write_public(dir.path(), "jwt.pem");
    // No HERALD_ENV_FILE: a reload re-reads the key file only.
    let mut h = start(&[("JWT_PUBLIC_KEY_FILE", path.to_str().unwrap())]);
    let claims = |sub: &str| json!({"sub": sub, "exp": jwt::now() + 3600});
    let mut before = stream(&h, &old.sign(&claims("alice")));
    receives(&h, &mut before, "alice");

    new.write_public(dir.path(), "jwt.pem");
    h.sighup();
    h.wait_log("configuration reloaded: JWT_PUBLIC_KEY_FILE (contents)", 1);

    assert_eq!(status_with(&h, &old.sign(&claims("bob"))), 401);
    let mut after = stream(&h, &new.sign(&claims("carol")));
    receives(&h, &mut before, "alice");
    receives(&h, &mut after, "carol");

    // Re-reading an unchanged file changes nothing.
    h.sighup();
    h.wait_log("configuration re-read; nothing changed", 1);
    assert_eq!(status_with(&h, &new.sign(&claims("dave"))), 200);
}

#[test]
fn a_bad_key_file_is_refused_by_name_and_the_old_key_stays() {
    let dir = TempDir::new("reload-bad-key");
    let key = KeyPair::shared(KeyKind::Rsa);
    let path = key.write_public(dir.path(), "jwt.pem");
    let mut h = start(&[("JWT_PUBLIC_KEY_FILE", path.to_str().unwrap())]);
    let token = |sub: &str| key.sign(&json!({"sub": sub, "exp": jwt::now() + 3600}));
    let mut before = stream(&h, &token("alice"));

    std::fs::write(&path, "-----BEGIN GARBAGE-----\nnot a key\n").unwrap();
    h.sighup();
    h.wait_log(
        "reload refused, the running configuration stays: JWT_PUBLIC_KEY_FILE",
        1,
    );
    assert_eq!(status_with(&h, &token("bob")), 200);
    receives(&h, &mut before, "alice");

    // A missing file is refused the same way.
    std::fs::remove_file(&path).unwrap();
    h.sighup();
    h.wait_log(
        "reload refused, the running configuration stays: JWT_PUBLIC_KEY_FILE",
        2,
    );
    assert_eq!(status_with(&h, &token("carol")), 200);
    receives(&h, &mut before, "alice");
}

#[test]
fn one_bad_value_refuses_the_whole_reload() {
    let dir = TempDir::new("reload-all-or-nothing");
    let env = dir.join("herald.env");
    std::fs::write(&env, "JWT_SECRET=first-secret-value\n").unwrap();
    let mut h = start(&[("HERALD_ENV_FILE", env.to_str().unwrap())]);
    let mut before = stream(&h, &hs("first-secret-value", "alice"));

    // A good new secret beside a bad origin: neither is applied.
    std::fs::write(
        &env,
        "JWT_SECRET=second-secret-value\nCORS_ALLOWED_ORIGINS=not a url\n",
    )
    .unwrap();
    h.sighup();
    h.wait_log(
        "reload refused, the running configuration stays: CORS_ALLOWED_ORIGINS",
        1,
    );
    assert_eq!(status_with(&h, &hs("first-secret-value", "bob")), 200);
    assert_eq!(status_with(&h, &hs("second-secret-value", "bob")), 401);
    receives(&h, &mut before, "alice");

    // An unreadable env file is refused too, naming HERALD_ENV_FILE.
    std::fs::remove_file(&env).unwrap();
    h.sighup();
    h.wait_log(
        "reload refused, the running configuration stays: HERALD_ENV_FILE",
        1,
    );
    assert_eq!(status_with(&h, &hs("first-secret-value", "carol")), 200);
    assert!(!h.log().contains("secret-value"), "{}", h.log());
}

#[test]
fn cors_and_limits_change_live_and_the_rest_waits_for_a_restart() {
    let dir = TempDir::new("reload-cors");
    let env = dir.join("herald.env");
    std::fs::write(
        &env,
        "JWT_SECRET=cors-secret-value\nCORS_ALLOWED_ORIGINS=https://a.example\n\
         MAX_CONNECTIONS_PER_USER=1\nRETRY_MS=3000\n",
    )
    .unwrap();
    let mut h = start(&[("HERALD_ENV_FILE", env.to_str().unwrap())]);
    let token = hs("cors-secret-value", "alice");
    let origin = |h: &Herald, o: &str| {
        let c = h.connect("/health", &[("Origin", o)]);
        assert_eq!(c.status(), 200);
        c.header("access-control-allow-origin").map(str::to_string)
    };
    assert_eq!(
        origin(&h, "https://a.example").as_deref(),
        Some("https://a.example")
    );
    assert_eq!(origin(&h, "https://b.example"), None);
    let mut first = stream(&h, &token);
    assert_eq!(status_with(&h, &token), 503, "MAX_CONNECTIONS_PER_USER=1");

    std::fs::write(
        &env,
        "JWT_SECRET=cors-secret-value\nCORS_ALLOWED_ORIGINS=https://b.example\n\
         MAX_CONNECTIONS_PER_USER=2\nRETRY_MS=9000\n",
    )
    .unwrap();
    h.sighup();
    h.wait_log("RETRY_MS changed but need(s) a restart", 1);
    h.wait_log(
        "configuration reloaded: CORS_ALLOWED_ORIGINS, MAX_CONNECTIONS_PER_USER",
        1,
    );
    let mut second = h.sse(
        &format!("/sse?token={token}"),
        &[("Origin", "https://b.example")],
    );
    assert_eq!(
        second.header("access-control-allow-origin"),
        Some("https://b.example")
    );
    assert_eq!(origin(&h, "https://a.example"), None);
    receives(&h, &mut first, "alice");
    assert_eq!(second.expect_non_ping().event_type(), "check");
    assert_eq!(second.retry(), Some(3000), "RETRY_MS needs a restart");
}

#[test]
fn claims_rate_limits_and_the_log_level_change_live() {
    let dir = TempDir::new("reload-claims");
    let env = dir.join("herald.env");
    std::fs::write(&env, "JWT_SECRET=claims-secret-value\nJWT_ISSUER=shop\n").unwrap();
    let mut h = start(&[("HERALD_ENV_FILE", env.to_str().unwrap())]);
    let token = |iss: &str, aud: Option<&str>| {
        let mut claims = json!({"sub": "alice", "iss": iss, "exp": jwt::now() + 3600});
        if let Some(aud) = aud {
            claims["aud"] = json!(aud);
        }
        jwt::hs256("claims-secret-value", &claims)
    };
    let mut shop = stream(&h, &token("shop", None));
    assert_ne!(status_with(&h, &token("blog", None)), 200);

    std::fs::write(
        &env,
        "JWT_SECRET=claims-secret-value\nJWT_ISSUER=blog\nJWT_AUDIENCE=herald\n\
         JWT_SECERT=a-typo\n",
    )
    .unwrap();
    h.sighup();
    h.wait_log("configuration reloaded: JWT_ISSUER, JWT_AUDIENCE", 1);
    h.wait_log(
        "JWT_SECERT is not a herald variable (ignored); did you mean JWT_SECRET?",
        1,
    );
    assert_ne!(status_with(&h, &token("shop", None)), 200);
    assert_ne!(status_with(&h, &token("blog", None)), 200, "no aud");
    assert_eq!(status_with(&h, &token("blog", Some("herald"))), 200);
    // The stream admitted under the old issuer list stays.
    let marker = format!("still here {}", common::unix_ms());
    h.publish_json(&json!({"to": "alice", "app": "shop", "message": marker}));
    assert_eq!(shop.expect_non_ping().data, marker);

    std::fs::write(
        &env,
        "JWT_SECRET=claims-secret-value\nJWT_ISSUER=blog\nJWT_AUDIENCE=herald\n\
         RATE_LIMIT_PER_IP_PER_MIN=1\nRATE_LIMIT_BURST=1\nLOG_LEVEL=debug\n",
    )
    .unwrap();
    h.sighup();
    h.wait_log(
        "configuration reloaded: RATE_LIMIT_PER_IP_PER_MIN, RATE_LIMIT_BURST, LOG_LEVEL",
        1,
    );
    let _blog = stream(&h, &token("blog", Some("herald")));
    // At debug, each stream start is logged (it was not at info).
    h.wait_log("for app \"blog\"", 1);
    assert_eq!(status_with(&h, &token("blog", Some("herald"))), 429);
}
