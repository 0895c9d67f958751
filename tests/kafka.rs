//! Kafka ingest (SPEC §4, seed 003, issue #12) against a real broker
//! process (`tansu`, on a free loopback port) with records produced by
//! librdkafka: targeted, broadcast, batch and seed-003 records over several
//! topics and partitions; filters; bad records counted; the broker killed
//! and restarted mid-stream with nothing lost or repeated; two nodes each
//! delivering every event; a listener moving between them with
//! `Last-Event-ID`; `/health` down, then up.

mod common;

use std::time::{Duration, Instant};

use common::kafka::{Broker, Produced, Record};
use common::{get_json, jwt, Herald, SseClient, SseEvent};
use serde_json::{json, Value};

fn herald(b: &Broker, topics: &str, extra: &[(&str, &str)]) -> Herald {
    let brokers = b.addr();
    let mut envs = vec![
        ("JWT_SECRET", jwt::SECRET),
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_TOPICS", topics),
    ];
    envs.extend_from_slice(extra);
    let h = Herald::start(&envs);
    wait_kafka(&h, "up");
    h
}

/// Waits (bounded) until `/health` reports `kafka: <state>`.
fn wait_kafka(h: &Herald, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = get_json(h.admin_addr(), "/health");
        if health["kafka"] == state {
            return health;
        }
        assert!(Instant::now() < deadline, "kafka never {state}: {health}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until herald reads every partition of the topics (a listener
/// that connects now misses nothing produced later).
fn reading(h: &Herald, partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = get_json(h.admin_addr(), "/stats");
        if s["kafka_partitions"].as_array().map(Vec::len) == Some(partitions) {
            return;
        }
        assert!(Instant::now() < deadline, "partitions never all read: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn next(c: &mut SseClient) -> SseEvent {
    c.expect_non_ping()
}

/// The next event is `data` with id `id`.
fn expect(c: &mut SseClient, data: &str, id: &str) -> SseEvent {
    let ev = next(c);
    assert_eq!(
        (ev.data.as_str(), ev.id.as_deref()),
        (data, Some(id)),
        "unexpected {ev:?}"
    );
    ev
}

/// A broadcast marker on `topic`/0 is the very next event of each client.
fn marker_next(b: &Broker, topic: &str, clients: &mut [&mut SseClient]) {
    let p = b.produce_one(topic, 0, &json!({"event": "marker", "message": "live"}));
    for c in clients.iter_mut() {
        expect(c, "live", &p.id());
    }
}

#[test]
fn targeted_broadcast_batch_and_seed_003_records_over_topics_and_partitions() {
    let b = Broker::start();
    b.create_topic("orders", 3);
    b.create_topic("alerts", 1);
    let h = herald(&b, "orders,alerts", &[]);
    reading(&h, 4);
    let mut u1 = h.sse_as("u1", "", None);
    let mut u2 = h.sse_as("u2", "", None);
    let one = |v: Value| Some(v.to_string());
    let produced = b.produce(&[
        Record {
            topic: "orders",
            partition: Some(0),
            value: one(json!({"to": "u1", "message": "to u1"})),
        },
        Record {
            topic: "orders",
            partition: Some(1),
            value: one(json!({"message": "to all"})),
        },
        Record {
            topic: "orders",
            partition: Some(2),
            value: one(json!([{"to": "u2", "message": "b0"}, {"message": "b1"}])),
        },
        Record {
            topic: "alerts",
            partition: None,
            value: one(
                json!({"id": "evt-7", "type": "order.created", "source": "orders",
                              "timestamp": "2026-12-07T12:00:00Z", "data": {"total": 42}}),
            ),
        },
    ]);
    let ids: Vec<String> = produced.iter().map(Produced::id).collect();
    // Per partition, order is kept; across partitions it is not promised,
    // so each listener's events are compared as a set of (data, id).
    let got = |c: &mut SseClient, n: usize| {
        let mut v: Vec<(String, String)> = (0..n)
            .map(|_| {
                let e = next(c);
                (e.data, e.id.expect("id"))
            })
            .collect();
        v.sort();
        v
    };
    let seed = r#"{"total":42}"#.to_string();
    let mut want_u1 = vec![
        ("to u1".to_string(), ids[0].clone()),
        ("to all".to_string(), ids[1].clone()),
        ("b1".to_string(), format!("{}.1", ids[2])),
        (seed.clone(), "evt-7".to_string()),
    ];
    want_u1.sort();
    assert_eq!(got(&mut u1, 4), want_u1);
    let mut want_u2 = vec![
        ("to all".to_string(), ids[1].clone()),
        ("b0".to_string(), format!("{}.0", ids[2])),
        ("b1".to_string(), format!("{}.1", ids[2])),
        (seed, "evt-7".to_string()),
    ];
    want_u2.sort();
    assert_eq!(got(&mut u2, 4), want_u2);
    marker_next(&b, "orders", &mut [&mut u1, &mut u2]);
    let s = get_json(h.admin_addr(), "/stats");
    assert_eq!(s["kafka"], "up", "{s}");
    let parts = s["kafka_partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 4, "{s}");
    assert!(parts.iter().all(|p| p["lag"] == 0), "{s}");
    let metrics = common::http_exchange(
        h.admin_addr(),
        b"GET /metrics HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    )
    .expect("metrics")
    .body_text();
    assert!(
        metrics.contains(r#"herald_ingest_up{source="kafka"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"herald_kafka_lag{topic="orders",partition="2"} 0"#));
}

#[test]
fn filters_apply_to_kafka_events() {
    let b = Broker::start();
    b.create_topic("events", 1);
    let h = herald(&b, "events", &[]);
    reading(&h, 1);
    let mut c = h.sse_as("u1", "&event_types=order.created&sources=shop", None);
    let rec = |v: Value| Record {
        topic: "events",
        partition: Some(0),
        value: Some(v.to_string()),
    };
    let p = b.produce(&[
        rec(json!({"type": "order.created", "source": "crm", "data": 1})),
        rec(json!({"type": "order.deleted", "source": "shop", "data": 2})),
        rec(json!({"type": "order.created", "source": "shop", "data": 3})),
    ]);
    expect(&mut c, "3", &p[2].id());
}

#[test]
fn bad_records_are_counted_and_the_others_delivered() {
    let b = Broker::start();
    b.create_topic("events", 1);
    let h = herald(&b, "events", &[]);
    reading(&h, 1);
    let mut c = h.sse_as("u1", "", None);
    let raw = |v: Option<&str>| Record {
        topic: "events",
        partition: Some(0),
        value: v.map(String::from),
    };
    let p = b.produce(&[
        raw(None),
        raw(Some("not json")),
        raw(Some(r#"{"event":"no payload"}"#)),
        raw(Some(
            r#"[{"message":"ok"},{"to":[],"message":"bad batch element"}]"#,
        )),
        raw(Some(r#"{"message":"good"}"#)),
    ]);
    expect(&mut c, "good", &p[4].id());
    let s = get_json(h.admin_addr(), "/stats");
    assert_eq!(s["rejected_total"], 4, "{s}");
    assert!(h.log().contains("refused"), "bad records are logged");
}

#[test]
fn a_broker_killed_and_restarted_loses_and_repeats_nothing() {
    let mut b = Broker::start();
    b.create_topic("events", 2);
    let h = herald(&b, "events", &[]);
    reading(&h, 2);
    let mut c = h.sse_as("u1", "", None);
    let msg = |i: usize| json!({"message": format!("m{i}")});
    let mut want = Vec::new();
    for i in 0..5 {
        let p = b.produce_one("events", (i % 2) as i32, &msg(i));
        want.push((format!("m{i}"), p.id()));
    }
    // Order holds within a partition, not across the two.
    let mut before: Vec<(String, String)> = (0..5)
        .map(|_| next(&mut c))
        .map(|e| (e.data, e.id.unwrap()))
        .collect();
    before.sort();
    want.sort();
    assert_eq!(before, want);
    b.kill();
    let health = wait_kafka(&h, "down");
    assert_eq!(health["status"], "degraded", "{health}");
    b.restart();
    // Produced while herald may still be reconnecting.
    let mut after = Vec::new();
    for i in 5..10 {
        let p = b.produce_one("events", (i % 2) as i32, &msg(i));
        after.push((format!("m{i}"), p.id()));
    }
    // The broker kept its log across the restart (offsets go on).
    assert!(
        after.contains(&("m6".into(), "events:0:3".into())),
        "{after:?}"
    );
    wait_kafka(&h, "up");
    let mut got: Vec<(String, String)> = (0..5)
        .map(|_| next(&mut c))
        .map(|e| (e.data, e.id.unwrap()))
        .collect();
    got.sort();
    after.sort();
    assert_eq!(got, after, "every record produced across the outage, once");
    marker_next(&b, "events", &mut [&mut c]);
    assert!(h.log().contains("kafka: link down"), "the outage is logged");
}

#[test]
fn two_nodes_each_deliver_every_event_and_a_listener_moves_between_them() {
    let b = Broker::start();
    b.create_topic("events", 1);
    let h1 = herald(&b, "events", &[]);
    let h2 = herald(&b, "events", &[]);
    reading(&h1, 1);
    reading(&h2, 1);
    let mut on1 = h1.sse_as("u1", "", None);
    let mut on2 = h2.sse_as("u1", "", None);
    let first = b.produce_one("events", 0, &json!({"to": "u1", "message": "e1"}));
    expect(&mut on1, "e1", &first.id());
    expect(&mut on2, "e1", &first.id());
    drop(on1);
    let e2 = b.produce_one("events", 0, &json!({"to": "u1", "message": "e2"}));
    let e3 = b.produce_one("events", 0, &json!({"message": "e3"}));
    expect(&mut on2, "e2", &e2.id());
    expect(&mut on2, "e3", &e3.id());
    // The listener that left node 1 after e1 comes back on node 2.
    let mut moved = h2.sse_as("u1", "", Some(&first.id()));
    expect(&mut moved, "e2", &e2.id());
    expect(&mut moved, "e3", &e3.id());
    marker_next(&b, "events", &mut [&mut moved, &mut on2]);
}

#[test]
fn the_first_start_loads_the_tail_as_history_not_live() {
    let b = Broker::start();
    b.create_topic("events", 1);
    let old: Vec<Produced> = (0..3)
        .map(|i| b.produce_one("events", 0, &json!({"message": format!("old{i}")})))
        .collect();
    let h = herald(&b, "events", &[("HISTORY_SIZE", "2")]);
    reading(&h, 1);
    let mut live = h.sse_as("u1", "", None);
    let mut replay = h.sse_as("u1", "", Some("earliest"));
    expect(&mut replay, "old1", &old[1].id());
    expect(&mut replay, "old2", &old[2].id());
    marker_next(&b, "events", &mut [&mut live, &mut replay]);
}

#[test]
fn kafka_settings_are_checked_at_start() {
    let (status, log) = Herald::run_expect_exit(&[
        ("JWT_SECRET", jwt::SECRET),
        ("KAFKA_BROKERS", "127.0.0.1:9"),
        ("KAFKA_TOPICS", "t"),
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
    ]);
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("KAFKA_SASL_MECHANISM"), "{log}");
}

#[test]
fn sasl_scram_logs_in_and_a_wrong_password_is_down_not_silent() {
    let mut b = Broker::start();
    b.create_topic("events", 1);
    b.require_scram("herald", "s3cret", "SCRAM-SHA-256");
    let scram = [
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
        ("KAFKA_SASL_USERNAME", "herald"),
    ];
    let mut good = scram.to_vec();
    good.push(("KAFKA_SASL_PASSWORD", "s3cret"));
    let h = herald(&b, "events", &good);
    reading(&h, 1);
    let mut c = h.sse_as("u1", "", None);
    let p = b.produce_one("events", 0, &json!({"message": "over sasl"}));
    expect(&mut c, "over sasl", &p.id());
    // A wrong password: never up, and the log says why.
    let brokers = b.addr();
    let mut bad = vec![
        ("JWT_SECRET", jwt::SECRET),
        ("KAFKA_BROKERS", brokers.as_str()),
        ("KAFKA_TOPICS", "events"),
        ("KAFKA_SASL_PASSWORD", "wrong"),
    ];
    bad.extend_from_slice(&scram);
    let wrong = Herald::start(&bad);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !wrong.log().contains("kafka: link down") {
        assert!(Instant::now() < deadline, "no log line: {}", wrong.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get_json(wrong.admin_addr(), "/health")["kafka"], "down");
}
