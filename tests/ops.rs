//! Operations (issue #5): systemd notifications from the real binary,
//! `herald doctor` against a low fd limit, and the example environment file
//! against the configuration's variable list.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herald-ops-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The herald child, killed (by its own handle) if the test bails out early.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Receives datagrams until one contains the line `want`; returns everything
/// seen on the way (including the match).
fn recv_until(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no {want:?} within {within:?}; got {seen:?}"
        );
        sock.set_read_timeout(Some(left)).unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == want);
                seen.push(msg);
                if hit {
                    return seen;
                }
            }
            Err(e) => panic!("waiting for {want:?}: {e}; got {seen:?}"),
        }
    }
}

#[test]
fn notifies_ready_watchdog_and_stopping_over_notify_socket() {
    let dir = TempDir::new();
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let child = Command::new(HERALD)
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .env("WORKERS", "1")
        .env("PIN_CORES", "false")
        .env("JWT_SECRET", "x")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server(child);

    let seen = recv_until(&sock, "READY=1", Duration::from_secs(30));
    assert!(
        seen.iter().all(|m| !m.contains("STOPPING=1")),
        "STOPPING before READY: {seen:?}"
    );
    assert!(
        seen.last()
            .unwrap()
            .contains("STATUS=listening on 127.0.0.1:0"),
        "{seen:?}"
    );
    // WATCHDOG_USEC=200ms: a ping every 100 ms.
    recv_until(&sock, "WATCHDOG=1", Duration::from_secs(5));

    // A reload (systemctl reload: SIGHUP) is announced and ended.
    let pid = server.0.id().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
    recv_until(&sock, "RELOADING=1", Duration::from_secs(10));
    recv_until(&sock, "READY=1", Duration::from_secs(10));
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "SIGHUP ended herald"
    );

    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    recv_until(&sock, "STOPPING=1", Duration::from_secs(10));

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "herald did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// Runs `herald doctor` under `ulimit -n <nofile>` with the given variables.
fn doctor(nofile: u32, vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new("bash")
        .args([
            "-c",
            &format!("ulimit -n {nofile} && exec \"$0\" doctor"),
            HERALD,
        ])
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn doctor_flags_a_low_fd_limit_with_the_fix() {
    let (code, out) = doctor(1024, &[("MAX_CONNECTIONS", "100000"), ("WORKERS", "2")]);
    assert_eq!(code, Some(1), "{out}");
    // 100000 clients + 64 + 4 per reactor in reserve.
    let line = out
        .lines()
        .find(|l| l.starts_with("FAIL  fd limit"))
        .unwrap_or_else(|| panic!("no failing fd-limit line:\n{out}"));
    assert!(line.contains("soft 1024 / hard 1024"), "{line}");
    assert!(
        out.contains("fix: under systemd: LimitNOFILE=100072"),
        "{out}"
    );
    assert!(out.contains("ulimit -n 100072"), "{out}");
    assert!(out.lines().last().unwrap().starts_with("doctor: "), "{out}");
}

#[test]
fn doctor_accepts_an_fd_limit_that_fits() {
    let (_, out) = doctor(4096, &[("MAX_CONNECTIONS", "1000"), ("WORKERS", "2")]);
    assert!(
        out.lines().any(|l| l.starts_with("OK    fd limit")),
        "fd limit not OK:\n{out}"
    );
}

/// Issue #13: the defaults (and a key) fit this host: MAX_CONNECTIONS unset
/// is what the fd limit and memory allow, logged, and neither check fails.
#[test]
fn doctor_passes_the_default_max_connections() {
    let (_, out) = doctor(20000, &[("JWT_SECRET", "s"), ("WORKERS", "2")]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("MAX_CONNECTIONS unset: ") && l.contains("open-file limit")),
        "no MAX_CONNECTIONS line:\n{out}"
    );
    for check in ["fd limit", "memory", "fs.nr_open", "fs.file-max"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("OK    {check}"))),
            "{check} not OK with the default MAX_CONNECTIONS:\n{out}"
        );
    }
}

#[test]
fn doctor_rejects_a_bad_configuration_with_exit_2() {
    let (code, out) = doctor(4096, &[("MAX_CONNECTIONS", "lots")]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("MAX_CONNECTIONS"), "{out}");
}

#[test]
fn example_env_file_lists_every_variable_with_its_default() {
    let env = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/herald.env"))
        .unwrap();
    for (name, default, _) in herald::config::VARS {
        let value = env
            .lines()
            .filter_map(|l| l.trim_start_matches('#').trim_start().strip_prefix(name))
            .find_map(|rest| rest.strip_prefix('='))
            .unwrap_or_else(|| panic!("systemd/herald.env lacks {name}"));
        // Defaults that are prose ("one per core") are explained in a comment.
        if !default.contains(' ') {
            assert_eq!(value, *default, "{name} in systemd/herald.env");
        }
    }
}
