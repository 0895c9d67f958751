//! Per-address rate limit on `/sse` attempts (SPEC §7): a token bucket per
//! client address, `RATE_LIMIT_PER_IP_PER_MIN` tokens a minute, up to
//! `RATE_LIMIT_BURST` held. Time is passed in.
//!
//! Contract:
//! - Shared by every reactor: [`SHARDS`] locks chosen by address, each held
//!   for one lookup.
//! - Bounded memory: each shard keeps at most [`SHARD_CAPACITY`] addresses
//!   (65,536 in all, about 2.5 MiB). A full shard first forgets addresses
//!   whose bucket has refilled (they are no different from new ones), then,
//!   if it is still over three-quarters full, an arbitrary eighth. So a
//!   flood from a million addresses costs a bounded table and, at worst,
//!   lets some of those addresses start again with a full bucket.
//! - The client address is the peer, unless the peer is in
//!   `TRUSTED_PROXIES`: then it is the right-most `X-Forwarded-For` entry
//!   that is not a trusted proxy ([`client_ip`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use hashbrown::HashMap;

use crate::config::Cidr;

pub const SHARDS: usize = 64;
pub const SHARD_CAPACITY: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: u64,
}

/// The limiter; `per_min == 0` turns it off. The rate and burst may change
/// while it runs ([`RateLimiter::set`], on `SIGHUP`): each check reads them
/// (relaxed; a check racing a change may use either value).
pub struct RateLimiter {
    per_min: AtomicU32,
    burst: AtomicU32,
    shards: Box<[Mutex<HashMap<IpAddr, Bucket>>]>,
}

impl RateLimiter {
    pub fn new(per_min: u32, burst: u32) -> Self {
        Self {
            per_min: AtomicU32::new(per_min),
            burst: AtomicU32::new(burst),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.per_min.load(Ordering::Relaxed) > 0
    }

    /// New rate and burst for the checks from now on; the buckets stay (a
    /// bucket above the new burst is cut to it at its next check).
    pub fn set(&self, per_min: u32, burst: u32) {
        self.per_min.store(per_min, Ordering::Relaxed);
        self.burst.store(burst, Ordering::Relaxed);
    }

    /// Takes one attempt for `ip` at `now_ms` (monotonic). `Err` holds the
    /// whole seconds until the next attempt would be allowed.
    pub fn check(&self, ip: IpAddr, now_ms: u64) -> Result<(), u64> {
        let per_min = self.per_min.load(Ordering::Relaxed);
        if per_min == 0 {
            return Ok(());
        }
        let ip = bucket_of(ip);
        let per_ms = f64::from(per_min) / 60_000.0;
        let burst = f64::from(self.burst.load(Ordering::Relaxed));
        let shard = &self.shards[shard_of(ip)];
        let mut table = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !table.contains_key(&ip) && table.len() >= SHARD_CAPACITY {
            make_room(&mut table, now_ms, per_ms, burst);
        }
        let b = table.entry(ip).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        b.tokens = (b.tokens + now_ms.saturating_sub(b.at_ms) as f64 * per_ms).min(burst);
        // Reactors' clocks are read at slightly different moments: never
        // move a bucket back in time.
        b.at_ms = b.at_ms.max(now_ms);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / per_ms / 1000.0).ceil().max(1.0) as u64)
        }
    }
}

fn shard_of(ip: IpAddr) -> usize {
    let bits = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    // Fibonacci hashing of the folded address.
    let folded = (bits as u64) ^ ((bits >> 64) as u64);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize % SHARDS
}

/// Forgets refilled buckets; if that is not enough, an arbitrary eighth.
fn make_room(table: &mut HashMap<IpAddr, Bucket>, now_ms: u64, per_ms: f64, burst: f64) {
    table.retain(|_, b| b.tokens + now_ms.saturating_sub(b.at_ms) as f64 * per_ms < burst);
    if table.len() >= SHARD_CAPACITY * 3 / 4 {
        let drop: Vec<IpAddr> = table.keys().take(SHARD_CAPACITY / 8).copied().collect();
        for ip in drop {
            table.remove(&ip);
        }
    }
}

/// The client's address: `peer`, or, when `peer` is a trusted proxy, the
/// right-most `X-Forwarded-For` entry that is not a trusted proxy (the
/// left-most entry when all are trusted). Unparsable entries end the walk
/// at the last good address.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for entry in forwarded_for.unwrap_or("").rsplit(',') {
        let Some(ip) = parse_hop(entry.trim()) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The bucket an address counts against: IPv4 addresses one by one, IPv6
/// by /64 (one host usually holds a whole /64 and could rotate through it).
fn bucket_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_the_rate_and_retry_after() {
        let l = RateLimiter::new(60, 3); // one a second, three at once
        for _ in 0..3 {
            assert_eq!(l.check(ip("10.0.0.1"), 0), Ok(()));
        }
        assert_eq!(l.check(ip("10.0.0.1"), 0), Err(1));
        assert_eq!(l.check(ip("10.0.0.2"), 0), Ok(()), "addresses are apart");
        assert_eq!(l.check(ip("10.0.0.1"), 999), Err(1));
        assert_eq!(l.check(ip("10.0.0.1"), 1000), Ok(()));
        let slow = RateLimiter::new(2, 1); // one every 30 s
        assert_eq!(slow.check(ip("10.0.0.3"), 0), Ok(()));
        assert_eq!(slow.check(ip("10.0.0.3"), 0), Err(30));
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded() {
        let l = RateLimiter::new(60, 10);
        for i in 0..200_000u32 {
            let _ = l.check(IpAddr::V4(i.into()), 0);
        }
        let held: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= SHARDS * SHARD_CAPACITY, "{held} addresses held");
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let xff = Some("203.0.113.7, 198.51.100.2, 10.0.0.5");
        assert_eq!(client_ip(ip("10.0.0.9"), xff, &trusted), ip("198.51.100.2"));
        assert_eq!(client_ip(ip("192.0.2.1"), xff, &trusted), ip("192.0.2.1"));
        assert_eq!(client_ip(ip("10.0.0.9"), None, &trusted), ip("10.0.0.9"));
        assert_eq!(
            client_ip(ip("10.0.0.9"), Some("10.1.1.1, 10.2.2.2"), &trusted),
            ip("10.1.1.1")
        );
        assert_eq!(
            client_ip(ip("10.0.0.9"), Some("junk, 10.2.2.2"), &trusted),
            ip("10.2.2.2")
        );
        for (hop, want) in [
            ("198.51.100.1:4711", "198.51.100.1"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("[2001:db8::2]:443", "2001:db8::2"),
            ("2001:db8::3", "2001:db8::3"),
        ] {
            assert_eq!(
                client_ip(ip("10.0.0.9"), Some(hop), &trusted),
                ip(want),
                "{hop}"
            );
        }
    }

    #[test]
    fn ipv6_counts_by_64_block() {
        let l = RateLimiter::new(60, 1);
        assert_eq!(l.check(ip("2001:db8::1"), 0), Ok(()));
        assert!(l.check(ip("2001:db8::ffff"), 0).is_err(), "same /64");
        assert_eq!(l.check(ip("2001:db8:0:1::1"), 0), Ok(()), "another /64");
    }
}
