//! The reactor: one thread per core, owning its listener, its poller, its
//! connections and its user index. Nothing here is shared with other threads
//! except the inbox it drains and the counters the admin side reads.
//!
//! One loop turn: wait for readiness (bounded timeout), read the monotonic
//! clock once, handle ready sockets, accept at most [`ACCEPT_BATCH`]
//! connections, drain at most [`INBOX_BATCH`] inbox messages and deliver the
//! events they carry, fire due timers. A turn that left work behind polls
//! again without blocking. Timers run on the monotonic clock; only the
//! heartbeat's data is wall-clock time.
//!
//! Delivery coalesces: all events drained in one turn are matched per
//! connection, and each connection gets everything pending for it in one
//! `writev`.

mod conn;
pub mod stats;
mod timers;
mod users;

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use log::{debug, info, trace, warn};
use slab::Slab;

use crate::config::{Config, HeartbeatMode};
use crate::conn::auth::Verifier;
use crate::conn::http::{parse_head, Head};
use crate::conn::response::{self, Problem};
use crate::conn::route::{route, Action, RouteCtx, StreamRequest};
use crate::conn::State;
use crate::hub::history::{gap_frame, History, Listener};
use crate::hub::{sse, Batch, Event, Target};
use crate::ingest::IngestStatus;
use crate::sys::{self, poll::Poller, poll::Waker};

use conn::{Conn, Pending};
pub use stats::Stats;
use timers::{Deadlines, Token, Wheel};
use users::{Users, NIL};

/// Connections accepted per turn before other work gets a go.
pub const ACCEPT_BATCH: usize = 256;
/// Inbox messages drained per turn.
pub const INBOX_BATCH: usize = 256;
/// Inbox drains (of [`INBOX_BATCH`] each) before a stream starts.
const CATCH_UP_ROUNDS: usize = 64;
/// Readiness events fetched per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;
/// Bytes read per `read` call while reading a request head.
const READ_CHUNK: usize = 4096;
/// How long a refused connection may linger so its response is not lost to a
/// reset.
const CLOSE_LINGER_MS: u64 = 2000;
/// Preallocated write buffers per reactor, and their initial size.
const POOL_BUFFERS: usize = 64;
const POOL_BUFFER_BYTES: usize = 16 * 1024;
/// Buffers that grew past this are freed rather than pooled.
const POOL_BUFFER_KEEP: usize = 64 * 1024;
/// Slices per `writev` call (the kernel takes up to 1024).
const IOV_BATCH: usize = 64;

const LISTENER: u64 = u64::MAX;
const WAKER: u64 = u64::MAX - 1;

/// A message to a reactor.
pub enum Msg {
    Events(Batch),
    /// Events for the history only (a stream's tail read at start-up): they
    /// are replayed on request but never delivered live.
    History(Batch),
    Shutdown,
}

/// The sending side of a reactor's inbox: channel plus eventfd wake-up.
///
/// Wake-ups are coalesced: a sender writes the eventfd only when no wake-up
/// is already outstanding, so a burst of sends costs the reactor one wake.
#[derive(Clone)]
pub struct Inbox {
    tx: Sender<Msg>,
    wake: Arc<Wake>,
}

/// The eventfd and the "a wake-up is outstanding" flag a reactor shares with
/// its senders.
pub struct Wake {
    waker: Waker,
    pending: AtomicBool,
}

impl Wake {
    fn notify(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// Called by the reactor before draining: later sends wake it again.
    /// The eventfd is reset before the flag is cleared; the other order
    /// could erase the wake of a send that lands in between and leave the
    /// flag set with nothing to wake the reactor.
    fn acknowledge(&self) {
        self.waker.reset();
        self.pending.store(false, Ordering::SeqCst);
    }
}

impl Inbox {
    pub fn send_events(&self, batch: Batch) {
        if self.tx.send(Msg::Events(batch)).is_ok() {
            self.wake.notify();
        }
    }

    pub fn send_history(&self, batch: Batch) {
        if self.tx.send(Msg::History(batch)).is_ok() {
            self.wake.notify();
        }
    }

    pub fn shutdown(&self) {
        if self.tx.send(Msg::Shutdown).is_ok() {
            self.wake.notify();
        }
    }
}

/// Read-only state every reactor sees.
pub struct Shared {
    pub cfg: Arc<Config>,
    pub verifier: Verifier,
    pub stats: Arc<[Arc<Stats>]>,
    /// Ingest state, for `GET /health`.
    pub status: Arc<IngestStatus>,
}

/// Builds a reactor's inbox pair.
pub fn inbox() -> std::io::Result<(Inbox, Receiver<Msg>, Arc<Wake>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let wake = Arc::new(Wake {
        waker: Waker::new()?,
        pending: AtomicBool::new(false),
    });
    Ok((
        Inbox {
            tx,
            wake: wake.clone(),
        },
        rx,
        wake,
    ))
}

pub struct Reactor {
    index: usize,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    poller: Poller,
    listener: Option<OwnedFd>,
    wake: Arc<Wake>,
    inbox: Receiver<Msg>,
    conns: Slab<Conn>,
    history: History,
    next_gen: u32,
    users: Users,
    pending: Slab<Pending>,
    pool: Vec<Vec<u8>>,
    head_timeouts: Deadlines,
    lingers: Deadlines,
    heartbeats: Option<Wheel>,
    /// Start of this reactor, so per-connection times fit in a `u32`.
    epoch_ms: u64,
    more_accepts: bool,
    /// A shutdown message was drained.
    stopping: bool,
    rng: u64,
    // Scratch space reused across turns.
    ready: Vec<sys::poll::Ready>,
    events: Vec<Arc<Event>>,
    targeted: Vec<(u32, u32)>,
    keys: Vec<u32>,
    expired: Vec<Token>,
}

impl Reactor {
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        listener: OwnedFd,
        inbox: Receiver<Msg>,
        wake: Arc<Wake>,
        capacity: usize,
    ) -> std::io::Result<Self> {
        let poller = Poller::new(EVENTS_PER_WAIT)?;
        poller.add_readable(listener.as_fd(), LISTENER)?;
        poller.add_readable(wake.waker.as_fd(), WAKER)?;
        let now_s = sys::clock::mono_ms() / 1000;
        let heartbeats =
            (shared.cfg.heartbeat_secs > 0).then(|| Wheel::new(shared.cfg.heartbeat_secs, now_s));
        let stats = shared.stats[index].clone();
        Ok(Self {
            index,
            stats,
            poller,
            listener: Some(listener),
            wake,
            inbox,
            history: History::new(shared.cfg.history_size),
            // Reserve the slab once (virtual memory; pages are touched only as
            // connections arrive) so it never reallocates under load.
            conns: Slab::with_capacity(capacity),
            next_gen: 0,
            users: Users::with_capacity(capacity),
            pending: Slab::new(),
            pool: (0..POOL_BUFFERS)
                .map(|_| Vec::with_capacity(POOL_BUFFER_BYTES))
                .collect(),
            head_timeouts: Deadlines::new(),
            lingers: Deadlines::new(),
            heartbeats,
            epoch_ms: now_s * 1000,
            more_accepts: true,
            stopping: false,
            rng: seed(),
            ready: Vec::with_capacity(EVENTS_PER_WAIT),
            events: Vec::new(),
            targeted: Vec::new(),
            keys: Vec::new(),
            expired: Vec::new(),
            shared,
        })
    }

    /// Runs until a shutdown message arrives.
    pub fn run(mut self) {
        debug!("reactor {} running", self.index);
        let mut busy = true;
        loop {
            let now_ms = sys::clock::mono_ms();
            let timeout = if busy { 0 } else { self.next_timeout(now_ms) };
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            if let Err(e) = self.poller.wait(timeout, |r| ready.push(r)) {
                warn!("reactor {}: epoll_wait failed: {e}", self.index);
            }
            let now_ms = sys::clock::mono_ms();
            let mut inbox_woken = false;
            for r in &ready {
                match r.token {
                    LISTENER => self.more_accepts = true,
                    WAKER => {
                        self.wake.acknowledge();
                        inbox_woken = true;
                    }
                    token => self.on_ready(token, r.readable || r.closed, r.writable, now_ms),
                }
            }
            self.ready = ready;
            busy = false;
            if self.more_accepts && self.listener.is_some() {
                busy |= self.accept_batch(now_ms);
            }
            if (inbox_woken || !self.inbox.is_empty()) && self.drain_inbox(now_ms) {
                busy = true;
            }
            if self.stopping {
                break;
            }
            self.fire_timers(now_ms);
        }
        self.shutdown();
    }

    fn next_timeout(&self, now_ms: u64) -> u16 {
        let mut t: u64 = 1000 - now_ms % 1000; // the next whole second (heartbeats)
        for d in [&self.head_timeouts, &self.lingers] {
            if let Some(n) = d.next_in(now_ms) {
                t = t.min(n);
            }
        }
        t as u16
    }

    fn shutdown(&mut self) {
        // Stop accepting first, then close every connection.
        self.listener = None;
        let open = self.conns.len();
        self.conns.clear();
        self.stats.set_open(0);
        info!("reactor {} stopped, closed {open} connections", self.index);
    }

    /// Tenths of a second since this reactor started, rounded up (fits
    /// `u32` for 13 years): the resolution of `Conn::last_write`. Rounding
    /// up means a heartbeat is never early.
    fn now_rel(&self, now_ms: u64) -> u32 {
        now_ms.saturating_sub(self.epoch_ms).div_ceil(100) as u32
    }

    // ----- accepting ---------------------------------------------------------

    /// Accepts up to a batch; returns true when the queue may hold more.
    fn accept_batch(&mut self, now_ms: u64) -> bool {
        let Some(listener) = self.listener.as_ref().map(|l| l.as_raw_fd()) else {
            return false;
        };
        for _ in 0..ACCEPT_BATCH {
            match sys::net::accept(listener) {
                Ok(Some(a)) => self.on_accept(a.fd, now_ms),
                Ok(None) => {
                    self.more_accepts = false;
                    return false;
                }
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR | libc::EPERM)
                    ) =>
                {
                    // That one connection is gone; the queue may hold more.
                    continue;
                }
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: leave the queue; retry next turn.
                    self.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                    debug!("reactor {}: accept failed: {e}", self.index);
                    return false;
                }
            }
        }
        true
    }

    fn on_accept(&mut self, fd: OwnedFd, now_ms: u64) {
        let open: usize = self.shared.stats.iter().map(|s| s.open()).sum();
        let full = open >= self.shared.cfg.max_connections;
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let now_rel = self.now_rel(now_ms);
        let entry = self.conns.vacant_entry();
        let key = entry.key() as u32;
        if let Err(e) = self.poller.add_conn(fd.as_fd(), token(key, gen)) {
            warn!("reactor {}: epoll add failed: {e}", self.index);
            return;
        }
        entry.insert(Conn::new(fd, gen, now_rel));
        self.stats.set_open(self.conns.len());
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if full {
            // Refused through the normal close path, so the response is not
            // lost to a reset while the request is still unread.
            self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
            let body = response::problem(
                Problem::ServerFull,
                "server has reached MAX_CONNECTIONS",
                "Retry-After: 5\r\n",
            );
            return self.respond_and_close(key, &body, now_ms);
        }
        self.head_timeouts
            .push((key, gen), now_ms + self.shared.cfg.header_timeout_ms);
        // The request may already be waiting (edge-triggered: read it now).
        self.on_readable(key, now_ms);
    }

    // ----- readiness ---------------------------------------------------------

    fn on_ready(&mut self, token: u64, readable: bool, writable: bool, now_ms: u64) {
        let (key, gen) = ((token & 0xffff_ffff) as u32, (token >> 32) as u32);
        if !self.alive(key, gen) {
            return; // a stale event for a closed (maybe reused) slot
        }
        if writable {
            self.flush(key, now_ms);
        }
        if readable && self.alive(key, gen) {
            self.on_readable(key, now_ms);
        }
    }

    fn alive(&self, key: u32, gen: u32) -> bool {
        self.conns.get(key as usize).is_some_and(|c| c.gen == gen)
    }

    fn on_readable(&mut self, key: u32, now_ms: u64) {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let conn = &mut self.conns[key as usize];
            match nix::unistd::read(&conn.fd, &mut chunk) {
                Ok(0) => return self.close(key, "peer closed"),
                Ok(n) => {
                    if conn.state != State::ReadingHead {
                        continue; // streaming/closing: input is ignored
                    }
                    // Usually the whole head arrives in one read and is parsed
                    // straight from the stack; a buffer is kept only for a
                    // head that arrives in pieces.
                    let head = match conn.head.as_mut() {
                        None => parse_head(&chunk[..n]),
                        Some(buf) => {
                            buf.extend_from_slice(&chunk[..n]);
                            parse_head(buf)
                        }
                    };
                    match head {
                        Head::Partial => {
                            if conn.head.is_none() {
                                conn.head = Some(Box::new(chunk[..n].to_vec()));
                            }
                            continue;
                        }
                        Head::Complete(req) => {
                            conn.head = None;
                            let ctx = RouteCtx {
                                cfg: &self.shared.cfg,
                                verifier: &self.shared.verifier,
                                status: &self.shared.status,
                            };
                            match route(&req, &ctx) {
                                Action::Respond(bytes) => {
                                    self.respond_and_close(key, &bytes, now_ms)
                                }
                                Action::Stream(s) => {
                                    // Catch up with every event already sent
                                    // to this reactor first, so that replay
                                    // and live delivery meet where another
                                    // reactor's did: no gap, no duplicate.
                                    for _ in 0..CATCH_UP_ROUNDS {
                                        if !self.drain_inbox(now_ms) {
                                            break;
                                        }
                                    }
                                    self.start_stream(key, s, now_ms)
                                }
                            }
                        }
                        Head::TooLarge => {
                            let body = response::problem(
                                Problem::HeadersTooLarge,
                                "request line and headers must fit in 8 KiB",
                                "",
                            );
                            self.respond_and_close(key, &body, now_ms);
                        }
                        Head::Bad(detail) => {
                            let body = response::problem(Problem::BadRequest, detail, "");
                            self.respond_and_close(key, &body, now_ms);
                        }
                    }
                    // Any answer above may have closed the connection (a
                    // failed write): never touch its slot again.
                    if !self.conns.contains(key as usize) {
                        return;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return self.close(key, e.desc()),
            }
        }
    }

    fn set_state(&mut self, key: u32, state: State) {
        let conn = &mut self.conns[key as usize];
        trace!("conn {key}: {} => {state}", conn.state);
        conn.state = state;
    }

    /// Queues a final response, half-closes, and lingers to drain input.
    fn respond_and_close(&mut self, key: u32, bytes: &[u8], now_ms: u64) {
        self.set_state(key, State::Closing);
        self.conns[key as usize].head = None;
        if !self.write_frames(key, &[bytes], now_ms) {
            return;
        }
        let conn = &self.conns[key as usize];
        if conn.pending == NIL {
            sys::net::shutdown_write(&conn.fd);
        }
        self.lingers.push((key, conn.gen), now_ms + CLOSE_LINGER_MS);
    }

    fn start_stream(&mut self, key: u32, req: StreamRequest, now_ms: u64) {
        let (retry_ms, heartbeat_secs) = (self.shared.cfg.retry_ms, self.shared.cfg.heartbeat_secs);
        let app = self.users.intern_app(&req.identity.app);
        let conn_id = uuid::Builder::from_random_bytes(self.random_bytes()).into_uuid();
        let mut head = response::stream_head(&conn_id, &req.cors);
        head.push_str(&sse::retry_preface(retry_ms));
        // Replay comes from this reactor's history, before any live event
        // can reach the connection: no gap, no duplicate.
        let who = Listener {
            app: &req.identity.app,
            user: req.identity.user.as_deref(),
            filter: req.filter.as_ref(),
        };
        let mut gap = None;
        let replay = match &req.last_event_id {
            Some(id) => {
                let r = self.history.replay(&who, id);
                gap = r.gap.then(|| gap_frame(id));
                r.events
            }
            None => self
                .history
                .recent(&who, self.shared.cfg.history_on_connect),
        };
        {
            let conn = &mut self.conns[key as usize];
            conn.app = app;
            conn.filter = req.filter.map(Box::new);
        }
        if let Some(user) = &req.identity.user {
            let u = self.users.get_or_insert(app, user);
            self.link_user(key, u);
        }
        self.set_state(key, State::Streaming);
        self.stats.streaming.fetch_add(1, Ordering::Relaxed);
        debug!(
            "conn {key}: stream {conn_id} for app {:?} user {:?}",
            req.identity.app, req.identity.user
        );
        let mut frames: Vec<&[u8]> = Vec::with_capacity(2 + replay.len());
        frames.push(head.as_bytes());
        frames.extend(gap.as_deref());
        frames.extend(replay.iter().map(|e| &*e.frame));
        if !self.write_frames(key, &frames, now_ms) {
            return;
        }
        if let Some(wheel) = &mut self.heartbeats {
            let gen = self.conns[key as usize].gen;
            wheel.schedule((key, gen), now_ms / 1000 + heartbeat_secs);
        }
    }

    fn link_user(&mut self, key: u32, user: u32) {
        let u = self.users.get_mut(user);
        let old_head = u.head;
        u.head = key;
        u.count += 1;
        if old_head != NIL {
            self.conns[old_head as usize].user_prev = key;
        }
        let conn = &mut self.conns[key as usize];
        conn.user = user;
        conn.user_next = old_head;
        conn.user_prev = NIL;
    }

    fn unlink_user(&mut self, key: u32) {
        let (user, prev, next) = {
            let c = &self.conns[key as usize];
            (c.user, c.user_prev, c.user_next)
        };
        if user == NIL {
            return;
        }
        if prev != NIL {
            self.conns[prev as usize].user_next = next;
        } else {
            self.users.get_mut(user).head = next;
        }
        if next != NIL {
            self.conns[next as usize].user_prev = prev;
        }
        let u = self.users.get_mut(user);
        u.count -= 1;
        if u.count == 0 {
            self.users.remove(user);
        }
        self.conns[key as usize].user = NIL;
    }

    fn close(&mut self, key: u32, why: &str) {
        if !self.conns.contains(key as usize) {
            return;
        }
        self.unlink_user(key);
        let conn = self.conns.remove(key as usize);
        trace!("conn {key}: closed in {} ({why})", conn.state);
        if conn.state == State::Streaming {
            self.stats.streaming.fetch_sub(1, Ordering::Relaxed);
        }
        if conn.pending != NIL {
            let p = self.pending.remove(conn.pending as usize);
            self.release_buffer(p.buf);
        }
        self.stats.set_open(self.conns.len());
        // Dropping `conn` closes the fd, which also removes it from epoll.
    }

    // ----- writing -----------------------------------------------------------

    /// Writes `frames` to a connection in one `writev`, keeping any unsent
    /// tail in a pooled buffer. Returns false when the connection was closed.
    fn write_frames(&mut self, key: u32, frames: &[&[u8]], now_ms: u64) -> bool {
        let now_rel = self.now_rel(now_ms);
        let max = self.shared.cfg.max_pending_bytes;
        let conn = &mut self.conns[key as usize];
        if conn.pending != NIL {
            // Already backed up: queue behind what is waiting; EPOLLOUT flushes.
            let p = &mut self.pending[conn.pending as usize];
            for f in frames {
                p.append(f);
            }
            return p.unsent() <= max || self.close_slow(key);
        }
        let total: usize = frames.iter().map(|f| f.len()).sum();
        let written = match writev_all(&conn.fd, frames) {
            Ok(n) => n,
            Err(e) => {
                self.close(key, e.desc());
                return false;
            }
        };
        conn.last_write = now_rel;
        if written == total {
            return true;
        }
        if total - written > max {
            return self.close_slow(key);
        }
        // Keep only the unsent tail, in a pooled buffer.
        let mut buf = self.pool.pop().unwrap_or_default();
        let mut skip = written;
        for f in frames {
            if skip >= f.len() {
                skip -= f.len();
                continue;
            }
            buf.extend_from_slice(&f[skip..]);
            skip = 0;
        }
        conn.pending = self.pending.insert(Pending { buf, off: 0 }) as u32;
        true
    }

    fn close_slow(&mut self, key: u32) -> bool {
        self.stats.slow_disconnects.fetch_add(1, Ordering::Relaxed);
        debug!("conn {key}: cut, over MAX_PENDING_BYTES");
        self.close(key, "slow listener");
        false
    }

    /// Sends what is pending after `EPOLLOUT`.
    fn flush(&mut self, key: u32, now_ms: u64) {
        let now_rel = self.now_rel(now_ms);
        let conn = &mut self.conns[key as usize];
        if conn.pending == NIL {
            return;
        }
        let p = &mut self.pending[conn.pending as usize];
        while p.off < p.buf.len() {
            match nix::unistd::write(&conn.fd, &p.buf[p.off..]) {
                Ok(n) => p.off += n,
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    let why = e.desc();
                    return self.close(key, why);
                }
            }
        }
        conn.last_write = now_rel;
        let p = self.pending.remove(conn.pending as usize);
        conn.pending = NIL;
        if conn.state == State::Closing {
            sys::net::shutdown_write(&conn.fd);
        }
        self.release_buffer(p.buf);
    }

    fn release_buffer(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= POOL_BUFFER_KEEP && self.pool.len() < POOL_BUFFERS {
            buf.clear();
            self.pool.push(buf);
        }
    }

    // ----- inbox and delivery ------------------------------------------------

    /// Drains at most [`INBOX_BATCH`] messages and delivers their events.
    /// Returns true when more are waiting; a shutdown message sets
    /// `stopping`.
    fn drain_inbox(&mut self, now_ms: u64) -> bool {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        for _ in 0..INBOX_BATCH {
            match self.inbox.try_recv() {
                Ok(Msg::Events(batch)) => events.extend(batch.iter().cloned()),
                Ok(Msg::History(batch)) => {
                    // Keep ingest order: what came before goes first.
                    self.take_in(&mut events, now_ms);
                    for ev in batch.iter() {
                        self.history.push(ev);
                    }
                }
                Ok(Msg::Shutdown) => {
                    self.stopping = true;
                    break;
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        let more = !self.stopping && !self.inbox.is_empty();
        self.take_in(&mut events, now_ms);
        self.events = events;
        more
    }

    /// Records drained events in the history, delivers them, and empties
    /// `events`.
    fn take_in(&mut self, events: &mut Vec<Arc<Event>>, now_ms: u64) {
        if events.is_empty() {
            return;
        }
        for ev in events.iter() {
            self.history.push(ev);
        }
        self.deliver(events, now_ms);
        events.clear();
    }

    /// Delivers a run of events in order, each connection getting all of its
    /// matching events in one write.
    fn deliver(&mut self, events: &[Arc<Event>], now_ms: u64) {
        // Targeted events: (connection, event index) pairs from the user index.
        let mut targeted = std::mem::take(&mut self.targeted);
        targeted.clear();
        let mut broadcast = false;
        for (i, ev) in events.iter().enumerate() {
            match &ev.target {
                Target::All => broadcast = true,
                Target::Users(ids) => {
                    let apps = match &ev.app {
                        Some(a) => match self.users.find_app(a) {
                            Some(ix) => ix..ix + 1,
                            None => continue,
                        },
                        None => 0..self.users.app_count(),
                    };
                    for app in apps {
                        for id in ids.iter() {
                            let Some(u) = self.users.find(app, id) else {
                                continue;
                            };
                            let mut c = self.users.get(u).head;
                            while c != NIL {
                                targeted.push((c, i as u32));
                                c = self.conns[c as usize].user_next;
                            }
                        }
                    }
                }
            }
        }
        targeted.sort_unstable();
        targeted.dedup();

        let mut frames: Vec<&[u8]> = Vec::new();
        let mut delivered = 0u64;
        if broadcast {
            // Resolve each broadcast event's app once.
            let bapps: Vec<Option<Option<u32>>> = events
                .iter()
                .map(|ev| match (&ev.target, &ev.app) {
                    (Target::All, None) => Some(None),
                    (Target::All, Some(a)) => self.users.find_app(a).map(Some),
                    _ => None,
                })
                .collect();
            let mut keys = std::mem::take(&mut self.keys);
            keys.clear();
            keys.extend(
                self.conns
                    .iter()
                    .filter(|(_, c)| c.state == State::Streaming)
                    .map(|(k, _)| k as u32),
            );
            let mut t = 0;
            for &key in &keys {
                while t < targeted.len() && targeted[t].0 < key {
                    t += 1;
                }
                frames.clear();
                let conn = &self.conns[key as usize];
                for (i, ev) in events.iter().enumerate() {
                    let wanted = match bapps[i] {
                        Some(None) => true,
                        Some(Some(app)) => conn.app == app,
                        None => {
                            let hit = t < targeted.len() && targeted[t] == (key, i as u32);
                            if hit {
                                t += 1;
                            }
                            hit
                        }
                    };
                    if wanted && conn.wants(ev) {
                        frames.push(&ev.frame);
                    }
                }
                if !frames.is_empty() {
                    delivered += frames.len() as u64;
                    self.write_frames(key, &frames, now_ms);
                }
            }
            self.keys = keys;
        } else {
            let mut start = 0;
            while start < targeted.len() {
                let key = targeted[start].0;
                let end = start + targeted[start..].iter().take_while(|p| p.0 == key).count();
                frames.clear();
                if self
                    .conns
                    .get(key as usize)
                    .is_some_and(|c| c.state == State::Streaming)
                {
                    let conn = &self.conns[key as usize];
                    for &(_, i) in &targeted[start..end] {
                        let ev = &events[i as usize];
                        if conn.wants(ev) {
                            frames.push(&ev.frame);
                        }
                    }
                }
                if !frames.is_empty() {
                    delivered += frames.len() as u64;
                    self.write_frames(key, &frames, now_ms);
                }
                start = end;
            }
        }
        self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.targeted = targeted;
    }

    // ----- timers ------------------------------------------------------------

    fn fire_timers(&mut self, now_ms: u64) {
        while let Some((key, gen)) = self.head_timeouts.pop_expired(now_ms) {
            if !self.alive(key, gen) || self.conns[key as usize].state != State::ReadingHead {
                continue;
            }
            let started = self.conns[key as usize]
                .head
                .as_ref()
                .is_some_and(|b| !b.is_empty());
            if started {
                let body = response::problem(
                    Problem::RequestTimeout,
                    "request head not complete within HEADER_TIMEOUT_MS",
                    "",
                );
                self.respond_and_close(key, &body, now_ms);
            } else {
                self.close(key, "idle before sending a request");
            }
        }
        while let Some((key, gen)) = self.lingers.pop_expired(now_ms) {
            if self.alive(key, gen) {
                self.close(key, "linger over");
            }
        }
        self.heartbeat(now_ms);
    }

    fn heartbeat(&mut self, now_ms: u64) {
        let Some(wheel) = &mut self.heartbeats else {
            return;
        };
        let now_s = now_ms / 1000;
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        wheel.expire(now_s, &mut expired);
        if expired.is_empty() {
            self.expired = expired;
            return;
        }
        let interval = self.shared.cfg.heartbeat_secs;
        let frame = match self.shared.cfg.heartbeat_mode {
            HeartbeatMode::Event => sse::ping_event(sys::clock::unix_secs()),
            HeartbeatMode::Comment => sse::PING_COMMENT.to_vec(),
        };
        for &(key, gen) in &expired {
            if !self.alive(key, gen) || self.conns[key as usize].state != State::Streaming {
                continue;
            }
            // When the connection will have been idle a whole interval,
            // rounded up to the wheel's second: never early.
            let idle_until_ms = self.epoch_ms
                + u64::from(self.conns[key as usize].last_write) * 100
                + interval * 1000;
            let due = if idle_until_ms <= now_ms {
                if !self.write_frames(key, &[&frame], now_ms) {
                    continue;
                }
                now_s + interval
            } else {
                idle_until_ms.div_ceil(1000)
            };
            if let Some(wheel) = &mut self.heartbeats {
                wheel.schedule((key, gen), due);
            }
        }
        self.expired = expired;
    }

    fn random_bytes(&mut self) -> [u8; 16] {
        let a = wyrand(&mut self.rng);
        let b = wyrand(&mut self.rng);
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&a.to_le_bytes());
        out[8..].copy_from_slice(&b.to_le_bytes());
        out
    }
}

/// `writev` of `frames` in groups of at most [`IOV_BATCH`]; returns the bytes
/// written before the socket filled up (`EAGAIN` is not an error).
fn writev_all(fd: &OwnedFd, frames: &[&[u8]]) -> Result<usize, nix::errno::Errno> {
    let mut written = 0;
    // Slices live on the stack: no allocation per delivery.
    let mut slices = [IoSlice::new(&[]); IOV_BATCH];
    for group in frames.chunks(IOV_BATCH) {
        for (slot, f) in slices.iter_mut().zip(group) {
            *slot = IoSlice::new(f);
        }
        let group_len: usize = group.iter().map(|f| f.len()).sum();
        loop {
            match nix::sys::uio::writev(fd, &slices[..group.len()]) {
                Ok(n) => {
                    written += n;
                    if n < group_len {
                        return Ok(written);
                    }
                    break;
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(written),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(written)
}

fn token(key: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(key)
}

fn seed() -> u64 {
    let b = *uuid::Uuid::new_v4().as_bytes();
    u64::from_le_bytes(b[..8].try_into().unwrap_or([7; 8]))
}

/// wyrand: a fast non-cryptographic generator for connection ids, seeded from
/// the OS once per reactor.
fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0xa076_1d64_78bd_642f);
    let t = u128::from(*state) * u128::from(*state ^ 0xe703_7ed1_a0b4_28db);
    ((t >> 64) ^ t) as u64
}
