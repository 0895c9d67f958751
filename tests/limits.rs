//! Connection limits (SPEC §3, §7): `RATE_LIMIT_PER_IP_PER_MIN` with
//! `RATE_LIMIT_BURST` counts `/sse` attempts per client address and answers
//! 429 with `Retry-After`; addresses are apart; `X-Forwarded-For` names the
//! client only when the peer is in `TRUSTED_PROXIES`. (`MAX_CONNECTIONS`
//! and `MAX_CONNECTIONS_PER_USER` are in errors.rs and presence.rs.)

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{jwt, Herald};
use socket2::{Domain, Socket, Type};

/// Status line and `Retry-After` of one `GET /sse` sent from `source`.
fn attempt(h: &Herald, source: &str, xff: Option<&str>) -> (u16, Option<String>) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let src: IpAddr = source.parse().expect("source address");
    socket
        .bind(&SocketAddr::new(src, 0).into())
        .expect("bind source address");
    socket.connect(&h.addr().into()).expect("connect");
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let token = jwt::user("u1");
    let xff = xff
        .map(|x| format!("X-Forwarded-For: {x}\r\n"))
        .unwrap_or_default();
    let req = format!("GET /sse?token={token} HTTP/1.1\r\nHost: x\r\n{xff}\r\n");
    stream.write_all(req.as_bytes()).expect("send");
    let mut head = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && Instant::now() < deadline {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let retry = head
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .map(str::to_string);
    (status, retry)
}

#[test]
fn rate_limit_burst_then_429_with_retry_after_per_address() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("RATE_LIMIT_PER_IP_PER_MIN", "6"),
        ("RATE_LIMIT_BURST", "3"),
    ]);
    for i in 0..3 {
        assert_eq!(
            attempt(&h, "127.0.0.1", None).0,
            200,
            "attempt {i} within the burst"
        );
    }
    let (status, retry) = attempt(&h, "127.0.0.1", None);
    assert_eq!(status, 429);
    // One token every 10 s: the next is due in at most 10 s.
    let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=10).contains(&secs), "Retry-After {secs}");
    // Another address has its own bucket.
    assert_eq!(attempt(&h, "127.0.0.2", None).0, 200);
    // Other paths are not counted: /health still answers from 127.0.0.1.
    let mut c = h.connect("/health", &[]);
    assert_eq!(c.status(), 200);
    c.wait_closed(common::EVENT_TIMEOUT);
}

#[test]
fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("RATE_LIMIT_PER_IP_PER_MIN", "1"),
        ("RATE_LIMIT_BURST", "1"),
        ("TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
    ]);
    // Behind the trusted proxy 127.0.0.1 (and a trusted hop 10.0.0.5), the
    // client is 198.51.100.1: its bucket, not the proxy's.
    let via = Some("198.51.100.1, 10.0.0.5");
    assert_eq!(attempt(&h, "127.0.0.1", via).0, 200);
    assert_eq!(attempt(&h, "127.0.0.1", via).0, 429);
    assert_eq!(attempt(&h, "127.0.0.1", Some("198.51.100.2")).0, 200);
    // From an untrusted peer the header is ignored: a forged client address
    // does not escape the peer's own bucket.
    assert_eq!(attempt(&h, "127.0.0.3", Some("203.0.113.1")).0, 200);
    assert_eq!(attempt(&h, "127.0.0.3", Some("203.0.113.2")).0, 429);
}

/// A small open-file limit caps MAX_CONNECTIONS (said at start-up): the
/// clients beyond it are answered 503 `server_full` with `Retry-After` at
/// once instead of waiting for a descriptor, and are served again as soon as
/// others leave (issue #11).
#[test]
fn clients_beyond_the_descriptor_budget_get_503_at_once() {
    let h = Herald::start(&[
        (common::NOFILE, "48"),
        // Set above what the limit allows (unset, it is that figure).
        ("MAX_CONNECTIONS", "1000"),
        ("ALLOW_ANONYMOUS", "true"),
        ("HEARTBEAT_SECONDS", "0"),
        ("WORKERS", "1"),
        ("LOG_LEVEL", "info"),
    ]);
    assert!(
        h.log().contains("capped at 36"),
        "no start-up line about the cap: {}",
        h.log()
    );
    let open = |h: &Herald| -> (std::net::TcpStream, String) {
        let mut s = common::connect(h.addr()).expect("connect");
        s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut head = [0u8; 512];
        let n = s.read(&mut head).unwrap_or(0);
        (s, String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let mut served = Vec::new();
    for i in 0..36 {
        let (s, head) = open(&h);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "client {i}: {head:?}");
        served.push(s);
    }
    let t = Instant::now();
    for i in 0..10 {
        let (_, head) = open(&h);
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable"),
            "client {} beyond the budget: {head:?}",
            36 + i
        );
        assert!(head.contains("Retry-After: "), "{head:?}");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // Freed descriptors serve new clients again.
    served.truncate(26);
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..10 {
        let (s, head) = open(&h);
        assert!(
            head.starts_with("HTTP/1.1 200 OK"),
            "client {i} after: {head:?}"
        );
        served.push(s);
    }
}

/// Issue #13: MAX_CONNECTIONS unset is what the host holds, said at
/// start-up: here the open-file limit decides (48 less the reserve).
#[test]
fn unset_max_connections_is_what_the_host_holds() {
    let h = Herald::start(&[
        (common::NOFILE, "48"),
        ("ALLOW_ANONYMOUS", "true"),
        ("WORKERS", "1"),
        ("LOG_LEVEL", "info"),
    ]);
    let log = h.log();
    assert!(
        log.contains("MAX_CONNECTIONS unset: 36 = min(36 from the open-file limit"),
        "{log}"
    );
    assert!(!log.contains("capped at"), "{log}");
}
