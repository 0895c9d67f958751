//! Incremental HTTP/1.1 request-head parsing (httparse) into a small owned
//! [`Request`] holding only what herald uses. Sans-IO: bytes in, verdict out.

/// The cap on a request line plus headers.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Headers parsed per request; more is treated as an oversized head.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Options,
    Delete,
    Other,
}

/// The parts of a request head herald looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: Option<Method>,
    pub path: String,
    /// Raw query string (after `?`), not yet decoded.
    pub query: String,
    pub authorization: Option<String>,
    pub cookie: Option<String>,
    pub last_event_id: Option<String>,
    pub origin: Option<String>,
    /// `X-Forwarded-For`, repeated headers joined with `, `.
    pub forwarded_for: Option<String>,
    pub content_length: Option<usize>,
    /// Length of the head in bytes, including the final blank line.
    pub head_len: usize,
}

/// The token of an `Authorization: Bearer <token>` value (scheme matched
/// without regard to case, blanks trimmed); HTTP headers and gRPC metadata
/// alike.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

impl Request {
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }

    /// The bearer token of the `Authorization` header, if any.
    pub fn bearer(&self) -> Option<&str> {
        bearer_token(self.authorization.as_deref()?)
    }

    /// The value of cookie `name`, if present.
    pub fn cookie_value(&self, name: &str) -> Option<&str> {
        self.cookie.as_deref()?.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name)
                .then(|| v.trim().trim_matches('"'))
                .filter(|v| !v.is_empty())
        })
    }
}

/// The outcome of looking at the bytes read so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// Need more bytes.
    Partial,
    Complete(Request),
    /// Over [`MAX_HEAD_BYTES`] (or too many headers): 431.
    TooLarge,
    /// Malformed: 400, with what was wrong.
    Bad(&'static str),
}

/// Parses the head in `buf` (everything read so far).
pub fn parse_head(buf: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_HEAD_BYTES {
                Head::TooLarge
            } else {
                Head::Partial
            }
        }
        Ok(httparse::Status::Complete(len)) => {
            if len > MAX_HEAD_BYTES {
                return Head::TooLarge;
            }
            if req.version != Some(1) {
                return Head::Bad("only HTTP/1.1 is supported");
            }
            build(&req, len)
        }
        Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
        Err(e) => Head::Bad(match e {
            httparse::Error::Version => "malformed HTTP version",
            httparse::Error::Token => "malformed request line or header name",
            httparse::Error::HeaderName => "malformed header name",
            httparse::Error::HeaderValue => "malformed header value",
            httparse::Error::NewLine | httparse::Error::Status => "malformed line ending",
            _ => "malformed request",
        }),
    }
}

fn build(req: &httparse::Request<'_, '_>, head_len: usize) -> Head {
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "OPTIONS" => Method::Options,
        "DELETE" => Method::Delete,
        _ => Method::Other,
    };
    let (path, query) = split_target(req.path.unwrap_or("/"));
    let mut out = Request {
        method: Some(method),
        path: path.to_string(),
        query: query.to_string(),
        head_len,
        ..Request::default()
    };
    for h in req.headers.iter() {
        let Ok(value) = std::str::from_utf8(h.value) else {
            // Non-UTF-8 values are legal on the wire; only the ones we read matter.
            if is_used_header(h.name) {
                return Head::Bad("header value is not valid UTF-8");
            }
            continue;
        };
        let slot = if h.name.eq_ignore_ascii_case("authorization") {
            &mut out.authorization
        } else if h.name.eq_ignore_ascii_case("cookie") {
            &mut out.cookie
        } else if h.name.eq_ignore_ascii_case("last-event-id") {
            &mut out.last_event_id
        } else if h.name.eq_ignore_ascii_case("origin") {
            &mut out.origin
        } else if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            &mut out.forwarded_for
        } else if h.name.eq_ignore_ascii_case("content-length") {
            // RFC 9112 §6.3: digits only, and once; anything looser is how
            // a proxy in front and herald could disagree on where a body
            // ends (request smuggling).
            let digits = value.trim();
            if out.content_length.is_some() {
                return Head::Bad("Content-Length appears more than once");
            }
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Head::Bad("Content-Length must be digits only");
            }
            match digits.parse::<usize>() {
                Ok(n) => out.content_length = Some(n),
                Err(_) => return Head::Bad("Content-Length is too large"),
            }
            continue;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Head::Bad("Transfer-Encoding is not supported; send Content-Length");
        } else {
            continue;
        };
        match slot {
            // Repeated cookies join; other repeated headers keep the first.
            Some(prev) if h.name.eq_ignore_ascii_case("cookie") => {
                prev.push_str("; ");
                prev.push_str(value);
            }
            Some(prev) if h.name.eq_ignore_ascii_case("x-forwarded-for") => {
                prev.push_str(", ");
                prev.push_str(value);
            }
            Some(_) => {}
            None => *slot = Some(value.to_string()),
        }
    }
    Head::Complete(out)
}

/// The path and query of a request target; an absolute-form target
/// (`http://host/sse?x`, RFC 9112 §3.2.2) is read as its origin form.
fn split_target(target: &str) -> (&str, &str) {
    let origin = match target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        None => target,
        Some(rest) => match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            Some(i) => return ("/", &rest[i + 1..]),
            None => return ("/", ""),
        },
    };
    origin.split_once('?').unwrap_or((origin, ""))
}

fn is_used_header(name: &str) -> bool {
    [
        "authorization",
        "cookie",
        "last-event-id",
        "origin",
        "x-forwarded-for",
        "content-length",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// Decodes a query string into `(name, value)` pairs: percent-decoding, `+`
/// as space. Bad percent-encoding or invalid UTF-8 is an error.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                // Both bytes must be hex digits: `from_str_radix` alone would
                // also take a sign, so `%+A` decoded to 0x0A (found by fuzzing).
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in query near {:?}", &s[i..]))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "query is not valid UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &str) -> Request {
        match parse_head(raw.as_bytes()) {
            Head::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_sse_request() {
        let r = complete(
            "GET /sse?token=abc&event_types=a.*%2Cb HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer t0k\r\nCookie: a=1; herald_token=ck\r\n\
             Last-Event-ID: 5-0\r\nOrigin: https://app.example\r\n\r\n",
        );
        assert_eq!(r.method(), Method::Get);
        assert_eq!(r.path, "/sse");
        assert_eq!(r.query, "token=abc&event_types=a.*%2Cb");
        assert_eq!(r.bearer(), Some("t0k"));
        assert_eq!(r.cookie_value("herald_token"), Some("ck"));
        assert_eq!(r.cookie_value("a"), Some("1"));
        assert_eq!(r.cookie_value("b"), None);
        assert_eq!(r.last_event_id.as_deref(), Some("5-0"));
        assert_eq!(r.origin.as_deref(), Some("https://app.example"));
    }

    #[test]
    fn partial_until_blank_line() {
        assert_eq!(parse_head(b""), Head::Partial);
        assert_eq!(
            parse_head(b"GET /sse HTTP/1.1\r\nHost: x\r\n"),
            Head::Partial
        );
        assert!(matches!(
            parse_head(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Complete(_)
        ));
    }

    #[test]
    fn oversized_and_malformed() {
        let big = format!("GET /sse HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse_head(big.as_bytes()), Head::TooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(parse_head(many.as_bytes()), Head::TooLarge);
        assert!(matches!(
            parse_head(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"),
            Head::Bad(_)
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.0\r\n\r\n"),
            Head::Bad(_)
        ));
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Head::Bad(_)
        ));
    }

    #[test]
    fn bearer_forms() {
        let mut r = Request {
            authorization: Some("bearer  abc ".into()),
            ..Default::default()
        };
        assert_eq!(r.bearer(), Some("abc"));
        r.authorization = Some("Basic abc".into());
        assert_eq!(r.bearer(), None);
        r.authorization = Some("Bearer ".into());
        assert_eq!(r.bearer(), None);
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("a=1&b=x%20y+z&c&=v&d=%E2%9C%93").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y z".into()),
                ("c".into(), "".into()),
                ("".into(), "v".into()),
                ("d".into(), "✓".into()),
            ]
        );
        assert!(parse_query("a=%zz").is_err());
        assert!(parse_query("a=%4").is_err());
        assert!(parse_query("a=%FF").is_err());
    }

    #[test]
    fn percent_escape_needs_two_hex_digits() {
        // Regression (fuzz/request_head): `u8::from_str_radix` accepts a
        // leading `+`, so `%+E` used to decode to 0x0E and `%+A` to a newline.
        for q in ["%+E", "a=%+A", "a=%+0", "%-1"] {
            assert!(parse_query(q).is_err(), "{q}");
        }
    }

    #[test]
    fn content_length_is_digits_once() {
        let head = |cl: &str| parse_head(format!("POST /p HTTP/1.1\r\n{cl}\r\n").as_bytes());
        assert!(
            matches!(head("Content-Length: 15\r\n"), Head::Complete(r) if r.content_length == Some(15))
        );
        for bad in [
            "Content-Length: +15\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 1_5\r\n",
            "Content-Length: \r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: 15\r\nContent-Length: 16\r\n",
            "Content-Length: 15\r\nContent-Length: 15\r\n",
            "Content-Length: 99999999999999999999999\r\n",
        ] {
            assert!(matches!(head(bad), Head::Bad(_)), "{bad:?} accepted");
        }
    }

    #[test]
    fn absolute_form_targets_are_read_as_origin_form() {
        for (target, path, query) in [
            ("http://herald.example/sse?token=t", "/sse", "token=t"),
            ("https://h:8080/events", "/events", ""),
            ("http://h?x=1", "/", "x=1"),
            ("http://h", "/", ""),
            ("/sse?a=b", "/sse", "a=b"),
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\n\r\n");
            let Head::Complete(r) = parse_head(raw.as_bytes()) else {
                panic!("{target}")
            };
            assert_eq!(
                (r.path.as_str(), r.query.as_str()),
                (path, query),
                "{target}"
            );
        }
    }
}
