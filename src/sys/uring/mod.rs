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
mod probe;

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use bufs::BufRing;
pub use probe::probe;

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

/// One completion, decoded.
pub enum Completion {
    /// A new connection, or why accepting failed. After a failure that
    /// `stopped` accepting, call [`Ring::restart_accept`] when ready.
    Accepted {
        fd: io::Result<OwnedFd>,
        stopped: bool,
    },
    /// The wake-up eventfd became readable.
    Woken,
    /// Bytes arrived for `token`, in receive buffer `buf`: copy them with
    /// [`Ring::take_buffer`]. `rearm`: the receive ended; arm it again if
    /// the connection is still open.
    Data {
        token: u64,
        buf: u16,
        len: usize,
        rearm: bool,
    },
    /// The peer closed (`Ok`) or the receive failed.
    Closed { token: u64, result: io::Result<()> },
    /// The receive stopped without closing (no buffer free): arm it again if
    /// the connection is still open.
    Rearm { token: u64 },
    /// The hang-up poll ended without a hang-up: arm it again if the
    /// connection is still open.
    Rewatch { token: u64 },
    /// Progress of a send: `Ok(n)` bytes went out; `finished` when it is
    /// complete (the ring has let go of it). Otherwise call
    /// [`Ring::resume`] or [`Ring::abandon`] with `id`.
    Sent {
        token: u64,
        id: usize,
        result: io::Result<usize>,
        finished: bool,
    },
    /// Nothing for the caller (a cancel's own completion).
    None,
}

/// A send the ring owns until it completes.
struct SendOp<P> {
    token: u64,
    fd: RawFd,
    parts: Vec<P>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
    /// Bytes already sent.
    done: usize,
    total: usize,
    /// Short, reported, and not queued: only now may it be resumed or
    /// abandoned.
    parked: bool,
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
    pub fn watch_hangup(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        debug_assert!(token <= LOW, "tokens must fit in 56 bits");
        let recv = (TAG_RECV << TAG_SHIFT) | (token & LOW);
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::user_data(recv))
            .build()
            .user_data(TAG_CANCEL << TAG_SHIFT);
        let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLRDHUP as u32)
            .multi(true)
            .build()
            .user_data((TAG_HANGUP << TAG_SHIFT) | (token & LOW));
        // SAFETY: a cancel and a poll refer to no memory of ours.
        unsafe { self.push_all(&[cancel, poll]) }
    }

    /// Sends `parts` to `fd` in order, as one `sendmsg`.
    pub fn send(
        &mut self,
        fd: RawFd,
        token: u64,
        parts: impl Iterator<Item = P>,
    ) -> io::Result<()> {
        let mut op = self.spare.pop().unwrap_or_else(|| {
            Box::new(SendOp {
                token: 0,
                fd: -1,
                parts: Vec::new(),
                iov: Vec::new(),
                // SAFETY: msghdr is plain data; all zeroes is a valid value.
                msg: unsafe { std::mem::zeroed() },
                done: 0,
                total: 0,
                parked: false,
            })
        });
        debug_assert!(token <= LOW, "tokens must fit in 56 bits");
        op.token = token;
        op.fd = fd;
        op.parts.extend(parts);
        op.total = op.parts.iter().map(|p| p.as_ref().len()).sum();
        op.done = 0;
        op.parked = false;
        let id = self.sends.insert(op);
        let queued = self.push_send(id);
        if queued.is_err() {
            self.finish(id);
        }
        queued
    }

    /// Queues the unsent rest of send `id`, at most `UIO_MAXIOV` parts at a
    /// time (the kernel refuses more in one `sendmsg`); the rest goes when
    /// the completion reports the send short and it is resumed.
    fn push_send(&mut self, id: usize) -> io::Result<()> {
        let op = &mut self.sends[id];
        op.iov.clear();
        op.parked = false;
        let mut skip = op.done;
        for p in &op.parts {
            if op.iov.len() == libc::UIO_MAXIOV as usize {
                break;
            }
            let b = p.as_ref();
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            op.iov.push(libc::iovec {
                iov_base: b[skip..].as_ptr() as *mut libc::c_void,
                iov_len: b.len() - skip,
            });
            skip = 0;
        }
        op.msg.msg_iov = op.iov.as_mut_ptr();
        op.msg.msg_iovlen = op.iov.len() as _;
        let e = opcode::SendMsg::new(types::Fd(op.fd), &op.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data((TAG_SEND << TAG_SHIFT) | id as u64);
        // SAFETY: the op is boxed in `self.sends` and is neither moved nor
        // changed until its final completion is decoded: the msghdr, the
        // iovec array (heap memory of `op.iov`) and every part's bytes (heap
        // memory the parts own) stay valid for the kernel.
        unsafe { self.push(&e) }
    }

    /// Resumes a short send whose connection still wants it. Only a send
    /// reported short (and not yet resumed) can be: anything else is refused
    /// with `InvalidInput`, since the kernel may still be reading it.
    pub fn resume(&mut self, id: usize) -> io::Result<()> {
        if !self.sends.get(id).is_some_and(|op| op.parked) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        self.push_send(id)
    }

    /// Lets go of a short send whose connection is gone (only one reported
    /// short; anything else is left alone).
    pub fn abandon(&mut self, id: usize) {
        if self.sends.get(id).is_some_and(|op| op.parked) {
            self.finish(id);
        }
    }

    fn finish(&mut self, id: usize) {
        let mut op = self.sends.remove(id);
        if self.spare.len() < SPARE_SENDS {
            op.parts.clear();
            self.spare.push(op);
        }
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
        out.extend(raw.iter().map(|cqe| self.decode(cqe)));
        raw.clear();
        self.stash = raw;
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

    /// Decodes a completion; accept and wake-up polls are re-armed here.
    fn decode(&mut self, cqe: &cqueue::Entry) -> Completion {
        let (tag, low) = (cqe.user_data() >> TAG_SHIFT, cqe.user_data() & LOW);
        let res = cqe.result();
        let more = cqueue::more(cqe.flags());
        let err = || io::Error::from_raw_os_error(-res);
        match tag {
            TAG_ACCEPT if res < 0 => Completion::Accepted {
                fd: Err(err()),
                stopped: !more,
            },
            TAG_ACCEPT => {
                if !more && self.arm_accept().is_err() {
                    log::warn!("io_uring: cannot re-arm accept");
                }
                // SAFETY: a successful accept completion carries a new
                // descriptor that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(res) };
                Completion::Accepted {
                    fd: Ok(fd),
                    stopped: false,
                }
            }
            TAG_WAKE => {
                if !more && self.arm_wake().is_err() {
                    log::warn!("io_uring: cannot re-arm the wake-up poll");
                }
                Completion::Woken
            }
            TAG_RECV => self.decode_recv(low, res, more, cqe.flags()),
            TAG_HANGUP => Self::decode_hangup(low, res, more),
            TAG_SEND => {
                let id = low as usize;
                let Some(op) = self.sends.get_mut(id) else {
                    return Completion::None;
                };
                let token = op.token;
                let result = match res {
                    n if n >= 0 => Ok(n as usize),
                    e if -e == libc::EAGAIN || -e == libc::EINTR => Ok(0),
                    _ => Err(err()),
                };
                if let Ok(n) = result {
                    op.done += n;
                }
                let finished = result.is_err() || op.done >= op.total;
                if finished {
                    self.finish(id);
                } else {
                    op.parked = true;
                }
                Completion::Sent {
                    token,
                    id,
                    result,
                    finished,
                }
            }
            _ => Completion::None,
        }
    }

    /// A hang-up poll fired: the peer closed or the socket failed
    /// (`Closed`), or it ended without that (`Rewatch`). Plain input on a
    /// streaming connection is ignored, as the core ignores it anyway.
    fn decode_hangup(token: u64, res: i32, more: bool) -> Completion {
        let gone = (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as i32;
        match res {
            r if r >= 0 && r & gone != 0 => Completion::Closed {
                token,
                result: Ok(()),
            },
            r if r >= 0 && more => Completion::None,
            e if -e == libc::ECANCELED => Completion::None,
            _ => Completion::Rewatch { token },
        }
    }

    fn decode_recv(&mut self, token: u64, res: i32, more: bool, flags: u32) -> Completion {
        if res > 0 {
            return match cqueue::buffer_select(flags) {
                Some(buf) if buf < RECV_BUFS => {
                    self.filled |= 1u128 << buf;
                    Completion::Data {
                        token,
                        buf,
                        len: res as usize,
                        rearm: !more,
                    }
                }
                _ => Completion::Rearm { token },
            };
        }
        match -res {
            0 => Completion::Closed {
                token,
                result: Ok(()),
            },
            libc::ENOBUFS | libc::EAGAIN | libc::EINTR => Completion::Rearm { token },
            libc::ECANCELED => Completion::None,
            e => Completion::Closed {
                token,
                result: Err(io::Error::from_raw_os_error(e)),
            },
        }
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
