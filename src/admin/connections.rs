//! `GET /connections/{app}[/{user}]` and `DELETE /connections/{id}` on the
//! admin listener (SPEC §7): the admin thread asks every reactor through its
//! inbox and waits (at most [`REPLY_TIMEOUT`]) for the answers; it never
//! touches a reactor's state. Listings use the seed's JSON shape: user →
//! connection id → `{id, created_at, remote_addr, application:{id},
//! user:{id}}`.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::conn::http::Method;
use crate::conn::response::{self, Problem};
use crate::hub::inbox::Inbox;
use crate::hub::registry::{ConnInfo, Control, IdCodec};

/// How long the admin side waits for every reactor's answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /connections/{app}[/{user}]`, `DELETE /connections/{id}`.
pub fn route(inboxes: &[Inbox], ids: &IdCodec, rest: &str, method: Method) -> Vec<u8> {
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        (Method::Get, [app]) | (Method::Get, [app, ""]) if !app.is_empty() => {
            let body = by_user(&list(inboxes, app, None));
            response::simple(200, "application/json", "", &body.to_string())
        }
        (Method::Get, [app, user]) if !app.is_empty() && !user.is_empty() => {
            let body = by_id(&list(inboxes, app, Some(user)));
            response::simple(200, "application/json", "", &body.to_string())
        }
        (Method::Delete, [id]) => {
            if kick(inboxes, ids, id) {
                response::simple(204, "application/json", "", "")
            } else {
                response::problem(Problem::NotFound, &format!("no open connection {id}"), "")
            }
        }
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

/// Every streaming connection of `user` (or of all users) in `app`, from
/// every reactor that answered in time.
pub fn list(inboxes: &[Inbox], app: &str, user: Option<&str>) -> Vec<ConnInfo> {
    let (tx, rx) = crossbeam_channel::unbounded();
    for inbox in inboxes {
        inbox.control(Control::List {
            app: app.into(),
            user: user.map(Into::into),
            reply: tx.clone(),
        });
    }
    drop(tx);
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let mut out = Vec::new();
    for _ in inboxes {
        match rx.recv_deadline(deadline) {
            Ok(mut part) => out.append(&mut part),
            Err(_) => break,
        }
    }
    out
}

/// Ends the connection `id` names; `false` when no such connection streams.
pub fn kick(inboxes: &[Inbox], ids: &IdCodec, id: &str) -> bool {
    let Some(conn) = ids.decode(id) else {
        return false;
    };
    let Some(inbox) = inboxes.get(usize::from(conn.reactor)) else {
        return false;
    };
    let (tx, rx) = crossbeam_channel::bounded(1);
    inbox.control(Control::Kick { conn, reply: tx });
    rx.recv_timeout(REPLY_TIMEOUT).unwrap_or(false)
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
