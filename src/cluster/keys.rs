//! How the Redis registry lays out its data (SPEC §7), and the two scripts
//! that change it. Everything a node writes goes through [`JOIN`] and
//! [`LEAVE`], so "first connection" and "last disconnection" are decided
//! atomically by Redis for the whole cluster.
//!
//! Layout (`{u}` is a user key: `<len(app)>:<app>:<user>`, so an app or
//! user id containing `:` cannot collide with another pair):
//! - `herald:c:{u}` hash: connection id → `<node> <created_at> <remote_addr>`.
//!   One hash per (app, user) answers `GET /connections/{app}/{user}` with
//!   one `HGETALL`, and its length is the user's cluster-wide count.
//! - `herald:u:<app>` set: the app's users with at least one connection
//!   (`GET /connections/{app}`, the presence mirror).
//! - `herald:apps` set: apps that ever had a user (the mirror's bootstrap).
//! - `herald:n:<node>` hash: connection id → `{u}`, every entry a node
//!   wrote, so that a dead node's entries can be found and removed.
//! - `herald:alive:<node>`: a key with a TTL the node refreshes; when it
//!   expires the node is dead, its entries drop out of listings at once and
//!   a live node sweeps them (publishing the leaves).
//! - `herald:nodes` set: the nodes that registered, for the sweep.
//! - Channels: `herald:presence` carries `+{u}` / `-{u}` (a user's first
//!   connection in the cluster, last disconnection); `herald:kick:<node>`
//!   carries the id of a connection to end on that node.

/// Every key and channel starts with this.
pub const PREFIX: &str = "herald:";
pub const NODES: &str = "herald:nodes";
pub const APPS: &str = "herald:apps";
pub const PRESENCE: &str = "herald:presence";

/// The user key `{u}` of (app, user).
pub fn user_key(app: &str, user: &str) -> String {
    format!("{}:{app}:{user}", app.len())
}

/// (app, user) back from a user key.
pub fn parse_user_key(u: &str) -> Option<(&str, &str)> {
    let (len, rest) = u.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let app = rest.get(..len)?;
    let user = rest.get(len..)?.strip_prefix(':')?;
    Some((app, user))
}

pub fn conns(u: &str) -> String {
    format!("{PREFIX}c:{u}")
}

pub fn users(app: &str) -> String {
    format!("{PREFIX}u:{app}")
}

pub fn node_index(node: &str) -> String {
    format!("{PREFIX}n:{node}")
}

pub fn alive(node: &str) -> String {
    format!("{PREFIX}alive:{node}")
}

pub fn kick_channel(node: &str) -> String {
    format!("{PREFIX}kick:{node}")
}

/// A connection's value in its user's hash.
pub fn entry(node: &str, created_at: u64, remote_addr: &str) -> String {
    format!("{node} {created_at} {remote_addr}")
}

/// (node, created_at, remote_addr) back from an entry.
pub fn parse_entry(v: &str) -> Option<(&str, u64, &str)> {
    let mut parts = v.splitn(3, ' ');
    let node = parts.next()?;
    let created = parts.next()?.parse().ok()?;
    Some((node, created, parts.next().unwrap_or("")))
}

/// Registers a connection. KEYS: conns hash, users set, node index, apps
/// set. ARGV: id, entry, user key, user, app, per-user limit (0 = none).
/// Returns -1 when the user already holds the limit on live nodes (nothing
/// written; entries of dead nodes not swept yet do not count), 1 for the
/// user's first connection in the cluster (announced), else 0.
pub const JOIN: &str = r"
local max = tonumber(ARGV[6])
if max > 0 and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
   and redis.call('HLEN', KEYS[1]) >= max then
  local live = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    local node = string.match(v, '^(%S+)')
    if node and redis.call('EXISTS', 'herald:alive:' .. node) == 1 then
      live = live + 1
    end
  end
  if live >= max then
    return -1
  end
end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1
   and redis.call('HLEN', KEYS[1]) == 1 then
  redis.call('SADD', KEYS[2], ARGV[4])
  redis.call('SADD', KEYS[4], ARGV[5])
  redis.call('PUBLISH', 'herald:presence', '+' .. ARGV[3])
  return 1
end
return 0
";

/// Removes a connection. KEYS: conns hash, users set, node index. ARGV:
/// id, user key, user. Returns 1 for the user's last connection in the
/// cluster (announced), else 0; removing an absent id does nothing.
pub const LEAVE: &str = r"
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1
   and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[3])
  redis.call('PUBLISH', 'herald:presence', '-' .. ARGV[2])
  return 1
end
return 0
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_use_the_layout_above() {
        for script in [JOIN, LEAVE] {
            assert!(script.contains(&format!("'{PRESENCE}'")));
        }
        assert!(JOIN.contains(&format!("'{}' .. node", alive(""))));
    }

    #[test]
    fn user_keys_and_entries_round_trip() {
        for (app, user) in [("shop", "u1"), ("a:b", "c"), ("a", "b:c"), ("", "x y")] {
            let u = user_key(app, user);
            assert_eq!(parse_user_key(&u), Some((app, user)), "{u}");
        }
        assert_ne!(user_key("a:b", "c"), user_key("a", "b:c"));
        assert_eq!(parse_user_key("9:ab:c"), None);
        assert_eq!(parse_user_key("x:ab:c"), None);
        let e = entry("00ab", 1_700_000_000, "::1");
        assert_eq!(parse_entry(&e), Some(("00ab", 1_700_000_000, "::1")));
        assert_eq!(parse_entry("n 12"), Some(("n", 12, "")));
        assert_eq!(parse_entry("n x 1.2.3.4"), None);
    }
}
