//! Completions, decoded once: what each `user_data` tag means, and the
//! re-arming of the multishots that belong to the ring itself (accept,
//! wake-up poll).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use io_uring::cqueue;

use super::{
    Ring, LOW, RECV_BUFS, TAG_ACCEPT, TAG_HANGUP, TAG_RECV, TAG_SEND, TAG_SHIFT, TAG_WAKE,
};

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

impl<P: AsRef<[u8]>> Ring<P> {
    /// Decodes a completion; accept and wake-up polls are re-armed here.
    pub(super) fn decode(&mut self, cqe: &cqueue::Entry) -> Completion {
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
