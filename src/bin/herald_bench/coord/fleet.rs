//! The worker processes: [`Fleet`] spawns them (`herald-bench worker
//! '<plan>'`), writes commands to their stdins, and gathers every JSON line
//! they write through one channel; [`Ticker`] prints the progress.
//!
//! Contract: every wait is bounded: [`Fleet::wait`] by the instant it is
//! given, replies and exits by `REPLY_TIMEOUT` (at most that long past the
//! run's deadline); a worker whose stdout closes, or whose stdin cannot be
//! written, counts as gone, and [`Fleet::finish`] kills any that does not
//! exit.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::bench::proto::{Command, Plan, Progress, Update};
use crate::bench::report::Merged;
use crate::bench::sample;

/// How long workers get to answer `Arm` and `Report`, and to exit.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Worker processes, their stdins, and one channel carrying every line they
/// write (a reader thread per worker; `None` when a worker's stdout closes).
pub(super) struct Fleet {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    rx: Receiver<(usize, Option<Update>)>,
    latest: Vec<Progress>,
    gone: Vec<bool>,
    /// `MemAvailable` floor (kB) below which workers are told to halt.
    floor_kb: u64,
    pub(super) halted: bool,
    /// Replies to the command in flight (`Arm`, `Report`).
    replies: Vec<Option<Update>>,
}

impl Fleet {
    pub(super) fn spawn(plans: &[Plan], floor_kb: u64) -> Result<Fleet, String> {
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

    pub(super) fn lost(&self) -> usize {
        self.gone.iter().filter(|&&g| g).count()
    }

    pub(super) fn total(&self) -> Progress {
        let mut t = Progress::default();
        for p in &self.latest {
            t.add(p);
        }
        t
    }

    pub(super) fn broadcast(&mut self, cmd: &Command) {
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
    pub(super) fn wait(
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

    pub(super) fn arm(&mut self, deadline: Instant) -> u64 {
        self.request(&Command::Arm, deadline)
            .iter()
            .map(|u| match u {
                Update::Armed(n) => *n,
                _ => 0,
            })
            .sum()
    }

    /// Collects the final reports, then stops every worker.
    pub(super) fn finish(&mut self) -> Merged {
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
pub(super) struct Ticker {
    start: Instant,
    next: Instant,
    requested: u64,
    last_open: u64,
}

impl Ticker {
    pub(super) fn new(start: Instant, requested: u64) -> Self {
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
