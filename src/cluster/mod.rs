//! What several herald nodes share through Redis (SPEC §5, §7), and the
//! one answer to "which connections are open": the [`Directory`].
//!
//! - `CONNECTION_REGISTRY=local`: the directory asks this process's
//!   reactors through their inboxes (and waits at most [`REPLY_TIMEOUT`]).
//! - `CONNECTION_REGISTRY=redis`: every user stream is also an entry in
//!   Redis ([`keys`] has the layout and why), written by the [`writer`]
//!   thread off the reactors; listings read Redis and so cover every node,
//!   and a `DELETE` of another node's connection reaches it through its
//!   kick channel. The [`watch`] thread follows the presence channel (the
//!   cluster's first connections and last disconnections) and this node's
//!   kick channel.
//!
//! Only admin-side threads call the directory: it blocks.

pub mod keys;
mod sweep;
pub mod watch;
pub mod writer;

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::{Connection, RedisResult};

use crate::hub::inbox::Inbox;
use crate::hub::registry::{ConnInfo, Control, IdCodec};

/// How long a listing waits for every reactor's answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers listings and ends connections, locally or across the cluster.
pub struct Directory {
    inboxes: Vec<Inbox>,
    ids: IdCodec,
    node: String,
    redis: Option<Shared>,
}

/// The Redis side of the directory: one cached connection for the admin
/// threads' lookups.
struct Shared {
    client: redis::Client,
    con: Mutex<Option<Connection>>,
}

/// The registry could not be read.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Directory {
    /// A directory over these reactors; with `redis`, over the cluster.
    pub fn new(inboxes: Vec<Inbox>, ids: IdCodec, redis: Option<redis::Client>) -> Self {
        Self {
            inboxes,
            node: ids.node(),
            ids,
            redis: redis.map(|client| Shared {
                client,
                con: Mutex::new(None),
            }),
        }
    }

    /// This node's name in the registry.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub(crate) fn redis_client(&self) -> Option<redis::Client> {
        self.redis.as_ref().map(|r| r.client.clone())
    }

    pub fn inboxes(&self) -> &[Inbox] {
        &self.inboxes
    }

    /// Every stream of `user` (or of every user) in `app`, on every node.
    pub fn list(&self, app: &str, user: Option<&str>) -> Result<Vec<ConnInfo>, Unavailable> {
        match &self.redis {
            None => Ok(self.list_local(Some(app), user)),
            Some(r) => r
                .with(|con| list_redis(con, &self.node, app, user))
                .map_err(|e| Unavailable(e.to_string())),
        }
    }

    /// Every stream of `user` (or of every user) in `app` (or in every app)
    /// on this node's reactors that answered in time.
    pub fn list_local(&self, app: Option<&str>, user: Option<&str>) -> Vec<ConnInfo> {
        let (tx, rx) = crossbeam_channel::unbounded();
        for inbox in &self.inboxes {
            inbox.control(Control::List {
                app: app.map(Into::into),
                user: user.map(Into::into),
                reply: tx.clone(),
            });
        }
        drop(tx);
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let mut out = Vec::new();
        for _ in &self.inboxes {
            match rx.recv_deadline(deadline) {
                Ok(mut part) => out.append(&mut part),
                Err(_) => break,
            }
        }
        out
    }

    /// Ends the stream `id` names, on whichever node holds it; `false` when
    /// no such stream is open.
    pub fn kick(&self, id: &str) -> Result<bool, Unavailable> {
        if self.ids.decode(id).is_some() {
            return Ok(self.kick_local(id));
        }
        let (Some(r), Some(node)) = (&self.redis, IdCodec::node_of(id)) else {
            return Ok(false);
        };
        r.with(|con| {
            let (alive, held): (bool, bool) = redis::pipe()
                .cmd("EXISTS")
                .arg(keys::alive(&node))
                .cmd("HEXISTS")
                .arg(keys::node_index(&node))
                .arg(id)
                .query(con)?;
            if !(alive && held) {
                return Ok(false);
            }
            let receivers: u64 = redis::cmd("PUBLISH")
                .arg(keys::kick_channel(&node))
                .arg(id)
                .query(con)?;
            Ok(receivers > 0)
        })
        .map_err(|e| Unavailable(e.to_string()))
    }

    /// Ends the stream `id` names if it is on this node.
    pub fn kick_local(&self, id: &str) -> bool {
        let Some(conn) = self.ids.decode(id) else {
            return false;
        };
        let Some(inbox) = self.inboxes.get(usize::from(conn.reactor)) else {
            return false;
        };
        let (tx, rx) = crossbeam_channel::bounded(1);
        inbox.control(Control::Kick { conn, reply: tx });
        rx.recv_timeout(REPLY_TIMEOUT).unwrap_or(false)
    }
}

impl Shared {
    /// Runs `f` on the cached connection, connecting first if needed. A
    /// cached connection that turns out broken (Redis restarted meanwhile)
    /// is replaced and `f` tried once more on the fresh one.
    fn with<T>(&self, mut f: impl FnMut(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        let mut guard = self.con.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(con) = guard.as_mut() {
            match f(con) {
                Err(e) if e.is_io_error() || e.is_connection_dropped() => {}
                out => return out,
            }
        }
        *guard = None;
        let mut con = connect(&self.client)?;
        let out = f(&mut con);
        if out.is_ok() {
            *guard = Some(con);
        }
        out
    }
}

/// A connection with bounded connect, read and write times.
pub(crate) fn connect(client: &redis::Client) -> RedisResult<Connection> {
    let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

/// A listing from Redis: the user's hash, or every user's of the app; the
/// entries of nodes that are no longer alive are left out.
fn list_redis(
    con: &mut Connection,
    own: &str,
    app: &str,
    user: Option<&str>,
) -> RedisResult<Vec<ConnInfo>> {
    let users: Vec<String> = match user {
        Some(u) => vec![u.to_string()],
        None => redis::cmd("SMEMBERS").arg(keys::users(app)).query(con)?,
    };
    let mut pipe = redis::pipe();
    for u in &users {
        pipe.cmd("HGETALL")
            .arg(keys::conns(&keys::user_key(app, u)));
    }
    let hashes: Vec<Vec<(String, String)>> = if users.is_empty() {
        Vec::new()
    } else {
        pipe.query(con)?
    };
    let nodes: Vec<String> = hashes
        .iter()
        .flatten()
        .filter_map(|(_, v)| keys::parse_entry(v).map(|(n, _, _)| n.to_string()))
        .filter(|n| n != own)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut alive: HashSet<String> = HashSet::from([own.to_string()]);
    if !nodes.is_empty() {
        let mut pipe = redis::pipe();
        for n in &nodes {
            pipe.cmd("EXISTS").arg(keys::alive(n));
        }
        let up: Vec<bool> = pipe.query(con)?;
        alive.extend(
            nodes
                .into_iter()
                .zip(up)
                .filter(|(_, a)| *a)
                .map(|(n, _)| n),
        );
    }
    let mut out = Vec::new();
    for (u, hash) in users.iter().zip(hashes) {
        for (id, v) in hash {
            let Some((node, created_at, addr)) = keys::parse_entry(&v) else {
                continue;
            };
            if alive.contains(node) {
                out.push(ConnInfo {
                    id,
                    created_at,
                    remote_addr: addr.to_string(),
                    app: app.into(),
                    user: u.as_str().into(),
                    events_sent: 0,
                    bytes_pending: 0,
                });
            }
        }
    }
    Ok(out)
}
