//! Unit tests of every doctor rule, over hand-made [`super::Host`] facts.

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
    cfg(&[
        ("MAX_CONNECTIONS", "1000000"),
        ("WORKERS", "4"),
        ("JWT_SECRET", "s"),
    ])
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

    // GRPC_ADDR's port, when set, is herald's too.
    let grpc = cfg(&[("JWT_SECRET", "s"), ("GRPC_ADDR", "127.0.0.1:9094")]);
    let wide = Host {
        port_range: Some((1024, 65535)),
        ..tuned()
    };
    let report = checks(&grpc, &wide);
    let c = find(&report, "net.ipv4.ip_local_port_range");
    assert!(c
        .fix
        .as_deref()
        .unwrap()
        .contains("ip_local_reserved_ports=8080,9090,9094"));
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

#[test]
fn no_jwt_key_fails_unless_anonymous_listeners_are_allowed() {
    let report = checks(&cfg(&[("MAX_CONNECTIONS", "1000")]), &tuned());
    let c = find(&report, "JWT key");
    assert_eq!(c.verdict, Verdict::Fail, "{c}");
    let fix = c.fix.as_deref().unwrap();
    assert!(
        fix.contains("JWT_SECRET") && fix.contains("JWT_PUBLIC_KEY_FILE"),
        "{fix}"
    );
    assert!(fix.contains("ALLOW_ANONYMOUS=true"), "{fix}");
    for vars in [
        &[("JWT_SECRET", "s")][..],
        &[("ALLOW_ANONYMOUS", "true")][..],
        &[("JWT_PUBLIC_KEY_FILE", "/etc/herald/jwt.pem")][..],
    ] {
        let report = checks(&cfg(vars), &tuned());
        assert_eq!(find(&report, "JWT key").verdict, Verdict::Ok, "{vars:?}");
    }
}

/// Issue #13: with MAX_CONNECTIONS unset, the defaults fit the host they
/// run on: this box (24 GiB, hard nofile 20000) and a tuned one, where
/// memory decides.
#[test]
fn unset_max_connections_fits_the_host() {
    let defaults = cfg(&[("JWT_SECRET", "s")]);
    let this_box = Host {
        nofile_soft: 20_000,
        nofile_hard: 20_000,
        mem_available: Some(21 << 30),
        ..tuned()
    };
    for host in [this_box, tuned()] {
        let report = checks(&defaults, &host);
        for c in &report {
            assert_ne!(c.verdict, Verdict::Fail, "{c}");
        }
        assert_eq!(find(&report, "fd limit").verdict, Verdict::Ok);
        assert_eq!(find(&report, "memory").verdict, Verdict::Ok);
    }
    let mut fitted = defaults.clone();
    let why = fit_host(&mut fitted, 20_000, Some(21 << 30)).expect("unset");
    assert_eq!(fitted.max_connections, crate::server::fd_budget(20_000));
    assert!(why.contains("open-file limit"), "{why}");
    // 2 GiB free and a million descriptors: memory decides (3/4 of it).
    let per_conn = KERNEL_BYTES_PER_CONN + HERALD_BYTES_PER_CONN;
    let mut fitted = defaults.clone();
    fit_host(&mut fitted, 1_100_000, Some(2 << 30));
    assert_eq!(
        fitted.max_connections as u64,
        ((2u64 << 30) / 4 * 3 - BASE_BYTES) / per_conn
    );
    // A value that is set is left alone.
    let mut set = one_million();
    assert!(fit_host(&mut set, 20_000, Some(1 << 30)).is_none());
    assert_eq!(set.max_connections, 1_000_000);
}
