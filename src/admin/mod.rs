//! The admin listener (`ADMIN_ADDR`, loopback by default): `GET /health`,
//! `GET /stats` (JSON), `GET /metrics` (Prometheus, [`metrics`]),
//! `POST /publish` (SPEC §4), `/connections` ([`connections`]) and `GET /`,
//! the live status page ([`status`]). The gRPC API ([`grpc`], `GRPC_ADDR`)
//! serves the same actions through the same functions ([`Admin::stats`],
//! [`Admin::publish_body`], [`connections::disconnect`]).
//! `ADMIN_TOKEN`, when set, guards every endpoint but `/health` and the
//! page (which holds no data and asks for the token to poll `/stats`);
//! `PUBLISH_TOKEN` also opens `/publish`.
//!
//! [`listener`] reads heads and answers what a head decides (health, every
//! refusal) on one `poll` thread; [`Admin::classify`] is that decision. What
//! passes goes to a few worker threads ([`Admin::work`]), which read the
//! body (`PUBLISH_MAX_BYTES`, read as it arrives, never reserved up front)
//! and do the work. It never touches a reactor except through the hub and
//! the connection directory.

mod body;
pub mod connections;
pub mod grpc;
pub mod listener;
pub mod metrics;
pub mod report;
pub mod status;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::debug;

use crate::cluster::Directory;
use crate::config::Config;
use crate::conn::http::{Method, Request};
use crate::conn::response::{self, Problem};
use crate::hub::status::IngestStatus;
use crate::hub::{envelope, Hub};
use crate::ingest::RateLimitedLog;
use crate::reactor::stats::Counters;
use std::sync::atomic::Ordering::Relaxed;

/// What a request head was classified as ([`classify`]).
#[derive(Debug)]
pub enum Route {
    /// Answered on the head.
    Answer(Vec<u8>),
    Stats,
    Metrics,
    /// `GET /`: the status page (a worker writes it: it may not fit one
    /// non-blocking write).
    Status,
    Publish,
    /// `/connections/` and what follows.
    Connections(String),
}

/// A request for a worker: its connection, head, route and the body bytes
/// that came with the head.
pub(super) struct Job {
    stream: std::net::TcpStream,
    req: Request,
    route: Route,
    body: Vec<u8>,
}

pub struct Admin {
    cfg: Arc<Config>,
    hub: Arc<Hub>,
    status: Arc<IngestStatus>,
    counters: Counters,
    /// The I/O driver the reactors run (`epoll` or `io_uring`).
    backend: &'static str,
    /// Answers `/connections` (this node's reactors, or the cluster).
    dir: Arc<Directory>,
    /// Refused publishes are logged at most every 10 s.
    bad_log: Mutex<RateLimitedLog>,
}

impl Admin {
    pub fn new(
        cfg: Arc<Config>,
        hub: Arc<Hub>,
        status: Arc<IngestStatus>,
        counters: Counters,
        backend: &'static str,
        dir: Arc<Directory>,
    ) -> Self {
        let bad_log = Mutex::new(RateLimitedLog::new(Duration::from_secs(10)));
        Self {
            cfg,
            hub,
            status,
            counters,
            backend,
            dir,
            bad_log,
        }
    }

    pub(super) fn classify(&self, req: &Request) -> Route {
        classify(&self.cfg, &self.status, req)
    }

    /// A worker's part: read the body if any, do the work, answer.
    pub(super) fn work(&self, job: Job) {
        let Job {
            stream,
            req,
            route,
            body,
        } = job;
        let mut stream = match body::DeadlineStream::new(stream) {
            Ok(s) => s,
            Err(e) => return debug!("admin: connection lost: {e}"),
        };
        let reply = match route {
            Route::Answer(reply) => reply,
            Route::Stats => response::simple(200, "application/json", "", &self.stats().to_json()),
            Route::Status => status::page(),
            Route::Metrics => {
                let c = self.counters.snapshot();
                let text = metrics::render(&metrics::Sources {
                    counters: &c,
                    status: &self.status,
                    inbox_stalls: self.inbox_stalls(),
                    backend: self.backend,
                });
                response::simple(200, "text/plain; version=0.0.4; charset=utf-8", "", &text)
            }
            Route::Connections(rest) => connections::route(&self.dir, &rest, req.method()),
            Route::Publish => match body::read(&req, &mut stream, body, self.cfg.publish_max_bytes)
            {
                Ok(body) => self.publish(&body),
                Err(e) => return debug!("admin: publish body not read: {e}"),
            },
        };
        let reply = if req.method() == Method::Head {
            response::head_only(reply)
        } else {
            reply
        };
        if let Err(e) = stream.write_all(&reply) {
            debug!("admin: answer not sent: {e}");
        }
    }

    /// `POST /publish`: [`Admin::publish_body`] as an HTTP answer.
    fn publish(&self, body: &[u8]) -> Vec<u8> {
        match self.publish_body(body) {
            Ok(n) => response::simple(
                202,
                "application/json",
                "",
                &format!("{{\"accepted\":{n}}}"),
            ),
            Err(detail) => response::problem(Problem::BadRequest, &detail, ""),
        }
    }

    /// Decodes a publish body (one envelope or a batch) and hands it to the
    /// hub, all or nothing: the count accepted, or the refusal's detail
    /// (counted as rejected and logged at most every 10 s). The one publish
    /// path of `POST /publish` and gRPC `Publish`.
    pub fn publish_body(&self, body: &[u8]) -> Result<usize, String> {
        let max = self.cfg.publish_max_batch;
        let decoded = envelope::decode(body).and_then(|envs| {
            if envs.len() > max {
                return Err(envelope::EnvelopeError {
                    index: None,
                    reason: format!(
                        "a batch of {} envelopes is over PUBLISH_MAX_BATCH ({max})",
                        envs.len()
                    ),
                });
            }
            self.hub.publish(envs, crate::ingest::now())
        });
        match decoded {
            Ok(n) => {
                self.status.published.fetch_add(n as u64, Relaxed);
                Ok(n)
            }
            Err(e) => {
                self.status.rejected.fetch_add(1, Relaxed);
                self.bad_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .warn(&format!("admin: publish refused: {e}"));
                Err(e.to_string())
            }
        }
    }
}

impl Admin {
    fn inbox_stalls(&self) -> u64 {
        self.hub.inboxes().iter().map(|i| i.stalls()).sum()
    }

    /// `GET /stats` (and gRPC `GetStats`): totals over every reactor,
    /// plus ingest counters.
    pub fn stats(&self) -> report::StatsReport {
        report::StatsReport::new(
            self.counters.snapshot(),
            &self.status,
            self.inbox_stalls(),
            self.backend,
        )
    }
}

/// What a request head gets on the admin listener: an answer decided on
/// the head alone (health, every refusal), or work for a worker. Pure (the
/// fuzz target `admin_request` drives it).
pub fn classify(cfg: &Config, status: &IngestStatus, req: &Request) -> Route {
    let not_allowed = |allow: &str| {
        Route::Answer(response::problem(
            Problem::MethodNotAllowed,
            &format!("{} accepts {allow}", req.path),
            &format!("Allow: {allow}\r\n"),
        ))
    };
    let admin_only = |route: Route, what: &str| {
        if authorized(req, &[&cfg.admin_token]) {
            route
        } else {
            Route::Answer(unauthorized(&format!(
                "{what} needs Authorization: Bearer <ADMIN_TOKEN>"
            )))
        }
    };
    let get = matches!(req.method(), Method::Get | Method::Head);
    match req.path.as_str() {
        "/health" if get => Route::Answer(response::simple(
            200,
            "application/json",
            "",
            &status.health_json(),
        )),
        "/health" => not_allowed("GET, HEAD"),
        // The page holds no data: it asks for ADMIN_TOKEN to poll /stats.
        "/" if get => Route::Status,
        "/" => not_allowed("GET, HEAD"),
        "/stats" if get => admin_only(Route::Stats, "GET /stats"),
        "/stats" => not_allowed("GET, HEAD"),
        "/metrics" if get => admin_only(Route::Metrics, "GET /metrics"),
        "/metrics" => not_allowed("GET, HEAD"),
        "/publish" if req.method() == Method::Post => {
            if !authorized(req, &[&cfg.publish_token, &cfg.admin_token]) {
                return Route::Answer(unauthorized(
                    "POST /publish needs Authorization: Bearer <PUBLISH_TOKEN or ADMIN_TOKEN>",
                ));
            }
            match body::check_length(req, cfg.publish_max_bytes) {
                Ok(()) => Route::Publish,
                Err(reply) => Route::Answer(reply),
            }
        }
        "/publish" => not_allowed("POST"),
        path if path.starts_with("/connections/") => admin_only(
            Route::Connections(path["/connections/".len()..].to_string()),
            "/connections",
        ),
        other => Route::Answer(response::problem(
            Problem::NotFound,
            &format!("no such path: {other}"),
            "",
        )),
    }
}

/// Whether the request carries one of `tokens` ([`bearer_ok`]).
fn authorized(req: &Request, tokens: &[&Option<String>]) -> bool {
    bearer_ok(req.bearer(), tokens)
}

/// Whether `bearer` is one of `tokens` (compared in constant time); when
/// none is set the endpoint is open (the admin listener and `GRPC_ADDR`
/// refuse to start off loopback without `ADMIN_TOKEN`). The one token check
/// of the admin listener and the gRPC API.
pub fn bearer_ok(bearer: Option<&str>, tokens: &[&Option<String>]) -> bool {
    let tokens: Vec<&str> = tokens
        .iter()
        .copied()
        .flatten()
        .map(String::as_str)
        .collect();
    if tokens.is_empty() {
        return true;
    }
    bearer.is_some_and(|b| {
        tokens
            .iter()
            .any(|t| constant_time_eq(t.as_bytes(), b.as_bytes()))
    })
}

fn unauthorized(detail: &str) -> Vec<u8> {
    response::problem(
        Problem::Unauthorized,
        detail,
        "WWW-Authenticate: Bearer\r\n",
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
