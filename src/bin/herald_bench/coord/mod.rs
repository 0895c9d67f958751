//! The coordinator: splits the run over worker processes, drives the phases,
//! publishes, samples the server, and merges what the workers report.
//!
//! Phases: connect (until every listener is open or given up on) → hold →
//! (fanout, storm) arm, publish at the given rate, storm mid-way, drain until
//! every expected delivery arrived or the drain time is up → report → quit.
//! Every wait is bounded by `--deadline`; workers also stop by themselves at
//! it.
//!
//! This file holds the run itself: the plans, the phases and publishing.
//! `fleet` owns the worker processes (spawning, commands, replies, progress
//! on stderr); `summary` turns the samples and merged reports into the
//! [`Summary`](super::report::Summary).

use std::time::{Duration, Instant};

use super::args::{Mode, Options};
use super::clock::{unix_ms, unix_us};
use super::probe;
use super::proto::{Command, Plan};
use super::publish::Publisher;
use super::report;
use super::sample::{self, Sample};

mod fleet;
mod summary;

use fleet::{Fleet, Ticker};
use summary::{summarize, SummaryInput};

/// File descriptors a worker keeps for itself (stdio, epoll, slack).
const FD_RESERVE: u64 = 100;

/// Runs the benchmark; returns the exit code.
pub fn run(o: Options) -> i32 {
    let start = Instant::now();
    let deadline = start + o.deadline;
    let procs = o.procs.unwrap_or_else(|| auto_procs(o.connections));
    let plans = plans(&o, procs);
    eprintln!(
        "herald-bench {}: {} listeners → http://{}{} from {procs} process(es), \
         {} source address(es), rate {}/s, in flight {}",
        o.mode.name(),
        o.connections,
        o.url.host,
        o.url.path,
        o.src.len().max(1),
        o.rate,
        o.inflight
    );
    let s0 = sample::take(&o.server_pids);
    let mut fleet = match Fleet::spawn(&plans, o.min_available_kb) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("herald-bench: cannot start workers: {e}");
            return 1;
        }
    };
    let mut ticker = Ticker::new(start, o.connections);

    fleet.wait(deadline, &mut ticker, "connect", |t, all| {
        all.iter().all(|p| p.settled) && t.open + t.failed >= o.connections
    });
    let connect_secs = start.elapsed().as_secs_f64();
    let s1 = sample::take(&o.server_pids);
    fleet.wait(
        (Instant::now() + o.hold).min(deadline),
        &mut ticker,
        "hold",
        |_, _| false,
    );
    let s2 = sample::take(&o.server_pids);
    let held = fleet.total();

    let events =
        (o.mode != Mode::Connect).then(|| publish_events(&o, &mut fleet, &mut ticker, deadline));
    let s3 = sample::take(&o.server_pids);
    let merged = fleet.finish();

    let summary = summarize(
        &o,
        procs,
        &fleet,
        SummaryInput {
            connect_secs,
            samples: [&s0, &s1, &s2, &s3],
            held,
            events,
            merged,
        },
    );
    let json = serde_json::to_string_pretty(&summary).expect("summary serializes");
    if let Some(path) = &o.json_file {
        if let Err(e) = std::fs::write(path, format!("{json}\n")) {
            eprintln!("herald-bench: cannot write {path}: {e}");
            return 1;
        }
    }
    if o.json {
        println!("{json}");
    } else {
        print!("{}", report::human(&summary));
    }
    0
}

/// Enough processes that none needs more than its fd limit allows.
fn auto_procs(n: u64) -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let hard = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(_, h)| h);
    let per = hard.saturating_sub(FD_RESERVE).clamp(1, 1_000_000);
    n.div_ceil(per) as usize
}

fn plans(o: &Options, procs: usize) -> Vec<Plan> {
    let procs = procs.min(o.connections as usize).max(1);
    let deadline_unix_ms = unix_ms() + o.deadline.as_millis() as u64 + 5_000;
    let (base, extra) = (o.connections / procs as u64, o.connections % procs as u64);
    let mut first = 0;
    (0..procs as u64)
        .map(|k| {
            let count = base + u64::from(k < extra);
            let plan = Plan {
                first,
                count,
                total: o.connections,
                dst: o.url.addr,
                host: o.url.host.clone(),
                path: o.url.path.clone(),
                jwt_secret: o.jwt_secret.clone(),
                jwt_apps: o.jwt_apps,
                token_in: o.token_in,
                headers: o.headers.clone(),
                src: o.src.clone(),
                rate: o.rate / procs as f64,
                inflight: (o.inflight / procs as u64).max(1),
                connect_timeout_ms: o.connect_timeout.as_millis() as u64,
                audience: o.audience,
                away_ms: o.away.as_millis() as u64,
                follow: o.follow,
                deadline_unix_ms,
            };
            first += count;
            plan
        })
        .collect()
}

/// What publishing produced, for the summary.
struct EventsRun {
    published: u64,
    armed: u64,
    errors: u64,
    first_error: Option<String>,
    publish_us: Vec<u64>,
    storm_at_us: Option<u64>,
    cpu: Option<(Sample, Sample)>,
}

fn publish_events(
    o: &Options,
    fleet: &mut Fleet,
    ticker: &mut Ticker,
    deadline: Instant,
) -> EventsRun {
    let armed = fleet.arm(deadline);
    let before = sample::take(&o.server_pids);
    let mut publisher = Publisher::new(o.publisher.clone().expect("checked by args"));
    let interval = Duration::from_secs_f64(1.0 / o.event_rate);
    let t0 = Instant::now();
    let mut run = EventsRun {
        published: 0,
        armed,
        errors: 0,
        first_error: None,
        publish_us: Vec::with_capacity(o.events as usize),
        storm_at_us: None,
        cpu: None,
    };
    for n in 0..o.events {
        fleet.wait(
            (t0 + interval.mul_f64(n as f64)).min(deadline),
            ticker,
            "publish",
            |_, _| false,
        );
        if Instant::now() >= deadline {
            eprintln!("herald-bench: deadline reached while publishing");
            break;
        }
        if o.mode == Mode::Storm && n == o.storm_after {
            fleet.broadcast(&Command::Storm);
            run.storm_at_us = Some(unix_us());
            eprintln!(
                "herald-bench: storm: every listener drops and reconnects with Last-Event-ID"
            );
        }
        let t = unix_us();
        let to = o.audience.targets(n, o.connections);
        if let Err(e) = publisher.publish(&probe::encode(t, n), to.as_deref()) {
            run.errors += 1;
            run.first_error.get_or_insert(e);
        }
        run.publish_us.push(t);
        run.published = n + 1;
        fleet.broadcast(&Command::Published(n + 1));
    }
    if run.storm_at_us.is_some() {
        fleet.wait(deadline, ticker, "storm", |_, all| {
            all.iter()
                .all(|p| p.storm.as_ref().is_some_and(|s| s.done_unix_us.is_some()))
        });
    }
    let published = run.published;
    fleet.wait(
        (Instant::now() + o.drain).min(deadline),
        ticker,
        "drain",
        |t, all| all.iter().all(|p| p.published == published) && t.unique >= t.expected,
    );
    run.cpu = Some((before, sample::take(&o.server_pids)));
    run
}
