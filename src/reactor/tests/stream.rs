//! Requests, replay meeting live delivery, slot reuse and tokens, under the
//! fake transport.

use super::*;

// ----- requests --------------------------------------------------------------

#[test]
fn a_head_split_in_three_reads_streams_only_after_the_last() {
    let mut r = rig(&[("RETRY_MS", "1500")]);
    let t = r.connect();
    assert_eq!(r.fake().registered, vec![t]);
    assert!(r.input(t, "GET /sse HT"));
    assert!(r.input(t, "TP/1.1\r\nHost: herald\r\nAccept: text/event-stream\r\n"));
    assert!(
        r.fake().calls.is_empty(),
        "sent before the head was complete"
    );
    assert_eq!(r.streaming(), 0);

    assert!(r.input(t, "\r\n"));
    assert_eq!(r.streaming(), 1);
    let wire = r.wire(t);
    assert_eq!(r.sends(t), vec![(wire.len(), wire.len())], "one send");
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
    assert!(
        wire.contains("\r\nContent-Type: text/event-stream"),
        "{wire}"
    );
    assert_eq!(body(&wire), "retry: 1500\n\n");

    // Input after the head is ignored; the stream goes on.
    assert!(r.input(t, "GET /nope HTTP/1.1\r\n\r\n"));
    assert_eq!(r.sends(t).len(), 1);
    r.deliver(&event("e1"));
    assert_eq!(r.ids(t), ids(&["e1"]));
}

#[test]
fn header_timeout_answers_a_partial_head_and_drops_a_silent_connection() {
    let mut r = rig(&[("HEADER_TIMEOUT_MS", "1000")]);
    let partial = r.connect();
    let silent = r.connect();
    assert!(r.input(partial, "GET /sse HTTP/1.1\r\n"));
    r.tick(T0 + 999);
    assert!(r.is_open(partial) && r.is_open(silent));
    assert!(r.fake().calls.is_empty());

    let fd = r.raw_fd(partial);
    r.tick(T0 + 1000);
    assert!(r.wire(partial).starts_with("HTTP/1.1 408 "));
    assert_eq!(r.shutdowns(fd), 1, "the 408 is out: half-close");
    assert!(
        r.is_open(partial),
        "lingers so the 408 is not lost to a reset"
    );
    assert!(!r.is_open(silent));
    assert_eq!(r.releases(silent), 1);
    assert!(
        r.sends(silent).is_empty(),
        "a silent connection gets nothing"
    );
}

// ----- replay meets live delivery ------------------------------------------------

#[test]
fn replay_and_live_delivery_meet_with_no_gap_and_no_duplicate() {
    let mut r = rig(&[]);
    let watcher = r.subscribe(GET);
    r.deliver(r#"[{"id":"e1","message":"1"},{"id":"e2","message":"2"}]"#);
    r.deliver(&event("e3"));
    r.deliver(&event("e4"));
    r.deliver(&event("e5"));

    let t = r.connect();
    assert!(r.input(t, "GET /sse HTTP/1.1\r\nLast-Event-ID: e2\r\n"));
    // Published while the head is read: in the inbox, not yet drained.
    r.publish(&event("e6"));
    assert!(r.input(t, "\r\n"));
    assert_eq!(r.ids(t), ids(&["e3", "e4", "e5", "e6"]));
    r.deliver(&event("e7"));
    r.deliver(r#"[{"id":"e8","message":"8"},{"id":"e9","message":"9"}]"#);

    assert_eq!(r.ids(t), ids(&["e3", "e4", "e5", "e6", "e7", "e8", "e9"]));
    assert!(!r.wire(t).contains("history-gap"));
    assert_eq!(
        r.ids(watcher),
        ids(&["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"])
    );
    // Head + preface in one send, then e7, then e8 and e9 together.
    assert_eq!(r.sends(t).len(), 3);
}

#[test]
fn a_last_event_id_still_in_the_inbox_is_caught_up_not_a_gap() {
    // The listener saw e4 on a reactor that drained faster, and reconnects
    // here before this reactor drained it.
    let mut r = rig(&[]);
    r.deliver(&event("e1"));
    r.deliver(&event("e2"));
    r.deliver(&event("e3"));
    let t = r.connect();
    assert!(r.input(t, "GET /sse HTTP/1.1\r\nLast-Event-ID: e4\r\n"));
    r.publish(&event("e4"));
    r.publish(&event("e5"));
    assert!(r.input(t, "\r\n"));
    r.deliver(&event("e6"));
    assert_eq!(r.ids(t), ids(&["e5", "e6"]));
    assert!(!r.wire(t).contains("history-gap"), "{}", r.wire(t));
}

// ----- slot reuse and stale tokens -------------------------------------------

#[test]
fn a_reused_slot_never_receives_its_predecessors_events() {
    let mut r = rig(&[]);
    let alice = r.subscribe(&request_as("alice"));
    r.deliver(r#"{"to":"alice","id":"a1","message":"for alice"}"#);
    assert_eq!(r.ids(alice), ids(&["a1"]));
    r.core.on_closed(alice, "peer closed");
    assert!(!r.is_open(alice));
    assert_eq!(r.releases(alice), 1);

    let bob = r.subscribe(&request_as("bob"));
    assert_eq!(bob & 0xffff_ffff, alice & 0xffff_ffff, "slot not reused");
    assert_ne!(bob, alice, "same generation");
    r.deliver(r#"{"to":"alice","id":"a2","message":"for alice"}"#);
    r.deliver(r#"{"to":["bob"],"id":"b1","message":"for bob"}"#);
    assert_eq!(r.ids(bob), ids(&["b1"]));
    r.core.on_closed(bob, "peer closed");

    let anon = r.subscribe(GET);
    assert_eq!(anon & 0xffff_ffff, alice & 0xffff_ffff, "slot not reused");
    r.deliver(r#"{"to":["alice","bob"],"id":"ab","message":"for both"}"#);
    r.deliver(&event("x1"));
    assert_eq!(r.ids(anon), ids(&["x1"]));
    // Nothing ever went to the old tokens after they closed.
    assert_eq!(r.ids(alice), ids(&["a1"]));
    assert_eq!(r.ids(bob), ids(&["b1"]));
}

#[test]
fn stale_tokens_are_ignored_readiness() {
    let mut r = rig(&[]);
    let old = r.subscribe(GET);
    r.core.on_closed(old, "peer closed");
    let new = r.connect();
    assert_eq!(new & 0xffff_ffff, old & 0xffff_ffff);
    assert!(r.core.fd(old).is_none());

    // Input for the old token reaches nothing, and says so.
    assert!(!r.core.on_input(old, b"GET /nope HTTP/1.1\r\n\r\n", r.now));
    r.core.on_closed(old, "late hang-up");
    assert!(r.is_open(new));
    assert!(r.sends(new).is_empty());

    // The new one streams; its head waits behind a full socket.
    r.fake().take = Some(0);
    assert!(r.input(new, GET));
    assert_eq!(r.streaming(), 1);
    r.fake().take = None;
    r.core.on_writable(old, r.now);
    assert_eq!(r.sends(new).len(), 1, "readiness for a stale token flushed");
    r.core.on_writable(new, r.now);
    assert_eq!(r.sends(new).len(), 2);
    assert!(r.wire(new).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn stale_tokens_are_ignored_completion() {
    let mut r = rig(&[]);
    r.fake().completion = true;
    let old = r.subscribe(GET);
    r.core.on_closed(old, "peer closed");
    let new = r.subscribe(GET);
    assert_eq!(new & 0xffff_ffff, old & 0xffff_ffff);
    let head = r.sends(new)[0].0;
    r.deliver(&event("e1"));
    assert_eq!(r.sends(new).len(), 1, "e1 waits behind the head");

    // A completion for the old token's send must not finish the new one's.
    assert!(!r.core.on_sent(old, Ok(head), true, r.now));
    assert!(!r
        .core
        .on_sent(old, Err(io::Error::other("reset")), true, r.now));
    assert_eq!(r.sends(new).len(), 1);
    assert!(r.is_open(new));

    assert!(r.core.on_sent(new, Ok(head), true, r.now));
    assert_eq!(r.sends(new).len(), 2);
    assert_eq!(r.ids(new), ids(&["e1"]));
}

/// A driver may use the top byte of a token (io_uring tags `user_data`), so
/// tokens must fit in 56 bits however many connections a reactor has seen:
/// the generation wraps within 24 bits, and the wrapped token still works.
#[test]
fn tokens_fit_in_56_bits_across_the_generation_wrap() {
    let mut r = rig(&[]);
    r.core.next_gen = crate::reactor::GEN_MASK - 1;
    let before = r.connect();
    let at_wrap = r.connect();
    let after = r.connect();
    for t in [before, at_wrap, after] {
        assert_eq!(t >> 56, 0, "token {t:#x} uses the top byte");
        assert!(r.input(t, GET), "token {t:#x} not accepted");
    }
    assert_eq!(at_wrap >> 32, 0, "the generation wrapped to 0");
    r.deliver(&event("e1"));
    for t in [before, at_wrap, after] {
        assert_eq!(r.ids(t), ids(&["e1"]));
    }
}

#[test]
fn app_scoped_events_walk_only_their_apps_streams() {
    let mut r = rig(&[]);
    let get =
        |sub: &str, iss: &str| format!("GET /sse?token={} HTTP/1.1\r\n\r\n", jwt_in(sub, iss));
    // "small" (and "default", the anonymous listener's app) hold under half
    // of the streams, so their events walk their own lists: user entries,
    // and the app's anonymous streams.
    let s1 = r.subscribe(&get("u1", "small"));
    let s1b = r.subscribe(&get("u1", "small"));
    let s2 = r.subscribe(&get("u2", "small"));
    let anon = r.subscribe(GET);
    let big: Vec<u64> = (0..8)
        .map(|i| r.subscribe(&get(&format!("b{i}"), "big")))
        .collect();
    // A closed stream leaves its user's list; the user's other stays.
    r.core.on_closed(s1b, "peer");
    r.publish(r#"{"app":"small","id":"a1","message":"m-a1"}"#);
    r.publish(r#"{"app":"big","to":"b3","id":"t1","message":"m-t1"}"#);
    r.publish(r#"{"app":"default","id":"d1","message":"m-d1"}"#);
    while r.core.drain_inbox(r.now) {}
    assert_eq!(r.ids(s1), ids(&["a1"]));
    assert_eq!(r.ids(s2), ids(&["a1"]));
    assert_eq!(r.ids(anon), ids(&["d1"]));
    for (i, t) in big.iter().enumerate() {
        let want: &[&str] = if i == 3 { &["t1"] } else { &[] };
        assert_eq!(r.ids(*t), ids(want), "big #{i}");
    }
    // After closes the lists still hold exactly the open streams.
    r.core.on_closed(s2, "peer");
    r.core.on_closed(anon, "peer");
    r.deliver(r#"{"app":"small","id":"a2","message":"m-a2"}"#);
    assert_eq!(r.ids(s1), ids(&["a1", "a2"]));
    let anon2 = r.subscribe(GET);
    r.deliver(r#"{"app":"default","id":"d2","message":"m-d2"}"#);
    assert_eq!(r.ids(anon2), ids(&["d2"]));
}

#[test]
fn a_stream_started_while_presence_is_in_flight_hears_each_user_once() {
    use crate::presence::{announcement, Change, Presence, Scope};
    let (feed, changes) = crossbeam_channel::unbounded();
    let mut r = rig_with(&[("INTERNAL_EVENTS_STRATEGY", "generate")], |s| {
        s.presence = Arc::new(Presence::new(0, Some(feed), true, Scope::Local, 100));
    });
    let now = crate::hub::Now {
        unix_ms: UNIX_MS,
        mono_ms: T0,
    };
    let announce = |r: &mut Rig, changes: Vec<Change>| {
        let n = changes.len();
        r.hub
            .announce(changes.into_iter().map(announcement).collect(), now);
        r.shared.presence.note_announced(n);
        while r.core.drain_inbox(r.now) {}
    };
    // u1 arrives; its announcement has not gone out when s starts.
    let u1 = r.subscribe(&request_as("u1"));
    let joined_u1 = changes.try_recv().expect("u1's arrival decided");
    let s = r.subscribe(&request_as("s"));
    assert!(
        r.wire(s)
            .contains(r#"data: {"truncated":false,"users":["s","u1"]}"#),
        "{}",
        r.wire(s)
    );
    let s_joined = changes.try_recv().unwrap();
    // Now both go out: s already lists u1, so it does not hear of u1 again;
    // u1 hears of s.
    announce(&mut r, vec![joined_u1, s_joined]);
    assert!(
        !body(&r.wire(s)).contains("user-connected"),
        "{}",
        r.wire(s)
    );
    assert!(r.wire(u1).contains(r#"data: {"userId":"s"}"#));
    // Later changes reach s as usual (its view is gone).
    let u2 = r.subscribe(&request_as("u2"));
    announce(&mut r, changes.try_iter().collect());
    assert!(
        r.wire(s).contains(
            r#"event: user-connected
data: {"userId":"u2"}"#
        ),
        "{}",
        r.wire(s)
    );
    let _ = u2;
}
