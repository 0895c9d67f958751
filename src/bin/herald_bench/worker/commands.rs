//! The worker's side of the conversation with the coordinator: commands as
//! JSON lines on stdin (arm, published, storm, halt, report, quit), updates
//! as JSON lines on stdout (progress, armed, report).
//!
//! Contract: a closed or broken stdin ends the worker; a broken stdout is
//! ignored (the closed stdin follows).

use std::cmp::Reverse;
use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::bench::proto::{Command, Progress, Report, StormProgress, Update};
use crate::bench::sample;

use super::{State, Worker};

/// The failure reason of listeners never started because of `Halt`.
const HALTED: &str = "not started: MemAvailable below --min-available";

impl Worker {
    pub(super) fn read_commands(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            match nix::unistd::read(std::io::stdin().as_fd(), &mut chunk) {
                Ok(0) => {
                    self.quit = true; // the coordinator is gone
                    return;
                }
                Ok(n) => self.stdin_buf.extend_from_slice(&chunk[..n]),
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    self.quit = true;
                    return;
                }
            }
        }
        while let Some(end) = self.stdin_buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.stdin_buf.drain(..=end).collect();
            match serde_json::from_slice::<Command>(&line) {
                Ok(cmd) => self.command(cmd),
                Err(e) => eprintln!("herald-bench worker: bad command: {e}"),
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Arm => {
                for c in &mut self.conns {
                    if c.state == State::Streaming && !c.armed {
                        c.armed = true;
                        self.armed += 1;
                    }
                }
                self.send(&Update::Armed(self.armed));
            }
            Command::Published(n) => {
                for seq in self.progress.published..n {
                    let Worker { targets, conns, .. } = self;
                    self.progress.expected += match targets.local(seq) {
                        None => self.armed,
                        Some(local) => local
                            .iter()
                            .filter(|&&g| conns[(g - self.plan.first) as usize].armed)
                            .count() as u64,
                    };
                }
                self.progress.published = self.progress.published.max(n);
            }
            Command::Storm => self.storm(),
            Command::Halt => self.halt(),
            Command::Report => {
                let report = self.report();
                self.send(&Update::Report(Box::new(report)));
            }
            Command::Quit => self.quit = true,
        }
    }

    /// Gives up on every listener not started yet.
    fn halt(&mut self) {
        self.halted = true;
        let now = Instant::now();
        let waiting: Vec<u32> = self
            .queue
            .drain(..)
            .chain(self.retries.drain().map(|Reverse((_, i))| i))
            .collect();
        for i in waiting {
            self.fail(i, HALTED.into(), now);
        }
    }

    fn storm(&mut self) {
        let mut st = StormProgress::default();
        for (i, c) in self.conns.iter_mut().enumerate() {
            if c.state == State::Streaming {
                c.fd = None; // closing the socket also leaves the epoll set
                c.state = State::Queued;
                c.in_storm = true;
                c.tries = 0;
                c.parser.restart();
                st.closed += 1;
                self.queue.push_back(i as u32);
            }
        }
        self.progress.open -= st.closed;
        // Away first (--away): nothing starts before `pace_start`.
        self.pace_start = Instant::now() + Duration::from_millis(self.plan.away_ms);
        self.paced = 0;
        self.storm = Some(st);
        self.check_storm_done();
    }

    // ----- reporting -------------------------------------------------------------

    pub(super) fn snapshot(&self) -> Progress {
        Progress {
            settled: self.unsettled == 0,
            unique: self.tally.unique,
            duplicates: self.tally.duplicates,
            storm: self.storm.clone(),
            ..self.progress.clone()
        }
    }

    fn report(&self) -> Report {
        let me = sample::process("self").unwrap_or_default();
        let t = &self.tally;
        Report {
            progress: self.snapshot(),
            failures: self.failures.clone(),
            latency_us: t.latency.clone(),
            last_delivery_us: t.last_delivery_us.clone(),
            gaps: t.gaps,
            strays: t.strays,
            unarmed: t.unarmed,
            history_gaps: t.history_gaps,
            other_events: t.other_events,
            comments: self.conns.iter().map(|c| c.parser.comments()).sum(),
            bytes_read: self.bytes_read,
            rss_kb: me.rss_kb,
            cpu_s: me.cpu_s(),
        }
    }

    pub(super) fn send(&self, update: &Update) {
        let mut line = serde_json::to_vec(update).expect("updates serialize");
        line.push(b'\n');
        let mut out = std::io::stdout().lock();
        if out.write_all(&line).and_then(|()| out.flush()).is_err() {
            // The coordinator is gone; the closed stdin will end us.
        }
    }
}
