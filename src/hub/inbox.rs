//! The inbox that carries events from the hub to one reactor: a bounded
//! channel plus an eventfd wake-up. The hub defines it; reactors drain it.
//!
//! Contract:
//! - Every reactor receives the hub's batches in the same order.
//! - Wake-ups are coalesced: a sender writes the eventfd only when no wake-up
//!   is outstanding, so a burst of sends costs the reactor one wake.
//! - The channel holds at most [`INBOX_CAPACITY`] messages. A reactor that
//!   falls that far behind slows its senders down (the send blocks until it
//!   catches up): events are never dropped here, and every such wait is
//!   counted in [`Inbox::stalls`]. Ingest then backs up into its source
//!   (Redis keeps the stream; pub/sub buffers in Redis up to its own
//!   client-output limit), and an HTTP publish answers later.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::Batch;
use crate::sys::poll::Waker;

/// Messages an inbox holds before its senders wait. Each is one `Arc`
/// batch, so this bounds a lagging reactor's backlog to a few hundred KiB
/// of pointers, not to a number of events.
pub const INBOX_CAPACITY: usize = 16 * 1024;

/// A message to a reactor.
pub enum Msg {
    Events(Batch),
    /// Events for the history only (a stream's tail read at start-up): they
    /// are replayed on request but never delivered live.
    History(Batch),
    /// A registry question or order from the admin side.
    Control(super::registry::Control),
    /// The log reader's answer to a parked stream's replay request.
    Log(super::history::log::LogAnswer),
    Shutdown,
}

/// The sending side of a reactor's inbox: channel plus eventfd wake-up.
#[derive(Clone)]
pub struct Inbox {
    tx: Sender<Msg>,
    wake: Arc<Wake>,
}

/// The eventfd and the "a wake-up is outstanding" flag a reactor shares with
/// its senders, plus the count of sends that had to wait.
pub struct Wake {
    waker: Waker,
    pending: AtomicBool,
    stalls: AtomicU64,
}

impl Wake {
    fn notify(&self) {
        if !self.pending.swap(true, Ordering::SeqCst) {
            self.waker.wake();
        }
    }

    /// Called by the reactor before draining: later sends wake it again.
    /// The eventfd is reset before the flag is cleared; the other order
    /// could erase the wake of a send that lands in between and leave the
    /// flag set with nothing to wake the reactor.
    pub fn acknowledge(&self) {
        self.waker.reset();
        self.pending.store(false, Ordering::SeqCst);
    }

    /// The eventfd a driver watches.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }
}

impl Inbox {
    pub fn send_events(&self, batch: Batch) {
        self.send(Msg::Events(batch));
    }

    pub fn send_history(&self, batch: Batch) {
        self.send(Msg::History(batch));
    }

    /// Sends a registry question or order (waits while the inbox is full).
    pub fn control(&self, c: super::registry::Control) {
        self.send(Msg::Control(c));
    }

    /// Hands a parked stream the log reader's answer.
    pub fn log_answer(&self, answer: super::history::log::LogAnswer) {
        self.send(Msg::Log(answer));
    }

    /// Asks the reactor to stop. Waits at most a second for room in a full
    /// inbox, so that a wedged reactor cannot hold up shutdown (whose own
    /// deadline then ends the process).
    pub fn shutdown(&self) {
        let _ = self
            .tx
            .send_timeout(Msg::Shutdown, std::time::Duration::from_secs(1));
        self.wake.notify();
    }

    /// Sends without waiting when there is room; otherwise counts a stall,
    /// wakes the reactor and waits for it. A reactor that has stopped
    /// (receiver gone) is skipped.
    fn send(&self, msg: Msg) {
        let msg = match self.tx.try_send(msg) {
            Ok(()) => return self.wake.notify(),
            Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(msg)) => msg,
        };
        self.wake.stalls.fetch_add(1, Ordering::Relaxed);
        self.wake.notify();
        if self.tx.send(msg).is_ok() {
            self.wake.notify();
        }
    }

    /// Sends that found this inbox full and waited.
    pub fn stalls(&self) -> u64 {
        self.wake.stalls.load(Ordering::Relaxed)
    }
}

/// Builds a reactor's inbox: the sending side for the hub, the receiving
/// side and the wake-up for the reactor.
pub fn inbox() -> std::io::Result<(Inbox, Receiver<Msg>, Arc<Wake>)> {
    inbox_with_capacity(INBOX_CAPACITY)
}

fn inbox_with_capacity(cap: usize) -> std::io::Result<(Inbox, Receiver<Msg>, Arc<Wake>)> {
    let (tx, rx) = crossbeam_channel::bounded(cap);
    let wake = Arc::new(Wake {
        waker: Waker::new()?,
        pending: AtomicBool::new(false),
        stalls: AtomicU64::new(0),
    });
    Ok((
        Inbox {
            tx,
            wake: wake.clone(),
        },
        rx,
        wake,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_inbox_waits_for_its_reactor_and_counts_the_stall() {
        let (inbox, rx, wake) = inbox_with_capacity(1).unwrap();
        inbox.send_history(Arc::from(Vec::new()));
        let sender = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.send_events(Arc::from(Vec::new())))
        };
        // The second send cannot finish until the reactor drains one.
        while inbox.stalls() == 0 {
            std::thread::yield_now();
        }
        assert!(matches!(rx.recv().unwrap(), Msg::History(_)));
        sender.join().unwrap();
        assert!(matches!(rx.recv().unwrap(), Msg::Events(_)));
        assert_eq!(inbox.stalls(), 1);
        wake.acknowledge();
    }
}
