//! The drivers that run a reactor's loop over its [`Core`]: [`epoll`]
//! (readiness) and [`uring`] (completion). They move bytes and report what
//! happened; the core decides. A behaviour that differs between them is a
//! bug, so every integration test runs under each (`scripts/test.sh`).
//!
//! Both loops have the same turn: wait (not at all when the last turn left
//! work behind, else until the next timer), read the monotonic clock once,
//! hand every readiness or completion to the core, drain the inbox when
//! woken, fire due timers.
//!
//! Once the core drains (a shutdown message, [`Core::draining`]), each
//! driver accepts what the kernel queued on its listener and closes it
//! at once, so that the port's other `SO_REUSEPORT` sockets (a new herald)
//! take every new connection; it runs the loop on until the core stops.

pub mod epoll;
pub mod uring;

use std::os::fd::OwnedFd;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::{Core, Shared, Stats};
use crate::hub::inbox::{Msg, Wake};

/// How long accepting pauses after the process ran out of descriptors or
/// memory, under every driver.
pub const ACCEPT_PAUSE_MS: u64 = 100;

/// What a failed accept means, the same under every driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptFailure {
    /// That one connection is gone (aborted, refused by a filter, an
    /// interrupted call): accept the next at once; not counted.
    ThatOne,
    /// Out of descriptors or memory: counted in `accept_errors`, and
    /// accepting pauses for [`ACCEPT_PAUSE_MS`] rather than spin.
    Resources,
}

impl AcceptFailure {
    pub fn of(e: &std::io::Error) -> AcceptFailure {
        match e.raw_os_error() {
            Some(libc::ECONNABORTED | libc::EPROTO | libc::EINTR | libc::EPERM | libc::EAGAIN) => {
                AcceptFailure::ThatOne
            }
            _ => AcceptFailure::Resources,
        }
    }
}

/// The end of every turn, the same under every driver: drain the inbox
/// when woken (or when something waits anyway), take the drain's next step
/// (after a shutdown message), then fire due timers. `None` when the drain
/// is over, else whether the inbox holds more.
fn end_turn<T: super::Transport>(core: &mut Core<T>, woken: bool, now_ms: u64) -> Option<bool> {
    // A drain begun in this turn takes its first step in the next, once the
    // driver has closed the listener: a stream told `retry: 0` now could
    // otherwise come straight back to this process.
    let was_draining = core.draining();
    let more = (woken || core.inbox_waiting()) && core.drain_inbox(now_ms);
    if was_draining {
        core.drain_step(now_ms);
    }
    if core.stopping() {
        return None;
    }
    core.on_tick(now_ms, crate::sys::clock::unix_secs());
    Some(more)
}

/// The wait a driver may do now: none when the last turn left work behind,
/// else until the next timer or the end of an accept pause.
fn timeout<T: super::Transport>(
    core: &Core<T>,
    busy: bool,
    paused_until: Option<u64>,
    now_ms: u64,
) -> u64 {
    match (busy, paused_until) {
        (true, _) => 0,
        (false, Some(t)) => core.next_timeout(now_ms).min(t.saturating_sub(now_ms)),
        (false, None) => core.next_timeout(now_ms),
    }
}

/// Which driver a reactor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Epoll,
    Uring,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Epoll => "epoll",
            Backend::Uring => "io_uring",
        }
    }
}

/// What a reactor thread is started with.
pub struct Parts {
    pub index: usize,
    pub shared: Arc<Shared>,
    pub stats: Arc<Stats>,
    pub listener: OwnedFd,
    pub inbox: Receiver<Msg>,
    pub wake: Arc<Wake>,
    /// Connections to reserve room for.
    pub capacity: usize,
}

/// Builds the driver on the calling thread (io_uring rings are
/// single-issuer) and runs the reactor until a shutdown message arrives.
/// `ready` is told whether the driver could be built.
pub fn run(backend: Backend, parts: Parts, ready: impl FnOnce(std::io::Result<()>)) {
    match backend {
        Backend::Epoll => epoll::run(parts, ready),
        Backend::Uring => uring::run(parts, ready),
    }
}

/// The core over a freshly built transport, once `ready` has been told
/// whether the transport could be built (`None`: it could not).
fn core<T: super::Transport>(
    built: std::io::Result<T>,
    p: &Parts,
    ready: impl FnOnce(std::io::Result<()>),
) -> Option<Core<T>> {
    let t = match built {
        Ok(t) => t,
        Err(e) => {
            ready(Err(e));
            return None;
        }
    };
    ready(Ok(()));
    let now_ms = crate::sys::clock::mono_ms();
    let mut core = Core::new(
        t,
        p.index,
        p.shared.clone(),
        p.stats.clone(),
        p.inbox.clone(),
        p.capacity,
        now_ms,
    );
    core.set_wall_clock(now_ms, crate::sys::clock::unix_secs());
    Some(core)
}
