//! Listener filters (SPEC §2): `event_types` with `*` wildcards, `sources`,
//! both together, unnamed events as type `message`, and heartbeats passing
//! any filter.

mod common;

use common::{jwt, Herald, SseClient};
use serde_json::json;

fn herald() -> Herald {
    Herald::start(&[("JWT_SECRET", jwt::SECRET)])
}

fn open(h: &Herald, query: &str) -> SseClient {
    h.sse(&format!("/sse?{query}&token={}", jwt::user("u1")), &[])
}

/// Publishes `(event type or None, source or None, data)` as one batch, then
/// a marker that every filter below lets through (type `marker.end`, source
/// `marker`).
fn publish(h: &Herald, events: &[(Option<&str>, Option<&str>, &str)]) {
    let mut batch: Vec<serde_json::Value> = events
        .iter()
        .map(|(t, s, d)| {
            let mut e = json!({"message": d});
            if let Some(t) = t {
                e["event"] = json!(t);
            }
            if let Some(s) = s {
                e["source"] = json!(s);
            }
            e
        })
        .collect();
    batch.push(json!({"event": "marker.end", "source": "marker", "message": "END"}));
    h.publish_json(&serde_json::Value::Array(batch));
}

/// Every event data up to and including the marker.
fn until_marker(c: &mut SseClient) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let ev = c.expect_event();
        if ev.data == "END" {
            return out;
        }
        out.push(ev.data);
    }
}

#[test]
fn event_type_wildcards() {
    let h = herald();
    let mut prefix = open(&h, "event_types=blog.*,marker.*");
    let mut suffix = open(&h, "event_types=*.created,marker.*");
    let mut middle = open(&h, "event_types=a.*.c,marker.*");
    let mut any = open(&h, "event_types=*");
    let mut exact = open(&h, "event_types=message,user.deleted,marker.end");
    let mut none = open(&h, "event_types=");

    publish(
        &h,
        &[
            (Some("blog.post"), None, "blog.post"),
            (Some("blog.post.created"), None, "blog.post.created"),
            (Some("blog"), None, "blog"),
            (Some("news.post"), None, "news.post"),
            (Some("user.created"), None, "user.created"),
            (Some("created"), None, "created"),
            (Some("a.x.y.c"), None, "a.x.y.c"),
            (Some("a.c"), None, "a.c"),
            (None, None, "unnamed"),
            (Some("user.deleted"), None, "user.deleted"),
            (Some("user.deleted.x"), None, "user.deleted.x"),
        ],
    );

    assert_eq!(
        until_marker(&mut prefix),
        ["blog.post", "blog.post.created"]
    );
    assert_eq!(
        until_marker(&mut suffix),
        ["blog.post.created", "user.created"]
    );
    assert_eq!(until_marker(&mut middle), ["a.x.y.c"]);
    assert_eq!(
        until_marker(&mut any),
        [
            "blog.post",
            "blog.post.created",
            "blog",
            "news.post",
            "user.created",
            "created",
            "a.x.y.c",
            "a.c",
            "unnamed",
            "user.deleted",
            "user.deleted.x"
        ]
    );
    // An unnamed event has type `message`.
    assert_eq!(until_marker(&mut exact), ["unnamed", "user.deleted"]);
    // An empty list is no filter.
    assert_eq!(until_marker(&mut none).len(), 11);
}

#[test]
fn sources() {
    let h = herald();
    let mut one = open(&h, "sources=cms,marker");
    let mut two = open(&h, "sources=cms,crm,marker");

    publish(
        &h,
        &[
            (Some("x"), Some("cms"), "cms"),
            (Some("x"), Some("crm"), "crm"),
            (Some("x"), Some("cm"), "cm"),
            (Some("x"), Some("CMS"), "CMS"),
            (Some("x"), None, "no source"),
            (None, Some("cms"), "unnamed cms"),
        ],
    );
    assert_eq!(until_marker(&mut one), ["cms", "unnamed cms"]);
    assert_eq!(until_marker(&mut two), ["cms", "crm", "unnamed cms"]);
}

#[test]
fn both_filters_must_match() {
    let h = herald();
    let mut c = open(&h, "event_types=blog.*,marker.end&sources=cms,marker");
    publish(
        &h,
        &[
            (Some("blog.post"), Some("cms"), "both"),
            (Some("blog.post"), Some("crm"), "type only"),
            (Some("news.post"), Some("cms"), "source only"),
            (Some("blog.post"), None, "no source"),
        ],
    );
    assert_eq!(until_marker(&mut c), ["both"]);
}

#[test]
fn filters_apply_to_targeted_events_too() {
    let h = herald();
    let mut c = open(&h, "event_types=order.*,marker.*");
    h.publish_json(&json!([
        {"to": "u1", "event": "order.paid", "message": "wanted"},
        {"to": "u1", "event": "chat.msg", "message": "filtered out"},
        {"to": "u1", "message": "unnamed filtered out"},
    ]));
    publish(&h, &[]);
    assert_eq!(until_marker(&mut c), ["wanted"]);
}

#[test]
fn percent_encoded_filter_lists() {
    let h = herald();
    // `blog.*,marker.*` with the comma and star encoded.
    let mut c = open(&h, "event_types=blog.%2A%2Cmarker.%2A");
    publish(
        &h,
        &[(Some("blog.x"), None, "in"), (Some("other"), None, "out")],
    );
    assert_eq!(until_marker(&mut c), ["in"]);
}

#[test]
fn heartbeats_pass_every_filter() {
    let h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("HEARTBEAT_SECONDS", "1")]);
    let mut c = open(&h, "event_types=nothing.matches&sources=nowhere");
    let ev = c.expect_event();
    assert_eq!(ev.event.as_deref(), Some("ping"), "{ev:?}");

    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("HEARTBEAT_SECONDS", "1"),
        ("HEARTBEAT_MODE", "comment"),
    ]);
    let mut c = open(&h, "event_types=nothing.matches");
    let item = c.next_item(common::EVENT_TIMEOUT);
    assert_eq!(item, Some(common::SseItem::Comment("ping".into())));
}
