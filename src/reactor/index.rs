//! The stream index threaded through the slots: each user's streams on this
//! reactor form a doubly-linked list (`user_prev`/`user_next`), and so do
//! each app's anonymous streams, so a targeted event walks exactly that
//! user's streams and an app-scoped one that app's; and the bookkeeping
//! when a user's stream ends (presence, Redis registry).

use super::users::NIL;
use super::{Core, Transport};
use crate::conn::State;
use crate::hub::registry::Record;

impl<T: Transport> Core<T> {
    /// The streams of one list (a user's, or an app's anonymous ones), from
    /// its first key.
    pub(super) fn list_from(&self, head: u32) -> impl Iterator<Item = u32> + '_ {
        let mut next = head;
        std::iter::from_fn(move || {
            let c = next;
            (c != NIL).then(|| {
                next = self.conns[c as usize].user_next;
                c
            })
        })
    }

    /// Links a new stream of `app` into its user's list, or into the app's
    /// anonymous list when `user` is [`NIL`].
    pub(super) fn link_stream(&mut self, key: u32, app: u32, user: u32) {
        let old_head = if user != NIL {
            let u = self.users.get_mut(user);
            u.count += 1;
            std::mem::replace(&mut u.head, key)
        } else {
            std::mem::replace(&mut self.users.app_mut(app).anon, key)
        };
        self.users.app_mut(app).streams += 1;
        if old_head != NIL {
            self.conns[old_head as usize].user_prev = key;
        }
        let conn = &mut self.conns[key as usize];
        conn.app = app;
        conn.user = user;
        conn.user_next = old_head;
        conn.user_prev = NIL;
    }

    /// Unlinks a stream from its list (nothing for a connection that never
    /// streamed).
    pub(super) fn unlink_stream(&mut self, key: u32) {
        let (state, app, user, prev, next) = {
            let c = &self.conns[key as usize];
            (c.state, c.app, c.user, c.user_prev, c.user_next)
        };
        if state != State::Streaming {
            return;
        }
        if prev != NIL {
            self.conns[prev as usize].user_next = next;
        } else if user != NIL {
            self.users.get_mut(user).head = next;
        } else {
            self.users.app_mut(app).anon = next;
        }
        if next != NIL {
            self.conns[next as usize].user_prev = prev;
        }
        self.users.app_mut(app).streams -= 1;
        if user != NIL {
            let u = self.users.get_mut(user);
            u.count -= 1;
            if u.count == 0 {
                self.users.remove(user);
            }
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
