//! Streams ending when their token expires (`CLOSE_ON_TOKEN_EXPIRY`), under
//! the fake transport: on the wall clock's second `exp` + leeway, counted
//! as `expired`, never touching another stream (a longer token, an
//! anonymous listener, the next occupant of the slot).

use super::*;
use crate::reactor::stats::Why;

/// Unix seconds the rig's wall clock shows at monotonic `ms` (see
/// `Rig::tick`).
fn unix_at(ms: u64) -> u64 {
    UNIX_MS / 1000 + (ms - T0) / 1000
}

/// The monotonic time at which the rig's wall clock shows `unix_s`.
fn ms_at(unix_s: u64) -> u64 {
    T0 + (unix_s - UNIX_MS / 1000) * 1000
}

/// A request as `sub` with a token expiring at `exp`. Tokens are checked
/// against the real clock when the stream opens, so `exp` must be ahead of
/// it; the rig's wall clock is then moved to it by hand.
fn request_expiring(sub: &str, exp: u64) -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let claims = serde_json::json!({"sub": sub, "exp": exp});
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = encode(&Header::default(), &claims, &key).expect("jwt");
    format!("GET /sse?token={token} HTTP/1.1\r\n\r\n")
}

fn expired(r: &Rig) -> u64 {
    r.stats.disconnects(Why::Expired)
}

#[test]
fn a_stream_ends_on_the_second_its_token_expires_plus_leeway() {
    let mut r = rig(&[("JWT_LEEWAY_SECONDS", "3"), ("HEARTBEAT_SECONDS", "0")]);
    let exp = crate::sys::clock::unix_secs() + 60;
    let short = r.subscribe(&request_expiring("u1", exp));
    let long = r.subscribe(&request_expiring("u2", exp + 3600));
    let anon = r.subscribe(GET);

    // The last second the verifier would still accept the token.
    let last = ms_at(exp + 2) + 999;
    assert_eq!(unix_at(last), exp + 2);
    r.tick(last);
    assert!(r.is_open(short), "closed before exp + leeway");
    r.deliver(&event("before"));
    assert_eq!(r.ids(short), ids(&["before"]));

    r.tick(last + 1);
    assert!(!r.is_open(short), "open at exp + leeway");
    assert_eq!(r.releases(short), 1);
    assert_eq!(expired(&r), 1);
    assert_eq!(r.streaming(), 2);
    r.deliver(&event("after"));
    assert_eq!(r.ids(short), ids(&["before"]), "an event after expiry");
    assert_eq!(r.ids(long), ids(&["before", "after"]));
    assert_eq!(r.ids(anon), ids(&["before", "after"]));

    // The longer token ends in its turn; the anonymous stream never does.
    r.tick(ms_at(exp + 3600 + 3));
    assert!(!r.is_open(long) && r.is_open(anon));
    assert_eq!(expired(&r), 2);
    r.tick(ms_at(exp + 10 * 365 * 86_400));
    assert!(r.is_open(anon));
    assert_eq!(expired(&r), 2);
}

#[test]
fn streams_outlive_their_tokens_when_told_to() {
    let mut r = rig(&[
        ("CLOSE_ON_TOKEN_EXPIRY", "false"),
        ("JWT_LEEWAY_SECONDS", "0"),
        ("HEARTBEAT_SECONDS", "0"),
    ]);
    let exp = crate::sys::clock::unix_secs() + 60;
    let t = r.subscribe(&request_expiring("u1", exp));
    r.tick(ms_at(exp + 600));
    assert!(r.is_open(t));
    r.deliver(&event("late"));
    assert_eq!(r.ids(t), ids(&["late"]));
    assert_eq!(expired(&r), 0);
}

#[test]
fn an_expiry_never_ends_the_next_occupant_of_the_slot() {
    let mut r = rig(&[("JWT_LEEWAY_SECONDS", "0"), ("HEARTBEAT_SECONDS", "0")]);
    let exp = crate::sys::clock::unix_secs() + 60;
    let first = r.subscribe(&request_expiring("u1", exp));
    r.core.on_closed(first, "peer went away");
    assert!(!r.is_open(first));
    let second = r.subscribe(&request_expiring("u2", exp + 3600));
    assert_eq!(second & 0xffff_ffff, first & 0xffff_ffff, "slot reused");
    r.tick(ms_at(exp + 1));
    assert!(r.is_open(second), "ended by its predecessor's token");
    assert_eq!(expired(&r), 0);
    r.tick(ms_at(exp + 3600));
    assert!(!r.is_open(second));
    assert_eq!(expired(&r), 1);
}

#[test]
fn tokens_expiring_together_end_a_batch_per_turn() {
    use crate::reactor::ticks::EXPIRE_BATCH;
    let n = EXPIRE_BATCH + 10;
    // Each stream holds a descriptor (of /dev/null).
    let nofile = crate::sys::limits::raise_nofile();
    if nofile < n as u64 + 256 {
        eprintln!("skipped: RLIMIT_NOFILE is {nofile}");
        return;
    }
    let mut r = rig(&[("JWT_LEEWAY_SECONDS", "0"), ("HEARTBEAT_SECONDS", "0")]);
    let exp = crate::sys::clock::unix_secs() + 60;
    let request = request_expiring("u", exp);
    let streams: Vec<u64> = (0..n).map(|_| r.subscribe(&request)).collect();
    let at = ms_at(exp);
    r.tick(at - 1);
    assert!(r.core.next_timeout(at - 1) > 0);
    assert_eq!(r.streaming(), n);

    r.tick(at);
    assert_eq!(expired(&r), EXPIRE_BATCH as u64);
    assert_eq!(r.streaming(), 10);
    assert_eq!(
        r.core.next_timeout(at),
        0,
        "more are due: come back at once"
    );
    r.tick(at);
    assert_eq!(expired(&r), n as u64);
    assert!(streams.iter().all(|&t| !r.is_open(t)));
    assert!(r.core.next_timeout(at) > 0);
}
