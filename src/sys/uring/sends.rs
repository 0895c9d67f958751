//! Sends the ring owns: a `sendmsg` of several parts, kept (boxed, so its
//! `msghdr` and iovecs do not move) from the moment it is queued until its
//! final completion; short sends are parked until the caller resumes or
//! abandons them.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, types};

use super::{Ring, LOW, SPARE_SENDS, TAG_SEND, TAG_SHIFT};

/// A send the ring owns until it completes.
pub(super) struct SendOp<P> {
    pub(super) token: u64,
    pub(super) fd: RawFd,
    pub(super) parts: Vec<P>,
    pub(super) iov: Vec<libc::iovec>,
    pub(super) msg: libc::msghdr,
    /// Bytes already sent.
    pub(super) done: usize,
    pub(super) total: usize,
    /// Short, reported, and not queued: only now may it be resumed or
    /// abandoned.
    pub(super) parked: bool,
}

impl<P: AsRef<[u8]>> Ring<P> {
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

    pub(super) fn finish(&mut self, id: usize) {
        let mut op = self.sends.remove(id);
        if self.spare.len() < SPARE_SENDS {
            op.parts.clear();
            self.spare.push(op);
        }
    }
}
