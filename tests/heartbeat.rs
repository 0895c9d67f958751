//! Heartbeats (SPEC §2): `event: ping` with unix seconds, `: ping` comments,
//! off with 0, and no ping for a connection that keeps receiving events.

mod common;

use std::time::{Duration, Instant};

use common::{jwt, Herald, SseItem};

fn start(extra: &[(&str, &str)]) -> Herald {
    let mut envs = vec![("JWT_SECRET", jwt::SECRET)];
    envs.extend_from_slice(extra);
    Herald::start(&envs)
}

#[test]
fn event_mode_pings_with_unix_seconds() {
    let h = start(&[("HEARTBEAT_SECONDS", "1")]);
    let mut c = h.sse_with_token(&jwt::user("u1"));
    for _ in 0..2 {
        let ev = c.expect_event();
        assert_eq!(ev.event.as_deref(), Some("ping"), "{ev:?}");
        assert_eq!(ev.id, None, "a ping must not move Last-Event-ID: {ev:?}");
        assert_eq!(ev.raw.len(), 2, "{ev:?}");
        let secs: u64 = ev
            .data
            .parse()
            .unwrap_or_else(|_| panic!("ping data {:?} is not unix seconds", ev.data));
        let now = common::unix_secs();
        assert!(
            secs + 15 >= now && secs <= now + 15,
            "ping data {secs} is far from now {now}"
        );
    }
    assert!(
        c.comments().is_empty(),
        "comments in event mode: {:?}",
        c.comments()
    );
}

#[test]
fn comment_mode_pings_with_a_comment() {
    let h = start(&[("HEARTBEAT_SECONDS", "1"), ("HEARTBEAT_MODE", "comment")]);
    let mut c = h.sse_with_token(&jwt::user("u1"));
    for _ in 0..2 {
        let item = c.next_item(common::EVENT_TIMEOUT);
        assert_eq!(item, Some(SseItem::Comment("ping".into())));
    }
    // Comments dispatch no event: the next event is a real one.
    h.publish_ok(r#"{"message":"real"}"#);
    let ev = c.expect_event();
    assert_eq!(ev.data, "real");
    assert_eq!(ev.event, None);
}

#[test]
fn zero_turns_heartbeats_off() {
    let h = start(&[("HEARTBEAT_SECONDS", "0")]);
    let mut c = h.sse_with_token(&jwt::user("u1"));
    // Give a 1 s heartbeat ample time to show up, then prove nothing came.
    std::thread::sleep(Duration::from_millis(2500));
    h.publish_ok(r#"{"message":"marker"}"#);
    let item = c.next_item(common::EVENT_TIMEOUT).expect("marker");
    match item {
        SseItem::Event(ev) => assert_eq!(ev.data, "marker", "{ev:?}"),
        SseItem::Comment(t) => panic!("comment {t:?} with heartbeats off"),
    }
}

/// Publishes to `c` every 300 ms for `run`, and returns every event type seen
/// in that time (pings included).
fn busy_stream(h: &Herald, c: &mut common::SseClient, run: Duration) -> Vec<String> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut i = 0;
    while start.elapsed() < run {
        h.publish_ok(&format!(
            r#"{{"to":"busy","event":"tick","message":"{i}"}}"#
        ));
        // Read what is there (the tick, and any ping) for ~300 ms.
        let until = Instant::now() + Duration::from_millis(300);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match c.next_event(left) {
                Some(ev) => seen.push(ev.event_type().to_string()),
                None => break,
            }
        }
        i += 1;
    }
    seen
}

#[test]
fn busy_connection_gets_no_ping() {
    // Events every 300 ms, well inside a 2 s heartbeat interval: no ping.
    let h = start(&[("HEARTBEAT_SECONDS", "2")]);
    let mut c = h.sse_with_token(&jwt::user("busy"));
    let mut idle = h.sse_with_token(&jwt::user("idle"));
    let seen = busy_stream(&h, &mut c, Duration::from_millis(5000));
    assert!(
        seen.iter().filter(|t| *t == "tick").count() >= 5,
        "too few ticks: {seen:?}"
    );
    assert!(
        !seen.iter().any(|t| t == "ping"),
        "a connection sent an event every 300 ms got a ping: {seen:?}"
    );
    // Meanwhile the idle connection was pinged.
    assert_eq!(idle.expect_event().event.as_deref(), Some("ping"));
}

#[test]
fn busy_connection_gets_no_ping_with_one_second_interval() {
    // Same with HEARTBEAT_SECONDS=1: a connection written to 300 ms ago was
    // not idle for a whole interval.
    let h = start(&[("HEARTBEAT_SECONDS", "1")]);
    let mut c = h.sse_with_token(&jwt::user("busy"));
    let seen = busy_stream(&h, &mut c, Duration::from_millis(2500));
    assert!(
        !seen.iter().any(|t| t == "ping"),
        "a connection sent an event every 300 ms got a ping (1 s interval): {seen:?}"
    );
}
