//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the reactor
//! counters, the ingest counters and link state, and the publish-to-write
//! latency histogram. Every family has `# HELP` and `# TYPE`; counters end
//! in `_total`; the histogram's buckets are cumulative, in seconds.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::conn::response::Problem;
use crate::hub::status::{IngestStatus, RedisState};
use crate::reactor::stats::{Snapshot, Why, LATENCY_BOUNDS_MS, STATUSES};

/// Everything `/metrics` shows, gathered by the admin listener.
pub struct Sources<'a> {
    pub counters: &'a Snapshot,
    pub status: &'a IngestStatus,
    pub inbox_stalls: u64,
    pub backend: &'a str,
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn one(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// The exposition text.
pub fn render(s: &Sources<'_>) -> String {
    let c = s.counters;
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "herald_info",
        "gauge",
        "The running herald: version and I/O backend.",
    );
    let _ = writeln!(
        out,
        "herald_info{{version=\"{}\",io_backend=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        s.backend
    );
    one(
        &mut out,
        "herald_connections",
        "gauge",
        "Open client connections.",
        c.connections,
    );
    one(
        &mut out,
        "herald_streams",
        "gauge",
        "Connections streaming events.",
        c.streaming,
    );
    one(
        &mut out,
        "herald_connects_total",
        "counter",
        "Connections accepted.",
        c.accepted,
    );
    one(
        &mut out,
        "herald_refused_full_total",
        "counter",
        "Connections refused at MAX_CONNECTIONS.",
        c.refused_full,
    );
    one(
        &mut out,
        "herald_accept_errors_total",
        "counter",
        "Accepts that failed for want of descriptors or memory.",
        c.accept_errors,
    );
    family(
        &mut out,
        "herald_disconnects_total",
        "counter",
        "Connections ended, by reason.",
    );
    for why in Why::ALL {
        let _ = writeln!(
            out,
            "herald_disconnects_total{{reason=\"{}\"}} {}",
            why.name(),
            c.disconnects(why)
        );
    }
    family(
        &mut out,
        "herald_responses_total",
        "counter",
        "Final (non-stream) responses on the public listener, by status (0: other).",
    );
    for (status, n) in STATUSES.iter().zip(c.responses) {
        let _ = writeln!(out, "herald_responses_total{{status=\"{status}\"}} {n}");
    }
    family(
        &mut out,
        "herald_refusals_total",
        "counter",
        "Refused requests on the public listener, by problem type (SPEC section 3).",
    );
    for p in Problem::ALL {
        let _ = writeln!(
            out,
            "herald_refusals_total{{type=\"{}\"}} {}",
            p.type_name(),
            c.refusals(p)
        );
    }
    let ingest = [
        (
            "herald_events_published_total",
            "Events accepted from publishers (any path).",
            s.status.published.load(Relaxed),
        ),
        (
            "herald_events_rejected_total",
            "Envelopes or bodies refused by the decoder.",
            s.status.rejected.load(Relaxed),
        ),
        (
            "herald_deliveries_total",
            "Event frames handed to sockets.",
            c.delivered,
        ),
        (
            "herald_bytes_written_total",
            "Bytes the kernel took for clients.",
            c.bytes_written,
        ),
        (
            "herald_replays_total",
            "Streams that asked for replay with Last-Event-ID.",
            c.replays,
        ),
        (
            "herald_replayed_events_total",
            "Events sent from history before going live.",
            c.replayed,
        ),
        (
            "herald_history_gaps_total",
            "Replays that began with a history-gap event.",
            c.history_gaps,
        ),
        (
            "herald_history_log_requests_total",
            "Replays that asked the stream for positions no longer in memory.",
            s.status.log_requests.load(Relaxed),
        ),
        (
            "herald_history_log_reads_total",
            "Range reads (XREVRANGE) issued for those replays, coalesced.",
            s.status.log_reads.load(Relaxed),
        ),
        (
            "herald_history_warm_reads_total",
            "Range reads that warmed the history from the stream at start-up.",
            s.status.warm_reads.load(Relaxed),
        ),
        (
            "herald_inbox_stalls_total",
            "Publishes that waited for a reactor's full inbox.",
            s.inbox_stalls,
        ),
        (
            "herald_redis_connects_total",
            "Times the Redis link was established.",
            s.status.redis_connects.load(Relaxed),
        ),
        (
            "herald_stream_gaps_total",
            "Times stream entries were found trimmed before herald read them (history-gap sent).",
            s.status.stream_gaps.load(Relaxed),
        ),
    ];
    for (name, help, value) in ingest {
        one(&mut out, name, "counter", help, value);
    }
    family(
        &mut out,
        "herald_ingest_up",
        "gauge",
        "Whether the ingest link is up (1), down (0).",
    );
    for (source, state) in [("redis", s.status.redis()), ("kafka", s.status.kafka())] {
        let up = match state {
            RedisState::Disabled => continue,
            RedisState::Up => 1,
            RedisState::Down => 0,
        };
        let _ = writeln!(out, "herald_ingest_up{{source=\"{source}\"}} {up}");
    }
    kafka_partitions(&mut out, s);
    let held = [
        (
            "herald_history_events",
            "Events held for replay.",
            c.history_events,
        ),
        (
            "herald_history_bytes",
            "What the held events cost against HISTORY_MAX_BYTES.",
            c.history_bytes,
        ),
        (
            "herald_history_users",
            "Users with at least one held event.",
            c.history_users,
        ),
    ];
    for (name, help, value) in held {
        one(&mut out, name, "gauge", help, value);
    }
    latency(&mut out, c);
    out
}

/// Each Kafka partition's last offset read and lag.
fn kafka_partitions(out: &mut String, s: &Sources<'_>) {
    let parts = s.status.partition_list();
    if parts.is_empty() {
        return;
    }
    let gauges = [
        (
            "herald_kafka_offset",
            "The last offset read, per partition.",
        ),
        (
            "herald_kafka_lag",
            "Records produced but not yet read, per partition.",
        ),
    ];
    for (i, (name, help)) in gauges.iter().enumerate() {
        family(out, name, "gauge", help);
        for ((topic, partition), p) in &parts {
            let v = if i == 0 { p.last_offset } else { p.lag() };
            let _ = writeln!(
                out,
                "{name}{{topic=\"{topic}\",partition=\"{partition}\"}} {v}"
            );
        }
    }
}

fn latency(out: &mut String, c: &Snapshot) {
    let name = "herald_delivery_latency_seconds";
    family(
        out,
        name,
        "histogram",
        "Time from publish to the write of each live delivery.",
    );
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BOUNDS_MS.iter().zip(c.latency) {
        cumulative += n;
        let le = *bound as f64 / 1000.0;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    cumulative += c.latency[LATENCY_BOUNDS_MS.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", c.latency_sum_ms as f64 / 1000.0);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let mut c = Snapshot::default();
        c.latency[0] = 2;
        c.latency[3] = 1;
        c.latency[LATENCY_BOUNDS_MS.len()] = 4;
        c.latency_sum_ms = 1500;
        let status = IngestStatus::new(true);
        let text = render(&Sources {
            counters: &c,
            status: &status,
            inbox_stalls: 0,
            backend: "epoll",
        });
        assert!(text.contains("herald_delivery_latency_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("herald_delivery_latency_seconds_bucket{le=\"0.01\"} 3\n"));
        assert!(text.contains("herald_delivery_latency_seconds_bucket{le=\"+Inf\"} 7\n"));
        assert!(text.contains("herald_delivery_latency_seconds_count 7\n"));
        assert!(text.contains("herald_delivery_latency_seconds_sum 1.5\n"));
        assert!(text.contains("herald_ingest_up{source=\"redis\"} 0\n"));
        assert!(text.contains("herald_refusals_total{type=\"invalid_jwt\"} 0\n"));
    }
}
