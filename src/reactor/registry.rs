//! The registry questions and orders a reactor answers (SPEC §7): list the
//! streaming connections of an app or of one of its users, and end one
//! connection by id. Answered from the slots and the user index; nothing is
//! stored for the registry.

use std::os::fd::AsFd;

use super::stats::Why;
use super::users::NIL;
use super::{Core, Transport};
use crate::conn::State;
use crate::hub::registry::{ConnInfo, Control};

impl<T: Transport> Core<T> {
    pub(super) fn on_control(&mut self, c: Control) {
        match c {
            Control::List { app, user, reply } => {
                let _ = reply.send(self.list(&app, user.as_deref()));
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
        }
    }

    /// The streaming connections of `user` (or of every user) in `app`.
    fn list(&self, app: &str, user: Option<&str>) -> Vec<ConnInfo> {
        let Some(app_ix) = self.users.find_app(app) else {
            return Vec::new();
        };
        let keys: Vec<u32> = match user {
            Some(u) => {
                let mut keys = Vec::new();
                if let Some(entry) = self.users.find(app_ix, u) {
                    let mut c = self.users.get(entry).head;
                    while c != NIL {
                        keys.push(c);
                        c = self.conns[c as usize].user_next;
                    }
                }
                keys
            }
            None => self
                .conns
                .iter()
                .filter(|(_, c)| c.state == State::Streaming && c.app == app_ix && c.user != NIL)
                .map(|(k, _)| k as u32)
                .collect(),
        };
        keys.into_iter()
            .map(|k| {
                let conn = &self.conns[k as usize];
                ConnInfo {
                    id: self.conn_id(k).to_string(),
                    created_at: u64::from(conn.created),
                    remote_addr: self
                        .t
                        .peer_ip(conn.fd.as_fd())
                        .map(|ip| ip.to_string())
                        .unwrap_or_default(),
                    app: app.into(),
                    user: self.users.get(conn.user).id.clone(),
                }
            })
            .collect()
    }
}
