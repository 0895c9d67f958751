//! Checks of the test harness itself (tests/common): the SSE parser against
//! a scripted in-process server, and the throwaway Redis server with its
//! RESP client (these fail, loudly, when `redis-server` is not installed).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{RedisServer, Resp, SseClient, SseItem};

/// Serves one connection: reads the request head, then writes `chunks` with
/// small pauses (so lines are split across reads), then closes.
fn scripted_server(chunks: Vec<&'static [u8]>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&b[..n]),
            }
        }
        for c in chunks {
            if s.write_all(c).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    addr
}

#[test]
fn sse_parser_follows_whatwg() {
    let addr = scripted_server(vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\n\r\n",
        b"retry: 1500\n\n",
        b": hello comment\n",
        b"id: 1\nevent: greet\ndata: hello\ndata: wor",
        b"ld\n\n",
        // CRLF and CR line endings, a CR split from its LF across writes.
        b"id: 2\r\ndata: a\r",
        b"\ndata: b\rdata: c\r\r",
        // No space after the colon; a field without colon; unknown field.
        b"data:x\ndata\nfoo: bar\n\n",
        // An id with NUL is ignored; a block without data dispatches nothing.
        b"id: bad\0id\nevent: lonely\n\n",
        b"data: last\n\n",
    ]);
    let mut c = SseClient::connect(addr, "/sse", &[]).unwrap();
    assert_eq!(c.status(), 200);
    assert_eq!(c.header("x-a"), Some("1"));
    assert_eq!(
        c.next_item(Duration::from_secs(5)),
        Some(SseItem::Comment("hello comment".into()))
    );
    assert_eq!(c.retry(), Some(1500));
    assert_eq!(c.first_line(), Some("retry: 1500"));
    let e = c.expect_event();
    assert_eq!(
        (e.id.as_deref(), e.event.as_deref(), e.data.as_str()),
        (Some("1"), Some("greet"), "hello\nworld")
    );
    assert_eq!(
        e.raw,
        ["id: 1", "event: greet", "data: hello", "data: world"]
    );
    let e = c.expect_event();
    assert_eq!((e.id.as_deref(), e.data.as_str()), (Some("2"), "a\nb\nc"));
    let e = c.expect_event();
    assert_eq!(e.data, "x\n");
    assert_eq!(e.id, None);
    let e = c.expect_event();
    assert_eq!(e.data, "last");
    assert_eq!(e.event, None, "event type does not leak across blocks");
    assert!(c.next_event(Duration::from_secs(5)).is_none());
    assert!(c.is_eof());
}

#[test]
fn error_response_body_is_read() {
    let addr = scripted_server(vec![
        b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/problem+json\r\n\
          Content-Length: 73\r\nConnection: close\r\n\r\n",
        b"{\"type\":\"missing_token\",\"title\":\"Unauthorized\",\"status\":401,\"detail\":\"x\"}",
    ]);
    let mut c = SseClient::connect(addr, "/sse", &[]).unwrap();
    assert_eq!(c.status(), 401);
    common::assert_problem(c.response(), 401, "missing_token", "Unauthorized");
    assert!(c.wait_closed(Duration::from_secs(5)));
}

#[test]
fn base64url_matches_rfc_4648() {
    use common::jwt::b64url;
    assert_eq!(b64url(b""), "");
    assert_eq!(b64url(b"f"), "Zg");
    assert_eq!(b64url(b"fo"), "Zm8");
    assert_eq!(b64url(b"foo"), "Zm9v");
    assert_eq!(b64url(b"foob"), "Zm9vYg");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
}

#[test]
fn redis_server_start_stop_restart() {
    let mut r = RedisServer::start();
    assert!(r.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(r.cmd(&["SET", "k", "v"]), Resp::Simple("OK".into()));
    assert_eq!(r.cmd(&["GET", "k"]).as_str().as_deref(), Some("v"));
    assert_eq!(r.publish("herald", "{}"), 0);
    let id = r.xadd("s", r#"{"message":"m"}"#);
    assert!(id.contains('-'), "{id}");
    match r.cmd(&["XRANGE", "s", "-", "+"]) {
        Resp::Array(Some(entries)) => assert_eq!(entries.len(), 1),
        other => panic!("XRANGE: {other:?}"),
    }

    // A subscriber on a raw connection counts for PUBSUB NUMSUB.
    let mut sub = common::RedisConn::open(r.addr()).unwrap();
    sub.cmd(&["SUBSCRIBE", "herald"]).unwrap();
    assert!(r.wait_subscribers("herald", Duration::from_secs(5)));
    assert_eq!(r.publish("herald", "hi"), 1);

    let port = r.port();
    r.stop();
    assert!(!r.is_running());
    assert!(common::redis_cmd(r.addr(), &["PING"]).is_err(), "still up");
    r.restart();
    assert_eq!(r.port(), port);
    assert_eq!(r.cmd(&["PING"]).as_str().as_deref(), Some("PONG"));
    assert_eq!(r.cmd(&["GET", "k"]), Resp::Bulk(None), "no persistence");
}
