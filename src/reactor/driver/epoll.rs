//! The readiness driver: edge-triggered epoll, `accept4` in batches, `read`
//! until `EAGAIN`, one `writev` per send.
//!
//! Each connection is registered once for input, output and hang-up. Output
//! the kernel does not take stays with the core; `EPOLLOUT` asks the core to
//! send it.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use log::{debug, warn};

use super::{AcceptFailure, Parts, ACCEPT_PAUSE_MS};
use crate::reactor::{Core, Out, Sent, Transport, ACCEPT_BATCH};
use crate::sys::{self, poll::Poller};

/// Readiness events fetched per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;
/// Bytes read per `read` call.
const READ_CHUNK: usize = 4096;
/// Slices per `writev` call (the kernel takes up to 1024).
const IOV_BATCH: usize = 64;

const LISTENER: u64 = u64::MAX;
const WAKER: u64 = u64::MAX - 1;

/// The epoll half of a reactor.
pub struct Epoll {
    poller: Poller,
}

impl Transport for Epoll {
    fn register(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.poller.add_conn(fd, token)
    }

    fn send(&mut self, fd: BorrowedFd<'_>, _token: u64, out: &[Out<'_>]) -> io::Result<Sent> {
        writev_all(fd, out).map(Sent::Now)
    }

    fn peer_ip(&self, fd: BorrowedFd<'_>) -> Option<std::net::IpAddr> {
        sys::net::peer_ip(fd)
    }

    fn clock_ms(&self) -> u64 {
        sys::clock::mono_ms()
    }

    fn streaming(&mut self, _fd: BorrowedFd<'_>, _token: u64) {
        // One registration serves both: input is read and dropped, and the
        // hang-up shows as readable with 0 bytes.
    }

    fn shutdown_write(&mut self, fd: BorrowedFd<'_>) {
        sys::net::shutdown_write(fd);
    }

    fn abort_on_close(&mut self, fd: BorrowedFd<'_>) {
        sys::net::abort_on_close(fd);
    }

    fn release(&mut self, fd: OwnedFd, _token: u64) {
        // Closing the descriptor removes it from epoll.
        drop(fd);
    }
}

pub(super) fn run(parts: Parts, ready: impl FnOnce(io::Result<()>)) {
    let built = Poller::new(EVENTS_PER_WAIT).and_then(|poller| {
        poller.add_readable(parts.listener.as_fd(), LISTENER)?;
        poller.add_readable(parts.wake.waker().as_fd(), WAKER)?;
        Ok(Epoll { poller })
    });
    let Some(mut core) = super::core(built, &parts, ready) else {
        return;
    };
    let mut listener = Some(parts.listener);
    let mut ready = Vec::with_capacity(EVENTS_PER_WAIT);
    let mut busy = true;
    let mut more_accepts = true;
    let mut accept_paused_until: Option<u64> = None;
    loop {
        let now_ms = sys::clock::mono_ms();
        if accept_paused_until.is_some_and(|t| t <= now_ms) {
            // Edge-triggered: nothing would tell us again; try now.
            accept_paused_until = None;
            more_accepts = true;
        }
        let timeout = super::timeout(&core, busy, accept_paused_until, now_ms);
        ready.clear();
        if let Err(e) = core
            .transport()
            .poller
            .wait(timeout as u16, |r| ready.push(r))
        {
            warn!("reactor {}: epoll_wait failed: {e}", parts.index);
        }
        let now_ms = sys::clock::mono_ms();
        let mut woken = false;
        for r in &ready {
            match r.token {
                LISTENER => more_accepts = true,
                WAKER => {
                    parts.wake.acknowledge();
                    woken = true;
                }
                token => {
                    if r.writable {
                        core.on_writable(token, now_ms);
                    }
                    if r.readable || r.closed {
                        read_all(&mut core, token, now_ms);
                    }
                }
            }
        }
        busy = false;
        if let (true, None, Some(l)) = (more_accepts, accept_paused_until, &listener) {
            match accept_batch(&mut core, l.as_raw_fd(), now_ms) {
                Accepting::Drained => more_accepts = false,
                Accepting::More => busy = true,
                Accepting::Paused => {
                    more_accepts = false;
                    accept_paused_until = Some(now_ms + ACCEPT_PAUSE_MS);
                }
            }
        }
        match super::end_turn(&mut core, woken, now_ms) {
            Some(more) => busy |= more,
            None => break,
        }
        if core.draining() {
            if let Some(l) = listener.take() {
                // What the kernel queued for this listener would be reset
                // by the close: take it first (it is served meanwhile).
                while let Accepting::More = accept_batch(&mut core, l.as_raw_fd(), now_ms) {}
                drop(l);
                busy = true;
            }
        }
    }
    drop(listener);
    core.shutdown();
}

/// Where accepting stands after a batch.
enum Accepting {
    /// The queue is empty: wait for the listener to be readable.
    Drained,
    /// A whole batch was taken: the queue may hold more.
    More,
    /// Out of descriptors or memory: try again after a pause.
    Paused,
}

/// Accepts up to a batch.
fn accept_batch(core: &mut Core<Epoll>, listener: i32, now_ms: u64) -> Accepting {
    for _ in 0..ACCEPT_BATCH {
        match sys::net::accept(listener) {
            Ok(Some(a)) => {
                if let Some(token) = core.on_accept(a.fd, now_ms) {
                    // Edge-triggered: the request may already be waiting.
                    read_all(core, token, now_ms);
                }
            }
            Ok(None) => return Accepting::Drained,
            Err(e) => {
                debug!("reactor {}: accept failed: {e}", core.index());
                if AcceptFailure::of(&e) == AcceptFailure::Resources {
                    core.count_accept_error();
                    return Accepting::Paused;
                }
            }
        }
    }
    Accepting::More
}

/// Reads until `EAGAIN`, handing every chunk to the core.
fn read_all(core: &mut Core<Epoll>, token: u64, now_ms: u64) {
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let Some(fd) = core.fd(token) else {
            return;
        };
        match nix::unistd::read(fd, &mut chunk) {
            Ok(0) => return core.on_closed(token, "peer closed"),
            Ok(n) => {
                if !core.on_input(token, &chunk[..n], now_ms) {
                    return;
                }
            }
            Err(nix::errno::Errno::EAGAIN) => return,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return core.on_closed(token, e.desc()),
        }
    }
}

/// `writev` of `out` in groups of at most [`IOV_BATCH`]; returns the bytes
/// written before the socket filled up (`EAGAIN` is not an error).
fn writev_all(fd: BorrowedFd<'_>, out: &[Out<'_>]) -> io::Result<usize> {
    let mut written = 0;
    // Slices live on the stack: no allocation per delivery.
    let mut slices = [IoSlice::new(&[]); IOV_BATCH];
    for group in out.chunks(IOV_BATCH) {
        for (slot, o) in slices.iter_mut().zip(group) {
            *slot = IoSlice::new(o.bytes());
        }
        let group_len: usize = group.iter().map(|o| o.bytes().len()).sum();
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
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(written)
}
