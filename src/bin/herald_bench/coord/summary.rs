//! The summary: the server, kernel and client figures from the four samples
//! (start, connected, after the hold, after the events), and the delivery
//! and storm verdicts from the merged worker reports.
//!
//! Contract: pure arithmetic over what the run collected; it prints nothing
//! and reads nothing but the clock.

use crate::bench::args::Options;
use crate::bench::clock::unix_ms;
use crate::bench::hist::Histogram;
use crate::bench::proto::Progress;
use crate::bench::report::{self, Merged, Quantiles, Summary};
use crate::bench::sample::Sample;

use super::{EventsRun, Fleet};

pub(super) struct SummaryInput<'a> {
    pub(super) connect_secs: f64,
    pub(super) samples: [&'a Sample; 4],
    pub(super) held: Progress,
    pub(super) events: Option<EventsRun>,
    pub(super) merged: Merged,
}

pub(super) fn summarize(o: &Options, procs: usize, fleet: &Fleet, i: SummaryInput<'_>) -> Summary {
    let [s0, s1, s2, _s3] = i.samples;
    let m = &i.merged;
    let open = i.held.open;
    let mut server = report::server(&o.server_pids, s0, s1, s2, open);
    let events = i.events.as_ref().map(|e| {
        let mut completion = Histogram::default();
        let mut last = 0;
        for (n, &t) in e.publish_us.iter().enumerate() {
            if let Some(&rx) = m.total.last_delivery_us.get(n).filter(|&&rx| rx > 0) {
                completion.record(rx.saturating_sub(t));
                last = last.max(rx);
            }
        }
        let delivered = m.total.progress.unique;
        let span_s = e
            .publish_us
            .first()
            .map_or(0.0, |&f| last.saturating_sub(f) as f64 / 1e6);
        if let (Some(v), Some((a, b))) = (server.as_mut(), &e.cpu) {
            if let (Some(pa), Some(pb)) = (a.server, b.server) {
                let cpu = pb.cpu_s() - pa.cpu_s();
                v.events_cpu_s = Some(cpu);
                v.events_sys_s = Some(pb.sys_s - pa.sys_s);
                v.cpu_per_delivery_ns = Some(cpu * 1e9 / delivered.max(1) as f64);
            }
        }
        report::Events {
            published: e.published,
            publish_errors: e.errors,
            first_publish_error: e.first_error.clone(),
            rate_per_s: o.event_rate,
            achieved_rate_per_s: match (e.publish_us.first(), e.publish_us.last()) {
                (Some(&a), Some(&b)) if b > a => {
                    Some((e.publish_us.len() - 1) as f64 * 1e6 / (b - a) as f64)
                }
                _ => None,
            },
            armed_listeners: e.armed,
            expected: m.total.progress.expected,
            delivered,
            lost: m.total.progress.expected.saturating_sub(delivered),
            duplicates: m.total.progress.duplicates,
            gaps: m.total.gaps,
            strays: m.total.strays,
            unarmed: m.total.unarmed,
            history_gaps: m.total.history_gaps,
            latency_ms: Quantiles::from_us(&m.total.latency_us),
            completion_ms: Quantiles::from_us(&completion),
            deliveries_per_s: if span_s > 0.0 {
                delivered as f64 / span_s
            } else {
                0.0
            },
        }
    });
    let storm = i.events.as_ref().and_then(|e| {
        let at = e.storm_at_us?;
        let st = m.total.progress.storm.clone().unwrap_or_default();
        let reconnect_failures = m
            .total
            .failures
            .iter()
            .filter(|(k, _)| k.starts_with("reconnect: "))
            .map(|(_, v)| v)
            .sum();
        let ev = events.as_ref()?;
        let all_back = m.storm_unfinished == 0 && st.given_up == 0;
        Some(report::Storm {
            closed: st.closed,
            back: st.back,
            given_up: st.given_up,
            seconds_until_all_back: m
                .storm_done_us
                .filter(|_| all_back)
                .map(|d| d.saturating_sub(at) as f64 / 1e6),
            reconnect_failures,
            replayed_exactly_once: all_back
                && ev.lost == 0
                && ev.duplicates == 0
                && ev.history_gaps == 0
                && ev.publish_errors == 0,
        })
    });
    let failures = m
        .total
        .failures
        .iter()
        .filter(|(k, _)| !k.starts_with("reconnect: "))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    Summary {
        mode: o.mode.name(),
        url: format!("http://{}{}", o.url.host, o.url.path),
        unix_time: unix_ms() / 1000,
        procs,
        workers_lost: fleet.lost(),
        halted_by_memory_floor: fleet.halted,
        connect: report::Connect {
            requested: o.connections,
            open,
            failed: i.held.failed,
            dropped: m.total.progress.dropped,
            failures,
            seconds: i.connect_secs,
            per_second: (open + i.held.failed) as f64 / i.connect_secs.max(1e-9),
        },
        server,
        kernel: report::kernel(&s0.kernel, &s2.kernel, open),
        client: report::Client {
            rss_kb: m.total.rss_kb,
            rss_per_conn_bytes: report::per_conn(m.total.rss_kb, 0, 1024.0, open),
            cpu_s: m.total.cpu_s,
        },
        events,
        storm,
    }
}
