//! The run's figures: merged worker reports plus server samples, as JSON
//! (`--json`) or as a short human summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::hist::Histogram;
use super::proto;
use super::sample::{self, Sample};

#[derive(Serialize)]
pub struct Summary {
    pub mode: &'static str,
    pub url: String,
    pub unix_time: u64,
    pub procs: usize,
    /// Worker processes that died before reporting (their figures are missing).
    pub workers_lost: usize,
    /// MemAvailable fell below --min-available; the rest was not attempted.
    pub halted_by_memory_floor: bool,
    pub connect: Connect,
    pub server: Option<Server>,
    pub kernel: Kernel,
    pub client: Client,
    pub events: Option<Events>,
    pub storm: Option<Storm>,
}

#[derive(Serialize)]
pub struct Connect {
    pub requested: u64,
    /// Streaming at the end of the hold.
    pub open: u64,
    pub failed: u64,
    pub dropped: u64,
    pub failures: BTreeMap<String, u64>,
    /// From the first connect() until every listener was open or given up on.
    pub seconds: f64,
    pub per_second: f64,
}

#[derive(Serialize)]
pub struct Server {
    pub pids: Vec<u32>,
    pub rss_before_kb: u64,
    pub rss_held_kb: u64,
    /// (RSS with all listeners held − RSS before) / listeners open.
    pub rss_per_conn_bytes: f64,
    pub pss_before_kb: u64,
    pub pss_held_kb: u64,
    /// The same with PSS (differs from RSS where processes share memory).
    pub pss_per_conn_bytes: f64,
    pub anon_before_kb: u64,
    pub anon_held_kb: u64,
    /// The same with `RssAnon`: the heap, unaffected by file pages being
    /// evicted under memory pressure.
    pub anon_per_conn_bytes: f64,
    pub connect_cpu_s: f64,
    /// ... of which in the kernel (accept, TCP, epoll, socket writes).
    pub connect_sys_s: f64,
    /// Server CPU (user + sys) while connecting / listeners opened.
    pub cpu_per_conn_us: f64,
    pub events_cpu_s: Option<f64>,
    pub events_sys_s: Option<f64>,
    /// Server CPU from the first publish to the end of the drain / deliveries.
    pub cpu_per_delivery_ns: Option<f64>,
}

/// Box-wide: on one machine both ends of every connection are in here.
#[derive(Serialize)]
pub struct Kernel {
    pub slab_before_kb: u64,
    pub slab_held_kb: u64,
    pub slab_per_conn_bytes: f64,
    pub tcp_mem_pages_before: u64,
    pub tcp_mem_pages_held: u64,
    pub tcp_mem_per_conn_bytes: f64,
    pub sockets_before: u64,
    pub sockets_held: u64,
    /// Slab caches that grew by at least 16 B per connection, largest first
    /// (from /proc/slabinfo; both ends of every connection).
    pub slab_caches_per_conn_bytes: Vec<(String, f64)>,
}

#[derive(Serialize)]
pub struct Client {
    pub rss_kb: u64,
    pub rss_per_conn_bytes: f64,
    pub cpu_s: f64,
}

#[derive(Serialize)]
pub struct Events {
    pub published: u64,
    pub publish_errors: u64,
    pub first_publish_error: Option<String>,
    /// `--event-rate`.
    pub rate_per_s: f64,
    /// Events published / time from the first publish to the last: below the
    /// requested rate when publishing itself is slow (every publish waits for
    /// the server's answer). `None` for a single event.
    pub achieved_rate_per_s: Option<f64>,
    pub armed_listeners: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub strays: u64,
    pub unarmed: u64,
    pub history_gaps: u64,
    /// Publish → each delivery.
    pub latency_ms: Quantiles,
    /// Publish → last delivery, one value per event.
    pub completion_ms: Quantiles,
    /// Deliveries / (last delivery − first publish).
    pub deliveries_per_s: f64,
}

#[derive(Serialize)]
pub struct Storm {
    pub closed: u64,
    pub back: u64,
    pub given_up: u64,
    pub seconds_until_all_back: Option<f64>,
    pub reconnect_failures: u64,
    /// Nothing lost, nothing twice, no history gap, nobody given up.
    pub replayed_exactly_once: bool,
}

#[derive(Serialize, Default)]
pub struct Quantiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Quantiles {
    /// From a histogram of µs.
    pub fn from_us(h: &Histogram) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Quantiles {
            count: h.count(),
            p50: ms(h.quantile(0.5)),
            p90: ms(h.quantile(0.9)),
            p99: ms(h.quantile(0.99)),
            p999: ms(h.quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Worker reports summed.
#[derive(Default)]
pub struct Merged {
    pub reports: usize,
    /// Every worker's figures added up (see [`proto::Report::add`]).
    pub total: proto::Report,
    /// When the last worker's storm listeners were all back or given up.
    pub storm_done_us: Option<u64>,
    /// Workers whose storm had not finished when they reported.
    pub storm_unfinished: usize,
}

impl Merged {
    pub fn add(&mut self, r: &proto::Report) {
        if let Some(s) = &r.progress.storm {
            self.storm_done_us = self.storm_done_us.max(s.done_unix_us);
            self.storm_unfinished += usize::from(s.done_unix_us.is_none());
        }
        self.total.add(r);
        self.reports += 1;
    }
}

/// Bytes per connection from a kB (or other unit) delta.
pub fn per_conn(after: u64, before: u64, unit: f64, conns: u64) -> f64 {
    if conns == 0 {
        return 0.0;
    }
    (after as f64 - before as f64) * unit / conns as f64
}

pub fn server(pids: &[u32], s0: &Sample, s1: &Sample, s2: &Sample, open: u64) -> Option<Server> {
    let (p0, p1, p2) = (s0.server?, s1.server?, s2.server?);
    let opened = open.max(1) as f64;
    Some(Server {
        pids: pids.to_vec(),
        rss_before_kb: p0.rss_kb,
        rss_held_kb: p2.rss_kb,
        rss_per_conn_bytes: per_conn(p2.rss_kb, p0.rss_kb, 1024.0, open),
        pss_before_kb: p0.pss_kb,
        pss_held_kb: p2.pss_kb,
        pss_per_conn_bytes: per_conn(p2.pss_kb, p0.pss_kb, 1024.0, open),
        anon_before_kb: p0.anon_kb,
        anon_held_kb: p2.anon_kb,
        anon_per_conn_bytes: per_conn(p2.anon_kb, p0.anon_kb, 1024.0, open),
        connect_cpu_s: p1.cpu_s() - p0.cpu_s(),
        connect_sys_s: p1.sys_s - p0.sys_s,
        cpu_per_conn_us: (p1.cpu_s() - p0.cpu_s()) * 1e6 / opened,
        events_cpu_s: None,
        events_sys_s: None,
        cpu_per_delivery_ns: None,
    })
}

pub fn kernel(k0: &sample::Kernel, k2: &sample::Kernel, open: u64) -> Kernel {
    Kernel {
        slab_before_kb: k0.slab_kb,
        slab_held_kb: k2.slab_kb,
        slab_per_conn_bytes: per_conn(k2.slab_kb, k0.slab_kb, 1024.0, open),
        tcp_mem_pages_before: k0.tcp_mem_pages,
        tcp_mem_pages_held: k2.tcp_mem_pages,
        tcp_mem_per_conn_bytes: per_conn(k2.tcp_mem_pages, k0.tcp_mem_pages, 4096.0, open),
        sockets_before: k0.sockets_used,
        sockets_held: k2.sockets_used,
        slab_caches_per_conn_bytes: grown_caches(k0, k2, open),
    }
}

fn grown_caches(k0: &sample::Kernel, k2: &sample::Kernel, open: u64) -> Vec<(String, f64)> {
    let mut grown: Vec<(String, f64)> = k2
        .slab_caches
        .iter()
        .map(|(name, &after)| {
            let before = k0.slab_caches.get(name).copied().unwrap_or(0);
            (name.clone(), per_conn(after, before, 1.0, open))
        })
        .filter(|(_, b)| *b >= 16.0)
        .collect();
    grown.sort_by(|a, b| b.1.total_cmp(&a.1));
    grown
}

/// The human summary.
pub fn human(s: &Summary) -> String {
    let mut o = String::new();
    let c = &s.connect;
    let _ = writeln!(
        o,
        "herald-bench {} → {} ({} client processes)",
        s.mode, s.url, s.procs
    );
    let _ = writeln!(
        o,
        "listeners   {} open of {} in {:.2} s ({:.0}/s); failed {}, dropped {}",
        c.open, c.requested, c.seconds, c.per_second, c.failed, c.dropped
    );
    for (why, n) in &c.failures {
        let _ = writeln!(o, "            {n} × {why}");
    }
    if s.halted_by_memory_floor {
        let _ = writeln!(
            o,
            "NOTE        stopped opening connections: MemAvailable hit --min-available"
        );
    }
    if s.workers_lost > 0 {
        let _ = writeln!(
            o,
            "WARNING     {} worker processes died; their figures are missing",
            s.workers_lost
        );
    }
    if let Some(v) = &s.server {
        let _ = writeln!(
            o,
            "server      RSS {} → {} = {:.0} B per listener (PSS {:.0} B, anon {:.0} B); CPU {:.2} s \
             ({:.2} s sys) = {:.1} µs per new connection",
            mb(v.rss_before_kb),
            mb(v.rss_held_kb),
            v.rss_per_conn_bytes,
            v.pss_per_conn_bytes,
            v.anon_per_conn_bytes,
            v.connect_cpu_s,
            v.connect_sys_s,
            v.cpu_per_conn_us
        );
        if let (Some(cpu), Some(sys), Some(ns)) =
            (v.events_cpu_s, v.events_sys_s, v.cpu_per_delivery_ns)
        {
            let _ = writeln!(
                o,
                "            events: CPU {cpu:.2} s ({sys:.2} s sys) = {ns:.0} ns per delivery"
            );
        }
    }
    let k = &s.kernel;
    let _ = writeln!(
        o,
        "kernel      Slab {} → {} = {:.0} B per connection; TCP mem {:.0} B per connection \
         (box-wide: both ends)",
        mb(k.slab_before_kb),
        mb(k.slab_held_kb),
        k.slab_per_conn_bytes,
        k.tcp_mem_per_conn_bytes
    );
    if !k.slab_caches_per_conn_bytes.is_empty() {
        let caches: Vec<String> = k
            .slab_caches_per_conn_bytes
            .iter()
            .take(6)
            .map(|(name, b)| format!("{name} {b:.0}"))
            .collect();
        let _ = writeln!(
            o,
            "            slab caches, B per connection: {}",
            caches.join(", ")
        );
    }
    let _ = writeln!(
        o,
        "client      RSS {} ({:.0} B per listener), CPU {:.2} s",
        mb(s.client.rss_kb),
        s.client.rss_per_conn_bytes,
        s.client.cpu_s
    );
    if let Some(e) = &s.events {
        let _ = writeln!(
            o,
            "events      {} published{} to {} listeners; delivered {} of {}: lost {}, \
             duplicates {}, history gaps {}",
            e.published,
            e.achieved_rate_per_s.map_or(String::new(), |r| format!(
                " at {}/s (achieved {r:.1}/s)",
                e.rate_per_s
            )),
            e.armed_listeners,
            e.delivered,
            e.expected,
            e.lost,
            e.duplicates,
            e.history_gaps
        );
        if e.publish_errors > 0 {
            let _ = writeln!(
                o,
                "            {} publish errors, first: {}",
                e.publish_errors,
                e.first_publish_error.as_deref().unwrap_or("")
            );
        }
        let q = |q: &Quantiles| {
            format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1} ms",
                q.p50, q.p90, q.p99, q.p999, q.max
            )
        };
        let _ = writeln!(
            o,
            "latency     {}  (publish → each delivery)",
            q(&e.latency_ms)
        );
        let _ = writeln!(
            o,
            "completion  {}  (publish → last delivery, per event)",
            q(&e.completion_ms)
        );
        let _ = writeln!(o, "throughput  {:.0} deliveries/s", e.deliveries_per_s);
    }
    if let Some(st) = &s.storm {
        let back = st
            .seconds_until_all_back
            .map_or("not all back".to_string(), |t| {
                format!("all back in {t:.2} s")
            });
        let _ =
            writeln!(
            o,
            "storm       {} dropped, {} back, {} given up: {back}; {} failed reconnect attempts; \
             every missed event replayed exactly once: {}",
            st.closed,
            st.back,
            st.given_up,
            st.reconnect_failures,
            if st.replayed_exactly_once { "yes" } else { "NO" }
        );
    }
    o
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}
