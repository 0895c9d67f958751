//! What the reactor core asks of a driver: move bytes, nothing else.
//!
//! A readiness driver (epoll) writes at once and says how much the kernel
//! took; the core keeps the rest. A completion driver (io_uring) takes the
//! whole output, keeps every piece alive until the kernel is done with it,
//! and reports progress through [`super::Core::on_sent`]. Either way the core
//! alone decides what is sent to whom, what is queued and when a listener is
//! too slow.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::hub::Event;

/// One piece of output.
#[derive(Clone, Copy)]
pub enum Out<'a> {
    /// An event's shared frame: a completion driver keeps the `Arc` (no copy).
    Event(&'a Arc<Event>),
    /// Bytes the core lends for this call only (response heads, pings,
    /// queued tails): a completion driver copies them.
    Bytes(&'a [u8]),
    /// Bytes that live forever (the heartbeat comment): never copied.
    Static(&'static [u8]),
}

impl Out<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Out::Event(ev) => &ev.frame,
            Out::Bytes(b) => b,
            Out::Static(b) => b,
        }
    }
}

/// What became of a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The kernel took this many bytes now; the core queues the rest.
    Now(usize),
    /// The driver took everything and will report through `Core::on_sent`.
    Later,
}

/// The system calls the core may cause, each through its driver.
pub trait Transport {
    /// Starts watching a new connection; `token` comes back with its input.
    fn register(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()>;
    /// Sends `out` in order, as one write where the driver can.
    fn send(&mut self, fd: BorrowedFd<'_>, token: u64, out: &[Out<'_>]) -> io::Result<Sent>;
    /// The peer's IP address (`None` if the socket has none any more).
    fn peer_ip(&self, fd: BorrowedFd<'_>) -> Option<std::net::IpAddr>;
    /// The monotonic clock in milliseconds, read for the publish-to-write
    /// latency figure only (the core's decisions use the `now` passed in).
    fn clock_ms(&self) -> u64;
    /// The connection now streams: its input is ignored from here on, only
    /// its close matters (a driver may stop reading and just watch).
    fn streaming(&mut self, fd: BorrowedFd<'_>, token: u64);
    /// Half-closes the write side (all queued output is sent by then).
    fn shutdown_write(&mut self, fd: BorrowedFd<'_>);
    /// Makes the coming close abortive: what the kernel still queues for
    /// this connection is dropped at once (a listener cut as too slow).
    fn abort_on_close(&mut self, fd: BorrowedFd<'_>);
    /// Closes the connection's descriptor, first stopping everything in
    /// flight for it, so that nothing outlives the socket or reaches a
    /// successor that reuses the descriptor number.
    fn release(&mut self, fd: OwnedFd, token: u64);
}
