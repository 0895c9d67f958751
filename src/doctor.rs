//! `herald doctor`: checks this host against the configuration before (or
//! while) herald runs, and prints one verdict per line with the exact fix.
//!
//! [`Host::read`] gathers the facts (rlimits, `/proc/sys`, `/proc/meminfo`);
//! [`checks`] is a plain function over those facts and the [`Config`], so every
//! rule is unit-tested without touching the machine.

use std::fmt;

use nix::sys::resource::{getrlimit, Resource};

use crate::config::{Config, IoBackend};
use crate::sys::net::LISTEN_BACKLOG;

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

/// Facts about the host; `None` where a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub nofile_soft: u64,
    pub nofile_hard: u64,
    pub nr_open: Option<u64>,
    pub file_max: Option<u64>,
    pub somaxconn: Option<u64>,
    pub port_range: Option<(u16, u16)>,
    /// `net.ipv4.ip_local_reserved_ports`, as inclusive ranges.
    pub reserved_ports: Vec<(u16, u16)>,
    /// `(major, minor)` of the running kernel.
    pub kernel: Option<(u32, u32)>,
    /// `kernel.io_uring_disabled` (0 allowed, 1 group only, 2 off); absent
    /// before Linux 6.6.
    pub io_uring_disabled: Option<u32>,
    /// The io_uring driver's start-up probe ([`crate::sys::uring::probe`]):
    /// what `IO_BACKEND=auto` decides on.
    pub io_uring_probe: Result<(), String>,
    /// Soft `RLIMIT_MEMLOCK` in bytes (`u64::MAX`: unlimited).
    pub memlock: u64,
    /// `MemAvailable` in bytes.
    pub mem_available: Option<u64>,
    /// `(nf_conntrack_count, nf_conntrack_max)` when conntrack is loaded.
    pub conntrack: Option<(u64, u64)>,
}

fn proc(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn proc_u64(path: &str) -> Option<u64> {
    proc(path)?.parse().ok()
}

impl Host {
    /// Reads the facts from this process and `/proc`.
    pub fn read() -> Host {
        let (nofile_soft, nofile_hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((0, 0));
        let memlock = getrlimit(Resource::RLIMIT_MEMLOCK)
            .map(|(soft, _)| soft)
            .unwrap_or(0);
        let port_range = proc("/proc/sys/net/ipv4/ip_local_port_range").and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        });
        let mem_available = proc("/proc/meminfo").and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        let conntrack = proc_u64("/proc/sys/net/netfilter/nf_conntrack_max").map(|max| {
            let count = proc_u64("/proc/sys/net/netfilter/nf_conntrack_count").unwrap_or(0);
            (count, max)
        });
        Host {
            nofile_soft,
            nofile_hard,
            nr_open: proc_u64("/proc/sys/fs/nr_open"),
            file_max: proc_u64("/proc/sys/fs/file-max"),
            somaxconn: proc_u64("/proc/sys/net/core/somaxconn"),
            port_range,
            reserved_ports: parse_port_list(
                &proc("/proc/sys/net/ipv4/ip_local_reserved_ports").unwrap_or_default(),
            ),
            kernel: proc("/proc/sys/kernel/osrelease").and_then(|s| parse_kernel(&s)),
            io_uring_disabled: proc("/proc/sys/kernel/io_uring_disabled")
                .and_then(|s| s.parse().ok()),
            io_uring_probe: crate::sys::uring::probe(),
            memlock,
            mem_available,
            conntrack,
        }
    }
}

/// `"6.18.44-foo"` → `(6, 18)`.
pub fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// `"8080,9000-9010"` → `[(8080, 8080), (9000, 9010)]`; bad items are skipped.
pub fn parse_port_list(list: &str) -> Vec<(u16, u16)> {
    list.split(',')
        .filter_map(|item| {
            let item = item.trim();
            let (lo, hi) = item.split_once('-').unwrap_or((item, item));
            Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?))
        })
        .collect()
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

fn ok(name: &'static str, detail: String) -> Check {
    Check {
        name,
        verdict: Verdict::Ok,
        detail,
        fix: None,
    }
}

fn bad(name: &'static str, verdict: Verdict, detail: String, fix: String) -> Check {
    Check {
        name,
        verdict,
        detail,
        fix: Some(fix),
    }
}

fn unreadable(name: &'static str, path: &str) -> Check {
    bad(
        name,
        Verdict::Warn,
        format!("cannot read {path}"),
        "run herald doctor on the host itself, with /proc mounted".into(),
    )
}

fn mib(bytes: u64) -> u64 {
    bytes >> 20
}

/// Every check, in report order.
pub fn checks(cfg: &Config, host: &Host) -> Vec<Check> {
    let need_fds = cfg.max_connections as u64 + fd_reserve(cfg.workers);
    let uses_uring = cfg.io_backend != IoBackend::Epoll;
    let uring_verdict = if cfg.io_backend == IoBackend::Uring {
        Verdict::Fail
    } else {
        Verdict::Warn
    };
    vec![
        fd_limit(cfg, host, need_fds),
        at_least(
            "fs.nr_open",
            host.nr_open,
            need_fds,
            "the largest fd limit a process may be given",
        ),
        at_least(
            "fs.file-max",
            host.file_max,
            need_fds,
            "open files on the whole host",
        ),
        somaxconn(host),
        port_range(cfg, host),
        io_uring(host, uses_uring, cfg.io_backend, uring_verdict),
        memlock(cfg, host, uses_uring, uring_verdict),
        memory(cfg, host),
        conntrack(cfg, host),
    ]
}

fn fd_limit(cfg: &Config, host: &Host, need: u64) -> Check {
    let name = "fd limit (RLIMIT_NOFILE)";
    // herald raises its soft limit to the hard one at start-up.
    let detail = format!(
        "soft {} / hard {}; herald raises soft to hard and needs {need} \
         (MAX_CONNECTIONS={} + {} reserved)",
        host.nofile_soft,
        host.nofile_hard,
        cfg.max_connections,
        fd_reserve(cfg.workers)
    );
    if host.nofile_hard >= need {
        return ok(name, detail);
    }
    let after = if host.nr_open.is_some_and(|n| n < need) {
        " once fs.nr_open allows it (below)"
    } else {
        ""
    };
    bad(
        name,
        Verdict::Fail,
        detail,
        format!(
            "under systemd: LimitNOFILE={need} (systemctl edit herald); in a shell: ulimit -n \
             {need} (as root, or allow it in /etc/security/limits.d/herald.conf){after}; or \
             lower MAX_CONNECTIONS to {}",
            host.nofile_hard.saturating_sub(fd_reserve(cfg.workers))
        ),
    )
}

fn at_least(name: &'static str, have: Option<u64>, need: u64, what: &str) -> Check {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    let Some(have) = have else {
        return unreadable(name, &path);
    };
    let detail = format!("{have} ({what}); needs {need}");
    if have >= need {
        return ok(name, detail);
    }
    let want = need.next_power_of_two();
    let profile = profile_for(need);
    bad(
        name,
        Verdict::Fail,
        detail,
        format!(
            "sysctl -w {name}={want}; for every knob at once: herald-tune apply {profile} \
             (scripts/tune.sh in the source tree), and to keep them: cp \
             sysctl.d/60-herald-{profile}.conf /etc/sysctl.d/"
        ),
    )
}

/// The smallest sysctl.d profile whose `fs.nr_open` and `fs.file-max` hold
/// `fds`.
pub fn profile_for(fds: u64) -> &'static str {
    match fds {
        0..=1_048_576 => "c100k",
        1_048_577..=2_097_152 => "c1m",
        _ => "c10m",
    }
}

fn somaxconn(host: &Host) -> Check {
    let name = "net.core.somaxconn";
    let Some(have) = host.somaxconn else {
        return unreadable(name, "/proc/sys/net/core/somaxconn");
    };
    let want = LISTEN_BACKLOG as u64;
    let detail = format!("{have}; herald asks for an accept backlog of {want}");
    if have >= want {
        return ok(name, detail);
    }
    bad(
        name,
        Verdict::Warn,
        format!("{detail}: the kernel caps it at {have}, so a reconnect storm drops SYNs"),
        format!("sysctl -w net.core.somaxconn={want} (kept by every sysctl.d/60-herald-* profile)"),
    )
}

fn port_range(cfg: &Config, host: &Host) -> Check {
    let name = "net.ipv4.ip_local_port_range";
    let Some((lo, hi)) = host.port_range else {
        return unreadable(name, "/proc/sys/net/ipv4/ip_local_port_range");
    };
    let reserved = |p: u16| host.reserved_ports.iter().any(|&(a, b)| a <= p && p <= b);
    let clashing: Vec<String> = [cfg.listen_addr.port(), cfg.admin_addr.port()]
        .into_iter()
        .filter(|&p| p != 0 && lo <= p && p <= hi && !reserved(p))
        .map(|p| p.to_string())
        .collect();
    if !clashing.is_empty() {
        return bad(
            name,
            Verdict::Warn,
            format!(
                "{lo}-{hi} contains herald's port {}: an outbound connection can take it \
                 before herald binds",
                clashing.join(" and ")
            ),
            format!(
                "sysctl -w net.ipv4.ip_local_reserved_ports={} (or move the range: \
                 sysctl -w net.ipv4.ip_local_port_range=\"10240 65535\")",
                clashing.join(",")
            ),
        );
    }
    let width = u32::from(hi.saturating_sub(lo)) + 1;
    let detail = format!(
        "{lo}-{hi} ({width} ports; used only by outbound connections: Redis, and a proxy or \
         load generator on this host)"
    );
    if width >= 50_000 {
        return ok(name, detail);
    }
    bad(
        name,
        Verdict::Warn,
        detail,
        "sysctl -w net.ipv4.ip_local_port_range=\"10240 65535\" (see tuning/PORTS.md)".into(),
    )
}

fn io_uring(host: &Host, uses_uring: bool, backend: IoBackend, verdict: Verdict) -> Check {
    let name = "io_uring";
    if !uses_uring {
        return ok(name, "not used (IO_BACKEND=epoll)".into());
    }
    let (available, why) = match (host.io_uring_disabled, host.kernel) {
        (Some(0), _) => (true, "kernel.io_uring_disabled=0".to_string()),
        (Some(1), _) => (
            false,
            "kernel.io_uring_disabled=1 (only members of kernel.io_uring_group)".into(),
        ),
        (Some(n), _) => (false, format!("kernel.io_uring_disabled={n}")),
        (None, Some(k)) if k >= (5, 1) => (
            true,
            format!(
                "kernel {}.{} has io_uring (no io_uring_disabled switch)",
                k.0, k.1
            ),
        ),
        (None, Some(k)) => (
            false,
            format!("kernel {}.{} predates io_uring (5.1)", k.0, k.1),
        ),
        (None, None) => (false, "kernel version unreadable".into()),
    };
    let why = match (&host.io_uring_probe, available) {
        (Ok(()), true) => {
            let picks = if backend == IoBackend::Uring {
                "IO_BACKEND=uring can start"
            } else {
                "IO_BACKEND=auto uses io_uring"
            };
            return ok(name, format!("available: {why}; the probe passed, {picks}"));
        }
        (Err(probe), true) => format!("{why}, but the probe failed: {probe}"),
        (_, false) => why,
    };
    let consequence = if backend == IoBackend::Uring {
        "IO_BACKEND=uring cannot start"
    } else {
        "IO_BACKEND=auto falls back to epoll"
    };
    bad(
        name,
        verdict,
        format!("unavailable: {why}; {consequence}"),
        "sysctl -w kernel.io_uring_disabled=0 (Linux >= 5.1), or set IO_BACKEND=epoll".into(),
    )
}

fn memlock(cfg: &Config, host: &Host, uses_uring: bool, verdict: Verdict) -> Check {
    let name = "RLIMIT_MEMLOCK";
    let have = if host.memlock == u64::MAX {
        "unlimited".to_string()
    } else {
        format!("{} KiB", host.memlock >> 10)
    };
    if !uses_uring {
        return ok(name, format!("{have}; not needed (IO_BACKEND=epoll)"));
    }
    match host.kernel {
        Some(k) if k >= (5, 12) => {
            return ok(
                name,
                format!(
                    "{have}; kernel {}.{} charges io_uring rings to the memory cgroup, not \
                     to memlock",
                    k.0, k.1
                ),
            )
        }
        _ => {}
    }
    let need = URING_MEMLOCK_PER_REACTOR * cfg.workers as u64;
    let detail = format!(
        "{have}; kernels before 5.12 charge io_uring rings to it: {} reactor(s) need about {} \
         KiB",
        cfg.workers,
        need >> 10
    );
    if host.memlock >= need {
        return ok(name, detail);
    }
    bad(
        name,
        verdict,
        detail,
        format!(
            "LimitMEMLOCK={}M in the unit (systemctl edit herald), or ulimit -l {}",
            need.div_ceil(1 << 20),
            need >> 10
        ),
    )
}

fn memory(cfg: &Config, host: &Host) -> Check {
    let name = "memory";
    let Some(avail) = host.mem_available else {
        return unreadable(name, "/proc/meminfo");
    };
    let per_conn = KERNEL_BYTES_PER_CONN + HERALD_BYTES_PER_CONN;
    let need = cfg.max_connections as u64 * per_conn + BASE_BYTES;
    let fit = avail.saturating_sub(BASE_BYTES) / per_conn;
    let detail = format!(
        "MAX_CONNECTIONS={} idle needs ~{} MiB ({per_conn} B each: {KERNEL_BYTES_PER_CONN} \
         kernel + {HERALD_BYTES_PER_CONN} herald, + {} MiB base); MemAvailable {} MiB",
        cfg.max_connections,
        mib(need),
        mib(BASE_BYTES),
        mib(avail)
    );
    let fix = format!(
        "lower MAX_CONNECTIONS to {} (to keep 25% for bursts) or add RAM; capacity \
         arithmetic: tuning/CAPACITY.md",
        fit * 3 / 4
    );
    if need > avail {
        bad(name, Verdict::Fail, detail, fix)
    } else if need > avail / 4 * 3 {
        bad(
            name,
            Verdict::Warn,
            format!("{detail}: less than 25% left for queued events"),
            fix,
        )
    } else {
        ok(name, detail)
    }
}

fn conntrack(cfg: &Config, host: &Host) -> Check {
    let name = "nf_conntrack";
    let Some((count, max)) = host.conntrack else {
        return ok(name, "not loaded".into());
    };
    let need = cfg.max_connections as u64;
    let detail = format!("nf_conntrack_max {max}, {count} tracked now; MAX_CONNECTIONS={need}");
    if max >= need {
        return ok(name, detail);
    }
    let verdict = if count > 0 {
        Verdict::Fail
    } else {
        Verdict::Warn
    };
    bad(
        name,
        verdict,
        format!("{detail}: a full table drops new connections"),
        format!(
            "sysctl -w net.netfilter.nf_conntrack_max={}, or exempt herald's port: iptables -t \
             raw -I PREROUTING -p tcp --dport {port} -j NOTRACK && iptables -t raw -I OUTPUT -p \
             tcp --sport {port} -j NOTRACK",
            need.next_power_of_two(),
            port = cfg.listen_addr.port()
        ),
    )
}

/// Reads the host, prints the report and returns whether no check failed.
pub fn run(cfg: &Config) -> bool {
    let report = checks(cfg, &Host::read());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |k| map.get(k).cloned()).unwrap()
    }

    /// A host tuned with the c1m profile, 32 GiB free.
    fn tuned() -> Host {
        Host {
            nofile_soft: 1024,
            nofile_hard: 1_100_000,
            nr_open: Some(2_097_152),
            file_max: Some(4_194_304),
            somaxconn: Some(65535),
            port_range: Some((10240, 65535)),
            reserved_ports: vec![],
            kernel: Some((6, 8)),
            io_uring_disabled: Some(0),
            io_uring_probe: Ok(()),
            memlock: 8 << 20,
            mem_available: Some(32 << 30),
            conntrack: None,
        }
    }

    fn one_million() -> Config {
        cfg(&[("MAX_CONNECTIONS", "1000000"), ("WORKERS", "4")])
    }

    fn find<'a>(report: &'a [Check], name: &str) -> &'a Check {
        report.iter().find(|c| c.name.starts_with(name)).unwrap()
    }

    #[test]
    fn a_tuned_host_passes_everything() {
        let report = checks(&one_million(), &tuned());
        for c in &report {
            assert_eq!(c.verdict, Verdict::Ok, "{c}");
        }
    }

    #[test]
    fn low_fd_limit_fails_with_the_exact_limit_to_set() {
        let host = Host {
            nofile_soft: 1024,
            nofile_hard: 1024,
            ..tuned()
        };
        let report = checks(
            &cfg(&[("MAX_CONNECTIONS", "100000"), ("WORKERS", "2")]),
            &host,
        );
        let c = find(&report, "fd limit");
        assert_eq!(c.verdict, Verdict::Fail);
        let need = 100_000 + fd_reserve(2);
        let fix = c.fix.as_deref().unwrap();
        assert!(fix.contains(&format!("LimitNOFILE={need}")), "{fix}");
        assert!(fix.contains(&format!("ulimit -n {need}")), "{fix}");
        assert!(fix.contains(&format!("MAX_CONNECTIONS to {}", 1024 - fd_reserve(2))));
        assert!(!fix.contains("once fs.nr_open allows it"), "{fix}");
        let capped = Host {
            nr_open: Some(50_000),
            ..host
        };
        let report = checks(
            &cfg(&[("MAX_CONNECTIONS", "100000"), ("WORKERS", "2")]),
            &capped,
        );
        let fix = find(&report, "fd limit").fix.clone().unwrap();
        assert!(fix.contains("once fs.nr_open allows it"), "{fix}");
    }

    #[test]
    fn a_low_soft_limit_is_fine_when_the_hard_limit_allows_it() {
        let host = Host {
            nofile_soft: 1024,
            nofile_hard: 2_000_000,
            ..tuned()
        };
        let report = checks(&one_million(), &host);
        assert_eq!(find(&report, "fd limit").verdict, Verdict::Ok);
    }

    #[test]
    fn nr_open_and_file_max_below_the_need_fail() {
        let host = Host {
            nr_open: Some(1_000_000),
            file_max: Some(500_000),
            ..tuned()
        };
        let report = checks(&one_million(), &host);
        let c = find(&report, "fs.nr_open");
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("sysctl -w fs.nr_open=1048576"));
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("herald-tune apply c100k"));
        let c = find(&report, "fs.file-max");
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("sysctl -w fs.file-max=1048576"));
    }

    #[test]
    fn unreadable_proc_values_warn() {
        let host = Host {
            nr_open: None,
            mem_available: None,
            ..tuned()
        };
        let report = checks(&one_million(), &host);
        assert_eq!(find(&report, "fs.nr_open").verdict, Verdict::Warn);
        assert_eq!(find(&report, "memory").verdict, Verdict::Warn);
    }

    #[test]
    fn small_somaxconn_warns() {
        let host = Host {
            somaxconn: Some(4096),
            ..tuned()
        };
        let c = checks(&one_million(), &host);
        let c = find(&c, "net.core.somaxconn");
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("net.core.somaxconn=65535"));
    }

    #[test]
    fn port_range_clash_and_width() {
        // The kernel default range holds neither 8080 nor 9090 but is narrow.
        let narrow = Host {
            port_range: Some((32768, 60999)),
            ..tuned()
        };
        let c = checks(&one_million(), &narrow);
        assert_eq!(
            find(&c, "net.ipv4.ip_local_port_range").verdict,
            Verdict::Warn
        );

        let wide = Host {
            port_range: Some((1024, 65535)),
            ..tuned()
        };
        let report = checks(&one_million(), &wide);
        let c = find(&report, "net.ipv4.ip_local_port_range");
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("ip_local_reserved_ports=8080,9090"));

        let reserved = Host {
            reserved_ports: parse_port_list("8080,9000-9100"),
            ..wide
        };
        let c = checks(&one_million(), &reserved);
        assert_eq!(
            find(&c, "net.ipv4.ip_local_port_range").verdict,
            Verdict::Ok
        );
    }

    #[test]
    fn io_uring_and_memlock_depend_on_the_backend_and_kernel() {
        let off = Host {
            io_uring_disabled: Some(2),
            ..tuned()
        };
        let report = checks(&one_million(), &off);
        assert_eq!(find(&report, "io_uring").verdict, Verdict::Warn);
        let epoll = cfg(&[("MAX_CONNECTIONS", "1000000"), ("IO_BACKEND", "epoll")]);
        assert_eq!(find(&checks(&epoll, &off), "io_uring").verdict, Verdict::Ok);

        let old = Host {
            kernel: Some((5, 10)),
            io_uring_disabled: None,
            memlock: 64 << 10,
            ..tuned()
        };
        let report = checks(&one_million(), &old);
        assert_eq!(find(&report, "io_uring").verdict, Verdict::Ok);
        let c = find(&report, "RLIMIT_MEMLOCK");
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(c.fix.as_deref().unwrap().contains("LimitMEMLOCK=4M"));
        let roomy = Host {
            memlock: u64::MAX,
            ..old
        };
        let c = checks(&one_million(), &roomy);
        assert_eq!(find(&c, "RLIMIT_MEMLOCK").verdict, Verdict::Ok);

        // The sysctl allows it but the driver's probe fails: auto falls back
        // (warning), uring cannot start (failure), and the reason is shown.
        let unprobed = Host {
            io_uring_probe: Err("no provided-buffer rings".into()),
            ..tuned()
        };
        let c = find(&checks(&one_million(), &unprobed), "io_uring").clone();
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(
            c.detail.contains("no provided-buffer rings"),
            "{}",
            c.detail
        );
        assert!(c.detail.contains("falls back to epoll"), "{}", c.detail);
        let uring = cfg(&[("MAX_CONNECTIONS", "1000000"), ("IO_BACKEND", "uring")]);
        assert_eq!(
            find(&checks(&uring, &unprobed), "io_uring").verdict,
            Verdict::Fail
        );
        let c = find(&checks(&one_million(), &tuned()), "io_uring").clone();
        assert!(
            c.detail.contains("IO_BACKEND=auto uses io_uring"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn memory_headroom() {
        let host = Host {
            mem_available: Some(2 << 30),
            ..tuned()
        };
        let report = checks(&one_million(), &host);
        let c = find(&report, "memory");
        assert_eq!(c.verdict, Verdict::Fail);
        let fit = ((2u64 << 30) - BASE_BYTES) / (KERNEL_BYTES_PER_CONN + HERALD_BYTES_PER_CONN);
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains(&format!("MAX_CONNECTIONS to {}", fit * 3 / 4)));

        // 1M x 4246 B = ~4.0 GiB + base: 5 GiB available leaves under 25%.
        let tight = Host {
            mem_available: Some(5 << 30),
            ..tuned()
        };
        let c = checks(&one_million(), &tight);
        assert_eq!(find(&c, "memory").verdict, Verdict::Warn);
    }

    #[test]
    fn small_conntrack_table_fails_only_when_in_use() {
        let idle = Host {
            conntrack: Some((0, 262_144)),
            ..tuned()
        };
        let c = checks(&one_million(), &idle);
        assert_eq!(find(&c, "nf_conntrack").verdict, Verdict::Warn);
        let busy = Host {
            conntrack: Some((10, 262_144)),
            ..tuned()
        };
        let report = checks(&one_million(), &busy);
        let c = find(&report, "nf_conntrack");
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c
            .fix
            .as_deref()
            .unwrap()
            .contains("--dport 8080 -j NOTRACK"));
    }

    #[test]
    fn profile_for_the_fd_need() {
        assert_eq!(profile_for(100_072), "c100k");
        assert_eq!(profile_for(1_048_576), "c100k");
        assert_eq!(profile_for(1_048_577), "c1m");
        assert_eq!(profile_for(10_000_072), "c10m");
    }

    #[test]
    fn parsers() {
        assert_eq!(parse_kernel("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(parse_kernel("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_kernel("garbage"), None);
        assert_eq!(
            parse_port_list("8080, 9000-9010,x"),
            vec![(8080, 8080), (9000, 9010)]
        );
        assert!(parse_port_list("").is_empty());
    }
}
