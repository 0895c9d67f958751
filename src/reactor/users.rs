//! A reactor's user index: (app, user id) → the connections of that user on
//! this reactor, as an intrusive doubly-linked list threaded through the
//! connections themselves (no per-user `Vec`).
//!
//! Apps are interned to small integers; each (app, user) entry is stored once
//! in a slab, found through a `HashTable` of slab keys.

use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
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
}

#[derive(Default)]
pub struct Users {
    apps: Vec<Box<str>>,
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
        match self.apps.iter().position(|a| &**a == app) {
            Some(i) => i as u32,
            None => {
                self.apps.push(app.into());
                (self.apps.len() - 1) as u32
            }
        }
    }

    /// The index of `app` if any listener of it was seen here.
    /// The name of an interned app.
    pub fn app_name(&self, app: u32) -> &str {
        &self.apps[app as usize]
    }

    pub fn find_app(&self, app: &str) -> Option<u32> {
        self.apps.iter().position(|a| &**a == app).map(|i| i as u32)
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
        let key = self.entries.insert(User {
            app,
            id: id.into(),
            head: NIL,
            count: 0,
        }) as u32;
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
    }
}
