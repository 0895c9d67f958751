//! The admin listener's front: one thread that accepts, reads request
//! heads, and answers what a head alone decides, so strangers cannot choke
//! it (issue #11).
//!
//! Contract:
//! - Heads are read non-blocking by one `poll(2)` loop, under
//!   `HEADER_TIMEOUT_MS` (408 when part of a head came, a silent close when
//!   nothing did); at most [`max_heads`] at once (fewer under a small
//!   open-file limit, so the admin listener never runs the process out of
//!   descriptors itself), the oldest dropped beyond.
//!   A stalled client costs a descriptor and its head bytes, not a thread.
//! - `GET /health`, refusals (401 on the head, before any body is read; 404,
//!   405, 413 on a declared `Content-Length`) are answered right there and
//!   take no worker. A refused request's unread body is drained, not reset.
//! - Everything else goes to [`WORKERS`] worker threads through a queue of
//!   [`QUEUE`]: only requests that passed their token check ever wait for a
//!   worker, so a slow unauthenticated client never delays an authorized
//!   one. A full queue answers 503 with `Retry-After`.
//! - Out of descriptors (`EMFILE`/`ENFILE`): a reserved descriptor is freed
//!   to accept and answer the queued client 503 `server_full`, accepting
//!   pauses briefly (no spinning), and the log says so once per interval.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use log::warn;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::{Admin, Job, Route};
use crate::conn::http::{parse_head, Head, Method, MAX_HEAD_BYTES};
use crate::conn::response::{self, Problem};
use crate::ingest::RateLimitedLog;

/// Connections whose head is being read (or whose refusal drains) at most.
pub const MAX_HEADS: usize = 1024;

/// [`MAX_HEADS`], or an eighth of a small open-file limit `nofile`.
pub fn max_heads(nofile: usize) -> usize {
    MAX_HEADS.min(nofile / 8).max(8)
}
/// Worker threads, and requests queued for them at most.
pub const WORKERS: usize = 8;
pub const QUEUE: usize = 64;
/// How long a refused request's unread body is drained before the close.
const DRAIN: Duration = Duration::from_secs(2);
/// How long accepting pauses when the process is out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// A connection the front thread holds.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    deadline: Instant,
    /// Answered: reading only to drain until EOF or the deadline.
    draining: bool,
}

/// Runs the front until the process exits, holding at most `max_heads`
/// connections ([`max_heads`]).
pub fn serve(admin: Arc<Admin>, listener: TcpListener, max_heads: usize) {
    let (jobs, queue) = crossbeam_channel::bounded::<Job>(QUEUE);
    for i in 0..WORKERS {
        let (admin, queue) = (admin.clone(), queue.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("admin-{i}"))
            .spawn(move || queue.iter().for_each(|job| admin.work(job)));
        if let Err(e) = spawned {
            warn!("admin: cannot spawn worker {i}: {e}");
        }
    }
    if let Err(e) = listener.set_nonblocking(true) {
        warn!("admin: listener stays blocking ({e}); heads are still bounded");
    }
    let mut front = Front {
        admin,
        jobs,
        max_heads,
        conns: Vec::new(),
        spare: spare_fd(),
        paused_until: None,
        fd_log: RateLimitedLog::new(Duration::from_secs(10)),
    };
    loop {
        front.turn(&listener);
    }
}

struct Front {
    admin: Arc<Admin>,
    jobs: Sender<Job>,
    max_heads: usize,
    conns: Vec<Conn>,
    /// A descriptor kept free for answering when the process runs out.
    spare: Option<std::fs::File>,
    paused_until: Option<Instant>,
    fd_log: RateLimitedLog,
}

impl Front {
    fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.admin.cfg.header_timeout_ms)
    }

    /// Waits for activity (or the next deadline), then accepts, reads and
    /// expires.
    fn turn(&mut self, listener: &TcpListener) {
        let now = Instant::now();
        let accepting = self.paused_until.is_none_or(|t| t <= now);
        let next = self
            .conns
            .iter()
            .map(|c| c.deadline)
            .chain(self.paused_until)
            .min()
            .map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now));
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(self.conns.len() + 1);
        fds.push(PollFd::new(
            listener.as_fd(),
            if accepting {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            },
        ));
        fds.extend(
            self.conns
                .iter()
                .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
        );
        let timeout =
            PollTimeout::try_from(next.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX);
        if nix::poll::poll(&mut fds, timeout).is_err() {
            return; // EINTR: go round again
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        // Read the ready ones (newest first, so removal keeps indices valid).
        for i in (0..self.conns.len()).rev() {
            if ready[i + 1] {
                self.read(i);
            }
        }
        if ready[0] {
            self.accept(listener);
        }
        self.expire();
    }

    fn accept(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.conns.len() >= self.max_heads {
                        self.conns.remove(0); // the oldest head: dropped
                    }
                    let deadline = Instant::now() + self.header_timeout();
                    self.conns.push(Conn {
                        stream,
                        buf: Vec::new(),
                        deadline,
                        draining: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    self.out_of_fds(listener);
                    return;
                }
                Err(e) => {
                    self.fd_log.warn(&format!("admin: accept failed: {e}"));
                    return;
                }
            }
        }
    }

    /// The reserve-descriptor technique: free the spare, accept and answer
    /// the waiting client 503, take the spare back, pause accepting.
    fn out_of_fds(&mut self, listener: &TcpListener) {
        self.fd_log.warn(
            "admin: out of file descriptors (raise LimitNOFILE); answering 503 and pausing accept",
        );
        self.spare = None;
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(&response::busy("out of file descriptors", ""));
        }
        self.spare = spare_fd();
        self.paused_until = Some(Instant::now() + ACCEPT_PAUSE);
    }

    fn read(&mut self, i: usize) {
        let mut chunk = [0u8; 4096];
        let conn = &mut self.conns[i];
        let n = match conn.stream.read(&mut chunk) {
            Ok(0) => {
                self.conns.swap_remove(i);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => {
                self.conns.swap_remove(i);
                return;
            }
        };
        if conn.draining {
            return;
        }
        conn.buf.extend_from_slice(&chunk[..n]);
        let req = match parse_head(&conn.buf) {
            Head::Partial => return,
            Head::Complete(req) => req,
            Head::TooLarge => {
                let detail = format!("request head must fit in {MAX_HEAD_BYTES} bytes");
                return self.answer(i, response::problem(Problem::HeadersTooLarge, &detail, ""));
            }
            Head::Bad(detail) => {
                return self.answer(i, response::problem(Problem::BadRequest, detail, ""));
            }
        };
        let head_only = req.method() == Method::Head;
        match self.admin.classify(&req) {
            Route::Answer(reply) => {
                let reply = if head_only {
                    response::head_only(reply)
                } else {
                    reply
                };
                self.answer(i, reply);
            }
            route => {
                let conn = self.conns.swap_remove(i);
                let body = conn.buf[req.head_len..].to_vec();
                let job = Job {
                    stream: conn.stream,
                    req,
                    route,
                    body,
                };
                if let Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) =
                    self.jobs.try_send(job)
                {
                    let mut stream = job.stream;
                    let _ = stream.write_all(&response::busy("the admin listener is busy", ""));
                }
            }
        }
    }

    /// Sends a final answer on the head, then drains what the client still
    /// sends (an unread body) until it closes or [`DRAIN`] passes, so the
    /// answer is not lost to a reset.
    fn answer(&mut self, i: usize, reply: Vec<u8>) {
        let conn = &mut self.conns[i];
        if conn.stream.write_all(&reply).is_err() {
            self.conns.swap_remove(i);
            return;
        }
        let _ = conn.stream.shutdown(Shutdown::Write);
        conn.draining = true;
        conn.buf = Vec::new();
        conn.deadline = Instant::now() + DRAIN;
    }

    /// Heads not complete in time get 408 (or a silent close when nothing
    /// came); drains past their time are closed.
    fn expire(&mut self) {
        let now = Instant::now();
        let mut i = 0;
        while i < self.conns.len() {
            let c = &self.conns[i];
            if c.deadline > now {
                i += 1;
                continue;
            }
            if c.draining || c.buf.is_empty() {
                self.conns.swap_remove(i);
                continue;
            }
            self.answer(
                i,
                response::problem(
                    Problem::RequestTimeout,
                    "request head not complete within HEADER_TIMEOUT_MS",
                    "",
                ),
            );
            i += 1;
        }
    }
}

/// A descriptor to give back when `accept` fails for want of one.
fn spare_fd() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}
