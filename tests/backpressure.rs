//! Slow listeners (SPEC §2): a listener that never reads is cut once its
//! unsent bytes pass `MAX_PENDING_BYTES`, while a listener that reads gets
//! every event, in order, undisturbed.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{jwt, Herald};
use serde_json::json;

/// Payload size, and events per publish.
const PAYLOAD: usize = 16 * 1024;
/// Three 16 KiB events per publish stay under MAX_PENDING_BYTES (64 KiB) for
/// the reader even if its socket buffer took nothing at that moment.
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
