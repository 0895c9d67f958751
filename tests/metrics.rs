//! `GET /metrics` (SPEC §7): Prometheus text exposition on the admin
//! listener, guarded by `ADMIN_TOKEN`, read back with a real parser
//! (Python's `prometheus_client`, which `scripts/test.sh` installs), and
//! checked against what the test did.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{http_exchange, jwt, Herald, EVENT_TIMEOUT};
use serde_json::Value;

const TOKEN: &str = "metrics-admin-token";

/// Parses exposition text with `prometheus_client` and returns
/// `{"<name>{<k>=<v>,…}": value}` for every sample (labels sorted).
fn parse(text: &str) -> serde_json::Map<String, Value> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs it with prometheus_client)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write exposition");
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("parser JSON") {
        Value::Object(m) => m,
        other => panic!("parser printed {other}"),
    }
}

fn metrics(h: &Herald, token: Option<&str>) -> common::HttpResponse {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}\r\n");
    http_exchange(h.admin_addr(), req.as_bytes(), EVENT_TIMEOUT).expect("GET /metrics")
}

fn sample(m: &serde_json::Map<String, Value>, key: &str) -> f64 {
    m.get(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no sample {key} in {m:?}"))
}

/// Polls `/metrics` until `key` reaches `want` (closes are seen a moment
/// after the peer leaves).
fn await_sample(h: &Herald, key: &str, want: f64) -> serde_json::Map<String, Value> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let m = parse(&metrics(h, Some(TOKEN)).body_text());
        if m.get(key).and_then(Value::as_f64) == Some(want) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_need_the_admin_token_and_parse_with_a_real_parser() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("ADMIN_TOKEN", TOKEN)]);
    let r = metrics(&h, None);
    assert_eq!(r.status, 401);
    assert_eq!(metrics(&h, Some("wrong")).status, 401);

    // One listener gets two events; a 404 and a 401 are answered; the
    // listener reconnects with a Last-Event-ID no longer held (a gap).
    let mut c = h.sse_with_token(&jwt::user("u1"));
    h.publish_with_token(r#"{"to":"u1","message":"one"}"#, Some(TOKEN));
    h.publish_with_token(r#"{"message":"two"}"#, Some(TOKEN));
    assert_eq!(c.expect_event().data, "one");
    assert_eq!(c.expect_event().data, "two");
    let not_found = h.connect("/nope", &[]);
    assert_eq!(not_found.status(), 404);
    let unauthorized = h.connect("/sse", &[]);
    assert_eq!(unauthorized.status(), 401);
    c.close();
    let token = jwt::user("u1");
    let bearer = format!("Bearer {token}");
    let mut again = h.connect(
        "/sse",
        &[("Authorization", &bearer), ("Last-Event-ID", "0-unknown")],
    );
    assert_eq!(again.expect_event().event.as_deref(), Some("history-gap"));

    let r = metrics(&h, Some(TOKEN));
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    let m = await_sample(&h, "herald_disconnects_total{reason=peer}", 1.0);
    // Live deliveries only; the replay after the gap is counted apart.
    assert_eq!(sample(&m, "herald_deliveries_total{}"), 2.0);
    assert_eq!(sample(&m, "herald_replayed_events_total{}"), 2.0);
    assert_eq!(sample(&m, "herald_events_published_total{}"), 2.0);
    assert_eq!(sample(&m, "herald_streams{}"), 1.0);
    assert_eq!(sample(&m, "herald_responses_total{status=404}"), 1.0);
    assert_eq!(sample(&m, "herald_responses_total{status=401}"), 1.0);
    assert_eq!(sample(&m, "herald_refusals_total{type=not_found}"), 1.0);
    assert_eq!(sample(&m, "herald_refusals_total{type=missing_token}"), 1.0);
    assert_eq!(sample(&m, "herald_refusals_total{type=invalid_jwt}"), 0.0);
    assert_eq!(sample(&m, "herald_disconnects_total{reason=peer}"), 1.0);
    assert_eq!(sample(&m, "herald_replays_total{}"), 1.0);
    assert_eq!(sample(&m, "herald_history_gaps_total{}"), 1.0);
    assert!(sample(&m, "herald_connects_total{}") >= 4.0);
    assert!(sample(&m, "herald_bytes_written_total{}") > 0.0);
    let backend = m
        .keys()
        .find(|k| k.starts_with("herald_info{"))
        .expect("herald_info");
    assert!(backend.contains("io_backend="), "{backend}");
    // Every live delivery is in the latency histogram, cumulative to +Inf.
    let count = sample(&m, "herald_delivery_latency_seconds_count{}");
    assert_eq!(
        count,
        sample(&m, "herald_delivery_latency_seconds_bucket{le=+Inf}")
    );
    assert_eq!(count, 2.0);
    assert!(sample(&m, "herald_delivery_latency_seconds_bucket{le=0.001}") <= count);
}
