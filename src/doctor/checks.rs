//! The rules: one function per report line, each a pure function of the
//! [`Config`] and the [`Host`] facts.
//!
//! Contract: every [`Check`] that is not OK carries the exact fix (a command,
//! a unit setting or a lower `MAX_CONNECTIONS`); a `/proc` value that could
//! not be read is a warning, never a pass (no conntrack table means it is
//! not loaded).

use crate::config::{Config, IoBackend};
use crate::sys::net::LISTEN_BACKLOG;

use super::{
    fd_reserve, Check, Host, Verdict, BASE_BYTES, HERALD_BYTES_PER_CONN, KERNEL_BYTES_PER_CONN,
    URING_MEMLOCK_PER_REACTOR,
};

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

/// Every check, in report order, for `MAX_CONNECTIONS` as herald would
/// run with it on this host ([`super::fit_host`]).
pub fn checks(cfg: &Config, host: &Host) -> Vec<Check> {
    let mut fitted = cfg.clone();
    super::fit_host(&mut fitted, host.nofile_hard, host.mem_available);
    let cfg = &fitted;
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
        jwt_key(cfg),
    ]
}

/// Without a key every token is refused, so with anonymous listeners off
/// nobody could ever listen: herald starts, but serves only 401s.
fn jwt_key(cfg: &Config) -> Check {
    let name = "JWT key";
    let key =
        match (&cfg.jwt_secret, &cfg.jwt_public_key) {
            (Some(_), Some(_)) => "JWT_SECRET and a public key are set",
            (Some(_), None) => "JWT_SECRET is set",
            (None, Some(_)) => "a public key is set",
            (None, None) if cfg.allow_anonymous => {
                return ok(
                    name,
                    "none set: every token is refused; ALLOW_ANONYMOUS=true lets listeners in \
                 without one (broadcasts only)"
                        .into(),
                )
            }
            (None, None) => return bad(
                name,
                Verdict::Fail,
                "none set and ALLOW_ANONYMOUS=false: every /sse request would be refused 401"
                    .into(),
                "set JWT_SECRET (HS256/384/512), or JWT_PUBLIC_KEY / JWT_PUBLIC_KEY_FILE (RS*, \
                 PS*, ES*, EdDSA) to the key your backends sign tokens with; or \
                 ALLOW_ANONYMOUS=true for broadcast-only listeners"
                    .into(),
            ),
        };
    ok(name, key.into())
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
        .chain(cfg.grpc_addr.map(|a| a.port()))
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
