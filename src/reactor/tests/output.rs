//! The write queue, the slow-listener cut and heartbeats, under the fake
//! transport in both modes.

use super::*;

// ----- the slow-listener cut ---------------------------------------------------

const LIMIT: usize = 4096;

/// A streaming listener whose socket takes nothing (readiness) or whose
/// sends never complete (completion), and the bytes of its response head,
/// all of them unsent.
fn stuck_listener(completion: bool) -> (Rig, u64, usize) {
    let mut r = rig(&[("MAX_PENDING_BYTES", "4096")]);
    if completion {
        r.fake().completion = true;
    } else {
        r.fake().take = Some(0);
    }
    let t = r.subscribe(GET);
    let sends = r.sends(t);
    assert_eq!(sends.len(), 1);
    let head = sends[0].0;
    assert!(head > 100 && head < 1000, "head of {head} bytes");
    (r, t, head)
}

#[test]
fn a_slow_listener_is_cut_exactly_past_max_pending_bytes_readiness() {
    for over in [0, 1] {
        let (mut r, t, head) = stuck_listener(false);
        assert_eq!(r.sends(t), vec![(head, 0)]);
        r.deliver(&event_of_size("a", 1000));
        r.deliver(&event_of_size("b", LIMIT - head - 1000 + over));
        if over == 1 {
            // One byte past the limit.
            r.assert_cut_slow(t, 1);
            continue;
        }
        // Unsent bytes == MAX_PENDING_BYTES: still a listener.
        assert!(r.is_open(t));
        assert_eq!(r.slow_disconnects(), 0);
        assert_eq!(r.releases(t), 0);
        assert_eq!(r.sends(t).len(), 1, "queued behind the full socket");
        r.deliver(&event_of_size("c", 14));
        r.assert_cut_slow(t, 1);
    }
}

#[test]
fn a_slow_listener_is_cut_exactly_past_max_pending_bytes_completion() {
    for over in [0, 1] {
        let (mut r, t, head) = stuck_listener(true);
        // The kernel reports 100 bytes of the head sent; the rest stays in
        // flight and counts against the limit.
        assert!(r.core.on_sent(t, Ok(100), false, r.now));
        let in_flight = head - 100;
        r.deliver(&event_of_size("a", 1000));
        r.deliver(&event_of_size("b", LIMIT - in_flight - 1000 + over));
        if over == 1 {
            r.assert_cut_slow(t, 1);
            // The driver learns the connection is gone and drops the send.
            assert!(!r.core.on_sent(t, Ok(10), false, r.now));
            continue;
        }
        assert!(r.is_open(t));
        assert_eq!(r.slow_disconnects(), 0);
        assert_eq!(r.releases(t), 0);
        assert_eq!(
            r.sends(t).len(),
            1,
            "nothing sent while the head is in flight"
        );
        r.deliver(&event_of_size("c", 14));
        r.assert_cut_slow(t, 1);
    }
}

#[test]
fn a_first_write_past_max_pending_bytes_is_cut_readiness() {
    for over in [0, 1] {
        let mut r = rig(&[("MAX_PENDING_BYTES", "4096")]);
        let t = r.subscribe(GET);
        // The head went out; now the socket is full.
        r.fake().take = Some(0);
        r.deliver(&event_of_size("a", LIMIT + over));
        if over == 1 {
            r.assert_cut_slow(t, 1);
        } else {
            assert!(r.is_open(t));
            assert_eq!(r.slow_disconnects(), 0);
            assert_eq!(r.sends(t).last(), Some(&(LIMIT, 0)));
        }
    }
}

// ----- the write queue -----------------------------------------------------------

#[test]
fn a_short_completion_keeps_order_and_flushes_the_queue_as_one_send() {
    let mut r = rig(&[]);
    r.fake().completion = true;
    let t = r.subscribe(GET);
    let head = r.sends(t)[0].0;
    assert!(r.core.on_sent(t, Ok(head), true, r.now));
    assert_eq!(r.sends(t).len(), 1, "nothing was queued");

    r.deliver(&event("e1"));
    assert_eq!(r.sends(t)[1], (frame_len("e1"), frame_len("e1")));
    r.deliver(&event("e2"));
    r.deliver(&event("e3"));
    assert_eq!(r.sends(t).len(), 2, "e2 and e3 wait behind e1");

    // A short send: the driver resumes it; the queue must still wait.
    assert!(r.core.on_sent(t, Ok(5), false, r.now));
    assert_eq!(r.sends(t).len(), 2, "queue sent while e1 was in flight");
    assert!(r.core.on_sent(t, Ok(frame_len("e1") - 5), true, r.now));
    let queued = frame_len("e2") + frame_len("e3");
    assert_eq!(
        r.sends(t)[2..],
        [(queued, queued)],
        "one send for the queue"
    );
    assert_eq!(r.ids(t), ids(&["e1", "e2", "e3"]));

    // Once that completes, nothing is pending: the next event goes at once.
    assert!(r.core.on_sent(t, Ok(queued), true, r.now));
    assert_eq!(r.sends(t).len(), 3);
    r.deliver(&event("e4"));
    assert_eq!(r.sends(t).len(), 4);
    assert_eq!(r.ids(t), ids(&["e1", "e2", "e3", "e4"]));
}

#[test]
fn a_short_write_keeps_order_and_flushes_on_writable() {
    let mut r = rig(&[]);
    let t = r.subscribe(GET);
    r.fake().take = Some(10);
    r.deliver(&event("e1"));
    r.deliver(&event("e2"));
    assert_eq!(r.sends(t)[1..], [(frame_len("e1"), 10)], "e2 queued behind");

    r.fake().take = None;
    r.core.on_writable(t, r.now);
    let rest = frame_len("e1") - 10 + frame_len("e2");
    assert_eq!(r.sends(t)[2..], [(rest, rest)], "one send for the queue");
    assert_eq!(r.ids(t), ids(&["e1", "e2"]));
    // Settled: a spurious readiness sends nothing, the next event goes at once.
    r.core.on_writable(t, r.now);
    assert_eq!(r.sends(t).len(), 3);
    r.deliver(&event("e3"));
    assert_eq!(r.sends(t).len(), 4);
    assert_eq!(r.ids(t), ids(&["e1", "e2", "e3"]));
}

#[test]
fn a_closing_connection_is_half_closed_only_once_its_output_is_out_readiness() {
    let mut r = rig(&[]);
    r.fake().take = Some(10);
    let t = r.connect();
    let fd = r.raw_fd(t);
    assert!(r.input(t, "GET /nope HTTP/1.1\r\n\r\n"));
    assert_eq!(r.wire(t), "HTTP/1.1 4");
    assert_eq!(r.shutdowns(fd), 0, "half-closed with the response unsent");

    r.fake().take = Some(0);
    r.core.on_writable(t, r.now);
    assert_eq!(r.shutdowns(fd), 0);

    r.fake().take = None;
    r.core.on_writable(t, r.now);
    let wire = r.wire(t);
    assert!(wire.starts_with("HTTP/1.1 404 "), "{wire}");
    assert!(wire.ends_with('}'), "the whole body: {wire}");
    assert_eq!(r.shutdowns(fd), 1);
    assert_eq!(
        r.fake().calls.last(),
        Some(&Call::ShutdownWrite(fd)),
        "half-closed after the last send"
    );

    // It lingers, then goes.
    r.tick(T0 + crate::reactor::CLOSE_LINGER_MS - 1);
    assert!(r.is_open(t));
    r.tick(T0 + crate::reactor::CLOSE_LINGER_MS);
    assert!(!r.is_open(t));
    assert_eq!(r.releases(t), 1);
    assert_eq!(r.shutdowns(fd), 1);
}

#[test]
fn a_closing_connection_is_half_closed_only_once_its_output_is_out_completion() {
    let mut r = rig(&[]);
    r.fake().completion = true;
    let t = r.connect();
    let fd = r.raw_fd(t);
    assert!(r.input(t, "GET /nope HTTP/1.1\r\n\r\n"));
    let sent = r.sends(t);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        r.shutdowns(fd),
        0,
        "half-closed with the response in flight"
    );
    assert!(r.core.on_sent(t, Ok(10), false, r.now));
    assert_eq!(r.shutdowns(fd), 0);
    assert!(r.core.on_sent(t, Ok(sent[0].0 - 10), true, r.now));
    assert_eq!(r.shutdowns(fd), 1);
    assert_eq!(r.fake().calls.last(), Some(&Call::ShutdownWrite(fd)));
    assert!(r.wire(t).starts_with("HTTP/1.1 404 "));
}

// ----- heartbeats ------------------------------------------------------------------

#[test]
fn a_heartbeat_comes_at_the_interval_never_before() {
    let mut r = rig(&[("HEARTBEAT_SECONDS", "5")]);
    // `a` streams at a whole second; `b` 1 ms later, which the core rounds
    // up to the next tenth (then the wheel to the next second).
    let a = r.subscribe(GET);
    r.now = T0 + 1;
    let b = r.subscribe(GET);

    for ms in [1_000, 2_000, 3_000, 4_000, 4_999] {
        r.tick(T0 + ms);
        assert_eq!(
            (pings(&r.wire(a)), pings(&r.wire(b))),
            (0, 0),
            "at +{ms} ms"
        );
    }
    r.tick(T0 + 5_000);
    assert_eq!(pings(&r.wire(a)), 1, "no ping at the interval");
    assert_eq!(
        pings(&r.wire(b)),
        0,
        "b pinged 4.999 s after its last write"
    );
    assert_eq!(blocks(&r.wire(a)).last(), Some(&": ping"));
    r.tick(T0 + 5_999);
    assert_eq!(pings(&r.wire(b)), 0);
    r.tick(T0 + 6_000);
    assert_eq!((pings(&r.wire(a)), pings(&r.wire(b))), (1, 1));

    // And again one interval after each ping.
    r.tick(T0 + 9_999);
    assert_eq!((pings(&r.wire(a)), pings(&r.wire(b))), (1, 1));
    r.tick(T0 + 10_000);
    assert_eq!((pings(&r.wire(a)), pings(&r.wire(b))), (2, 1));
    r.tick(T0 + 10_999);
    assert_eq!(pings(&r.wire(b)), 1);
    r.tick(T0 + 11_000);
    assert_eq!((pings(&r.wire(a)), pings(&r.wire(b))), (2, 2));
}

#[test]
fn a_write_postpones_the_heartbeat_by_a_whole_interval() {
    let mut r = rig(&[("HEARTBEAT_SECONDS", "5"), ("HEARTBEAT_MODE", "event")]);
    let t = r.subscribe(GET);
    r.now = T0 + 3_000;
    r.deliver(&event("e1"));
    r.tick(T0 + 5_000);
    r.tick(T0 + 7_999);
    assert_eq!(blocks(&r.wire(t)).len(), 2, "retry and e1 only");
    r.tick(T0 + 8_000);
    let unix_s = UNIX_MS / 1000 + 8;
    assert_eq!(
        blocks(&r.wire(t)).last().copied(),
        Some(format!("event: ping\ndata: {unix_s}").as_str())
    );
}
