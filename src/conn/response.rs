//! Response heads and bodies: the SSE stream head, problem+json refusals
//! (RFC 9457, SPEC §3), CORS, preflight and small JSON answers.

use std::fmt::Write as _;

use crate::config::Cors;

/// Every refusal herald can send (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    BadRequest,
    MissingToken,
    InvalidJwt,
    ExpiredJwt,
    Unauthorized,
    WrongIssuer,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    HeadersTooLarge,
    RequestTimeout,
    RateLimited,
    ServerFull,
}

impl Problem {
    /// Every problem type, in declaration order (`p as usize` indexes it):
    /// the order of the refusal counters.
    pub const ALL: [Problem; 13] = [
        Problem::BadRequest,
        Problem::MissingToken,
        Problem::InvalidJwt,
        Problem::ExpiredJwt,
        Problem::Unauthorized,
        Problem::WrongIssuer,
        Problem::NotFound,
        Problem::MethodNotAllowed,
        Problem::PayloadTooLarge,
        Problem::HeadersTooLarge,
        Problem::RequestTimeout,
        Problem::RateLimited,
        Problem::ServerFull,
    ];

    /// The refusal a response built by [`problem`] carries, read back from
    /// its bytes (`None` for any other response). For counting refusals
    /// where only the bytes travel; costs a scan of the head, so it is for
    /// final responses, not the stream path.
    pub fn of_response(response: &[u8]) -> Option<(Problem, &[u8])> {
        let body_at = response.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let ct = b"\r\nContent-Type: application/problem+json\r\n";
        response[..body_at]
            .windows(ct.len())
            .position(|w| w == ct)?;
        let body = response[body_at..].strip_prefix(b"{\"type\":\"")?;
        let end = body.iter().position(|&b| b == b'"')?;
        let p = Problem::ALL
            .into_iter()
            .find(|p| p.type_name().as_bytes() == &body[..end])?;
        Some((p, &response[body_at..]))
    }

    pub fn status(self) -> u16 {
        match self {
            Problem::BadRequest => 400,
            Problem::MissingToken | Problem::InvalidJwt | Problem::ExpiredJwt => 401,
            Problem::Unauthorized => 401,
            Problem::WrongIssuer => 403,
            Problem::NotFound => 404,
            Problem::MethodNotAllowed => 405,
            Problem::RequestTimeout => 408,
            Problem::PayloadTooLarge => 413,
            Problem::RateLimited => 429,
            Problem::HeadersTooLarge => 431,
            Problem::ServerFull => 503,
        }
    }

    pub fn type_name(self) -> &'static str {
        match self {
            Problem::BadRequest => "bad_request",
            Problem::MissingToken => "missing_token",
            Problem::InvalidJwt => "invalid_jwt",
            Problem::ExpiredJwt => "expired_jwt",
            Problem::Unauthorized => "unauthorized",
            Problem::WrongIssuer => "wrong_issuer",
            Problem::NotFound => "not_found",
            Problem::MethodNotAllowed => "method_not_allowed",
            Problem::PayloadTooLarge => "payload_too_large",
            Problem::HeadersTooLarge => "headers_too_large",
            Problem::RequestTimeout => "request_timeout",
            Problem::RateLimited => "rate_limited",
            Problem::ServerFull => "server_full",
        }
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// A full problem+json response that closes the connection. `extra` holds
/// complete header lines (each ending in CRLF), e.g. `Allow` or CORS.
pub fn problem(p: Problem, detail: &str, extra: &str) -> Vec<u8> {
    let status = p.status();
    // Written by hand to keep RFC 9457's field order (type, title, status, detail).
    let body = format!(
        r#"{{"type":"{}","title":"{}","status":{status},"detail":{}}}"#,
        p.type_name(),
        reason(status),
        serde_json::Value::from(detail),
    );
    simple(status, "application/problem+json", extra, &body)
}

/// A complete response with a body and `Connection: close`.
pub fn simple(status: u16, content_type: &str, extra: &str, body: &str) -> Vec<u8> {
    let mut out = String::with_capacity(160 + body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{extra}\r\n{body}",
        reason(status),
        body.len(),
    );
    out.into_bytes()
}

/// CORS header lines for a request from `origin` (SPEC §6).
pub fn cors_headers(cors: &Cors, origin: Option<&str>) -> String {
    match cors {
        Cors::Any => "Access-Control-Allow-Origin: *\r\n".to_string(),
        Cors::List(allowed) => match origin {
            Some(o) if allowed.iter().any(|a| a == o) => format!(
                "Access-Control-Allow-Origin: {o}\r\nVary: Origin\r\n\
                 Access-Control-Allow-Credentials: true\r\n"
            ),
            _ => "Vary: Origin\r\n".to_string(),
        },
    }
}

/// `204` answer to an `OPTIONS` preflight on the SSE path.
pub fn preflight(cors: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 204 No Content\r\n{cors}Access-Control-Allow-Methods: GET\r\n\
         Access-Control-Allow-Headers: Authorization, Last-Event-ID, Cache-Control\r\n\
         Access-Control-Max-Age: 86400\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The head of an SSE stream (not chunked; the body ends with the connection).
pub fn stream_head(connection_id: &uuid::Uuid, cors: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
         Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nX-Connection-Id: {connection_id}\r\n\
         {cors}\r\n"
    )
}

/// 503 `server_full` for work that could not be taken on right now (a
/// queue full, an answer that did not come): try again in a second.
/// `extra` holds header lines to add (CORS).
pub fn busy(detail: &str, extra: &str) -> Vec<u8> {
    problem(
        Problem::ServerFull,
        detail,
        &format!("{extra}Retry-After: 1\r\n"),
    )
}

/// A response to `HEAD`: the status line and headers (Content-Length as
/// `GET` would have had it), no body (RFC 9110 §9.3.2).
pub fn head_only(mut response: Vec<u8>) -> Vec<u8> {
    if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
        response.truncate(end + 4);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_shape() {
        let r = String::from_utf8(problem(Problem::InvalidJwt, "Invalid JWT token", "")).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(head.contains("Content-Type: application/problem+json"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"invalid_jwt","title":"Unauthorized","status":401,"detail":"Invalid JWT token"})
        );
    }

    #[test]
    fn cors_variants() {
        assert_eq!(
            cors_headers(&Cors::Any, Some("https://x")),
            "Access-Control-Allow-Origin: *\r\n"
        );
        let list = Cors::List(vec!["https://a".into()]);
        let h = cors_headers(&list, Some("https://a"));
        assert!(h.contains("Access-Control-Allow-Origin: https://a\r\n"));
        assert!(h.contains("Access-Control-Allow-Credentials: true"));
        assert!(!cors_headers(&list, Some("https://b")).contains("Allow-Origin"));
        assert!(!cors_headers(&list, None).contains("Allow-Origin"));
    }

    #[test]
    fn a_refusal_is_read_back_from_its_bytes() {
        for p in Problem::ALL {
            assert_eq!(Problem::ALL[p as usize], p);
            let r = problem(p, "why \"quoted\"", "X-A: b\r\n");
            let (back, body) = Problem::of_response(&r).unwrap();
            assert_eq!(back, p);
            let v: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(v["detail"], "why \"quoted\"");
        }
        let ok = simple(200, "application/json", "", r#"{"type":"not_found"}"#);
        assert!(Problem::of_response(&ok).is_none(), "not problem+json");
        assert!(Problem::of_response(&simple(200, "text/plain", "", "hi")).is_none());
        assert!(Problem::of_response(b"junk").is_none());
    }

    #[test]
    fn every_problem_has_a_reason() {
        for p in [
            Problem::BadRequest,
            Problem::MissingToken,
            Problem::WrongIssuer,
            Problem::NotFound,
            Problem::MethodNotAllowed,
            Problem::HeadersTooLarge,
            Problem::RequestTimeout,
            Problem::RateLimited,
            Problem::ServerFull,
            Problem::PayloadTooLarge,
        ] {
            assert_ne!(reason(p.status()), "Internal Server Error", "{p:?}");
        }
    }
}
