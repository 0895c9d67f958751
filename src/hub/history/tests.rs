//! Unit tests of the history: replay decisions, the indexes, the budget.

use super::*;
use crate::hub::envelope::decode;
use crate::hub::history::log::{LogAnswer, Pos};
use crate::hub::registry::ConnRef;

fn ev(seq: u64, json: &str) -> Arc<Event> {
    let env = decode(json.as_bytes()).unwrap().remove(0);
    Arc::new(env.into_event(seq, format!("{seq}-0")))
}

fn ids(events: &[Arc<Event>]) -> Vec<String> {
    events.iter().map(|e| e.id.to_string()).collect()
}

fn limits(cap: usize) -> Limits {
    Limits {
        cap,
        ttl_ms: 600_000,
        max_bytes: usize::MAX,
    }
}

fn subscriber<'a>(app: &'a str, user: Option<&'a str>) -> Subscriber<'a> {
    Subscriber {
        app,
        user,
        filter: None,
    }
}

#[test]
fn replays_after_id_only_what_the_listener_would_get() {
    let mut h = History::new(limits(10));
    h.push(&ev(1, r#"{"message":"all"}"#), 0);
    h.push(&ev(2, r#"{"to":"u1","message":"u1 only"}"#), 0);
    h.push(&ev(3, r#"{"to":"u2","message":"u2 only"}"#), 0);
    h.push(&ev(4, r#"{"app":"shop","message":"shop"}"#), 0);
    h.push(&ev(5, r#"{"app":"blog","message":"blog"}"#), 0);
    h.push(&ev(6, r#"{"message":"all again"}"#), 0);
    let r = h.replay(&subscriber("shop", Some("u1")), "1-0");
    assert!(!r.gap);
    assert_eq!(ids(&r.events), ["2-0", "4-0", "6-0"]);
    let r = h.replay(&subscriber("default", None), "1-0");
    assert_eq!(ids(&r.events), ["6-0"]);
    let r = h.replay(&subscriber("blog", Some("u2")), EARLIEST);
    assert!(!r.gap);
    assert_eq!(ids(&r.events), ["1-0", "3-0", "5-0", "6-0"]);
    let r = h.replay(&subscriber("shop", Some("u1")), "6-0");
    assert!(!r.gap && r.events.is_empty());
}

#[test]
fn unknown_id_is_a_gap_then_what_is_held() {
    let mut h = History::new(limits(10));
    for i in 1..=4 {
        h.push(&ev(i, r#"{"message":"m"}"#), 0);
    }
    let r = h.replay(&subscriber("default", Some("u")), "0-9");
    assert!(r.gap && r.unresolved);
    assert_eq!(ids(&r.events), ["1-0", "2-0", "3-0", "4-0"]);
    assert_eq!(
        gap_frame("1-0"),
        b"event: history-gap\ndata: {\"lastEventId\":\"1-0\"}\n\n"
    );
}

#[test]
fn more_missed_than_the_cap_is_a_gap_then_the_most_recent() {
    let mut h = History::new(limits(2));
    for i in 1..=5 {
        h.push(&ev(i, r#"{"message":"m"}"#), 0);
    }
    let who = subscriber("default", None);
    let r = h.replay(&who, "1-0");
    assert!(
        r.gap && !r.unresolved,
        "the log cannot help: too many anyway"
    );
    assert_eq!(ids(&r.events), ["4-0", "5-0"]);
    // Exactly the cap missed: no gap.
    let r = h.replay(&who, "3-0");
    assert!(!r.gap);
    assert_eq!(ids(&r.events), ["4-0", "5-0"]);
    // earliest: the most recent cap, no gap.
    let r = h.replay(&who, EARLIEST);
    assert!(!r.gap);
    assert_eq!(ids(&r.events), ["4-0", "5-0"]);
}

#[test]
fn a_busy_neighbour_does_not_push_a_user_out_of_its_replay() {
    let mut h = History::new(limits(100));
    h.push(&ev(1, r#"{"to":"a","message":"seen"}"#), 0);
    h.push(&ev(2, r#"{"to":"a","message":"missed"}"#), 0);
    for i in 3..10_003 {
        h.push(&ev(i, r#"{"to":"b","message":"busy"}"#), 0);
    }
    let r = h.replay(&subscriber("default", Some("a")), "1-0");
    assert!(!r.gap);
    assert_eq!(ids(&r.events), ["2-0"]);
    assert_eq!(h.held().users, 2);
    let r = h.replay(&subscriber("default", Some("b")), "3-0");
    assert!(r.gap && r.events.len() == 100, "b missed 9,999");
}

#[test]
fn the_oldest_go_first_past_the_byte_budget_or_the_ttl() {
    let one = index::cost(&ev(1, r#"{"to":"a","message":"m"}"#));
    let mut h = History::new(Limits {
        cap: 100,
        ttl_ms: 1000,
        max_bytes: 3 * one,
    });
    for i in 1..=5 {
        h.push(&ev(i, r#"{"to":"a","message":"m"}"#), 0);
    }
    let held = h.held();
    assert_eq!((held.events, held.bytes, held.users), (3, 3 * one, 1));
    let who = subscriber("default", Some("a"));
    let r = h.replay(&who, "2-0");
    assert!(r.gap && r.unresolved, "2-0 was evicted");
    assert_eq!(ids(&r.events), ["3-0", "4-0", "5-0"]);
    assert!(!h.replay(&who, "3-0").gap);
    // Age: published at 0, gone after the TTL; no entry left for `a`.
    h.expire(1000);
    assert_eq!(h.held().events, 3);
    h.expire(1001);
    assert_eq!(h.held(), Held::default());
    assert!(h.replay(&who, "5-0").gap);
}

#[test]
fn a_user_named_twice_holds_the_event_once() {
    let mut h = History::new(limits(10));
    h.push(&ev(1, r#"{"to":["a","a","b"],"message":"m"}"#), 0);
    let r = h.replay(&subscriber("default", Some("a")), EARLIEST);
    assert_eq!(ids(&r.events), ["1-0"]);
    h.expire(u64::MAX);
    assert_eq!(h.held(), Held::default());
}

fn logged(seq: u64, id: &str, json: &str) -> Arc<Event> {
    let mut env = decode(json.as_bytes()).unwrap().remove(0);
    env.logged = true;
    Arc::new(env.into_event(seq, id.into()))
}

#[test]
fn a_log_answer_joins_memory_without_duplicates() {
    let mut h = History::new(limits(3));
    h.push(&logged(3, "30-0", r#"{"to":"a","message":"m"}"#), 0);
    h.push(&logged(4, "40-0", r#"{"to":"a","message":"m"}"#), 0);
    let who = subscriber("default", Some("a"));
    let r = h.replay(&who, "10-0");
    assert!(r.unresolved);
    let before = h.oldest_logged();
    assert_eq!(before, Pos::parse("30-0"));
    let conn = ConnRef {
        reactor: 0,
        slot: 0,
        gen: 0,
    };
    let answer = |found, events: &[&str]| LogAnswer {
        conn,
        found,
        events: events
            .iter()
            .map(|id| logged(0, id, r#"{"to":"a","message":"m"}"#))
            .collect(),
    };
    // The log gave 20-0 (and, overlapping, 30-0): each once, no gap.
    let r = h.join(&who, answer(true, &["20-0", "30-0"]), before);
    assert!(!r.gap);
    assert_eq!(ids(&r.events), ["20-0", "30-0", "40-0"]);
    // Position trimmed from the log: a gap, then everything.
    let r = h.join(&who, answer(false, &["20-0"]), before);
    assert!(r.gap);
    assert_eq!(ids(&r.events), ["20-0", "30-0", "40-0"]);
    // More than the cap in all: the most recent three, with a gap.
    let r = h.join(&who, answer(true, &["12-0", "15-0", "20-0"]), before);
    assert!(r.gap);
    assert_eq!(ids(&r.events), ["20-0", "30-0", "40-0"]);
    // Memory evicted its oldest log event meanwhile: a hole, so a gap.
    h.push(&logged(5, "50-0", r#"{"to":"a","message":"m"}"#), 0);
    h.expire(u64::MAX);
    h.push(&logged(6, "60-0", r#"{"to":"a","message":"m"}"#), 0);
    let r = h.join(&who, answer(true, &["20-0"]), before);
    assert!(r.gap);
    assert_eq!(ids(&r.events), ["20-0", "60-0"]);
}

#[test]
fn log_positions_parse_and_order() {
    let p = |s| Pos::parse(s).unwrap();
    assert!(p("5-1") < p("5-1.0") && p("5-1.0") < p("5-1.1") && p("5-1.9") < p("5-2"));
    assert!(p("9-0") < p("10-0"));
    assert_eq!(p("7-3.2").entry(), "7-3");
    for bad in ["x", "5", "5-", "a-1", "5-1.x", "earliest", ""] {
        assert!(Pos::parse(bad).is_none(), "{bad}");
    }
}

/// Ids, with gap markers shown as `GAP`.
fn marked(events: &[Arc<Event>]) -> Vec<String> {
    let id = |e: &Arc<Event>| match is_gap_marker(e) {
        true => "GAP".to_string(),
        false => e.id.to_string(),
    };
    events.iter().map(id).collect()
}

#[test]
fn a_gap_marker_is_replayed_in_place_whatever_the_filter() {
    let mut h = History::new(limits(10));
    h.push(&Arc::new(gap_event(1, "0-1", 0)), 0);
    h.push(&ev(2, r#"{"event":"a","message":"2"}"#), 0);
    h.push(&Arc::new(gap_event(3, "2-0", 0)), 0);
    h.push(&ev(4, r#"{"event":"b","message":"4"}"#), 0);
    h.push(&Arc::new(gap_event(5, "4-0", 0)), 0);
    h.push(&Arc::new(gap_event(6, "4-0", 0)), 0);
    let all = subscriber("default", None);
    // After a held id: every marker after it, consecutive ones once.
    let r = h.replay(&all, "2-0");
    assert!(!r.gap);
    assert_eq!(marked(&r.events), ["GAP", "4-0", "GAP"]);
    assert_eq!(&*r.events[0].frame, &gap_frame("2-0")[..]);
    let r = h.replay(&all, "4-0");
    assert!(!r.gap);
    assert_eq!(marked(&r.events), ["GAP"]);
    // From earliest, or after a gap of its own: no leading marker.
    let r = h.replay(&all, EARLIEST);
    assert_eq!(marked(&r.events), ["2-0", "GAP", "4-0", "GAP"]);
    let r = h.replay(&all, "unknown");
    assert!(r.gap);
    assert_eq!(marked(&r.events), ["2-0", "GAP", "4-0", "GAP"]);
    // A marker's empty id is never a position.
    assert!(h.replay(&all, "").gap);
    // A filter that takes only `b` still hears of both gaps.
    let f = Filter::from_lists(Some("b"), None).unwrap().unwrap();
    let only_b = Subscriber {
        app: "shop",
        user: None,
        filter: Some(&f),
    };
    let r = h.replay(&only_b, "2-0");
    assert_eq!(marked(&r.events), ["GAP", "4-0", "GAP"]);
    // HISTORY_ON_CONNECT counts events, not markers, and drops a
    // leading one.
    assert_eq!(marked(&h.recent(&all, 1)), ["4-0", "GAP"]);
    assert_eq!(marked(&h.recent(&all, 5)), ["2-0", "GAP", "4-0", "GAP"]);
}

#[test]
fn repeated_envelope_id_resumes_after_the_most_recent() {
    let mut h = History::new(limits(10));
    h.push(&ev(1, r#"{"id":"x","message":"a"}"#), 0);
    h.push(&ev(2, r#"{"message":"b"}"#), 0);
    h.push(&ev(3, r#"{"id":"x","message":"c"}"#), 0);
    h.push(&ev(4, r#"{"message":"d"}"#), 0);
    let r = h.replay(&subscriber("default", None), "x");
    assert_eq!(ids(&r.events), ["4-0"]);
}

#[test]
fn filters_apply_and_recent_takes_the_last_n() {
    let mut h = History::new(limits(10));
    h.push(&ev(1, r#"{"event":"blog.post","message":"a"}"#), 0);
    h.push(&ev(2, r#"{"event":"news","message":"b"}"#), 0);
    h.push(&ev(3, r#"{"event":"blog.edit","message":"c"}"#), 0);
    h.push(&ev(4, r#"{"event":"blog.del","message":"d"}"#), 0);
    let f = Filter::from_lists(Some("blog.*"), None).unwrap().unwrap();
    let who = Subscriber {
        app: "default",
        user: None,
        filter: Some(&f),
    };
    assert_eq!(ids(&h.replay(&who, EARLIEST).events), ["1-0", "3-0", "4-0"]);
    assert_eq!(ids(&h.recent(&who, 2)), ["3-0", "4-0"]);
    assert!(History::new(limits(0)).replay(&who, "1-0").gap);
}
