//! Seeing what herald refuses and closes (issue #13, SPEC §3 and §8):
//! refusals are counted by problem type in `/stats` and `/metrics` and
//! logged at the default level, throttled, with the client address and the
//! reason but never the token; at `LOG_LEVEL=debug` every stream close is
//! logged with its reason.

mod common;

use std::time::{Duration, Instant};

use common::{get_json, http_exchange, jwt, Herald, EVENT_TIMEOUT};
use serde_json::json;

/// Polls `/stats` until `pick` of it is `want`; returns the last `/stats`.
fn await_stats(
    h: &Herald,
    pick: impl Fn(&serde_json::Value) -> u64,
    want: u64,
) -> serde_json::Value {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let s = get_json(h.admin_addr(), "/stats");
        if pick(&s) == want || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls the log until it contains `needle`.
fn await_log(h: &Herald, needle: &str) -> String {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let log = h.log();
        if log.contains(needle) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn refusals_are_counted_by_type_and_logged_at_the_default_level_without_the_token() {
    // LOG_LEVEL empty: herald's own default (info), not the harness's warn.
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("JWT_ISSUER", "shop"),
        ("LOG_LEVEL", ""),
    ]);
    let now = jwt::now();
    // A backend signing with another secret: the case that used to be
    // invisible. Five of them in well under a second.
    let wrong_key = jwt::hs256(
        "not-the-secret",
        &json!({"sub": "u1", "iss": "shop", "exp": now + 3600}),
    );
    for _ in 0..5 {
        assert_eq!(
            h.connect(&format!("/sse?token={wrong_key}"), &[]).status(),
            401
        );
    }
    let expired = jwt::hs256(
        jwt::SECRET,
        &json!({"sub": "u1", "iss": "shop", "exp": now - 60}),
    );
    let bearer = format!("Bearer {expired}");
    assert_eq!(
        h.connect("/sse", &[("Authorization", &bearer)]).status(),
        401
    );
    let other_app = jwt::user_in("u1", "blog");
    assert_eq!(
        h.connect(&format!("/sse?token={other_app}"), &[]).status(),
        403
    );
    assert_eq!(h.connect("/sse", &[]).status(), 401);
    assert_eq!(h.connect("/nope", &[]).status(), 404);

    let s = await_stats(&h, |s| s["refusals"]["not_found"].as_u64().unwrap_or(0), 1);
    let r = &s["refusals"];
    assert_eq!(r["invalid_jwt"], 5, "{s}");
    assert_eq!(r["expired_jwt"], 1, "{s}");
    assert_eq!(r["wrong_issuer"], 1, "{s}");
    assert_eq!(r["missing_token"], 1, "{s}");
    assert_eq!(r["rate_limited"], 0, "{s}");
    assert_eq!(r["server_full"], 0, "{s}");

    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let metrics = http_exchange(h.admin_addr(), req, EVENT_TIMEOUT)
        .unwrap()
        .body_text();
    for line in [
        "herald_refusals_total{type=\"invalid_jwt\"} 5\n",
        "herald_refusals_total{type=\"missing_token\"} 1\n",
        "herald_refusals_total{type=\"not_found\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line:?} not in\n{metrics}");
    }

    let log = await_log(&h, "refused 404 not_found");
    for line in [
        "refused 401 invalid_jwt from 127.0.0.1: ",
        "refused 401 expired_jwt from 127.0.0.1: \"JWT token has expired\"",
        "refused 403 wrong_issuer from 127.0.0.1: ",
        "refused 401 missing_token from 127.0.0.1: \"No token provided\"",
    ] {
        assert!(log.contains(line), "{line:?} not logged:\n{log}");
    }
    let invalid = log.lines().filter(|l| l.contains(" invalid_jwt ")).count();
    assert!(
        (1..=2).contains(&invalid),
        "{invalid} lines for 5 refusals in a second:\n{log}"
    );
    for token in [&wrong_key, &expired, &other_app] {
        let signature = token.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token was logged:\n{log}");
    }
    // A second later the next refusal of that type is logged again, with
    // the count of those left out.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        h.connect(&format!("/sse?token={wrong_key}"), &[]).status(),
        401
    );
    let log = await_log(&h, "not logged since the last line");
    assert!(
        log.contains("more invalid_jwt not logged since the last line"),
        "{log}"
    );
}

#[test]
fn stream_closes_are_logged_with_their_reason_at_debug() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("LOG_LEVEL", "debug")]);
    let id_of = |c: &common::SseClient| c.header("x-connection-id").unwrap().to_string();

    // The client goes away.
    let token = jwt::user("leaver");
    let c = h.sse_with_token(&token);
    let leaver = id_of(&c);
    c.close();
    let log = await_log(&h, &format!("stream {leaver} closed: "));
    assert!(
        log.contains(&format!("stream {leaver} closed: client closed")),
        "{log}"
    );

    // Kicked through the admin listener.
    let c = h.sse_with_token(&jwt::user("kicked"));
    let kicked = id_of(&c);
    let req = format!("DELETE /connections/{kicked} HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = http_exchange(h.admin_addr(), req.as_bytes(), EVENT_TIMEOUT).unwrap();
    assert_eq!(r.status, 204);
    let log = await_log(&h, &format!("stream {kicked} closed: "));
    assert!(
        log.contains(&format!("stream {kicked} closed: kicked")),
        "{log}"
    );

    // The token runs out (exp + the default 5 s leeway is two seconds away).
    let short = jwt::hs256(jwt::SECRET, &json!({"sub": "brief", "exp": jwt::now() - 3}));
    let mut c = h.sse_with_token(&short);
    let brief = id_of(&c);
    assert!(
        c.wait_closed(EVENT_TIMEOUT),
        "the expired stream stayed open"
    );
    let log = await_log(&h, &format!("stream {brief} closed: "));
    assert!(
        log.contains(&format!("stream {brief} closed: token expired")),
        "{log}"
    );

    // Shutdown: the drain ends the stream after its final retry:.
    let mut c = h.sse_with_token(&token);
    let last = id_of(&c);
    h.sigterm();
    assert!(c.wait_closed(EVENT_TIMEOUT));
    let log = await_log(&h, &format!("stream {last} closed: "));
    assert!(
        log.contains(&format!("stream {last} closed: drained at shutdown")),
        "{log}"
    );
    assert!(
        !log.contains(token.rsplit('.').next().unwrap()),
        "a token was logged:\n{log}"
    );
}
