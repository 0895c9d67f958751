//! Unit tests of option parsing.

use super::*;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn urls_sources_durations() {
    let u = parse_http_url("http://127.0.0.1:18080/sse?x=1").unwrap();
    assert_eq!(
        (u.addr.port(), u.host.as_str(), u.path.as_str()),
        (18080, "127.0.0.1:18080", "/sse?x=1")
    );
    assert_eq!(parse_http_url("http://127.0.0.1?a").unwrap().path, "/?a");
    assert_eq!(parse_http_url("http://127.0.0.1").unwrap().addr.port(), 80);
    assert!(parse_http_url("https://x").is_err());
    let s = parse_src("127.0.0.2-127.0.0.4,127.0.1.1").unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s[3], Ipv4Addr::new(127, 0, 1, 1));
    assert!(parse_src("127.0.0.9-127.0.0.2").is_err());
    assert_eq!(duration("d", "250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(duration("d", "2m").unwrap(), Duration::from_secs(120));
    assert_eq!(duration("d", "3").unwrap(), Duration::from_secs(3));
    assert!(duration("d", "-1s").is_err());
}

#[test]
fn modes_need_what_they_use() {
    let o = parse(
        Mode::Connect,
        &args("-n 19_000 --procs 2 --server-pid 1,2 --server-pid 3"),
    )
    .unwrap();
    assert_eq!(
        (o.connections, o.procs, o.server_pids.len()),
        (19_000, Some(2), 3)
    );
    assert!(
        parse(Mode::Fanout, &args("-n 5")).is_err(),
        "fanout needs --pub"
    );
    let f = parse(
        Mode::Fanout,
        &args("--pub redis://127.0.0.1:6379 --events 8 --to random:3"),
    )
    .unwrap();
    let p = f.publisher.unwrap();
    assert_eq!((p.kind, p.key.as_str()), (PubKind::Redis, "herald"));
    let x = parse(
        Mode::Fanout,
        &args("--pub redis://127.0.0.1:6379 --pub-kind redis-stream"),
    );
    assert_eq!(x.unwrap().publisher.unwrap().key, "herald-stream");
    assert_eq!(
        f.audience,
        Audience::Random {
            k: 3,
            seed: 1,
            every: 0
        }
    );
    let s = parse(
        Mode::Storm,
        &args("--pub http://127.0.0.1:9090/publish --events 8"),
    )
    .unwrap();
    assert_eq!(s.storm_after, 2);
    assert!(parse(
        Mode::Fanout,
        &args("--pub http://127.0.0.1:1/pub --pub-kind nchan --to random:2")
    )
    .is_err());
    assert!(parse(Mode::Connect, &args("--bogus")).is_err());
}
