//! I/O backend selection (SPEC §8, README "I/O backends"): `IO_BACKEND`
//! picks the driver, `/stats` says which one runs, `auto` falls back to epoll
//! with one log line when io_uring cannot be had, and `uring` that cannot be
//! had exits 2 naming the variable.
//!
//! io_uring is made unavailable the way an administrator does it:
//! `kernel.io_uring_disabled=1` (only members of `kernel.io_uring_group`, or
//! holders of CAP_SYS_ADMIN, may create rings), with herald running as the
//! unprivileged user `nobody`. The sysctl is restored when the test ends,
//! even on failure; root processes (every other test) are not affected by it.

mod common;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_addr, get_json, Herald, TempDir, HERALD};

const IO_URING_DISABLED: &str = "/proc/sys/kernel/io_uring_disabled";

/// The tests of this file run one at a time: one of them changes a
/// host-wide setting the other depends on.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
const NOBODY: u32 = 65534;

#[test]
fn stats_name_the_backend_each_setting_runs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for (setting, expected) in [("epoll", "epoll"), ("uring", "io_uring")] {
        let h = Herald::start(&[("IO_BACKEND", setting)]);
        let stats = get_json(h.admin_addr(), "/stats");
        assert_eq!(stats["io_backend"], expected, "IO_BACKEND={setting}");
    }
}

/// Sets `kernel.io_uring_disabled` and puts the old value back on drop.
struct DisabledUring {
    old: String,
}

impl DisabledUring {
    fn set(value: &str) -> Option<DisabledUring> {
        let old = std::fs::read_to_string(IO_URING_DISABLED).ok()?;
        std::fs::write(IO_URING_DISABLED, value).ok()?;
        Some(DisabledUring {
            old: old.trim().to_string(),
        })
    }
}

impl Drop for DisabledUring {
    fn drop(&mut self) {
        let _ = std::fs::write(IO_URING_DISABLED, &self.old);
    }
}

/// herald as `nobody`, with a clean environment plus `envs`.
fn spawn_unprivileged(envs: &[(&str, String)], dir: &TempDir) -> Child {
    let mut cmd = Command::new(HERALD);
    cmd.env_clear()
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("WORKERS", "1")
        .env("PIN_CORES", "false")
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("stdout")).expect("stdout file"))
        .stderr(File::create(dir.join("stderr")).expect("stderr file"));
    cmd.spawn().expect("spawn herald as nobody")
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn without_io_uring_auto_falls_back_to_epoll_and_uring_exits_2() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    if not_root() {
        panic!("this test needs root: it sets kernel.io_uring_disabled and runs herald as nobody");
    }
    let Some(_guard) = DisabledUring::set("1") else {
        panic!("cannot set {IO_URING_DISABLED} (Linux >= 6.6 and root needed)");
    };

    // IO_BACKEND=uring: a configuration error naming the variable.
    let dir = TempDir::new("uring-off");
    let ports = [
        ("LISTEN_ADDR", free_addr().to_string()),
        ("ADMIN_ADDR", free_addr().to_string()),
    ];
    let mut envs = ports.to_vec();
    envs.push(("IO_BACKEND", "uring".into()));
    let mut child = spawn_unprivileged(&envs, &dir);
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("herald kept running");
    let stderr = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert_eq!(status.code(), Some(2), "exit status; stderr:\n{stderr}");
    assert!(
        stderr.contains("IO_BACKEND") && stderr.contains("io_uring"),
        "stderr should name IO_BACKEND and say why: {stderr}"
    );

    // IO_BACKEND=auto: one line saying why, then epoll, serving as usual.
    let dir = TempDir::new("auto-off");
    let admin = free_addr();
    let envs = [
        ("LISTEN_ADDR", free_addr().to_string()),
        ("ADMIN_ADDR", admin.to_string()),
        ("IO_BACKEND", "auto".into()),
        ("LOG_LEVEL", "info".into()),
    ];
    let mut child = spawn_unprivileged(&envs, &dir);
    let deadline = Instant::now() + common::START_TIMEOUT;
    let stats = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
            panic!("herald exited with {status}:\n{log}");
        }
        let req = b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        if let Ok(r) = common::http_exchange(admin, req, Duration::from_secs(2)) {
            if r.status == 200 {
                break r.body_json();
            }
        }
        assert!(Instant::now() < deadline, "herald did not start in time");
        std::thread::sleep(Duration::from_millis(25));
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
    assert_eq!(stats["io_backend"], "epoll", "log:\n{log}");
    let why: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("IO_BACKEND=auto: io_uring unavailable"))
        .collect();
    assert_eq!(why.len(), 1, "one line saying why; log:\n{log}");
    assert!(why[0].contains("using epoll"), "{}", why[0]);
}

fn not_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) != Some("0"))
        })
        .unwrap_or(true)
}
