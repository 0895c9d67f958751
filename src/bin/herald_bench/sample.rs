//! Snapshots of the server processes and of the kernel, from `/proc`.
//!
//! - per process (`--server-pid`, summed): `VmRSS` and `RssAnon` from
//!   `/proc/<pid>/status`,
//!   `Pss` from `/proc/<pid>/smaps_rollup` (shared pages split between the
//!   processes sharing them, so nginx workers' shared memory is not counted
//!   once per worker), user and system CPU from `/proc/<pid>/stat`;
//! - kernel: `Slab` and `MemAvailable` from `/proc/meminfo`, `sockets: used`
//!   and `TCP: inuse .. mem <pages>` from `/proc/net/sockstat`, and the bytes
//!   in use per slab cache (active objects × object size) from
//!   `/proc/slabinfo` where it is readable (root).
//!
//! The kernel figures cover the whole box, so on a single machine they include
//! the client's side of every connection as well as the server's.

use std::collections::BTreeMap;

use serde::Serialize;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, fixed at 100 by the
/// Linux ABI (whatever the kernel's internal HZ).
const USER_HZ: f64 = 100.0;

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Process {
    pub rss_kb: u64,
    /// Proportional set size; `rss_kb` where smaps_rollup is unavailable.
    pub pss_kb: u64,
    /// `RssAnon`: heap and stacks, not file pages (which the kernel may evict
    /// under memory pressure) nor shared memory.
    pub anon_kb: u64,
    pub user_s: f64,
    pub sys_s: f64,
}

impl Process {
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Kernel {
    pub slab_kb: u64,
    pub mem_available_kb: u64,
    pub sockets_used: u64,
    pub tcp_inuse: u64,
    pub tcp_mem_pages: u64,
    /// Bytes in use per slab cache; empty without access to /proc/slabinfo.
    pub slab_caches: BTreeMap<String, u64>,
}

#[derive(Clone, Debug)]
pub struct Sample {
    /// Sum over the sampled processes; `None` without `--server-pid`.
    pub server: Option<Process>,
    pub kernel: Kernel,
}

/// Samples `pids` (summed) and the kernel. A process that cannot be read
/// (gone, or not ours to read) is reported on stderr and counted as zero.
pub fn take(pids: &[u32]) -> Sample {
    let server = (!pids.is_empty()).then(|| {
        let mut sum = Process::default();
        for &pid in pids {
            match process(&pid.to_string()) {
                Some(p) => {
                    sum.rss_kb += p.rss_kb;
                    sum.pss_kb += p.pss_kb;
                    sum.anon_kb += p.anon_kb;
                    sum.user_s += p.user_s;
                    sum.sys_s += p.sys_s;
                }
                None => eprintln!("herald-bench: cannot read /proc/{pid}; counted as 0"),
            }
        }
        sum
    });
    Sample {
        server,
        kernel: kernel(),
    }
}

/// `pid` is a number or `self`.
pub fn process(pid: &str) -> Option<Process> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let status_kb = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(first_number)
    };
    let rss_kb = status_kb("VmRSS:")?;
    let anon_kb = status_kb("RssAnon:").unwrap_or(rss_kb);
    let pss_kb = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|r| {
            r.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(first_number)
        })
        .unwrap_or(rss_kb);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    Some(Process {
        rss_kb,
        pss_kb,
        anon_kb,
        user_s: ticks(11)? / USER_HZ,
        sys_s: ticks(12)? / USER_HZ,
    })
}

pub fn kernel() -> Kernel {
    let mut k = Kernel::default();
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        let get = |name: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(first_number)
                .unwrap_or(0)
        };
        k.slab_kb = get("Slab:");
        k.mem_available_kb = get("MemAvailable:");
    }
    if let Ok(sockstat) = std::fs::read_to_string("/proc/net/sockstat") {
        for line in sockstat.lines() {
            if let Some(rest) = line.strip_prefix("sockets:") {
                k.sockets_used = field(rest, "used").unwrap_or(0);
            } else if let Some(rest) = line.strip_prefix("TCP:") {
                k.tcp_inuse = field(rest, "inuse").unwrap_or(0);
                k.tcp_mem_pages = field(rest, "mem").unwrap_or(0);
            }
        }
    }
    if let Ok(slabinfo) = std::fs::read_to_string("/proc/slabinfo") {
        // name <active_objs> <num_objs> <objsize> ...; two header lines.
        for line in slabinfo.lines().skip(2) {
            let f: Vec<&str> = line.split_whitespace().take(4).collect();
            if let [name, active, _, size] = f[..] {
                if let (Ok(a), Ok(s)) = (active.parse::<u64>(), size.parse::<u64>()) {
                    k.slab_caches.insert(name.to_string(), a * s);
                }
            }
        }
    }
    k
}

/// `MemAvailable` in kB (0 if unreadable).
pub fn mem_available_kb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(first_number)
        })
        .unwrap_or(0)
}

fn first_number(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// The number after `name` in `name1 v1 name2 v2 ...`.
fn field(s: &str, name: &str) -> Option<u64> {
    let mut it = s.split_whitespace();
    while let Some(k) = it.next() {
        let v = it.next()?;
        if k == name {
            return v.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_itself_and_the_kernel() {
        let me = process("self").expect("/proc/self");
        assert!(me.rss_kb > 0 && me.pss_kb > 0 && me.pss_kb <= me.rss_kb);
        assert!(me.cpu_s() >= 0.0);
        let k = kernel();
        assert!(k.slab_kb > 0 && k.sockets_used > 0);
        assert_eq!(
            field(" inuse 4 orphan 0 tw 0 alloc 4 mem 219", "mem"),
            Some(219)
        );
    }
}
