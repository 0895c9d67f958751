//! Redis ingest (SPEC §4, issue #3): pub/sub and streams delivery, batches,
//! seed-003 envelopes, several channels, a killed Redis link (streams resume
//! exactly once), a Redis outage (`/health`, listeners kept), bad envelopes
//! skipped and counted, and two herald nodes on one Redis. Issue #11: a
//! refused stream entry leaves its neighbours (live and preloaded), the
//! first listeners after start are replayed from the stream's tail, entries
//! trimmed before herald read them are a `history-gap` (and counted), and
//! pub/sub reconnects are counted and logged as lossy.
//!
//! "Nothing else arrived" is always shown by publishing a marker afterwards
//! and checking that it is the very next event.

mod common;

use std::time::{Duration, Instant};

use common::{
    get_json, http_exchange, jwt, Herald, RedisConn, RedisServer, Resp, SseClient, SseEvent,
    EVENT_TIMEOUT,
};
use serde_json::{json, Value};

/// How long Redis may take to be seen up again after a restart (the retry
/// backoff caps at 5 s).
const REDIS_UP_TIMEOUT: Duration = Duration::from_secs(15);

// ----- helpers ---------------------------------------------------------------------

fn health_for(redis: &str) -> Value {
    match redis {
        "up" => json!({"status": "ok", "redis": "up"}),
        "down" => json!({"status": "degraded", "redis": "down"}),
        other => panic!("unexpected redis state {other}"),
    }
}

/// Waits (bounded) until both `/health` endpoints report `redis` (`up` or
/// `down`); panics with the last answers otherwise.
fn wait_redis_state(h: &Herald, redis: &str, timeout: Duration) {
    let want = health_for(redis);
    let deadline = Instant::now() + timeout;
    loop {
        let public = get_json(h.addr(), "/health");
        let admin = get_json(h.admin_addr(), "/health");
        if public == want && admin == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/health did not become {want} within {timeout:?}: public {public}, admin {admin}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stats(h: &Herald) -> Value {
    get_json(h.admin_addr(), "/stats")
}

/// Waits (bounded) until `/stats` `rejected_total` is `n`, then asserts it.
fn assert_rejected(h: &Herald, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = stats(h);
        if s["rejected_total"] == n || Instant::now() > deadline {
            assert_eq!(s["rejected_total"], n, "/stats {s}");
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// herald on `redis` with `JWT_SECRET` and `extra`, Redis link up.
fn start(redis: &RedisServer, extra: &[(&str, &str)]) -> Herald {
    let url = redis.url();
    let mut envs = vec![("JWT_SECRET", jwt::SECRET), ("REDIS_URL", url.as_str())];
    envs.extend_from_slice(extra);
    let h = Herald::start(&envs);
    wait_redis_state(&h, "up", REDIS_UP_TIMEOUT);
    h
}

fn listen(h: &Herald, user: &str) -> SseClient {
    h.sse_with_token(&jwt::user(user))
}

/// The next non-heartbeat event; asserts its data.
fn expect_data(c: &mut SseClient, data: &str) -> SseEvent {
    let ev = c.expect_non_ping();
    assert_eq!(ev.data, data, "unexpected event {ev:?}");
    ev
}

/// Publishes a marker on `channel` and asserts that it is the next event of
/// every client in `clients` (so nothing else was queued for them).
fn marker_next(r: &RedisServer, channel: &str, clients: &mut [&mut SseClient], text: &str) {
    let env = json!({"event": "marker", "message": text}).to_string();
    assert!(r.publish(channel, &env) >= 1, "no subscriber on {channel}");
    for c in clients.iter_mut() {
        let ev = expect_data(c, text);
        assert_eq!(ev.event.as_deref(), Some("marker"));
    }
}

/// Same with an XADD on `stream`; returns the marker's entry id.
fn stream_marker_next(r: &RedisServer, stream: &str, c: &mut SseClient, text: &str) -> String {
    let id = r.xadd(
        stream,
        &json!({"event": "marker", "message": text}).to_string(),
    );
    let ev = expect_data(c, text);
    assert_eq!(ev.id.as_deref(), Some(id.as_str()), "marker {ev:?}");
    id
}

/// The `id=` of the client whose last command was `cmd` in `CLIENT LIST`.
fn client_id_with_cmd(r: &RedisServer, cmd: &str) -> Option<String> {
    let list = r
        .cmd(&["CLIENT", "LIST"])
        .as_str()
        .expect("CLIENT LIST text");
    list.lines().find_map(|line| {
        let mut id = None;
        let mut matches = false;
        for field in line.split(' ') {
            if let Some(v) = field.strip_prefix("id=") {
                id = Some(v.to_string());
            }
            if field == format!("cmd={cmd}") {
                matches = true;
            }
        }
        id.filter(|_| matches)
    })
}

// ----- 1. pub/sub delivery ---------------------------------------------------------

#[test]
fn pubsub_targeted_broadcast_and_string_to() {
    let r = RedisServer::start();
    let h = start(&r, &[]);
    let mut u1a = listen(&h, "u1");
    let mut u1b = listen(&h, "u1");
    let mut u2 = listen(&h, "u2");

    let n = r.publish(
        "herald",
        r#"{"to":["u1"],"event":"greet","message":"hello u1"}"#,
    );
    assert_eq!(n, 1, "herald is the only subscriber");
    let a = expect_data(&mut u1a, "hello u1");
    let b = expect_data(&mut u1b, "hello u1");
    assert_eq!(a.event.as_deref(), Some("greet"));
    assert_eq!(a.id, b.id, "both connections see the same event id");
    a.server_id(); // a server-assigned `<ms>-<seq>` id
                   // u2 got nothing: the marker is its next event.
    marker_next(&r, "herald", &mut [&mut u2, &mut u1a, &mut u1b], "m1");

    // `to` as one string.
    r.publish("herald", r#"{"to":"u2","message":"just u2"}"#);
    let ev = expect_data(&mut u2, "just u2");
    assert_eq!(ev.event, None, "unnamed event");
    marker_next(&r, "herald", &mut [&mut u1a, &mut u1b, &mut u2], "m2");

    // Broadcast forms: no `to`, `"*"`, null.
    for (i, env) in [
        json!({"event": "all", "message": "b0"}),
        json!({"to": "*", "event": "all", "message": "b1"}),
        json!({"to": null, "event": "all", "message": "b2"}),
    ]
    .iter()
    .enumerate()
    {
        r.publish("herald", &env.to_string());
        for c in [&mut u1a, &mut u1b, &mut u2] {
            let ev = expect_data(c, &format!("b{i}"));
            assert_eq!(ev.event.as_deref(), Some("all"));
        }
    }
    marker_next(&r, "herald", &mut [&mut u1a, &mut u1b, &mut u2], "m3");
}

#[test]
fn pubsub_batch_is_delivered_in_order() {
    let r = RedisServer::start();
    let h = start(&r, &[]);
    let mut u1 = listen(&h, "u1");
    let mut u2 = listen(&h, "u2");
    let batch = json!([
        {"event": "n", "message": "b1"},
        {"to": ["u1"], "event": "n", "message": "b2"},
        {"to": "u2", "event": "n", "message": "b3"},
        {"event": "n", "message": "b4"},
        {"to": ["u1", "u2"], "event": "n", "message": "b5"},
    ]);
    r.publish("herald", &batch.to_string());
    let mut last = None;
    for want in ["b1", "b2", "b4", "b5"] {
        let ev = expect_data(&mut u1, want);
        let id = ev.server_id();
        assert!(
            last < Some(id),
            "ids increase within a batch: {last:?} then {id:?}"
        );
        last = Some(id);
    }
    for want in ["b1", "b3", "b4", "b5"] {
        expect_data(&mut u2, want);
    }
    marker_next(&r, "herald", &mut [&mut u1, &mut u2], "after batch");
}

#[test]
fn pubsub_seed_003_format() {
    let r = RedisServer::start();
    let h = start(&r, &[]);
    let mut c = listen(&h, "u1");
    // Keys in sorted order and with spaces: the SSE data is the compact form.
    let env = r#"{"id": "evt-1", "type": "blog.post.created", "source": "cms",
        "timestamp": "2024-01-01T00:00:00Z",
        "data": {"author": {"id": 7, "name": "Ann"}, "tags": ["a", "b"], "title": "Hello"}}"#;
    r.publish("herald", env);
    let ev = c.expect_non_ping();
    assert_eq!(
        ev.id.as_deref(),
        Some("evt-1"),
        "envelope id used as given: {ev:?}"
    );
    assert_eq!(ev.event.as_deref(), Some("blog.post.created"));
    assert_eq!(
        ev.data, r#"{"author":{"id":7,"name":"Ann"},"tags":["a","b"],"title":"Hello"}"#,
        "compact JSON on one data line: {ev:?}"
    );
    assert_eq!(
        ev.raw.iter().filter(|l| l.starts_with("data:")).count(),
        1,
        "{ev:?}"
    );
    // A string `data` keeps its quotes.
    r.publish("herald", r#"{"type":"t","source":"cms","data":"hello"}"#);
    assert_eq!(c.expect_non_ping().data, r#""hello""#);
    marker_next(&r, "herald", &mut [&mut c], "end");
}

#[test]
fn pubsub_several_channels() {
    let r = RedisServer::start();
    let h = start(&r, &[("REDIS_CHANNEL", "alpha,beta,gamma")]);
    for ch in ["alpha", "beta", "gamma"] {
        assert!(
            r.wait_subscribers(ch, EVENT_TIMEOUT),
            "herald did not subscribe to {ch}"
        );
    }
    let mut c = listen(&h, "u1");
    for ch in ["alpha", "beta", "gamma"] {
        let n = r.publish(
            ch,
            &json!({"to": "u1", "message": format!("on {ch}")}).to_string(),
        );
        assert_eq!(n, 1, "PUBLISH {ch}");
        expect_data(&mut c, &format!("on {ch}"));
    }
    // The default channel is not subscribed any more.
    assert_eq!(r.publish("herald", r#"{"message":"not here"}"#), 0);
    marker_next(&r, "beta", &mut [&mut c], "end");
}

// ----- 2. streams delivery ---------------------------------------------------------

#[test]
fn streams_ids_are_entry_ids_and_batches_get_suffixes() {
    let r = RedisServer::start();
    // Entries from before herald started are not delivered live, but they
    // fill the history (the stream's tail is read at start-up).
    let old1 = r.xadd("hs", r#"{"message":"old 1"}"#);
    let old2 = r.xadd("hs", r#"{"message":"old 2"}"#);
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    wait_redis_state(&h, "up", REDIS_UP_TIMEOUT);
    let mut u1 = listen(&h, "u1");
    let mut u2 = listen(&h, "u2");
    let mut earliest = h.sse(
        &format!("/sse?token={}", jwt::user("u3")),
        &[("Last-Event-ID", "earliest")],
    );
    assert_eq!(
        expect_data(&mut earliest, "old 1").id.as_deref(),
        Some(old1.as_str())
    );
    assert_eq!(
        expect_data(&mut earliest, "old 2").id.as_deref(),
        Some(old2.as_str())
    );
    // A listener coming back to this freshly started node with an old id is
    // replayed from there, with no history-gap.
    let mut back = h.sse(
        &format!("/sse?token={}", jwt::user("u4")),
        &[("Last-Event-ID", old1.as_str())],
    );
    let ev = back.expect_event();
    assert_eq!(
        (ev.event.as_deref(), ev.data.as_str()),
        (None, "old 2"),
        "{ev:?}"
    );

    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(r.xadd(
            "hs",
            &json!({"event": "s", "message": format!("e{i}")}).to_string(),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        let ev = expect_data(&mut u1, &format!("e{i}"));
        assert_eq!(ev.id.as_deref(), Some(id.as_str()), "{ev:?}");
        assert_eq!(ev.event.as_deref(), Some("s"));
        expect_data(&mut u2, &format!("e{i}"));
        expect_data(&mut earliest, &format!("e{i}"));
    }

    let batch = r.xadd(
        "hs",
        &json!([
            {"to": "u1", "message": "x0"},
            {"message": "x1"},
            {"to": ["u2"], "message": "x2"},
        ])
        .to_string(),
    );
    let ev = expect_data(&mut u1, "x0");
    assert_eq!(ev.id, Some(format!("{batch}.0")));
    let ev = expect_data(&mut u1, "x1");
    assert_eq!(ev.id, Some(format!("{batch}.1")));
    let ev = expect_data(&mut u2, "x1");
    assert_eq!(ev.id, Some(format!("{batch}.1")));
    let ev = expect_data(&mut u2, "x2");
    assert_eq!(ev.id, Some(format!("{batch}.2")));

    // Targeted by stream too; the seed-003 id is replaced by the entry id.
    let t = r.xadd(
        "hs",
        r#"{"id":"evt-9","type":"blog.post","source":"cms","to":"u2","data":{"a":1}}"#,
    );
    let ev = u2.expect_non_ping();
    assert_eq!(ev.id.as_deref(), Some(t.as_str()), "{ev:?}");
    assert_eq!(ev.event.as_deref(), Some("blog.post"));
    assert_eq!(ev.data, r#"{"a":1}"#);

    let m = stream_marker_next(&r, "hs", &mut u1, "end");
    let ev = expect_data(&mut u2, "end");
    assert_eq!(ev.id, Some(m));
}

// ----- 3. a killed Redis link in streams mode ----------------------------------------

#[test]
fn streams_link_killed_then_entries_arrive_exactly_once_in_order() {
    let r = RedisServer::start();
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut c = listen(&h, "u1");
    stream_marker_next(&r, "hs", &mut c, "before");

    // Round 1: CLIENT KILL TYPE normal, then 20 entries at once.
    match r.cmd(&["CLIENT", "KILL", "TYPE", "normal"]) {
        Resp::Int(n) => assert!(n >= 1, "herald's link was not killed"),
        other => panic!("CLIENT KILL answered {other:?}"),
    }
    let ids: Vec<String> = (0..20)
        .map(|i| r.xadd("hs", &json!({"message": format!("r1-{i}")}).to_string()))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let ev = expect_data(&mut c, &format!("r1-{i}"));
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    }
    stream_marker_next(&r, "hs", &mut c, "after round 1");

    // Round 2: kill exactly herald's blocked XREAD connection, by id; one of
    // the entries is a batch.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let xread = loop {
        if let Some(id) = client_id_with_cmd(&r, "xread") {
            break id;
        }
        assert!(Instant::now() < deadline, "no client blocked in XREAD");
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(
        r.cmd(&["CLIENT", "KILL", "ID", &xread]),
        Resp::Int(1),
        "CLIENT KILL ID {xread}"
    );
    let mut want = Vec::new();
    for i in 0..20 {
        if i == 10 {
            let id = r.xadd(
                "hs",
                &json!([{"message": "r2-batch-0"}, {"message": "r2-batch-1"}]).to_string(),
            );
            want.push(("r2-batch-0".to_string(), format!("{id}.0")));
            want.push(("r2-batch-1".to_string(), format!("{id}.1")));
        }
        let msg = format!("r2-{i}");
        let id = r.xadd("hs", &json!({"message": msg}).to_string());
        want.push((msg, id));
    }
    for (msg, id) in &want {
        let ev = expect_data(&mut c, msg);
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    }
    stream_marker_next(&r, "hs", &mut c, "after round 2");
    assert!(!c.is_eof(), "the listener stayed connected");

    let s = stats(&h);
    assert!(
        s["redis_connects_total"].as_u64().unwrap_or(0) >= 3,
        "two reconnects counted: {s}"
    );
    assert_eq!(s["redis"], "up", "{s}");
}

#[test]
fn pubsub_link_killed_then_resubscribes() {
    let r = RedisServer::start();
    let h = start(&r, &[]);
    let mut c = listen(&h, "u1");
    marker_next(&r, "herald", &mut [&mut c], "before");
    match r.cmd(&["CLIENT", "KILL", "TYPE", "pubsub"]) {
        Resp::Int(n) => assert_eq!(n, 1, "herald's subscriber was killed"),
        other => panic!("CLIENT KILL answered {other:?}"),
    }
    assert!(
        r.wait_subscribers("herald", REDIS_UP_TIMEOUT),
        "herald did not subscribe again"
    );
    marker_next(&r, "herald", &mut [&mut c], "after");
    assert!(!c.is_eof());
}

// ----- 4. a Redis outage ------------------------------------------------------------------

#[test]
fn pubsub_redis_outage_keeps_listeners_and_resumes() {
    let mut r = RedisServer::start();
    let h = start(&r, &[]);
    let mut c = listen(&h, "u1");
    marker_next(&r, "herald", &mut [&mut c], "before outage");

    r.stop();
    wait_redis_state(&h, "down", EVENT_TIMEOUT);
    assert_eq!(stats(&h)["redis"], "down");
    // herald keeps serving: new listeners are accepted, and HTTP publish
    // reaches them and the old one.
    let mut late = listen(&h, "u2");
    h.publish_ok(r#"{"message":"via http during outage"}"#);
    expect_data(&mut c, "via http during outage");
    expect_data(&mut late, "via http during outage");

    r.restart();
    wait_redis_state(&h, "up", REDIS_UP_TIMEOUT);
    assert!(
        r.wait_subscribers("herald", REDIS_UP_TIMEOUT),
        "herald did not subscribe again after the restart"
    );
    r.publish("herald", r#"{"to":"u1","message":"after restart"}"#);
    expect_data(&mut c, "after restart");
    marker_next(&r, "herald", &mut [&mut c, &mut late], "end");
    assert!(!c.is_eof(), "the listener was never disconnected");
    // What pub/sub lost meanwhile cannot be known, but the reconnect is
    // counted and logged as lossy.
    assert_eq!(stats(&h)["redis_connects_total"], 2, "{}", stats(&h));
    assert_eq!(metric(&h, "herald_redis_connects_total"), 2);
    assert!(
        h.log()
            .contains("published while the link was down is lost"),
        "log:\n{}",
        h.log()
    );
}

#[test]
fn streams_redis_outage_keeps_listeners_and_resumes() {
    let mut r = RedisServer::start();
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut c = listen(&h, "u1");
    stream_marker_next(&r, "hs", &mut c, "before outage");

    r.stop();
    wait_redis_state(&h, "down", EVENT_TIMEOUT);
    h.publish_ok(r#"{"message":"via http during outage"}"#);
    expect_data(&mut c, "via http during outage");

    // The restarted Redis has no data: new entry ids are later than the last
    // one herald read, so reading resumes.
    r.restart();
    wait_redis_state(&h, "up", REDIS_UP_TIMEOUT);
    xadd_after_outage_arrive_with_their_ids(&r, &mut c);
    stream_marker_next(&r, "hs", &mut c, "end");
    assert!(!c.is_eof(), "the listener was never disconnected");
}

// ----- 5. bad envelopes -----------------------------------------------------------------

#[test]
fn pubsub_bad_envelopes_are_skipped_and_counted() {
    let r = RedisServer::start();
    let h = start(&r, &[]);
    let mut c = listen(&h, "u1");
    assert_rejected(&h, 0);
    for msg in [
        r#"{"message":"good 1"}"#,
        "garbage",
        r#"{"to":[]}"#,
        r#"{"message":5}"#,
        r#"{"to":[],"message":"empty to"}"#,
        r#"[{"message":"half"},{"message":5}]"#,
        "[]",
        r#"{"message":"good 2"}"#,
    ] {
        assert_eq!(r.publish("herald", msg), 1);
    }
    let g1 = expect_data(&mut c, "good 1");
    let g2 = expect_data(&mut c, "good 2");
    assert!(g1.server_id() < g2.server_id());
    marker_next(&r, "herald", &mut [&mut c], "end");
    assert_rejected(&h, 6);
}

#[test]
fn streams_bad_entries_are_skipped_and_counted() {
    let r = RedisServer::start();
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut c = listen(&h, "u1");
    let g1 = r.xadd("hs", r#"{"message":"good 1"}"#);
    let no_field = r.cmd(&["XADD", "hs", "*", "payload", r#"{"message":"wrong field"}"#]);
    assert!(no_field.as_str().is_some(), "XADD answered {no_field:?}");
    r.xadd("hs", "{not json");
    r.xadd("hs", r#"{"to":[],"message":"empty to"}"#);
    let g2 = r.xadd("hs", r#"{"message":"good 2"}"#);
    let ev = expect_data(&mut c, "good 1");
    assert_eq!(ev.id, Some(g1));
    let ev = expect_data(&mut c, "good 2");
    assert_eq!(ev.id, Some(g2));
    stream_marker_next(&r, "hs", &mut c, "end");
    assert_rejected(&h, 3);
}

// ----- 6. two herald nodes on one Redis ------------------------------------------------

#[test]
fn two_heralds_on_one_redis_each_deliver_everything() {
    let r = RedisServer::start();
    let a = start(&r, &[]);
    let b = start(&r, &[]);
    let mut a_u1 = listen(&a, "u1");
    let mut b_u1 = listen(&b, "u1");
    let mut b_u2 = listen(&b, "u2");

    assert_eq!(
        r.publish("herald", r#"{"event":"all","message":"broadcast"}"#),
        2,
        "both nodes subscribed"
    );
    for c in [&mut a_u1, &mut b_u1, &mut b_u2] {
        expect_data(c, "broadcast");
    }
    r.publish("herald", r#"{"to":["u1"],"message":"for u1"}"#);
    expect_data(&mut a_u1, "for u1");
    expect_data(&mut b_u1, "for u1");
    r.publish("herald", r#"{"to":"u2","message":"for u2"}"#);
    expect_data(&mut b_u2, "for u2");
    marker_next(&r, "herald", &mut [&mut a_u1, &mut b_u1, &mut b_u2], "end");
}

#[test]
fn two_heralds_reading_one_stream_each_deliver_everything() {
    let r = RedisServer::start();
    let a = start(&r, &[("REDIS_STREAM", "hs")]);
    let b = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut a_u1 = listen(&a, "u1");
    let mut b_u1 = listen(&b, "u1");
    let mut b_u2 = listen(&b, "u2");
    let all = r.xadd("hs", r#"{"message":"broadcast"}"#);
    let t = r.xadd("hs", r#"{"to":"u1","message":"for u1"}"#);
    for c in [&mut a_u1, &mut b_u1, &mut b_u2] {
        assert_eq!(
            expect_data(c, "broadcast").id.as_deref(),
            Some(all.as_str())
        );
    }
    for c in [&mut a_u1, &mut b_u1] {
        assert_eq!(expect_data(c, "for u1").id.as_deref(), Some(t.as_str()));
    }
    let m = stream_marker_next(&r, "hs", &mut a_u1, "end");
    for c in [&mut b_u1, &mut b_u2] {
        assert_eq!(expect_data(c, "end").id, Some(m.clone()));
    }
}

#[test]
fn two_heralds_sharing_one_port_via_reuseport() {
    let r = RedisServer::start();
    let shared = common::free_addr().to_string();
    let a = start(&r, &[("LISTEN_ADDR", shared.as_str())]);
    let b = start(&r, &[("LISTEN_ADDR", shared.as_str())]);
    assert_eq!(a.addr(), b.addr());

    let streaming = |h: &Herald| stats(h)["streaming"].as_u64().unwrap_or(0);
    // Open listeners on the shared port until both nodes hold some (the
    // kernel spreads connections over all four SO_REUSEPORT sockets).
    let mut clients = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let user = format!("u{}", clients.len());
        clients.push((user.clone(), listen(&a, &user)));
        let n = clients.len() as u64;
        // Wait until both nodes have counted every stream we opened.
        let settle = Instant::now() + EVENT_TIMEOUT;
        while streaming(&a) + streaming(&b) < n && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (sa, sb) = (streaming(&a), streaming(&b));
        assert_eq!(sa + sb, n, "every stream is on one of the two nodes");
        if clients.len() >= 4 && sa > 0 && sb > 0 {
            break;
        }
        assert!(
            clients.len() < 64 && Instant::now() < deadline,
            "all {n} connections landed on one node ({sa}/{sb})"
        );
    }

    assert_eq!(r.publish("herald", r#"{"message":"to all"}"#), 2);
    for (_, c) in clients.iter_mut() {
        expect_data(c, "to all");
    }
    // A targeted event reaches its user whichever node holds it.
    r.publish("herald", r#"{"to":["u1","u3"],"message":"targeted"}"#);
    for (user, c) in clients.iter_mut() {
        if user == "u1" || user == "u3" {
            expect_data(c, "targeted");
        }
    }
    let mut refs: Vec<&mut SseClient> = clients.iter_mut().map(|(_, c)| c).collect();
    marker_next(&r, "herald", &mut refs, "end");
}

// ----- a Redis that stops answering (hung, or a silent network cut) ----------------

/// `redis-server` (our own child, started by [`RedisServer`]) stopped with
/// SIGSTOP; SIGCONT on drop, so a failing test leaves nothing stopped.
struct Frozen(libc::pid_t);

impl Frozen {
    fn new(r: &RedisServer) -> Frozen {
        let info = r.cmd(&["INFO", "server"]).as_str().expect("INFO text");
        let pid: libc::pid_t = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no process_id in INFO: {info}"));
        // SAFETY: kill(2) on the redis-server this test started (it answers
        // on our private port), which is still running.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0, "SIGSTOP");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above; resumes the process we stopped.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// Streams mode notices a Redis that stopped answering (its `XREAD BLOCK`
/// has a read timeout) and reports `down`; the entries added once Redis
/// answers again arrive exactly once.
#[test]
fn streams_unresponsive_redis_is_reported_down() {
    let r = RedisServer::start();
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut c = listen(&h, "u1");
    stream_marker_next(&r, "hs", &mut c, "before");
    let frozen = Frozen::new(&r);
    wait_redis_state(&h, "down", Duration::from_secs(20));
    drop(frozen);
    wait_redis_state(&h, "up", REDIS_UP_TIMEOUT);
    xadd_after_outage_arrive_with_their_ids(&r, &mut c);
    stream_marker_next(&r, "hs", &mut c, "end");
}

/// Pub/sub mode must notice it too: a subscriber that never checks its link
/// stays "up" for ever on a hung Redis or a silently dropped connection
/// (firewall/NAT idle timeout), and then never receives anything again.
#[test]
fn pubsub_unresponsive_redis_is_reported_down() {
    let r = RedisServer::start();
    let h = start(&r, &[]);
    let mut c = listen(&h, "u1");
    marker_next(&r, "herald", &mut [&mut c], "before");
    let frozen = Frozen::new(&r);
    // Streams mode reports down within about 5 s; allow 20.
    wait_redis_state(&h, "down", Duration::from_secs(20));
    drop(frozen);
    wait_redis_state(&h, "up", REDIS_UP_TIMEOUT);
    assert!(r.wait_subscribers("herald", REDIS_UP_TIMEOUT));
    marker_next(&r, "herald", &mut [&mut c], "after");
}

/// XADDs five entries after an outage; each must arrive, in order, with its
/// stream id as the SSE id.
fn xadd_after_outage_arrive_with_their_ids(r: &RedisServer, c: &mut SseClient) {
    let ids: Vec<String> = (0..5)
        .map(|i| r.xadd("hs", &json!({"message": format!("after {i}")}).to_string()))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let ev = expect_data(c, &format!("after {i}"));
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
    }
}

// ----- 7. streams mode loses nothing, or says so (issue #11) -------------------------

/// The value of the counter `name` on `/metrics` (no admin token set).
fn metric(h: &Herald, name: &str) -> u64 {
    let req = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let r = http_exchange(h.admin_addr(), req, EVENT_TIMEOUT).expect("GET /metrics");
    assert_eq!(r.status, 200, "GET /metrics answered {r:?}");
    let body = r.body_text();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

/// A listener for `user` that sends `Last-Event-ID: last`.
fn replay_from(h: &Herald, user: &str, last: &str) -> SseClient {
    h.sse(
        &format!("/sse?token={}", jwt::user(user)),
        &[("Last-Event-ID", last)],
    )
}

/// The next event is `history-gap` (no id) for `last`.
fn expect_gap(c: &mut SseClient, last: &str) {
    let ev = c.expect_non_ping();
    assert_eq!(ev.event.as_deref(), Some("history-gap"), "{ev:?}");
    assert_eq!(ev.id, None, "{ev:?}");
    assert_eq!(ev.data_json(), json!({ "lastEventId": last }));
}

/// The entry ids an `EXEC` of `XADD`s answered.
fn exec_ids(reply: Resp) -> Vec<String> {
    match reply {
        Resp::Array(Some(ids)) => ids
            .iter()
            .map(|id| {
                id.as_str()
                    .unwrap_or_else(|| panic!("EXEC answered {id:?}"))
            })
            .collect(),
        other => panic!("EXEC answered {other:?}"),
    }
}

/// `good-1`, an event over the size cap (200 KB, the cap is 128 KiB) and
/// `good-2` in one MULTI/EXEC, so that one XREAD reads all three; their ids.
fn xadd_around_an_oversized_entry(r: &RedisServer, stream: &str) -> Vec<String> {
    let mut conn = RedisConn::open(r.addr()).expect("connect to redis");
    assert_eq!(conn.cmd(&["MULTI"]).unwrap(), Resp::Simple("OK".into()));
    let big = json!({ "message": "x".repeat(200_000) }).to_string();
    for env in [r#"{"message":"good-1"}"#, &big, r#"{"message":"good-2"}"#] {
        let queued = conn.cmd(&["XADD", stream, "*", "envelope", env]).unwrap();
        assert_eq!(queued, Resp::Simple("QUEUED".into()));
    }
    exec_ids(conn.cmd(&["EXEC"]).unwrap())
}

/// Finding 1: an entry the hub refuses (over the size cap) used to take
/// the good entries of the same XREAD down with it.
#[test]
fn streams_a_refused_entry_leaves_its_neighbours_delivered_and_replayable() {
    let r = RedisServer::start();
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut c = listen(&h, "u1");
    let ids = xadd_around_an_oversized_entry(&r, "hs");
    assert_eq!(expect_data(&mut c, "good-1").id.as_ref(), Some(&ids[0]));
    assert_eq!(expect_data(&mut c, "good-2").id.as_ref(), Some(&ids[2]));
    let end = stream_marker_next(&r, "hs", &mut c, "end");
    assert_rejected(&h, 1);

    let mut all = replay_from(&h, "u2", "earliest");
    assert_eq!(expect_data(&mut all, "good-1").id.as_ref(), Some(&ids[0]));
    assert_eq!(expect_data(&mut all, "good-2").id.as_ref(), Some(&ids[2]));
    assert_eq!(expect_data(&mut all, "end").id, Some(end));
}

/// Finding 1 at start-up: the same entries written before herald starts
/// used to leave the whole history preload empty.
#[test]
fn streams_a_refused_entry_leaves_the_tail_preloaded() {
    let r = RedisServer::start();
    let ids = xadd_around_an_oversized_entry(&r, "hs");
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut all = replay_from(&h, "u1", "earliest");
    assert_eq!(expect_data(&mut all, "good-1").id.as_ref(), Some(&ids[0]));
    assert_eq!(expect_data(&mut all, "good-2").id.as_ref(), Some(&ids[2]));
    assert_rejected(&h, 1);
    // Coming back with good-1's id: replayed, no gap.
    let mut back = replay_from(&h, "u2", &ids[0]);
    assert_eq!(expect_data(&mut back, "good-2").id.as_ref(), Some(&ids[2]));
    let end = stream_marker_next(&r, "hs", &mut all, "end");
    assert_eq!(expect_data(&mut back, "end").id, Some(end));
}

/// A herald started by hand and not waited for (the harness waits for
/// `/health`, by which time the race below is long over); killed (our child
/// only) and reaped on drop.
struct Unwaited {
    child: std::process::Child,
    listen: std::net::SocketAddr,
    log: std::path::PathBuf,
    _dir: common::TempDir,
}

impl Unwaited {
    fn start(r: &RedisServer, stream: &str) -> Unwaited {
        let dir = common::TempDir::new("herald-unwaited");
        let log = dir.join("herald.log");
        let out = std::fs::File::create(&log).expect("create log file");
        let listen = common::free_addr();
        let mut cmd = std::process::Command::new(common::HERALD);
        cmd.env_clear();
        if let Ok(path) = std::env::var("PATH") {
            cmd.env("PATH", path);
        }
        if let Some(backend) = common::test_backend() {
            cmd.env("IO_BACKEND", backend);
        }
        let child = cmd
            .envs([
                ("LISTEN_ADDR", listen.to_string()),
                ("ADMIN_ADDR", common::free_addr().to_string()),
                ("WORKERS", "2".into()),
                ("LOG_LEVEL", "warn".into()),
                ("PIN_CORES", "false".into()),
                ("JWT_SECRET", jwt::SECRET.into()),
                ("REDIS_URL", r.url()),
                ("REDIS_STREAM", stream.into()),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("dup log fd"))
            .stderr(out)
            .spawn()
            .expect("spawn herald");
        Unwaited {
            child,
            listen,
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Unwaited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finding 2: a listener that reconnects the moment a fresh node's port
/// answers used to get `history-gap` for an id that is in the stream (the
/// tail was loaded after the reactors began answering).
#[test]
fn streams_listeners_right_after_start_are_replayed_from_the_tail() {
    let r = RedisServer::start();
    let ids: Vec<String> = (0..50)
        .map(|i| r.xadd("hs", &json!({ "message": format!("m{i}") }).to_string()))
        .collect();
    let path = format!("/sse?token={}", jwt::user("u1"));
    for trial in 0..8 {
        let h = Unwaited::start(&r, "hs");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = loop {
            match SseClient::connect(h.listen, &path, &[("Last-Event-ID", &ids[9])]) {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "trial {trial}: the port never answered ({e}); log:\n{}",
                        h.log()
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        assert_eq!(c.status(), 200, "trial {trial}; log:\n{}", h.log());
        for (i, id) in ids.iter().enumerate().skip(10) {
            let ev = c.expect_non_ping();
            let want = format!("m{i}");
            assert_eq!(
                (ev.event.as_deref(), ev.data.as_str(), ev.id.as_ref()),
                (None, want.as_str(), Some(id)),
                "trial {trial}: {ev:?}"
            );
        }
    }
}

/// The `CLIENT LIST` id of herald's blocked `XREAD` connection.
fn xread_client(r: &RedisServer) -> String {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        if let Some(id) = client_id_with_cmd(r, "xread") {
            return id;
        }
        assert!(Instant::now() < deadline, "no client blocked in XREAD");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Finding 3: entries trimmed (`MAXLEN`) while herald's reader was cut off
/// used to be skipped in silence. Now live listeners get `history-gap`
/// (whatever their filter), a replay across the point reports it in place,
/// and `herald_stream_gaps_total` counts it.
#[test]
fn streams_entries_trimmed_before_herald_read_them_are_a_gap() {
    let r = RedisServer::start();
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut c = listen(&h, "u1");
    let mut filtered = h.sse(
        &format!("/sse?token={}&event_types=other", jwt::user("u2")),
        &[],
    );
    let before = stream_marker_next(&r, "hs", &mut c, "before");
    assert_eq!(metric(&h, "herald_stream_gaps_total"), 0);

    // Cut herald's reader off, then add 20 entries to a stream capped at 5:
    // 15 are trimmed unread. One MULTI, so this holds whether herald is
    // back before it runs or not.
    let xread = xread_client(&r);
    assert_eq!(r.cmd(&["CLIENT", "KILL", "ID", &xread]), Resp::Int(1));
    let mut conn = RedisConn::open(r.addr()).expect("connect to redis");
    conn.cmd(&["MULTI"]).unwrap();
    for i in 0..20 {
        let env = json!({ "message": format!("t{i}") }).to_string();
        let queued = conn.cmd(&["XADD", "hs", "MAXLEN", "5", "*", "envelope", &env]);
        assert_eq!(queued.unwrap(), Resp::Simple("QUEUED".into()));
    }
    let ids = exec_ids(conn.cmd(&["EXEC"]).unwrap());

    expect_gap(&mut c, &before);
    for (i, id) in ids.iter().enumerate().skip(15) {
        assert_eq!(expect_data(&mut c, &format!("t{i}")).id.as_ref(), Some(id));
    }
    let end = stream_marker_next(&r, "hs", &mut c, "end");
    expect_gap(&mut filtered, &before);
    assert_eq!(metric(&h, "herald_stream_gaps_total"), 1);

    // A replay that crosses the point reports it where it was; one from
    // after it does not.
    let mut back = replay_from(&h, "u3", &before);
    expect_gap(&mut back, &before);
    for (i, id) in ids.iter().enumerate().skip(15) {
        assert_eq!(
            expect_data(&mut back, &format!("t{i}")).id.as_ref(),
            Some(id)
        );
    }
    assert_eq!(expect_data(&mut back, "end").id.as_ref(), Some(&end));
    let mut after = replay_from(&h, "u4", &ids[17]);
    for (i, id) in ids.iter().enumerate().skip(18) {
        assert_eq!(
            expect_data(&mut after, &format!("t{i}")).id.as_ref(),
            Some(id)
        );
    }
    assert_eq!(expect_data(&mut after, "end").id, Some(end));
    // Reported once.
    stream_marker_next(&r, "hs", &mut c, "later");
    assert_eq!(metric(&h, "herald_stream_gaps_total"), 1);
}

/// No false alarm: trimming (and deleting) entries herald has already read
/// is not a gap, however short the stream is kept.
#[test]
fn streams_trimming_what_herald_already_read_is_not_a_gap() {
    let r = RedisServer::start();
    let h = start(&r, &[("REDIS_STREAM", "hs")]);
    let mut c = listen(&h, "u1");
    let mut last = String::new();
    for i in 0..30 {
        let env = json!({ "message": format!("k{i}") }).to_string();
        last = r
            .cmd(&["XADD", "hs", "MAXLEN", "2", "*", "envelope", &env])
            .as_str()
            .expect("XADD id");
        assert_eq!(expect_data(&mut c, &format!("k{i}")).id, Some(last.clone()));
    }
    assert_eq!(r.cmd(&["XDEL", "hs", &last]), Resp::Int(1));
    stream_marker_next(&r, "hs", &mut c, "end");
    assert_eq!(metric(&h, "herald_stream_gaps_total"), 0);
}
