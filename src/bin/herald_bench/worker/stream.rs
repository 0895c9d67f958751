//! Socket events and state changes: the connect completing, the response
//! head, the event stream fed to the parser, and the ways a listener ends
//! (failure, retry with backoff in a storm, dropped stream, deadline).
//!
//! Contract: leaving `Connecting` or `Head` gives back the `inflight` slot
//! `connect` took; a first-round listener leaves `unsettled` exactly once
//! (streaming or failed), and a storm listener counts once as back or given
//! up.

use std::cmp::Reverse;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{self, sockopt};

use crate::bench::clock::unix_us;

use super::tally::ConnView;
use super::{Conn, State, Worker};

/// A response head larger than this is refused.
const MAX_HEAD: usize = 16 * 1024;
/// Reconnect attempts per listener in a storm, and the first backoff.
const RECONNECT_TRIES: u32 = 5;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
/// `--follow`: the wait before a reconnect when the server sent no `retry:`
/// (an `EventSource`'s usual default).
const FOLLOW_RETRY_MS: u64 = 3000;

impl Worker {
    pub(super) fn on_socket(&mut self, i: u32, flags: EpollFlags) {
        let Some(conn) = self.conns.get(i as usize) else {
            return;
        };
        let broken = flags.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
        match conn.state {
            State::Connecting if broken || flags.contains(EpollFlags::EPOLLOUT) => {
                self.on_connected(i)
            }
            State::Head | State::Streaming => self.read(i),
            _ => {}
        }
    }

    fn on_connected(&mut self, i: u32) {
        let now = Instant::now();
        let Some(fd) = self.conns[i as usize].fd.as_ref() else {
            return;
        };
        let err = socket::getsockopt(fd, sockopt::SocketError).unwrap_or(libc::EIO);
        if err != 0 {
            return self.fail(i, format!("connect: {}", Errno::from_raw(err).desc()), now);
        }
        let req = match self.request(i) {
            Ok(r) => r,
            Err(e) => return self.fail(i, e, now),
        };
        let fd = self.conns[i as usize].fd.as_ref().expect("checked above");
        match nix::unistd::write(fd, &req) {
            Ok(n) if n == req.len() => {}
            Ok(_) => return self.fail(i, "request: short write".into(), now),
            Err(e) => return self.fail(i, format!("request: {}", e.desc()), now),
        }
        self.conns[i as usize].state = State::Head;
        self.read(i); // the response may be in already (edge-triggered)
    }

    fn read(&mut self, i: u32) {
        let mut buf = std::mem::take(&mut self.buf);
        while let Some(fd) = self.conns[i as usize].fd.as_ref() {
            match nix::unistd::read(fd.as_fd(), &mut buf) {
                Ok(0) => {
                    self.ended(i, "closed by server");
                    break;
                }
                Ok(n) => {
                    self.bytes_read += n as u64;
                    if !self.received(i, &buf[..n]) {
                        break;
                    }
                }
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    self.ended(i, e.desc());
                    break;
                }
            }
        }
        self.buf = buf;
    }

    /// Handles bytes read; false when the connection was given up on.
    fn received(&mut self, i: u32, bytes: &[u8]) -> bool {
        let now = Instant::now();
        if self.conns[i as usize].state == State::Streaming {
            self.feed(i, bytes);
            return true;
        }
        let conn = &mut self.conns[i as usize];
        conn.head.extend_from_slice(bytes);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&conn.head) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if conn.head.len() <= MAX_HEAD => return true,
            Ok(httparse::Status::Partial) => {
                self.fail(i, "response head too large".into(), now);
                return false;
            }
            Err(e) => {
                self.fail(i, format!("bad response head: {e}"), now);
                return false;
            }
        };
        let code = resp.code.unwrap_or(0);
        let sse = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("content-type")
                && h.value
                    .get(..17)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"text/event-stream"))
        });
        if code != 200 {
            self.fail(i, format!("HTTP {code}"), now);
            return false;
        }
        if !sse {
            self.fail(i, "HTTP 200 but not text/event-stream".into(), now);
            return false;
        }
        let rest = conn.head.split_off(len);
        conn.head = Vec::new();
        self.now_streaming(i);
        self.feed(i, &rest);
        true
    }

    fn feed(&mut self, i: u32, bytes: &[u8]) {
        let now_us = unix_us();
        let global = self.plan.first + u64::from(i);
        let Worker {
            conns,
            tally,
            targets,
            ..
        } = self;
        let Conn {
            parser,
            armed,
            next_seq,
            ..
        } = &mut conns[i as usize];
        let armed = *armed;
        parser.feed(bytes, |e| {
            let view = ConnView {
                armed,
                next_seq: &mut *next_seq,
            };
            tally.on_event(e, now_us, global, view, targets)
        });
    }

    // ----- state changes ---------------------------------------------------------

    fn now_streaming(&mut self, i: u32) {
        let conn = &mut self.conns[i as usize];
        conn.state = State::Streaming;
        self.inflight -= 1;
        self.progress.open += 1;
        if conn.in_storm {
            conn.in_storm = false;
            if let Some(st) = &mut self.storm {
                st.back += 1;
            }
            self.check_storm_done();
        } else {
            self.unsettled -= 1;
        }
    }

    /// An attempt failed before streaming: count it, and retry a storm
    /// reconnect after a backoff.
    pub(super) fn fail(&mut self, i: u32, reason: String, now: Instant) {
        let conn = &mut self.conns[i as usize];
        if matches!(conn.state, State::Connecting | State::Head) {
            self.inflight -= 1;
        }
        conn.fd = None;
        conn.head = Vec::new();
        conn.state = State::Failed;
        if !conn.in_storm {
            *self.failures.entry(reason).or_default() += 1;
            self.progress.failed += 1;
            self.unsettled -= 1;
            return;
        }
        *self
            .failures
            .entry(format!("reconnect: {reason}"))
            .or_default() += 1;
        if conn.tries < RECONNECT_TRIES {
            let backoff = RECONNECT_BACKOFF * (1 << conn.tries);
            conn.tries += 1;
            conn.state = State::Queued;
            self.retries.push(Reverse((now + backoff, i)));
        } else {
            conn.in_storm = false;
            if let Some(st) = &mut self.storm {
                st.given_up += 1;
            }
            self.check_storm_done();
        }
    }

    /// The stream of a connection ended (EOF or error).
    fn ended(&mut self, i: u32, why: &str) {
        match self.conns[i as usize].state {
            State::Head => {
                let reason = format!("{why} before the response head");
                self.fail(i, reason, Instant::now());
            }
            State::Streaming if self.plan.follow && !self.halted => {
                // As an EventSource: back after the last `retry:`, with
                // Last-Event-ID; failures retried as in a storm.
                let conn = &mut self.conns[i as usize];
                let wait = conn.parser.retry_ms().unwrap_or(FOLLOW_RETRY_MS);
                conn.parser.restart();
                conn.fd = None;
                conn.state = State::Queued;
                conn.in_storm = true;
                conn.tries = 0;
                self.progress.open -= 1;
                self.progress.dropped += 1;
                *self.failures.entry(format!("followed: {why}")).or_default() += 1;
                let due = Instant::now() + Duration::from_millis(wait);
                self.retries.push(Reverse((due, i)));
            }
            State::Streaming => {
                let conn = &mut self.conns[i as usize];
                conn.fd = None;
                conn.state = State::Dropped;
                self.progress.open -= 1;
                self.progress.dropped += 1;
                *self
                    .failures
                    .entry(format!("stream ended: {why}"))
                    .or_default() += 1;
            }
            _ => {}
        }
    }

    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(at, i, attempt)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            let conn = &self.conns[i as usize];
            if conn.attempt != attempt {
                continue;
            }
            let reason = match conn.state {
                State::Connecting => "timeout: connect",
                State::Head => "timeout: response head",
                _ => continue,
            };
            self.fail(i, reason.into(), now);
        }
    }

    pub(super) fn check_storm_done(&mut self) {
        if let Some(st) = &mut self.storm {
            if st.done_unix_us.is_none() && st.back + st.given_up == st.closed {
                st.done_unix_us = Some(unix_us());
            }
        }
    }
}
