//! The user index threaded through the slots: each user's connections on
//! this reactor form a doubly-linked list (`user_prev`/`user_next`), so a
//! targeted event walks exactly that user's connections; and the matching
//! presence bookkeeping when a user's stream ends.

use super::users::NIL;
use super::{Core, Transport};
use crate::conn::State;

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

    /// A streaming user's connection ends: one stream fewer in presence.
    pub(super) fn leave_presence(&self, key: u32) {
        let conn = &self.conns[key as usize];
        if conn.user == NIL || conn.state != State::Streaming || !self.shared.presence.active() {
            return;
        }
        let app = self.users.app_name(conn.app);
        self.shared
            .presence
            .leave(app, &self.users.get(conn.user).id);
    }
}
