//! The drain and the restart (SPEC §8, README "Restart"): SIGTERM closes
//! the listener first, tells every stream a final `retry:` so that the
//! reconnects spread over `DRAIN_SPREAD_MS`, closes them within
//! `SHUTDOWN_TIMEOUT_MS`; a new herald on the same `SO_REUSEPORT` port takes
//! over with no refused connection and, in streams mode, no lost event.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Herald, RedisServer, SseItem};

/// Reads a stream to its end; returns its events' data, the last event id
/// and when it ended.
fn read_to_end(
    c: &mut common::SseClient,
    limit: Duration,
) -> (Vec<String>, Option<String>, Instant) {
    let deadline = Instant::now() + limit;
    let (mut data, mut last_id) = (Vec::new(), None);
    while let Some(item) = c.next_item(deadline.saturating_duration_since(Instant::now())) {
        if let SseItem::Event(e) = item {
            data.push(e.data);
            last_id = e.id.or(last_id);
        }
    }
    assert!(c.is_eof(), "the stream was not closed within {limit:?}");
    (data, last_id, Instant::now())
}

#[test]
fn sigterm_stops_accepting_then_spreads_the_reconnects_over_the_spread() {
    let mut h = Herald::start(&[
        ("ALLOW_ANONYMOUS", "true"),
        ("DRAIN_SPREAD_MS", "2000"),
        ("SHUTDOWN_TIMEOUT_MS", "3000"),
    ]);
    let mut clients: Vec<_> = (0..30).map(|_| h.sse("/sse", &[])).collect();
    let t0 = Instant::now();
    h.sigterm();
    // The listener closes first: new connections are refused (no other
    // process on this port) while the streams are still open.
    let deadline = t0 + Duration::from_millis(500);
    while common::connect(h.addr()).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 500 ms after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "the drain ended early"
    );
    let mut back_ms = Vec::new();
    for c in &mut clients {
        let (_, _, ended) = read_to_end(c, Duration::from_secs(5));
        let closed = ended.duration_since(t0).as_millis() as u64;
        assert!(closed <= 1000 + 300, "closed {closed} ms after SIGTERM");
        let retry = c.retry().expect("a retry");
        assert!(retry <= 2000, "final retry: {retry}");
        back_ms.push(closed + retry);
    }
    let status = h.wait_exit(Duration::from_secs(4)).expect("exit");
    assert_eq!(status.code(), Some(0), "{}", h.log());
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "exit after {:?}",
        t0.elapsed()
    );
    // Where an EventSource would come back: spread over the 2 s, not a
    // wave (without the drain all 30 come back at once, 3000 ms after EOF).
    back_ms.sort_unstable();
    let gaps: Vec<u64> = std::iter::once(0)
        .chain(back_ms.iter().copied())
        .chain(std::iter::once(2000))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    let widest = gaps.iter().max().copied().unwrap_or(0);
    assert!(
        widest <= 400 && back_ms.last() <= Some(&(2000 + 300)),
        "reconnects not spread over 2000 ms: {back_ms:?}"
    );
}

#[test]
fn restart_on_the_same_port_refuses_no_connection_and_loses_no_event() {
    let redis = RedisServer::start();
    let url = redis.url();
    let listen = common::free_addr().to_string();
    let envs = |listen: &str| {
        vec![
            ("LISTEN_ADDR", listen.to_string()),
            ("ALLOW_ANONYMOUS", "true".to_string()),
            ("REDIS_URL", url.clone()),
            ("REDIS_STREAM", "restart".to_string()),
            ("DRAIN_SPREAD_MS", "1000".to_string()),
            ("SHUTDOWN_TIMEOUT_MS", "3000".to_string()),
        ]
    };
    let start = |envs: &[(&str, String)]| {
        let pairs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Herald::start(&pairs)
    };
    let mut old = start(&envs(&listen));
    let addr = old.addr();
    let mut listener = old.sse("/sse", &[]);

    // Events throughout, numbered, through the Redis stream.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (stop, published, raddr) = (stop.clone(), published.clone(), redis.addr());
        std::thread::spawn(move || {
            let mut conn = common::RedisConn::open(raddr).expect("redis");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let env = format!(r#"{{"message":"{n}"}}"#);
                conn.cmd(&["XADD", "restart", "*", "envelope", &env])
                    .expect("XADD");
                published.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // A client connecting throughout: every attempt must be answered.
    let connector = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
                match common::http_exchange(addr, req, Duration::from_secs(2)) {
                    Ok(r) if r.status == 200 => ok += 1,
                    Ok(r) => failed.push(format!("HTTP {}", r.status)),
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    std::thread::sleep(Duration::from_millis(300));

    // The procedure: start the new one on the same port, wait for its
    // /health (Herald::start does), then SIGTERM the old one.
    let new = start(&envs(&listen));
    std::thread::sleep(Duration::from_millis(300));
    old.sigterm();
    let (mut seen, last_id, _) = read_to_end(&mut listener, Duration::from_secs(5));
    let retry = listener.retry().expect("retry");
    assert!(retry <= 1000, "final retry {retry}");
    std::thread::sleep(Duration::from_millis(retry));
    let last_id = last_id.expect("an event id before the drain");
    let mut again = common::SseClient::open(addr, "/sse", &[("Last-Event-ID", &last_id)]);
    let status = old.wait_exit(Duration::from_secs(5)).expect("old exits");
    assert_eq!(status.code(), Some(0), "{}", old.log());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    let (ok, failed) = connector.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} refused: {failed:?}",
        failed.len(),
        ok + failed.len() as u64
    );
    assert!(ok >= 50, "only {ok} connections tried");

    // Every event, once, across the two streams.
    let last = published.load(Ordering::Relaxed);
    while seen.last().map(|d| d.parse::<u64>().unwrap()) != Some(last) {
        let e = again.next_event(Duration::from_secs(5));
        let e =
            e.unwrap_or_else(|| panic!("event {last} never came; seen up to {:?}", seen.last()));
        if e.event.as_deref() != Some("ping") {
            seen.push(e.data);
        }
    }
    let numbers: Vec<u64> = seen.iter().map(|d| d.parse().unwrap()).collect();
    let first = numbers[0];
    let expected: Vec<u64> = (first..=last).collect();
    assert_eq!(
        numbers, expected,
        "lost or repeated events across the restart"
    );
    drop(new);
}
