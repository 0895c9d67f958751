//! Work the core hands off instead of waiting for it: a public-listener
//! connection listing (answered by [`Control::Answer`]) and, with the
//! Redis registry, the cluster's per-user count (a [`Record::Claim`],
//! answered by [`Control::Admit`], given up after the claim timeout); and,
//! in streams mode, a replay from a position memory no longer holds (a
//! `LogRequest`, answered by a `LogAnswer`, memory alone after the wait).

use crossbeam_channel::Receiver;

use super::*;
use crate::hub::registry::{Control, Query, Record};
use crate::reactor::WAIT_TIMEOUT_MS;
use std::sync::atomic::Ordering;

fn listing_rig() -> (Rig, Receiver<Query>) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    (rig_with(&[], |s| s.queries = Some(tx)), rx)
}

fn answer(r: &mut Rig, c: Control) {
    r.hub.inboxes()[0].control(c);
    while r.core.drain_inbox(r.now) {}
}

#[test]
fn a_listing_waits_off_the_reactor_for_its_answer() {
    let (mut r, queries) = listing_rig();
    let t = r.connect();
    let get = format!(
        "GET /connections/default/u1?token={} HTTP/1.1\r\n\r\n",
        jwt("me")
    );
    assert!(r.input(t, &get));
    let q = queries.try_recv().expect("the listing was handed off");
    assert_eq!((&*q.app, q.user.as_deref()), ("default", Some("u1")));
    assert!(r.fake().calls.is_empty(), "nothing sent while waiting");
    // Input meanwhile is ignored; the answer is sent, then the close.
    assert!(r.input(t, "more"));
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    answer(
        &mut r,
        Control::Answer {
            conn: q.conn,
            response,
        },
    );
    assert!(r.wire(t).ends_with("\r\n\r\n{}"), "{}", r.wire(t));
    assert_eq!(r.shutdowns(r.raw_fd(t)), 1);

    // A second listing while the queue (of one) is full: 503 at once.
    let t2 = r.connect();
    let t3 = r.connect();
    assert!(r.input(t2, &get));
    assert!(r.input(t3, &get));
    assert!(r.wire(t3).starts_with("HTTP/1.1 503 "), "{}", r.wire(t3));
    assert!(r.wire(t3).contains("Retry-After: 1\r\n"));
    // An answer for a connection that is gone is dropped.
    let stale = queries.try_recv().unwrap();
    r.core.on_closed(t2, "test");
    answer(
        &mut r,
        Control::Answer {
            conn: stale.conn,
            response: b"x".to_vec(),
        },
    );
    assert!(!r.is_open(t2));
}

fn claim_rig() -> (Rig, Receiver<Record>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let r = rig_with(&[("MAX_CONNECTIONS_PER_USER", "1")], |s| {
        s.records = Some(tx);
        s.status.registry_up.store(true, Ordering::Relaxed);
    });
    (r, rx)
}

fn claim(
    rx: &Receiver<Record>,
) -> (
    crate::hub::registry::ConnInfo,
    crate::hub::registry::ConnRef,
) {
    match rx.try_recv() {
        Ok(Record::Claim { info, conn }) => (info, conn),
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[test]
fn a_stream_over_the_cluster_limit_waits_for_the_verdict() {
    let (mut r, records) = claim_rig();
    let a = r.connect();
    assert!(r.input(a, &request_as("u1")));
    let (info, conn) = claim(&records);
    assert_eq!((&*info.app, &*info.user), ("default", "u1"));
    assert_eq!(r.streaming(), 0, "not before the verdict");
    answer(
        &mut r,
        Control::Admit {
            conn,
            admitted: true,
        },
    );
    assert_eq!(r.streaming(), 1);
    assert!(r.wire(a).starts_with("HTTP/1.1 200 OK"));
    assert!(records.try_recv().is_err(), "admitted: no second record");

    // Refused by the cluster: 503 like the local limit, nothing to undo.
    let b = r.connect();
    assert!(r.input(b, &request_as("u2")));
    let (_, conn) = claim(&records);
    answer(
        &mut r,
        Control::Admit {
            conn,
            admitted: false,
        },
    );
    assert!(r.wire(b).starts_with("HTTP/1.1 503 "), "{}", r.wire(b));
    assert!(r.wire(b).contains("MAX_CONNECTIONS_PER_USER"));
    assert!(records.try_recv().is_err());

    // Admitted by the cluster but over the local limit (u1 streams here
    // already): refused, and the claim is taken back.
    let c = r.connect();
    assert!(r.input(c, &request_as("u1")));
    let (info, conn) = claim(&records);
    answer(
        &mut r,
        Control::Admit {
            conn,
            admitted: true,
        },
    );
    assert!(r.wire(c).starts_with("HTTP/1.1 503 "), "{}", r.wire(c));
    match records.try_recv() {
        Ok(Record::Close { id, .. }) => assert_eq!(id, info.id),
        other => panic!("expected the claim withdrawn, got {other:?}"),
    }
}

#[test]
fn an_unanswered_claim_gives_up_and_a_closed_one_is_withdrawn() {
    let (mut r, records) = claim_rig();
    let a = r.connect();
    assert!(r.input(a, &request_as("u1")));
    let (info, _) = claim(&records);
    r.tick(T0 + WAIT_TIMEOUT_MS - 1);
    assert!(r.wire(a).is_empty());
    r.tick(T0 + WAIT_TIMEOUT_MS);
    assert!(r.wire(a).starts_with("HTTP/1.1 503 "), "{}", r.wire(a));
    assert!(r.wire(a).contains("did not answer"));
    assert!(matches!(records.try_recv(), Ok(Record::Close { id, .. }) if id == info.id));

    // The client leaves while parked: the claim is withdrawn, and a late
    // verdict finds nothing.
    let b = r.connect();
    assert!(r.input(b, &request_as("u1")));
    let (info, conn) = claim(&records);
    r.core.on_closed(b, "peer");
    assert!(matches!(records.try_recv(), Ok(Record::Close { id, .. }) if id == info.id));
    answer(
        &mut r,
        Control::Admit {
            conn,
            admitted: true,
        },
    );
    assert_eq!(r.streaming(), 0);
}

/// A rig whose replays of positions memory lacks go to the returned log
/// requests; `logged` publishes stream-like events (ids are positions).
fn log_rig() -> (Rig, Receiver<crate::hub::history::log::LogRequest>) {
    let (tx, rx) = crossbeam_channel::bounded(8);
    (rig_with(&[], |s| s.log = Some(tx)), rx)
}

fn logged(id: &str) -> Vec<crate::hub::envelope::Envelope> {
    let mut envs = decode(event(id).as_bytes()).expect("envelope");
    envs[0].logged = true;
    envs
}

fn last_event_id(id: &str) -> String {
    format!("GET /sse HTTP/1.1\r\nLast-Event-ID: {id}\r\n\r\n")
}

#[test]
fn a_position_memory_lacks_waits_for_the_log_then_meets_memory() {
    use crate::hub::history::log::{LogAnswer, Pos};
    let (mut r, asks) = log_rig();
    let now = crate::hub::Now {
        unix_ms: UNIX_MS,
        mono_ms: r.now,
    };
    r.hub.publish(logged("20-0"), now).unwrap();
    while r.core.drain_inbox(r.now) {}
    // Held: no question.
    let held = r.subscribe(&last_event_id("20-0"));
    assert!(asks.try_recv().is_err());
    // Not held, shaped like a position: parked, asked, nothing sent.
    let t = r.connect();
    assert!(r.input(t, &last_event_id("10-0")));
    let ask = asks.try_recv().expect("asked the log");
    assert_eq!(
        (ask.after, ask.before),
        (Pos::parse("10-0").unwrap(), Pos::parse("20-0"))
    );
    assert_eq!(r.wire(t), "");
    // Not shaped like one: memory alone decides (a gap).
    let other = r.subscribe(&last_event_id("never"));
    assert!(asks.try_recv().is_err());
    assert!(r.wire(other).contains("event: history-gap"));
    // Live events meanwhile reach the others, and the parked one later.
    r.hub.publish(logged("30-0"), now).unwrap();
    let found = decode(event("15-0").as_bytes()).unwrap().remove(0);
    let mut found = found.into_event(0, String::new());
    found.logged = true;
    r.hub.inboxes()[0].log_answer(LogAnswer {
        conn: ask.conn,
        events: vec![Arc::new(found)],
        found: true,
    });
    while r.core.drain_inbox(r.now) {}
    assert_eq!(r.ids(t), ["15-0", "20-0", "30-0"]);
    assert!(!r.wire(t).contains("history-gap"));
    assert_eq!(r.ids(held), ["30-0"]);

    // No answer in time: memory alone, with the gap; never a 503.
    let late = r.connect();
    assert!(r.input(late, &last_event_id("10-0")));
    asks.try_recv().expect("asked the log");
    r.tick(T0 + WAIT_TIMEOUT_MS + 1000);
    let wire = r.wire(late);
    assert!(wire.starts_with("HTTP/1.1 200 "), "{wire}");
    assert!(wire.contains("event: history-gap"));
    assert_eq!(r.ids(late), ["20-0", "30-0"]);
}
