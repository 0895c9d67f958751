//! `CONNECTION_REGISTRY=redis` (SPEC §5, §7): two real herald nodes share
//! one real `redis-server`. Listings on either node (admin and public)
//! cover both; a `DELETE` on one node ends a stream on the other; presence
//! is cluster-wide (a user on two nodes who leaves one is still online);
//! the per-user limit counts every node; and a node killed with SIGKILL
//! drops out of listings and presence within its TTL.

mod common;

use std::time::{Duration, Instant};

use common::{http_exchange, jwt, Herald, HttpResponse, RedisServer, SseClient, EVENT_TIMEOUT};
use serde_json::{json, Value};

const TOKEN: &str = "cluster-admin-token";
/// `REGISTRY_NODE_TTL_SECONDS` in these tests.
const TTL_SECS: u64 = 3;

fn node(r: &RedisServer, extra: &[(&str, &str)]) -> Herald {
    let url = r.url();
    let mut envs = vec![
        ("JWT_SECRET", jwt::SECRET),
        ("REDIS_URL", url.as_str()),
        ("CONNECTION_REGISTRY", "redis"),
        ("REGISTRY_NODE_TTL_SECONDS", "3"),
        ("ADMIN_TOKEN", TOKEN),
        ("HEARTBEAT_SECONDS", "0"),
    ];
    envs.extend_from_slice(extra);
    Herald::start(&envs)
}

fn get(addr: std::net::SocketAddr, path: &str, token: &str) -> HttpResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    http_exchange(addr, req.as_bytes(), EVENT_TIMEOUT).expect("GET")
}

fn delete(h: &Herald, id: &str) -> u16 {
    let req = format!(
        "DELETE /connections/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    http_exchange(h.admin_addr(), req.as_bytes(), EVENT_TIMEOUT)
        .expect("DELETE")
        .status
}

/// The admin listing of `path` once `done` holds (registration is written
/// off the reactors, so it lands a moment after the stream starts).
fn listing_until(h: &Herald, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(h.admin_addr(), path, TOKEN);
        assert_eq!(r.status, 200, "{}", r.body_text());
        let v = r.body_json();
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "listing of {path} never settled: {v}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, |users| {
        users
            .values()
            .map(|c| c.as_object().map_or(0, |m| m.len()))
            .sum()
    })
}

fn id(c: &SseClient) -> String {
    c.header("x-connection-id")
        .expect("X-Connection-Id")
        .to_string()
}

/// The next non-ping event, which must be `name` with `data`.
fn expect(c: &mut SseClient, name: &str, data: Value) {
    let ev = c.expect_non_ping();
    assert_eq!(ev.event.as_deref(), Some(name), "{ev:?}");
    assert_eq!(ev.data_json(), data, "{ev:?}");
}

#[test]
fn listings_and_delete_cover_every_node() {
    let r = RedisServer::start();
    let a = node(&r, &[]);
    let b = node(&r, &[]);
    let u1_a = a.sse_with_token(&jwt::user_in("u1", "shop"));
    let mut u1_b = b.sse_with_token(&jwt::user_in("u1", "shop"));
    let mut u2_b = b.sse_with_token(&jwt::user_in("u2", "shop"));
    let _blog = b.sse_with_token(&jwt::user_in("u1", "blog"));

    let all = listing_until(&a, "/connections/shop", |v| count(v) == 3);
    assert_eq!(all.as_object().unwrap().len(), 2, "{all}");
    for (user, c) in [("u1", &u1_a), ("u1", &u1_b), ("u2", &u2_b)] {
        let e = &all[user][id(c)];
        assert_eq!(e["id"], Value::from(id(c)), "{all}");
        assert_eq!(e["user"]["id"], user);
        assert_eq!(e["application"]["id"], "shop");
        assert_eq!(e["remote_addr"], "127.0.0.1");
        let created = e["created_at"].as_u64().expect("created_at");
        assert!(created.abs_diff(common::unix_secs()) < 60, "{all}");
    }
    // The same answer from the other node, and on the public listener with
    // a token of the app.
    let from_b = listing_until(&b, "/connections/shop", |v| count(v) == 3);
    assert_eq!(from_b, all);
    let public = get(
        b.addr(),
        "/connections/shop/u1",
        &jwt::user_in("backend", "shop"),
    );
    assert_eq!(public.status, 200, "{}", public.body_text());
    let public = public.body_json();
    let mut ids: Vec<&String> = public.as_object().unwrap().keys().collect();
    ids.sort();
    let mut want = [id(&u1_a), id(&u1_b)];
    want.sort();
    assert_eq!(ids, want.iter().collect::<Vec<_>>(), "{public}");
    assert_eq!(
        get(a.addr(), "/connections/shop", &jwt::user_in("x", "blog")).status,
        403
    );

    // A DELETE on node A ends a stream that lives on node B.
    assert_eq!(delete(&a, &id(&u1_b)), 204);
    assert!(u1_b.wait_closed(EVENT_TIMEOUT), "B's stream did not end");
    listing_until(&a, "/connections/shop", |v| count(v) == 2);
    assert_eq!(delete(&a, &id(&u1_b)), 404, "already gone");
    assert_eq!(delete(&a, "00000000-0000-4000-8000-000000000000"), 404);
    // The rest still stream.
    b.publish_with_token(r#"{"app":"shop","to":"u2","message":"still"}"#, Some(TOKEN));
    assert_eq!(u2_b.expect_event().data, "still");
}

#[test]
fn presence_is_cluster_wide() {
    let r = RedisServer::start();
    let gen = [("INTERNAL_EVENTS_STRATEGY", "generate")];
    let a = node(&r, &gen);
    let b = node(&r, &gen);
    let mut w = a.sse_with_token(&jwt::user_in("w", "shop"));
    expect(
        &mut w,
        "on-connection",
        json!({"users": ["w"], "truncated": false}),
    );
    listing_until(&b, "/connections/shop", |v| count(v) == 1);

    // u1 arrives on B: the watcher on A hears of it.
    let mut u1_b = b.sse_with_token(&jwt::user_in("u1", "shop"));
    let ev = u1_b.expect_non_ping();
    assert_eq!(ev.event.as_deref(), Some("on-connection"));
    let mut users: Vec<String> = serde_json::from_value(ev.data_json()["users"].clone()).unwrap();
    assert_eq!(users[0], "u1", "own id first");
    users.sort();
    assert_eq!(users, ["u1", "w"], "B lists A's user too");
    expect(&mut w, "user-connected", json!({"userId": "u1"}));

    // u1 on A as well, then leaves B: still online, nothing announced.
    let u1_a = a.sse_with_token(&jwt::user_in("u1", "shop"));
    listing_until(&a, "/connections/shop/u1", |v| {
        v.as_object().unwrap().len() == 2
    });
    drop(u1_b);
    listing_until(&a, "/connections/shop/u1", |v| {
        v.as_object().unwrap().len() == 1
    });
    // Leaving the last node is announced, once, and it is the very next
    // event (a wrong "disconnected" for the first leave would come first).
    drop(u1_a);
    expect(&mut w, "user-disconnected", json!({"userId": "u1"}));
    a.publish_with_token(
        r#"{"app":"shop","event":"marker","message":"m"}"#,
        Some(TOKEN),
    );
    let ev = w.expect_non_ping();
    assert_eq!(ev.event.as_deref(), Some("marker"), "{ev:?}");
}

#[test]
fn the_per_user_limit_counts_every_node() {
    let r = RedisServer::start();
    let max = [("MAX_CONNECTIONS_PER_USER", "2")];
    let a = node(&r, &max);
    let b = node(&r, &max);
    let token = jwt::user_in("u1", "shop");
    let _one = a.sse_with_token(&token);
    let _two = b.sse_with_token(&token);
    assert_eq!(_two.status(), 200);
    // The third, on either node, is refused like the local limit.
    for h in [&a, &b] {
        let third = h.connect(&format!("/sse?token={token}"), &[]);
        assert_eq!(third.status(), 503, "{:?}", third.response());
        assert!(third.header("retry-after").is_some());
    }
    // Another user is not affected, and a freed slot is usable again.
    assert_eq!(b.sse_with_token(&jwt::user_in("u2", "shop")).status(), 200);
    drop(_one);
    listing_until(&b, "/connections/shop/u1", |v| {
        v.as_object().unwrap().len() == 1
    });
    assert_eq!(b.sse_with_token(&token).status(), 200);
}

/// Two nodes with presence events; watcher `w` on A has heard of `u1`
/// arriving on B, and both streams are registered.
fn watcher_on_a_and_u1_on_b() -> (RedisServer, Herald, Herald, SseClient, SseClient) {
    let r = RedisServer::start();
    let gen = [("INTERNAL_EVENTS_STRATEGY", "generate")];
    let a = node(&r, &gen);
    let b = node(&r, &gen);
    let mut w = a.sse_with_token(&jwt::user_in("w", "shop"));
    expect(
        &mut w,
        "on-connection",
        json!({"users": ["w"], "truncated": false}),
    );
    let u1 = b.sse_with_token(&jwt::user_in("u1", "shop"));
    expect(&mut w, "user-connected", json!({"userId": "u1"}));
    listing_until(&a, "/connections/shop", |v| count(v) == 2);
    (r, a, b, w, u1)
}

#[test]
fn a_dead_nodes_connections_expire() {
    let (r, a, mut b, mut w, _u1) = watcher_on_a_and_u1_on_b();

    let killed = Instant::now();
    b.kill();
    // Out of listings within the TTL (plus polling slack), and its users'
    // last disconnections announced by the sweep soon after.
    let v = listing_until(&a, "/connections/shop", |v| count(v) == 1);
    assert!(v["w"].is_object(), "{v}");
    let gone = killed.elapsed();
    assert!(
        gone < Duration::from_secs(TTL_SECS + 2),
        "listed for {gone:?}"
    );
    expect(&mut w, "user-disconnected", json!({"userId": "u1"}));
    assert!(killed.elapsed() < Duration::from_secs(2 * TTL_SECS + 2));
    // And Redis holds nothing of the dead node any more.
    let keys = common::redis_cmd(r.addr(), &["KEYS", "herald:c:*"]).unwrap();
    let common::Resp::Array(Some(keys)) = keys else {
        panic!("KEYS: {keys:?}")
    };
    let names: Vec<String> = keys.iter().filter_map(|k| k.as_str()).collect();
    assert_eq!(names, ["herald:c:4:shop:w"], "only w's hash is left");
}

#[test]
fn a_node_registers_again_after_redis_loses_everything() {
    let mut r = RedisServer::start();
    let a = node(&r, &[]);
    let mut u1 = a.sse_with_token(&jwt::user_in("u1", "shop"));
    let _u2 = a.sse_with_token(&jwt::user_in("u2", "shop"));
    listing_until(&a, "/connections/shop", |v| count(v) == 2);

    // Redis restarts empty (no persistence): the node notices it was taken
    // for dead and writes its open streams again.
    r.restart();
    let v = listing_until(&a, "/connections/shop", |v| count(v) == 2);
    assert!(v["u1"].get(id(&u1)).is_some(), "{v}");
    // Listings read Redis, and a DELETE through a second node still works.
    let b = node(&r, &[]);
    listing_until(&b, "/connections/shop", |v| count(v) == 2);
    assert_eq!(delete(&b, &id(&u1)), 204);
    assert!(u1.wait_closed(EVENT_TIMEOUT));
    listing_until(&b, "/connections/shop", |v| count(v) == 1);
}

#[test]
fn a_node_that_stops_cleanly_leaves_the_registry_at_once() {
    let (r, a, mut b, mut w, _u1) = watcher_on_a_and_u1_on_b();

    let stopped = Instant::now();
    b.sigterm();
    assert!(b
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
    // Gone from listings and presence well before its TTL would expire.
    expect(&mut w, "user-disconnected", json!({"userId": "u1"}));
    listing_until(&a, "/connections/shop", |v| count(v) == 1);
    assert!(
        stopped.elapsed() < Duration::from_secs(TTL_SECS),
        "{:?}",
        stopped.elapsed()
    );
    let nodes = common::redis_cmd(r.addr(), &["SCARD", "herald:nodes"]).unwrap();
    assert!(matches!(nodes, common::Resp::Int(1)), "{nodes:?}");
}
