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
//!   `ttl`). A refresh that finds the key gone means this node was taken
//!   for dead (a stall, an outage, a Redis that restarted empty): it
//!   re-registers every open stream from the reactors' own listing
//!   ([`sweep`]). Dead peers are swept a page at a time between writes.
//! - While Redis is unreachable records wait in the channel (nothing is
//!   dropped), the link is retried with backoff, and no stream is held for
//!   a claim (`IngestStatus::registry_up`). A write Redis refuses (out of
//!   memory, read-only replica) is logged and dropped, its claims admitted.
//! - [`Record::Leave`] (a clean stop) removes what is left of this node and
//!   its alive key, so peers stop listing it at once.
//! - A [`Record::Claim`] (a stream waiting for the cluster-wide
//!   `MAX_CONNECTIONS_PER_USER`) is a `JOIN` with the limit; its verdict
//!   goes back to the reactor as [`Control::Admit`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{info, warn};
use redis::{Connection, RedisResult};

use super::sweep::{self, Sweep};
use super::{keys, Directory};
use crate::hub::registry::{Control, Record};
use crate::hub::status::IngestStatus;
use crate::ingest::Backoff;
use crate::presence::gather;

/// Records written per pipeline at most.
pub const BATCH: usize = 1024;
/// How long the writer waits for more records before writing a pipeline.
const LINGER: Duration = Duration::from_millis(1);

/// What the writer needs.
pub struct Writer {
    pub dir: Arc<Directory>,
    pub records: Receiver<Record>,
    pub status: Arc<IngestStatus>,
    pub ttl: Duration,
    pub per_user_max: u32,
}

/// `serve` ended without a link error: [`Record::Leave`] was written, or
/// every sender is gone.
struct Stopped;

/// The script hashes, after `SCRIPT LOAD`.
pub(super) struct Shas {
    pub join: String,
    pub leave: String,
}

impl Writer {
    /// Runs until [`Record::Leave`] or until every record sender is gone.
    pub fn run(self) {
        let Some(client) = self.dir.redis_client() else {
            return;
        };
        let mut backlog: VecDeque<Record> = VecDeque::new();
        let mut backoff = Backoff::new();
        let mut registered = false;
        loop {
            let err = match super::connect(&client) {
                Ok(mut con) => match load_scripts(&mut con) {
                    Ok(shas) => {
                        if registered {
                            info!("registry: Redis link up again");
                        }
                        backoff.reset();
                        match self.serve(&mut con, &shas, &mut backlog, &mut registered) {
                            Ok(Stopped) => return,
                            Err(e) => e,
                        }
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            self.status.registry_up.store(false, Ordering::Relaxed);
            warn!("registry: Redis link down ({err}); retrying, records wait");
            backoff.sleep();
        }
    }

    /// Beats, writes records as they come, and sweeps dead peers a page at
    /// a time, until the link fails or this node stops.
    fn serve(
        &self,
        con: &mut Connection,
        shas: &Shas,
        backlog: &mut VecDeque<Record>,
        registered: &mut bool,
    ) -> RedisResult<Stopped> {
        let every = self.ttl / 3;
        let mut next_beat = Instant::now();
        let mut sweeping: Option<Sweep> = None;
        loop {
            if Instant::now() >= next_beat {
                let was_alive = self.beat(con)?;
                if *registered && !was_alive {
                    sweep::resync(self, con, shas)?;
                }
                *registered = true;
                self.status.registry_up.store(true, Ordering::Relaxed);
                if sweeping.is_none() {
                    sweeping = Sweep::next_dead(con, self.dir.node(), self.ttl)?;
                }
                next_beat = Instant::now() + every;
            }
            if backlog.is_empty() {
                let wait = if sweeping.is_some() {
                    Duration::ZERO
                } else {
                    next_beat.saturating_duration_since(Instant::now())
                };
                match self.records.recv_timeout(wait) {
                    Ok(r) => backlog.extend(gather(&self.records, r, BATCH, LINGER)),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return Ok(Stopped),
                }
            } else {
                backlog.extend(self.records.try_iter().take(BATCH));
            }
            if matches!(backlog.front(), Some(Record::Leave)) {
                sweep::leave(self, con, shas)?;
                return Ok(Stopped);
            }
            let n = backlog
                .iter()
                .take(BATCH)
                .position(|r| matches!(r, Record::Leave))
                .unwrap_or(backlog.len().min(BATCH));
            if n > 0 {
                let batch: Vec<&Record> = backlog.range(..n).collect();
                self.write_or_drop(con, shas, &batch)?;
                backlog.drain(..n);
            }
            if let Some(s) = &mut sweeping {
                if s.page(con, shas)? {
                    sweeping = None;
                }
            }
        }
    }

    /// [`Writer::write`], except that a refusal by Redis (not a lost link)
    /// drops the batch: logged, its claims admitted.
    fn write_or_drop(
        &self,
        con: &mut Connection,
        shas: &Shas,
        batch: &[&Record],
    ) -> RedisResult<()> {
        match self.write(con, shas, batch) {
            Err(e) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                warn!(
                    "registry: Redis refused {} record(s): {e}; dropped",
                    batch.len()
                );
                for r in batch {
                    if let Record::Claim { conn, .. } = r {
                        self.admit(*conn, true);
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    /// One pipeline for `batch`, in order; each claim's verdict goes back to
    /// its reactor.
    pub(super) fn write(
        &self,
        con: &mut Connection,
        shas: &Shas,
        batch: &[&Record],
    ) -> RedisResult<()> {
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
                Record::Leave => continue,
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
        let written = batch.iter().filter(|r| !matches!(r, Record::Leave));
        for (r, v) in written.zip(verdicts) {
            if let Record::Claim { conn, .. } = r {
                self.admit(*conn, v != -1);
            }
        }
        Ok(())
    }

    fn admit(&self, conn: crate::hub::registry::ConnRef, admitted: bool) {
        if let Some(inbox) = self.dir.inboxes().get(usize::from(conn.reactor)) {
            inbox.control(Control::Admit { conn, admitted });
        }
    }

    /// Marks this node alive for another `ttl`; `false` when the key was
    /// gone (this node had been taken for dead).
    fn beat(&self, con: &mut Connection) -> RedisResult<bool> {
        let node = self.dir.node();
        let (was,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(keys::alive(node))
            .arg(1)
            .arg("PX")
            .arg(self.ttl.as_millis() as u64)
            .arg("GET")
            .cmd("SADD")
            .arg(keys::NODES)
            .arg(node)
            .ignore()
            .query(con)?;
        Ok(was.is_some())
    }
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

/// Adds a `LEAVE` of connection `id` (written by `node`) to `pipe`.
pub(super) fn leave_call(
    pipe: &mut redis::Pipeline,
    sha: &str,
    node: &str,
    id: &str,
    app: &str,
    user: &str,
) {
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
