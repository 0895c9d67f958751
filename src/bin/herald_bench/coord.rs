//! The coordinator: splits the run over worker processes, drives the phases,
//! publishes, samples the server, and merges what the workers report.
//!
//! Phases: connect (until every listener is open or given up on) → hold →
//! (fanout, storm) arm, publish at the given rate, storm mid-way, drain until
//! every expected delivery arrived or the drain time is up → report → quit.
//! Every wait is bounded by `--deadline`; workers also stop by themselves at
//! it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::args::{Mode, Options};
use super::clock::{unix_ms, unix_us};
use super::hist::Histogram;
use super::probe;
use super::proto::{Command, Plan, Progress, Update};
use super::publish::Publisher;
use super::report::{self, Merged, Quantiles, Summary};
use super::sample::{self, Sample};

/// File descriptors a worker keeps for itself (stdio, epoll, slack).
const FD_RESERVE: u64 = 100;
/// How long workers get to answer `Arm` and `Report`, and to exit.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

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
                token_in: o.token_in,
                headers: o.headers.clone(),
                src: o.src.clone(),
                rate: o.rate / procs as f64,
                inflight: (o.inflight / procs as u64).max(1),
                connect_timeout_ms: o.connect_timeout.as_millis() as u64,
                audience: o.audience,
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

struct SummaryInput<'a> {
    connect_secs: f64,
    samples: [&'a Sample; 4],
    held: Progress,
    events: Option<EventsRun>,
    merged: Merged,
}

fn summarize(o: &Options, procs: usize, fleet: &Fleet, i: SummaryInput<'_>) -> Summary {
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

// ----- the worker processes ------------------------------------------------------

/// Worker processes, their stdins, and one channel carrying every line they
/// write (a reader thread per worker; `None` when a worker's stdout closes).
struct Fleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: Receiver<(usize, Option<Update>)>,
    latest: Vec<Progress>,
    gone: Vec<bool>,
    /// `MemAvailable` floor (kB) below which workers are told to halt.
    floor_kb: u64,
    halted: bool,
    /// Replies to the command in flight (`Arm`, `Report`).
    replies: Vec<Option<Update>>,
}

impl Fleet {
    fn spawn(plans: &[Plan], floor_kb: u64) -> Result<Fleet, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut fleet = Fleet {
            children: Vec::new(),
            stdins: Vec::new(),
            rx,
            latest: vec![Progress::default(); plans.len()],
            gone: vec![false; plans.len()],
            floor_kb,
            halted: false,
            replies: Vec::new(),
        };
        for (k, plan) in plans.iter().enumerate() {
            let mut child = Process::new(&exe)
                .arg("worker")
                .arg(serde_json::to_string(plan).expect("plans serialize"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| format!("spawn worker {k}: {e}"))?;
            let stdout = child.stdout.take().expect("piped");
            fleet.stdins.push(child.stdin.take());
            fleet.children.push(child);
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("worker-{k}"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        match serde_json::from_str::<Update>(&line) {
                            Ok(u) => {
                                if tx.send((k, Some(u))).is_err() {
                                    return;
                                }
                            }
                            Err(e) => eprintln!("herald-bench: worker {k} said {line:?}: {e}"),
                        }
                    }
                    let _ = tx.send((k, None));
                })
                .map_err(|e| format!("reader thread: {e}"))?;
        }
        Ok(fleet)
    }

    fn lost(&self) -> usize {
        self.gone.iter().filter(|&&g| g).count()
    }

    fn total(&self) -> Progress {
        let mut t = Progress::default();
        for p in &self.latest {
            t.add(p);
        }
        t
    }

    fn broadcast(&mut self, cmd: &Command) {
        let mut line = serde_json::to_vec(cmd).expect("commands serialize");
        line.push(b'\n');
        for (k, stdin) in self.stdins.iter_mut().enumerate() {
            if let Some(s) = stdin {
                if s.write_all(&line).and_then(|()| s.flush()).is_err() {
                    *stdin = None;
                    self.gone[k] = true;
                }
            }
        }
    }

    /// Takes one message, waiting until `until` at most; false on timeout.
    fn pump(&mut self, until: Instant) -> bool {
        let timeout = until.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(timeout) {
            Ok((k, Some(Update::Progress(p)))) => self.latest[k] = p,
            Ok((k, Some(reply))) => {
                if let Some(slot) = self.replies.get_mut(k) {
                    *slot = Some(reply);
                }
            }
            Ok((k, None)) => self.gone[k] = true,
            Err(RecvTimeoutError::Timeout) => return false,
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(timeout);
                return false;
            }
        }
        true
    }

    /// Pumps messages until `done(total, per-worker)` holds, every worker is
    /// gone, or `until`; prints progress once a second.
    fn wait(
        &mut self,
        until: Instant,
        ticker: &mut Ticker,
        phase: &str,
        done: impl Fn(&Progress, &[Progress]) -> bool,
    ) {
        loop {
            let total = self.total();
            if ticker.tick(phase, &total) {
                self.check_memory();
            }
            let live: Vec<Progress> = self
                .latest
                .iter()
                .zip(&self.gone)
                .filter(|(_, &g)| !g)
                .map(|(p, _)| p.clone())
                .collect();
            if live.is_empty() || done(&total, &live) {
                return;
            }
            if !self.pump(until.min(ticker.next)) && Instant::now() >= until {
                return;
            }
        }
    }

    /// Halts the workers once `MemAvailable` is below the floor.
    fn check_memory(&mut self) {
        let available = sample::mem_available_kb();
        if !self.halted && available > 0 && available < self.floor_kb {
            eprintln!(
                "herald-bench: MemAvailable {} MB is below --min-available {} MB: \
                 no more connections",
                available / 1024,
                self.floor_kb / 1024
            );
            self.broadcast(&Command::Halt);
            self.halted = true;
        }
    }

    /// Sends `cmd` and collects one reply per live worker.
    fn request(&mut self, cmd: &Command, deadline: Instant) -> Vec<Update> {
        self.replies = (0..self.children.len()).map(|_| None).collect();
        self.broadcast(cmd);
        let until = (Instant::now() + REPLY_TIMEOUT).min(deadline + REPLY_TIMEOUT);
        while (0..self.children.len()).any(|k| self.replies[k].is_none() && !self.gone[k]) {
            if !self.pump(until) && Instant::now() >= until {
                eprintln!("herald-bench: some workers did not answer {cmd:?}");
                break;
            }
        }
        std::mem::take(&mut self.replies)
            .into_iter()
            .flatten()
            .collect()
    }

    fn arm(&mut self, deadline: Instant) -> u64 {
        self.request(&Command::Arm, deadline)
            .iter()
            .map(|u| match u {
                Update::Armed(n) => *n,
                _ => 0,
            })
            .sum()
    }

    /// Collects the final reports, then stops every worker.
    fn finish(&mut self) -> Merged {
        let mut merged = Merged::default();
        for u in self.request(&Command::Report, Instant::now()) {
            if let Update::Report(r) = u {
                merged.add(&r);
            }
        }
        let missing = self.children.len() - merged.reports;
        if missing > 0 {
            eprintln!("herald-bench: {missing} worker(s) sent no report");
        }
        self.broadcast(&Command::Quit);
        self.stdins.clear();
        let until = Instant::now() + REPLY_TIMEOUT;
        for (k, child) in self.children.iter_mut().enumerate() {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        if !status.success() {
                            eprintln!("herald-bench: worker {k} exited with {status}");
                        }
                        break;
                    }
                    Ok(None) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        eprintln!("herald-bench: worker {k} did not exit; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        merged
    }
}

/// Once-a-second progress on stderr.
struct Ticker {
    start: Instant,
    next: Instant,
    requested: u64,
    last_open: u64,
}

impl Ticker {
    fn new(start: Instant, requested: u64) -> Self {
        Ticker {
            start,
            next: start,
            requested,
            last_open: 0,
        }
    }

    /// Prints a line when a second has passed since the last; true if it did.
    fn tick(&mut self, phase: &str, t: &Progress) -> bool {
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        let rate = t.open as f64 - self.last_open as f64;
        self.last_open = t.open;
        self.next = now + Duration::from_secs(1);
        let mut line = format!(
            "[{:6.1}s] {phase:8} open {}/{} ({rate:+.0}/s)  failed {}  dropped {}",
            self.start.elapsed().as_secs_f64(),
            t.open,
            self.requested,
            t.failed,
            t.dropped
        );
        if t.published > 0 {
            line.push_str(&format!(
                "  published {}  delivered {}/{}  dup {}",
                t.published, t.unique, t.expected, t.duplicates
            ));
        }
        if let Some(s) = &t.storm {
            line.push_str(&format!(
                "  storm back {}/{} (gave up {})",
                s.back, s.closed, s.given_up
            ));
        }
        eprintln!("{line}");
        true
    }
}
