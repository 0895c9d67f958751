//! A reactor's readiness poller (edge-triggered epoll) and its waker (eventfd).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

/// Readiness reported for one registered descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Peer hung up or the socket errored.
    pub closed: bool,
}

/// An epoll instance. Sockets are registered once, edge-triggered, for both
/// directions; the caller reads/writes until `EAGAIN`.
pub struct Poller {
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

impl Poller {
    pub fn new(capacity: usize) -> io::Result<Self> {
        Ok(Self {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            events: vec![EpollEvent::empty(); capacity],
        })
    }

    /// Registers a connection socket: in, out, peer hang-up; edge-triggered.
    pub fn add_conn(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN
            | EpollFlags::EPOLLOUT
            | EpollFlags::EPOLLRDHUP
            | EpollFlags::EPOLLET;
        Ok(self.epoll.add(fd, EpollEvent::new(flags, token))?)
    }

    /// Registers a listener or waker: readable, edge-triggered.
    pub fn add_readable(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLET;
        Ok(self.epoll.add(fd, EpollEvent::new(flags, token))?)
    }

    /// Waits up to `timeout_ms` (0 = poll) and calls `f` for each ready fd.
    pub fn wait(&mut self, timeout_ms: u16, mut f: impl FnMut(Ready)) -> io::Result<()> {
        let n = match self
            .epoll
            .wait(&mut self.events, EpollTimeout::from(timeout_ms))
        {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        for ev in &self.events[..n] {
            let flags = ev.events();
            f(Ready {
                token: ev.data(),
                readable: flags.intersects(EpollFlags::EPOLLIN),
                writable: flags.intersects(EpollFlags::EPOLLOUT),
                closed: flags.intersects(
                    EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR | EpollFlags::EPOLLRDHUP,
                ),
            });
        }
        Ok(())
    }
}

/// Wakes a reactor blocked in `epoll_wait` from another thread.
pub struct Waker {
    fd: EventFd,
}

impl Waker {
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        })
    }

    /// Adds one to the counter; the poller sees the waker readable.
    pub fn wake(&self) {
        let _ = self.fd.write(1);
    }

    /// Resets the counter after a wake-up.
    pub fn reset(&self) {
        let _ = self.fd.read();
    }
}

impl AsFd for Waker {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
