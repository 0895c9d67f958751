//! What a benchmark event carries and who it is for.
//!
//! The message is `{"t":<publish wall clock, µs>,"n":<sequence>}`; every
//! delivery's latency is its receive time minus `t` (all processes share one
//! clock on one box). Targeted runs pick each event's users with a seeded
//! generator, so the publisher and every worker agree on the targets of event
//! `n` without telling each other.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Who an event goes to.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Audience {
    /// Every listener (the envelope has no `to`).
    All,
    /// `k` distinct users out of the run's users `u0..u<total>`, drawn per
    /// event from `seed`; every `every`-th event (`n % every == every - 1`;
    /// 0 = none) is a broadcast instead.
    Random { k: u64, seed: u64, every: u64 },
}

impl Audience {
    /// The user indices event `seq` goes to, sorted, for a run of `total`
    /// users; `None` for a broadcast.
    pub fn targets(&self, seq: u64, total: u64) -> Option<Vec<u64>> {
        let Audience::Random { k, seed, every } = *self else {
            return None;
        };
        if every > 0 && seq % every == every - 1 {
            return None;
        }
        let k = k.min(total);
        // Floyd's algorithm: k distinct draws in O(k).
        let mut rng = seed ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut chosen = HashSet::with_capacity(k as usize);
        for j in (total - k)..total {
            let r = splitmix64(&mut rng) % (j + 1);
            if !chosen.insert(r) {
                chosen.insert(j);
            }
        }
        let mut out: Vec<u64> = chosen.into_iter().collect();
        out.sort_unstable();
        Some(out)
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The event message for sequence `n` published at `t_us`.
pub fn encode(t_us: u64, n: u64) -> String {
    format!("{{\"t\":{t_us},\"n\":{n}}}")
}

/// `(t_us, n)` from an event's data, or `None` for anything else (heartbeats,
/// other publishers' events).
pub fn decode(data: &str) -> Option<(u64, u64)> {
    let rest = data.strip_prefix("{\"t\":")?;
    let (t, rest) = rest.split_once(",\"n\":")?;
    let n = rest.strip_suffix('}')?;
    Some((t.parse().ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip() {
        let m = encode(1_700_000_000_123_456, 42);
        assert_eq!(m, r#"{"t":1700000000123456,"n":42}"#);
        assert_eq!(decode(&m), Some((1_700_000_000_123_456, 42)));
        for other in [
            "1700000000",
            "",
            r#"{"t":1,"n":x}"#,
            r#"{"t":1,"n":2,"z":3}"#,
        ] {
            assert_eq!(decode(other), None, "{other}");
        }
    }

    #[test]
    fn targets_are_distinct_deterministic_and_in_range() {
        let a = Audience::Random {
            k: 50,
            seed: 7,
            every: 0,
        };
        let t = a.targets(3, 1000).unwrap();
        assert_eq!(t.len(), 50);
        assert!(t.windows(2).all(|w| w[0] < w[1]) && t[49] < 1000);
        assert_eq!(a.targets(3, 1000), Some(t.clone()));
        assert_ne!(a.targets(4, 1000), Some(t));
        assert_eq!(
            a.targets(0, 10).unwrap().len(),
            10,
            "k is capped at the user count"
        );
        assert_eq!(Audience::All.targets(0, 10), None);
        let mixed = Audience::Random {
            k: 1,
            seed: 7,
            every: 3,
        };
        let kinds: Vec<bool> = (0..6).map(|n| mixed.targets(n, 10).is_some()).collect();
        assert_eq!(kinds, [true, true, false, true, true, false]);
    }
}
