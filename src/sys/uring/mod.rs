//! io_uring for one reactor: a safe face over the `io-uring` crate.
//!
//! What it offers, and the promises that keep it sound:
//! - Multishot accept on a listener and a multishot poll on a wake-up
//!   eventfd, both re-armed here when the kernel ends them.
//! - Multishot receive per connection into a ring of provided buffers: a
//!   connection holds no read buffer while it waits. A buffer is handed back
//!   to the kernel as soon as the caller has copied its bytes.
//! - Sends as `sendmsg` of several parts. The ring owns every part (an `Arc`
//!   or owned bytes) and the `msghdr`/iovec array, boxed so they do not move,
//!   from the moment the entry is queued until its last completion; that is
//!   what makes queueing them safe.
//! - A short send is reported, and resumed only when the caller says the
//!   connection still wants it ([`Ring::resume`]), so a send never reaches a
//!   descriptor that was closed and reused.
//! - [`Ring::close`] takes the descriptor: it queues a cancel of everything
//!   for it, hard-linked to the close itself, so the number cannot be reused
//!   while anything queued for the old socket is unresolved.
//! - When the submission queue is full it is submitted, and completions that
//!   are ready are moved aside, so the completion queue cannot overflow.

mod bufs;
mod completion;
mod probe;
mod sends;

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use bufs::BufRing;
pub use completion::Completion;
pub use probe::probe;
use sends::SendOp;

/// Bytes per provided receive buffer. Most request heads fit in one; a
/// longer one (up to the 8 KiB cap) arrives in several.
pub const RECV_BUF: usize = 2048;
/// Provided receive buffers per ring (a power of two, at most 128: one bit
/// each in `Ring::filled`). The kernel uses them round-robin, so all of them
/// end up resident: 256 KiB per reactor. When a burst finds none free, the
/// receive stops and is re-armed.
const RECV_BUFS: u16 = 128;
const _: () = assert!(RECV_BUFS.is_power_of_two() && RECV_BUFS <= 128);
/// Finished send records kept for reuse; a fan-out to more listeners
/// allocates the rest and frees them afterwards.
const SPARE_SENDS: usize = 1024;
/// Buffer group id of the receive buffers.
pub(super) const BGID: u16 = 0;

/// Tags in the top byte of `user_data`; the low 56 bits carry a token or a
/// send id. Tokens therefore must fit in 56 bits.
const TAG_SHIFT: u32 = 56;
const TAG_ACCEPT: u64 = 1;
const TAG_WAKE: u64 = 2;
const TAG_RECV: u64 = 3;
const TAG_SEND: u64 = 4;
const TAG_CANCEL: u64 = 5;
const TAG_HANGUP: u64 = 6;
const LOW: u64 = (1 << TAG_SHIFT) - 1;

/// How a ring is set up. The driver uses [`Setup::CoopSingleIssuer`],
/// chosen by measurement (`cargo bench --bench hot_path -- fan_out`,
/// BENCHMARKS.md); the others exist to be measured against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// No setup flags.
    Plain,
    /// `COOP_TASKRUN | SINGLE_ISSUER`: completions are run when the task
    /// enters the kernel anyway, not by interrupting it.
    CoopSingleIssuer,
    /// `DEFER_TASKRUN | SINGLE_ISSUER`: completions are run only when the
    /// task asks for them.
    DeferTaskrun,
}

pub(super) fn builder(setup: Setup) -> io_uring::Builder {
    let mut b = IoUring::builder();
    match setup {
        Setup::Plain => {}
        Setup::CoopSingleIssuer => {
            b.setup_coop_taskrun().setup_single_issuer();
        }
        Setup::DeferTaskrun => {
            b.setup_defer_taskrun().setup_single_issuer();
        }
    }
    b
}

/// One reactor's ring.
pub struct Ring<P: AsRef<[u8]>> {
    ring: IoUring,
    bufs: BufRing,
    sends: Slab<Box<SendOp<P>>>,
    /// Finished send records, boxes and all, kept with their vectors'
    /// capacity: the next send reuses one without allocating.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<SendOp<P>>>,
    /// Completions moved aside while submitting a full queue.
    stash: Vec<cqueue::Entry>,
    /// Receive buffers the kernel has filled and handed to us (bit per
    /// buffer id): only those can be taken and given back.
    filled: u128,
    listener: RawFd,
    waker: RawFd,
}

impl<P: AsRef<[u8]>> Ring<P> {
    /// A ring with `entries` submission slots and four times as many
    /// completion slots.
    pub fn new(entries: u32) -> io::Result<Self> {
        Self::with_setup(entries, Setup::CoopSingleIssuer)
    }

    /// [`Ring::new`] with another setup, for measuring.
    pub fn with_setup(entries: u32, setup: Setup) -> io::Result<Self> {
        let ring = builder(setup).setup_cqsize(entries * 4).build(entries)?;
        let bufs = BufRing::new(&ring, RECV_BUFS)?;
        Ok(Self {
            ring,
            bufs,
            sends: Slab::new(),
            spare: Vec::new(),
            stash: Vec::new(),
            filled: 0,
            listener: -1,
            waker: -1,
        })
    }

    /// Starts accepting on `listener` (multishot) and watching `waker`
    /// (multishot poll). Both descriptors must outlive the ring.
    pub fn start(&mut self, listener: RawFd, waker: RawFd) -> io::Result<()> {
        self.listener = listener;
        self.waker = waker;
        self.arm_accept()?;
        self.arm_wake()
    }

    /// Accepts again after a failure stopped it.
    pub fn restart_accept(&mut self) -> io::Result<()> {
        self.arm_accept()
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        if self.listener < 0 {
            return Ok(()); // stopped for good (`stop_accepting`)
        }
        let e = opcode::AcceptMulti::new(types::Fd(self.listener))
            .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
            .build()
            .user_data(TAG_ACCEPT << TAG_SHIFT);
        // SAFETY: a multishot accept without an address refers to no memory
        // of ours.
        unsafe { self.push(&e) }
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(self.waker), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(TAG_WAKE << TAG_SHIFT);
        // SAFETY: a poll refers to no memory of ours.
        unsafe { self.push(&e) }
    }

    /// Arms a multishot receive for a connection.
    pub fn recv(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        debug_assert!(token <= LOW, "tokens must fit in 56 bits");
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data((TAG_RECV << TAG_SHIFT) | (token & LOW));
        // SAFETY: the receive writes only into the registered buffer ring,
        // which lives as long as the ring.
        unsafe { self.push(&e) }
    }

    /// Stops reading a connection and watches only for its close: cancels
    /// its receive and arms a multishot poll for hang-up. An idle streaming
    /// connection then holds one request in the kernel instead of a receive
    /// with its async state (BENCHMARKS.md: bytes per idle listener).
    pub fn stop_reading(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        debug_assert!(token <= LOW, "tokens must fit in 56 bits");
        let recv = (TAG_RECV << TAG_SHIFT) | (token & LOW);
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(recv))
            .build()
            .user_data(TAG_CANCEL << TAG_SHIFT);
        // SAFETY: a cancel refers to no memory of ours.
        unsafe { self.push(&cancel) }?;
        self.watch_hangup(fd, token)
    }

    /// Arms (again) the multishot hang-up poll of a streaming connection.
    pub fn watch_hangup(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        debug_assert!(token <= LOW, "tokens must fit in 56 bits");
        let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLRDHUP as u32)
            .multi(true)
            .build()
            .user_data((TAG_HANGUP << TAG_SHIFT) | (token & LOW));
        // SAFETY: a poll refers to no memory of ours.
        unsafe { self.push(&poll) }
    }

    /// Closes `fd` through the ring: a cancel of everything queued for it
    /// (receive and sends), hard-linked to a close, both sent with the next
    /// submission. The descriptor number stays taken until the close runs,
    /// after every entry queued before it has resolved the descriptor, so
    /// nothing queued for this socket can reach a successor that reuses the
    /// number, and no request keeps the socket open.
    pub fn close(&mut self, fd: OwnedFd) {
        let fd = fd.into_raw_fd();
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .flags(squeue::Flags::IO_HARDLINK)
            .user_data(TAG_CANCEL << TAG_SHIFT);
        let close = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(TAG_CANCEL << TAG_SHIFT);
        // SAFETY: a cancel and a close refer to no memory of ours.
        if unsafe { self.push_all(&[cancel, close]) }.is_err() {
            log::warn!("io_uring: could not queue the close of a socket");
            // SAFETY: the close was not queued, so `fd` is still ours.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }

    /// Stops accepting for good: forgets the listener (the accept is never
    /// re-armed) and closes it at once ([`Ring::close_now`]).
    pub fn stop_accepting(&mut self, listener: OwnedFd) {
        self.listener = -1;
        self.close_now(listener);
    }

    /// Closes `fd` and submits at once (the listener at shutdown: its
    /// multishot accept must not keep the port open).
    pub fn close_now(&mut self, fd: OwnedFd) {
        self.close(fd);
        if let Err(e) = self.submit() {
            log::warn!("io_uring: could not submit a close: {e}");
        }
    }

    /// Submits what is queued, waits up to `timeout_ms` (0: not at all) for
    /// a completion, and adds every completion, decoded, to `out`. Each
    /// completion is decoded exactly once, here.
    pub fn wait(&mut self, timeout_ms: u64, out: &mut Vec<Completion>) -> io::Result<()> {
        let mut raw = std::mem::take(&mut self.stash);
        let waited = self.enter(timeout_ms, raw.is_empty());
        raw.extend(self.ring.completion());
        // Decoding may re-arm a multishot, and a full queue then moves
        // newer completions aside into `stash`: they stay there for the
        // next call (overwriting them would lose a send's completion and
        // stall its connection for good).
        for cqe in raw.drain(..) {
            let c = self.decode(&cqe);
            out.push(c);
        }
        if self.stash.is_empty() {
            self.stash = raw;
        }
        waited
    }

    /// Submits, and waits up to `timeout_ms` when `may_wait` and nothing is
    /// ready.
    fn enter(&mut self, timeout_ms: u64, may_wait: bool) -> io::Result<()> {
        let result = if timeout_ms == 0 || !may_wait || !self.ring.completion().is_empty() {
            self.ring.submit().map(drop)
        } else {
            let ts = types::Timespec::new()
                .sec(timeout_ms / 1000)
                .nsec((timeout_ms % 1000) as u32 * 1_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args).map(drop)
        };
        match result {
            Err(e)
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                return Err(e)
            }
            _ => {}
        }
        Ok(())
    }

    fn submit(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    // Completions are backed up: move them aside and retry.
                    self.stash.extend(self.ring.completion());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Queues one entry, submitting first when the queue is full.
    ///
    /// # Safety
    /// Every buffer the entry points to must stay valid until its final
    /// completion.
    unsafe fn push(&mut self, e: &squeue::Entry) -> io::Result<()> {
        // SAFETY: passed on from the caller.
        unsafe { self.push_all(std::slice::from_ref(e)) }
    }

    /// Queues entries together (a linked chain stays in one submission),
    /// submitting first when they do not fit.
    ///
    /// # Safety
    /// As for [`Ring::push`], for every entry.
    unsafe fn push_all(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        loop {
            // SAFETY: the caller guarantees the entries' buffers outlive them.
            if unsafe { self.ring.submission().push_multiple(entries) }.is_ok() {
                return Ok(());
            }
            self.submit()?;
            // Keep the completion queue from overflowing while a large
            // fan-out is queued.
            self.stash.extend(self.ring.completion());
        }
    }

    /// Copies the bytes of receive buffer `buf` into `out` and gives the
    /// buffer back to the kernel. Returns the bytes copied; 0 for a buffer
    /// that is not ours to take (not reported filled, or already taken).
    pub fn take_buffer(&mut self, buf: u16, len: usize, out: &mut [u8]) -> usize {
        let bit = 1u128 << (buf % RECV_BUFS);
        if self.filled & bit == 0 {
            return 0;
        }
        self.filled &= !bit;
        let n = len.min(out.len()).min(RECV_BUF);
        out[..n].copy_from_slice(&self.bufs.bytes(buf)[..n]);
        self.bufs.give_back(buf);
        n
    }
}

impl<P: AsRef<[u8]>> Drop for Ring<P> {
    /// Cancels everything and waits (at most about a second) for every send
    /// the kernel may still read; what does not finish is leaked rather than
    /// freed under the kernel, and so are the receive buffers if they cannot
    /// be unregistered. (`ring` is dropped after this, closing the ring.)
    fn drop(&mut self) {
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(TAG_CANCEL << TAG_SHIFT);
        // SAFETY: a cancel refers to no memory of ours.
        let _ = unsafe { self.push(&cancel) };
        let mut done = Vec::new();
        for _ in 0..100 {
            let parked: Vec<usize> = self
                .sends
                .iter()
                .filter(|(_, op)| op.parked)
                .map(|(id, _)| id)
                .collect();
            for id in parked {
                self.finish(id);
            }
            if self.sends.is_empty() || self.wait(10, &mut done).is_err() {
                break;
            }
            done.clear();
        }
        if !self.sends.is_empty() {
            std::mem::forget(std::mem::take(&mut self.sends));
        }
        if self.ring.submitter().unregister_buf_ring(BGID).is_err() {
            self.bufs.leak();
        }
    }
}
