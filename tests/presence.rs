//! Presence (SPEC §5) and the per-user limit (§7), in one herald process
//! with two reactors: `on-connection` to a new listener, `user-connected` /
//! `user-disconnected` to the app's other users on a user's first stream and
//! last stream only, app scoping, filters, truncation, no ids and no replay;
//! `MAX_CONNECTIONS_PER_USER` answers 503 with `Retry-After`.

mod common;

use common::{jwt, Herald, SseClient, SseEvent};
use serde_json::json;

fn herald(extra: &[(&str, &str)]) -> Herald {
    let mut envs = vec![
        ("JWT_SECRET", jwt::SECRET),
        ("INTERNAL_EVENTS_STRATEGY", "generate"),
        ("HEARTBEAT_SECONDS", "0"),
    ];
    envs.extend_from_slice(extra);
    Herald::start(&envs)
}

fn listen(h: &Herald, user: &str, app: &str) -> SseClient {
    h.sse_with_token(&jwt::user_in(user, app))
}

/// The next event, which must be `name` with `data`.
fn expect(c: &mut SseClient, name: &str, data: serde_json::Value) -> SseEvent {
    let ev = c.expect_non_ping();
    assert_eq!(ev.event.as_deref(), Some(name), "{ev:?}");
    assert_eq!(ev.data_json(), data, "{ev:?}");
    assert_eq!(ev.id, None, "internal events carry no id: {ev:?}");
    ev
}

/// Publishes a marker for `app` and expects it next on each client: nothing
/// else came before it.
fn marker(h: &Herald, app: &str, clients: &mut [&mut SseClient], text: &str) {
    h.publish_json(&json!({ "app": app, "event": "marker", "message": text }));
    for c in clients.iter_mut() {
        let ev = c.expect_non_ping();
        assert_eq!(
            ev.event.as_deref(),
            Some("marker"),
            "expected only the marker, got {ev:?}"
        );
        assert_eq!(ev.data, text);
    }
}

#[test]
fn first_connection_and_last_disconnection_only_across_reactors() {
    let h = herald(&[]);
    let mut u1 = listen(&h, "u1", "shop");
    expect(
        &mut u1,
        "on-connection",
        json!({"users": ["u1"], "truncated": false}),
    );

    // u2's first stream: u1 hears of it; u2's list has itself first.
    let mut u2a = listen(&h, "u2", "shop");
    let on = u2a.expect_non_ping();
    assert_eq!(on.event.as_deref(), Some("on-connection"));
    assert_eq!(
        on.data_json(),
        json!({"users": ["u2", "u1"], "truncated": false})
    );
    expect(&mut u1, "user-connected", json!({"userId": "u2"}));

    // More streams of u2 (two reactors: some land on the other one): no
    // more user-connected, and u2's own streams never hear about u2.
    let mut more: Vec<SseClient> = (0..5).map(|_| listen(&h, "u2", "shop")).collect();
    for c in &mut more {
        let ev = c.expect_non_ping();
        assert_eq!(ev.event.as_deref(), Some("on-connection"));
    }
    marker(&h, "shop", &mut [&mut u1, &mut u2a], "after more streams");

    // Closing all but one: nothing. Closing the last: user-disconnected.
    for c in more {
        c.close();
    }
    marker(&h, "shop", &mut [&mut u1], "after closing five");
    u2a.close();
    expect(&mut u1, "user-disconnected", json!({"userId": "u2"}));
    let deadline = std::time::Instant::now() + common::EVENT_TIMEOUT;
    while common::get_json(h.admin_addr(), "/stats")["connections"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "closed streams still counted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn presence_is_scoped_to_the_app_and_passes_filters() {
    let h = herald(&[]);
    let token = jwt::user_in("u1", "shop");
    let mut filtered = h.sse(&format!("/sse?event_types=order.*&token={token}"), &[]);
    expect(
        &mut filtered,
        "on-connection",
        json!({"users": ["u1"], "truncated": false}),
    );
    let mut blog = listen(&h, "b1", "blog");
    expect(
        &mut blog,
        "on-connection",
        json!({"users": ["b1"], "truncated": false}),
    );

    let mut u2 = listen(&h, "u2", "shop");
    expect(
        &mut u2,
        "on-connection",
        json!({"users": ["u2", "u1"], "truncated": false}),
    );
    expect(&mut filtered, "user-connected", json!({"userId": "u2"}));
    // The blog listener heard nothing of shop's users.
    marker(&h, "blog", &mut [&mut blog], "blog only");
}

#[test]
fn on_connection_is_capped_and_not_replayed() {
    let h = herald(&[("PRESENCE_LIST_MAX", "2")]);
    let mut held: Vec<SseClient> = ["a", "b", "c"]
        .iter()
        .map(|u| listen(&h, u, "shop"))
        .collect();
    // Let every user-connected arrive (the feed has seen all three) before
    // the next listener asks.
    h.publish_json(&json!({ "app": "shop", "event": "marker", "message": "settled" }));
    for c in &mut held {
        while c.expect_non_ping().event.as_deref() != Some("marker") {}
    }
    let mut me = listen(&h, "me", "shop");
    let on = me.expect_non_ping();
    assert_eq!(on.event.as_deref(), Some("on-connection"));
    let v = on.data_json();
    assert_eq!(v["truncated"], true, "{v}");
    assert_eq!(v["users"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["users"][0], "me", "{v}");

    // Presence events are not history: a replay of everything held brings
    // the markers only.
    let bearer = format!("Bearer {}", jwt::user_in("again", "shop"));
    let mut again = h.connect(
        "/sse",
        &[("Authorization", &bearer), ("Last-Event-ID", "earliest")],
    );
    let on = again.expect_non_ping();
    assert_eq!(on.event.as_deref(), Some("on-connection"), "{on:?}");
    let ev = again.expect_non_ping();
    assert_eq!(ev.event.as_deref(), Some("marker"), "{ev:?}");
}

#[test]
fn max_connections_per_user_answers_503_with_retry_after() {
    let h = herald(&[
        ("MAX_CONNECTIONS_PER_USER", "2"),
        ("INTERNAL_EVENTS_STRATEGY", "ignore"),
    ]);
    let token = jwt::user_in("u1", "shop");
    let first = h.sse_with_token(&token);
    let _second = h.sse_with_token(&token);
    let bearer = format!("Bearer {token}");
    let third = h.connect("/sse", &[("Authorization", &bearer)]);
    assert_eq!(third.status(), 503);
    assert_eq!(third.header("retry-after"), Some("5"));
    assert_eq!(third.body_json()["type"], "server_full");
    // Another user, or another app, is not affected.
    assert_eq!(h.sse_with_token(&jwt::user_in("u2", "shop")).status(), 200);
    assert_eq!(h.sse_with_token(&jwt::user_in("u1", "blog")).status(), 200);
    // One closed: room again.
    first.close();
    let deadline = std::time::Instant::now() + common::EVENT_TIMEOUT;
    loop {
        let c = h.connect("/sse", &[("Authorization", &bearer)]);
        if c.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the closed stream never freed its place"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Anonymous listeners of the app hear of every user, on every reactor
/// (where the user has a stream and where it has none).
#[test]
fn anonymous_listeners_hear_of_users_on_every_reactor() {
    let h = herald(&[("ALLOW_ANONYMOUS", "true")]);
    let mut anon: Vec<SseClient> = (0..10).map(|_| h.sse("/sse", &[])).collect();
    for c in &mut anon {
        let on = c.expect_non_ping();
        assert_eq!(on.event.as_deref(), Some("on-connection"), "{on:?}");
    }
    // A token without `iss` is app "default", like the anonymous listeners.
    let x = h.sse_with_token(&jwt::user("x"));
    for c in &mut anon {
        expect(c, "user-connected", json!({"userId": "x"}));
    }
    x.close();
    for c in &mut anon {
        expect(c, "user-disconnected", json!({"userId": "x"}));
    }
}
