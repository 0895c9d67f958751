//! Who is online in this process (SPEC §5, §7): each authenticated user's
//! stream count per app, shared by every reactor, for presence events and
//! `MAX_CONNECTIONS_PER_USER`.
//!
//! Contract:
//! - [`Presence::join`] and [`Presence::leave`] cost O(1): one hash lookup
//!   under one of [`SHARDS`] locks, chosen by (app, user), held for the
//!   lookup only. They are called when a stream starts and when it ends,
//!   never per event.
//! - A user's first stream in an app and last stream leaving are exact
//!   across reactors: they are decided under the shard lock, and the change
//!   is queued (still under the lock, so in that order) for the feed.
//! - `on-connection` lists what the shards hold at that moment (every
//!   stream that started before is in), walking at most `PRESENCE_LIST_MAX`
//!   users (`truncated` beyond) plus one lock per shard. A listener that
//!   starts while a user's arrival is still being announced would get that
//!   user twice (listed, and as `user-connected`); the reactor filters
//!   those for the window [`Presence::in_flight`] reports.
//! - With presence events on, the feed thread ([`run_feed`]) turns each
//!   change into `user-connected` / `user-disconnected` through the hub,
//!   and offers it to the [`Watchers`] (gRPC `WatchPresence`) first.
//! - With the Redis registry the cluster decides first and last instead:
//!   there is no local feed, and `on-connection` lists the cluster's online
//!   users from a mirror ([`Presence::mirror`]) that the cluster watcher
//!   keeps from Redis, so a connect still costs no Redis round trip.
//!   Reactors never publish to the hub themselves: a reactor waiting on its
//!   own full inbox would never drain it.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use hashbrown::{DefaultHashBuilder, HashMap};

use crate::hub::{Hub, Internal, Now};

mod watchers;
pub use watchers::{Tap, Watchers};

/// Lock shards of the connection counts.
pub const SHARDS: usize = 64;

/// A user's first stream in an app opened, or its last one closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Joined { app: Box<str>, user: Box<str> },
    Left { app: Box<str>, user: Box<str> },
}

/// `join` refused: the user already holds `MAX_CONNECTIONS_PER_USER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserFull;

/// One shard: app → user → open streams (users with none are removed).
type Counts = HashMap<Box<str>, HashMap<Box<str>, u32>>;

/// The process-wide presence state.
pub struct Presence {
    shards: Box<[Mutex<Counts>]>,
    hasher: DefaultHashBuilder,
    /// 0: no limit. Changed between non-zero values on `SIGHUP`
    /// ([`Presence::set_per_user_max`]).
    per_user_max: AtomicU32,
    /// Where changes go when presence events are on (local registry).
    feed: Option<Sender<Change>>,
    /// Whether new listeners get `on-connection`.
    events: bool,
    /// With the Redis registry: the cluster's online users, the same shape
    /// (counts are 1), read by `on_connection` instead of `shards`.
    mirror: Option<Box<[Mutex<Counts>]>>,
    list_max: usize,
    /// Changes decided (counted under their shard's lock, after the map
    /// changed) and changes announced (handed to every reactor): while
    /// they differ, announcements are on their way ([`Presence::in_flight`]).
    decided: AtomicU64,
    announced: AtomicU64,
    /// Taps on the announced changes (gRPC `WatchPresence`).
    pub watchers: Watchers,
}

/// How presence is fed: by this process's streams, or by the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Local,
    Cluster,
}

impl Presence {
    /// Presence with events on (`feed` set) or off, and a per-user limit
    /// (0 = none). In the cluster scope `feed` is not used: events come
    /// from the cluster, and `events` alone says whether they are on.
    pub fn new(
        per_user_max: u32,
        feed: Option<Sender<Change>>,
        events: bool,
        scope: Scope,
        list_max: usize,
    ) -> Self {
        let shards = || (0..SHARDS).map(|_| Mutex::new(Counts::default())).collect();
        Self {
            shards: shards(),
            hasher: DefaultHashBuilder::default(),
            per_user_max: AtomicU32::new(per_user_max),
            feed: feed.filter(|_| events && scope == Scope::Local),
            events,
            mirror: (scope == Scope::Cluster).then(shards),
            list_max,
            decided: AtomicU64::new(0),
            announced: AtomicU64::new(0),
            watchers: Watchers::default(),
        }
    }

    /// Whether streams need to be counted at all.
    pub fn active(&self) -> bool {
        self.per_user_max() > 0 || self.feed.is_some()
    }

    /// The per-user limit (0 = none).
    pub fn per_user_max(&self) -> u32 {
        self.per_user_max.load(Ordering::Relaxed)
    }

    /// A new per-user limit for streams that start from now on (open ones
    /// are not cut). Only between non-zero values: whether streams are
    /// counted at all ([`Presence::active`]) is fixed at start-up, so that
    /// every leave matches a join; `false` (nothing changed) otherwise.
    pub fn set_per_user_max(&self, max: u32) -> bool {
        if max == 0 || self.per_user_max() == 0 {
            return false;
        }
        self.per_user_max.store(max, Ordering::Relaxed);
        true
    }

    /// Whether presence events are generated.
    pub fn events(&self) -> bool {
        self.events
    }

    fn shard_index(&self, app: &str, user: &str) -> usize {
        let mut h = self.hasher.build_hasher();
        app.hash(&mut h);
        user.hash(&mut h);
        h.finish() as usize % SHARDS
    }

    fn shard(&self, app: &str, user: &str) -> &Mutex<Counts> {
        &self.shards[self.shard_index(app, user)]
    }

    /// A stream of `user` in `app` starts.
    pub fn join(&self, app: &str, user: &str) -> Result<(), UserFull> {
        let mut counts = self.lock(app, user);
        if let Some(n) = counts.get_mut(app).and_then(|users| users.get_mut(user)) {
            let max = self.per_user_max();
            if max > 0 && *n >= max {
                return Err(UserFull);
            }
            *n += 1;
            return Ok(());
        }
        counts.entry_ref(app).or_default().insert(user.into(), 1);
        self.tell(Change::Joined {
            app: app.into(),
            user: user.into(),
        });
        Ok(())
    }

    /// A stream of `user` in `app` ended.
    pub fn leave(&self, app: &str, user: &str) {
        let mut counts = self.lock(app, user);
        let Some(users) = counts.get_mut(app) else {
            return;
        };
        let Some(n) = users.get_mut(user) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        users.remove(user);
        if users.is_empty() {
            counts.remove(app);
        }
        self.tell(Change::Left {
            app: app.into(),
            user: user.into(),
        });
    }

    fn lock(&self, app: &str, user: &str) -> std::sync::MutexGuard<'_, Counts> {
        self.shard(app, user)
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster scope: `change`, decided by the cluster, goes into the
    /// mirror (before it is announced, like a local change). Returns whether
    /// the mirror changed (a repeat does not).
    pub fn mirror(&self, change: &Change) -> bool {
        let Some(mirror) = &self.mirror else {
            return false;
        };
        let (Change::Joined { app, user } | Change::Left { app, user }) = change;
        let i = self.shard_index(app, user);
        let mut counts = mirror[i].lock().unwrap_or_else(|p| p.into_inner());
        let changed = match change {
            Change::Joined { .. } => counts
                .entry_ref(&**app)
                .or_default()
                .insert(user.clone(), 1)
                .is_none(),
            Change::Left { .. } => {
                let Some(users) = counts.get_mut(&**app) else {
                    return false;
                };
                let gone = users.remove(&**user).is_some();
                if users.is_empty() {
                    counts.remove(&**app);
                }
                gone
            }
        };
        if changed {
            self.decided.fetch_add(1, Ordering::SeqCst);
        }
        changed
    }

    /// The cluster scope: replaces the mirror with `online` (app, user)
    /// pairs, read from Redis after (re)subscribing.
    pub fn mirror_reset(&self, online: impl IntoIterator<Item = (Box<str>, Box<str>)>) {
        let Some(mirror) = &self.mirror else {
            return;
        };
        let mut fresh: Vec<Counts> = (0..SHARDS).map(|_| Counts::default()).collect();
        for (app, user) in online {
            let i = self.shard_index(&app, &user);
            fresh[i].entry(app).or_default().insert(user, 1);
        }
        for (shard, counts) in mirror.iter().zip(fresh) {
            *shard.lock().unwrap_or_else(|p| p.into_inner()) = counts;
        }
    }

    fn tell(&self, change: Change) {
        if let Some(feed) = &self.feed {
            self.decided.fetch_add(1, Ordering::SeqCst);
            let _ = feed.send(change);
        }
    }

    /// `n` more changes are in every reactor's inbox.
    pub fn note_announced(&self, n: usize) {
        self.announced.fetch_add(n as u64, Ordering::SeqCst);
    }

    /// Read right after an `on_connection` list was taken: `Some(d)` when
    /// changes decided before it may not have reached the reactors yet
    /// (they have once [`Presence::announced_at_least`] `d`).
    pub fn in_flight(&self) -> Option<u64> {
        let decided = self.decided.load(Ordering::SeqCst);
        (self.announced.load(Ordering::SeqCst) < decided).then_some(decided)
    }

    pub fn announced_at_least(&self, d: u64) -> bool {
        self.announced.load(Ordering::SeqCst) >= d
    }

    /// The `on-connection` data for a new listener of `app`: the app's
    /// online users (the listener's own `user` first), at most
    /// `PRESENCE_LIST_MAX`, and whether the list was cut.
    ///
    /// The list also stops before its ids pass `max_bytes` (half of
    /// `MAX_PENDING_BYTES`, like any event), so the frame always fits what a
    /// new listener may have pending.
    pub fn on_connection(
        &self,
        app: &str,
        user: Option<&str>,
        max_bytes: usize,
    ) -> serde_json::Value {
        let mut users: Vec<String> = Vec::new();
        let mut bytes = 0;
        let mut truncated = false;
        let mut add = |u: &str| {
            // Quotes, comma, and room for JSON escapes of odd characters.
            let cost = u.len() * 2 + 3;
            if users.len() >= self.list_max || bytes + cost > max_bytes {
                truncated = true;
                return false;
            }
            bytes += cost;
            users.push(u.to_string());
            true
        };
        if let Some(own) = user {
            add(own);
        }
        let shards = self.mirror.as_deref().unwrap_or(&self.shards);
        'shards: for shard in shards.iter() {
            let counts = shard.lock().unwrap_or_else(|p| p.into_inner());
            let Some(online) = counts.get(app) else {
                continue;
            };
            for u in online.keys().filter(|u| Some(&***u) != user) {
                if !add(u) {
                    break 'shards;
                }
            }
        }
        serde_json::json!({ "users": users, "truncated": truncated })
    }
}

/// The feed thread: announces every change through the hub, in the order
/// the changes were decided, until every sender is gone. `now` reads the
/// clocks for each announcement.
///
/// Changes that come within [`FEED_LINGER`] of the first (a connection
/// burst) go out together, up to [`FEED_BATCH`] at a time: one hub ticket
/// and one wake-up per reactor for the lot, not one per change.
pub fn run_feed(changes: Receiver<Change>, presence: &Presence, hub: &Hub, now: impl Fn() -> Now) {
    while let Ok(first) = changes.recv() {
        let batch = gather(&changes, first, FEED_BATCH, FEED_LINGER);
        presence.watchers.tell(&batch);
        let n = batch.len();
        hub.announce(batch.into_iter().map(announcement).collect(), now());
        presence.note_announced(n);
    }
}

/// `first` and what else arrives on `rx` within `linger` of it, `max` at
/// most: the batching of every thread that feeds the reactors or Redis.
pub fn gather<T>(rx: &Receiver<T>, first: T, max: usize, linger: Duration) -> Vec<T> {
    let until = Instant::now() + linger;
    let mut batch = vec![first];
    while batch.len() < max {
        match rx.recv_deadline(until) {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    batch
}

/// Presence changes announced together at most.
pub const FEED_BATCH: usize = 1024;
/// How long a burst of presence changes is gathered before it is announced:
/// each announcement wakes every reactor, so a connect storm wakes them once
/// a millisecond, not once a connect. (A listener that starts meanwhile
/// lists the user and is not told again: `reactor::views`.)
pub const FEED_LINGER: Duration = Duration::from_millis(1);

/// The event a change is announced as.
pub fn announcement(change: Change) -> Internal {
    let (app, user, name) = match change {
        Change::Joined { app, user } => (app, user, "user-connected"),
        Change::Left { app, user } => (app, user, "user-disconnected"),
    };
    Internal {
        app,
        name,
        data: serde_json::json!({ "userId": &*user }),
        except: Some(user),
    }
}

#[cfg(test)]
mod tests;
