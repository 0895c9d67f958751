//! The reactor core: everything one reactor does that does not depend on how
//! its sockets are polled. It owns the connection slab (slots carry a
//! generation, so a reused slot never receives its predecessor's events),
//! the user index, the history, the timers, delivery matching and the
//! write-queue policy, including the `MAX_PENDING_BYTES` cut.
//!
//! A driver ([`driver::epoll`] or [`driver::uring`]) runs the loop: it reads
//! the monotonic clock once per turn, moves bytes, and reports what happened
//! through the `on_*` methods; every system call the core needs goes through
//! its [`Transport`]. So the core is plain code over bytes and time, and its
//! unit tests (`tests.rs`) drive it with no socket at all.
//!
//! Contracts:
//! - Tokens are `generation << 32 | slot` with a 24-bit generation, so a
//!   token fits in 56 bits and a driver may tag the top byte (io_uring's
//!   `user_data`); a token for a closed slot is ignored everywhere.
//! - Delivery coalesces: the events drained in one turn are matched per
//!   connection, and each connection gets all of its matching events in one
//!   send.
//! - A connection whose unsent bytes would pass `MAX_PENDING_BYTES` is cut
//!   and counted (disconnect reason `slow`); it reconnects with
//!   `Last-Event-ID`.
//! - Every close is counted by reason ([`stats::Why`]) and, for a stream,
//!   logged with it at `debug`; every final response is counted by status,
//!   every refusal by problem type (and logged, throttled: [`refusals`]),
//!   every delivery by publish-to-write latency.
//! - With `CLOSE_ON_TOKEN_EXPIRY`, a stream with a token ends (reason
//!   `expired`) at the first tick whose wall-clock second reaches its
//!   `exp` + `JWT_LEEWAY_SECONDS`: the second from which the verifier
//!   refuses that token.
//! - A stream starts only after the inbox is drained, so replay and live
//!   delivery meet where every other reactor's did: no gap, no duplicate.
//! - Bounded work per turn: the driver accepts at most [`ACCEPT_BATCH`] and
//!   the core drains at most [`INBOX_BATCH`] inbox messages.
//! - A shutdown message begins the drain ([`drain`]): the driver closes its
//!   listener, the streams end spread over `DRAIN_SPREAD_MS`, then the core
//!   stops.

mod claim;
mod deliver;
mod drain;
pub mod driver;
mod index;
mod input;
pub mod live;
mod output;
mod refusals;
mod registry;
mod replay;
mod shared;
mod slot;
pub mod stats;
#[cfg(test)]
mod tests;
mod ticks;
mod timers;
pub mod transport;
mod users;
mod views;

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Receiver;
use hashbrown::HashMap;
use log::{debug, info, log_enabled, trace, warn, Level};
use slab::Slab;

use crate::conn::State;
use crate::hub::history::History;
use crate::hub::inbox::Msg;
use crate::hub::registry::ConnRef;
use crate::hub::Event;

pub use shared::Shared;
use slot::{Conn, Pending};
pub use stats::Stats;
use stats::Why;
use timers::{Deadlines, Expiries, Token, Wheel};
pub use transport::{Out, Sent, Transport};
use users::{Users, NIL};

/// Connections accepted per turn before other work gets a go.
pub const ACCEPT_BATCH: usize = 256;
/// Inbox messages drained per turn.
pub const INBOX_BATCH: usize = 256;
/// Inbox drains (of [`INBOX_BATCH`] each) before a stream starts.
const CATCH_UP_ROUNDS: usize = 64;
/// How long a connection waits for work handed off (a listing, a claim)
/// before it is answered 503.
pub const WAIT_TIMEOUT_MS: u64 = 10_000;
/// How long a refused connection may linger so its response is not lost to a
/// reset.
const CLOSE_LINGER_MS: u64 = 2000;
/// Preallocated write buffers per reactor, and their initial size.
const POOL_BUFFERS: usize = 64;
const POOL_BUFFER_BYTES: usize = 16 * 1024;
/// Generations wrap within 24 bits (see the token contract above).
const GEN_MASK: u32 = 0x00ff_ffff;
/// Buffers that grew past this are freed rather than pooled.
const POOL_BUFFER_KEEP: usize = 64 * 1024;

/// One reactor's core, driven through the transport `T`.
pub struct Core<T> {
    t: T,
    index: usize,
    shared: Arc<Shared>,
    /// This reactor's copy of the reloadable settings ([`live`]).
    live: live::LiveCopy,
    stats: Arc<Stats>,
    inbox: Receiver<Msg>,
    conns: Slab<Conn>,
    history: History,
    next_gen: u32,
    users: Users,
    pending: Slab<Pending>,
    pool: Vec<Vec<u8>>,
    head_timeouts: Deadlines,
    lingers: Deadlines,
    /// Streams waiting for the cluster's per-user count ([`claim`]) or the
    /// log reader ([`replay`]).
    parked: HashMap<u32, replay::Parked>,
    /// When each `Waiting` connection (a claim, a log read or a listing)
    /// gives up.
    waits: Deadlines,
    /// Presence views of streams that started while announcements were in
    /// flight ([`views`]).
    views: HashMap<u32, views::View>,
    heartbeats: Option<Wheel>,
    /// When streams' tokens expire (`CLOSE_ON_TOKEN_EXPIRY`).
    expiries: Expiries,
    /// Start of this reactor, so per-connection times fit in a `u32`.
    epoch_ms: u64,
    /// The drain a shutdown message began ([`drain`]).
    drain: Option<drain::Drain>,
    /// The drain is over: the driver ends its loop.
    stopping: bool,
    /// Unix seconds minus monotonic seconds (set by the driver's clock).
    unix_offset_s: i64,
    // Scratch space reused across turns.
    events: Vec<Arc<Event>>,
    targeted: Vec<(u32, u32)>,
    keys: Vec<u32>,
    picked: Vec<u32>,
    bcast: Vec<deliver::Reach>,
    per_event: Vec<u64>,
    expired: Vec<Token>,
}

impl<T: Transport> Core<T> {
    /// A core for reactor `index`, with room reserved for `capacity`
    /// connections, its clock starting at `now_ms` (monotonic).
    pub fn new(
        t: T,
        index: usize,
        shared: Arc<Shared>,
        stats: Arc<Stats>,
        inbox: Receiver<Msg>,
        capacity: usize,
        now_ms: u64,
    ) -> Self {
        let now_s = now_ms / 1000;
        let heartbeats =
            (shared.cfg.heartbeat_secs > 0).then(|| Wheel::new(shared.cfg.heartbeat_secs, now_s));
        Self {
            t,
            index,
            stats,
            inbox,
            history: History::new(shared.history_limits()),
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
            parked: HashMap::new(),
            waits: Deadlines::new(),
            views: HashMap::new(),
            heartbeats,
            expiries: Expiries::new(),
            epoch_ms: now_s * 1000,
            drain: None,
            stopping: false,
            unix_offset_s: 0,
            events: Vec::new(),
            targeted: Vec::new(),
            keys: Vec::new(),
            picked: Vec::new(),
            bcast: Vec::new(),
            per_event: Vec::new(),
            expired: Vec::new(),
            live: live::LiveCopy::new(&shared.live),
            shared,
        }
    }

    /// The driver's half of the core.
    pub fn transport(&mut self) -> &mut T {
        &mut self.t
    }

    /// Which reactor this is (for logs).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The drain a shutdown message began is over: the driver ends its loop
    /// and calls [`Core::shutdown`].
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// The connection's descriptor, for a driver that reads by itself
    /// (`None` once the connection is closed).
    pub fn fd(&self, token: u64) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.live(token).map(|k| self.conns[k as usize].fd.as_fd())
    }

    /// Whether the connection is streaming (its input no longer matters).
    pub fn is_streaming(&self, token: u64) -> bool {
        self.live(token)
            .is_some_and(|k| self.conns[k as usize].state == State::Streaming)
    }

    /// Closes every connection.
    pub fn shutdown(&mut self) {
        let keys: Vec<u32> = self.conns.iter().map(|(k, _)| k as u32).collect();
        let open = keys.len();
        for key in keys {
            self.close(key, Why::Shutdown);
        }
        info!("reactor {} stopped, closed {open} connections", self.index);
    }

    /// Tenths of a second since this reactor started, rounded up (fits
    /// `u32` for 13 years): the resolution of `Conn::last_write`. Rounding
    /// up means a heartbeat is never early.
    fn now_rel(&self, now_ms: u64) -> u32 {
        now_ms.saturating_sub(self.epoch_ms).div_ceil(100) as u32
    }

    /// Tells the core the wall clock (drivers do at start; `on_tick` keeps
    /// it current), for `created_at`.
    pub fn set_wall_clock(&mut self, now_ms: u64, unix_s: u64) {
        self.unix_offset_s = unix_s as i64 - (now_ms / 1000) as i64;
    }

    fn unix_s(&self, now_ms: u64) -> u64 {
        ((now_ms / 1000) as i64 + self.unix_offset_s).max(0) as u64
    }

    /// The connection id of a slot.
    fn conn_id(&self, key: u32) -> uuid::Uuid {
        self.shared.ids.encode(ConnRef {
            reactor: self.index as u16,
            slot: key,
            gen: self.conns[key as usize].gen,
        })
    }

    /// The slot of a live token.
    fn live(&self, token: u64) -> Option<u32> {
        let (key, gen) = ((token & 0xffff_ffff) as u32, (token >> 32) as u32);
        self.alive(key, gen).then_some(key)
    }

    fn alive(&self, key: u32, gen: u32) -> bool {
        self.conns.get(key as usize).is_some_and(|c| c.gen == gen)
    }

    fn token_of(&self, key: u32) -> u64 {
        token(key, self.conns[key as usize].gen)
    }

    // ----- accepting and closing ---------------------------------------------

    /// A new connection from the driver's listener. Returns its token, or
    /// `None` when it could not be registered (it is closed then).
    pub fn on_accept(&mut self, fd: OwnedFd, now_ms: u64) -> Option<u64> {
        let open = self.shared.open.fetch_add(1, Ordering::Relaxed) + 1;
        let full = open > self.shared.cfg.max_connections;
        self.next_gen = self.next_gen.wrapping_add(1) & GEN_MASK;
        let gen = self.next_gen;
        let now_rel = self.now_rel(now_ms);
        let created = self.unix_s(now_ms) as u32;
        let entry = self.conns.vacant_entry();
        let key = entry.key() as u32;
        if let Err(e) = self.t.register(fd.as_fd(), token(key, gen)) {
            warn!("reactor {}: cannot watch a new connection: {e}", self.index);
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        entry.insert(Conn::new(fd, gen, now_rel, created));
        self.stats.set_open(self.conns.len());
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        if full {
            // Refused through the normal close path, so the response is not
            // lost to a reset while the request is still unread.
            self.stats.refused_full.fetch_add(1, Ordering::Relaxed);
            self.respond_and_close(key, &crate::conn::session::server_full(), now_ms);
        } else {
            self.head_timeouts
                .push((key, gen), now_ms + self.shared.cfg.header_timeout_ms);
        }
        self.alive(key, gen).then(|| token(key, gen))
    }

    /// Counts an accept that failed for want of descriptors or memory.
    pub fn count_accept_error(&self) {
        self.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The peer closed its side, or the socket failed (`why`, for the
    /// trace log).
    pub fn on_closed(&mut self, token: u64, why: &str) {
        if let Some(key) = self.live(token) {
            trace!("conn {key}: {why}");
            let after_response = self.conns[key as usize].state == State::Closing;
            self.close(
                key,
                if after_response {
                    Why::Responded
                } else {
                    Why::Peer
                },
            );
        }
    }

    fn set_state(&mut self, key: u32, state: State) {
        let conn = &mut self.conns[key as usize];
        trace!("conn {key}: {} => {state}", conn.state);
        conn.state = state;
    }

    fn close(&mut self, key: u32, why: Why) {
        if !self.conns.contains(key as usize) {
            return;
        }
        self.stats.disconnected(why);
        if self.conns[key as usize].state == State::Streaming && log_enabled!(Level::Debug) {
            let id = self.conn_id(key);
            debug!("conn {key}: stream {id} closed: {}", why.describe());
        }
        self.stream_ended(key);
        self.withdraw_claim(key);
        self.unlink_stream(key);
        let token = self.token_of(key);
        let conn = self.conns.remove(key as usize);
        trace!("conn {key}: closed in {} ({})", conn.state, why.name());
        if conn.state == State::Streaming {
            self.stats.streaming.fetch_sub(1, Ordering::Relaxed);
        }
        if conn.pending != NIL {
            let p = self.pending.remove(conn.pending as usize);
            self.release_buffer(p.buf);
        }
        self.shared.open.fetch_sub(1, Ordering::Relaxed);
        self.stats.set_open(self.conns.len());
        self.t.release(conn.fd, token);
    }
}

/// A connection's token: its slot and the slot's generation.
pub fn token(key: u32, gen: u32) -> u64 {
    (u64::from(gen) << 32) | u64::from(key)
}
