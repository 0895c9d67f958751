//! History by age and bytes, indexed per user (SPEC §2 "History", issue
//! #10): a busy neighbour never pushes a user's events out, the TTL and the
//! byte budget evict oldest first (and replay says so with `history-gap`),
//! and one replay sends at most `HISTORY_SIZE` events.
//!
//! "Nothing else arrived" is shown by publishing a marker afterwards and
//! checking that it is the very next event.

mod common;

use std::time::Duration;

use common::{get_json, jwt, Herald, SseClient, SseEvent};
use serde_json::{json, Value};

fn herald(extra: &[(&str, &str)]) -> Herald {
    let mut envs = vec![("JWT_SECRET", jwt::SECRET)];
    envs.extend_from_slice(extra);
    Herald::start(&envs)
}

/// `user` receives one event and goes away: returns its id.
fn seen_then_gone(h: &Herald, user: &str) -> String {
    let mut c = h.sse_as(user, "", None);
    h.publish_json(&json!({"to": user, "event": "n", "message": "seen"}));
    let ev = c.expect_non_ping();
    assert_eq!(ev.data, "seen");
    c.close();
    ev.id.expect("an id")
}

/// Publishes `n` events to `user` in batches a listener can take at once.
fn flood(h: &Herald, user: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"to": user, "event": "busy", "message": format!("b{i}")}))
            .collect();
        assert_eq!(h.publish_json(&Value::Array(batch)), chunk.len() as u64);
    }
}

fn expect_gap(c: &mut SseClient, last: &str) {
    let ev = c.expect_non_ping();
    assert_eq!(ev.event.as_deref(), Some("history-gap"), "{ev:?}");
    assert_eq!(ev.data_json(), json!({"lastEventId": last}), "{ev:?}");
}

/// A broadcast marker is `c`'s very next event.
fn marker_next(h: &Herald, c: &mut SseClient) {
    h.publish_json(&json!({"event": "marker", "message": "live"}));
    let ev: SseEvent = c.expect_non_ping();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (Some("marker"), "live"),
        "nothing else before the marker"
    );
}

#[test]
fn a_user_misses_one_event_while_a_neighbour_gets_ten_thousand_and_gets_exactly_it() {
    let h = herald(&[]);
    let last = seen_then_gone(&h, "a");
    h.publish_json(&json!({"to": "a", "event": "n", "message": "missed"}));
    flood(&h, "b", 10_000);
    let mut a = h.sse_as("a", "", Some(&last));
    let ev = a.expect_non_ping();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (Some("n"), "missed"),
        "exactly a's event, no gap"
    );
    marker_next(&h, &mut a);
    let stats = get_json(h.admin_addr(), "/stats");
    assert_eq!(stats["history_gaps_total"], 0, "{stats}");
    // Held: every event; indexed users: a and b only.
    assert!(
        stats["history"]["events"].as_u64().unwrap() >= 10_003,
        "{stats}"
    );
    assert_eq!(stats["history"]["users"], 2, "{stats}");
}

#[test]
fn a_listener_away_longer_than_the_ttl_gets_history_gap() {
    let h = herald(&[("HISTORY_TTL_SECONDS", "1")]);
    let last = seen_then_gone(&h, "a");
    h.publish_json(&json!({"to": "a", "event": "n", "message": "aged out"}));
    // Held within the TTL...
    let mut early = h.sse_as("a", "", Some(&last));
    assert_eq!(early.expect_non_ping().data, "aged out");
    early.close();
    // ...gone after it (the per-second sweep, or the replay's own check).
    std::thread::sleep(Duration::from_millis(2300));
    let mut late = h.sse_as("a", "", Some(&last));
    expect_gap(&mut late, &last);
    marker_next(&h, &mut late);
    let stats = get_json(h.admin_addr(), "/stats");
    assert_eq!(stats["history"]["users"], 0, "no index entry left: {stats}");
}

#[test]
fn the_byte_budget_evicts_oldest_first_and_replay_says_so() {
    let budget = 16 * 1024;
    let h = herald(&[("HISTORY_MAX_BYTES", &budget.to_string())]);
    let last = seen_then_gone(&h, "a");
    h.publish_json(&json!({"to": "a", "event": "n", "message": "evicted"}));
    let pad = "x".repeat(400);
    for i in 0..100 {
        h.publish_json(&json!({"to": "b", "event": "busy", "message": format!("{i}{pad}")}));
    }
    let stats = get_json(h.admin_addr(), "/stats");
    let bytes = stats["history"]["bytes"].as_u64().unwrap();
    assert!(
        bytes <= budget && bytes > budget / 2,
        "held {bytes} B of {budget}: {stats}"
    );
    let held = stats["history"]["events"].as_u64().unwrap();
    assert!((10..100).contains(&held), "{held} held: {stats}");
    let mut a = h.sse_as("a", "", Some(&last));
    expect_gap(&mut a, &last);
    marker_next(&h, &mut a);
    // b's recent position is still held: no gap, just the newer events.
    let mut b_obs = h.sse_as("b", "", None);
    let ev = h.publish_json(&json!({"to": "b", "event": "busy", "message": "one"}));
    assert_eq!(ev, 1);
    let one = b_obs.expect_non_ping();
    h.publish_json(&json!({"to": "b", "event": "busy", "message": "two"}));
    let mut b = h.sse_as("b", "", one.id.as_deref());
    assert_eq!(b.expect_non_ping().data, "two");
    marker_next(&h, &mut b);
}

#[test]
fn a_listener_that_missed_more_than_history_size_gets_a_gap_then_the_most_recent() {
    let h = herald(&[("HISTORY_SIZE", "5")]);
    let last = seen_then_gone(&h, "a");
    for i in 0..8 {
        h.publish_json(&json!({"to": "a", "event": "n", "message": format!("m{i}")}));
    }
    let mut a = h.sse_as("a", "", Some(&last));
    expect_gap(&mut a, &last);
    let got: Vec<String> = (0..5).map(|_| a.expect_non_ping().data).collect();
    assert_eq!(got, ["m3", "m4", "m5", "m6", "m7"]);
    marker_next(&h, &mut a);
    // Exactly HISTORY_SIZE missed: all of them, no gap.
    let mut obs = h.sse_as("c", "", None);
    h.publish_json(&json!({"to": "c", "event": "n", "message": "seen"}));
    let seen = obs.expect_non_ping().id.unwrap();
    obs.close();
    for i in 0..5 {
        h.publish_json(&json!({"to": "c", "event": "n", "message": format!("c{i}")}));
    }
    let mut c = h.sse_as("c", "", Some(&seen));
    let got: Vec<String> = (0..5).map(|_| c.expect_non_ping().data).collect();
    assert_eq!(got, ["c0", "c1", "c2", "c3", "c4"]);
    marker_next(&h, &mut c);
}
