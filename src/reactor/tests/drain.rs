//! The drain at SIGTERM: final `retry:` values that put the reconnects
//! evenly over `DRAIN_SPREAD_MS`, closes over its first half, every stream
//! counted as `drained`, events delivered until a stream's turn comes.

use super::super::stats::Why;
use super::*;

/// The final `retry:` of a wire (the last `retry:` line, if it is not the
/// stream's first).
fn final_retry(wire: &str) -> Option<u64> {
    let retries: Vec<u64> = wire
        .lines()
        .filter_map(|l| l.strip_prefix("retry: "))
        .map(|v| v.parse().expect("a number"))
        .collect();
    (retries.len() == 2).then(|| retries[1])
}

/// Begins the drain the way a shutdown message does.
fn sigterm(r: &mut Rig) {
    for inbox in r.hub.inboxes() {
        inbox.shutdown();
    }
    while r.core.drain_inbox(r.now) {}
    assert!(r.core.draining());
}

/// Steps the drain in turns of at most 10 ms until the core stops or the
/// clock reaches `until`; records in `closed` when (ms after `origin`)
/// each token was found closed.
fn run_drain(r: &mut Rig, tokens: &[u64], origin: u64, until: u64, closed: &mut HashMap<u64, u64>) {
    loop {
        r.core.drain_step(r.now);
        for &t in tokens {
            if !r.is_open(t) {
                closed.entry(t).or_insert(r.now - origin);
            }
        }
        if r.core.stopping() || r.now >= until {
            return;
        }
        let next = r.core.next_timeout(r.now).clamp(1, 10);
        r.tick((r.now + next).min(until));
    }
}

#[test]
fn reconnects_are_spread_evenly_over_the_spread() {
    let mut r = rig(&[("DRAIN_SPREAD_MS", "2000"), ("SHUTDOWN_TIMEOUT_MS", "3000")]);
    let tokens: Vec<u64> = (0..40).map(|_| r.subscribe(GET)).collect();
    sigterm(&mut r);
    let origin = r.now;
    let mut closed = HashMap::new();
    run_drain(&mut r, &tokens, origin, origin + 500, &mut closed);
    // Half the streams end in the first quarter; an event published then
    // reaches the others.
    let open: Vec<u64> = tokens.iter().copied().filter(|&t| r.is_open(t)).collect();
    assert_eq!(open.len(), 20, "{} closed", closed.len());
    r.deliver(&event("late"));
    for &t in &open {
        assert_eq!(r.ids(t), ids(&["late"]));
    }
    run_drain(&mut r, &tokens, origin, origin + 3000, &mut closed);
    assert!(r.core.stopping(), "the drain did not end");
    assert!(
        r.now - origin <= 1010,
        "the drain took {} ms",
        r.now - origin
    );
    let mut back = Vec::new();
    for &t in &tokens {
        let wire = r.wire(t);
        let retry = final_retry(&wire).unwrap_or_else(|| panic!("no final retry: {wire:?}"));
        let at = closed[&t];
        assert!(at <= 1000, "closed after half the spread: {at} ms");
        back.push(at + retry);
    }
    back.sort_unstable();
    // Stream k of 40 is due back at 2000·(2k+1)/80 ms: 25, 75, …, 1975.
    for (k, b) in back.iter().enumerate() {
        let due = 2000 * (2 * k as u64 + 1) / 80;
        assert!(
            b.abs_diff(due) <= 10,
            "stream {k} back at {b} ms, due {due}"
        );
    }
    assert_eq!(r.stats.disconnects(Why::Drained), 40);
    assert_eq!(r.stats.disconnects(Why::Shutdown), 0);
}

#[test]
fn no_spread_closes_every_stream_at_once_with_a_bare_eof() {
    let mut r = rig(&[("DRAIN_SPREAD_MS", "0")]);
    let tokens: Vec<u64> = (0..3000).map(|_| r.subscribe(GET)).collect();
    sigterm(&mut r);
    // A batch per turn, every turn at once.
    r.core.drain_step(r.now);
    assert_eq!(r.stats.disconnects(Why::Drained), 1024);
    assert_eq!(r.core.next_timeout(r.now), 0);
    let (origin, mut closed) = (r.now, HashMap::new());
    run_drain(&mut r, &tokens, origin, origin + 100, &mut closed);
    assert!(r.core.stopping());
    // Three turns of 1024 (the rig moves the clock 1 ms a turn at least).
    let last = closed.values().max().copied();
    assert_eq!(closed.len(), 3000);
    assert!(last <= Some(2), "the last closed at {last:?} ms");
    for &t in &tokens[..10] {
        assert_eq!(final_retry(&r.wire(t)), None);
    }
    assert_eq!(r.stats.disconnects(Why::Drained), 3000);
}

/// Under a completion driver (io_uring) the final `retry:` is in flight
/// when the stream's turn comes: the stream is closed only once the send
/// completes, so the line is never cancelled by the close.
#[test]
fn a_stream_closes_only_once_its_final_retry_is_sent() {
    let mut r = rig(&[("DRAIN_SPREAD_MS", "1000")]);
    r.fake().completion = true;
    let t = r.subscribe(GET);
    let head = r.sends(t)[0].0;
    assert!(r.core.on_sent(t, Ok(head), true, r.now));
    sigterm(&mut r);
    let (origin, mut closed) = (r.now, HashMap::new());
    run_drain(&mut r, &[t], origin, origin + 400, &mut closed);
    let sends = r.sends(t);
    assert_eq!(sends.len(), 2, "the final retry: was not sent");
    assert!(r.is_open(t), "closed with its final retry: in flight");
    assert!(!r.core.stopping());
    let retry = final_retry(&r.wire(t)).expect("a final retry");
    assert!(retry <= 1000, "{retry}");
    // The send completes: the next step closes the stream, and the drain
    // ends at half the spread.
    assert!(r.core.on_sent(t, Ok(sends[1].0), true, r.now));
    run_drain(&mut r, &[t], origin, origin + 1000, &mut closed);
    assert!(!r.is_open(t));
    assert!(r.core.stopping());
    assert_eq!(r.stats.disconnects(Why::Drained), 1);
}
