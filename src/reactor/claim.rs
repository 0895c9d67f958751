//! The cluster-wide per-user limit (`MAX_CONNECTIONS_PER_USER` with the
//! Redis registry): a user's stream starts only once the registry has
//! counted it across every node.
//!
//! Contract:
//! - The reactor never waits for Redis. The accepted request is parked (the
//!   connection is `Waiting`), a [`Record::Claim`] goes to the registry
//!   writer, and [`Control::Admit`] brings the verdict: the stream starts,
//!   or the client gets 503 `Retry-After` like the local limit.
//! - While the registry's Redis link is down no stream is held: the local
//!   limit alone applies (herald keeps serving when Redis is down).
//! - A claim not answered within [`super::WAIT_TIMEOUT_MS`] (Redis stuck) is
//!   answered 503 with `Retry-After`, never held; a client whose connection
//!   closes while parked just leaves. Either way the claim is
//!   withdrawn (a [`Record::Close`]), so the registry keeps no entry for a
//!   stream that never ran.

use std::sync::atomic::Ordering;

use super::replay::{Parked, Wait};
use super::users::NIL;
use super::{Core, Transport};
use crate::conn::auth::Identity;
use crate::conn::response;
use crate::conn::route::StreamRequest;
use crate::conn::session;
use crate::conn::State;
use crate::hub::registry::{ConnInfo, ConnRef, Record};

impl<T: Transport> Core<T> {
    /// Whether this stream must be counted by the cluster before it starts.
    pub(super) fn needs_claim(&self, req: &StreamRequest) -> bool {
        self.shared.records.is_some()
            && self.shared.cfg.max_connections_per_user > 0
            && req.identity.user.is_some()
            && self.shared.status.registry_up.load(Ordering::Relaxed)
    }

    /// Parks `req` and asks the registry writer to count it.
    pub(super) fn claim(&mut self, key: u32, req: StreamRequest, now_ms: u64) {
        let Some(records) = &self.shared.records else {
            return;
        };
        let gen = self.conns[key as usize].gen;
        let info = self.conn_info(key, &req.identity.app, req.identity.user.as_deref());
        let conn = ConnRef {
            reactor: self.index as u16,
            slot: key,
            gen,
        };
        let _ = records.send(Record::Claim { info, conn });
        self.park(
            key,
            Parked {
                req,
                claimed: false,
                wait: Wait::Claim,
            },
            now_ms,
        );
    }

    /// The registry's verdict on a claim.
    pub(super) fn on_admit(&mut self, conn: ConnRef, admitted: bool, now_ms: u64) {
        let key = conn.slot;
        if conn.reactor as usize != self.index || !self.alive(key, conn.gen) {
            return;
        }
        let Some(Parked {
            req,
            wait: Wait::Claim,
            ..
        }) = self.parked.remove(&key)
        else {
            return;
        };
        if admitted {
            self.begin(key, req, now_ms, true);
        } else {
            self.respond_and_close(key, &session::user_full(&req.cors), now_ms);
        }
    }

    /// Answers what was handed off and not answered in time: a claim, or a
    /// connection listing.
    pub(super) fn expire_waits(&mut self, now_ms: u64) {
        while let Some((key, gen)) = self.waits.pop_expired(now_ms) {
            if !self.alive(key, gen) || self.conns[key as usize].state != State::Waiting {
                continue;
            }
            if self.log_timed_out(key, now_ms) {
                continue;
            }
            let cors = match self.parked.get(&key) {
                Some(p) => p.req.cors.clone(),
                None => String::new(),
            };
            self.withdraw_claim(key);
            let body = response::busy("the connection registry did not answer in time", &cors);
            self.respond_and_close(key, &body, now_ms);
        }
    }

    /// Withdraws a parked stream's claim, asked or granted (its connection
    /// is going away).
    pub(super) fn withdraw_claim(&mut self, key: u32) {
        if let Some(p) = self.parked.remove(&key) {
            if p.claimed || matches!(p.wait, Wait::Claim) {
                self.unclaim(key, &p.req.identity);
            }
        }
    }

    /// Takes back an admitted claim whose stream will not run after all.
    pub(super) fn unclaim(&self, key: u32, who: &Identity) {
        if let (Some(records), Some(user)) = (&self.shared.records, &who.user) {
            let _ = records.send(Record::Close {
                id: self.conn_id(key).to_string(),
                app: who.app.as_str().into(),
                user: user.as_str().into(),
            });
        }
    }

    /// What the registry keeps about a user's stream.
    pub(super) fn conn_info(&self, key: u32, app: &str, user: Option<&str>) -> ConnInfo {
        let conn = &self.conns[key as usize];
        let bytes_pending = match conn.pending {
            NIL => 0,
            p => self
                .pending
                .get(p as usize)
                .map_or(0, |p| p.unsent() as u64),
        };
        ConnInfo {
            id: self.conn_id(key).to_string(),
            created_at: u64::from(conn.created),
            remote_addr: self.remote_addr(key),
            app: app.into(),
            user: user.unwrap_or_default().into(),
            events_sent: u64::from(conn.events),
            bytes_pending,
        }
    }
}
