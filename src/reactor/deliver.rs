//! Draining the inbox and matching events to connections.
//!
//! Every drained event goes into the history first, then to its listeners:
//! targeted events through the user index, broadcasts over the streaming
//! connections. Each connection gets all of its events of one drain in one
//! send. Nothing here allocates per call: the scratch vectors live in the
//! core and keep their capacity.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::TryRecvError;

use super::users::NIL;
use super::{Core, Out, Transport, INBOX_BATCH};
use crate::conn::State;
use crate::hub::inbox::Msg;
use crate::hub::{Event, Target};

/// Pieces per send built on the stack; more events than this for one
/// connection in one drain go out in several sends, in order.
const OUT_BATCH: usize = 64;
/// Who on this reactor an event can reach.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reach {
    /// Every streaming connection.
    Everyone,
    /// The listeners of one (interned) app.
    App(u32),
    /// The listeners of one app except one user's connections (`NIL`: that
    /// user has none here).
    AppBut(u32, u32),
    /// Only the connections the user index names (also: an app nobody here
    /// listens to).
    Targeted,
}

/// Connections written between two readings of the clock for the
/// publish-to-write latency.
const LATENCY_CHUNK: u32 = 512;

impl<T: Transport> Core<T> {
    /// Drains at most [`INBOX_BATCH`] messages and delivers their events.
    /// Returns true when more are waiting; a shutdown message begins the
    /// drain.
    pub fn drain_inbox(&mut self, now_ms: u64) -> bool {
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        for _ in 0..INBOX_BATCH {
            match self.inbox.try_recv() {
                Ok(Msg::Events(batch)) => events.extend(batch.iter().cloned()),
                Ok(Msg::History(batch)) => {
                    // Keep ingest order: what came before goes first.
                    self.take_in(&mut events, now_ms);
                    for ev in batch.iter() {
                        self.history.push(ev, now_ms);
                    }
                }
                Ok(Msg::Control(c)) => {
                    // Answer from the state after what came before.
                    self.take_in(&mut events, now_ms);
                    self.on_control(c, now_ms);
                }
                Ok(Msg::Log(answer)) => {
                    // Memory as of this point meets the answer.
                    self.take_in(&mut events, now_ms);
                    self.on_log(answer, now_ms);
                }
                Ok(Msg::Shutdown) => self.begin_drain(now_ms),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        let more = !self.stopping && !self.inbox.is_empty();
        self.take_in(&mut events, now_ms);
        self.stats.set_history(self.history.held());
        self.events = events;
        more
    }

    /// Whether the inbox holds anything (a driver drains only then).
    pub fn inbox_waiting(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// Records drained events in the history, delivers them, and empties
    /// `events`.
    fn take_in(&mut self, events: &mut Vec<Arc<Event>>, now_ms: u64) {
        if events.is_empty() {
            return;
        }
        for ev in events.iter().filter(|ev| !ev.internal) {
            self.history.push(ev, now_ms);
        }
        self.deliver(events, now_ms);
        events.clear();
    }

    /// Delivers a run of events in order, each connection getting all of its
    /// matching events in one send.
    fn deliver(&mut self, events: &[Arc<Event>], now_ms: u64) {
        let mut targeted = std::mem::take(&mut self.targeted);
        let mut keys = std::mem::take(&mut self.keys);
        let mut picked = std::mem::take(&mut self.picked);
        let mut bcast = std::mem::take(&mut self.bcast);
        self.match_targets(events, &mut targeted);
        bcast.clear();
        bcast.extend(events.iter().map(|ev| self.reach(ev)));
        keys.clear();
        if bcast.iter().any(|r| !matches!(r, Reach::Targeted)) {
            self.reachable(&bcast, &targeted, &mut keys);
        } else {
            keys.extend(targeted.iter().map(|&(k, _)| k));
            keys.dedup();
        }
        let mut delivered = 0u64;
        let mut per_event = std::mem::take(&mut self.per_event);
        per_event.clear();
        per_event.resize(events.len(), 0);
        let mut in_chunk = 0;
        let mut t = 0;
        for &key in &keys {
            while t < targeted.len() && targeted[t].0 < key {
                t += 1;
            }
            picked.clear();
            let Some(conn) = self.conns.get(key as usize) else {
                continue;
            };
            if conn.state != State::Streaming {
                continue;
            }
            for (i, ev) in events.iter().enumerate() {
                let wanted = match bcast[i] {
                    Reach::Everyone => true,
                    Reach::App(app) => conn.app == app,
                    Reach::AppBut(app, user) => {
                        conn.app == app && (user == NIL || conn.user != user)
                    }
                    Reach::Targeted if t < targeted.len() && targeted[t] == (key, i as u32) => {
                        t += 1;
                        true
                    }
                    Reach::Targeted => false,
                };
                if wanted && conn.wants(ev) {
                    picked.push(i as u32);
                }
            }
            if !self.views.is_empty() {
                self.check_view(key, events, &mut picked);
            }
            delivered += picked.len() as u64;
            for &i in &picked {
                per_event[i as usize] += 1;
            }
            self.write_events(key, events, &picked, now_ms);
            in_chunk += 1;
            if in_chunk == LATENCY_CHUNK {
                self.observe_latency(events, &mut per_event);
                in_chunk = 0;
            }
        }
        self.observe_latency(events, &mut per_event);
        self.expire_views();
        self.per_event = per_event;
        self.stats.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.targeted = targeted;
        self.keys = keys;
        self.picked = picked;
        self.bcast = bcast;
    }

    /// The streams a drain's broadcasts can reach, ascending: when every
    /// broadcast is scoped to an app and those apps hold under half of this
    /// reactor's connections, their streams (through the app's user entries
    /// and anonymous list) plus the targeted ones; else every stream.
    fn reachable(&self, bcast: &[Reach], targeted: &[(u32, u32)], keys: &mut Vec<u32>) {
        let mut apps: Vec<u32> = Vec::new();
        for r in bcast {
            match *r {
                Reach::Everyone => apps.clear(),
                Reach::App(a) | Reach::AppBut(a, _) => apps.push(a),
                Reach::Targeted => continue,
            }
            if apps.is_empty() {
                break;
            }
        }
        apps.sort_unstable();
        apps.dedup();
        let streams: usize = apps
            .iter()
            .map(|&a| self.users.app(a).streams as usize)
            .sum();
        if apps.is_empty() || streams * 2 >= self.conns.len() {
            let streaming = self
                .conns
                .iter()
                .filter(|(_, c)| c.state == State::Streaming);
            keys.extend(streaming.map(|(k, _)| k as u32));
            return;
        }
        for &a in &apps {
            let heads = self.users.users_of(a).map(|u| u.head);
            for head in heads.chain(std::iter::once(self.users.app(a).anon)) {
                keys.extend(self.list_from(head));
            }
        }
        keys.extend(targeted.iter().map(|&(k, _)| k));
        keys.sort_unstable();
        keys.dedup();
    }

    /// Who on this reactor an event can reach, resolved once per drain.
    fn reach(&self, ev: &Event) -> Reach {
        let app = || ev.app.as_deref().and_then(|a| self.users.find_app(a));
        match (&ev.target, &ev.app) {
            (Target::All, None) => Reach::Everyone,
            (Target::All, Some(_)) => app().map_or(Reach::Targeted, Reach::App),
            (Target::Others(user), _) => match app() {
                Some(a) => Reach::AppBut(a, self.users.find(a, user).unwrap_or(NIL)),
                None => Reach::Targeted,
            },
            (Target::Users(_), _) => Reach::Targeted,
        }
    }

    /// Records the latency of the deliveries counted in `per_event` (writes
    /// per event since the last call) and resets the counts.
    fn observe_latency(&self, events: &[Arc<Event>], per_event: &mut [u64]) {
        if per_event.iter().all(|&n| n == 0) {
            return;
        }
        let now = self.t.clock_ms();
        for (ev, n) in events.iter().zip(per_event.iter_mut()) {
            if *n > 0 {
                self.stats.latency(now.saturating_sub(ev.published_ms), *n);
                *n = 0;
            }
        }
    }

    /// (connection, event index) pairs for the targeted events, sorted and
    /// without duplicates.
    fn match_targets(&self, events: &[Arc<Event>], out: &mut Vec<(u32, u32)>) {
        out.clear();
        for (i, ev) in events.iter().enumerate() {
            let Target::Users(ids) = &ev.target else {
                continue;
            };
            let apps = match &ev.app {
                Some(a) => match self.users.find_app(a) {
                    Some(ix) => ix..ix + 1,
                    None => continue,
                },
                None => 0..self.users.app_count(),
            };
            for app in apps {
                for id in ids.iter() {
                    let Some(u) = self.users.find(app, id) else {
                        continue;
                    };
                    out.extend(
                        self.list_from(self.users.get(u).head)
                            .map(|c| (c, i as u32)),
                    );
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    /// Sends the `picked` events to one connection, [`OUT_BATCH`] pieces a
    /// send (one send in all, almost always).
    fn write_events(&mut self, key: u32, events: &[Arc<Event>], picked: &[u32], now_ms: u64) {
        let conn = &mut self.conns[key as usize];
        conn.events = conn.events.wrapping_add(picked.len() as u32);
        for group in picked.chunks(OUT_BATCH) {
            let mut out = [Out::Bytes(&[]); OUT_BATCH];
            for (slot, &i) in out.iter_mut().zip(group) {
                *slot = Out::Event(&events[i as usize]);
            }
            if !self.write(key, &out[..group.len()], now_ms) {
                return;
            }
        }
    }
}
