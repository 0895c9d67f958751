//! What to do with a complete request head on the public listener: answer it
//! and close, or open an event stream for an authenticated listener.

use crate::config::Config;
use crate::hub::filter::Filter;
use crate::hub::status::IngestStatus;

use std::net::IpAddr;

use super::auth::{Identity, Verifier};
use super::http::{parse_query, Method, Request};
use super::ratelimit::{client_ip, RateLimiter};
use super::response::{self, cors_headers, Problem};

/// The verdict for one request.
#[derive(Debug)]
pub enum Action {
    /// Send these bytes, then close.
    Respond(Vec<u8>),
    /// Start streaming: send `head` (status line and headers), then events.
    Stream(StreamRequest),
    /// `GET /connections/{app}[/{user}]` by a client of `app`: answered off
    /// the reactor, which only waits.
    Query {
        app: String,
        user: Option<String>,
        cors: String,
    },
}

/// An accepted subscription.
#[derive(Debug)]
pub struct StreamRequest {
    pub identity: Identity,
    pub filter: Option<Filter>,
    /// `Last-Event-ID` header, else the `lastEventId` query parameter.
    pub last_event_id: Option<String>,
    /// CORS header lines for the stream head.
    pub cors: String,
}

/// Context the router needs besides the request.
pub struct RouteCtx<'a> {
    pub cfg: &'a Config,
    pub verifier: &'a Verifier,
    /// Ingest state, for `GET /health`.
    pub status: &'a IngestStatus,
    /// `/sse` attempts per client address; the peer's address (read only
    /// when the limiter is on) and the monotonic time.
    pub limiter: &'a RateLimiter,
    pub peer: Option<IpAddr>,
    pub now_ms: u64,
}

/// Decides what a request gets.
pub fn route(req: &Request, ctx: &RouteCtx<'_>) -> Action {
    let cors = cors_headers(&ctx.cfg.cors, req.origin.as_deref());
    let refuse = |p: Problem, detail: &str, extra: &str| {
        Action::Respond(response::problem(p, detail, &format!("{cors}{extra}")))
    };
    match req.path.as_str() {
        "/sse" | "/events" => match req.method() {
            Method::Get => {
                if let Err(secs) = admit(req, ctx) {
                    return refuse(
                        Problem::RateLimited,
                        "too many connection attempts from this address (RATE_LIMIT_PER_IP_PER_MIN)",
                        &format!("Retry-After: {secs}\r\n"),
                    );
                }
                subscribe(req, ctx, cors.clone())
                    .unwrap_or_else(|(p, detail)| refuse(p, &detail, ""))
            }
            Method::Options => Action::Respond(response::preflight(&cors)),
            _ => refuse(
                Problem::MethodNotAllowed,
                &format!("{} accepts GET and OPTIONS", req.path),
                "Allow: GET, OPTIONS\r\n",
            ),
        },
        "/health" => match req.method() {
            Method::Get | Method::Head => Action::Respond(response::simple(
                200,
                "application/json",
                &cors,
                &ctx.status.health_json(),
            )),
            _ => refuse(
                Problem::MethodNotAllowed,
                "/health accepts GET and HEAD",
                "Allow: GET, HEAD\r\n",
            ),
        },
        path if path.starts_with("/connections/") => match req.method() {
            Method::Get => listing(req, ctx, &path["/connections/".len()..], cors.clone())
                .unwrap_or_else(|(p, detail)| refuse(p, &detail, "")),
            _ => refuse(
                Problem::MethodNotAllowed,
                "/connections accepts GET here (DELETE is on the admin listener)",
                "Allow: GET\r\n",
            ),
        },
        other => refuse(Problem::NotFound, &format!("no such path: {other}"), ""),
    }
}

/// `GET /connections/{app}[/{user}]`: needs a token whose issuer is `{app}`
/// (401 without one, even when anonymous listeners are allowed).
fn listing(
    req: &Request,
    ctx: &RouteCtx<'_>,
    rest: &str,
    cors: String,
) -> Result<Action, (Problem, String)> {
    let (app, user) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        [app] | [app, ""] if !app.is_empty() => (app.to_string(), None),
        [app, user] if !app.is_empty() && !user.is_empty() => {
            (app.to_string(), Some(user.to_string()))
        }
        _ => return Err((Problem::NotFound, "no such connection path".into())),
    };
    let query = parse_query(&req.query).map_err(|e| (Problem::BadRequest, e))?;
    let Some(token) = token(req, &query, ctx.cfg) else {
        return Err((
            Problem::MissingToken,
            "a token whose issuer is the app is required".into(),
        ));
    };
    let identity = ctx
        .verifier
        .verify(Some(token))
        .map_err(|e| (e.problem, e.detail))?;
    if identity.app != app {
        return Err((
            Problem::WrongIssuer,
            format!("the token's issuer may list app {:?} only", identity.app),
        ));
    }
    Ok(Action::Query { app, user, cors })
}

/// The request's token: `Authorization: Bearer`, else `?token=`, else the
/// cookie.
fn token<'r>(req: &'r Request, query: &'r [(String, String)], cfg: &Config) -> Option<&'r str> {
    req.bearer()
        .or_else(|| {
            query
                .iter()
                .find(|(k, v)| k == "token" && !v.is_empty())
                .map(|(_, v)| v.as_str())
        })
        .or_else(|| req.cookie_value(&cfg.jwt_cookie))
}

/// Takes one `/sse` attempt from the client's rate-limit bucket; `Err`
/// holds the `Retry-After` seconds.
fn admit(req: &Request, ctx: &RouteCtx<'_>) -> Result<(), u64> {
    let Some(peer) = ctx.peer.filter(|_| ctx.limiter.enabled()) else {
        return Ok(());
    };
    let client = client_ip(peer, req.forwarded_for.as_deref(), &ctx.cfg.trusted_proxies);
    ctx.limiter.check(client, ctx.now_ms)
}

fn subscribe(req: &Request, ctx: &RouteCtx<'_>, cors: String) -> Result<Action, (Problem, String)> {
    let query = parse_query(&req.query).map_err(|e| (Problem::BadRequest, e))?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let identity = ctx
        .verifier
        .verify(token(req, &query, ctx.cfg))
        .map_err(|e| (e.problem, e.detail))?;
    let filter = Filter::from_lists(param("event_types"), param("sources"))
        .map_err(|e| (Problem::BadRequest, e))?;
    let last_event_id = req
        .last_event_id
        .clone()
        .or_else(|| param("lastEventId").map(str::to_string))
        .filter(|id| !id.is_empty());
    Ok(Action::Stream(StreamRequest {
        identity,
        filter,
        last_event_id,
        cors,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::http::{parse_head, Head};

    fn ctx_cfg(pairs: &[(&str, &str)]) -> (Config, Verifier) {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cfg = Config::from_lookup(&move |k| map.get(k).cloned()).unwrap();
        let v = Verifier::from_config(&cfg).unwrap();
        (cfg, v)
    }

    fn run(raw: &str, pairs: &[(&str, &str)]) -> Action {
        let (cfg, verifier) = ctx_cfg(pairs);
        let Head::Complete(req) = parse_head(raw.as_bytes()) else {
            panic!("incomplete")
        };
        let status = IngestStatus::new(false);
        let limiter = RateLimiter::new(0, 0);
        route(
            &req,
            &RouteCtx {
                cfg: &cfg,
                verifier: &verifier,
                status: &status,
                limiter: &limiter,
                peer: None,
                now_ms: 0,
            },
        )
    }

    fn status(a: &Action) -> String {
        match a {
            Action::Respond(b) => String::from_utf8_lossy(b)
                .lines()
                .next()
                .unwrap()
                .to_string(),
            Action::Stream(_) => "stream".into(),
            Action::Query { .. } => "query".into(),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            status(&run("GET /nope HTTP/1.1\r\n\r\n", &[])),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(&run("GET /health HTTP/1.1\r\n\r\n", &[])),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(
            status(&run("POST /sse HTTP/1.1\r\n\r\n", &[])),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(
            status(&run("OPTIONS /sse HTTP/1.1\r\n\r\n", &[])),
            "HTTP/1.1 204 No Content"
        );
        assert_eq!(
            status(&run("GET /sse HTTP/1.1\r\n\r\n", &[])),
            "HTTP/1.1 401 Unauthorized"
        );
        assert_eq!(
            status(&run("GET /sse?x=%G0 HTTP/1.1\r\n\r\n", &[])),
            "HTTP/1.1 400 Bad Request"
        );
    }

    #[test]
    fn anonymous_stream_with_filters_and_last_event_id() {
        let a = run(
            "GET /events?event_types=a.*&sources=s1,s2&lastEventId=9-0 HTTP/1.1\r\n\r\n",
            &[("ALLOW_ANONYMOUS", "true")],
        );
        let Action::Stream(s) = a else { panic!() };
        assert_eq!(s.identity.user, None);
        assert_eq!(s.last_event_id.as_deref(), Some("9-0"));
        assert!(s.filter.unwrap().matches("a.b", Some("s2")));
    }

    #[test]
    fn header_last_event_id_wins_over_query() {
        let a = run(
            "GET /sse?lastEventId=1-0 HTTP/1.1\r\nLast-Event-ID: 2-0\r\n\r\n",
            &[("ALLOW_ANONYMOUS", "true")],
        );
        let Action::Stream(s) = a else { panic!() };
        assert_eq!(s.last_event_id.as_deref(), Some("2-0"));
    }
}
