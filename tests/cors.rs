//! CORS (SPEC §6): `*` by default, an allow-list that echoes matching
//! origins with credentials, and the `OPTIONS /sse` preflight.

mod common;

use common::{jwt, Herald, HttpResponse};

fn list(header: Option<&str>) -> Vec<String> {
    header
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn preflight(h: &Herald, path: &str, origin: Option<&str>) -> HttpResponse {
    let origin = origin
        .map(|o| format!("Origin: {o}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "OPTIONS {path} HTTP/1.1\r\nHost: x\r\n{origin}Access-Control-Request-Method: GET\r\n\
         Access-Control-Request-Headers: authorization, last-event-id\r\n\r\n"
    );
    common::http_exchange(h.addr(), req.as_bytes(), common::EVENT_TIMEOUT).expect("OPTIONS")
}

fn assert_preflight_ok(r: &HttpResponse) {
    assert_eq!(r.status, 204, "preflight: {r:?}");
    assert!(r.body.is_empty(), "204 with a body: {r:?}");
    let methods = list(r.header("access-control-allow-methods"));
    assert!(methods.contains(&"get".to_string()), "methods {methods:?}");
    let headers = list(r.header("access-control-allow-headers"));
    for h in ["authorization", "last-event-id", "cache-control"] {
        assert!(headers.contains(&h.to_string()), "{h} not in {headers:?}");
    }
}

#[test]
fn default_is_any_origin() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET)]);
    let token = jwt::user("u1");
    let c = h.sse(
        &format!("/sse?token={token}"),
        &[("Origin", "https://anywhere.example")],
    );
    assert_eq!(c.header("access-control-allow-origin"), Some("*"));
    assert_eq!(c.header("access-control-allow-credentials"), None);
    // Without an Origin header too.
    let c = h.sse(&format!("/sse?token={token}"), &[]);
    assert_eq!(c.header("access-control-allow-origin"), Some("*"));

    let r = preflight(&h, "/sse", Some("https://anywhere.example"));
    assert_preflight_ok(&r);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn allow_list_echoes_matching_origin_with_credentials() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        (
            "CORS_ALLOWED_ORIGINS",
            "https://app.example, https://admin.example",
        ),
    ]);
    let token = jwt::user("u1");
    for origin in ["https://app.example", "https://admin.example"] {
        // Cookie auth, as a credentialed EventSource would send it.
        let c = h.sse(
            "/sse",
            &[
                ("Origin", origin),
                ("Cookie", &format!("herald_token={token}")),
            ],
        );
        assert_eq!(c.header("access-control-allow-origin"), Some(origin));
        assert_eq!(c.header("access-control-allow-credentials"), Some("true"));
        assert!(
            c.headers_named("vary")
                .iter()
                .any(|v| list(Some(v)).contains(&"origin".to_string())),
            "no Vary: Origin in {:?}",
            c.response().headers
        );
    }
    // Not on the list (near misses included): no Allow-Origin at all.
    for origin in [
        "https://evil.example",
        "http://app.example",
        "https://app.example:8443",
        "https://app.example.evil",
    ] {
        let c = h.sse(&format!("/sse?token={token}"), &[("Origin", origin)]);
        assert_eq!(
            c.header("access-control-allow-origin"),
            None,
            "origin {origin} was allowed"
        );
        assert_eq!(c.header("access-control-allow-credentials"), None);
    }
    // No Origin: no Allow-Origin either.
    let c = h.sse(&format!("/sse?token={token}"), &[]);
    assert_eq!(c.header("access-control-allow-origin"), None);

    // Preflight echoes the allowed origin, and still answers 204 otherwise.
    let r = preflight(&h, "/sse", Some("https://app.example"));
    assert_preflight_ok(&r);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = preflight(&h, "/sse", Some("https://evil.example"));
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn star_in_list_means_any() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("CORS_ALLOWED_ORIGINS", "https://a.example,*"),
    ]);
    let c = h.sse(
        &format!("/sse?token={}", jwt::user("u1")),
        &[("Origin", "https://b.example")],
    );
    assert_eq!(c.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn preflight_on_events_alias_and_without_token() {
    // A preflight carries no credentials: it must not need a token.
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET)]);
    assert_preflight_ok(&preflight(&h, "/events", Some("https://x.example")));
    assert_preflight_ok(&preflight(&h, "/sse", None));
}
