//! Who gets an event (SPEC §2, §4): targeted delivery to every connection of
//! a user and to no one else, broadcast to all, `to` forms, and `app`
//! scoping.
//!
//! "Nothing arrived" is always proven by publishing a broadcast marker and
//! checking it is the *next* event the listener sees.

mod common;

use common::{jwt, Herald, SseClient};
use serde_json::json;

fn herald() -> Herald {
    Herald::start(&[("JWT_SECRET", jwt::SECRET), ("ALLOW_ANONYMOUS", "true")])
}

fn streams(h: &Herald, token: &str, n: usize) -> Vec<SseClient> {
    (0..n).map(|_| h.sse_with_token(token)).collect()
}

fn expect_all(clients: &mut [SseClient], data: &str, who: &str) {
    for (i, c) in clients.iter_mut().enumerate() {
        let ev = c.expect_event();
        assert_eq!(ev.data, data, "{who} connection #{i} got {ev:?}");
    }
}

#[test]
fn targeted_event_reaches_every_connection_of_the_user_and_no_one_else() {
    let h = herald();
    // With WORKERS=2 the kernel spreads connections over both reactors;
    // several connections make it very likely that u1 has one on each.
    let mut u1 = streams(&h, &jwt::user("u1"), 6);
    let mut u2 = streams(&h, &jwt::user("u2"), 3);
    let mut anon = vec![h.sse("/sse", &[])];

    let n = h.publish_ok(r#"{"to":["u1"],"event":"private","message":"for u1"}"#);
    assert_eq!(n, 1);
    h.publish_ok(r#"{"message":"marker"}"#);

    for c in &mut u1 {
        let ev = c.expect_event();
        assert_eq!(ev.event.as_deref(), Some("private"));
        assert_eq!(ev.data, "for u1");
    }
    expect_all(&mut u1, "marker", "u1");
    expect_all(&mut u2, "marker", "u2 (must not see u1's event)");
    expect_all(&mut anon, "marker", "anonymous");
}

#[test]
fn to_forms_string_array_and_star() {
    let h = herald();
    let mut u1 = h.sse_with_token(&jwt::user("u1"));
    let mut u2 = h.sse_with_token(&jwt::user("u2"));
    let mut u3 = h.sse_with_token(&jwt::user("u3"));

    h.publish_ok(r#"{"to":"u2","message":"string to"}"#);
    h.publish_ok(r#"{"to":["u1","u3","nobody"],"message":"array to"}"#);
    h.publish_ok(r#"{"to":"*","message":"star"}"#);
    h.publish_ok(r#"{"to":null,"message":"null"}"#);

    assert_eq!(u1.expect_event().data, "array to");
    assert_eq!(u1.expect_event().data, "star");
    assert_eq!(u1.expect_event().data, "null");
    assert_eq!(u2.expect_event().data, "string to");
    assert_eq!(u2.expect_event().data, "star");
    assert_eq!(u2.expect_event().data, "null");
    assert_eq!(u3.expect_event().data, "array to");
    assert_eq!(u3.expect_event().data, "star");
    assert_eq!(u3.expect_event().data, "null");
}

#[test]
fn event_for_absent_user_reaches_no_one() {
    let h = herald();
    let mut u1 = h.sse_with_token(&jwt::user("u1"));
    let mut anon = h.sse("/sse", &[]);
    assert_eq!(h.publish_ok(r#"{"to":"ghost","message":"lost"}"#), 1);
    h.publish_ok(r#"{"message":"marker"}"#);
    assert_eq!(u1.expect_event().data, "marker");
    assert_eq!(anon.expect_event().data, "marker");
}

#[test]
fn broadcast_reaches_everyone() {
    let h = herald();
    let mut all: Vec<SseClient> = Vec::new();
    for u in ["a", "b", "c", "d"] {
        all.push(h.sse_with_token(&jwt::user(u)));
    }
    all.push(h.sse_with_token(&jwt::user_in("e", "shop")));
    all.push(h.sse("/sse", &[]));
    all.push(h.sse("/events", &[]));
    h.publish_ok(r#"{"event":"news","message":"to all"}"#);
    expect_all(&mut all, "to all", "listener");
}

#[test]
fn app_scoping() {
    let h = herald();
    let mut shop = h.sse_with_token(&jwt::user_in("u1", "shop"));
    let mut blog = h.sse_with_token(&jwt::user_in("u1", "blog"));
    let mut default = h.sse_with_token(&jwt::user("u1"));
    let mut shop_u2 = h.sse_with_token(&jwt::user_in("u2", "shop"));

    // Broadcast within an app.
    h.publish_ok(r#"{"app":"shop","message":"shop broadcast"}"#);
    // Targeted without app: the user in every app.
    h.publish_ok(r#"{"to":"u1","message":"u1 everywhere"}"#);
    // Targeted within an app.
    h.publish_ok(r#"{"to":"u1","app":"blog","message":"u1 in blog"}"#);
    // An app nobody is in.
    h.publish_ok(r#"{"app":"nowhere","message":"lost"}"#);
    h.publish_ok(r#"{"to":"u1","app":"nowhere","message":"lost too"}"#);
    h.publish_ok(r#"{"message":"marker"}"#);

    let seq = |c: &mut SseClient, n: usize| -> Vec<String> {
        (0..n).map(|_| c.expect_event().data).collect()
    };
    assert_eq!(
        seq(&mut shop, 3),
        ["shop broadcast", "u1 everywhere", "marker"]
    );
    assert_eq!(seq(&mut blog, 3), ["u1 everywhere", "u1 in blog", "marker"]);
    assert_eq!(seq(&mut default, 2), ["u1 everywhere", "marker"]);
    assert_eq!(seq(&mut shop_u2, 2), ["shop broadcast", "marker"]);
}

#[test]
fn user_ids_are_per_app_for_app_targeted_events() {
    // The same user id in two apps is two users for `app`-scoped events.
    let h = herald();
    let mut shop: Vec<SseClient> = (0..3)
        .map(|_| h.sse_with_token(&jwt::user_in("same", "shop")))
        .collect();
    let mut blog: Vec<SseClient> = (0..3)
        .map(|_| h.sse_with_token(&jwt::user_in("same", "blog")))
        .collect();
    h.publish_ok(r#"{"to":["same"],"app":"shop","message":"shop only"}"#);
    h.publish_ok(r#"{"message":"marker"}"#);
    expect_all(&mut shop, "shop only", "shop");
    expect_all(&mut shop, "marker", "shop");
    expect_all(&mut blog, "marker", "blog");
}

#[test]
fn closed_connection_of_a_user_does_not_disturb_the_others() {
    let h = herald();
    let mut conns = streams(&h, &jwt::user("u1"), 4);
    // Close two (from the middle and the end of the user's list).
    let last = conns.pop().unwrap();
    let mid = conns.remove(1);
    last.close();
    mid.close();
    // Let herald notice the closes, then target the user repeatedly.
    for i in 0..5 {
        h.publish_json(&json!({"to": "u1", "message": format!("after close {i}")}));
    }
    for i in 0..5 {
        expect_all(&mut conns, &format!("after close {i}"), "remaining u1");
    }
    // A new connection of the user joins the list.
    let mut fresh = h.sse_with_token(&jwt::user("u1"));
    h.publish_ok(r#"{"to":"u1","message":"with fresh"}"#);
    expect_all(&mut conns, "with fresh", "remaining u1");
    // The fresh connection may sit on a reactor that had not yet taken in
    // the earlier events when it was accepted; those may precede (never
    // follow) the one published after it connected.
    loop {
        let ev = fresh.expect_event();
        if ev.data == "with fresh" {
            break;
        }
        assert!(ev.data.starts_with("after close "), "fresh got {ev:?}");
    }
    h.publish_ok(r#"{"message":"marker"}"#);
    assert_eq!(fresh.expect_event().data, "marker");
}

#[test]
fn batch_mixes_targets_in_order() {
    let h = herald();
    let mut u1 = h.sse_with_token(&jwt::user("u1"));
    let mut u2 = h.sse_with_token(&jwt::user("u2"));
    h.publish_json(&json!([
        {"to": "u1", "message": "1"},
        {"message": "2"},
        {"to": "u2", "message": "3"},
        {"to": ["u1", "u2"], "message": "4"},
        {"message": "5"},
    ]));
    let got1: Vec<String> = (0..4).map(|_| u1.expect_event().data).collect();
    let got2: Vec<String> = (0..4).map(|_| u2.expect_event().data).collect();
    assert_eq!(got1, ["1", "2", "4", "5"]);
    assert_eq!(got2, ["2", "3", "4", "5"]);
}

#[test]
fn numeric_sub_is_a_user_id() {
    let h = herald();
    let t = jwt::hs256(jwt::SECRET, &json!({"sub": 42, "exp": jwt::now() + 600}));
    let mut c = h.sse_with_token(&t);
    h.publish_ok(r#"{"to":"42","message":"numeric"}"#);
    assert_eq!(c.expect_event().data, "numeric");
}

/// `"data": null` is a JSON payload like any other: delivered as `data: null`,
/// not refused (SPEC §4; what Centrifugo and Mercure publishers expect).
#[test]
fn data_null_is_delivered_as_json_null() {
    let h = herald();
    let mut c = h.sse_with_token(&jwt::user("u1"));
    h.publish_ok(r#"{"event":"cleared","data":null}"#);
    let ev = c.expect_event();
    assert_eq!(ev.event.as_deref(), Some("cleared"));
    assert_eq!(ev.data, "null");
}
