//! The cluster watcher thread: follows `herald:presence` (the cluster's
//! first connections and last disconnections, decided by Redis) and this
//! node's kick channel.
//!
//! Contract:
//! - Each presence change goes into the presence mirror (what
//!   `on-connection` lists), then is announced to this node's listeners of
//!   the app as `user-connected` / `user-disconnected` (with presence events
//!   on). Changes that arrive within a millisecond of each other go out
//!   together.
//! - After every (re)subscribe the mirror is reloaded from Redis, so changes
//!   missed while the link was down are not kept wrong.
//! - A kick names one of this node's connection ids; its reactor ends it.
//! - A quiet link is probed with PING, so a dead Redis is noticed within
//!   two idle periods; it is retried with capped backoff.

use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use redis::RedisResult;

use super::{keys, Directory};
use crate::hub::{Hub, Now};
use crate::ingest::Backoff;
use crate::presence::{announcement, Change, Presence, FEED_BATCH, FEED_LINGER};

const IDLE: Duration = Duration::from_secs(2);

/// What the watcher needs.
pub struct Watch {
    pub dir: Arc<Directory>,
    pub presence: Arc<Presence>,
    pub hub: Arc<Hub>,
    /// The clocks, read for each announcement.
    pub now: fn() -> Now,
}

impl Watch {
    /// Runs for the life of the process.
    pub fn run(self) {
        let Some(client) = self.dir.redis_client() else {
            return;
        };
        let mut backoff = Backoff::new();
        loop {
            let err = self.follow(&client, &mut backoff);
            warn!("registry: presence/kick subscription lost ({err}); retrying");
            backoff.sleep();
        }
    }

    /// Subscribes, reloads the mirror, and handles messages until the link
    /// fails.
    fn follow(&self, client: &redis::Client, backoff: &mut Backoff) -> redis::RedisError {
        let mut con = match super::connect(client) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let mut ps = con.as_pubsub();
        let kick = keys::kick_channel(self.dir.node());
        let subscribed = ps
            .set_read_timeout(Some(IDLE))
            .and_then(|()| ps.subscribe(&[keys::PRESENCE, kick.as_str()]));
        if let Err(e) = subscribed.and_then(|()| self.reload(client)) {
            return e;
        }
        info!(
            "registry: following cluster presence and kicks for node {}",
            self.dir.node()
        );
        backoff.reset();
        loop {
            match ps.get_message() {
                Ok(msg) => {
                    // What else comes within a millisecond is announced
                    // with it: one wake-up of the reactors per burst.
                    let mut changes = Vec::new();
                    self.on_message(&msg, &mut changes);
                    let burst = ps.set_read_timeout(Some(FEED_LINGER)).map(|()| {
                        while changes.len() < FEED_BATCH {
                            match ps.get_message() {
                                Ok(msg) => self.on_message(&msg, &mut changes),
                                Err(_) => break,
                            }
                        }
                    });
                    self.apply(changes);
                    if let Err(e) = burst.and_then(|()| ps.set_read_timeout(Some(IDLE))) {
                        return e;
                    }
                }
                Err(e) if e.is_timeout() => {
                    if let Err(e) = ps.ping::<redis::Value>() {
                        return e;
                    }
                }
                Err(e) => return e,
            }
        }
    }

    /// A presence change is kept in `changes`; a kick goes to its reactor.
    fn on_message(&self, msg: &redis::Msg, changes: &mut Vec<Change>) {
        let payload: String = msg.get_payload().unwrap_or_default();
        if msg.get_channel_name() != keys::PRESENCE {
            self.dir.kick_local(&payload);
            return;
        }
        changes.extend(parse_change(&payload));
    }

    /// Puts a burst of changes in the mirror, then announces those that
    /// changed it (with presence events on). In that order a listener that
    /// starts meanwhile lists the user and the reactor drops the event for
    /// it (`reactor::views`): each user once, never not at all.
    fn apply(&self, mut changes: Vec<Change>) {
        changes.retain(|c| self.presence.mirror(c));
        if self.presence.events() && !changes.is_empty() {
            self.presence.watchers.tell(&changes);
            let n = changes.len();
            let events = changes.into_iter().map(announcement).collect();
            self.hub.announce(events, (self.now)());
            self.presence.note_announced(n);
        }
    }

    /// Replaces the mirror with the cluster's online users.
    fn reload(&self, client: &redis::Client) -> RedisResult<()> {
        let mut con = super::connect(client)?;
        let apps: Vec<String> = redis::cmd("SMEMBERS").arg(keys::APPS).query(&mut con)?;
        let mut online = Vec::new();
        for app in apps {
            let users: Vec<String> = redis::cmd("SMEMBERS")
                .arg(keys::users(&app))
                .query(&mut con)?;
            online.extend(users.into_iter().map(|u| (app.as_str().into(), u.into())));
        }
        self.presence.mirror_reset(online);
        Ok(())
    }
}

/// `+{u}` / `-{u}` back into a change.
fn parse_change(payload: &str) -> Option<Change> {
    let (joined, u) = match payload.split_at_checked(1)? {
        ("+", u) => (true, u),
        ("-", u) => (false, u),
        _ => return None,
    };
    let (app, user) = keys::parse_user_key(u)?;
    let (app, user) = (app.into(), user.into());
    Some(if joined {
        Change::Joined { app, user }
    } else {
        Change::Left { app, user }
    })
}
