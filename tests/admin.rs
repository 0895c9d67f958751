//! The admin listener under hostile input (issue #11, SPEC §4 and §7):
//! stalled strangers cannot hold it (heads answered 408 under
//! `HEADER_TIMEOUT_MS`, `/health` and authorized publishes served
//! meanwhile); tokens are checked on the head; bodies are capped by
//! `PUBLISH_MAX_BYTES` and read as they arrive; batches by
//! `PUBLISH_MAX_BATCH`; `Content-Length` is strict; `HEAD` gets no body.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{http_exchange, Herald, HttpResponse, EVENT_TIMEOUT};

const PUBLISH: &str = "publish-secret";

fn herald(extra: &[(&str, &str)]) -> Herald {
    let mut envs = vec![
        ("JWT_SECRET", common::jwt::SECRET),
        ("PUBLISH_TOKEN", PUBLISH),
        ("ADMIN_TOKEN", "admin-secret"),
        ("HEADER_TIMEOUT_MS", "700"),
    ];
    envs.extend_from_slice(extra);
    Herald::start(&envs)
}

fn send(h: &Herald, raw: &[u8]) -> HttpResponse {
    http_exchange(h.admin_addr(), raw, EVENT_TIMEOUT).expect("admin answered")
}

fn publish(h: &Herald, body: &str) -> HttpResponse {
    let raw = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {PUBLISH}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    send(h, raw.as_bytes())
}

/// Reads what the server sends until it closes (bounded).
fn read_all(mut s: TcpStream, limit: Duration) -> String {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn stalled_strangers_cannot_hold_the_admin_listener() {
    // Held by the stalled heads, /health would wait for their timeout (4 s);
    // served beside them, it answers at once (the bound leaves room for a
    // loaded 2-core box).
    let h = herald(&[("HEADER_TIMEOUT_MS", "4000")]);
    // 200 strangers start a publish and stall (more than any slot count).
    let stalled: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = common::connect(h.admin_addr()).unwrap();
            s.write_all(b"POST /publish HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let health = send(&h, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(health.status, 200);
    let ok = publish(&h, r#"{"message":"through"}"#);
    assert_eq!(ok.status, 202, "{}", ok.body_text());
    assert!(
        t.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t.elapsed()
    );
    // The stalled heads are answered 408 once HEADER_TIMEOUT_MS passes.
    let answered = stalled
        .into_iter()
        .take(5)
        .map(|s| read_all(s, Duration::from_secs(10)))
        .collect::<Vec<_>>();
    for a in answered {
        assert!(a.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{a:?}");
    }
}

#[test]
fn tokens_are_checked_on_the_head_and_bodies_are_capped() {
    let h = herald(&[("PUBLISH_MAX_BATCH", "2")]);
    // A wrong token with a body that never comes: 401 at once, not a wait.
    let mut s = common::connect(h.admin_addr()).unwrap();
    s.write_all(
        b"POST /publish HTTP/1.1\r\nAuthorization: Bearer nope\r\nContent-Length: 100000\r\n\r\n{",
    )
    .unwrap();
    let a = read_all(s, Duration::from_secs(3));
    assert!(a.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{a:?}");

    // A declared body over PUBLISH_MAX_BYTES: 413 on the head.
    let mut s = common::connect(h.admin_addr()).unwrap();
    let raw = format!(
        "POST /publish HTTP/1.1\r\nAuthorization: Bearer {PUBLISH}\r\nContent-Length: {}\r\n\r\nxx",
        16 * 1024 * 1024
    );
    s.write_all(raw.as_bytes()).unwrap();
    let a = read_all(s, Duration::from_secs(3));
    assert!(a.starts_with("HTTP/1.1 413 Content Too Large\r\n"), "{a:?}");
    assert!(a.contains("PUBLISH_MAX_BYTES"), "{a:?}");

    // A batch over PUBLISH_MAX_BATCH: 400, nothing published.
    let r = publish(&h, r#"[{"message":"a"},{"message":"b"},{"message":"c"}]"#);
    assert_eq!(r.status, 400);
    assert!(
        r.body_text().contains("PUBLISH_MAX_BATCH"),
        "{}",
        r.body_text()
    );
    assert_eq!(
        publish(&h, r#"[{"message":"a"},{"message":"b"}]"#).status,
        202
    );

    // Content-Length: digits only, once.
    for cl in [
        "Content-Length: +2\r\n",
        "Content-Length: 2\r\nContent-Length: 3\r\n",
    ] {
        let raw =
            format!("POST /publish HTTP/1.1\r\nAuthorization: Bearer {PUBLISH}\r\n{cl}\r\n{{}}");
        assert_eq!(send(&h, raw.as_bytes()).status, 400, "{cl:?}");
    }
}

#[test]
fn declared_bodies_reserve_nothing_up_front() {
    let h = herald(&[("PUBLISH_MAX_BYTES", "16777216")]);
    let pid = h.pid().unwrap();
    let before = rss_kb(pid);
    // 64 publishes each declaring 16 MiB and sending 10 bytes.
    let open: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = common::connect(h.admin_addr()).unwrap();
            let raw = format!(
                "POST /publish HTTP/1.1\r\nAuthorization: Bearer {PUBLISH}\r\n\
                 Content-Length: 16777216\r\n\r\n0123456789"
            );
            s.write_all(raw.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let grown = rss_kb(pid).saturating_sub(before);
    assert!(
        grown < 16 * 1024,
        "RSS grew {grown} KiB for 64 declared bodies"
    );
    // Meanwhile the listener still answers.
    assert_eq!(send(&h, b"GET /health HTTP/1.1\r\n\r\n").status, 200);
    drop(open);
}

#[test]
fn head_requests_get_no_body_and_absolute_targets_are_read() {
    let h = herald(&[]);
    for addr in [h.addr(), h.admin_addr()] {
        let mut s = common::connect(addr).unwrap();
        s.write_all(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let a = read_all(s, Duration::from_secs(3));
        let (head, body) = a.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{a:?}");
        assert!(
            head.to_ascii_lowercase().contains("content-length: "),
            "{head}"
        );
        assert_eq!(body, "", "HEAD got a body");
    }
    let r = http_exchange(
        h.addr(),
        b"GET http://herald.example/health HTTP/1.1\r\nHost: herald.example\r\n\r\n",
        EVENT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn at_a_small_fd_limit_the_admin_listener_stays_up_and_quiet() {
    // 200 descriptors: the admin listener keeps at most 25 heads, so 300
    // stalled strangers cannot run the process out of descriptors, /health
    // answers throughout, and nothing floods the log.
    let h = herald(&[(common::NOFILE, "200"), ("LOG_LEVEL", "info")]);
    let lines_before = h.log().lines().count();
    let stalled: Vec<TcpStream> = (0..300)
        .filter_map(|_| {
            let mut s = common::connect(h.admin_addr()).ok()?;
            s.write_all(b"GET /stats HTTP/1.1\r\n").ok()?;
            Some(s)
        })
        .collect();
    assert!(stalled.len() > 250, "only {} connected", stalled.len());
    for _ in 0..5 {
        let t = Instant::now();
        let r = send(&h, b"GET /health HTTP/1.1\r\n\r\n");
        assert_eq!(r.status, 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    let ok = publish(&h, r#"{"message":"still"}"#);
    assert_eq!(ok.status, 202);
    let logged = h.log().lines().count() - lines_before;
    assert!(logged < 10, "{logged} log lines:\n{}", h.log());
    drop(stalled);
}

#[test]
fn one_publish_cannot_cut_a_listener_that_keeps_up() {
    let h = herald(&[("MAX_PENDING_BYTES", "65536"), ("ALLOW_ANONYMOUS", "true")]);
    let mut listener = h.sse("/sse", &[]);
    let msg = "x".repeat(90);
    let batch = |n: usize| {
        let events: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"event":"bulk","message":"{i}:{msg}"}}"#))
            .collect();
        format!("[{}]", events.join(","))
    };
    // ~110 KB of broadcasts would land on the listener at once, over half of
    // MAX_PENDING_BYTES: refused whole, before anyone is sent anything.
    let r = publish(&h, &batch(1000));
    assert_eq!(r.status, 400, "{}", r.body_text());
    assert!(
        r.body_text().contains("MAX_PENDING_BYTES"),
        "{}",
        r.body_text()
    );
    // A batch within it is delivered whole to the listener, which stays.
    assert_eq!(publish(&h, &batch(200)).status, 202);
    for i in 0..200 {
        let ev = listener.expect_event();
        assert!(ev.data.starts_with(&format!("{i}:")), "{ev:?}");
    }
    assert_eq!(publish(&h, r#"{"message":"after"}"#).status, 202);
    assert_eq!(listener.expect_event().data, "after");
}
