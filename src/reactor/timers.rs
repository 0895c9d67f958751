//! Coarse timers for a reactor, driven by the `now` the loop passes in.
//!
//! - [`Deadlines`]: a FIFO for timeouts of one fixed length (header timeout,
//!   close linger): entries are pushed in deadline order, so expiry is a pop
//!   from the front.
//! - [`Wheel`]: one-second buckets for heartbeats; an entry is re-examined
//!   when its second comes and rescheduled by the caller.

use std::collections::VecDeque;

/// A connection key with its generation, so a reused slot is never mistaken
/// for the connection that was scheduled.
pub type Token = (u32, u32);

/// Entries a drained [`Deadlines`] keeps room for.
const KEEP_CAPACITY: usize = 1024;

/// Fixed-length timeouts in deadline order.
pub struct Deadlines {
    queue: VecDeque<(Token, u64)>,
}

impl Deadlines {
    pub fn new() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }

    pub fn push(&mut self, token: Token, deadline_ms: u64) {
        self.queue.push_back((token, deadline_ms));
    }

    /// Pops the next entry whose deadline is at or before `now_ms`.
    pub fn pop_expired(&mut self, now_ms: u64) -> Option<Token> {
        match self.queue.front() {
            Some(&(t, d)) if d <= now_ms => {
                self.queue.pop_front();
                Some(t)
            }
            _ => {
                // After a connection storm the queue empties again; give the
                // storm's capacity back instead of keeping it per listener.
                if self.queue.is_empty() && self.queue.capacity() > KEEP_CAPACITY {
                    self.queue.shrink_to(KEEP_CAPACITY);
                }
                None
            }
        }
    }

    /// Milliseconds until the next deadline, if any.
    pub fn next_in(&self, now_ms: u64) -> Option<u64> {
        self.queue.front().map(|&(_, d)| d.saturating_sub(now_ms))
    }
}

/// One-second buckets covering `span` seconds ahead.
pub struct Wheel {
    slots: Vec<Vec<Token>>,
    /// The next second to process.
    cursor: u64,
}

impl Wheel {
    /// A wheel able to schedule up to `span` seconds ahead of the cursor.
    pub fn new(span: u64, now_s: u64) -> Self {
        let len = span as usize + 2;
        Self {
            slots: (0..len).map(|_| Vec::new()).collect(),
            cursor: now_s,
        }
    }

    /// Schedules `token` at second `due_s` (clamped to the wheel's span).
    pub fn schedule(&mut self, token: Token, due_s: u64) {
        let len = self.slots.len() as u64;
        let due = due_s.clamp(self.cursor, self.cursor + len - 1);
        self.slots[(due % len) as usize].push(token);
    }

    /// Takes every token due at or before `now_s`, in order of second.
    pub fn expire(&mut self, now_s: u64, out: &mut Vec<Token>) {
        let len = self.slots.len() as u64;
        // After a long stall, each slot needs visiting only once.
        let start = self.cursor.max(now_s.saturating_sub(len - 1));
        for s in start..=now_s {
            out.append(&mut self.slots[(s % len) as usize]);
        }
        self.cursor = self.cursor.max(now_s + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_pop_in_order() {
        let mut d = Deadlines::new();
        d.push((1, 0), 100);
        d.push((2, 0), 200);
        assert_eq!(d.next_in(50), Some(50));
        assert_eq!(d.pop_expired(99), None);
        assert_eq!(d.pop_expired(150), Some((1, 0)));
        assert_eq!(d.pop_expired(150), None);
        assert_eq!(d.pop_expired(250), Some((2, 0)));
        assert_eq!(d.next_in(250), None);
    }

    #[test]
    fn wheel_expires_due_seconds() {
        let mut w = Wheel::new(30, 1000);
        w.schedule((1, 0), 1001);
        w.schedule((2, 0), 1030);
        w.schedule((3, 0), 5000); // clamped into the span
        let mut out = Vec::new();
        w.expire(1000, &mut out);
        assert!(out.is_empty());
        w.expire(1001, &mut out);
        assert_eq!(out, vec![(1, 0)]);
        out.clear();
        w.expire(1029, &mut out);
        assert!(out.is_empty());
        w.expire(1035, &mut out);
        assert_eq!(out, vec![(2, 0), (3, 0)]);
        out.clear();
        // A long stall still visits every slot once.
        w.schedule((4, 0), 1040);
        w.expire(9999, &mut out);
        assert_eq!(out, vec![(4, 0)]);
    }
}
