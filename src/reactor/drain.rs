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
//! - At `start + spread/2`, with every stream ended, the core stops; the
//!   driver's `shutdown` closes what is left (reason `shutdown`).
//! - `DRAIN_SPREAD_MS=0`: every stream ends at once with a bare EOF (no
//!   final `retry:`; clients come back after the `RETRY_MS` they were told).
//! - Every stream ended here is counted (and logged at `debug`) with the
//!   disconnect reason `drained`.

use log::info;

use super::{Core, Out, Transport, Why};
use crate::conn::State;

/// Streams ended per turn at most.
pub const DRAIN_BATCH: usize = 1024;
/// Streams are ended in steps this far apart (up to this much before their
/// time, their `retry:` longer by as much), so a reactor draining thousands
/// of streams wakes every few milliseconds, not for each stream.
pub const DRAIN_TICK_MS: u64 = 10;

/// A drain in progress.
pub(super) struct Drain {
    start_ms: u64,
    spread_ms: u64,
    /// The streams open when the drain began, `(slot, generation)`, in the
    /// order they end.
    order: Vec<(u32, u32)>,
    /// How many of `order` have been dealt with.
    next: usize,
}

impl Drain {
    /// When (offset from the start) the k-th stream is due back.
    fn due(&self, k: usize) -> u64 {
        let n = self.order.len() as u64;
        self.spread_ms * (2 * k as u64 + 1) / (2 * n)
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
        });
    }

    /// Whether the drain has begun: the driver then closes its listener.
    pub fn draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Milliseconds until the drain's next step, while draining.
    pub(super) fn drain_timeout(&self, now_ms: u64) -> Option<u64> {
        self.drain.as_ref().map(|d| {
            let step = if d.next < d.order.len() {
                DRAIN_TICK_MS
            } else {
                0
            };
            d.next_at().saturating_sub(now_ms + step)
        })
    }

    /// Ends the streams whose time has come (a batch at most); at the
    /// drain's end, every stream left, and then the core stops.
    pub(super) fn drain_step(&mut self, now_ms: u64) {
        let Some(mut d) = self.drain.take() else {
            return;
        };
        let mut ended = 0;
        while d.next < d.order.len() && ended < DRAIN_BATCH && d.next_at() <= now_ms + DRAIN_TICK_MS
        {
            let due = d.start_ms + d.due(d.next);
            let (key, gen) = d.order[d.next];
            d.next += 1;
            if self.alive(key, gen) && self.conns[key as usize].state == State::Streaming {
                self.end_stream(key, d.spread_ms, due.saturating_sub(now_ms), now_ms);
                ended += 1;
            }
        }
        if d.next == d.order.len() && d.next_at() <= now_ms {
            // Streams that started during the drain (accepted before the
            // listener closed).
            let late: Vec<u32> = self
                .conns
                .iter()
                .filter(|(_, c)| c.state == State::Streaming)
                .map(|(k, _)| k as u32)
                .collect();
            let half = d.spread_ms / 2;
            for key in late {
                let retry = half * (u64::from(key).wrapping_mul(2_654_435_761) % 1024) / 1024;
                self.end_stream(key, d.spread_ms, retry, now_ms);
            }
            self.stopping = true;
        }
        self.drain = Some(d);
    }

    /// Sends a stream its final `retry:` (none when there is no spread) and
    /// closes it.
    fn end_stream(&mut self, key: u32, spread_ms: u64, retry_ms: u64, now_ms: u64) {
        if spread_ms > 0 {
            let line = format!("retry: {retry_ms}\n\n");
            if !self.write(key, &[Out::Bytes(line.as_bytes())], now_ms) {
                return; // closed already (failed, or too slow)
            }
        }
        self.close(key, Why::Drained);
    }
}
