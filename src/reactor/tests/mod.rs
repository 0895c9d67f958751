//! The core driven with no socket and no clock: a fake [`Transport`] records
//! every system call the core asks for, the tests publish through a real
//! [`Hub`] into a real inbox, feed request bytes, move `now` by hand and
//! read back what reached each connection's "socket".
//!
//! The fake runs in readiness mode (`Sent::Now`, taking at most `take` bytes
//! a send, like a full socket) or in completion mode (`Sent::Later`; the
//! test then reports progress through `Core::on_sent`, as io_uring would).
//!
//! This file holds the fake and the rig; `stream` tests requests, replay
//! and slot reuse, `output` the write queue, the slow-listener cut and
//! heartbeats, `expiry` streams ending with their tokens.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Core, Out, Sent, Shared, Stats, Transport};
use crate::config::Config;
use crate::conn::auth::Verifier;
use crate::hub::envelope::decode;
use crate::hub::inbox::inbox;
use crate::hub::sse::{encode_event, Payload};
use crate::hub::status::IngestStatus;
use crate::hub::Hub;

/// The reactor's monotonic clock at start: a whole second, so the wheel's
/// seconds and the core's tenths line up with the numbers in the tests.
const T0: u64 = 1_000_000;
/// Wall clock handed to the hub for server-assigned ids.
const UNIX_MS: u64 = 1_700_000_000_000;
const SECRET: &str = "reactor-test-secret";
const GET: &str = "GET /sse HTTP/1.1\r\nHost: herald\r\n\r\n";

// ----- the fake transport ------------------------------------------------------

/// One system call the core caused, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// `offered` bytes handed over, `taken` of them taken by the "kernel"
    /// (all of them in completion mode).
    Send {
        token: u64,
        offered: usize,
        taken: usize,
    },
    ShutdownWrite(RawFd),
    Abort(RawFd),
    Release(u64),
}

#[derive(Default)]
struct Fake {
    /// Readiness mode: bytes the kernel takes per send (`None`: all).
    take: Option<usize>,
    /// Completion mode: every send is taken whole and reported later.
    completion: bool,
    calls: Vec<Call>,
    /// What reached each connection's socket, concatenated in order.
    wire: HashMap<u64, Vec<u8>>,
    registered: Vec<u64>,
}

impl Transport for Fake {
    fn register(&mut self, _fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.registered.push(token);
        Ok(())
    }

    fn send(&mut self, _fd: BorrowedFd<'_>, token: u64, out: &[Out<'_>]) -> io::Result<Sent> {
        let offered: usize = out.iter().map(|o| o.bytes().len()).sum();
        let taken = match (self.completion, self.take) {
            (true, _) | (false, None) => offered,
            (false, Some(n)) => n.min(offered),
        };
        let wire = self.wire.entry(token).or_default();
        let mut left = taken;
        for o in out {
            let b = o.bytes();
            let n = left.min(b.len());
            wire.extend_from_slice(&b[..n]);
            left -= n;
        }
        self.calls.push(Call::Send {
            token,
            offered,
            taken,
        });
        Ok(if self.completion {
            Sent::Later
        } else {
            Sent::Now(taken)
        })
    }

    fn peer_ip(&self, _fd: BorrowedFd<'_>) -> Option<std::net::IpAddr> {
        Some(std::net::Ipv4Addr::LOCALHOST.into())
    }

    fn clock_ms(&self) -> u64 {
        T0
    }

    fn streaming(&mut self, _fd: BorrowedFd<'_>, _token: u64) {}

    fn shutdown_write(&mut self, fd: BorrowedFd<'_>) {
        self.calls.push(Call::ShutdownWrite(fd.as_raw_fd()));
    }

    fn abort_on_close(&mut self, fd: BorrowedFd<'_>) {
        self.calls.push(Call::Abort(fd.as_raw_fd()));
    }

    fn release(&mut self, _fd: std::os::fd::OwnedFd, token: u64) {
        self.calls.push(Call::Release(token));
    }
}

// ----- the rig ---------------------------------------------------------------

struct Rig {
    core: Core<Fake>,
    hub: Hub,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    now: u64,
}

/// A core at `T0` with anonymous listeners allowed, HS256 tokens accepted,
/// and `pairs` on top of that.
fn rig(pairs: &[(&str, &str)]) -> Rig {
    rig_with(pairs, |_| {})
}

/// [`rig`], with `link` setting what the server would link in (where
/// listings and registry records go).
fn rig_with(pairs: &[(&str, &str)], link: impl FnOnce(&mut Shared)) -> Rig {
    let mut env: HashMap<String, String> = [("ALLOW_ANONYMOUS", "true"), ("JWT_SECRET", SECRET)]
        .iter()
        .chain(pairs)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.entry("HEARTBEAT_MODE".into())
        .or_insert_with(|| "comment".into());
    let cfg = Config::from_lookup(&move |k| env.get(k).cloned()).expect("config");
    let verifier = Verifier::from_config(&cfg).expect("verifier");
    let status = Arc::new(IngestStatus::new(false));
    let mut shared = Shared::new(Arc::new(cfg), verifier, status, None);
    link(&mut shared);
    let shared = Arc::new(shared);
    let stats = Arc::new(Stats::default());
    let (tx, rx, _wake) = inbox().expect("inbox");
    let core = Core::new(
        Fake::default(),
        0,
        shared.clone(),
        stats.clone(),
        rx,
        64,
        T0,
    );
    Rig {
        core,
        // No frame limit here: the tests size events against the core's.
        hub: Hub::new(vec![tx], usize::MAX),
        shared,
        stats,
        now: T0,
    }
}

impl Rig {
    fn fake(&mut self) -> &mut Fake {
        self.core.transport()
    }

    fn connect(&mut self) -> u64 {
        let fd: OwnedFd = std::fs::File::open("/dev/null").expect("/dev/null").into();
        self.core.on_accept(fd, self.now).expect("accepted")
    }

    fn input(&mut self, token: u64, bytes: &str) -> bool {
        self.core.on_input(token, bytes.as_bytes(), self.now)
    }

    /// A connection that sent `request` in one piece and is streaming.
    fn subscribe(&mut self, request: &str) -> u64 {
        let streaming = self.streaming();
        let t = self.connect();
        assert!(self.input(t, request), "the stream was closed at once");
        assert_eq!(self.streaming(), streaming + 1, "no stream started");
        t
    }

    fn streaming(&self) -> usize {
        self.stats.streaming.load(Ordering::Relaxed)
    }

    fn slow_disconnects(&self) -> u64 {
        self.stats.disconnects(super::stats::Why::Slow)
    }

    fn publish(&mut self, json: &str) {
        let envelopes = decode(json.as_bytes()).expect("envelope");
        self.hub
            .publish(
                envelopes,
                crate::hub::Now {
                    unix_ms: UNIX_MS,
                    mono_ms: self.now,
                },
            )
            .expect("published");
    }

    /// Publishes and lets the reactor drain its inbox, as a driver would on
    /// the inbox's wake-up.
    fn deliver(&mut self, json: &str) {
        self.publish(json);
        while self.core.drain_inbox(self.now) {}
    }

    fn tick(&mut self, now_ms: u64) {
        self.now = now_ms;
        self.core
            .on_tick(now_ms, UNIX_MS / 1000 + (now_ms - T0) / 1000);
    }

    fn is_open(&self, token: u64) -> bool {
        self.core.fd(token).is_some()
    }

    fn raw_fd(&self, token: u64) -> RawFd {
        self.core.fd(token).expect("open").as_raw_fd()
    }

    fn wire(&mut self, token: u64) -> String {
        let bytes = self.fake().wire.get(&token).cloned().unwrap_or_default();
        String::from_utf8(bytes).expect("utf-8 output")
    }

    fn ids(&mut self, token: u64) -> Vec<String> {
        event_ids(&self.wire(token))
    }

    /// The sends made to `token`: (offered, taken).
    fn sends(&mut self, token: u64) -> Vec<(usize, usize)> {
        self.fake()
            .calls
            .iter()
            .filter_map(|c| match *c {
                Call::Send {
                    token: t,
                    offered,
                    taken,
                } if t == token => Some((offered, taken)),
                _ => None,
            })
            .collect()
    }

    fn releases(&mut self, token: u64) -> usize {
        let calls = &self.fake().calls;
        calls.iter().filter(|c| **c == Call::Release(token)).count()
    }

    fn shutdowns(&mut self, fd: RawFd) -> usize {
        let calls = &self.fake().calls;
        calls
            .iter()
            .filter(|c| **c == Call::ShutdownWrite(fd))
            .count()
    }

    /// Asserts `token` was cut as a slow listener (the `n`th so far) and
    /// that nothing of it is left.
    fn assert_cut_slow(&mut self, token: u64, n: u64) {
        assert!(!self.is_open(token), "the slow listener is still open");
        assert_eq!(self.slow_disconnects(), n);
        assert_eq!(self.releases(token), 1, "release() not called once");
        // Cut with a reset, set up right before the release.
        let calls = &self.fake().calls;
        let release = calls
            .iter()
            .position(|c| *c == Call::Release(token))
            .expect("released");
        assert!(
            matches!(calls[release - 1], Call::Abort(_)),
            "not aborted before release: {:?}",
            &calls[release.saturating_sub(2)..]
        );
        assert_eq!(self.streaming(), 0);
        assert_eq!(self.stats.open(), 0);
        assert_eq!(self.shared.open.load(Ordering::Relaxed), 0);
        // Later events and readiness for it do nothing.
        let calls = self.fake().calls.len();
        self.deliver(&event("late"));
        self.core.on_writable(token, self.now);
        assert_eq!(self.fake().calls.len(), calls);
    }
}

// ----- events, requests and SSE parsing ---------------------------------------

/// A broadcast event with its own id.
fn event(id: &str) -> String {
    format!(r#"{{"id":"{id}","message":"m-{id}"}}"#)
}

/// A broadcast event whose SSE frame is exactly `size` bytes.
fn event_of_size(id: &str, size: usize) -> String {
    // "id: {id}\ndata: {msg}\n\n"
    let msg = "x".repeat(size - id.len() - 13);
    assert_eq!(
        encode_event(Some(id), None, Payload::Text(&msg)).len(),
        size,
        "frame size formula"
    );
    format!(r#"{{"id":"{id}","message":"{msg}"}}"#)
}

fn frame_len(id: &str) -> usize {
    encode_event(Some(id), None, Payload::Text(&format!("m-{id}"))).len()
}

fn jwt(sub: &str) -> String {
    jwt_claims(serde_json::json!({"sub": sub}))
}

/// A token of `sub` in app `iss`.
fn jwt_in(sub: &str, iss: &str) -> String {
    jwt_claims(serde_json::json!({"sub": sub, "iss": iss}))
}

fn jwt_claims(mut claims: serde_json::Value) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    claims["exp"] = (crate::sys::clock::unix_secs() + 600).into();
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("jwt")
}

fn request_as(user: &str) -> String {
    format!("GET /sse?token={} HTTP/1.1\r\n\r\n", jwt(user))
}

/// The SSE body: what follows the response head.
fn body(wire: &str) -> &str {
    wire.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The SSE blocks of the body (events, comments, `retry:`), in order.
fn blocks(wire: &str) -> Vec<&str> {
    body(wire).split("\n\n").filter(|b| !b.is_empty()).collect()
}

/// The `id:` of each event, in order.
fn event_ids(wire: &str) -> Vec<String> {
    blocks(wire)
        .iter()
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("id: ")))
        .map(str::to_string)
        .collect()
}

fn pings(wire: &str) -> usize {
    blocks(wire).iter().filter(|b| **b == ": ping").count()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

mod drain;
mod expiry;
mod handoff;
mod output;
mod stream;
