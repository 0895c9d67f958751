//! Removing a node's entries from the Redis registry: a dead peer's (a page
//! at a time, between the writer's other work, so the sweeper never misses
//! its own beat), this node's own on a clean stop, and this node's stale
//! ones when it re-registers after being taken for dead.
//!
//! Contract:
//! - Every entry is removed through `LEAVE`, so a user whose last stream was
//!   on the dead node is announced `user-disconnected` once, by whichever
//!   node removes it (the script decides, so two sweepers cannot both).
//! - One node sweeps a given dead node (a lock key with the TTL), and it
//!   checks before each page that the node is still dead: one that comes
//!   back (a long stall) keeps what it has and re-registers the rest.
//! - Re-registering writes every open stream again with `JOIN` (a no-op
//!   for an entry still there, so users who never left are not announced
//!   again) and removes only entries of streams no longer open.

use std::collections::HashSet;
use std::time::Duration;

use log::{info, warn};
use redis::{Connection, RedisResult};

use super::keys;
use super::writer::{leave_call, Shas, Writer, BATCH};
use crate::hub::registry::Record;

/// A dead node being swept.
pub struct Sweep {
    node: String,
    cursor: u64,
    removed: usize,
    lock: String,
    ttl: Duration,
}

impl Sweep {
    /// The next registered node (not `own`) whose alive key is gone and
    /// that no other node is sweeping.
    pub fn next_dead(con: &mut Connection, own: &str, ttl: Duration) -> RedisResult<Option<Sweep>> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(keys::NODES).query(con)?;
        for node in nodes.into_iter().filter(|n| n != own) {
            let alive: bool = redis::cmd("EXISTS").arg(keys::alive(&node)).query(con)?;
            if alive {
                continue;
            }
            let lock = format!("{}sweep:{node}", keys::PREFIX);
            let took: Option<String> = redis::cmd("SET")
                .arg(&lock)
                .arg(own)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query(con)?;
            if took.is_some() {
                return Ok(Some(Sweep {
                    node,
                    cursor: 0,
                    removed: 0,
                    lock,
                    ttl,
                }));
            }
        }
        Ok(None)
    }

    /// Removes one page of the dead node's entries; `true` when done (or
    /// when the node turned out alive after all).
    pub fn page(&mut self, con: &mut Connection, shas: &Shas) -> RedisResult<bool> {
        let alive: bool = redis::cmd("EXISTS")
            .arg(keys::alive(&self.node))
            .query(con)?;
        if alive {
            warn!("registry: node {} is alive again; sweep stopped", self.node);
            redis::cmd("DEL").arg(&self.lock).query::<()>(con)?;
            return Ok(true);
        }
        redis::cmd("PEXPIRE")
            .arg(&self.lock)
            .arg(self.ttl.as_millis() as u64)
            .query::<()>(con)?;
        let (next, n) = remove_page(con, shas, &self.node, self.cursor, &HashSet::new())?;
        self.removed += n;
        self.cursor = next;
        if next != 0 {
            return Ok(false);
        }
        redis::pipe()
            .cmd("DEL")
            .arg(keys::node_index(&self.node))
            .ignore()
            .cmd("SREM")
            .arg(keys::NODES)
            .arg(&self.node)
            .ignore()
            .cmd("DEL")
            .arg(&self.lock)
            .ignore()
            .query::<()>(con)?;
        info!(
            "registry: node {} is gone; removed its {} connection(s)",
            self.node, self.removed
        );
        Ok(true)
    }
}

/// This node was taken for dead: writes every open stream again and removes
/// its entries of streams that are gone.
pub fn resync(w: &Writer, con: &mut Connection, shas: &Shas) -> RedisResult<()> {
    let open = w.dir.list_local(None, None);
    for chunk in open.chunks(BATCH) {
        let records: Vec<Record> = chunk.iter().cloned().map(Record::Open).collect();
        let refs: Vec<&Record> = records.iter().collect();
        w.write(con, shas, &refs)?;
    }
    let keep: HashSet<String> = open.iter().map(|c| c.id.clone()).collect();
    let stale = remove_all(con, shas, w.dir.node(), &keep)?;
    warn!(
        "registry: this node was taken for dead (Redis unreachable or restarted); \
         re-registered {} stream(s), removed {stale} stale",
        open.len()
    );
    Ok(())
}

/// A clean stop: removes what is left of this node, and its alive key.
pub fn leave(w: &Writer, con: &mut Connection, shas: &Shas) -> RedisResult<()> {
    let node = w.dir.node();
    let n = remove_all(con, shas, node, &HashSet::new())?;
    redis::pipe()
        .cmd("DEL")
        .arg(keys::node_index(node))
        .arg(keys::alive(node))
        .ignore()
        .cmd("SREM")
        .arg(keys::NODES)
        .arg(node)
        .ignore()
        .query::<()>(con)?;
    info!("registry: node {node} left the registry ({n} entries removed)");
    Ok(())
}

/// Removes `node`'s entries not in `keep`; returns how many.
fn remove_all(
    con: &mut Connection,
    shas: &Shas,
    node: &str,
    keep: &HashSet<String>,
) -> RedisResult<usize> {
    let (mut cursor, mut removed) = (0, 0);
    loop {
        let (next, n) = remove_page(con, shas, node, cursor, keep)?;
        removed += n;
        if next == 0 {
            return Ok(removed);
        }
        cursor = next;
    }
}

/// One `HSCAN` page of `node`'s index from `cursor`: its entries not in
/// `keep` removed. Returns the next cursor and how many were removed.
fn remove_page(
    con: &mut Connection,
    shas: &Shas,
    node: &str,
    cursor: u64,
    keep: &HashSet<String>,
) -> RedisResult<(u64, usize)> {
    let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
        .arg(keys::node_index(node))
        .arg(cursor)
        .arg("COUNT")
        .arg(BATCH)
        .query(con)?;
    let mut pipe = redis::pipe();
    let mut n = 0;
    for (id, u) in pairs.iter().filter(|(id, _)| !keep.contains(id)) {
        if let Some((app, user)) = keys::parse_user_key(u) {
            leave_call(&mut pipe, &shas.leave, node, id, app, user);
            n += 1;
        }
    }
    if n > 0 {
        pipe.query::<()>(con)?;
    }
    Ok((next, n))
}
