//! `herald doctor`: checks this host against the configuration before (or
//! while) herald runs, and prints one verdict per line with the exact fix.
//!
//! [`Host::read`] gathers the facts (rlimits, `/proc/sys`, `/proc/meminfo`);
//! [`checks()`] is a plain function over those facts and the [`Config`], so
//! every rule is unit-tested without touching the machine.
//!
//! This file holds the per-connection budget, the report types and [`run`];
//! `host` reads the facts, `checks` turns them into verdicts.

use std::fmt;

use crate::config::Config;

mod checks;
mod host;
#[cfg(test)]
mod tests;

pub use checks::{checks, profile_for};
pub use host::{mem_available, parse_kernel, parse_port_list, Host};

/// Kernel memory per idle server-side connection: TCP socket, socket inode,
/// dentry, file and epoll item. Measured at 3.7-4.1 KB of slab per socket with
/// `tuning/measure-kernel.py` (tuning/CAPACITY.md), rounded up.
pub const KERNEL_BYTES_PER_CONN: u64 = 4096;

/// herald's own memory per idle connection (slab record and user-index
/// share). An estimate, the top of the 100-150 B range, until the measured
/// figure in BENCHMARKS.md replaces it.
pub const HERALD_BYTES_PER_CONN: u64 = 150;

/// Fixed memory of the process apart from connections (thread stacks, hub,
/// allocator arenas): an allowance, not a measurement.
pub const BASE_BYTES: u64 = 64 << 20;

/// io_uring ring memory allowed per reactor when the kernel charges it to
/// `RLIMIT_MEMLOCK` (kernels before 5.12).
pub const URING_MEMLOCK_PER_REACTOR: u64 = 1 << 20;

/// File descriptors herald needs beyond client connections: listeners, epoll
/// and eventfd per reactor, admin, logs, Redis.
pub fn fd_reserve(workers: usize) -> u64 {
    64 + 4 * workers as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// The exact fix, for WARN and FAIL.
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = match self.verdict {
            Verdict::Ok => "OK  ",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        write!(f, "{v}  {}: {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n      fix: {fix}")?;
        }
        Ok(())
    }
}

/// Connections this host can hold, and how that was found (for the log):
/// the smaller of `fds`, the client descriptors the open-file limit leaves
/// (`server::fd_budget`), and what fits three quarters of `mem_available`
/// after [`BASE_BYTES`] at [`KERNEL_BYTES_PER_CONN`] +
/// [`HERALD_BYTES_PER_CONN`] each: the figure the `memory` check passes
/// without a warning. Unknown memory leaves the descriptors alone to decide.
pub fn host_capacity(fds: usize, mem_available: Option<u64>) -> (usize, String) {
    let per_conn = KERNEL_BYTES_PER_CONN + HERALD_BYTES_PER_CONN;
    let Some(avail) = mem_available else {
        return (
            fds,
            format!("{fds} from the open-file limit (memory unknown)"),
        );
    };
    let mem = ((avail / 4 * 3).saturating_sub(BASE_BYTES) / per_conn).max(1);
    let fit = fds.min(usize::try_from(mem).unwrap_or(usize::MAX));
    let why = format!(
        "min({fds} from the open-file limit, {mem} fitting 3/4 of MemAvailable {} MiB at \
         {per_conn} B each)",
        avail >> 20
    );
    (fit, why)
}

/// `MAX_CONNECTIONS` as herald would run with it on this host: unset, it is
/// [`host_capacity`] (what `server::run` applies at start-up).
pub fn fit_host(cfg: &mut Config, nofile: u64, mem_available: Option<u64>) -> Option<String> {
    if !cfg.max_connections_auto {
        return None;
    }
    let fds = crate::server::fd_budget(usize::try_from(nofile).unwrap_or(usize::MAX));
    let (fit, why) = host_capacity(fds, mem_available);
    cfg.max_connections = fit;
    Some(why)
}

/// Reads the host, prints the report and returns whether no check failed.
pub fn run(cfg: &Config) -> bool {
    let host = Host::read();
    let mut fitted = cfg.clone();
    if let Some(why) = fit_host(&mut fitted, host.nofile_hard, host.mem_available) {
        println!("MAX_CONNECTIONS unset: {} = {why}", fitted.max_connections);
    }
    let report = checks(cfg, &host);
    for check in &report {
        println!("{check}");
    }
    let count = |v| report.iter().filter(|c| c.verdict == v).count();
    let failed = count(Verdict::Fail);
    println!(
        "doctor: {} ok, {} warn, {failed} fail",
        count(Verdict::Ok),
        count(Verdict::Warn)
    );
    failed == 0
}
