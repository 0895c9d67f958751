//! Coarse timers for a reactor, driven by the `now` the loop passes in.
//!
//! - [`Deadlines`]: a FIFO for timeouts of one fixed length (header timeout,
//!   close linger): entries are pushed in deadline order, so expiry is a pop
//!   from the front.
//! - [`Wheel`]: one-second buckets for heartbeats; an entry is re-examined
//!   when its second comes and rescheduled by the caller.
//! - [`Expiries`]: token expiries, deadlines in any order and up to years
//!   ahead: a min-heap on the wall-clock second, 12 bytes an entry, kept
//!   within about twice the live entries (plus [`KEEP_CAPACITY`]) by dropping
//!   entries of closed connections when it doubles.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

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

/// Streams' token expiries (`CLOSE_ON_TOKEN_EXPIRY`): when each stream ends,
/// in unix seconds. Kept outside the connection record so that a `Conn`
/// does not grow for it. A closed connection's entry is not removed at
/// close: it is skipped when due (its token no longer matches a live
/// connection), or dropped by the next compaction, which runs when the heap
/// has doubled since the last one. Seconds past `u32::MAX` (the year 2106)
/// are never scheduled.
pub struct Expiries {
    heap: BinaryHeap<Reverse<(u32, u32, u32)>>,
    /// Length at which the next push compacts.
    compact_at: usize,
}

impl Expiries {
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            compact_at: KEEP_CAPACITY,
        }
    }

    /// Schedules `token` to end at unix second `at_s`; `alive` tells which
    /// scheduled tokens still belong to open connections (for compaction).
    pub fn push(&mut self, token: Token, at_s: u64, alive: impl Fn(Token) -> bool) {
        let Ok(at) = u32::try_from(at_s) else {
            return;
        };
        if self.heap.len() >= self.compact_at {
            self.heap.retain(|&Reverse((_, k, g))| alive((k, g)));
            self.compact_at = 2 * self.heap.len() + KEEP_CAPACITY;
            if self.heap.capacity() > 2 * self.compact_at {
                self.heap.shrink_to(self.compact_at);
            }
        }
        self.heap.push(Reverse((at, token.0, token.1)));
    }

    /// Whether an entry is due at or before unix second `now_s`.
    pub fn due(&self, now_s: u64) -> bool {
        self.heap
            .peek()
            .is_some_and(|&Reverse((at, _, _))| u64::from(at) <= now_s)
    }

    /// Pops the next entry due at or before unix second `now_s`.
    pub fn pop_due(&mut self, now_s: u64) -> Option<Token> {
        match self.heap.peek() {
            Some(&Reverse((at, k, g))) if u64::from(at) <= now_s => {
                self.heap.pop();
                Some((k, g))
            }
            _ => None,
        }
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

    #[test]
    fn expiries_pop_in_deadline_order_whatever_the_push_order() {
        let mut e = Expiries::new();
        e.push((1, 0), 1_700_000_300, |_| true);
        e.push((2, 0), 1_700_000_100, |_| true);
        e.push((3, 0), 1_700_000_200, |_| true);
        e.push((4, 0), u64::from(u32::MAX) + 1, |_| true); // never
        assert_eq!(e.heap.len(), 3);
        assert_eq!(e.pop_due(1_700_000_099), None);
        assert!(!e.due(1_700_000_099) && e.due(1_700_000_100));
        assert_eq!(e.pop_due(1_700_000_250), Some((2, 0)));
        assert_eq!(e.pop_due(1_700_000_250), Some((3, 0)));
        assert_eq!(e.pop_due(1_700_000_250), None);
        assert_eq!(e.pop_due(u64::MAX), Some((1, 0)));
        assert_eq!(e.pop_due(u64::MAX), None);
    }

    #[test]
    fn expiries_of_closed_connections_do_not_pile_up() {
        // Streams open and close far ahead of their tokens' expiry: only
        // the live ones (here: the last 10) may hold memory for long.
        let mut e = Expiries::new();
        let live = |n: u32| move |(k, _): Token| k + 10 > n;
        for n in 0..100_000u32 {
            e.push((n, 0), 1_800_000_000, live(n));
            let len = e.heap.len();
            assert!(len <= 2 * 10 + 2 * KEEP_CAPACITY, "{len} at {n}");
        }
        assert!(e.heap.capacity() <= 4 * (2 * 10 + 2 * KEEP_CAPACITY));
    }
}
