//! The admin listener (`ADMIN_ADDR`, loopback by default): `GET /health`,
//! `GET /stats` (JSON), `GET /metrics` (Prometheus, [`metrics`]) and
//! `POST /publish` (SPEC §4). `ADMIN_TOKEN`, when set, guards every
//! endpoint but `/health`; `PUBLISH_TOKEN` also opens `/publish`. Low volume, so it is a plain blocking server on
//! its own thread, one request per connection, with read timeouts; it never
//! touches a reactor except through the hub.

pub mod connections;
pub mod metrics;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::cluster::Directory;
use crate::config::Config;
use crate::conn::http::{parse_head, Head, Method, Request, MAX_HEAD_BYTES};
use crate::conn::response::{self, Problem};
use crate::hub::status::{IngestStatus, RedisState};
use crate::hub::{envelope, Hub};
use crate::ingest::RateLimitedLog;
use crate::reactor::stats::Counters;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Largest publish body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to send a whole request (head and body).
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Admin connections served concurrently.
pub const MAX_CONCURRENT: usize = 64;

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

    /// Serves until the process exits: each connection on its own thread,
    /// at most [`MAX_CONCURRENT`] at once (beyond that a quick 503), each
    /// with one deadline for its whole request, so stalled or trickling
    /// clients cannot hold up publishers.
    pub fn serve(self, listener: TcpListener) {
        let admin = Arc::new(self);
        let busy = Arc::new(AtomicUsize::new(0));
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    warn!("admin: accept failed: {e}");
                    continue;
                }
            };
            if busy.fetch_add(1, Relaxed) >= MAX_CONCURRENT {
                busy.fetch_sub(1, Relaxed);
                refuse_busy(stream);
                continue;
            }
            let (worker_admin, worker_busy) = (admin.clone(), busy.clone());
            let spawned = std::thread::Builder::new()
                .name("admin-conn".into())
                .spawn(move || {
                    worker_admin.handle_logged(stream);
                    worker_busy.fetch_sub(1, Relaxed);
                });
            if let Err(e) = spawned {
                busy.fetch_sub(1, Relaxed);
                warn!("admin: cannot spawn a connection thread: {e}");
            }
        }
    }

    fn handle_logged(&self, stream: TcpStream) {
        if let Err(e) = self.handle(stream) {
            debug!("admin: connection ended: {e}");
        }
    }

    fn handle(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        // One deadline for the whole request, not per read: a client that
        // trickles a byte at a time still gets cut.
        let mut stream = DeadlineStream {
            stream,
            deadline: Instant::now() + REQUEST_DEADLINE,
        };
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let req = loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            match parse_head(&buf) {
                Head::Partial => continue,
                Head::Complete(req) => break req,
                Head::TooLarge => {
                    let detail = format!("request head must fit in {MAX_HEAD_BYTES} bytes");
                    return stream.write_all(&response::problem(
                        Problem::HeadersTooLarge,
                        &detail,
                        "",
                    ));
                }
                Head::Bad(detail) => {
                    return stream.write_all(&response::problem(Problem::BadRequest, detail, ""));
                }
            }
        };
        let body_start = req.head_len;
        let reply = self.route(&req, &mut stream, buf.split_off(body_start))?;
        stream.write_all(&reply)
    }

    fn route(
        &self,
        req: &Request,
        stream: &mut DeadlineStream,
        body_prefix: Vec<u8>,
    ) -> std::io::Result<Vec<u8>> {
        let not_allowed = |allow: &str| {
            response::problem(
                Problem::MethodNotAllowed,
                &format!("{} accepts {allow}", req.path),
                &format!("Allow: {allow}\r\n"),
            )
        };
        Ok(match (req.path.as_str(), req.method()) {
            ("/health", Method::Get) => {
                response::simple(200, "application/json", "", &self.status.health_json())
            }
            ("/stats", Method::Get) => {
                if self.authorized(req, &[&self.cfg.admin_token]) {
                    response::simple(200, "application/json", "", &self.stats_json())
                } else {
                    unauthorized("GET /stats needs Authorization: Bearer <ADMIN_TOKEN>")
                }
            }
            ("/stats", _) => not_allowed("GET"),
            ("/metrics", Method::Get) => {
                if self.authorized(req, &[&self.cfg.admin_token]) {
                    let c = self.counters.snapshot();
                    let text = metrics::render(&metrics::Sources {
                        counters: &c,
                        status: &self.status,
                        inbox_stalls: self.inbox_stalls(),
                        backend: self.backend,
                    });
                    response::simple(200, "text/plain; version=0.0.4; charset=utf-8", "", &text)
                } else {
                    unauthorized("GET /metrics needs Authorization: Bearer <ADMIN_TOKEN>")
                }
            }
            ("/metrics", _) => not_allowed("GET"),
            ("/health", _) => not_allowed("GET"),
            ("/publish", Method::Post) => {
                if !self.authorized(req, &[&self.cfg.publish_token, &self.cfg.admin_token]) {
                    unauthorized(
                        "POST /publish needs Authorization: Bearer <PUBLISH_TOKEN or ADMIN_TOKEN>",
                    )
                } else {
                    match read_body(req, stream, body_prefix)? {
                        Ok(body) => self.publish(&body),
                        Err(reply) => reply,
                    }
                }
            }
            ("/publish", _) => not_allowed("POST"),
            (path, method) if path.starts_with("/connections/") => {
                if !self.authorized(req, &[&self.cfg.admin_token]) {
                    return Ok(unauthorized(
                        "/connections needs Authorization: Bearer <ADMIN_TOKEN>",
                    ));
                }
                let rest = &path["/connections/".len()..];
                connections::route(&self.dir, rest, method)
            }
            (other, _) => {
                response::problem(Problem::NotFound, &format!("no such path: {other}"), "")
            }
        })
    }

    /// Whether the request carries one of `tokens` (when none is set, the
    /// endpoint is open: the admin listener is on loopback by default).
    fn authorized(&self, req: &Request, tokens: &[&Option<String>]) -> bool {
        let tokens: Vec<&str> = tokens
            .iter()
            .copied()
            .flatten()
            .map(String::as_str)
            .collect();
        if tokens.is_empty() {
            return true;
        }
        req.bearer().is_some_and(|b| {
            tokens
                .iter()
                .any(|t| constant_time_eq(t.as_bytes(), b.as_bytes()))
        })
    }

    fn publish(&self, body: &[u8]) -> Vec<u8> {
        match envelope::decode(body).and_then(|envs| self.hub.publish(envs, crate::ingest::now())) {
            Ok(n) => {
                self.status.published.fetch_add(n as u64, Relaxed);
                response::simple(
                    202,
                    "application/json",
                    "",
                    &format!("{{\"accepted\":{n}}}"),
                )
            }
            Err(e) => {
                self.status.rejected.fetch_add(1, Relaxed);
                self.bad_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .warn(&format!("admin: publish refused: {e}"));
                response::problem(Problem::BadRequest, &e.to_string(), "")
            }
        }
    }
}

impl Admin {
    fn inbox_stalls(&self) -> u64 {
        self.hub.inboxes().iter().map(|i| i.stalls()).sum()
    }

    /// `GET /stats`: totals over every reactor, plus ingest counters.
    fn stats_json(&self) -> String {
        let c = self.counters.snapshot();
        let stalls = self.inbox_stalls();
        let redis = match self.status.redis() {
            RedisState::Disabled => "disabled",
            RedisState::Up => "up",
            RedisState::Down => "down",
        };
        serde_json::json!({
            "connections": c.connections,
            "streaming": c.streaming,
            "accepted_total": c.accepted,
            "accept_errors_total": c.accept_errors,
            "refused_full_total": c.refused_full,
            "slow_disconnects_total": c.disconnects(crate::reactor::stats::Why::Slow),
            "delivered_total": c.delivered,
            "inbox_stalls_total": stalls,
            "io_backend": self.backend,
            "published_total": self.status.published.load(Relaxed),
            "rejected_total": self.status.rejected.load(Relaxed),
            "redis": redis,
            "redis_connects_total": self.status.redis_connects.load(Relaxed),
            "reactors": c.per_reactor,
        })
        .to_string()
    }
}

fn unauthorized(detail: &str) -> Vec<u8> {
    response::problem(
        Problem::Unauthorized,
        detail,
        "WWW-Authenticate: Bearer\r\n",
    )
}

/// Reads a `Content-Length` body. The inner `Err` is a ready refusal.
fn read_body(
    req: &Request,
    stream: &mut DeadlineStream,
    mut body: Vec<u8>,
) -> std::io::Result<Result<Vec<u8>, Vec<u8>>> {
    let Some(len) = req.content_length else {
        return Ok(Err(response::problem(
            Problem::BadRequest,
            "POST /publish needs a Content-Length body",
            "",
        )));
    };
    if len > MAX_BODY_BYTES {
        return Ok(Err(response::problem(
            Problem::PayloadTooLarge,
            &format!("body over {MAX_BODY_BYTES} bytes"),
            "",
        )));
    }
    if body.len() < len {
        let have = body.len();
        body.resize(len, 0);
        stream.read_exact(&mut body[have..])?;
    }
    body.truncate(len);
    Ok(Ok(body))
}

/// A connection whose reads all share one deadline.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request not complete within its deadline",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// Over [`MAX_CONCURRENT`]: a quick 503 instead of a thread.
fn refuse_busy(mut stream: TcpStream) {
    let body = response::problem(
        Problem::ServerFull,
        "too many admin connections at once",
        "Retry-After: 1\r\n",
    );
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&body);
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
