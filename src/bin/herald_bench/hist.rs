//! A log-linear latency histogram: exact below 64, then 64 buckets per power
//! of two (at most 1.6 % relative error), fixed size, mergeable by adding
//! counts, so worker processes can ship theirs to the coordinator.

use serde::{Deserialize, Serialize};

const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any `u64`.
const BUCKETS: usize = SUB * (64 - SUB_BITS as usize + 1);

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(from = "Sparse", into = "Sparse")]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    let sub = (v >> shift) as usize & (SUB - 1);
    ((shift as usize + 1) << SUB_BITS) + sub
}

/// The largest value that lands in bucket `i`.
fn upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i >> SUB_BITS) - 1;
    let sub = (i & (SUB - 1)) as u64;
    (((SUB as u64 + sub + 1) as u128) << shift).saturating_sub(1) as u64
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0..=1): the upper edge of its bucket,
    /// clamped to the observed range. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// The wire form: only the non-empty buckets.
#[derive(Serialize, Deserialize)]
struct Sparse {
    buckets: Vec<(u32, u64)>,
    min: u64,
    max: u64,
    sum: u128,
}

impl From<Histogram> for Sparse {
    fn from(h: Histogram) -> Self {
        Sparse {
            buckets: h
                .counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| (i as u32, c))
                .collect(),
            min: h.min,
            max: h.max,
            sum: h.sum,
        }
    }
}

impl From<Sparse> for Histogram {
    fn from(s: Sparse) -> Self {
        let mut h = Histogram {
            min: s.min,
            max: s.max,
            sum: s.sum,
            ..Histogram::default()
        };
        for (i, c) in s.buckets {
            if let Some(slot) = h.counts.get_mut(i as usize) {
                *slot += c;
                h.count += c;
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounded() {
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS);
            assert!(upper(i) >= v, "v={v} i={i} upper={}", upper(i));
            if i > 0 {
                assert!(upper(i - 1) < v, "v={v} below bucket {i}");
            }
        }
    }

    #[test]
    fn quantiles_within_error_and_merge() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for v in 1..=10_000u64 {
            if v % 2 == 0 { &mut a } else { &mut b }.record(v);
        }
        a.merge(&b);
        let back: Histogram = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        for (q, want) in [(0.5, 5000.0), (0.99, 9900.0), (1.0, 10_000.0)] {
            let got = back.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.02, "q{q}: {got} vs {want}");
        }
        assert_eq!(back.count(), 10_000);
        assert_eq!(back.max(), 10_000);
        assert!((back.mean() - 5000.5).abs() < 1e-9);
    }
}
