//! `GET /` on the admin listener: the live status page, one self-contained
//! HTML file (`status.html`: inline CSS and script, no external resource,
//! which its Content-Security-Policy enforces) that polls `GET /stats`
//! every second and draws listeners over time, connects and disconnects,
//! events in and deliveries out per second, slow cuts, refusals by type and
//! the ingest state.
//!
//! Contract: the page itself holds no data and is served without a token;
//! with `ADMIN_TOKEN` set, `/stats` still needs it: the page asks for it (or
//! takes it from the URL fragment, `/#token=…`, which no browser sends to the
//! server) and keeps it in the tab's `sessionStorage`.

use crate::conn::response;

/// The page's source, compiled in.
pub const HTML: &str = include_str!("status.html");

/// Only inline script and style, `fetch` to this origin only, nothing else.
const HEADERS: &str = "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'\r\nX-Content-Type-Options: nosniff\r\n\
    Referrer-Policy: no-referrer\r\n";

/// The complete `200` response.
pub fn page() -> Vec<u8> {
    response::simple(200, "text/html; charset=utf-8", HEADERS, HTML)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_contained() {
        for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
            assert!(!HTML.contains(external), "status.html refers to {external}");
        }
        let r = String::from_utf8(page()).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Security-Policy: default-src 'none';"));
    }
}
