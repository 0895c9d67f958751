//! Server-assigned event ids: `<unix-ms>-<seq>`, like Redis stream ids,
//! unique and increasing per server even if the clock steps back.

/// Generates ids and the internal ingest sequence number.
#[derive(Debug, Default)]
pub struct IdGen {
    last_ms: u64,
    seq_in_ms: u64,
    seq: u64,
}

impl IdGen {
    /// Returns `(ingest seq, id)` for the next event at wall time `now_ms`.
    pub fn next(&mut self, now_ms: u64) -> (u64, String) {
        if now_ms > self.last_ms {
            self.last_ms = now_ms;
            self.seq_in_ms = 0;
        } else {
            self.seq_in_ms += 1;
        }
        self.seq += 1;
        (self.seq, format!("{}-{}", self.last_ms, self.seq_in_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_within_and_across_ms_and_clock_steps() {
        let mut g = IdGen::default();
        assert_eq!(g.next(1000), (1, "1000-0".to_string()));
        assert_eq!(g.next(1000), (2, "1000-1".to_string()));
        assert_eq!(g.next(1001), (3, "1001-0".to_string()));
        // Clock stepped back: keep the last ms, bump the sequence.
        assert_eq!(g.next(900), (4, "1001-1".to_string()));
    }
}
