//! Replay backed by the log (SPEC §2 "History", issue #10), streams mode
//! with a real redis-server: a position no longer in memory but still in
//! the stream is replayed from the stream, every missed event exactly once;
//! a restarted node warms its history from the stream; concurrent requests
//! are coalesced into few range reads; `history-gap` only when the stream
//! no longer holds the position either.

mod common;

use std::time::{Duration, Instant};

use common::{get_json, jwt, Herald, RedisServer, SseClient};
use serde_json::{json, Value};

const STREAM: &str = "hs";

fn herald(r: &RedisServer, extra: &[(&str, &str)]) -> Herald {
    let url = r.url();
    let mut envs = vec![
        ("JWT_SECRET", jwt::SECRET),
        ("REDIS_URL", url.as_str()),
        ("REDIS_STREAM", STREAM),
    ];
    envs.extend_from_slice(extra);
    let h = Herald::start(&envs);
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_json(h.admin_addr(), "/health")["redis"] != "up" {
        assert!(Instant::now() < deadline, "redis never up");
        std::thread::sleep(Duration::from_millis(50));
    }
    h
}

/// XADDs a message to `user`; returns the entry id.
fn to_user(r: &RedisServer, user: &str, message: &str) -> String {
    r.xadd(STREAM, &json!({"to": user, "message": message}).to_string())
}

/// `user` receives one event and goes away: returns its id.
fn seen_then_gone(h: &Herald, r: &RedisServer, user: &str) -> String {
    let mut c = h.sse_as(user, "", None);
    let id = to_user(r, user, "seen");
    let ev = c.expect_non_ping();
    assert_eq!(
        (ev.data.as_str(), ev.id.as_deref()),
        ("seen", Some(id.as_str()))
    );
    c.close();
    id
}

/// `n` padded events to a busy neighbour, enough to push everything older
/// out of a small byte budget.
fn neighbour_traffic(r: &RedisServer, n: usize) {
    let pad = "x".repeat(400);
    for i in 0..n {
        to_user(r, "busy", &format!("{i}{pad}"));
    }
}

/// The next events are exactly `want` (data, id), then a live marker.
fn expect_exactly(h_stream: &RedisServer, c: &mut SseClient, want: &[(String, String)]) {
    for (data, id) in want {
        let ev = c.expect_non_ping();
        assert_eq!(
            (ev.event.as_deref(), ev.data.as_str(), ev.id.as_deref()),
            (None, data.as_str(), Some(id.as_str())),
            "expected {data} ({id})"
        );
    }
    let live = h_stream.xadd(STREAM, r#"{"event":"marker","message":"live"}"#);
    let ev = c.expect_non_ping();
    assert_eq!(
        (ev.event.as_deref(), ev.id.as_deref()),
        (Some("marker"), Some(live.as_str())),
        "nothing else before the marker: {ev:?}"
    );
}

fn stats(h: &Herald) -> Value {
    get_json(h.admin_addr(), "/stats")
}

/// Waits (bounded) until ingest has handed the stream's newest entry on.
fn settle(h: &Herald, published: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats(h)["published_total"].as_u64() < Some(published) {
        assert!(Instant::now() < deadline, "ingest stuck: {}", stats(h));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_position_evicted_from_memory_is_replayed_from_the_stream_exactly_once() {
    let r = RedisServer::start();
    let h = herald(&r, &[("HISTORY_MAX_BYTES", "16384")]);
    let last = seen_then_gone(&h, &r, "a");
    let mut want = Vec::new();
    for m in ["m1", "m2"] {
        want.push((m.to_string(), to_user(&r, "a", m)));
    }
    neighbour_traffic(&r, 100);
    settle(&h, 103);
    let s = stats(&h);
    assert!(s["history"]["bytes"].as_u64() <= Some(16384), "{s}");
    let mut a = h.sse_as("a", "", Some(&last));
    expect_exactly(&r, &mut a, &want);
    let s = stats(&h);
    assert_eq!(s["history_gaps_total"], 0, "{s}");
    assert_eq!(s["history_log_requests_total"], 1, "{s}");
    assert!(s["history_log_reads_total"].as_u64() >= Some(1), "{s}");
}

#[test]
fn a_restarted_node_warms_from_the_stream_and_reaches_past_its_memory() {
    let r = RedisServer::start();
    let mut h = herald(&r, &[]);
    let last = seen_then_gone(&h, &r, "a");
    let mut want = Vec::new();
    for m in ["r1", "r2", "r3"] {
        want.push((m.to_string(), to_user(&r, "a", m)));
    }
    h.kill();
    // Warmed: the whole window is in memory, no stream read per listener.
    let h2 = herald(&r, &[]);
    let s = stats(&h2);
    assert_eq!(s["history"]["events"], 4, "{s}");
    assert_eq!(s["history_warm_reads_total"], 1, "{s}");
    let mut a = h2.sse_as("a", "", Some(&last));
    expect_exactly(&r, &mut a, &want);
    assert_eq!(stats(&h2)["history_log_requests_total"], 0);
    // A node whose budget holds less than the window: the rest comes from
    // the stream.
    neighbour_traffic(&r, 60);
    let h3 = herald(&r, &[("HISTORY_MAX_BYTES", "16384")]);
    let mut a = h3.sse_as("a", "", Some(&last));
    // r1..r3 from the stream, then the marker broadcast (a missed it too).
    for (data, id) in &want {
        let ev = a.expect_non_ping();
        assert_eq!((&ev.data, ev.id.as_ref()), (data, Some(id)), "{ev:?}");
    }
    assert_eq!(a.expect_non_ping().event.as_deref(), Some("marker"));
    expect_exactly(&r, &mut a, &[]);
    let s = stats(&h3);
    assert_eq!(s["history_log_requests_total"], 1, "{s}");
    assert_eq!(s["history_gaps_total"], 0, "{s}");
}

#[test]
fn concurrent_replays_from_the_stream_are_coalesced() {
    const N: usize = 40;
    let r = RedisServer::start();
    let h = herald(&r, &[("HISTORY_MAX_BYTES", "16384")]);
    let users: Vec<String> = (0..N).map(|i| format!("u{i}")).collect();
    let mut listeners: Vec<SseClient> = users.iter().map(|u| h.sse_as(u, "", None)).collect();
    let mut last = Vec::new();
    for (u, c) in users.iter().zip(listeners.iter_mut()) {
        let id = to_user(&r, u, "seen");
        assert_eq!(c.expect_non_ping().id.as_deref(), Some(id.as_str()));
        last.push(id);
    }
    drop(listeners);
    let missed: Vec<String> = users.iter().map(|u| to_user(&r, u, "missed")).collect();
    neighbour_traffic(&r, 100);
    settle(&h, 2 * N as u64 + 100);
    // Every listener reconnects at once.
    let addr = h.addr();
    let threads: Vec<_> = users
        .iter()
        .zip(last)
        .map(|(u, last)| {
            let path = format!("/sse?token={}", jwt::user(u));
            std::thread::spawn(move || {
                let mut c = SseClient::open(addr, &path, &[("Last-Event-ID", &last)]);
                let ev = c.expect_non_ping();
                (ev.data, ev.id)
            })
        })
        .collect();
    for (t, id) in threads.into_iter().zip(missed) {
        let (data, got) = t.join().expect("listener thread");
        assert_eq!((data.as_str(), got), ("missed", Some(id)));
    }
    let s = stats(&h);
    assert_eq!(s["history_log_requests_total"], N as u64, "{s}");
    let reads = s["history_log_reads_total"].as_u64().unwrap();
    eprintln!("coalesced: {N} replays from the stream, {reads} range reads");
    assert!(
        reads * 4 <= N as u64,
        "{reads} range reads for {N} replays: {s}"
    );
    assert_eq!(s["history_gaps_total"], 0, "{s}");
}

#[test]
fn a_position_trimmed_from_the_stream_too_is_a_gap() {
    let r = RedisServer::start();
    let h = herald(&r, &[("HISTORY_MAX_BYTES", "16384")]);
    let last = seen_then_gone(&h, &r, "a");
    to_user(&r, "a", "lost");
    neighbour_traffic(&r, 100);
    settle(&h, 102);
    r.cmd(&["XTRIM", STREAM, "MAXLEN", "50"]);
    let mut a = h.sse_as("a", "", Some(&last));
    let ev = a.expect_non_ping();
    assert_eq!(ev.event.as_deref(), Some("history-gap"), "{ev:?}");
    assert_eq!(ev.data_json(), json!({"lastEventId": last}));
    expect_exactly(&r, &mut a, &[]);
    assert_eq!(stats(&h)["history_log_requests_total"], 1);
}
