//! The held events and the indexes that make a replay cost what one
//! listener missed: broadcasts per app (and those for every app), targeted
//! events per user.
//!
//! Contract:
//! - `all` holds every event once, in ingest order; each is also in exactly
//!   the index lists it can reach: the global list (no `app`), its app's
//!   list (broadcasts of an app), or the list of every user it names.
//!   Every list is in ingest order, so eviction (always the oldest event)
//!   pops the front of each list it is in.
//! - An app or user with no held event has no entry: an idle user costs the
//!   index nothing.
//! - Only `Arc` pointers are held; the frames are the hub's, shared by
//!   every reactor.

use std::collections::{HashMap, VecDeque};
use std::iter::Peekable;
use std::sync::Arc;

use crate::hub::{Event, Target};

type List = VecDeque<Arc<Event>>;

#[derive(Default)]
pub(super) struct Store {
    all: List,
    /// What the held events cost against `HISTORY_MAX_BYTES` ([`cost`]).
    bytes: usize,
    /// Broadcasts without an `app` (and gap markers).
    global: List,
    apps: HashMap<Box<str>, List>,
    users: HashMap<Box<str>, List>,
    /// Ingest sequence of the newest event evicted (0: none yet).
    pub evicted_seq: u64,
}

/// What one event counts against the byte budget: its frame, its strings
/// and its own struct, all shared by every reactor, so counted once.
pub(super) fn cost(ev: &Event) -> usize {
    let strings = [ev.app.as_deref(), ev.name.as_deref(), ev.source.as_deref()]
        .iter()
        .flatten()
        .map(|s| s.len())
        .sum::<usize>();
    let targets = match &ev.target {
        Target::Users(ids) => ids.iter().map(|u| u.len() + 16).sum(),
        Target::All | Target::Others(_) => 0,
    };
    // The `Arc`'s two counters sit beside the event.
    std::mem::size_of::<Event>() + 16 + ev.frame.len() + ev.id.len() + strings + targets
}

impl Store {
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Users with at least one held event.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Every held event, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.all.iter()
    }

    pub fn oldest(&self) -> Option<&Arc<Event>> {
        self.all.front()
    }

    pub fn push(&mut self, ev: &Arc<Event>) {
        self.bytes += cost(ev);
        self.all.push_back(ev.clone());
        match (&ev.target, ev.app.as_deref()) {
            (Target::Users(ids), _) => {
                for id in ids.iter() {
                    let list = list_for(&mut self.users, id);
                    // A user named twice holds the event once.
                    if !list.back().is_some_and(|b| Arc::ptr_eq(b, ev)) {
                        list.push_back(ev.clone());
                    }
                }
            }
            (_, None) => self.global.push_back(ev.clone()),
            (_, Some(app)) => list_for(&mut self.apps, app).push_back(ev.clone()),
        }
    }

    /// Evicts the oldest event; false when nothing is held.
    pub fn pop_oldest(&mut self) -> bool {
        let Some(ev) = self.all.pop_front() else {
            return false;
        };
        self.bytes -= cost(&ev);
        self.evicted_seq = ev.seq;
        match (&ev.target, ev.app.as_deref()) {
            (Target::Users(ids), _) => {
                for id in ids.iter() {
                    pop_front_of(&mut self.users, id, &ev);
                }
            }
            (_, None) => {
                self.global.pop_front();
            }
            (_, Some(app)) => pop_front_of(&mut self.apps, app, &ev),
        }
        true
    }

    /// What a listener of `app` (and `user`) could have been sent, newest
    /// first: the three lists merged by ingest sequence.
    pub fn newest_first<'a>(
        &'a self,
        app: &str,
        user: Option<&str>,
    ) -> impl Iterator<Item = &'a Arc<Event>> + 'a {
        let mut lists: [Option<Peekable<std::iter::Rev<std::collections::vec_deque::Iter<'a, _>>>>;
            3] = [
            Some(self.global.iter().rev().peekable()),
            self.apps.get(app).map(|l| l.iter().rev().peekable()),
            user.and_then(|u| self.users.get(u))
                .map(|l| l.iter().rev().peekable()),
        ];
        std::iter::from_fn(move || {
            let mut best: Option<(usize, u64)> = None;
            for (i, list) in lists.iter_mut().enumerate() {
                if let Some(ev) = list.as_mut().and_then(|l| l.peek()) {
                    if best.is_none_or(|(_, seq)| ev.seq > seq) {
                        best = Some((i, ev.seq));
                    }
                }
            }
            let (i, _) = best?;
            lists[i].as_mut().and_then(Iterator::next)
        })
    }
}

fn list_for<'a>(map: &'a mut HashMap<Box<str>, List>, key: &str) -> &'a mut List {
    if !map.contains_key(key) {
        map.insert(key.into(), List::new());
    }
    map.get_mut(key).expect("inserted above")
}

/// Pops `ev` off the front of `key`'s list, and drops the list once empty.
fn pop_front_of(map: &mut HashMap<Box<str>, List>, key: &str, ev: &Arc<Event>) {
    let Some(list) = map.get_mut(key) else {
        return;
    };
    if list.front().is_some_and(|f| Arc::ptr_eq(f, ev)) {
        list.pop_front();
    }
    if list.is_empty() {
        map.remove(key);
    }
}
