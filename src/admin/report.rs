//! The figures of `GET /stats`, gathered once into [`StatsReport`]: the
//! HTTP endpoint serialises it as JSON, the gRPC `GetStats` converts it
//! field by field, so the two cannot drift. `/metrics` reads the same
//! counters ([`crate::reactor::stats::Counters::snapshot`] and
//! [`IngestStatus`]), so at rest all three agree.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::conn::response::Problem;
use crate::hub::status::IngestStatus;
use crate::reactor::stats::{Snapshot, Why};

/// `GET /stats`, by name (the JSON keys are the field names).
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    pub connections: u64,
    pub streaming: u64,
    pub accepted_total: u64,
    pub accept_errors_total: u64,
    pub refused_full_total: u64,
    pub slow_disconnects_total: u64,
    pub disconnects_total: u64,
    /// By [`Why::name`].
    pub disconnects: BTreeMap<&'static str, u64>,
    /// By [`Problem::type_name`].
    pub refusals: BTreeMap<&'static str, u64>,
    pub delivered_total: u64,
    pub inbox_stalls_total: u64,
    pub io_backend: &'static str,
    pub published_total: u64,
    pub rejected_total: u64,
    /// `disabled`, `up` or `down`.
    pub redis: &'static str,
    pub redis_connects_total: u64,
    pub stream_gaps_total: u64,
    pub replays_total: u64,
    pub replayed_total: u64,
    pub history_gaps_total: u64,
    pub history: HistoryReport,
    pub history_log_requests_total: u64,
    pub history_log_reads_total: u64,
    pub history_warm_reads_total: u64,
    /// `disabled`, `up` or `down`.
    pub kafka: &'static str,
    /// Where reading each Kafka partition stands.
    pub kafka_partitions: Vec<KafkaPartition>,
    /// Open connections of each reactor.
    pub reactors: Vec<usize>,
}

/// What the in-memory history holds.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub events: u64,
    pub bytes: u64,
    pub users: u64,
}

/// One Kafka partition's reading.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaPartition {
    pub topic: String,
    pub partition: i32,
    pub last_offset: i64,
    pub high_watermark: i64,
    pub lag: i64,
}

impl StatsReport {
    /// Totals over every reactor (`c`), plus the ingest counters.
    pub fn new(
        c: Snapshot,
        status: &IngestStatus,
        inbox_stalls: u64,
        backend: &'static str,
    ) -> Self {
        Self {
            connections: c.connections,
            streaming: c.streaming,
            accepted_total: c.accepted,
            accept_errors_total: c.accept_errors,
            refused_full_total: c.refused_full,
            slow_disconnects_total: c.disconnects(Why::Slow),
            disconnects_total: c.disconnects_total(),
            disconnects: Why::ALL
                .iter()
                .map(|&w| (w.name(), c.disconnects(w)))
                .collect(),
            refusals: Problem::ALL
                .iter()
                .map(|&p| (p.type_name(), c.refusals(p)))
                .collect(),
            delivered_total: c.delivered,
            inbox_stalls_total: inbox_stalls,
            io_backend: backend,
            published_total: status.published.load(Relaxed),
            rejected_total: status.rejected.load(Relaxed),
            redis: status.health().1,
            redis_connects_total: status.redis_connects.load(Relaxed),
            stream_gaps_total: status.stream_gaps.load(Relaxed),
            replays_total: c.replays,
            replayed_total: c.replayed,
            history_gaps_total: c.history_gaps,
            history: HistoryReport {
                events: c.history_events,
                bytes: c.history_bytes,
                users: c.history_users,
            },
            history_log_requests_total: status.log_requests.load(Relaxed),
            history_log_reads_total: status.log_reads.load(Relaxed),
            history_warm_reads_total: status.warm_reads.load(Relaxed),
            kafka: status.kafka().name(),
            kafka_partitions: status
                .partition_list()
                .into_iter()
                .map(|((topic, partition), p)| KafkaPartition {
                    topic,
                    partition,
                    last_offset: p.last_offset,
                    high_watermark: p.high_watermark,
                    lag: p.lag(),
                })
                .collect(),
            reactors: c.per_reactor,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}
