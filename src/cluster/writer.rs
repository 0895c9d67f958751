//! The registry writer thread: turns the reactors' [`Record`]s into Redis
//! writes, keeps this node alive there, and sweeps dead nodes.
//!
//! Contract:
//! - Reactors never wait on Redis: they send a record on an unbounded
//!   channel; this thread gathers what comes within a millisecond and writes
//!   it as one pipeline of [`keys::JOIN`] / [`keys::LEAVE`] calls ([`BATCH`] at most),
//!   in the order the reactors sent them, so a connection's close is never
//!   written before its open.
//! - Every `ttl / 3` it refreshes `herald:alive:<node>` (expiring after
//!   `ttl`) and sweeps: a registered node whose alive key is gone has every
//!   entry removed through `LEAVE` (so its users' last disconnections are
//!   announced), then its index.
//! - While Redis is unreachable records wait in the channel (nothing is
//!   dropped) and the link is retried with backoff. If this node's alive
//!   key expired meanwhile, peers may have swept its entries, so it
//!   re-registers: its old entries are removed and every open stream is
//!   written again from the reactors' own listing.
//! - A [`Record::Claim`] (a stream waiting for the cluster-wide
//!   `MAX_CONNECTIONS_PER_USER`) is a `JOIN` with the limit; its verdict
//!   goes back to the reactor as [`Control::Admit`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{info, warn};
use redis::{Connection, RedisResult};

use super::{keys, Directory};
use crate::hub::registry::{ConnInfo, Control, Record};
use crate::presence::gather;

/// Records written per pipeline at most.
pub const BATCH: usize = 1024;
/// How long the writer waits for more records before writing a pipeline.
const LINGER: Duration = Duration::from_millis(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the writer needs.
pub struct Writer {
    pub dir: std::sync::Arc<Directory>,
    pub records: Receiver<Record>,
    pub ttl: Duration,
    pub per_user_max: u32,
}

impl Writer {
    /// Runs until every record sender is gone (the process is ending).
    pub fn run(self) {
        let Some(client) = self.dir.redis_client() else {
            return;
        };
        let mut backlog: VecDeque<Record> = VecDeque::new();
        let mut backoff = BACKOFF_MIN;
        let mut registered = false;
        // Set when this node was taken for dead; cleared once re-registered.
        let mut resync = false;
        loop {
            let err = match super::connect(&client) {
                Ok(mut con) => {
                    let setup = load_scripts(&mut con).and_then(|shas| {
                        resync |= registered && !self.is_alive(&mut con)?;
                        self.beat(&mut con)?;
                        if resync {
                            self.resync(&mut con, &shas)?;
                            resync = false;
                        }
                        Ok(shas)
                    });
                    match setup {
                        Ok(shas) => {
                            if registered {
                                info!("registry: Redis link up again");
                            }
                            registered = true;
                            backoff = BACKOFF_MIN;
                            match self.serve(&mut con, &shas, &mut backlog) {
                                Ok(()) => return,
                                Err(e) => e,
                            }
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            warn!("registry: Redis link down ({err}); retrying, records wait");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Writes records as they come and beats; `Ok` once the channel closes.
    fn serve(
        &self,
        con: &mut Connection,
        shas: &Shas,
        backlog: &mut VecDeque<Record>,
    ) -> RedisResult<()> {
        let every = self.ttl / 3;
        let mut next_beat = Instant::now() + every;
        loop {
            if backlog.is_empty() {
                let wait = next_beat.saturating_duration_since(Instant::now());
                match self.records.recv_timeout(wait) {
                    Ok(r) => backlog.extend(gather(&self.records, r, BATCH, LINGER)),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                }
            } else {
                backlog.extend(self.records.try_iter().take(BATCH));
            }
            if !backlog.is_empty() {
                let n = backlog.len().min(BATCH);
                let batch: Vec<&Record> = backlog.range(..n).collect();
                self.write(con, shas, &batch)?;
                backlog.drain(..n);
            }
            if Instant::now() >= next_beat {
                self.beat(con)?;
                self.sweep(con, shas)?;
                next_beat = Instant::now() + every;
            }
        }
    }

    /// One pipeline for `batch`, in order; each claim's verdict goes back to
    /// its reactor.
    fn write(&self, con: &mut Connection, shas: &Shas, batch: &[&Record]) -> RedisResult<()> {
        let node = self.dir.node();
        let mut pipe = redis::pipe();
        for r in batch {
            let (c, max) = match r {
                Record::Open(c) => (c, 0),
                Record::Claim { info, .. } => (info, self.per_user_max),
                Record::Close { id, app, user } => {
                    leave_call(&mut pipe, &shas.leave, node, id, app, user);
                    continue;
                }
            };
            let u = keys::user_key(&c.app, &c.user);
            pipe.cmd("EVALSHA")
                .arg(&shas.join)
                .arg(4)
                .arg(keys::conns(&u))
                .arg(keys::users(&c.app))
                .arg(keys::node_index(node))
                .arg(keys::APPS)
                .arg(&c.id)
                .arg(keys::entry(node, c.created_at, &c.remote_addr))
                .arg(&u)
                .arg(&*c.user)
                .arg(&*c.app)
                .arg(max);
        }
        let verdicts: Vec<i64> = pipe.query(con)?;
        for (r, v) in batch.iter().zip(verdicts) {
            if let Record::Claim { conn, .. } = r {
                if let Some(inbox) = self.dir.inboxes().get(usize::from(conn.reactor)) {
                    inbox.control(Control::Admit {
                        conn: *conn,
                        admitted: v != -1,
                    });
                }
            }
        }
        Ok(())
    }

    fn is_alive(&self, con: &mut Connection) -> RedisResult<bool> {
        redis::cmd("EXISTS")
            .arg(keys::alive(self.dir.node()))
            .query(con)
    }

    /// Marks this node alive for another `ttl`.
    fn beat(&self, con: &mut Connection) -> RedisResult<()> {
        let node = self.dir.node();
        redis::pipe()
            .cmd("SET")
            .arg(keys::alive(node))
            .arg(1)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .ignore()
            .cmd("SADD")
            .arg(keys::NODES)
            .arg(node)
            .ignore()
            .query(con)
    }

    /// Removes the entries of every registered node that is no longer
    /// alive.
    fn sweep(&self, con: &mut Connection, shas: &Shas) -> RedisResult<()> {
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(keys::NODES).query(con)?;
        for node in nodes.iter().filter(|n| *n != self.dir.node()) {
            let alive: bool = redis::cmd("EXISTS").arg(keys::alive(node)).query(con)?;
            if !alive {
                let n = remove_entries(con, shas, node)?;
                redis::cmd("SREM")
                    .arg(keys::NODES)
                    .arg(node)
                    .query::<()>(con)?;
                info!("registry: node {node} is gone; removed its {n} connection(s)");
            }
        }
        Ok(())
    }

    /// After an outage long enough for this node to be taken for dead:
    /// clear what it had, and write every open stream again.
    fn resync(&self, con: &mut Connection, shas: &Shas) -> RedisResult<()> {
        let old = remove_entries(con, shas, self.dir.node())?;
        let open: Vec<ConnInfo> = self.dir.list_local(None, None);
        for chunk in open.chunks(BATCH) {
            let records: Vec<Record> = chunk.iter().cloned().map(Record::Open).collect();
            let refs: Vec<&Record> = records.iter().collect();
            self.write(con, shas, &refs)?;
        }
        warn!(
            "registry: this node was taken for dead while Redis was unreachable; \
             re-registered {} stream(s) (had {old})",
            open.len()
        );
        Ok(())
    }
}

/// The script hashes, after `SCRIPT LOAD`.
struct Shas {
    join: String,
    leave: String,
}

/// Loads the scripts (again after every reconnect: Redis may have
/// restarted and forgotten them).
fn load_scripts(con: &mut Connection) -> RedisResult<Shas> {
    let load = |con: &mut Connection, body: &str| -> RedisResult<String> {
        redis::cmd("SCRIPT").arg("LOAD").arg(body).query(con)
    };
    Ok(Shas {
        join: load(con, keys::JOIN)?,
        leave: load(con, keys::LEAVE)?,
    })
}

fn leave_call(pipe: &mut redis::Pipeline, sha: &str, node: &str, id: &str, app: &str, user: &str) {
    let u = keys::user_key(app, user);
    pipe.cmd("EVALSHA")
        .arg(sha)
        .arg(3)
        .arg(keys::conns(&u))
        .arg(keys::users(app))
        .arg(keys::node_index(node))
        .arg(id)
        .arg(&u)
        .arg(user);
}

/// Removes every entry `node` wrote (announcing last disconnections), then
/// its index; returns how many there were.
fn remove_entries(con: &mut Connection, shas: &Shas, node: &str) -> RedisResult<usize> {
    let index = keys::node_index(node);
    let mut cursor: u64 = 0;
    let mut removed = 0;
    loop {
        let (next, pairs): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
            .arg(&index)
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH)
            .query(con)?;
        let mut pipe = redis::pipe();
        for (id, u) in &pairs {
            if let Some((app, user)) = keys::parse_user_key(u) {
                leave_call(&mut pipe, &shas.leave, node, id, app, user);
                removed += 1;
            }
        }
        if !pairs.is_empty() {
            pipe.query::<()>(con)?;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    redis::cmd("DEL").arg(&index).query::<()>(con)?;
    Ok(removed)
}
