//! What a new listener was told about presence, kept while that could be
//! contradicted (SPEC §5: a user's arrival and departure reach each listener
//! once).
//!
//! A stream's `on-connection` list is taken when it starts, while the
//! announcements of changes decided just before may still be on their way to
//! this reactor. Such a stream keeps the set it was told (its view) until
//! every change decided before the list was taken has been announced
//! ([`crate::presence::Presence::in_flight`]); meanwhile each presence event
//! for it is checked against the view: `user-connected` for a user it holds
//! and `user-disconnected` for one it does not are dropped, every other one
//! updates it. Streams that start while nothing is in flight keep nothing.

use std::sync::Arc;

use hashbrown::HashSet;

use super::{Core, Transport};
use crate::hub::{Event, Target};

/// One stream's presence view.
pub struct View {
    gen: u32,
    /// Dropped once this many changes have been announced.
    until: u64,
    users: HashSet<Box<str>>,
}

impl<T: Transport> Core<T> {
    /// Keeps the view of a stream that was just told `online` (the
    /// `on-connection` data), if announcements are in flight.
    pub(super) fn keep_view(&mut self, key: u32, online: &serde_json::Value) {
        let Some(until) = self.shared.presence.in_flight() else {
            return;
        };
        let users = online["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(Box::from))
            .collect();
        let gen = self.conns[key as usize].gen;
        self.views.insert(key, View { gen, until, users });
    }

    /// Drops from `picked` the presence events the stream `key` already
    /// knows of, updating its view with the others.
    pub(super) fn check_view(&mut self, key: u32, events: &[Arc<Event>], picked: &mut Vec<u32>) {
        let gen = self.conns[key as usize].gen;
        let Some(view) = self.views.get_mut(&key).filter(|v| v.gen == gen) else {
            return;
        };
        picked.retain(|&i| {
            let ev = &events[i as usize];
            let (true, Target::Others(user)) = (ev.internal, &ev.target) else {
                return true;
            };
            match ev.name.as_deref() {
                Some("user-connected") => view.users.insert(user.clone()),
                Some("user-disconnected") => view.users.remove(user),
                _ => true,
            }
        });
    }

    /// Forgets the views no longer needed (or of closed streams).
    pub(super) fn expire_views(&mut self) {
        if self.views.is_empty() {
            return;
        }
        let presence = &self.shared.presence;
        let conns = &self.conns;
        self.views.retain(|&key, v| {
            conns.get(key as usize).is_some_and(|c| c.gen == v.gen)
                && !presence.announced_at_least(v.until)
        });
    }
}
