//! The SSE stream itself (SPEC §2): response head, `retry:`, event framing
//! (multi-line messages, JSON data, names, ids), `/events` alias and
//! `/health`.

mod common;

use common::{jwt, Herald, SseEvent};
use serde_json::json;

fn herald() -> Herald {
    Herald::start(&[("JWT_SECRET", jwt::SECRET)])
}

#[test]
fn stream_head_and_retry_preface() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("RETRY_MS", "1234")]);
    let mut c = h.sse_with_token(&jwt::user("u1"));
    assert_eq!(c.response().reason, "OK");
    assert_eq!(
        c.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(c.header("cache-control"), Some("no-store"));
    assert_eq!(c.header("x-accel-buffering"), Some("no"));
    assert_eq!(c.header("access-control-allow-origin"), Some("*"));
    // Not chunked, no length: the body ends when the connection closes.
    assert_eq!(c.header("transfer-encoding"), None);
    assert_eq!(c.header("content-length"), None);
    let id = c
        .header("x-connection-id")
        .expect("X-Connection-Id")
        .to_string();
    let uuid = uuid::Uuid::parse_str(&id).expect("X-Connection-Id is a UUID");
    assert_eq!(uuid.get_version_num(), 4, "X-Connection-Id {id} is not v4");

    h.publish_ok(r#"{"event":"greet","message":"hi"}"#);
    let ev = c.expect_event();
    assert_eq!(
        c.first_line(),
        Some("retry: 1234"),
        "stream starts with retry"
    );
    assert_eq!(c.retry(), Some(1234));
    assert_eq!(ev.event.as_deref(), Some("greet"));
    assert_eq!(ev.data, "hi");

    let other = h.sse_with_token(&jwt::user("u1"));
    assert_ne!(
        other.header("x-connection-id"),
        Some(id.as_str()),
        "each connection gets its own id"
    );
}

#[test]
fn default_retry_is_3000_and_events_alias_works() {
    let h = herald();
    let mut c = h.sse(&format!("/events?token={}", jwt::user("u1")), &[]);
    assert_eq!(
        c.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    h.publish_ok(r#"{"message":"via alias"}"#);
    assert_eq!(c.expect_event().data, "via alias");
    assert_eq!(c.first_line(), Some("retry: 3000"));
    assert_eq!(c.retry(), Some(3000));
}

#[test]
fn multiline_message_becomes_several_data_lines() {
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    for (message, lines) in [
        ("a\nb", vec!["a", "b"]),
        ("a\r\nb\r\nc", vec!["a", "b", "c"]),
        ("a\rb", vec!["a", "b"]),
        ("x\ny\r\nz\rw", vec!["x", "y", "z", "w"]),
        ("single", vec!["single"]),
    ] {
        h.publish_json(&json!({"event": "ml", "message": message}));
        let ev = c.expect_event();
        let data_lines: Vec<&str> = ev
            .raw
            .iter()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        assert_eq!(data_lines, lines, "message {message:?} framed as {ev:?}");
        assert_eq!(ev.data, lines.join("\n"));
        assert_eq!(ev.event.as_deref(), Some("ml"));
    }
}

#[test]
fn json_data_is_compact_on_one_line() {
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    h.publish_ok(
        r#"{"event":"obj","data":{ "a" : [1, 2, 3],
            "b": "x\ny", "c": {"d": null} }}"#,
    );
    let ev = c.expect_event();
    let data: Vec<&String> = ev.raw.iter().filter(|l| l.starts_with("data:")).collect();
    assert_eq!(data.len(), 1, "one data line: {ev:?}");
    assert_eq!(data[0], r#"data: {"a":[1,2,3],"b":"x\ny","c":{"d":null}}"#);
    assert_eq!(
        ev.data_json(),
        json!({"a":[1,2,3],"b":"x\ny","c":{"d":null}})
    );

    // A string payload keeps its quotes; numbers and arrays are JSON too.
    h.publish_ok(r#"{"data":"hello"}"#);
    assert_eq!(c.expect_event().data, r#""hello""#);
    h.publish_ok(r#"{"data":[1, "two", false]}"#);
    assert_eq!(c.expect_event().data, r#"[1,"two",false]"#);
    h.publish_ok(r#"{"data":42}"#);
    assert_eq!(c.expect_event().data, "42");
    // `message` wins over `data`.
    h.publish_ok(r#"{"message":"text","data":{"ignored":true}}"#);
    assert_eq!(c.expect_event().data, "text");
}

#[test]
fn unnamed_event_has_no_event_line_and_type_alias_names_it() {
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    h.publish_ok(r#"{"message":"plain"}"#);
    let ev = c.expect_event();
    assert_eq!(ev.event, None, "{ev:?}");
    assert!(
        !ev.raw.iter().any(|l| l.starts_with("event")),
        "unnamed event has an event line: {ev:?}"
    );
    assert_eq!(ev.event_type(), "message");

    // Seed 003 format: `type` names the event, extra fields are ignored.
    h.publish_ok(
        r#"{"id":"evt-1","type":"blog.post.created","source":"cms",
            "timestamp":"2024-01-01T00:00:00Z","data":{"title":"x"}}"#,
    );
    let ev = c.expect_event();
    assert_eq!(ev.event.as_deref(), Some("blog.post.created"));
    assert_eq!(ev.id.as_deref(), Some("evt-1"));
    assert_eq!(ev.data_json(), json!({"title":"x"}));
}

#[test]
fn server_ids_increase_and_envelope_ids_are_kept() {
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    let before = common::unix_ms();
    let mut seen: Vec<SseEvent> = Vec::new();
    for i in 0..5 {
        h.publish_json(&json!({"message": format!("single {i}")}));
        seen.push(c.expect_event());
    }
    // A batch gets ids under one clock reading: same ms, increasing seq.
    h.publish_json(&json!([
        {"message": "b0"}, {"message": "b1"}, {"message": "b2"}
    ]));
    for _ in 0..3 {
        seen.push(c.expect_event());
    }
    let after = common::unix_ms();
    let ids: Vec<(u64, u64)> = seen.iter().map(SseEvent::server_id).collect();
    for w in ids.windows(2) {
        assert!(w[0] < w[1], "ids not increasing: {ids:?}");
    }
    for (ms, _) in &ids {
        assert!(
            (before.saturating_sub(2000)..=after + 2000).contains(ms),
            "id ms {ms} is not the publish time ({before}..{after})"
        );
    }
    for (i, ev) in seen.iter().enumerate().skip(5) {
        assert_eq!(ev.data, format!("b{}", i - 5), "batch order");
    }

    h.publish_ok(r#"{"id":"order-42","event":"e","message":"mine"}"#);
    let ev = c.expect_event();
    assert_eq!(ev.id.as_deref(), Some("order-42"));
    assert_eq!(ev.raw[0], "id: order-42", "id comes first: {ev:?}");
    // Server ids go on increasing after an envelope id.
    h.publish_ok(r#"{"message":"next"}"#);
    let next = c.expect_event().server_id();
    assert!(next > *ids.last().unwrap());
}

#[test]
fn events_arrive_in_publish_order() {
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    let mut batch = Vec::new();
    for i in 0..50 {
        batch.push(json!({"event": "n", "message": i.to_string()}));
        if batch.len() == 10 {
            h.publish_json(&serde_json::Value::Array(std::mem::take(&mut batch)));
        }
    }
    for i in 0..50 {
        assert_eq!(c.expect_event().data, i.to_string());
    }
}

#[test]
fn health_on_both_listeners() {
    let h = herald();
    for addr in [h.addr(), h.admin_addr()] {
        let r = common::http_exchange(
            addr,
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            common::EVENT_TIMEOUT,
        )
        .expect("GET /health");
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json")));
        let v = r.body_json();
        assert_eq!(v["status"], "ok", "{v}");
        assert_eq!(v["redis"], "disabled", "no REDIS_URL: {v}");
    }
}
