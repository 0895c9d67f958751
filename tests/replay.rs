//! Replay (SPEC §2 "Replay", issue #3): `Last-Event-ID` / `lastEventId`
//! replay exactly once on every reactor, `history-gap`, `earliest`, filters
//! during replay, `HISTORY_ON_CONNECT`, envelope ids, and replay in
//! Redis-stream mode (stream entry ids).
//!
//! "Nothing else arrived" is shown by publishing a marker afterwards and
//! checking that it is the very next event. Before any reconnection, every
//! reactor is shown to have taken in the events (a listener on each reactor
//! received them), so that history is the same on whichever reactor the
//! reconnection lands.

mod common;

use std::time::{Duration, Instant};

use common::{get_json, jwt, Herald, RedisServer, SseClient, SseEvent, EVENT_TIMEOUT};
use serde_json::{json, Value};

const WORKERS: usize = 2;

// ----- helpers ---------------------------------------------------------------------

/// Open connections per reactor, from `/stats`.
fn reactor_counts(h: &Herald) -> Vec<u64> {
    let s = get_json(h.admin_addr(), "/stats");
    s["reactors"]
        .as_array()
        .unwrap_or_else(|| panic!("/stats has no `reactors` array: {s}"))
        .iter()
        .map(|v| v.as_u64().expect("reactor count"))
        .collect()
}

/// Waits (bounded) until the reactors hold `total` open connections in all
/// (closed ones and the start-up health checks gone), and returns the counts.
fn settled_counts(h: &Herald, total: u64) -> Vec<u64> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let counts = reactor_counts(h);
        if counts.iter().sum::<u64>() == total {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "reactors hold {counts:?} connections, expected {total} in all"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Opens streams with `open` until every reactor holds at least one more
/// than in `before` and at least `min` were opened (bounded). `held` is how
/// many connections are already open.
fn open_on_every_reactor(
    h: &Herald,
    held: u64,
    min: usize,
    mut open: impl FnMut() -> SseClient,
) -> Vec<SseClient> {
    let before = settled_counts(h, held);
    assert_eq!(before.len(), WORKERS, "one count per reactor");
    let mut out = Vec::new();
    loop {
        out.push(open());
        let counts = settled_counts(h, held + out.len() as u64);
        let everywhere = counts.iter().zip(&before).all(|(now, was)| now > was);
        if everywhere && out.len() >= min {
            return out;
        }
        assert!(
            out.len() < 48,
            "{} connections never reached every reactor: {before:?} -> {counts:?}",
            out.len()
        );
    }
}

fn herald(extra: &[(&str, &str)]) -> Herald {
    let mut envs = vec![("JWT_SECRET", jwt::SECRET)];
    envs.extend_from_slice(extra);
    Herald::start(&envs)
}

fn token(user: &str) -> String {
    jwt::user(user)
}

fn with_last_id(h: &Herald, user: &str, last: &str) -> SseClient {
    h.sse(
        &format!("/sse?token={}", token(user)),
        &[("Last-Event-ID", last)],
    )
}

fn next(c: &mut SseClient) -> SseEvent {
    c.expect_non_ping()
}

fn expect_data(c: &mut SseClient, data: &str) -> SseEvent {
    let ev = next(c);
    assert_eq!(ev.data, data, "unexpected event {ev:?}");
    ev
}

/// Asserts the next events are exactly `want` (data and id), in order.
fn expect_seq(c: &mut SseClient, want: &[(String, String)], what: &str) {
    for (data, id) in want {
        let ev = next(c);
        assert_eq!(
            (ev.data.as_str(), ev.id.as_deref()),
            (data.as_str(), Some(id.as_str())),
            "{what}: expected {data:?} ({id}), got {ev:?}"
        );
    }
}

/// Asserts the next event is `event: history-gap` for `last`.
fn expect_gap(c: &mut SseClient, last: &str) {
    let ev = next(c);
    assert_eq!(ev.event.as_deref(), Some("history-gap"), "{ev:?}");
    assert_eq!(ev.data_json(), json!({"lastEventId": last}), "{ev:?}");
    assert_eq!(ev.id, None, "the gap event carries no id: {ev:?}");
}

/// Publishes a broadcast marker and asserts it is the next event of each.
fn marker_next(h: &Herald, clients: &mut [&mut SseClient], text: &str) -> SseEvent {
    h.publish_json(&json!({"event": "marker", "message": text}));
    let mut seen = None;
    for c in clients.iter_mut() {
        let ev = expect_data(c, text);
        assert_eq!(ev.event.as_deref(), Some("marker"));
        seen = Some(ev);
    }
    seen.expect("at least one client")
}

/// Publishes `env` and returns the event as `observer` received it.
fn publish_seen(h: &Herald, env: Value, observers: &mut [&mut SseClient]) -> SseEvent {
    let data = env["message"].as_str().expect("message").to_string();
    h.publish_json(&env);
    let mut seen = None;
    for o in observers.iter_mut() {
        seen = Some(expect_data(o, &data));
    }
    seen.expect("one observer")
}

fn pair(ev: &SseEvent) -> (String, String) {
    (ev.data.clone(), ev.id.clone().expect("event id"))
}

// ----- 7. replay exactly once, on every reactor -----------------------------------------

#[test]
fn replay_after_last_event_id_exactly_once_on_every_reactor() {
    let h = herald(&[]);
    // Observers of u1 on every reactor: they see every event live (the
    // ground truth for ids) and show that each reactor took it in.
    let mut observers = open_on_every_reactor(&h, 0, WORKERS, || h.sse_with_token(&token("u1")));
    let mut c = h.sse_with_token(&token("u1"));
    let held = observers.len() as u64 + 1;
    settled_counts(&h, held);

    let mut ids = Vec::new();
    for i in 1..=3 {
        h.publish_json(&json!({"event": "n", "message": format!("e{i}")}));
        let ev = expect_data(&mut c, &format!("e{i}"));
        for o in observers.iter_mut() {
            assert_eq!(expect_data(o, &format!("e{i}")).id, ev.id);
        }
        ids.push(ev.id.clone().expect("id"));
    }
    let id3 = ids[2].clone();
    c.close();
    settled_counts(&h, held - 1);

    // While away: broadcast, to u1, to u2, other app, this app to u1,
    // another app to u1, broadcast.
    let away = [
        (json!({"event": "n", "message": "e4 all"}), true),
        (json!({"to": ["u1"], "message": "e5 u1"}), true),
        (json!({"to": "u2", "message": "e5 u2"}), false),
        (json!({"app": "shop", "message": "e5 shop"}), false),
        (
            json!({"app": "default", "to": "u1", "message": "e5 default u1"}),
            true,
        ),
        (
            json!({"app": "shop", "to": "u1", "message": "e5 shop u1"}),
            false,
        ),
        (json!({"event": "n", "message": "e6 all"}), true),
    ];
    let mut want = Vec::new();
    // Make u2 and shop listeners exist so those events are really sent.
    let mut u2 = h.sse_with_token(&token("u2"));
    let mut shop = h.sse_with_token(&jwt::user_in("u1", "shop"));
    let held = held - 1 + 2;
    for (env, for_u1) in away {
        let data = env["message"].as_str().unwrap().to_string();
        h.publish_json(&env);
        if for_u1 {
            let mut id = None;
            for o in observers.iter_mut() {
                let ev = expect_data(o, &data);
                assert!(id.is_none() || id == ev.id);
                id = ev.id;
            }
            want.push((data, id.expect("id")));
        }
    }
    // The u2 and shop listeners got theirs (and every reactor is past them).
    expect_data(&mut u2, "e4 all");
    expect_data(&mut u2, "e5 u2");
    expect_data(&mut u2, "e6 all");
    expect_data(&mut shop, "e4 all");
    expect_data(&mut shop, "e5 u1");
    expect_data(&mut shop, "e5 shop");
    expect_data(&mut shop, "e5 shop u1");
    expect_data(&mut shop, "e6 all");

    // Reconnect with Last-Event-ID = e3 many times, landing on every
    // reactor; a few use the `lastEventId` query parameter instead.
    let mut n = 0;
    let mut replays = open_on_every_reactor(&h, held, 6, || {
        n += 1;
        if n % 3 == 0 {
            h.sse(
                &format!("/sse?token={}&lastEventId={id3}", token("u1")),
                &[],
            )
        } else {
            with_last_id(&h, "u1", &id3)
        }
    });
    for (i, r) in replays.iter_mut().enumerate() {
        expect_seq(r, &want, &format!("replay #{i}"));
    }
    // Then live, with no duplicate and no gap: the next event is e7.
    let mut all: Vec<&mut SseClient> = replays.iter_mut().collect();
    all.extend(observers.iter_mut());
    let e7 = marker_next(&h, &mut all, "e7");
    let last = want.last().unwrap().1.clone();
    assert_ne!(e7.id, Some(last));

    // A reconnection with the id of the latest event gets nothing but live.
    let e7_id = e7.id.clone().unwrap();
    let mut caught_up = with_last_id(&h, "u1", &e7_id);
    marker_next(&h, &mut [&mut caught_up], "e8");
}

#[test]
fn replay_resumes_after_an_envelope_own_id() {
    let h = herald(&[]);
    let mut observers = open_on_every_reactor(&h, 0, WORKERS, || h.sse_with_token(&token("u1")));
    let mut obs: Vec<&mut SseClient> = observers.iter_mut().collect();
    publish_seen(&h, json!({"id": "evt-1", "message": "a"}), &mut obs);
    let b = publish_seen(&h, json!({"message": "b"}), &mut obs);
    let c = publish_seen(&h, json!({"id": "evt-3", "message": "c"}), &mut obs);
    assert_eq!(c.id.as_deref(), Some("evt-3"));
    let mut r = with_last_id(&h, "u1", "evt-1");
    expect_seq(&mut r, &[pair(&b), pair(&c)], "replay after evt-1");
    marker_next(&h, &mut [&mut r], "live");
}

// ----- 8. history-gap and earliest ---------------------------------------------------------

#[test]
fn evicted_or_unknown_id_gets_history_gap_then_everything_held() {
    let h = herald(&[("HISTORY_SIZE", "3")]);
    let mut observers = open_on_every_reactor(&h, 0, WORKERS, || h.sse_with_token(&token("u1")));
    let mut obs: Vec<&mut SseClient> = observers.iter_mut().collect();
    let events: Vec<SseEvent> = (1..=6)
        .map(|i| {
            publish_seen(
                &h,
                json!({"event": "n", "message": format!("e{i}")}),
                &mut obs,
            )
        })
        .collect();
    let held: Vec<(String, String)> = events[3..].iter().map(pair).collect();
    let id1 = events[0].id.clone().unwrap();

    // Evicted id.
    let mut evicted = with_last_id(&h, "u1", &id1);
    expect_gap(&mut evicted, &id1);
    expect_seq(&mut evicted, &held, "after an evicted id");
    // An id that never existed (header and query forms).
    let mut unknown = with_last_id(&h, "u1", "1-0");
    expect_gap(&mut unknown, "1-0");
    expect_seq(&mut unknown, &held, "after an unknown id");
    let mut unknown_q = h.sse(
        &format!("/sse?token={}&lastEventId=never-seen", token("u1")),
        &[],
    );
    expect_gap(&mut unknown_q, "never-seen");
    expect_seq(&mut unknown_q, &held, "after an unknown id (query)");
    // `earliest`: everything held, no gap event.
    let mut earliest = with_last_id(&h, "u1", "earliest");
    expect_seq(&mut earliest, &held, "earliest");
    let mut earliest_q = h.sse(
        &format!("/sse?token={}&lastEventId=earliest", token("u1")),
        &[],
    );
    expect_seq(&mut earliest_q, &held, "earliest (query)");
    // A still-held id: no gap.
    let id4 = events[3].id.clone().unwrap();
    let mut held_id = with_last_id(&h, "u1", &id4);
    expect_seq(&mut held_id, &held[1..], "after a held id");

    let mut all: Vec<&mut SseClient> = vec![
        &mut evicted,
        &mut unknown,
        &mut unknown_q,
        &mut earliest,
        &mut earliest_q,
        &mut held_id,
    ];
    all.extend(obs);
    marker_next(&h, &mut all, "live");
}

/// Events without `app` and events of one app are kept in separate rings,
/// each evicted on its own. A listener whose last id is still held must not
/// silently miss events after it that were evicted from the other ring:
/// either it gets them, or it is told with `history-gap`.
#[test]
fn replay_never_skips_evicted_events_silently() {
    let h = herald(&[("HISTORY_SIZE", "3")]);
    let mut observers = open_on_every_reactor(&h, 0, WORKERS, || h.sse_with_token(&token("u1")));
    let mut obs: Vec<&mut SseClient> = observers.iter_mut().collect();
    // One event of app `default`, then four without an app.
    let a1 = publish_seen(&h, json!({"app": "default", "message": "a1"}), &mut obs);
    let g: Vec<SseEvent> = (1..=4)
        .map(|i| publish_seen(&h, json!({"message": format!("g{i}")}), &mut obs))
        .collect();
    let a1_id = a1.id.clone().unwrap();
    let mut r = with_last_id(&h, "u1", &a1_id);
    let first = next(&mut r);
    if first.event.as_deref() == Some("history-gap") {
        assert_eq!(first.data_json(), json!({"lastEventId": a1_id}));
    } else {
        assert_eq!(
            pair(&first),
            pair(&g[0]),
            "after {a1_id} the listener missed g1 (evicted) without a history-gap event"
        );
    }
}

// ----- 9. filters during replay --------------------------------------------------------------

#[test]
fn replay_applies_the_listener_filters() {
    let h = herald(&[]);
    let mut observers = open_on_every_reactor(&h, 0, WORKERS, || h.sse_with_token(&token("u1")));
    let mut obs: Vec<&mut SseClient> = observers.iter_mut().collect();
    let start = publish_seen(
        &h,
        json!({"event": "blog.start", "message": "start"}),
        &mut obs,
    );
    let mut evs: Vec<SseEvent> = Vec::new();
    for env in [
        json!({"event": "news.flash", "source": "cms", "message": "news"}),
        json!({"event": "blog.post.created", "source": "cms", "message": "blog created"}),
        json!({"to": "u2", "event": "blog.other", "source": "cms", "message": "blog for u2"}),
        json!({"message": "unnamed"}),
        json!({"type": "blog.edit", "source": "wiki", "message": "blog edit"}),
        json!({"event": "shop.order", "source": "cms", "message": "shop"}),
        json!({"to": "u1", "event": "blog.private", "message": "blog private"}),
    ] {
        if env["to"] == "u2" {
            // Not for the u1 observers (nor for the u1 listeners below).
            h.publish_json(&env);
        } else {
            evs.push(publish_seen(&h, env, &mut obs));
        }
    }
    let by_data = |d: &str| {
        pair(
            evs.iter()
                .find(|e| e.data == d)
                .unwrap_or_else(|| panic!("{d}")),
        )
    };
    let start_id = start.id.clone().unwrap();

    let mut blog = h.sse(
        &format!("/sse?token={}&event_types=blog.*", token("u1")),
        &[("Last-Event-ID", &start_id)],
    );
    expect_seq(
        &mut blog,
        &[
            by_data("blog created"),
            by_data("blog edit"),
            by_data("blog private"),
        ],
        "event_types=blog.*",
    );
    let mut cms = h.sse(
        &format!("/sse?token={}&sources=cms", token("u1")),
        &[("Last-Event-ID", &start_id)],
    );
    expect_seq(
        &mut cms,
        &[by_data("news"), by_data("blog created"), by_data("shop")],
        "sources=cms",
    );
    let mut both = h.sse(
        &format!(
            "/sse?token={}&event_types=*.created,message&sources=cms&lastEventId=earliest",
            token("u1")
        ),
        &[],
    );
    expect_seq(&mut both, &[by_data("blog created")], "both filters");

    // Live events still go through the filters: a non-matching one is
    // skipped, the matching marker is next.
    h.publish_json(&json!({"event": "news.late", "source": "wiki", "message": "skip me"}));
    h.publish_json(&json!({"event": "blog.created", "source": "cms", "message": "live"}));
    for c in [&mut blog, &mut cms, &mut both] {
        expect_data(c, "live");
    }
}

// ----- 10. HISTORY_ON_CONNECT --------------------------------------------------------------

/// Publishes a mix and waits until every reactor took it in; returns the
/// observers (u9, broadcast only).
fn publish_mix(h: &Herald) -> Vec<SseClient> {
    let mut observers = open_on_every_reactor(h, 0, WORKERS, || h.sse_with_token(&token("u9")));
    for env in [
        json!({"message": "a all"}),
        json!({"to": "u1", "message": "b u1"}),
        json!({"to": "u2", "message": "c u2"}),
        json!({"app": "shop", "message": "d shop"}),
        json!({"to": ["u1"], "app": "shop", "message": "f shop u1"}),
        // Last, so that the observers seeing it shows every reactor holds all.
        json!({"message": "e all"}),
    ] {
        h.publish_json(&env);
    }
    for o in observers.iter_mut() {
        expect_data(o, "a all");
        expect_data(o, "e all");
    }
    observers
}

#[test]
fn history_on_connect_sends_the_last_n_this_listener_would_get() {
    let h = herald(&[("HISTORY_ON_CONNECT", "2")]);
    let mut observers = publish_mix(&h);
    let held = observers.len() as u64;
    let data = |c: &mut SseClient| next(c).data;
    let mut u1s = open_on_every_reactor(&h, held, 2, || h.sse_with_token(&token("u1")));
    for c in u1s.iter_mut() {
        assert_eq!([data(c), data(c)], ["b u1", "e all"]);
    }
    let mut u2 = h.sse_with_token(&token("u2"));
    assert_eq!([data(&mut u2), data(&mut u2)], ["c u2", "e all"]);
    let mut shop = h.sse_with_token(&jwt::user_in("u1", "shop"));
    assert_eq!([data(&mut shop), data(&mut shop)], ["f shop u1", "e all"]);
    let mut shop_u7 = h.sse_with_token(&jwt::user_in("u7", "shop"));
    assert_eq!(
        [data(&mut shop_u7), data(&mut shop_u7)],
        ["d shop", "e all"]
    );
    // A Last-Event-ID reconnection is a replay, not HISTORY_ON_CONNECT.
    let mut earliest = with_last_id(&h, "u2", "earliest");
    assert_eq!(
        [
            data(&mut earliest),
            data(&mut earliest),
            data(&mut earliest)
        ],
        ["a all", "c u2", "e all"]
    );

    let mut all: Vec<&mut SseClient> = u1s.iter_mut().collect();
    all.extend([&mut u2, &mut shop, &mut shop_u7, &mut earliest]);
    all.extend(observers.iter_mut());
    marker_next(&h, &mut all, "live");
}

#[test]
fn fresh_connection_gets_no_history_by_default() {
    let h = herald(&[]);
    let mut observers = publish_mix(&h);
    let held = observers.len() as u64;
    let mut fresh = open_on_every_reactor(&h, held, 2, || h.sse_with_token(&token("u1")));
    let mut all: Vec<&mut SseClient> = fresh.iter_mut().collect();
    all.extend(observers.iter_mut());
    marker_next(&h, &mut all, "first live");
}

// ----- 11. replay in Redis-stream mode --------------------------------------------------

#[test]
fn streams_mode_replay_uses_stream_entry_ids() {
    let r = RedisServer::start();
    let url = r.url();
    let h = herald(&[("REDIS_URL", &url), ("REDIS_STREAM", "hs")]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_json(h.admin_addr(), "/health") != json!({"status": "ok", "redis": "up"}) {
        assert!(Instant::now() < deadline, "redis never up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut observers = open_on_every_reactor(&h, 0, WORKERS, || h.sse_with_token(&token("u1")));
    let mut c = h.sse_with_token(&token("u1"));
    // XADDs `env`; every u1 observer (and `also`) must then see `want`,
    // given as (data, id suffix) with the entry id put in front.
    let mut xadd_seen = |env: Value,
                         want: &[(&str, &str)],
                         also: Option<&mut SseClient>|
     -> (String, Vec<(String, String)>) {
        let id = r.xadd("hs", &env.to_string());
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(d, suffix)| (d.to_string(), format!("{id}{suffix}")))
            .collect();
        for o in observers.iter_mut().chain(also) {
            expect_seq(o, &want, "live");
        }
        (id, want)
    };
    xadd_seen(json!({"message": "s1"}), &[("s1", "")], Some(&mut c));
    let (s2, _) = xadd_seen(json!({"message": "s2"}), &[("s2", "")], Some(&mut c));
    c.close();
    let mut want = Vec::new();
    want.extend(xadd_seen(json!({"to": "u1", "message": "s3"}), &[("s3", "")], None).1);
    r.xadd("hs", r#"{"to":"u2","message":"s3 u2"}"#);
    let (s4, w) = xadd_seen(
        json!([{"message": "s4.0"}, {"to": "u2", "message": "s4.1 u2"}, {"message": "s4.2"}]),
        &[("s4.0", ".0"), ("s4.2", ".2")],
        None,
    );
    want.extend(w);
    let last = &s2;

    let held = observers.len() as u64;
    let mut replays = open_on_every_reactor(&h, held, 4, || with_last_id(&h, "u1", last));
    for (i, rc) in replays.iter_mut().enumerate() {
        expect_seq(rc, &want, &format!("stream replay #{i}"));
    }
    // Resume from inside a batch entry.
    let mut mid = with_last_id(&h, "u1", &format!("{s4}.0"));
    expect_seq(&mut mid, &want[2..], "after a batch element");

    let live = r.xadd("hs", r#"{"event":"marker","message":"live"}"#);
    for rc in replays.iter_mut().chain([&mut mid]) {
        let ev = expect_data(rc, "live");
        assert_eq!(ev.id.as_deref(), Some(live.as_str()));
    }
}

/// A replay of more events than one `sendmsg`/`writev` may carry (1,024
/// pieces) arrives whole, in order, under every backend.
#[test]
fn a_replay_of_more_than_1024_events_arrives_whole() {
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("HISTORY_SIZE", "1500"),
        ("HEARTBEAT_SECONDS", "0"),
    ]);
    let batch: Vec<serde_json::Value> = (0..1200)
        .map(|i| serde_json::json!({ "message": format!("m{i}") }))
        .collect();
    h.publish_json(&serde_json::Value::Array(batch));
    let token = jwt::user("u1");
    let bearer = format!("Bearer {token}");
    let mut c = h.connect(
        "/sse",
        &[("Authorization", &bearer), ("Last-Event-ID", "earliest")],
    );
    assert_eq!(c.status(), 200);
    for i in 0..1200 {
        let ev = c.expect_event();
        assert_eq!(ev.data, format!("m{i}"));
    }
}
