//! The registry questions and orders a reactor answers (SPEC §7): list the
//! streaming connections of an app or of one of its users, and end one
//! connection by id. Answered from the slots and the user index; nothing is
//! stored for the registry.
//!
//! A listing asked on the public listener is handed off as a [`Query`]
//! (the answer needs every reactor, and maybe Redis): the connection waits,
//! the reactor goes on, and [`Control::Answer`] brings the response back.
//! With the Redis registry, a user stream's start is reported as a
//! [`Record::Open`] (its end in `index.rs`).

use std::os::fd::AsFd;

use super::stats::Why;
use super::users::NIL;
use super::{Core, Transport};
use crate::conn::response;
use crate::conn::State;
use crate::hub::registry::{ConnInfo, ConnRef, Control, Query, Record};

impl<T: Transport> Core<T> {
    pub(super) fn on_control(&mut self, c: Control, now_ms: u64) {
        match c {
            Control::List { app, user, reply } => {
                let _ = reply.send(self.list(app.as_deref(), user.as_deref()));
            }
            Control::Kick { conn, reply } => {
                let alive = conn.reactor as usize == self.index
                    && self.alive(conn.slot, conn.gen)
                    && self.conns[conn.slot as usize].state == State::Streaming;
                if alive {
                    self.close(conn.slot, Why::Kicked);
                }
                let _ = reply.send(alive);
            }
            Control::Admit { conn, admitted } => self.on_admit(conn, admitted, now_ms),
            Control::Answer { conn, response } => {
                let waiting = conn.reactor as usize == self.index
                    && self.alive(conn.slot, conn.gen)
                    && self.conns[conn.slot as usize].state == State::Waiting;
                if waiting {
                    self.respond_and_close(conn.slot, &response, now_ms);
                }
            }
        }
    }

    /// Hands a listing off to be answered elsewhere; the connection waits.
    /// 503 when no one answers listings here or too many are queued.
    pub(super) fn hand_off(
        &mut self,
        key: u32,
        app: String,
        user: Option<String>,
        cors: String,
        now_ms: u64,
    ) {
        let query = Query {
            conn: ConnRef {
                reactor: self.index as u16,
                slot: key,
                gen: self.conns[key as usize].gen,
            },
            app: app.into(),
            user: user.map(Into::into),
            cors,
        };
        self.set_state(key, State::Waiting);
        self.conns[key as usize].head = None;
        let gen = query.conn.gen;
        self.waits.push((key, gen), now_ms + super::WAIT_TIMEOUT_MS);
        let refused = match &self.shared.queries {
            Some(queries) => queries.try_send(query).err().map(|e| e.into_inner()),
            None => Some(query),
        };
        if let Some(q) = refused {
            let body = response::busy("too many connection listings in progress", &q.cors);
            self.respond_and_close(key, &body, now_ms);
        }
    }

    /// With the Redis registry: a user's stream started.
    pub(super) fn record_open(&self, key: u32, app: &str, user: &str) {
        if let Some(records) = &self.shared.records {
            let _ = records.send(Record::Open(self.conn_info(key, app, Some(user))));
        }
    }

    pub(super) fn remote_addr(&self, key: u32) -> String {
        self.t
            .peer_ip(self.conns[key as usize].fd.as_fd())
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    }

    /// The streaming connections of `user` (or of every user) in `app`, or
    /// every user's in every app.
    fn list(&self, app: Option<&str>, user: Option<&str>) -> Vec<ConnInfo> {
        let Some(app) = app else {
            return self.infos(
                self.conns
                    .iter()
                    .filter(|(_, c)| c.state == State::Streaming && c.user != NIL)
                    .map(|(k, _)| k as u32),
            );
        };
        let Some(app_ix) = self.users.find_app(app) else {
            return Vec::new();
        };
        let heads: Vec<u32> = match user {
            Some(u) => self
                .users
                .find(app_ix, u)
                .map(|e| self.users.get(e).head)
                .into_iter()
                .collect(),
            None => self.users.users_of(app_ix).map(|e| e.head).collect(),
        };
        self.infos(heads.into_iter().flat_map(|h| self.list_from(h)))
    }

    fn infos(&self, keys: impl Iterator<Item = u32>) -> Vec<ConnInfo> {
        keys.map(|k| {
            let conn = &self.conns[k as usize];
            let app = self.users.app_name(conn.app);
            self.conn_info(k, app, Some(&self.users.get(conn.user).id))
        })
        .collect()
    }
}
