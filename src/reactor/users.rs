//! A reactor's user index: (app, user id) → the connections of that user on
//! this reactor, as an intrusive doubly-linked list threaded through the
//! connections themselves (no per-user `Vec`).
//!
//! Apps are interned to small integers (found through a hash map, so many
//! apps cost no more than one); each (app, user) entry is stored once in a
//! slab, found through a `HashTable` of slab keys. Each app also threads its
//! user entries into a list, and its anonymous streams (through the same
//! links their users' streams use), and counts its streams: an app-scoped
//! event walks that app's streams only, not the reactor's.

use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use slab::Slab;

/// "No connection / no user" in the intrusive links.
pub const NIL: u32 = u32::MAX;

/// One user of one app on this reactor.
#[derive(Debug)]
pub struct User {
    pub app: u32,
    pub id: Box<str>,
    /// First connection key of the user's list.
    pub head: u32,
    pub count: u32,
    /// The app's list of user entries.
    app_prev: u32,
    app_next: u32,
}

/// One app seen on this reactor.
#[derive(Debug)]
pub struct App {
    pub name: Box<str>,
    /// First user entry of the app's list.
    users: u32,
    /// First anonymous stream of the app's list (linked through the
    /// connections' user links).
    pub anon: u32,
    /// Streams of the app on this reactor.
    pub streams: u32,
}

#[derive(Default)]
pub struct Users {
    apps: Vec<App>,
    app_index: HashMap<Box<str>, u32>,
    entries: Slab<User>,
    table: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

impl Users {
    /// Reserves room for `capacity` users up front (like the connection
    /// slab), so the index never doubles and copies under load.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            apps: Vec::new(),
            app_index: HashMap::new(),
            entries: Slab::with_capacity(capacity),
            table: HashTable::with_capacity(capacity),
            hasher: DefaultHashBuilder::default(),
        }
    }

    fn hash(&self, app: u32, id: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        app.hash(&mut h);
        id.hash(&mut h);
        h.finish()
    }

    /// The index of `app`, interning it on first use.
    pub fn intern_app(&mut self, app: &str) -> u32 {
        if let Some(&i) = self.app_index.get(app) {
            return i;
        }
        let i = self.apps.len() as u32;
        self.apps.push(App {
            name: app.into(),
            users: NIL,
            anon: NIL,
            streams: 0,
        });
        self.app_index.insert(app.into(), i);
        i
    }

    /// The name of an interned app.
    pub fn app_name(&self, app: u32) -> &str {
        &self.apps[app as usize].name
    }

    /// The index of `app` if any listener of it was seen here.
    pub fn find_app(&self, app: &str) -> Option<u32> {
        self.app_index.get(app).copied()
    }

    pub fn app(&self, app: u32) -> &App {
        &self.apps[app as usize]
    }

    pub fn app_mut(&mut self, app: u32) -> &mut App {
        &mut self.apps[app as usize]
    }

    /// The user entries of `app`.
    pub fn users_of(&self, app: u32) -> impl Iterator<Item = &User> {
        let mut next = self.apps[app as usize].users;
        std::iter::from_fn(move || {
            let u = self.entries.get(next as usize).filter(|_| next != NIL)?;
            next = u.app_next;
            Some(u)
        })
    }

    pub fn app_count(&self) -> u32 {
        self.apps.len() as u32
    }

    /// The entry of (app, id), creating it (with an empty list) on first use.
    pub fn get_or_insert(&mut self, app: u32, id: &str) -> u32 {
        if let Some(k) = self.find(app, id) {
            return k;
        }
        let hash = self.hash(app, id);
        let first = self.apps[app as usize].users;
        let key = self.entries.insert(User {
            app,
            id: id.into(),
            head: NIL,
            count: 0,
            app_prev: NIL,
            app_next: first,
        }) as u32;
        if first != NIL {
            self.entries[first as usize].app_prev = key;
        }
        self.apps[app as usize].users = key;
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.table.insert_unique(hash, key, |k| {
            let u = &entries[*k as usize];
            let mut h = hasher.build_hasher();
            u.app.hash(&mut h);
            u.id.hash(&mut h);
            h.finish()
        });
        key
    }

    /// The entry of (app, id), if that user has connections here.
    pub fn find(&self, app: u32, id: &str) -> Option<u32> {
        let hash = self.hash(app, id);
        self.table
            .find(hash, |k| {
                let u = &self.entries[*k as usize];
                u.app == app && &*u.id == id
            })
            .copied()
    }

    pub fn get(&self, key: u32) -> &User {
        &self.entries[key as usize]
    }

    pub fn get_mut(&mut self, key: u32) -> &mut User {
        &mut self.entries[key as usize]
    }

    /// Drops an entry whose list became empty.
    pub fn remove(&mut self, key: u32) {
        let u = self.entries.remove(key as usize);
        if u.app_prev != NIL {
            self.entries[u.app_prev as usize].app_next = u.app_next;
        } else {
            self.apps[u.app as usize].users = u.app_next;
        }
        if u.app_next != NIL {
            self.entries[u.app_next as usize].app_prev = u.app_prev;
        }
        let hash = self.hash(u.app, &u.id);
        if let Ok(e) = self.table.find_entry(hash, |k| *k == key) {
            e.remove();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_find_remove() {
        let mut u = Users::default();
        let a = u.intern_app("shop");
        let b = u.intern_app("blog");
        assert_eq!(u.intern_app("shop"), a);
        assert_ne!(a, b);
        assert_eq!(u.find_app("blog"), Some(b));
        assert_eq!(u.find_app("none"), None);
        let k1 = u.get_or_insert(a, "u1");
        let k2 = u.get_or_insert(b, "u1");
        assert_ne!(k1, k2, "same user id in two apps is two entries");
        assert_eq!(u.get_or_insert(a, "u1"), k1);
        assert_eq!(u.find(a, "u1"), Some(k1));
        u.remove(k1);
        assert_eq!(u.find(a, "u1"), None);
        assert_eq!(u.find(b, "u1"), Some(k2));
        for i in 0..1000 {
            u.get_or_insert(a, &format!("x{i}"));
        }
        for i in 0..1000 {
            assert!(u.find(a, &format!("x{i}")).is_some());
        }
        assert_eq!(u.find(b, "u1"), Some(k2));
        // Each app lists exactly its own entries, removals included.
        assert_eq!(u.users_of(a).count(), 1000);
        let x7 = u.find(a, "x7").unwrap();
        u.remove(x7);
        assert_eq!(u.users_of(a).count(), 999);
        assert!(u.users_of(a).all(|e| e.app == a && &*e.id != "x7"));
        let ids: Vec<&str> = u.users_of(b).map(|e| &*e.id).collect();
        assert_eq!(ids, ["u1"]);
    }
}
