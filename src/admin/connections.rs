//! `GET /connections/{app}[/{user}]` and `DELETE /connections/{id}` (SPEC
//! §7), on the admin listener and, for listings, on the public one: both
//! ask the [`Directory`] (this node's reactors, or the Redis registry) from
//! an admin-side thread, never from a reactor. Listings use the seed's JSON
//! shape: user → connection id → `{id, created_at, remote_addr,
//! application:{id}, user:{id}}`.
//!
//! The public listener's listings arrive as [`Query`]s from the reactors;
//! [`serve_queries`] answers each into the asking reactor's inbox.

use crossbeam_channel::Receiver;
use serde_json::{json, Map, Value};

use crate::cluster::{Directory, Unavailable};
use crate::conn::http::Method;
use crate::conn::response::{self, Problem};
use crate::hub::registry::{ConnInfo, Control, Query};

/// Listings queued from the public listener at most (more get 503).
pub const QUERY_QUEUE: usize = 1024;

/// `GET /connections/{app}[/{user}]`, `DELETE /connections/{id}`.
pub fn route(dir: &Directory, rest: &str, method: Method) -> Vec<u8> {
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        (Method::Get, [app]) | (Method::Get, [app, ""]) if !app.is_empty() => {
            listing(dir, app, None, "")
        }
        (Method::Get, [app, user]) if !app.is_empty() && !user.is_empty() => {
            listing(dir, app, Some(user), "")
        }
        (Method::Delete, [id]) => match disconnect(dir, id) {
            Ok(()) => response::simple(204, "application/json", "", ""),
            Err(Refused::NotFound(detail)) => response::problem(Problem::NotFound, &detail, ""),
            Err(Refused::Unavailable(detail)) => response::busy(&detail, ""),
        },
        (Method::Get | Method::Delete, _) => {
            response::problem(Problem::NotFound, "no such connection path", "")
        }
        _ => response::problem(
            Problem::MethodNotAllowed,
            "/connections accepts GET and DELETE",
            "Allow: GET, DELETE\r\n",
        ),
    }
}

/// The listing response for `app` (by user) or for one `user` (by id).
fn listing(dir: &Directory, app: &str, user: Option<&str>, extra: &str) -> Vec<u8> {
    match dir.list(app, user) {
        Ok(conns) => {
            let body = match user {
                Some(_) => by_id(&conns),
                None => by_user(&conns),
            };
            response::simple(200, "application/json", extra, &body.to_string())
        }
        Err(e) => unavailable(&e, extra),
    }
}

fn unavailable(e: &Unavailable, extra: &str) -> Vec<u8> {
    response::busy(&unavailable_detail(e), extra)
}

fn unavailable_detail(e: &Unavailable) -> String {
    format!("the connection registry cannot be read: {}", e.0)
}

/// Why a disconnect did not happen, with the detail both APIs show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No such stream is open (HTTP 404, gRPC `NOT_FOUND`).
    NotFound(String),
    /// The Redis registry could not be asked (HTTP 503, gRPC `UNAVAILABLE`).
    Unavailable(String),
}

/// Ends stream `id` wherever it runs (`DELETE /connections/{id}`, gRPC
/// `DisconnectClient`).
pub fn disconnect(dir: &Directory, id: &str) -> Result<(), Refused> {
    match dir.kick(id) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Refused::NotFound(format!("no open connection {id}"))),
        Err(e) => Err(Refused::Unavailable(unavailable_detail(&e))),
    }
}

/// The thread that answers the public listener's listings, until every
/// reactor is gone.
pub fn serve_queries(queries: Receiver<Query>, dir: &Directory) {
    for q in queries {
        let response = listing(dir, &q.app, q.user.as_deref(), &q.cors);
        if let Some(inbox) = dir.inboxes().get(usize::from(q.conn.reactor)) {
            inbox.control(Control::Answer {
                conn: q.conn,
                response,
            });
        }
    }
}

fn entry(c: &ConnInfo) -> Value {
    json!({
        "id": c.id,
        "created_at": c.created_at,
        "remote_addr": c.remote_addr,
        "application": { "id": &*c.app },
        "user": { "id": &*c.user },
    })
}

/// `GET /connections/{app}`: user → connection id → entry.
pub fn by_user(conns: &[ConnInfo]) -> Value {
    let mut users = Map::new();
    for c in conns {
        let per_user = users
            .entry(c.user.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = per_user {
            m.insert(c.id.clone(), entry(c));
        }
    }
    Value::Object(users)
}

/// `GET /connections/{app}/{user}`: connection id → entry.
pub fn by_id(conns: &[ConnInfo]) -> Value {
    Value::Object(conns.iter().map(|c| (c.id.clone(), entry(c))).collect())
}
