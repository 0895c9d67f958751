//! Timers, on the monotonic `now` the driver passes in: the header timeout,
//! the close linger, and heartbeats (a comment, or a `ping` event carrying
//! the wall-clock seconds the driver passes in); and token expiry, on those
//! wall-clock seconds (a token's `exp` is wall-clock time).
//!
//! A heartbeat goes to a streaming connection that has written nothing for
//! `HEARTBEAT_SECONDS`, at, never before, that interval (times are kept in
//! tenths rounded up, deadlines in whole seconds rounded up).

use super::{Core, Out, Transport};
use crate::config::HeartbeatMode;
use crate::conn::session;
use crate::conn::State;
use crate::hub::sse;

/// Streams ended for token expiry per turn: tokens that expire together
/// (issued in a batch) end a slice at a time, with other work in between;
/// the rest follow on the next turns, at once (`next_timeout` is 0 while
/// any are due).
pub(super) const EXPIRE_BATCH: usize = 1024;

impl<T: Transport> Core<T> {
    /// Milliseconds until the next timer is due (at most one second, the
    /// heartbeat wheel's resolution).
    pub fn next_timeout(&self, now_ms: u64) -> u64 {
        if self.expiries.due(self.unix_s(now_ms)) {
            return 0;
        }
        let mut t: u64 = 1000 - now_ms % 1000; // the next whole second
        for d in [&self.head_timeouts, &self.lingers, &self.waits] {
            if let Some(n) = d.next_in(now_ms) {
                t = t.min(n);
            }
        }
        if let Some(n) = self.drain_timeout(now_ms) {
            t = t.min(n);
        }
        t
    }

    /// Fires every timer due at `now_ms`; `unix_s` is the wall clock for
    /// `ping` events.
    pub fn on_tick(&mut self, now_ms: u64, unix_s: u64) {
        self.set_wall_clock(now_ms, unix_s);
        while let Some((key, gen)) = self.head_timeouts.pop_expired(now_ms) {
            if !self.alive(key, gen) || self.conns[key as usize].state != State::ReadingHead {
                continue;
            }
            match session::on_header_timeout(&self.conns[key as usize].head) {
                Some(body) => self.respond_and_close(key, &body, now_ms),
                None => self.close(key, super::Why::Idle),
            }
        }
        self.expire_waits(now_ms);
        while let Some((key, gen)) = self.lingers.pop_expired(now_ms) {
            if self.alive(key, gen) {
                self.close(key, super::Why::Responded);
            }
        }
        self.expire_tokens(unix_s);
        self.history.expire(now_ms);
        self.stats.set_history(self.history.held());
        self.heartbeat(now_ms, unix_s);
    }

    /// Ends streams whose token expired (`exp` + leeway) by `unix_s`, at
    /// most [`EXPIRE_BATCH`] of them.
    fn expire_tokens(&mut self, unix_s: u64) {
        for _ in 0..EXPIRE_BATCH {
            let Some((key, gen)) = self.expiries.pop_due(unix_s) else {
                return;
            };
            if self.alive(key, gen) && self.conns[key as usize].state == State::Streaming {
                self.close(key, super::Why::Expired);
            }
        }
    }

    fn heartbeat(&mut self, now_ms: u64, unix_s: u64) {
        let Some(wheel) = &mut self.heartbeats else {
            return;
        };
        let now_s = now_ms / 1000;
        let mut expired = std::mem::take(&mut self.expired);
        expired.clear();
        wheel.expire(now_s, &mut expired);
        if expired.is_empty() {
            self.expired = expired;
            return;
        }
        let interval = self.shared.cfg.heartbeat_secs;
        let event;
        let frame = match self.shared.cfg.heartbeat_mode {
            HeartbeatMode::Event => {
                event = sse::ping_event(unix_s);
                Out::Bytes(&event)
            }
            HeartbeatMode::Comment => Out::Static(sse::PING_COMMENT),
        };
        for &(key, gen) in &expired {
            if !self.alive(key, gen) || self.conns[key as usize].state != State::Streaming {
                continue;
            }
            // When the connection will have been idle a whole interval,
            // rounded up to the wheel's second: never early.
            let idle_until_ms = self.epoch_ms
                + u64::from(self.conns[key as usize].last_write) * 100
                + interval * 1000;
            let due = if idle_until_ms <= now_ms {
                if !self.write(key, &[frame], now_ms) {
                    continue;
                }
                now_s + interval
            } else {
                idle_until_ms.div_ceil(1000)
            };
            if let Some(wheel) = &mut self.heartbeats {
                wheel.schedule((key, gen), due);
            }
        }
        self.expired = expired;
    }
}
