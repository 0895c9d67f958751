//! herald's own CPU on the hot paths, without the kernel: the reactor core
//! driven through a transport that takes every byte at once and makes no
//! system call (what `perf` would attribute to herald, not to TCP).
//!
//! - `core/new_jwt_connection`: accept → request head → HS256 JWT verified →
//!   route → stream head, `retry:` and connection id sent → close.
//! - `core/broadcast`: one event drained from the inbox and delivered to N
//!   streaming connections (matching, write policy, one send each).
//! - `core/targeted`: one event for one user among N connected users.
//!
//! Run: `cargo bench --bench core`.

use std::hint::black_box;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald::config::Config;
use herald::conn::auth::Verifier;
use herald::hub::envelope::decode;
use herald::hub::inbox::inbox;
use herald::hub::status::IngestStatus;
use herald::hub::Hub;
use herald::reactor::{Core, Out, Sent, Shared, Stats, Transport};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "bench-secret";

/// Takes everything, calls nothing; keeps closed descriptors to drop them
/// outside the timed part.
#[derive(Default)]
struct Null {
    bytes: u64,
    closed: Vec<OwnedFd>,
}

impl Transport for Null {
    fn register(&mut self, _fd: BorrowedFd<'_>, _token: u64) -> io::Result<()> {
        Ok(())
    }

    fn send(&mut self, _fd: BorrowedFd<'_>, _token: u64, out: &[Out<'_>]) -> io::Result<Sent> {
        let n: usize = out.iter().map(|o| o.bytes().len()).sum();
        self.bytes += n as u64;
        Ok(Sent::Now(n))
    }

    fn peer_ip(&self, _fd: BorrowedFd<'_>) -> Option<std::net::IpAddr> {
        Some(std::net::Ipv4Addr::LOCALHOST.into())
    }

    fn clock_ms(&self) -> u64 {
        0
    }

    fn streaming(&mut self, _fd: BorrowedFd<'_>, _token: u64) {}

    fn shutdown_write(&mut self, _fd: BorrowedFd<'_>) {}

    fn abort_on_close(&mut self, _fd: BorrowedFd<'_>) {}

    fn release(&mut self, fd: OwnedFd, _token: u64) {
        self.closed.push(fd);
    }
}

fn setup(capacity: usize) -> (Core<Null>, Hub) {
    // 10k streams hold 10k descriptors (of /dev/null).
    herald::sys::limits::raise_nofile();
    let vars = [
        ("JWT_SECRET", SECRET),
        ("ALLOW_ANONYMOUS", "true"),
        ("HEARTBEAT_SECONDS", "0"),
        ("MAX_CONNECTIONS", "10000000"),
    ];
    let cfg = Config::from_lookup(&|k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })
    .expect("config");
    let verifier = Verifier::from_config(&cfg).expect("verifier");
    let status = Arc::new(IngestStatus::new(false));
    let shared = Arc::new(Shared::new(Arc::new(cfg), verifier, status, None));
    let (tx, rx, _wake) = inbox().expect("eventfd");
    let core = Core::new(
        Null::default(),
        0,
        shared,
        Arc::new(Stats::default()),
        rx,
        capacity,
        0,
    );
    (core, Hub::new(vec![tx], 1 << 20))
}

fn dev_null() -> OwnedFd {
    std::fs::File::open("/dev/null").expect("/dev/null").into()
}

fn token(sub: &str) -> String {
    let claims = json!({ "sub": sub, "iss": "shop", "exp": 4_000_000_000u64 });
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("jwt")
}

/// A browser's request, with the token in the query (or none).
fn request(token: Option<&str>) -> Vec<u8> {
    let query = token.map(|t| format!("?token={t}")).unwrap_or_default();
    format!(
        "GET /sse{query} HTTP/1.1\r\nHost: push.example.com\r\nAccept: text/event-stream\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\r\n"
    )
    .into_bytes()
}

fn new_jwt_connection(c: &mut Criterion) {
    let (mut core, _hub) = setup(1024);
    let req = request(Some(&token("user-42")));
    c.bench_function("core/new_jwt_connection", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // Descriptors are opened and closed outside the timed part,
                // a thousand at a time.
                let batch = left.min(1000);
                left -= batch;
                let fds: Vec<OwnedFd> = (0..batch).map(|_| dev_null()).collect();
                let start = Instant::now();
                for fd in fds {
                    let t = core.on_accept(fd, 1).expect("accepted");
                    assert!(core.on_input(t, black_box(&req), 1));
                    core.on_closed(t, "bench");
                }
                took += start.elapsed();
                core.transport().closed.clear();
            }
            took
        })
    });
}

/// `n` streaming connections: anonymous, or users `u0..un` with `jwt`.
fn streams(core: &mut Core<Null>, n: usize, jwt: bool) {
    for i in 0..n {
        let t = core.on_accept(dev_null(), 1).expect("accepted");
        let jwt = jwt.then(|| token(&format!("u{i}")));
        assert!(core.on_input(t, &request(jwt.as_deref()), 1));
    }
}

fn publish_and_drain(core: &mut Core<Null>, hub: &Hub, body: &[u8], iters: u64) -> Duration {
    let mut took = Duration::ZERO;
    for _ in 0..iters {
        hub.publish(decode(body).expect("envelope"), Default::default())
            .expect("published");
        let start = Instant::now();
        core.drain_inbox(2);
        took += start.elapsed();
    }
    took
}

fn broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.sample_size(20);
    for n in [1_000, 10_000] {
        let (mut core, hub) = setup(n);
        streams(&mut core, n, false);
        let body = json!({ "data": { "order": 42, "status": "paid" } }).to_string();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("broadcast", n), |b| {
            b.iter_custom(|iters| publish_and_drain(&mut core, &hub, body.as_bytes(), iters))
        });
    }
    let n = 10_000;
    let (mut core, hub) = setup(n);
    streams(&mut core, n, true);
    let body = json!({ "to": "u4242", "data": { "order": 42 } }).to_string();
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("targeted", n), |b| {
        b.iter_custom(|iters| publish_and_drain(&mut core, &hub, body.as_bytes(), iters))
    });
    group.finish();
}

criterion_group!(benches, new_jwt_connection, broadcast);
criterion_main!(benches);
