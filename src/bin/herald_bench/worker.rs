//! A worker process: one thread, one edge-triggered epoll, up to the process's
//! file-descriptor limit of client sockets.
//!
//! Each listener goes `Queued → Connecting → Head → Streaming`, or ends in
//! `Failed` (with a reason) or `Dropped` (the server ended the stream). New
//! connections are paced by the plan's rate and in-flight cap; each attempt
//! has a deadline from `connect()` to the complete response head. A storm
//! closes every streaming listener and puts it back in the queue; its next
//! request carries `Last-Event-ID`, and a failed reconnect is retried with
//! backoff a few times, like an `EventSource`.
//!
//! The worker reports [`Progress`] every 200 ms and its [`Report`] when asked;
//! it exits on `Quit`, on a closed stdin, or at the plan's deadline.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrStorage,
};

use super::args::TokenIn;
use super::clock::{unix_ms, unix_us};
use super::hist::Histogram;
use super::probe::{self, Audience};
use super::proto::{Command, Plan, Progress, Report, StormProgress, Update};
use super::sample;
use super::sse::{Event, Parser};

const STDIN: u64 = u64::MAX;
const READ_BUF: usize = 64 * 1024;
/// A response head larger than this is refused.
const MAX_HEAD: usize = 16 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// Connection starts per loop turn, so reads are never starved.
const STARTS_PER_TURN: usize = 512;
/// Reconnect attempts per listener in a storm, and the first backoff.
const RECONNECT_TRIES: u32 = 5;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
/// Sequence numbers at or above this are not tracked per event.
const MAX_TRACKED_SEQ: u64 = 1 << 24;
/// The failure reason of listeners never started because of `Halt`.
const HALTED: &str = "not started: MemAvailable below --min-available";
/// Lifetime of minted tokens.
const TOKEN_TTL_S: u64 = 86_400;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Queued,
    Connecting,
    Head,
    Streaming,
    Failed,
    Dropped,
}

struct Conn {
    fd: Option<OwnedFd>,
    state: State,
    /// Bumped per attempt, so a stale deadline does not hit a newer attempt.
    attempt: u32,
    /// Failed reconnect attempts in this storm.
    tries: u32,
    /// Expects every event published after `Arm`.
    armed: bool,
    /// Dropped by the storm and not back (nor given up) yet.
    in_storm: bool,
    /// The next sequence number this listener should see.
    next_seq: u64,
    head: Vec<u8>,
    parser: Parser,
}

/// Delivery counters, kept apart from the connections so that a parser can
/// update them while it is borrowed.
#[derive(Default)]
struct Tally {
    unique: u64,
    duplicates: u64,
    gaps: u64,
    strays: u64,
    unarmed: u64,
    history_gaps: u64,
    other_events: u64,
    latency: Histogram,
    last_delivery_us: Vec<u64>,
}

/// The targets of each event that fall in this worker's slice, memoised.
struct Targets {
    audience: Audience,
    first: u64,
    count: u64,
    total: u64,
    memo: HashMap<u64, Vec<u64>>,
}

impl Targets {
    /// This worker's targets of event `seq` (global indices, sorted), or
    /// `None` for a broadcast.
    fn local(&mut self, seq: u64) -> Option<&[u64]> {
        if self.audience == Audience::All {
            return None;
        }
        let (first, count, total, audience) = (self.first, self.count, self.total, self.audience);
        Some(self.memo.entry(seq).or_insert_with(|| {
            let all = audience.targets(seq, total).unwrap_or_default();
            all.into_iter()
                .filter(|g| (first..first + count).contains(g))
                .collect()
        }))
    }
}

impl Tally {
    fn on_event(
        &mut self,
        e: &Event<'_>,
        now_us: u64,
        global: u64,
        conn: ConnView<'_>,
        targets: &mut Targets,
    ) {
        let Some((t, n)) = probe::decode(e.data) else {
            if e.event_type == "history-gap" {
                self.history_gaps += 1;
            } else {
                self.other_events += 1;
            }
            return;
        };
        if !conn.armed {
            self.unarmed += 1;
            return;
        }
        let broadcast = match targets.local(n) {
            None => true,
            Some(local) => {
                if local.binary_search(&global).is_err() {
                    self.strays += 1;
                    return;
                }
                false
            }
        };
        if n < *conn.next_seq {
            self.duplicates += 1;
            return;
        }
        if broadcast && n > *conn.next_seq {
            self.gaps += 1;
        }
        *conn.next_seq = n + 1;
        self.unique += 1;
        self.latency.record(now_us.saturating_sub(t));
        if n < MAX_TRACKED_SEQ {
            let n = n as usize;
            if self.last_delivery_us.len() <= n {
                self.last_delivery_us.resize(n + 1, 0);
            }
            self.last_delivery_us[n] = self.last_delivery_us[n].max(now_us);
        }
    }
}

/// The parts of a [`Conn`] an event updates.
struct ConnView<'a> {
    armed: bool,
    next_seq: &'a mut u64,
}

pub struct Worker {
    plan: Plan,
    epoll: Epoll,
    key: Option<EncodingKey>,
    conns: Vec<Conn>,
    queue: VecDeque<u32>,
    retries: BinaryHeap<Reverse<(Instant, u32)>>,
    deadlines: VecDeque<(Instant, u32, u32)>,
    inflight: u64,
    pace_start: Instant,
    paced: u64,
    /// First-round listeners neither streaming nor given up on yet.
    unsettled: u64,
    progress: Progress,
    failures: BTreeMap<String, u64>,
    tally: Tally,
    targets: Targets,
    armed: u64,
    storm: Option<StormProgress>,
    stdin_buf: Vec<u8>,
    bytes_read: u64,
    buf: Vec<u8>,
    /// `Halt` came: nothing new is started or retried.
    halted: bool,
    quit: bool,
}

/// Runs a worker to the end; returns the process exit code.
pub fn run(plan: Plan) -> i32 {
    raise_nofile();
    let mut w = match Worker::new(plan) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("herald-bench worker: {e}");
            return 1;
        }
    };
    w.run()
}

fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

impl Worker {
    fn new(plan: Plan) -> Result<Self, String> {
        let epoll =
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        let stdin = std::io::stdin();
        nix::fcntl::fcntl(
            &stdin,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(|e| format!("stdin: {e}"))?;
        epoll
            .add(&stdin, EpollEvent::new(EpollFlags::EPOLLIN, STDIN))
            .map_err(|e| format!("epoll stdin: {e}"))?;
        let conns = (0..plan.count)
            .map(|_| Conn {
                fd: None,
                state: State::Queued,
                attempt: 0,
                tries: 0,
                armed: false,
                in_storm: false,
                next_seq: 0,
                head: Vec::new(),
                parser: Parser::new(),
            })
            .collect();
        let targets = Targets {
            audience: plan.audience,
            first: plan.first,
            count: plan.count,
            total: plan.total,
            memo: HashMap::new(),
        };
        Ok(Self {
            key: plan
                .jwt_secret
                .as_ref()
                .map(|s| EncodingKey::from_secret(s.as_bytes())),
            epoll,
            conns,
            queue: (0..plan.count as u32).collect(),
            retries: BinaryHeap::new(),
            deadlines: VecDeque::new(),
            inflight: 0,
            pace_start: Instant::now(),
            paced: 0,
            unsettled: plan.count,
            progress: Progress::default(),
            failures: BTreeMap::new(),
            tally: Tally::default(),
            targets,
            armed: 0,
            storm: None,
            stdin_buf: Vec::new(),
            bytes_read: 0,
            buf: vec![0; READ_BUF],
            halted: false,
            quit: false,
            plan,
        })
    }

    fn run(&mut self) -> i32 {
        let mut events = vec![EpollEvent::empty(); 1024];
        let mut next_progress = Instant::now();
        while !self.quit {
            if unix_ms() > self.plan.deadline_unix_ms {
                eprintln!("herald-bench worker: deadline reached, exiting");
                return 3;
            }
            let now = Instant::now();
            self.start_due(now);
            let timeout: u16 = if self.queue.is_empty() { 50 } else { 2 };
            let n = match self.epoll.wait(&mut events, EpollTimeout::from(timeout)) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => {
                    eprintln!("herald-bench worker: epoll_wait: {e}");
                    return 1;
                }
            };
            for ev in &events[..n] {
                match ev.data() {
                    STDIN => self.read_commands(),
                    token => self.on_socket(token as u32, ev.events()),
                }
            }
            let now = Instant::now();
            self.expire(now);
            if now >= next_progress {
                self.send(&Update::Progress(self.snapshot()));
                next_progress = now + PROGRESS_EVERY;
            }
        }
        0
    }

    // ----- starting connections -------------------------------------------------

    fn start_due(&mut self, now: Instant) {
        while let Some(&Reverse((due, i))) = self.retries.peek() {
            if due > now {
                break;
            }
            self.retries.pop();
            self.queue.push_back(i);
        }
        let budget = if self.plan.rate > 0.0 {
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
    fn request(&self, i: u32) -> Result<Vec<u8>, String> {
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
        }
        let claims = Claims {
            sub: format!("u{}", self.plan.first + u64::from(i)),
            exp: unix_ms() / 1000 + TOKEN_TTL_S,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .map_err(|e| format!("jwt: {e}"))
    }

    // ----- socket events --------------------------------------------------------

    fn on_socket(&mut self, i: u32, flags: EpollFlags) {
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
    fn fail(&mut self, i: u32, reason: String, now: Instant) {
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

    fn expire(&mut self, now: Instant) {
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

    fn check_storm_done(&mut self) {
        if let Some(st) = &mut self.storm {
            if st.done_unix_us.is_none() && st.back + st.given_up == st.closed {
                st.done_unix_us = Some(unix_us());
            }
        }
    }

    // ----- commands --------------------------------------------------------------

    fn read_commands(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match nix::unistd::read(std::io::stdin().as_fd(), &mut chunk) {
                Ok(0) => {
                    self.quit = true; // the coordinator is gone
                    return;
                }
                Ok(n) => self.stdin_buf.extend_from_slice(&chunk[..n]),
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    self.quit = true;
                    return;
                }
            }
        }
        while let Some(end) = self.stdin_buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.stdin_buf.drain(..=end).collect();
            match serde_json::from_slice::<Command>(&line) {
                Ok(cmd) => self.command(cmd),
                Err(e) => eprintln!("herald-bench worker: bad command: {e}"),
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Arm => {
                for c in &mut self.conns {
                    if c.state == State::Streaming && !c.armed {
                        c.armed = true;
                        self.armed += 1;
                    }
                }
                self.send(&Update::Armed(self.armed));
            }
            Command::Published(n) => {
                for seq in self.progress.published..n {
                    let Worker { targets, conns, .. } = self;
                    self.progress.expected += match targets.local(seq) {
                        None => self.armed,
                        Some(local) => local
                            .iter()
                            .filter(|&&g| conns[(g - self.plan.first) as usize].armed)
                            .count() as u64,
                    };
                }
                self.progress.published = self.progress.published.max(n);
            }
            Command::Storm => self.storm(),
            Command::Halt => self.halt(),
            Command::Report => {
                let report = self.report();
                self.send(&Update::Report(Box::new(report)));
            }
            Command::Quit => self.quit = true,
        }
    }

    /// Gives up on every listener not started yet.
    fn halt(&mut self) {
        self.halted = true;
        let now = Instant::now();
        let waiting: Vec<u32> = self
            .queue
            .drain(..)
            .chain(self.retries.drain().map(|Reverse((_, i))| i))
            .collect();
        for i in waiting {
            self.fail(i, HALTED.into(), now);
        }
    }

    fn storm(&mut self) {
        let mut st = StormProgress::default();
        for (i, c) in self.conns.iter_mut().enumerate() {
            if c.state == State::Streaming {
                c.fd = None; // closing the socket also leaves the epoll set
                c.state = State::Queued;
                c.in_storm = true;
                c.tries = 0;
                c.parser.restart();
                st.closed += 1;
                self.queue.push_back(i as u32);
            }
        }
        self.progress.open -= st.closed;
        self.pace_start = Instant::now();
        self.paced = 0;
        self.storm = Some(st);
        self.check_storm_done();
    }

    // ----- reporting -------------------------------------------------------------

    fn snapshot(&self) -> Progress {
        Progress {
            settled: self.unsettled == 0,
            unique: self.tally.unique,
            duplicates: self.tally.duplicates,
            storm: self.storm.clone(),
            ..self.progress.clone()
        }
    }

    fn report(&self) -> Report {
        let me = sample::process("self").unwrap_or_default();
        let t = &self.tally;
        Report {
            progress: self.snapshot(),
            failures: self.failures.clone(),
            latency_us: t.latency.clone(),
            last_delivery_us: t.last_delivery_us.clone(),
            gaps: t.gaps,
            strays: t.strays,
            unarmed: t.unarmed,
            history_gaps: t.history_gaps,
            other_events: t.other_events,
            comments: self.conns.iter().map(|c| c.parser.comments()).sum(),
            bytes_read: self.bytes_read,
            rss_kb: me.rss_kb,
            cpu_s: me.cpu_s(),
        }
    }

    fn send(&self, update: &Update) {
        let mut line = serde_json::to_vec(update).expect("updates serialize");
        line.push(b'\n');
        let mut out = std::io::stdout().lock();
        if out.write_all(&line).and_then(|()| out.flush()).is_err() {
            // The coordinator is gone; the closed stdin will end us.
        }
    }
}
