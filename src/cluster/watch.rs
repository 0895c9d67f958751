//! The cluster watcher thread: follows `herald:presence` (the cluster's
//! first connections and last disconnections, decided by Redis) and this
//! node's kick channel.
//!
//! Contract:
//! - Each presence change updates the presence mirror (what `on-connection`
//!   lists) and, with presence events on, is announced to this node's
//!   listeners of the app as `user-connected` / `user-disconnected`.
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
use crate::presence::{announcement, Change, Presence};

const IDLE: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

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
        let mut backoff = BACKOFF_MIN;
        loop {
            let err = self.follow(&client, &mut backoff);
            warn!("registry: presence/kick subscription lost ({err}); retrying");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Subscribes, reloads the mirror, and handles messages until the link
    /// fails.
    fn follow(&self, client: &redis::Client, backoff: &mut Duration) -> redis::RedisError {
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
        *backoff = BACKOFF_MIN;
        loop {
            match ps.get_message() {
                Ok(msg) => {
                    let payload: String = msg.get_payload().unwrap_or_default();
                    if msg.get_channel_name() == keys::PRESENCE {
                        self.on_presence(&payload);
                    } else {
                        self.dir.kick_local(&payload);
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

    fn on_presence(&self, payload: &str) {
        let (joined, u) = match payload.split_at_checked(1) {
            Some(("+", u)) => (true, u),
            Some(("-", u)) => (false, u),
            _ => return,
        };
        let Some((app, user)) = keys::parse_user_key(u) else {
            return;
        };
        let (app, user) = (app.into(), user.into());
        let change = if joined {
            Change::Joined { app, user }
        } else {
            Change::Left { app, user }
        };
        if self.presence.mirror(&change) && self.presence.events() {
            self.hub.announce(vec![announcement(change)], (self.now)());
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
