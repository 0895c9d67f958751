//! Hot-path micro-benchmarks (criterion): request-head parsing, JWT
//! verification per algorithm, envelope decoding, SSE encoding, and the
//! cost of fanning one event out to N connected sockets: one `writev` each
//! (the epoll driver) against one io_uring `sendmsg` entry each, under each
//! ring setup (the io_uring driver).
//!
//! Run: `cargo bench --bench hot_path` (add `-- <filter>` for one group).
//! The JWT keys are generated once per run with the `openssl` CLI, which must
//! be on `PATH`.

use std::hint::black_box;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use herald::config::Config;
use herald::conn::auth::Verifier;
use herald::conn::http::{parse_head, Head};
use herald::hub::envelope;
use herald::hub::sse::{encode_event, Payload};
use herald::sys::uring::{Completion, Ring, Setup};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

/// What a browser `EventSource` sends, with a token in the query.
const SSE_REQUEST: &[u8] = b"GET /sse?token=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiaXNzIjoic2hvcCIsImV4cCI6MTk5OTk5OTk5OX0.2P6xbP4zGmXeyt0xl9f7iPBQGnNqhG1mJXyLk3lm6nE&event_types=order.*%2Cchat.message HTTP/1.1\r\n\
Host: push.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/event-stream\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Origin: https://app.example.com\r\n\
Connection: keep-alive\r\n\
Cookie: theme=dark; session=8f14e45fceea167a5a36dedd4bea2543\r\n\
Cache-Control: no-cache\r\n\
Last-Event-ID: 1700000000000-42\r\n\r\n";

fn request_head(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_head");
    group.throughput(Throughput::Bytes(SSE_REQUEST.len() as u64));
    group.bench_function("sse_get", |b| {
        b.iter(|| match parse_head(black_box(SSE_REQUEST)) {
            Head::Complete(req) => req,
            other => panic!("{other:?}"),
        })
    });
    group.finish();
}

/// Runs `openssl` with `args`, panicking with its stderr on failure.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI is needed for the JWT benchmarks");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Generates a private key with `genpkey_args` in `dir`; returns the private
/// and public PEMs.
fn keypair(dir: &Path, name: &str, genpkey_args: &[&str]) -> (Vec<u8>, String) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let private_s = private.to_str().unwrap();
    let public_s = public.to_str().unwrap();
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey_args);
    args.extend_from_slice(&["-out", private_s]);
    openssl(&args);
    openssl(&["pkey", "-in", private_s, "-pubout", "-out", public_s]);
    (
        std::fs::read(&private).unwrap(),
        std::fs::read_to_string(&public).unwrap(),
    )
}

fn verifier(var: &str, value: &str) -> Verifier {
    let cfg = Config::from_lookup(&|k| (k == var).then(|| value.to_string())).unwrap();
    Verifier::from_config(&cfg).unwrap()
}

fn jwt_verify(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("herald-bench-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rsa = keypair(
        &dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let ec = keypair(
        &dir,
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let ed = keypair(&dir, "ed25519", &["-algorithm", "ED25519"]);
    std::fs::remove_dir_all(&dir).unwrap();

    let secret = "a-32-byte-shared-secret-for-hs256";
    let cases = [
        (
            Algorithm::HS256,
            EncodingKey::from_secret(secret.as_bytes()),
            verifier("JWT_SECRET", secret),
        ),
        (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&rsa.0).unwrap(),
            verifier("JWT_PUBLIC_KEY", &rsa.1),
        ),
        (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&ec.0).unwrap(),
            verifier("JWT_PUBLIC_KEY", &ec.1),
        ),
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&ed.0).unwrap(),
            verifier("JWT_PUBLIC_KEY", &ed.1),
        ),
    ];
    let claims = json!({
        "sub": "user-42",
        "iss": "shop",
        "exp": herald::sys::clock::unix_secs() + 86_400,
    });

    let mut group = c.benchmark_group("jwt_verify");
    for (alg, key, verifier) in &cases {
        let token = jsonwebtoken::encode(&Header::new(*alg), &claims, key).unwrap();
        assert!(verifier.verify(Some(&token)).is_ok(), "{alg:?} token");
        group.bench_function(format!("{alg:?}"), |b| {
            b.iter(|| verifier.verify(black_box(Some(&token))).unwrap())
        });
    }
    group.finish();
}

fn envelope_decode(c: &mut Criterion) {
    let single =
        br#"{"to":["663ae0a9","999ae0a9"],"event":"order.paid","message":"Order #1042 was paid"}"#;
    let batch = format!(
        "[{}]",
        (0..100)
            .map(|i| if i % 2 == 0 {
                format!(r#"{{"to":"user-{i}","event":"chat.message","message":"hello {i}"}}"#)
            } else {
                format!(
                    r#"{{"id":"evt-{i}","type":"blog.post.created","source":"cms","timestamp":"2024-01-01T00:00:00Z","data":{{"title":"Post {i}","tags":["a","b"]}}}}"#
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut group = c.benchmark_group("envelope_decode");
    for (name, body, n) in [
        ("single", &single[..], 1),
        ("batch_100", batch.as_bytes(), 100),
    ] {
        assert_eq!(envelope::decode(body).unwrap().len(), n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(name, |b| {
            b.iter(|| envelope::decode(black_box(body)).unwrap())
        });
    }
    group.finish();
}

fn sse_encode(c: &mut Criterion) {
    let text = "Order #1042 was paid.\nTotal: 129.90 EUR, 3 items, shipping to Berlin.\r\nTrack it at https://shop.example.com/orders/1042/tracking?ref=push";
    let data = json!({
        "order": 1042,
        "status": "paid",
        "total": {"amount": 129.9, "currency": "EUR"},
        "items": ["sku-1", "sku-2", "sku-3"],
        "url": "https://shop.example.com/orders/1042",
    });
    let mut group = c.benchmark_group("sse_encode");
    group.bench_function("text_3_lines", |b| {
        b.iter(|| {
            encode_event(
                black_box(Some("1700000000000-42")),
                black_box(Some("order.paid")),
                Payload::Text(black_box(text)),
            )
        })
    });
    group.bench_function("json", |b| {
        b.iter(|| {
            encode_event(
                black_box(Some("1700000000000-42")),
                black_box(Some("order.paid")),
                Payload::Json(black_box(&data)),
            )
        })
    });
    group.finish();
}

/// `n` connected Unix stream sockets: `n / 2` socketpairs whose both ends are
/// written, so each socket receives exactly its peer's frame and N deliveries
/// need only N descriptors (10 000 pairs would hit a 20 000 fd limit).
fn unix_sockets(n: usize) -> Vec<UnixStream> {
    (0..n / 2)
        .flat_map(|_| {
            let (a, b) = UnixStream::pair().unwrap();
            [a, b]
        })
        .collect()
}

/// `n` connected loopback TCP sockets (`n / 2` connections, both ends
/// written), with `TCP_NODELAY` so every write transmits.
fn tcp_sockets(n: usize) -> Vec<TcpStream> {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    (0..n / 2)
        .flat_map(|_| {
            let client = TcpStream::connect(addr).unwrap();
            let (server, _) = listener.accept().unwrap();
            for s in [&client, &server] {
                s.set_nodelay(true).unwrap();
            }
            [client, server]
        })
        .collect()
}

/// One `writev` of `frame` per socket, `iters` times; only the writes are
/// timed. Each socket is drained (its peer's frame read back) between rounds.
fn deliver<S: Read + Write>(sockets: &mut [S], frame: &[u8], iters: u64) -> Duration {
    let mut timed = Duration::ZERO;
    let mut buf = vec![0u8; frame.len()];
    for _ in 0..iters {
        let start = Instant::now();
        for s in sockets.iter_mut() {
            let n = s.write_vectored(&[IoSlice::new(frame)]).unwrap();
            assert_eq!(n, frame.len());
        }
        timed += start.elapsed();
        for s in sockets.iter_mut() {
            s.read_exact(&mut buf).unwrap();
        }
    }
    timed
}

/// One shared frame, as the io_uring driver holds an event's frame.
struct Shared(Arc<[u8]>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// One io_uring `sendmsg` of `frame` per socket, submitted in batches as
/// the driver does, until every completion is in; only that is timed.
fn deliver_uring(
    ring: &mut Ring<Shared>,
    sockets: &mut [TcpStream],
    frame: &Arc<[u8]>,
    iters: u64,
) -> Duration {
    let mut timed = Duration::ZERO;
    let mut buf = vec![0u8; frame.len()];
    let mut cqes = Vec::new();
    for _ in 0..iters {
        let start = Instant::now();
        for (i, s) in sockets.iter().enumerate() {
            let part = Shared(frame.clone());
            ring.send(s.as_raw_fd(), i as u64, std::iter::once(part))
                .unwrap();
        }
        let mut done = 0;
        while done < sockets.len() {
            cqes.clear();
            ring.wait(if done == 0 { 0 } else { 1000 }, &mut cqes)
                .unwrap();
            for c in cqes.drain(..) {
                if let Completion::Sent {
                    result, finished, ..
                } = c
                {
                    assert_eq!(result.unwrap(), frame.len());
                    assert!(finished);
                    done += 1;
                }
            }
        }
        timed += start.elapsed();
        for s in sockets.iter_mut() {
            s.read_exact(&mut buf).unwrap();
        }
    }
    timed
}

fn fan_out(c: &mut Criterion) {
    let message = "x".repeat(160);
    let frame = encode_event(
        Some("1700000000000-42"),
        Some("order.paid"),
        Payload::Text(&message),
    );
    let mut group = c.benchmark_group("fan_out");
    group.sample_size(10);
    for n in [1_000, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        let mut unix = unix_sockets(n);
        group.bench_function(
            BenchmarkId::new(format!("unix_writev_{}B", frame.len()), n),
            |b| b.iter_custom(|iters| deliver(&mut unix, &frame, iters)),
        );
        drop(unix);
        let mut tcp = tcp_sockets(n);
        group.bench_function(
            BenchmarkId::new(format!("tcp_writev_{}B", frame.len()), n),
            |b| b.iter_custom(|iters| deliver(&mut tcp, &frame, iters)),
        );
        let shared: Arc<[u8]> = frame.clone().into();
        for setup in [Setup::CoopSingleIssuer, Setup::Plain, Setup::DeferTaskrun] {
            let Ok(mut ring) = Ring::with_setup(4096, setup) else {
                eprintln!("io_uring {setup:?} unavailable here: skipped");
                continue;
            };
            group.bench_function(
                BenchmarkId::new(format!("tcp_uring_{setup:?}_{}B", frame.len()), n),
                |b| b.iter_custom(|iters| deliver_uring(&mut ring, &mut tcp, &shared, iters)),
            );
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    request_head,
    jwt_verify,
    envelope_decode,
    sse_encode,
    fan_out
);
criterion_main!(benches);
