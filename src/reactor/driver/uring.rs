//! The completion driver: one io_uring per reactor.
//!
//! - Accepting is one multishot accept; the eventfd wake-up is one multishot
//!   poll.
//! - A connection reading its head keeps one multishot receive armed, into
//!   a ring of provided buffers (no buffer of its own while it waits). Once
//!   it streams, its input no longer matters: the receive is cancelled and
//!   a multishot poll for hang-up takes its place, so a listener that
//!   leaves is still seen at once (`/connections`, presence), as under
//!   epoll, while an idle stream holds one request in the kernel (~258 B of
//!   `io_kiocb`) instead of a receive with its async state (~864 B).
//! - A send is one `sendmsg` entry whose parts (event `Arc`s, or copies of
//!   borrowed bytes) the ring keeps alive until the kernel is done. A
//!   broadcast to N listeners is N entries and a few `io_uring_enter` calls.
//!   Short sends are resumed while the connection lives; the core counts the
//!   bytes still in flight against `MAX_PENDING_BYTES`.
//! - A descriptor is closed through the ring, behind a cancel of everything
//!   queued for it, so no request outlives it or reaches a reused number.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use log::{debug, warn};

use super::{AcceptFailure, Parts, ACCEPT_PAUSE_MS};
use crate::hub::Event;
use crate::reactor::{Core, Out, Sent, Transport};
use crate::sys::{self, uring::Completion, uring::Ring, uring::RECV_BUF};

/// Submission queue entries per ring (completions: four times as many).
const RING_ENTRIES: u32 = 4096;

/// One part of a send, kept alive by the ring until it completes.
pub enum Part {
    Event(Arc<Event>),
    Bytes(Vec<u8>),
    Static(&'static [u8]),
}

impl AsRef<[u8]> for Part {
    fn as_ref(&self) -> &[u8] {
        match self {
            Part::Event(ev) => &ev.frame,
            Part::Bytes(b) => b,
            Part::Static(b) => b,
        }
    }
}

/// The io_uring half of a reactor.
pub struct Uring {
    ring: Ring<Part>,
}

impl Transport for Uring {
    fn register(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.ring.recv(fd.as_raw_fd(), token)
    }

    fn send(&mut self, fd: BorrowedFd<'_>, token: u64, out: &[Out<'_>]) -> io::Result<Sent> {
        let parts = out.iter().map(|o| match *o {
            Out::Event(ev) => Part::Event(ev.clone()),
            Out::Bytes(b) => Part::Bytes(b.to_vec()),
            Out::Static(b) => Part::Static(b),
        });
        self.ring.send(fd.as_raw_fd(), token, parts)?;
        Ok(Sent::Later)
    }

    fn peer_ip(&self, fd: BorrowedFd<'_>) -> Option<std::net::IpAddr> {
        sys::net::peer_ip(fd)
    }

    fn clock_ms(&self) -> u64 {
        sys::clock::mono_ms()
    }

    fn streaming(&mut self, fd: BorrowedFd<'_>, token: u64) {
        if let Err(e) = self.ring.stop_reading(fd.as_raw_fd(), token) {
            warn!("io_uring: cannot watch a stream for hang-up: {e}");
        }
    }

    fn shutdown_write(&mut self, fd: BorrowedFd<'_>) {
        sys::net::shutdown_write(fd);
    }

    fn abort_on_close(&mut self, fd: BorrowedFd<'_>) {
        sys::net::abort_on_close(fd);
    }

    fn release(&mut self, fd: OwnedFd, _token: u64) {
        self.ring.close(fd);
    }
}

pub(super) fn run(parts: Parts, ready: impl FnOnce(io::Result<()>)) {
    let built = Ring::new(RING_ENTRIES).and_then(|mut ring| {
        let waker = parts.wake.waker().as_fd().as_raw_fd();
        ring.start(parts.listener.as_raw_fd(), waker)?;
        Ok(Uring { ring })
    });
    let Some(mut core) = super::core(built, &parts, ready) else {
        return;
    };
    let mut done = Vec::with_capacity(RING_ENTRIES as usize * 4);
    let mut busy = true;
    let mut accept_paused_until: Option<u64> = None;
    let mut listener = Some(parts.listener);
    loop {
        let now_ms = sys::clock::mono_ms();
        if accept_paused_until.is_some_and(|t| t <= now_ms) && listener.is_some() {
            accept_paused_until = None;
            if let Err(e) = core.transport().ring.restart_accept() {
                warn!("reactor {}: cannot accept again: {e}", parts.index);
                accept_paused_until = Some(now_ms + ACCEPT_PAUSE_MS);
            }
        }
        let timeout = super::timeout(&core, busy, accept_paused_until, now_ms);
        if let Err(e) = core.transport().ring.wait(timeout, &mut done) {
            warn!("reactor {}: io_uring_enter failed: {e}", parts.index);
        }
        let now_ms = sys::clock::mono_ms();
        let mut woken = false;
        for c in done.drain(..) {
            match c {
                Completion::Woken => {
                    parts.wake.acknowledge();
                    woken = true;
                }
                Completion::Accepted { fd: Ok(fd), .. } => {
                    core.on_accept(fd, now_ms);
                }
                Completion::Accepted { fd: Err(_), .. } if listener.is_none() => {
                    // The cancel of the closed listener's accept.
                }
                Completion::Accepted {
                    fd: Err(e),
                    stopped,
                } => {
                    debug!("reactor {}: accept failed: {e}", parts.index);
                    let failure = AcceptFailure::of(&e);
                    if failure == AcceptFailure::Resources {
                        core.count_accept_error();
                    }
                    if stopped {
                        // Accept again at once, or a little later rather
                        // than spin on the same shortage.
                        accept_paused_until = Some(match failure {
                            AcceptFailure::ThatOne => now_ms,
                            AcceptFailure::Resources => now_ms + ACCEPT_PAUSE_MS,
                        });
                    }
                }
                other => on_conn(&mut core, other, now_ms),
            }
        }
        busy = false;
        match super::end_turn(&mut core, woken, now_ms) {
            Some(more) => busy |= more,
            None => break,
        }
        if core.draining() {
            if let Some(l) = listener.take() {
                stop_accepting(&mut core, l, now_ms);
                accept_paused_until = None;
                busy = true;
            }
        }
    }
    core.shutdown();
    if let Some(l) = listener {
        core.transport().ring.stop_accepting(l);
    }
}

/// Closes the listener when the drain begins. What the kernel queued for it
/// would be reset by the close, so it is accepted first; the multishot
/// accept holds the socket open until it is cancelled, so the close goes
/// through the ring (cancel, then close) and is submitted at once. Accepts
/// it completes meanwhile are still handed to the core.
fn stop_accepting(core: &mut Core<Uring>, listener: OwnedFd, now_ms: u64) {
    loop {
        match sys::net::accept(listener.as_raw_fd()) {
            Ok(Some(a)) => {
                core.on_accept(a.fd, now_ms);
            }
            Ok(None) => break,
            Err(e) if AcceptFailure::of(&e) == AcceptFailure::ThatOne => continue,
            Err(e) => {
                debug!("reactor {}: accept failed: {e}", core.index());
                break;
            }
        }
    }
    core.transport().ring.stop_accepting(listener);
}

/// A completion about one connection.
fn on_conn(core: &mut Core<Uring>, c: Completion, now_ms: u64) {
    match c {
        Completion::Data {
            token,
            buf,
            len,
            rearm,
        } => {
            let mut chunk = [0u8; RECV_BUF];
            let n = core.transport().ring.take_buffer(buf, len, &mut chunk);
            if core.on_input(token, &chunk[..n], now_ms) && rearm {
                rearm_recv(core, token);
            }
        }
        Completion::Rearm { token } => rearm_recv(core, token),
        Completion::Rewatch { token } => {
            if let Some(fd) = core.fd(token).map(|fd| fd.as_raw_fd()) {
                if let Err(e) = core.transport().ring.watch_hangup(fd, token) {
                    warn!("io_uring: cannot watch a stream for hang-up: {e}");
                }
            }
        }
        Completion::Closed { token, result } => match result {
            Ok(()) => core.on_closed(token, "peer closed"),
            Err(e) => {
                debug!("receive failed: {e}");
                core.on_closed(token, "receive failed");
            }
        },
        Completion::Sent {
            token,
            id,
            result,
            finished,
        } => {
            log::trace!("send {id} token {token:#x}: {result:?} finished {finished}");
            let wanted = core.on_sent(token, result, finished, now_ms);
            if !finished {
                let ring = &mut core.transport().ring;
                if !wanted {
                    ring.abandon(id);
                } else if let Err(e) = ring.resume(id) {
                    warn!("io_uring: cannot resume a send: {e}");
                    ring.abandon(id);
                    core.on_closed(token, "send could not be resumed");
                }
            }
        }
        Completion::Woken | Completion::Accepted { .. } | Completion::None => {}
    }
}

/// Arms the receive of a connection that is still open and not streaming
/// (a stream is watched for hang-up instead).
fn rearm_recv(core: &mut Core<Uring>, token: u64) {
    if core.is_streaming(token) {
        return;
    }
    if let Some(fd) = core.fd(token).map(|fd| fd.as_raw_fd()) {
        if let Err(e) = core.transport().ring.recv(fd, token) {
            warn!("io_uring: cannot re-arm a receive: {e}");
        }
    }
}
