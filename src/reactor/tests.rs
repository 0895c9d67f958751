//! The core driven with no socket and no clock: a fake [`Transport`] records
//! every system call the core asks for, the tests publish through a real
//! [`Hub`] into a real inbox, feed request bytes, move `now` by hand and
//! read back what reached each connection's "socket".
//!
//! The fake runs in readiness mode (`Sent::Now`, taking at most `take` bytes
//! a send, like a full socket) or in completion mode (`Sent::Later`; the
//! test then reports progress through `Core::on_sent`, as io_uring would).

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
    let shared = Arc::new(Shared::new(Arc::new(cfg), verifier, status, None));
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
    use jsonwebtoken::{encode, EncodingKey, Header};
    let claims = serde_json::json!({"sub": sub, "exp": crate::sys::clock::unix_secs() + 600});
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

// ----- requests --------------------------------------------------------------

#[test]
fn a_head_split_in_three_reads_streams_only_after_the_last() {
    let mut r = rig(&[("RETRY_MS", "1500")]);
    let t = r.connect();
    assert_eq!(r.fake().registered, vec![t]);
    assert!(r.input(t, "GET /sse HT"));
    assert!(r.input(t, "TP/1.1\r\nHost: herald\r\nAccept: text/event-stream\r\n"));
    assert!(
        r.fake().calls.is_empty(),
        "sent before the head was complete"
    );
    assert_eq!(r.streaming(), 0);

    assert!(r.input(t, "\r\n"));
    assert_eq!(r.streaming(), 1);
    let wire = r.wire(t);
    assert_eq!(r.sends(t), vec![(wire.len(), wire.len())], "one send");
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
    assert!(
        wire.contains("\r\nContent-Type: text/event-stream"),
        "{wire}"
    );
    assert_eq!(body(&wire), "retry: 1500\n\n");

    // Input after the head is ignored; the stream goes on.
    assert!(r.input(t, "GET /nope HTTP/1.1\r\n\r\n"));
    assert_eq!(r.sends(t).len(), 1);
    r.deliver(&event("e1"));
    assert_eq!(r.ids(t), ids(&["e1"]));
}

#[test]
fn header_timeout_answers_a_partial_head_and_drops_a_silent_connection() {
    let mut r = rig(&[("HEADER_TIMEOUT_MS", "1000")]);
    let partial = r.connect();
    let silent = r.connect();
    assert!(r.input(partial, "GET /sse HTTP/1.1\r\n"));
    r.tick(T0 + 999);
    assert!(r.is_open(partial) && r.is_open(silent));
    assert!(r.fake().calls.is_empty());

    let fd = r.raw_fd(partial);
    r.tick(T0 + 1000);
    assert!(r.wire(partial).starts_with("HTTP/1.1 408 "));
    assert_eq!(r.shutdowns(fd), 1, "the 408 is out: half-close");
    assert!(
        r.is_open(partial),
        "lingers so the 408 is not lost to a reset"
    );
    assert!(!r.is_open(silent));
    assert_eq!(r.releases(silent), 1);
    assert!(
        r.sends(silent).is_empty(),
        "a silent connection gets nothing"
    );
}

// ----- the slow-listener cut ---------------------------------------------------

const LIMIT: usize = 4096;

/// A streaming listener whose socket takes nothing (readiness) or whose
/// sends never complete (completion), and the bytes of its response head,
/// all of them unsent.
fn stuck_listener(completion: bool) -> (Rig, u64, usize) {
    let mut r = rig(&[("MAX_PENDING_BYTES", "4096")]);
    if completion {
        r.fake().completion = true;
    } else {
        r.fake().take = Some(0);
    }
    let t = r.subscribe(GET);
    let sends = r.sends(t);
    assert_eq!(sends.len(), 1);
    let head = sends[0].0;
    assert!(head > 100 && head < 1000, "head of {head} bytes");
    (r, t, head)
}

#[test]
fn a_slow_listener_is_cut_exactly_past_max_pending_bytes_readiness() {
    for over in [0, 1] {
        let (mut r, t, head) = stuck_listener(false);
        assert_eq!(r.sends(t), vec![(head, 0)]);
        r.deliver(&event_of_size("a", 1000));
        r.deliver(&event_of_size("b", LIMIT - head - 1000 + over));
        if over == 1 {
            // One byte past the limit.
            r.assert_cut_slow(t, 1);
            continue;
        }
        // Unsent bytes == MAX_PENDING_BYTES: still a listener.
        assert!(r.is_open(t));
        assert_eq!(r.slow_disconnects(), 0);
        assert_eq!(r.releases(t), 0);
        assert_eq!(r.sends(t).len(), 1, "queued behind the full socket");
        r.deliver(&event_of_size("c", 14));
        r.assert_cut_slow(t, 1);
    }
}

#[test]
fn a_slow_listener_is_cut_exactly_past_max_pending_bytes_completion() {
    for over in [0, 1] {
        let (mut r, t, head) = stuck_listener(true);
        // The kernel reports 100 bytes of the head sent; the rest stays in
        // flight and counts against the limit.
        assert!(r.core.on_sent(t, Ok(100), false, r.now));
        let in_flight = head - 100;
        r.deliver(&event_of_size("a", 1000));
        r.deliver(&event_of_size("b", LIMIT - in_flight - 1000 + over));
        if over == 1 {
            r.assert_cut_slow(t, 1);
            // The driver learns the connection is gone and drops the send.
            assert!(!r.core.on_sent(t, Ok(10), false, r.now));
            continue;
        }
        assert!(r.is_open(t));
        assert_eq!(r.slow_disconnects(), 0);
        assert_eq!(r.releases(t), 0);
        assert_eq!(
            r.sends(t).len(),
            1,
            "nothing sent while the head is in flight"
        );
        r.deliver(&event_of_size("c", 14));
        r.assert_cut_slow(t, 1);
    }
}

#[test]
fn a_first_write_past_max_pending_bytes_is_cut_readiness() {
    for over in [0, 1] {
        let mut r = rig(&[("MAX_PENDING_BYTES", "4096")]);
        let t = r.subscribe(GET);
        // The head went out; now the socket is full.
        r.fake().take = Some(0);
        r.deliver(&event_of_size("a", LIMIT + over));
        if over == 1 {
            r.assert_cut_slow(t, 1);
        } else {
            assert!(r.is_open(t));
            assert_eq!(r.slow_disconnects(), 0);
            assert_eq!(r.sends(t).last(), Some(&(LIMIT, 0)));
        }
    }
}

// ----- the write queue -----------------------------------------------------------

#[test]
fn a_short_completion_keeps_order_and_flushes_the_queue_as_one_send() {
    let mut r = rig(&[]);
    r.fake().completion = true;
    let t = r.subscribe(GET);
    let head = r.sends(t)[0].0;
    assert!(r.core.on_sent(t, Ok(head), true, r.now));
    assert_eq!(r.sends(t).len(), 1, "nothing was queued");

    r.deliver(&event("e1"));
    assert_eq!(r.sends(t)[1], (frame_len("e1"), frame_len("e1")));
    r.deliver(&event("e2"));
    r.deliver(&event("e3"));
    assert_eq!(r.sends(t).len(), 2, "e2 and e3 wait behind e1");

    // A short send: the driver resumes it; the queue must still wait.
    assert!(r.core.on_sent(t, Ok(5), false, r.now));
    assert_eq!(r.sends(t).len(), 2, "queue sent while e1 was in flight");
    assert!(r.core.on_sent(t, Ok(frame_len("e1") - 5), true, r.now));
    let queued = frame_len("e2") + frame_len("e3");
    assert_eq!(
        r.sends(t)[2..],
        [(queued, queued)],
        "one send for the queue"
    );
    assert_eq!(r.ids(t), ids(&["e1", "e2", "e3"]));

    // Once that completes, nothing is pending: the next event goes at once.
    assert!(r.core.on_sent(t, Ok(queued), true, r.now));
    assert_eq!(r.sends(t).len(), 3);
    r.deliver(&event("e4"));
    assert_eq!(r.sends(t).len(), 4);
    assert_eq!(r.ids(t), ids(&["e1", "e2", "e3", "e4"]));
}

#[test]
fn a_short_write_keeps_order_and_flushes_on_writable() {
    let mut r = rig(&[]);
    let t = r.subscribe(GET);
    r.fake().take = Some(10);
    r.deliver(&event("e1"));
    r.deliver(&event("e2"));
    assert_eq!(r.sends(t)[1..], [(frame_len("e1"), 10)], "e2 queued behind");

    r.fake().take = None;
    r.core.on_writable(t, r.now);
    let rest = frame_len("e1") - 10 + frame_len("e2");
    assert_eq!(r.sends(t)[2..], [(rest, rest)], "one send for the queue");
    assert_eq!(r.ids(t), ids(&["e1", "e2"]));
    // Settled: a spurious readiness sends nothing, the next event goes at once.
    r.core.on_writable(t, r.now);
    assert_eq!(r.sends(t).len(), 3);
    r.deliver(&event("e3"));
    assert_eq!(r.sends(t).len(), 4);
    assert_eq!(r.ids(t), ids(&["e1", "e2", "e3"]));
}

#[test]
fn a_closing_connection_is_half_closed_only_once_its_output_is_out_readiness() {
    let mut r = rig(&[]);
    r.fake().take = Some(10);
    let t = r.connect();
    let fd = r.raw_fd(t);
    assert!(r.input(t, "GET /nope HTTP/1.1\r\n\r\n"));
    assert_eq!(r.wire(t), "HTTP/1.1 4");
    assert_eq!(r.shutdowns(fd), 0, "half-closed with the response unsent");

    r.fake().take = Some(0);
    r.core.on_writable(t, r.now);
    assert_eq!(r.shutdowns(fd), 0);

    r.fake().take = None;
    r.core.on_writable(t, r.now);
    let wire = r.wire(t);
    assert!(wire.starts_with("HTTP/1.1 404 "), "{wire}");
    assert!(wire.ends_with('}'), "the whole body: {wire}");
    assert_eq!(r.shutdowns(fd), 1);
    assert_eq!(
        r.fake().calls.last(),
        Some(&Call::ShutdownWrite(fd)),
        "half-closed after the last send"
    );

    // It lingers, then goes.
    r.tick(T0 + super::CLOSE_LINGER_MS - 1);
    assert!(r.is_open(t));
    r.tick(T0 + super::CLOSE_LINGER_MS);
    assert!(!r.is_open(t));
    assert_eq!(r.releases(t), 1);
    assert_eq!(r.shutdowns(fd), 1);
}

#[test]
fn a_closing_connection_is_half_closed_only_once_its_output_is_out_completion() {
    let mut r = rig(&[]);
    r.fake().completion = true;
    let t = r.connect();
    let fd = r.raw_fd(t);
    assert!(r.input(t, "GET /nope HTTP/1.1\r\n\r\n"));
    let sent = r.sends(t);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        r.shutdowns(fd),
        0,
        "half-closed with the response in flight"
    );
    assert!(r.core.on_sent(t, Ok(10), false, r.now));
    assert_eq!(r.shutdowns(fd), 0);
    assert!(r.core.on_sent(t, Ok(sent[0].0 - 10), true, r.now));
    assert_eq!(r.shutdowns(fd), 1);
    assert_eq!(r.fake().calls.last(), Some(&Call::ShutdownWrite(fd)));
    assert!(r.wire(t).starts_with("HTTP/1.1 404 "));
}

// ----- heartbeats ------------------------------------------------------------------

#[test]
fn a_heartbeat_comes_at_the_interval_never_before() {
    let mut r = rig(&[("HEARTBEAT_SECONDS", "5")]);
    // `a` streams at a whole second; `b` 1 ms later, which the core rounds
    // up to the next tenth (then the wheel to the next second).
    let a = r.subscribe(GET);
    r.now = T0 + 1;
    let b = r.subscribe(GET);

    for ms in [1_000, 2_000, 3_000, 4_000, 4_999] {
        r.tick(T0 + ms);
        assert_eq!(
            (pings(&r.wire(a)), pings(&r.wire(b))),
            (0, 0),
            "at +{ms} ms"
        );
    }
    r.tick(T0 + 5_000);
    assert_eq!(pings(&r.wire(a)), 1, "no ping at the interval");
    assert_eq!(
        pings(&r.wire(b)),
        0,
        "b pinged 4.999 s after its last write"
    );
    assert_eq!(blocks(&r.wire(a)).last(), Some(&": ping"));
    r.tick(T0 + 5_999);
    assert_eq!(pings(&r.wire(b)), 0);
    r.tick(T0 + 6_000);
    assert_eq!((pings(&r.wire(a)), pings(&r.wire(b))), (1, 1));

    // And again one interval after each ping.
    r.tick(T0 + 9_999);
    assert_eq!((pings(&r.wire(a)), pings(&r.wire(b))), (1, 1));
    r.tick(T0 + 10_000);
    assert_eq!((pings(&r.wire(a)), pings(&r.wire(b))), (2, 1));
    r.tick(T0 + 10_999);
    assert_eq!(pings(&r.wire(b)), 1);
    r.tick(T0 + 11_000);
    assert_eq!((pings(&r.wire(a)), pings(&r.wire(b))), (2, 2));
}

#[test]
fn a_write_postpones_the_heartbeat_by_a_whole_interval() {
    let mut r = rig(&[("HEARTBEAT_SECONDS", "5"), ("HEARTBEAT_MODE", "event")]);
    let t = r.subscribe(GET);
    r.now = T0 + 3_000;
    r.deliver(&event("e1"));
    r.tick(T0 + 5_000);
    r.tick(T0 + 7_999);
    assert_eq!(blocks(&r.wire(t)).len(), 2, "retry and e1 only");
    r.tick(T0 + 8_000);
    let unix_s = UNIX_MS / 1000 + 8;
    assert_eq!(
        blocks(&r.wire(t)).last().copied(),
        Some(format!("event: ping\ndata: {unix_s}").as_str())
    );
}

// ----- replay meets live delivery ------------------------------------------------

#[test]
fn replay_and_live_delivery_meet_with_no_gap_and_no_duplicate() {
    let mut r = rig(&[]);
    let watcher = r.subscribe(GET);
    r.deliver(r#"[{"id":"e1","message":"1"},{"id":"e2","message":"2"}]"#);
    r.deliver(&event("e3"));
    r.deliver(&event("e4"));
    r.deliver(&event("e5"));

    let t = r.connect();
    assert!(r.input(t, "GET /sse HTTP/1.1\r\nLast-Event-ID: e2\r\n"));
    // Published while the head is read: in the inbox, not yet drained.
    r.publish(&event("e6"));
    assert!(r.input(t, "\r\n"));
    assert_eq!(r.ids(t), ids(&["e3", "e4", "e5", "e6"]));
    r.deliver(&event("e7"));
    r.deliver(r#"[{"id":"e8","message":"8"},{"id":"e9","message":"9"}]"#);

    assert_eq!(r.ids(t), ids(&["e3", "e4", "e5", "e6", "e7", "e8", "e9"]));
    assert!(!r.wire(t).contains("history-gap"));
    assert_eq!(
        r.ids(watcher),
        ids(&["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"])
    );
    // Head + preface in one send, then e7, then e8 and e9 together.
    assert_eq!(r.sends(t).len(), 3);
}

#[test]
fn a_last_event_id_still_in_the_inbox_is_caught_up_not_a_gap() {
    // The listener saw e4 on a reactor that drained faster, and reconnects
    // here before this reactor drained it.
    let mut r = rig(&[]);
    r.deliver(&event("e1"));
    r.deliver(&event("e2"));
    r.deliver(&event("e3"));
    let t = r.connect();
    assert!(r.input(t, "GET /sse HTTP/1.1\r\nLast-Event-ID: e4\r\n"));
    r.publish(&event("e4"));
    r.publish(&event("e5"));
    assert!(r.input(t, "\r\n"));
    r.deliver(&event("e6"));
    assert_eq!(r.ids(t), ids(&["e5", "e6"]));
    assert!(!r.wire(t).contains("history-gap"), "{}", r.wire(t));
}

// ----- slot reuse and stale tokens -------------------------------------------

#[test]
fn a_reused_slot_never_receives_its_predecessors_events() {
    let mut r = rig(&[]);
    let alice = r.subscribe(&request_as("alice"));
    r.deliver(r#"{"to":"alice","id":"a1","message":"for alice"}"#);
    assert_eq!(r.ids(alice), ids(&["a1"]));
    r.core.on_closed(alice, "peer closed");
    assert!(!r.is_open(alice));
    assert_eq!(r.releases(alice), 1);

    let bob = r.subscribe(&request_as("bob"));
    assert_eq!(bob & 0xffff_ffff, alice & 0xffff_ffff, "slot not reused");
    assert_ne!(bob, alice, "same generation");
    r.deliver(r#"{"to":"alice","id":"a2","message":"for alice"}"#);
    r.deliver(r#"{"to":["bob"],"id":"b1","message":"for bob"}"#);
    assert_eq!(r.ids(bob), ids(&["b1"]));
    r.core.on_closed(bob, "peer closed");

    let anon = r.subscribe(GET);
    assert_eq!(anon & 0xffff_ffff, alice & 0xffff_ffff, "slot not reused");
    r.deliver(r#"{"to":["alice","bob"],"id":"ab","message":"for both"}"#);
    r.deliver(&event("x1"));
    assert_eq!(r.ids(anon), ids(&["x1"]));
    // Nothing ever went to the old tokens after they closed.
    assert_eq!(r.ids(alice), ids(&["a1"]));
    assert_eq!(r.ids(bob), ids(&["b1"]));
}

#[test]
fn stale_tokens_are_ignored_readiness() {
    let mut r = rig(&[]);
    let old = r.subscribe(GET);
    r.core.on_closed(old, "peer closed");
    let new = r.connect();
    assert_eq!(new & 0xffff_ffff, old & 0xffff_ffff);
    assert!(r.core.fd(old).is_none());

    // Input for the old token reaches nothing, and says so.
    assert!(!r.core.on_input(old, b"GET /nope HTTP/1.1\r\n\r\n", r.now));
    r.core.on_closed(old, "late hang-up");
    assert!(r.is_open(new));
    assert!(r.sends(new).is_empty());

    // The new one streams; its head waits behind a full socket.
    r.fake().take = Some(0);
    assert!(r.input(new, GET));
    assert_eq!(r.streaming(), 1);
    r.fake().take = None;
    r.core.on_writable(old, r.now);
    assert_eq!(r.sends(new).len(), 1, "readiness for a stale token flushed");
    r.core.on_writable(new, r.now);
    assert_eq!(r.sends(new).len(), 2);
    assert!(r.wire(new).starts_with("HTTP/1.1 200 OK"));
}

#[test]
fn stale_tokens_are_ignored_completion() {
    let mut r = rig(&[]);
    r.fake().completion = true;
    let old = r.subscribe(GET);
    r.core.on_closed(old, "peer closed");
    let new = r.subscribe(GET);
    assert_eq!(new & 0xffff_ffff, old & 0xffff_ffff);
    let head = r.sends(new)[0].0;
    r.deliver(&event("e1"));
    assert_eq!(r.sends(new).len(), 1, "e1 waits behind the head");

    // A completion for the old token's send must not finish the new one's.
    assert!(!r.core.on_sent(old, Ok(head), true, r.now));
    assert!(!r
        .core
        .on_sent(old, Err(io::Error::other("reset")), true, r.now));
    assert_eq!(r.sends(new).len(), 1);
    assert!(r.is_open(new));

    assert!(r.core.on_sent(new, Ok(head), true, r.now));
    assert_eq!(r.sends(new).len(), 2);
    assert_eq!(r.ids(new), ids(&["e1"]));
}

/// A driver may use the top byte of a token (io_uring tags `user_data`), so
/// tokens must fit in 56 bits however many connections a reactor has seen:
/// the generation wraps within 24 bits, and the wrapped token still works.
#[test]
fn tokens_fit_in_56_bits_across_the_generation_wrap() {
    let mut r = rig(&[]);
    r.core.next_gen = super::GEN_MASK - 1;
    let before = r.connect();
    let at_wrap = r.connect();
    let after = r.connect();
    for t in [before, at_wrap, after] {
        assert_eq!(t >> 56, 0, "token {t:#x} uses the top byte");
        assert!(r.input(t, GET), "token {t:#x} not accepted");
    }
    assert_eq!(at_wrap >> 32, 0, "the generation wrapped to 0");
    r.deliver(&event("e1"));
    for t in [before, at_wrap, after] {
        assert_eq!(r.ids(t), ids(&["e1"]));
    }
}
