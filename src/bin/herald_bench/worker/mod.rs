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
//! The worker reports [`Progress`] every 200 ms and its
//! [`Report`](super::proto::Report) when asked; it exits on `Quit`, on a
//! closed stdin, or at the plan's deadline.
//!
//! This file holds the listener states, the [`Worker`] and its event loop.
//! The rest is split by job: `connect` starts connections (pacing, socket,
//! request, token); `stream` handles socket events and state changes (head,
//! events, failures, retries, deadlines); `commands` obeys the coordinator
//! and reports to it; `tally` counts deliveries per event.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use jsonwebtoken::EncodingKey;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use super::clock::unix_ms;
use super::proto::{Plan, Progress, StormProgress, Update};
use super::sse::Parser;

mod commands;
mod connect;
mod stream;
mod tally;

use tally::{Tally, Targets};

const STDIN: u64 = u64::MAX;
const READ_BUF: usize = 64 * 1024;
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

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
}
