//! Every refusal of SPEC §3 that the core serves: status, reason phrase,
//! `application/problem+json`, `type`/`title`/`status`/`detail`, extra
//! headers (`Allow`, `Retry-After`), and that the connection is closed.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{assert_problem, http_exchange, jwt, Herald, SseClient, EVENT_TIMEOUT};
use serde_json::json;

fn herald() -> Herald {
    Herald::start(&[("JWT_SECRET", jwt::SECRET)])
}

/// Sends `raw` to the public listener and returns the answer; asserts the
/// server then closes the connection.
fn raw(h: &Herald, raw: &[u8]) -> common::HttpResponse {
    let mut c = SseClient::connect_raw(h.addr(), raw)
        .unwrap_or_else(|e| panic!("request {:?}: {e}", String::from_utf8_lossy(raw)));
    assert_ne!(
        c.status(),
        200,
        "{:?} was accepted",
        String::from_utf8_lossy(raw)
    );
    assert!(
        c.wait_closed(EVENT_TIMEOUT),
        "connection not closed after {}",
        c.status()
    );
    c.response().clone()
}

fn assert_431(r: &common::HttpResponse) {
    assert_problem(
        r,
        431,
        "headers_too_large",
        "Request Header Fields Too Large",
    );
}

/// One request on the admin listener.
fn admin(h: &Herald, raw: &[u8]) -> common::HttpResponse {
    http_exchange(h.admin_addr(), raw, EVENT_TIMEOUT).unwrap()
}

fn get(h: &Herald, path: &str, headers: &[(&str, &str)]) -> common::HttpResponse {
    let mut c = h.connect(path, headers);
    assert!(
        c.status() == 200 || c.wait_closed(EVENT_TIMEOUT),
        "connection not closed after {}",
        c.status()
    );
    c.response().clone()
}

#[test]
fn malformed_request_lines_are_400() {
    let h = herald();
    for req in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /sse HTTP/9.9\r\n\r\n",
        b"GET  HTTP/1.1\r\n\r\n",
        b"GET /sse HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
        b"\x01\x02\x03 / HTTP/1.1\r\n\r\n",
    ] {
        let r = raw(&h, req);
        let v = assert_problem(&r, 400, "bad_request", "Bad Request");
        eprintln!("{:?} -> {v}", String::from_utf8_lossy(req));
    }
    // HTTP/1.0 is not spoken.
    let r = raw(&h, b"GET /sse HTTP/1.0\r\n\r\n");
    assert_problem(&r, 400, "bad_request", "Bad Request");
}

#[test]
fn bad_query_encoding_is_400() {
    let h = herald();
    let token = jwt::user("u1");
    for q in [
        "event_types=%zz",
        "event_types=%4",
        "sources=%",
        "event_types=%FF",    // not UTF-8
        "event_types=%C3%28", // invalid UTF-8 sequence
        "x=%E2%82",           // truncated UTF-8
    ] {
        let r = get(&h, &format!("/sse?{q}&token={token}"), &[]);
        let v = assert_problem(&r, 400, "bad_request", "Bad Request");
        assert!(
            v["detail"].as_str().unwrap().contains("query")
                || v["detail"].as_str().unwrap().contains("UTF-8"),
            "{q}: {v}"
        );
    }
    // Good encodings pass.
    let c = h.sse(&format!("/sse?event_types=a%2Eb,%2A&token={token}"), &[]);
    assert_eq!(c.status(), 200);
}

#[test]
fn missing_token_is_401() {
    let h = herald();
    let r = get(&h, "/sse", &[]);
    let v = assert_problem(&r, 401, "missing_token", "Unauthorized");
    assert!(v["detail"].is_string());
    // An empty `token` parameter or bearer is no token either.
    let r = get(&h, "/sse?token=", &[]);
    assert_problem(&r, 401, "missing_token", "Unauthorized");
    let r = get(&h, "/events", &[("Authorization", "Bearer ")]);
    assert_problem(&r, 401, "missing_token", "Unauthorized");
}

#[test]
fn invalid_jwt_is_401() {
    let h = herald();
    let now = jwt::now();
    let claims = json!({"sub": "u1", "exp": now + 600});
    let cases = [
        ("bad signature", jwt::hs256("some-other-secret", &claims)),
        ("alg none", jwt::alg_none(&claims)),
        ("not a jwt", "not.a.jwt".to_string()),
        ("garbage", "abc".to_string()),
        (
            "no user id",
            jwt::hs256(jwt::SECRET, &json!({"exp": now + 600})),
        ),
        ("no exp", jwt::hs256(jwt::SECRET, &json!({"sub": "u1"}))),
        (
            "nbf in the future",
            jwt::hs256(
                jwt::SECRET,
                &json!({"sub": "u1", "exp": now + 600, "nbf": now + 300}),
            ),
        ),
        (
            "tampered payload",
            tamper(&jwt::hs256(jwt::SECRET, &claims)),
        ),
    ];
    for (what, token) in cases {
        let r = get(&h, &format!("/sse?token={token}"), &[]);
        let v = assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
        eprintln!("{what}: {v}");
    }
}

/// Swaps the payload of a token for another one, keeping the signature.
fn tamper(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let payload = jwt::b64url(
        json!({"sub": "admin", "exp": jwt::now() + 600})
            .to_string()
            .as_bytes(),
    );
    format!("{}.{}.{}", parts[0], payload, parts[2])
}

#[test]
fn hmac_token_against_public_key_is_401_invalid_jwt() {
    // Algorithm confusion: an HS256 token "signed" with the public key PEM as
    // the HMAC secret must not verify when only a public key is configured.
    let key = jwt::KeyPair::shared(jwt::KeyKind::Rsa);
    let h = Herald::start(&[("JWT_PUBLIC_KEY", &key.public_pem)]);
    let claims = json!({"sub": "u1", "exp": jwt::now() + 600});
    for alg in [
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::Algorithm::HS384,
        jsonwebtoken::Algorithm::HS512,
    ] {
        let forged = jwt::hmac(alg, &key.public_pem, &claims);
        let r = get(&h, &format!("/sse?token={forged}"), &[]);
        assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    }
    let r = get(&h, &format!("/sse?token={}", jwt::alg_none(&claims)), &[]);
    assert_problem(&r, 401, "invalid_jwt", "Unauthorized");
    // The real thing works.
    h.sse(&format!("/sse?token={}", key.sign(&claims)), &[]);
}

#[test]
fn expired_jwt_is_401() {
    let h = herald();
    let token = jwt::hs256(jwt::SECRET, &json!({"sub": "u1", "exp": jwt::now() - 120}));
    let r = get(&h, "/sse", &[("Authorization", &format!("Bearer {token}"))]);
    let v = assert_problem(&r, 401, "expired_jwt", "Unauthorized");
    assert!(v["detail"]
        .as_str()
        .unwrap()
        .to_lowercase()
        .contains("expired"));
}

#[test]
fn publish_without_right_token_is_401_unauthorized() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("PUBLISH_TOKEN", "pub-s3cret")]);
    let body = r#"{"message":"x"}"#;
    for token in [None, Some("wrong"), Some("pub-s3cre"), Some("pub-s3cret2")] {
        let req = format!(
            "POST /publish HTTP/1.1\r\nHost: x\r\n{}Content-Length: {}\r\n\r\n{body}",
            token
                .map(|t| format!("Authorization: Bearer {t}\r\n"))
                .unwrap_or_default(),
            body.len()
        );
        let r = admin(&h, req.as_bytes());
        assert_problem(&r, 401, "unauthorized", "Unauthorized");
    }
    // Basic auth with the right secret is not a bearer token.
    let req = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Basic pub-s3cret\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = admin(&h, req.as_bytes());
    assert_problem(&r, 401, "unauthorized", "Unauthorized");
    let (status, reply) = h.publish_with_token(body, Some("pub-s3cret"));
    assert_eq!(status, 202, "{reply}");
}

#[test]
fn wrong_issuer_is_403() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("JWT_ISSUER", "shop,blog")]);
    let r = get(
        &h,
        &format!("/sse?token={}", jwt::user_in("u1", "evil")),
        &[],
    );
    assert_problem(&r, 403, "wrong_issuer", "Forbidden");
    // Without `iss` the token is app `default`, which is not in the list.
    let r = get(&h, &format!("/sse?token={}", jwt::user("u1")), &[]);
    assert_problem(&r, 403, "wrong_issuer", "Forbidden");
}

#[test]
fn unknown_path_is_404() {
    let h = herald();
    for path in ["/", "/nope", "/sse/extra", "/SSE", "/publish"] {
        let r = get(&h, path, &[]);
        assert_problem(&r, 404, "not_found", "Not Found");
    }
    let r = admin(&h, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_problem(&r, 404, "not_found", "Not Found");
}

#[test]
fn wrong_method_is_405_with_allow() {
    let h = herald();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let req = format!("{method} /sse HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let r = raw(&h, req.as_bytes());
        assert_problem(&r, 405, "method_not_allowed", "Method Not Allowed");
        let allow = r.header("allow").expect("405 has Allow");
        assert!(
            allow.split(',').any(|m| m.trim() == "GET"),
            "Allow: {allow}"
        );
    }
    let r = raw(
        &h,
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_problem(&r, 405, "method_not_allowed", "Method Not Allowed");
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
    // Admin: GET /publish.
    let r = admin(&h, b"GET /publish HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_problem(&r, 405, "method_not_allowed", "Method Not Allowed");
    assert!(r
        .header("allow")
        .is_some_and(|a| a.split(',').any(|m| m.trim() == "POST")));
}

#[test]
fn head_over_8k_is_431() {
    let h = herald();
    let big = "a".repeat(9000);
    // One huge header.
    let req = format!("GET /sse HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let r = raw(&h, req.as_bytes());
    assert_431(&r);
    // A huge request line.
    let req = format!("GET /sse?pad={big} HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = raw(&h, req.as_bytes());
    assert_431(&r);
    // Many small headers adding up past 8 KiB.
    let mut req = String::from("GET /sse HTTP/1.1\r\nHost: x\r\n");
    for i in 0..50 {
        req.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(200)));
    }
    req.push_str("\r\n");
    let r = raw(&h, req.as_bytes());
    assert_431(&r);
    // A head just under the limit is fine (then 401: no token).
    let req = format!(
        "GET /sse HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "c".repeat(7000)
    );
    let r = raw(&h, req.as_bytes());
    assert_problem(&r, 401, "missing_token", "Unauthorized");
}

#[test]
fn partial_head_times_out_with_408() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("HEADER_TIMEOUT_MS", "500")]);
    let mut s = common::connect(h.addr()).unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n").unwrap();
    let start = Instant::now();
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(
        start.elapsed() < EVENT_TIMEOUT,
        "server never closed the half-sent request"
    );
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response to a partial head: {text:?}"));
    assert!(
        head.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{head}"
    );
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/problem+json"));
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["type"], "request_timeout");
    assert_eq!(v["title"], "Request Timeout");
    assert_eq!(v["status"], 408);
}

#[test]
fn silent_connection_is_closed_without_a_response() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("HEADER_TIMEOUT_MS", "500")]);
    let mut s = common::connect(h.addr()).unwrap();
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let start = Instant::now();
    let mut out = Vec::new();
    let res = s.read_to_end(&mut out);
    assert!(
        start.elapsed() < EVENT_TIMEOUT,
        "an idle connection was kept open past HEADER_TIMEOUT_MS ({res:?})"
    );
    assert!(
        out.is_empty(),
        "a connection that sent nothing got bytes: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "closed too early"
    );
}

#[test]
fn third_connection_is_503_server_full() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("MAX_CONNECTIONS", "2"),
        ("ALLOW_ANONYMOUS", "true"),
    ]);
    // The health probes of start-up may still be closing: allow a few tries.
    let open = || {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let c = h.connect("/sse", &[]);
            if c.status() == 200 || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let mut a = open();
    assert_eq!(a.status(), 200);
    let b = open();
    assert_eq!(b.status(), 200);

    // The third is refused as soon as it is accepted, before it says
    // anything: read the answer without sending a request.
    let mut s = common::connect(h.addr()).unwrap();
    s.set_read_timeout(Some(EVENT_TIMEOUT)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no 503 for the third connection: {text:?}"));
    assert!(
        head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{head}"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(
        lower.contains("retry-after:"),
        "503 without Retry-After: {head}"
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["type"], "server_full");
    assert_eq!(v["title"], "Service Unavailable");
    assert_eq!(v["status"], 503);

    // The two streams still work; closing one makes room again.
    h.publish_ok(r#"{"message":"still here"}"#);
    assert_eq!(a.expect_event().data, "still here");
    b.close();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let c = h.connect("/sse", &[]);
        if c.status() == 200 {
            break;
        }
        assert_eq!(c.status(), 503);
        assert!(Instant::now() < deadline, "no room after a close");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn refusals_on_the_sse_path_carry_cors_headers() {
    // A browser must be able to read why it was refused.
    let h = herald();
    let r = get(&h, "/sse", &[("Origin", "https://app.example")]);
    assert_problem(&r, 401, "missing_token", "Unauthorized");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

/// Regression: a refused request whose client resets before the refusal is
/// written used to panic the reactor (the slot was touched after close).
#[test]
fn refused_requests_from_resetting_clients_do_not_kill_reactors() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET)]);
    let big = format!("GET /sse HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
    for i in 0..40 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.connect(&h.addr().into()).unwrap();
        let mut s: std::net::TcpStream = s.into();
        let request: &[u8] = if i % 2 == 0 {
            big.as_bytes()
        } else {
            b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"
        };
        let _ = s.write_all(request);
        // Close with a reset (SO_LINGER 0) before reading the answer.
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    }
    // Every reactor still serves: enough streams to land on each of them.
    for i in 0..8 {
        let mut c = h.sse_with_token(&jwt::user(&format!("after{i}")));
        assert_eq!(c.status(), 200);
        drop(c.next_event(Duration::from_millis(1)));
    }
    h.publish_json(&json!({"message": "alive"}));
    let mut c = h.sse_with_token(&jwt::user("last"));
    h.publish_json(&json!({"message": "still alive"}));
    assert_eq!(c.expect_event().data, "still alive");
}
