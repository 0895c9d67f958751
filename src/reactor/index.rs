//! The user index threaded through the slots: each user's connections on
//! this reactor form a doubly-linked list (`user_prev`/`user_next`), so a
//! targeted event walks exactly that user's connections; and the
//! bookkeeping when a user's stream ends (presence, Redis registry).

use super::users::NIL;
use super::{Core, Transport};
use crate::conn::State;
use crate::hub::registry::Record;

impl<T: Transport> Core<T> {
    pub(super) fn link_user(&mut self, key: u32, user: u32) {
        let u = self.users.get_mut(user);
        let old_head = u.head;
        u.head = key;
        u.count += 1;
        if old_head != NIL {
            self.conns[old_head as usize].user_prev = key;
        }
        let conn = &mut self.conns[key as usize];
        conn.user = user;
        conn.user_next = old_head;
        conn.user_prev = NIL;
    }

    pub(super) fn unlink_user(&mut self, key: u32) {
        let (user, prev, next) = {
            let c = &self.conns[key as usize];
            (c.user, c.user_prev, c.user_next)
        };
        if user == NIL {
            return;
        }
        if prev != NIL {
            self.conns[prev as usize].user_next = next;
        } else {
            self.users.get_mut(user).head = next;
        }
        if next != NIL {
            self.conns[next as usize].user_prev = prev;
        }
        let u = self.users.get_mut(user);
        u.count -= 1;
        if u.count == 0 {
            self.users.remove(user);
        }
        self.conns[key as usize].user = NIL;
    }

    /// A streaming user's connection ends: one stream fewer in presence,
    /// and its entry leaves the Redis registry.
    pub(super) fn stream_ended(&self, key: u32) {
        let conn = &self.conns[key as usize];
        if conn.user == NIL || conn.state != State::Streaming {
            return;
        }
        let app = self.users.app_name(conn.app);
        let user = &self.users.get(conn.user).id;
        if self.shared.presence.active() {
            self.shared.presence.leave(app, user);
        }
        if let Some(records) = &self.shared.records {
            let _ = records.send(Record::Close {
                id: self.conn_id(key).to_string(),
                app: app.into(),
                user: user.clone(),
            });
        }
    }
}
