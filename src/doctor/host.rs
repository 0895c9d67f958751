//! The facts `herald doctor` judges: this process's rlimits and what
//! `/proc` says about the kernel, memory and network tables.
//!
//! Contract: [`Host::read`] never fails; a `/proc` value it cannot read is
//! `None` (the reserved ports: none), an rlimit it cannot read is 0.

use nix::sys::resource::{getrlimit, Resource};

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
        let mem_available = mem_available();
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

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn mem_available() -> Option<u64> {
    proc("/proc/meminfo").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    })
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
