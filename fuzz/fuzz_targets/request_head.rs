//! Fuzzes the request-head parser (`conn::http::parse_head`), the query
//! decoder (`parse_query`) and the header accessors, checking invariants the
//! reactor relies on rather than only "does not panic".
#![no_main]

use herald::conn::http::{parse_head, parse_query, Head, Request, MAX_HEAD_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let full = parse_head(data);
    if let Head::Complete(req) = &full {
        check_complete(data, req);
    }
    if let Head::Bad(reason) = &full {
        assert!(!reason.is_empty());
    }
    // The query decoder also sees arbitrary text, not only what httparse lets
    // through in a request target.
    if let Ok(text) = std::str::from_utf8(data) {
        check_query(text);
    }
});

fn check_complete(data: &[u8], req: &Request) {
    let len = req.head_len;
    assert!(len <= data.len() && len <= MAX_HEAD_BYTES, "head_len {len}");
    assert!(data[..len].ends_with(b"\n"), "head must end at a line end");
    assert!(req.method.is_some());
    assert!(!req.path.contains('?'), "query must be split off the path");

    // Bytes after the head (a body, a pipelined request) change nothing.
    assert_eq!(parse_head(&data[..len]), Head::Complete(req.clone()));
    // Every strict prefix of a complete head is still partial: the reactor
    // parses after each read and must not answer early.
    let step = (len / 64).max(1);
    for cut in (0..len).step_by(step).chain([len - 1]) {
        assert_eq!(
            parse_head(&data[..cut]),
            Head::Partial,
            "prefix of {cut} bytes"
        );
    }

    if let Some(token) = req.bearer() {
        assert!(!token.is_empty());
        assert_eq!(token, token.trim());
        assert!(req.authorization.as_deref().unwrap().contains(token));
    }
    for name in ["herald_token", "a", ""] {
        if let Some(v) = req.cookie_value(name) {
            assert!(!v.is_empty() && !v.contains(';'));
            assert!(!v.starts_with('"') && !v.ends_with('"'));
            assert!(req.cookie.as_deref().unwrap().contains(v));
        }
    }
    check_query(&req.query);
}

fn check_query(query: &str) {
    let segments: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    match parse_query(query) {
        Ok(pairs) => {
            assert_eq!(pairs.len(), segments.len());
            for (seg, (k, v)) in segments.iter().zip(&pairs) {
                let (rk, rv) = seg.split_once('=').unwrap_or((seg, ""));
                for (raw, decoded) in [(rk, k), (rv, v)] {
                    assert!(well_formed_percent(raw), "accepted bad escape in {raw:?}");
                    assert!(decoded.len() <= raw.len());
                    if !raw.contains(['%', '+']) {
                        assert_eq!(raw, decoded);
                    }
                }
            }
        }
        Err(msg) => {
            assert!(!msg.is_empty());
            assert!(query.contains('%'), "only escapes can fail: {query:?}");
        }
    }
}

/// Every `%` is followed by two hex digits (the contract of `parse_query`).
fn well_formed_percent(raw: &str) -> bool {
    let b = raw.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}
