//! The write-queue policy, the same under every driver.
//!
//! - A connection with nothing queued sends at once: one send of all its
//!   pieces. What the kernel did not take (or, under a completion driver,
//!   what is still in flight) is the connection's [`Pending`] output.
//! - While output is pending, new pieces are copied behind it into a pooled
//!   buffer; when the driver reports progress the queue is sent as one piece.
//! - Unsent bytes (in flight + queued) over the userspace share of
//!   `MAX_PENDING_BYTES` ([`super::Shared::pending_max`]; the kernel's send
//!   queue holds the rest, fixed by `SO_SNDBUF`) cut the listener, counted
//!   as a `slow` disconnect, with a reset: the kernel frees what it still
//!   held for it at once.
//! - A closing connection is half-closed only once nothing is pending.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;

use log::debug;

use super::slot::Pending;
use super::users::NIL;
use super::{Core, Out, Sent, Transport, POOL_BUFFERS, POOL_BUFFER_KEEP};
use crate::conn::State;

impl<T: Transport> Core<T> {
    /// Sends `out` to a connection, or queues it behind what is pending.
    /// Returns false when the connection was closed (failed or too slow).
    pub(super) fn write(&mut self, key: u32, out: &[Out<'_>], now_ms: u64) -> bool {
        let now_rel = self.now_rel(now_ms);
        let max = self.shared.pending_max;
        let conn = &mut self.conns[key as usize];
        if conn.pending != NIL {
            let p = &mut self.pending[conn.pending as usize];
            if p.buf.capacity() == 0 {
                p.buf = self.pool.pop().unwrap_or_default();
            }
            for o in out {
                p.append(o.bytes());
            }
            return p.unsent() <= max || self.close_slow(key);
        }
        let total: usize = out.iter().map(|o| o.bytes().len()).sum();
        let token = super::token(key, conn.gen);
        let sent = self.t.send(conn.fd.as_fd(), token, out);
        conn.last_write = now_rel;
        let written = match sent {
            Ok(Sent::Now(n)) => {
                self.stats.bytes_written.fetch_add(n as u64, Relaxed);
                n
            }
            Ok(Sent::Later) => {
                let p = Pending::in_flight(total);
                self.conns[key as usize].pending = self.pending.insert(p) as u32;
                return true;
            }
            Err(e) => return self.fail(key, &e),
        };
        if written == total {
            return true;
        }
        if total - written > max {
            return self.close_slow(key);
        }
        // Keep only the unsent tail, in a pooled buffer.
        let mut buf = self.pool.pop().unwrap_or_default();
        let mut skip = written;
        for o in out {
            let b = o.bytes();
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            buf.extend_from_slice(&b[skip..]);
            skip = 0;
        }
        let p = Pending::queued(buf);
        self.conns[key as usize].pending = self.pending.insert(p) as u32;
        true
    }

    /// The socket can take more (readiness drivers): send what is queued.
    pub fn on_writable(&mut self, token: u64, now_ms: u64) {
        if let Some(key) = self.live(token) {
            self.flush(key, now_ms);
        }
    }

    /// A completion driver's report on a send: `Ok(n)` bytes went out;
    /// `done` when the whole send is finished (otherwise the driver resumes
    /// it). Returns whether the connection still wants the rest, so the
    /// driver drops a send whose connection is gone.
    pub fn on_sent(
        &mut self,
        token: u64,
        result: io::Result<usize>,
        done: bool,
        now_ms: u64,
    ) -> bool {
        let Some(key) = self.live(token) else {
            return false;
        };
        let n = match result {
            Ok(n) => {
                self.stats.bytes_written.fetch_add(n as u64, Relaxed);
                n
            }
            Err(e) => {
                self.fail(key, &e);
                return false;
            }
        };
        let pending = self.conns[key as usize].pending;
        if pending != NIL {
            let p = &mut self.pending[pending as usize];
            p.inflight = if done {
                0
            } else {
                p.inflight.saturating_sub(n)
            };
        }
        if done {
            self.flush(key, now_ms);
        }
        self.live(token).is_some()
    }

    /// Sends the queued output once nothing is in flight; settles the
    /// connection (buffer back to the pool, half-close when closing) once
    /// everything is out.
    fn flush(&mut self, key: u32, now_ms: u64) {
        let now_rel = self.now_rel(now_ms);
        let conn = &mut self.conns[key as usize];
        if conn.pending == NIL {
            return;
        }
        let token = super::token(key, conn.gen);
        let p = &mut self.pending[conn.pending as usize];
        while p.inflight == 0 && p.off < p.buf.len() {
            match self
                .t
                .send(conn.fd.as_fd(), token, &[Out::Bytes(&p.buf[p.off..])])
            {
                Ok(Sent::Now(0)) => return,
                Ok(Sent::Now(n)) => {
                    self.stats.bytes_written.fetch_add(n as u64, Relaxed);
                    p.off += n;
                }
                Ok(Sent::Later) => {
                    // The driver copied the queue; it is in flight now.
                    p.inflight = p.buf.len() - p.off;
                    p.buf.clear();
                    p.off = 0;
                }
                Err(e) => {
                    self.fail(key, &e);
                    return;
                }
            }
            conn.last_write = now_rel;
        }
        if p.inflight > 0 {
            return;
        }
        let p = self.pending.remove(conn.pending as usize);
        conn.pending = NIL;
        if conn.state == State::Closing {
            self.t.shutdown_write(conn.fd.as_fd());
        }
        self.release_buffer(p.buf);
    }

    fn fail(&mut self, key: u32, e: &io::Error) -> bool {
        debug!("conn {key}: write failed: {e}");
        self.close(key, super::Why::Peer);
        false
    }

    fn close_slow(&mut self, key: u32) -> bool {
        debug!("conn {key}: cut, over MAX_PENDING_BYTES");
        self.t.abort_on_close(self.conns[key as usize].fd.as_fd());
        self.close(key, super::Why::Slow);
        false
    }

    pub(super) fn release_buffer(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() > 0
            && buf.capacity() <= POOL_BUFFER_KEEP
            && self.pool.len() < POOL_BUFFERS
        {
            buf.clear();
            self.pool.push(buf);
        }
    }
}
