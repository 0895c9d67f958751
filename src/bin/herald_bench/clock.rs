//! Wall-clock time. Latency is receive time minus publish time, taken in
//! different processes on the same box, so it must be the shared real-time
//! clock, not `Instant`.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn unix_ms() -> u64 {
    unix_us() / 1000
}
