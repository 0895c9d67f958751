//! Slow listeners (SPEC §2): a listener that never reads is cut once its
//! unsent bytes pass `MAX_PENDING_BYTES`, while a listener that reads gets
//! every event, in order, undisturbed.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{jwt, Herald};
use serde_json::json;

/// Payload size, and events per publish.
const PAYLOAD: usize = 8 * 1024;
/// Three 8 KiB events per publish stay under half of MAX_PENDING_BYTES
/// (64 KiB), what one publish may put on one listener at once.
const PER_PUBLISH: usize = 3;

#[test]
fn non_reader_is_cut_and_reader_gets_everything_in_order() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("MAX_PENDING_BYTES", "65536"),
        ("HEARTBEAT_SECONDS", "0"),
    ]);
    // Enough bytes to overflow what the kernel can hold for the non-reader
    // (herald's send buffer, autotuned up to tcp_wmem max, plus the small
    // receive buffer) at least twice over: 600 events on a default box.
    let events = ((2 * common::tcp_wmem_max() + (2 << 20)) / PAYLOAD).max(600);
    // The non-reader: opened, head read, then never read again until the end.
    let stream = common::connect_small_rcvbuf(h.addr(), 16 * 1024).unwrap();
    let mut stalled =
        common::SseClient::connect_on(stream, &format!("/sse?token={}", jwt::user("stalled")), &[])
            .unwrap();
    assert_eq!(stalled.status(), 200);
    let mut reader = h.sse_with_token(&jwt::user("reader"));

    // The reader runs on its own thread and reports each event's index.
    let (tx, rx) = mpsc::channel::<Result<usize, String>>();
    let reader_thread = std::thread::spawn(move || {
        let mut last_id = None;
        for want in 0..events {
            let Some(ev) = reader.next_event(common::EVENT_TIMEOUT) else {
                let _ = tx.send(Err(format!(
                    "reader: no event #{want} (closed: {})",
                    reader.is_eof()
                )));
                return;
            };
            let (index, body) = ev.data.split_once(':').unwrap_or(("", ""));
            if index != want.to_string() || body.len() != PAYLOAD - 8 {
                let _ = tx.send(Err(format!(
                    "reader: event #{want} is {index:?} ({} bytes)",
                    body.len()
                )));
                return;
            }
            let id = ev.server_id();
            if last_id.is_some_and(|l| l >= id) {
                let _ = tx.send(Err(format!("reader: id {id:?} after {last_id:?}")));
                return;
            }
            last_id = Some(id);
            if tx.send(Ok(want)).is_err() {
                return;
            }
        }
    });

    let filler = "x".repeat(PAYLOAD - 8);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sent = 0;
    while sent < events {
        let n = PER_PUBLISH.min(events - sent);
        let batch: Vec<serde_json::Value> = (sent..sent + n)
            .map(|i| json!({"event": "bulk", "message": format!("{i}:{filler}")}))
            .collect();
        assert_eq!(h.publish_json(&serde_json::Value::Array(batch)), n as u64);
        sent += n;
        // Lockstep: wait until the reader has all of them, so that the
        // reader is never the slow one.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(common::EVENT_TIMEOUT)) {
                Ok(Ok(i)) if i + 1 == sent => break,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => panic!("reader stalled at {sent} events sent"),
            }
        }
    }
    reader_thread.join().expect("reader thread");

    // The stalled listener was cut: draining what the kernel buffered ends
    // in EOF (or a reset), not in a live stream.
    let drained = stalled.drain_until_closed(Duration::from_secs(30));
    let total = events * PAYLOAD;
    let drained = drained.unwrap_or_else(|| {
        panic!(
            "a listener that never read {} MiB was not disconnected",
            total / (1024 * 1024)
        )
    });
    assert!(
        drained < total / 2,
        "the stalled listener was sent {drained} of {total} bytes before it was cut"
    );
    eprintln!("stalled listener got {drained} bytes before it was cut");

    // New listeners are served as usual afterwards.
    let mut fresh = h.sse_with_token(&jwt::user("fresh"));
    h.publish_ok(r#"{"message":"after"}"#);
    // Bulk events its reactor had not yet taken in when it was accepted may
    // come first.
    loop {
        let ev = fresh.expect_event();
        if ev.data == "after" {
            break;
        }
        assert_eq!(ev.event.as_deref(), Some("bulk"), "fresh got {:?}", ev.id);
    }
}

#[test]
fn stalled_listener_does_not_delay_others() {
    // Several stalled listeners on both reactors; a reading listener still
    // gets each event promptly (bounded by the generous event timeout).
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("MAX_PENDING_BYTES", "65536"),
        ("HEARTBEAT_SECONDS", "0"),
    ]);
    let stalled: Vec<_> = (0..4)
        .map(|i| h.sse_with_token(&jwt::user(&format!("stalled{i}"))))
        .collect();
    let mut reader = h.sse_with_token(&jwt::user("reader"));
    // 30 KiB: under the largest event herald accepts (half of
    // MAX_PENDING_BYTES), so 100 of them overflow every stalled listener.
    let filler = "y".repeat(30 * 1024);
    for i in 0..100 {
        h.publish_json(&json!({"message": format!("{i}:{filler}")}));
        let ev = reader.expect_event();
        assert!(
            ev.data.starts_with(&format!("{i}:")),
            "event {i} out of order"
        );
    }
    drop(stalled);
}

/// The server side's send queue (`tx_queue` in /proc/net/tcp) of the
/// connection from local port `client` to herald's `server` port.
fn server_tx_queue(server: u16, client: u16) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        if port(f[1])? != server || port(f[2])? != client {
            return None;
        }
        usize::from_str_radix(f[4].split(':').next()?, 16).ok()
    })
}

#[test]
fn a_stalled_listeners_kernel_queue_is_bounded_and_its_cut_resets() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("MAX_PENDING_BYTES", "65536"),
        ("HEARTBEAT_SECONDS", "0"),
    ]);
    let stream = common::connect(h.addr()).unwrap();
    let client_port = stream.local_addr().unwrap().port();
    let mut listener =
        common::SseClient::connect_on(stream, &format!("/sse?token={}", jwt::user("l")), &[])
            .unwrap();
    assert_eq!(listener.status(), 200);
    let filler = "x".repeat(4096);
    let publish = |i: usize| {
        h.publish_json(&json!({"event": "bulk", "message": format!("{i}:{filler}")}));
    };
    // First it reads at full speed (the connection's window and, without a
    // fixed send buffer, the kernel's send queue grow)...
    for i in 0..500 {
        publish(i);
        let ev = listener.expect_event();
        assert!(ev.data.starts_with(&format!("{i}:")));
    }
    // ...then it stops reading. Publish until herald cuts it, watching how
    // much the kernel holds for it on herald's side.
    let mut most = 0;
    let mut cut = false;
    for i in 500..5000 {
        publish(i);
        match server_tx_queue(h.addr().port(), client_port) {
            Some(q) => most = most.max(q),
            None => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "never cut");
    eprintln!("the kernel held at most {most} bytes for the stalled listener");
    // MAX_PENDING_BYTES bounds the kernel's share too (autotuning would let
    // it grow towards tcp_wmem's maximum, megabytes).
    assert!(
        most <= 65536,
        "the kernel held {most} bytes for a stalled listener"
    );
    assert!(
        most > 0,
        "nothing was ever queued: the test measured nothing"
    );
    // Cut with a reset: the queued bytes were dropped, not left to an
    // orphaned connection that keeps trying to deliver them.
    let mut buf = [0u8; 65536];
    let mut raw = listener.stream();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let end = loop {
        match std::io::Read::read(&mut raw, &mut buf) {
            Ok(0) => break "eof".to_string(),
            Ok(_) => continue,
            Err(e) => break format!("{:?}", e.kind()),
        }
    };
    assert_eq!(end, "ConnectionReset", "the cut was not abortive");
}
