//! `POST /publish` on the admin listener (SPEC §4): 202 `{"accepted": n}`
//! for an envelope or a batch, 400 `bad_request` naming the first bad
//! envelope, all-or-nothing batches, and publish tokens.

mod common;

use common::{assert_problem, http_exchange, jwt, Herald, HttpResponse, EVENT_TIMEOUT};
use serde_json::json;

fn herald() -> Herald {
    Herald::start(&[("JWT_SECRET", jwt::SECRET)])
}

fn post(h: &Herald, body: &str) -> HttpResponse {
    let req = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    http_exchange(h.admin_addr(), req.as_bytes(), EVENT_TIMEOUT).expect("POST /publish")
}

#[test]
fn envelope_and_batch_are_accepted() {
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    let r = post(
        &h,
        r#"{"to":["u1"],"event":"eventName","message":"any string"}"#,
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.reason, "Accepted");
    assert!(r
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    assert_eq!(r.body_json(), json!({"accepted": 1}));
    assert_eq!(c.expect_event().data, "any string");

    let r = post(
        &h,
        r#"[{"message":"a"},{"to":"u1","data":{"n":2}},{"event":"e","message":"c"}]"#,
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body_json(), json!({"accepted": 3}));
    assert_eq!(c.expect_event().data, "a");
    assert_eq!(c.expect_event().data, r#"{"n":2}"#);
    assert_eq!(c.expect_event().data, "c");
}

#[test]
fn bad_envelopes_are_400_naming_the_first_bad_one() {
    let h = herald();
    for (body, needle) in [
        ("not json", "JSON"),
        ("[]", "empty"),
        ("42", "object"),
        (r#"{"event":"x"}"#, "message"),
        (r#"{"to":[],"message":"m"}"#, "to"),
        (r#"{"to":[1],"message":"m"}"#, "to"),
        (r#"{"to":5,"message":"m"}"#, "to"),
        (r#"{"message":5}"#, "message"),
        (r#"{"event":7,"message":"m"}"#, "event"),
        (r#"{"app":true,"message":"m"}"#, "app"),
        (r#"{"id":3,"message":"m"}"#, "id"),
        (r#"{"source":[],"message":"m"}"#, "source"),
        (r#"{"event":"a\nb","message":"m"}"#, "event"),
        (r#"{"id":"a\r\nid: forged","message":"m"}"#, "id"),
        (r#"{"event":"only"}"#, "data"),
    ] {
        let r = post(&h, body);
        let v = assert_problem(&r, 400, "bad_request", "Bad Request");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{body}: detail {detail:?}");
    }
    // In a batch, the detail names the index of the first bad envelope.
    let r = post(
        &h,
        r#"[{"message":"ok"},{"message":"ok"},{"event":"x"},{"message":7}]"#,
    );
    let v = assert_problem(&r, 400, "bad_request", "Bad Request");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains('2'),
        "detail {detail:?} does not name envelope 2"
    );
    assert!(!detail.contains('3'), "detail {detail:?} names envelope 3");
}

#[test]
fn bad_batch_delivers_nothing() {
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    let r = post(
        &h,
        r#"[{"message":"first"},{"to":"u1","message":"second"},{"to":[]}]"#,
    );
    assert_problem(&r, 400, "bad_request", "Bad Request");
    h.publish_ok(r#"{"message":"good"}"#);
    let ev = c.expect_event();
    assert_eq!(ev.data, "good", "part of a refused batch was delivered");
}

#[test]
fn publish_needs_content_length() {
    let h = herald();
    let r = http_exchange(
        h.admin_addr(),
        b"POST /publish HTTP/1.1\r\nHost: x\r\n\r\n",
        EVENT_TIMEOUT,
    )
    .unwrap();
    assert_problem(&r, 400, "bad_request", "Bad Request");
}

#[test]
fn body_split_across_writes_is_read_whole() {
    use std::io::Write;
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    let body = json!({"message": "x".repeat(100_000)}).to_string();
    let mut s = common::connect(h.admin_addr()).unwrap();
    let head = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    s.write_all(&body.as_bytes()[..10]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    s.write_all(&body.as_bytes()[10..]).unwrap();
    let mut out = String::new();
    use std::io::Read;
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 202"), "{out}");
    assert_eq!(c.expect_event().data.len(), 100_000);
}

#[test]
fn publish_and_admin_tokens() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("PUBLISH_TOKEN", "pub-token"),
        ("ADMIN_TOKEN", "admin-token"),
    ]);
    let mut c = h.sse_with_token(&jwt::user("u1"));
    let body = r#"{"message":"m"}"#;
    let (status, _) = h.publish_with_token(body, Some("pub-token"));
    assert_eq!(status, 202);
    let (status, _) = h.publish_with_token(body, Some("admin-token"));
    assert_eq!(status, 202);
    for bad in [None, Some("nope"), Some("")] {
        let (status, reply) = h.publish_with_token(r#"{"message":"refused"}"#, bad);
        assert_eq!(status, 401, "{bad:?}: {reply}");
        let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(v["type"], "unauthorized");
    }
    h.publish_with_token(r#"{"message":"last"}"#, Some("pub-token"));
    assert_eq!(c.expect_event().data, "m");
    assert_eq!(c.expect_event().data, "m");
    assert_eq!(
        c.expect_event().data,
        "last",
        "a refused publish was delivered"
    );
    // /health on the admin listener needs no token.
    let r = http_exchange(
        h.admin_addr(),
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        EVENT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn without_tokens_publish_is_open() {
    let h = herald();
    let (status, reply) = h.publish(r#"{"message":"m"}"#);
    assert_eq!(status, 202, "{reply}");
}

#[test]
fn an_event_over_half_of_max_pending_bytes_is_refused_whole() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("MAX_PENDING_BYTES", "65536")]);
    let mut c = h.sse_with_token(&jwt::user("u1"));
    let big = "z".repeat(40 * 1024);
    let body = json!([{"message": "small"}, {"message": big}]).to_string();
    let (status, reply) = h.publish(&body);
    assert_eq!(status, 400, "{reply}");
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["type"], "bad_request");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.starts_with("envelope 1:"), "{detail}");
    // All or nothing: the small one was not delivered either.
    h.publish_json(&json!({"message": "marker"}));
    assert_eq!(c.expect_event().data, "marker");
}
