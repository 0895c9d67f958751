//! Starting connections: pacing by the plan's rate and in-flight cap, the
//! non-blocking socket (bound to a `--src` address when given), and the
//! request with a freshly minted token and `Last-Event-ID`.
//!
//! Contract: every started attempt is `Connecting` with a deadline queued,
//! or has already gone through [`Worker::fail`].

use std::cmp::Reverse;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nix::errno::Errno;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::{
    self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrStorage,
};

use crate::bench::args::TokenIn;
use crate::bench::clock::unix_ms;

use super::{State, Worker};

/// Connection starts per loop turn, so reads are never starved.
const STARTS_PER_TURN: usize = 512;
/// Lifetime of minted tokens.
const TOKEN_TTL_S: u64 = 86_400;

impl Worker {
    pub(super) fn start_due(&mut self, now: Instant) {
        while let Some(&Reverse((due, i))) = self.retries.peek() {
            if due > now {
                break;
            }
            self.retries.pop();
            self.queue.push_back(i);
        }
        let budget = if now < self.pace_start {
            0
        } else if self.plan.rate > 0.0 {
            let allowed =
                (self.plan.rate * now.duration_since(self.pace_start).as_secs_f64()) as u64 + 1;
            allowed.saturating_sub(self.paced)
        } else {
            u64::MAX
        };
        let room = self.plan.inflight.saturating_sub(self.inflight);
        let n = budget.min(room).min(STARTS_PER_TURN as u64);
        for _ in 0..n {
            let Some(i) = self.queue.pop_front() else {
                break;
            };
            self.paced += 1;
            self.start(i, now);
        }
    }

    fn start(&mut self, i: u32, now: Instant) {
        self.progress.attempted += 1;
        let conn = &mut self.conns[i as usize];
        conn.attempt = conn.attempt.wrapping_add(1);
        let attempt = conn.attempt;
        match self.open_socket(i) {
            Ok(fd) => {
                let conn = &mut self.conns[i as usize];
                conn.fd = Some(fd);
                conn.state = State::Connecting;
                self.inflight += 1;
                let limit = Duration::from_millis(self.plan.connect_timeout_ms);
                self.deadlines.push_back((now + limit, i, attempt));
            }
            Err(reason) => self.fail(i, reason, now),
        }
    }

    /// A non-blocking socket, bound to this listener's source address, with
    /// `connect()` under way and registered with epoll.
    fn open_socket(&self, i: u32) -> Result<OwnedFd, String> {
        let family = match self.plan.dst {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let fd = socket::socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| format!("socket: {}", e.desc()))?;
        if !self.plan.src.is_empty() {
            let global = self.plan.first + u64::from(i);
            let src = self.plan.src[(global % self.plan.src.len() as u64) as usize];
            // Let connect() pick the port per 4-tuple, so each source address
            // serves up to ~28K (or the port range) listeners per destination.
            socket::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)
                .map_err(|e| format!("IP_BIND_ADDRESS_NO_PORT: {}", e.desc()))?;
            socket::bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0)))
                .map_err(|e| format!("bind {src}: {}", e.desc()))?;
        }
        match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(self.plan.dst)) {
            Ok(()) | Err(Errno::EINPROGRESS) => {}
            Err(e) => return Err(format!("connect: {}", e.desc())),
        }
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        self.epoll
            .add(&fd, EpollEvent::new(flags, u64::from(i)))
            .map_err(|e| format!("epoll add: {}", e.desc()))?;
        Ok(fd)
    }

    /// The request for listener `i`: a fresh token, and `Last-Event-ID` when
    /// reconnecting.
    pub(super) fn request(&self, i: u32) -> Result<Vec<u8>, String> {
        let mut path = self.plan.path.clone();
        let mut extra = String::new();
        if let Some(key) = &self.key {
            let token = self.mint(i, key)?;
            match self.plan.token_in {
                TokenIn::Query => {
                    path.push(if path.contains('?') { '&' } else { '?' });
                    path.push_str("token=");
                    path.push_str(&token);
                }
                TokenIn::Header => extra = format!("Authorization: Bearer {token}\r\n"),
            }
        }
        for h in &self.plan.headers {
            extra.push_str(h);
            extra.push_str("\r\n");
        }
        let last = self.conns[i as usize].parser.last_event_id();
        if !last.is_empty() {
            extra.push_str(&format!("Last-Event-ID: {last}\r\n"));
        }
        Ok(format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n{extra}\r\n",
            self.plan.host
        )
        .into_bytes())
    }

    fn mint(&self, i: u32, key: &EncodingKey) -> Result<String, String> {
        #[derive(serde::Serialize)]
        struct Claims {
            sub: String,
            exp: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            iss: Option<String>,
        }
        let n = self.plan.first + u64::from(i);
        let claims = Claims {
            sub: format!("u{n}"),
            exp: unix_ms() / 1000 + TOKEN_TTL_S,
            iss: (self.plan.jwt_apps > 0).then(|| format!("app{}", n % self.plan.jwt_apps)),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| format!("jwt: {e}"))
    }
}
