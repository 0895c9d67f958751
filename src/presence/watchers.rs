//! Taps on the presence feed (gRPC `WatchPresence`): every change that is
//! announced to SSE listeners is also offered to each tap, in the same
//! order.
//!
//! Contract: a tap is a callback that must not block (it hands the change
//! to its own bounded queue); it returns `false` when its watcher is gone
//! or has fallen behind, and is then dropped for good. With no tap the
//! feed pays one relaxed atomic load per batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::Change;

/// Takes one change; `false`: drop this tap.
pub type Tap = Box<dyn FnMut(&Change) -> bool + Send>;

/// The taps on the feed.
#[derive(Default)]
pub struct Watchers {
    taps: Mutex<Vec<Tap>>,
    count: AtomicUsize,
}

impl Watchers {
    /// Adds a tap; it sees every change told from now on.
    pub fn add(&self, tap: Tap) {
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        taps.push(tap);
        self.count.store(taps.len(), Ordering::Relaxed);
    }

    /// Offers `changes` to every tap, dropping those that refuse one.
    pub fn tell(&self, changes: &[Change]) {
        if self.count.load(Ordering::Relaxed) == 0 || changes.is_empty() {
            return;
        }
        let mut taps = self.taps.lock().unwrap_or_else(|p| p.into_inner());
        taps.retain_mut(|tap| changes.iter().all(&mut *tap));
        self.count.store(taps.len(), Ordering::Relaxed);
    }

    /// Taps in place.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Watchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Watchers({})", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(user: &str) -> Change {
        Change::Joined {
            app: "a".into(),
            user: user.into(),
        }
    }

    #[test]
    fn taps_see_changes_in_order_and_refusers_are_dropped() {
        let w = Watchers::default();
        w.tell(&[joined("nobody")]); // no tap: nothing to do
        let (tx, rx) = crossbeam_channel::bounded(2);
        w.add(Box::new(move |c| tx.try_send(c.clone()).is_ok()));
        w.tell(&[joined("u1"), joined("u2")]);
        assert_eq!(
            rx.try_iter().collect::<Vec<_>>(),
            [joined("u1"), joined("u2")]
        );
        w.tell(&[joined("u3"), joined("u4"), joined("u5")]);
        assert_eq!(w.len(), 0, "a tap whose queue is full is dropped");
        assert_eq!(rx.try_iter().count(), 2);
    }
}
