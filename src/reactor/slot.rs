//! The per-connection record kept in a reactor's slab slot. Kept small: an idle
//! streaming connection is this struct and nothing else (plus its share of
//! the user index).

use std::os::fd::OwnedFd;

use crate::conn::session::HeadBuf;
use crate::conn::State;
use crate::hub::filter::Filter;
use crate::hub::Event;

use super::users::NIL;

/// One client connection.
pub struct Conn {
    pub fd: OwnedFd,
    /// Generation of this slot's occupant; tokens carry it.
    pub gen: u32,
    pub state: State,
    /// Interned app index (valid once streaming).
    pub app: u32,
    /// User-index entry, or `NIL` for anonymous listeners.
    pub user: u32,
    /// Links of the user's connection list.
    pub user_prev: u32,
    pub user_next: u32,
    /// Key into the reactor's pending-output slab, or `NIL`.
    pub pending: u32,
    /// Tenths of a second since reactor start of the last write (heartbeat
    /// idleness).
    pub last_write: u32,
    /// Unix seconds when the connection was accepted (`created_at`).
    pub created: u32,
    /// Event frames queued for this stream (replayed and live; wraps).
    /// Listings report it; it fills what was padding.
    pub events: u32,
    pub filter: Option<Box<Filter>>,
    /// Request bytes read so far; only while a head arrives in pieces.
    pub head: HeadBuf,
}

impl Conn {
    pub fn new(fd: OwnedFd, gen: u32, now_rel: u32, created: u32) -> Self {
        Self {
            fd,
            gen,
            state: State::ReadingHead,
            app: 0,
            user: NIL,
            user_prev: NIL,
            user_next: NIL,
            pending: NIL,
            last_write: now_rel,
            created,
            events: 0,
            filter: None,
            head: None,
        }
    }

    /// Whether this listener's filter lets `ev` through.
    /// Internal (presence) events pass every filter.
    pub fn wants(&self, ev: &Event) -> bool {
        ev.internal
            || self
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(ev.event_type(), ev.source.as_deref()))
    }
}

/// Output not yet taken by the kernel: bytes a completion driver has in
/// flight, and a queue behind them (or behind a full socket).
pub struct Pending {
    pub buf: Vec<u8>,
    /// Bytes of `buf` already written.
    pub off: usize,
    /// Bytes handed to a completion driver and not yet reported sent.
    pub inflight: usize,
}

impl Pending {
    /// A queue holding the unsent tail of a write.
    pub fn queued(buf: Vec<u8>) -> Self {
        Self {
            buf,
            off: 0,
            inflight: 0,
        }
    }

    /// A send of `bytes` in flight, nothing queued behind it yet.
    pub fn in_flight(bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            off: 0,
            inflight: bytes,
        }
    }

    pub fn unsent(&self) -> usize {
        self.buf.len() - self.off + self.inflight
    }

    /// Queues `bytes` behind what is unsent. Sent bytes are dropped from the
    /// front once they are half the buffer, so a listener that keeps up but
    /// never fully drains cannot grow the buffer past about twice its unsent
    /// bytes.
    pub fn append(&mut self, bytes: &[u8]) {
        if self.off > 0 && self.off >= self.buf.len() / 2 {
            self.buf.drain(..self.off);
            self.off = 0;
        }
        self.buf.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_drops_sent_bytes_instead_of_growing() {
        let mut p = Pending::queued(Vec::new());
        for _ in 0..10_000 {
            p.append(&[7u8; 100]);
            p.off += 100; // the socket took it all but keeps lagging
        }
        assert_eq!(p.unsent(), 0);
        assert!(p.buf.len() <= 200, "buffer kept {} sent bytes", p.buf.len());
        p.append(b"tail");
        assert_eq!(&p.buf[p.off..], b"tail");
    }

    /// The idle-connection budget (ARCHITECTURE: a few hundred bytes, goal
    /// ≤ 200 B in all) starts with this record and its slab slot.
    #[test]
    fn idle_connection_record_stays_small() {
        let record = std::mem::size_of::<Conn>();
        assert!(record <= 64, "Conn grew to {record} bytes");
    }
}
