//! The drain at SIGTERM (SPEC §8): a shutdown message does not stop the
//! reactor at once. Its driver closes the listener first, at the end of the
//! turn that drained the message and before any stream is ended (after
//! accepting what the kernel had queued for it, which a close would reset),
//! so new connections, reconnects included, go to the other sockets on the
//! same `SO_REUSEPORT` port;
//! then the streams are ended so that their reconnects arrive evenly over
//! `DRAIN_SPREAD_MS` rather than as one wave.
//!
//! Contracts:
//! - The `n` streams open when the drain begins are ended in slab order.
//!   The k-th is due back at `start + spread·(2k+1)/(2n)` (evenly spaced
//!   over the spread), is closed at half that offset, and its final line
//!   `retry: <due - now>` makes an `EventSource` reconnect at its instant.
//!   A client that ignores `retry:` and reconnects on EOF still comes back
//!   spread over the first half. So the drain's closes end at
//!   `start + spread/2`, within `SHUTDOWN_TIMEOUT_MS` (`spread` is at most
//!   that).
//! - Streams end in steps [`DRAIN_TICK_MS`] apart, at most [`DRAIN_BATCH`]
//!   per turn; a stream ended early (up to a step) or late (a busy turn) is
//!   told a longer or shorter `retry:` (never below 0), so it is still due
//!   back on time.
//! - Meanwhile the reactor works as before: events reach the streams not
//!   yet ended, and connections accepted before the listener closed are
//!   answered. A stream that started during the drain ends at its end, its
//!   `retry:` spread over the second half by its slot.
//! - A stream is closed only once its final `retry:` is sent: one whose
//!   output is still queued or in flight (always, briefly, under io_uring)
//!   is closed when its send completes.
//! - At `start + spread/2`, with every stream ended and its output sent (or
//!   [`FLUSH_GRACE_MS`] later, within `SHUTDOWN_TIMEOUT_MS`), the core
//!   stops; the driver's `shutdown` closes what is left (reason
//!   `shutdown`).
//! - `DRAIN_SPREAD_MS=0`: every stream ends at once with a bare EOF (no
//!   final `retry:`; clients come back after the `RETRY_MS` they were told).
//! - Every stream ended here is counted (and logged at `debug`) with the
//!   disconnect reason `drained`.

use log::info;

use super::users::NIL;
use super::{Core, Out, Transport, Why};
use crate::conn::State;

/// Streams ended per turn at most.
pub const DRAIN_BATCH: usize = 1024;
/// Streams are ended in steps this far apart (up to this much before their
/// time, their `retry:` longer by as much), so a reactor draining thousands
/// of streams wakes every few milliseconds, not for each stream.
pub const DRAIN_TICK_MS: u64 = 10;

/// How long the drain waits at most, after its last step, for the final
/// `retry:` lines still queued or in flight to be sent.
pub const FLUSH_GRACE_MS: u64 = 500;

/// A drain in progress.
pub(super) struct Drain {
    start_ms: u64,
    spread_ms: u64,
    /// The streams open when the drain began, `(slot, generation)`, in the
    /// order they end.
    order: Vec<(u32, u32)>,
    /// How many of `order` have been dealt with.
    next: usize,
    /// Streams told their final `retry:` whose output is not all sent yet
    /// (queued, or in flight under a completion driver): closed once it is.
    flushing: Vec<(u32, u32)>,
    /// The streams that started during the drain were ended.
    late_done: bool,
    /// When the drain gives up waiting for `flushing`.
    give_up_ms: u64,
}

impl Drain {
    /// When (offset from the start) the k-th stream is due back.
    fn due(&self, k: usize) -> u64 {
        let n = self.order.len() as u64;
        self.spread_ms * (2 * k as u64 + 1) / (2 * n)
    }

    fn end_ms(&self) -> u64 {
        self.start_ms + self.spread_ms / 2
    }

    /// When the next stream ends, or the drain does.
    fn next_at(&self) -> u64 {
        if self.next < self.order.len() {
            self.start_ms + self.due(self.next) / 2
        } else {
            self.start_ms + self.spread_ms / 2
        }
    }
}

impl<T: Transport> Core<T> {
    /// A shutdown message was drained: the drain begins (once).
    pub(super) fn begin_drain(&mut self, now_ms: u64) {
        if self.drain.is_some() {
            return;
        }
        let order: Vec<(u32, u32)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == State::Streaming)
            .map(|(k, c)| (k as u32, c.gen))
            .collect();
        let spread_ms = self.shared.cfg.drain_spread_ms;
        // The flush wait stays within the shutdown deadline.
        let left = self
            .shared
            .cfg
            .shutdown_timeout_ms
            .saturating_sub(spread_ms / 2);
        let give_up_ms = now_ms + spread_ms / 2 + FLUSH_GRACE_MS.min(left / 2);
        info!(
            "reactor {}: draining {} stream(s), reconnects spread over {spread_ms} ms",
            self.index,
            order.len()
        );
        self.drain = Some(Drain {
            start_ms: now_ms,
            spread_ms,
            order,
            next: 0,
            flushing: Vec::new(),
            late_done: false,
            give_up_ms,
        });
    }

    /// Whether the drain has begun: the driver then closes its listener.
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Milliseconds until the drain's next step, while draining (sends
    /// completing wake the driver anyway).
    pub(super) fn drain_timeout(&self, now_ms: u64) -> Option<u64> {
        self.drain.as_ref().map(|d| {
            if d.next < d.order.len() {
                d.next_at().saturating_sub(now_ms + DRAIN_TICK_MS)
            } else if now_ms < d.end_ms() {
                d.end_ms() - now_ms
            } else {
                d.give_up_ms.saturating_sub(now_ms)
            }
        })
    }

    /// Closes the streams whose final `retry:` is out, ends those whose
    /// time has come (a batch at most); at the drain's end, every stream
    /// left, and once their output is sent (or the grace is over) the core
    /// stops.
    pub(super) fn drain_step(&mut self, now_ms: u64) {
        let Some(mut d) = self.drain.take() else {
            return;
        };
        let mut flushing = std::mem::take(&mut d.flushing);
        flushing.retain(|&(key, gen)| {
            if !self.alive(key, gen) || self.conns[key as usize].state != State::Streaming {
                return false;
            }
            if self.conns[key as usize].pending != NIL {
                return true;
            }
            self.close(key, Why::Drained);
            false
        });
        d.flushing = flushing;
        let mut ended = 0;
        while d.next < d.order.len() && ended < DRAIN_BATCH && d.next_at() <= now_ms + DRAIN_TICK_MS
        {
            let due = d.start_ms + d.due(d.next);
            let (key, gen) = d.order[d.next];
            d.next += 1;
            if self.alive(key, gen) && self.conns[key as usize].state == State::Streaming {
                let retry = due.saturating_sub(now_ms);
                self.end_stream(key, d.spread_ms, retry, now_ms, &mut d.flushing);
                ended += 1;
            }
        }
        if d.next == d.order.len() && d.next_at() <= now_ms {
            if !d.late_done {
                // Streams that started during the drain (accepted before
                // the listener closed).
                d.late_done = true;
                let late: Vec<u32> = self
                    .conns
                    .iter()
                    .filter(|(k, c)| {
                        c.state == State::Streaming && !d.flushing.contains(&(*k as u32, c.gen))
                    })
                    .map(|(k, _)| k as u32)
                    .collect();
                let half = d.spread_ms / 2;
                for key in late {
                    let retry = half * (u64::from(key).wrapping_mul(2_654_435_761) % 1024) / 1024;
                    self.end_stream(key, d.spread_ms, retry, now_ms, &mut d.flushing);
                }
            }
            if d.flushing.is_empty() || now_ms >= d.give_up_ms {
                self.stopping = true;
            }
        }
        self.drain = Some(d);
    }

    /// Sends a stream its final `retry:` (none when there is no spread) and
    /// closes it, or, when that output is not all sent yet, leaves it in
    /// `flushing` to be closed once it is.
    fn end_stream(
        &mut self,
        key: u32,
        spread_ms: u64,
        retry_ms: u64,
        now_ms: u64,
        flushing: &mut Vec<(u32, u32)>,
    ) {
        if spread_ms > 0 {
            let line = format!("retry: {retry_ms}\n\n");
            if !self.write(key, &[Out::Bytes(line.as_bytes())], now_ms) {
                return; // closed already (failed, or too slow)
            }
            let conn = &self.conns[key as usize];
            if conn.pending != NIL {
                flushing.push((key, conn.gen));
                return;
            }
        }
        self.close(key, Why::Drained);
    }
}
