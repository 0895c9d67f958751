//! Refusals on the public listener (SPEC §3, §8): every problem+json
//! response is counted by its type ([`super::Stats::refused`]) and logged.
//!
//! Contracts:
//! - The log line is at `info` (a client's mistake, not herald's fault, but
//!   an operator must see a run of 401s at the default level: a JWT key
//!   that does not match the backends' is otherwise invisible). It names the
//!   status, the type, the client address (the socket peer) and the
//!   problem's `detail`, never the request: a token can appear only in the
//!   request, and no detail quotes it.
//! - At most one line per type per second for the whole process (the
//!   throttle is shared by the reactors: two atomics per type, no lock);
//!   the next line for that type says how many were left out meanwhile, so
//!   a flood of refusals costs two atomic increments each, not a log write.
//! - The peer address (a system call) is read only for a line that is
//!   written.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use log::{info, log_enabled, Level};

use super::{Core, Transport};
use crate::conn::response::Problem;

/// The refusal log throttle, shared by every reactor: per problem type,
/// the second of its last line (plus one; 0 = never) and the refusals not
/// logged since.
#[derive(Default)]
pub struct RefusalLog {
    last_s: [AtomicU64; Problem::ALL.len()],
    left_out: [AtomicU64; Problem::ALL.len()],
}

impl RefusalLog {
    /// Whether a refusal of type `p` at monotonic second `now_s` gets a
    /// line: `Some(left out since the last line)`, else `None` (counted as
    /// left out). Of racing reactors, one wins the second.
    pub(super) fn admit(&self, p: Problem, now_s: u64) -> Option<u64> {
        let i = p as usize;
        let last = self.last_s[i].load(Relaxed);
        let won = last != now_s + 1
            && self.last_s[i]
                .compare_exchange(last, now_s + 1, Relaxed, Relaxed)
                .is_ok();
        if !won {
            self.left_out[i].fetch_add(1, Relaxed);
            return None;
        }
        Some(self.left_out[i].swap(0, Relaxed))
    }
}

impl<T: Transport> Core<T> {
    /// Counts a final response that is a refusal, and logs it (throttled).
    pub(super) fn note_refusal(&mut self, key: u32, response: &[u8], now_ms: u64) {
        let Some((p, body)) = Problem::of_response(response) else {
            return;
        };
        self.stats.refused(p);
        if !log_enabled!(Level::Info) {
            return;
        }
        let Some(left_out) = self.shared.refusal_log.admit(p, now_ms / 1000) else {
            return;
        };
        let detail = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or_default();
        let client = self
            .t
            .peer_ip(self.conns[key as usize].fd.as_fd())
            .map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
        let more = if left_out > 0 {
            format!(
                " ({left_out} more {} not logged since the last line)",
                p.type_name()
            )
        } else {
            String::new()
        };
        info!(
            "refused {} {} from {client}: {detail:?}{more}",
            p.status(),
            p.type_name()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_type_per_second_with_the_count_left_out() {
        let log = RefusalLog::default();
        assert_eq!(log.admit(Problem::InvalidJwt, 0), Some(0));
        assert_eq!(log.admit(Problem::InvalidJwt, 0), None);
        assert_eq!(log.admit(Problem::InvalidJwt, 0), None);
        assert_eq!(log.admit(Problem::MissingToken, 0), Some(0), "per type");
        assert_eq!(log.admit(Problem::InvalidJwt, 1), Some(2));
        assert_eq!(log.admit(Problem::InvalidJwt, 5), Some(0));
    }
}
