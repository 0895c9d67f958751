//! Running herald (SPEC §8): bad configuration exits 2 naming the variable,
//! `--help` exits 0 listing every variable, SIGTERM/SIGINT exit 0 with
//! listeners open and clients connected, and the process closes streams and
//! listeners on the way out.

mod common;

use std::time::Duration;

use common::{jwt, Herald, EVENT_TIMEOUT};

#[test]
fn bad_config_exits_2_naming_the_variable() {
    for (var, value) in [
        ("WORKERS", "zero"),
        ("WORKERS", "0"),
        ("LISTEN_ADDR", "nowhere"),
        ("ADMIN_ADDR", "127.0.0.1"),
        ("APP_PORT", "99999"),
        ("PIN_CORES", "maybe"),
        ("ALLOW_ANONYMOUS", "sometimes"),
        ("HEARTBEAT_MODE", "loud"),
        ("HEARTBEAT_SECONDS", "-1"),
        ("MAX_PENDING_BYTES", "-1"),
        ("MAX_CONNECTIONS", "0"),
        ("HEADER_TIMEOUT_MS", "soon"),
        ("RETRY_MS", "3s"),
        ("JWT_LEEWAY_SECONDS", "five"),
        ("IO_BACKEND", "kqueue"),
        ("LOG_LEVEL", "chatty"),
        ("APP_ENV", "staging"),
        ("SHUTDOWN_TIMEOUT_MS", "never"),
        ("JWT_PUBLIC_KEY", "not a pem"),
        ("JWT_PUBLIC_KEY_FILE", "/nonexistent/herald-test/key.pem"),
        ("CORS_ALLOWED_ORIGINS", "not a url"),
        ("CORS_ALLOWED_ORIGINS", "https://app.example.com/"),
    ] {
        let mut envs = vec![(var, value)];
        if var == "APP_PORT" {
            // LISTEN_ADDR wins over APP_PORT: clear the harness default.
            envs.push(("LISTEN_ADDR", ""));
        }
        let (status, stderr) = Herald::run_expect_exit(&envs);
        assert_eq!(
            status.code(),
            Some(2),
            "{var}={value:?} exited with {status}; stderr: {stderr}"
        );
        assert!(
            stderr.contains(var),
            "{var}={value:?}: stderr does not name the variable: {stderr:?}"
        );
    }
}

/// SPEC §7: an admin listener off loopback needs ADMIN_TOKEN, or an explicit
/// ADMIN_INSECURE=true.
#[test]
fn admin_off_loopback_needs_a_token_or_admin_insecure() {
    let (status, stderr) = Herald::run_expect_exit(&[("ADMIN_ADDR", "0.0.0.0:0")]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ADMIN_ADDR") && stderr.contains("ADMIN_TOKEN"),
        "{stderr}"
    );
    for extra in [("ADMIN_TOKEN", "t"), ("ADMIN_INSECURE", "true")] {
        let addr = format!("0.0.0.0:{}", common::free_port());
        let h = Herald::try_start(&[("ADMIN_ADDR", addr.as_str()), extra]);
        assert!(h.is_ok(), "{extra:?}: {}", h.err().unwrap_or_default());
    }
}

/// SPEC §8: a typo of a herald variable is named at start-up with the
/// nearest known one.
#[test]
fn a_misspelt_variable_is_named_with_the_nearest_one() {
    let h = Herald::start(&[("JWT_SECERT", "x"), ("ALLOW_ANONYMOUS", "true")]);
    let log = h.log();
    assert!(
        log.contains("JWT_SECERT is not a herald variable")
            && log.contains("did you mean JWT_SECRET"),
        "{log}"
    );
}

#[test]
fn public_key_file_with_garbage_exits_2() {
    let dir = common::TempDir::new("badkey");
    let path = dir.join("key.pem");
    std::fs::write(
        &path,
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let (status, stderr) =
        Herald::run_expect_exit(&[("JWT_PUBLIC_KEY_FILE", path.to_str().unwrap())]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("JWT_PUBLIC_KEY_FILE"), "{stderr}");
}

#[test]
fn unknown_argument_exits_2() {
    let (status, _out, err) = Herald::run_with_args(&["--frobnicate"], &[]);
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("--frobnicate"), "{err}");
}

#[test]
fn help_exits_0_and_lists_variables() {
    let (status, out, err) = Herald::run_with_args(&["--help"], &[]);
    assert_eq!(status.code(), Some(0), "{err}");
    for var in [
        "LISTEN_ADDR",
        "ADMIN_ADDR",
        "APP_PORT",
        "WORKERS",
        "PIN_CORES",
        "IO_BACKEND",
        "JWT_SECRET",
        "JWT_PUBLIC_KEY",
        "JWT_PUBLIC_KEY_FILE",
        "JWT_ISSUER",
        "JWT_AUDIENCE",
        "JWT_LEEWAY_SECONDS",
        "JWT_COOKIE",
        "ALLOW_ANONYMOUS",
        "HEADER_TIMEOUT_MS",
        "RETRY_MS",
        "HEARTBEAT_SECONDS",
        "HEARTBEAT_MODE",
        "MAX_PENDING_BYTES",
        "MAX_CONNECTIONS",
        "CORS_ALLOWED_ORIGINS",
        "PUBLISH_TOKEN",
        "ADMIN_TOKEN",
        "APP_ENV",
        "LOG_LEVEL",
        "SHUTDOWN_TIMEOUT_MS",
    ] {
        assert!(out.contains(var), "--help does not list {var}:\n{out}");
    }
    // Defaults are shown.
    assert!(out.contains("herald_token"), "{out}");
    assert!(out.contains("3000"), "{out}");
    // -h is the same.
    let (status, short, _) = Herald::run_with_args(&["-h"], &[]);
    assert_eq!(status.code(), Some(0));
    assert_eq!(short, out);
}

#[test]
fn help_ignores_a_bad_environment() {
    let (status, out, _) = Herald::run_with_args(&["--help"], &[("WORKERS", "zero")]);
    assert_eq!(status.code(), Some(0));
    assert!(out.contains("WORKERS"));
}

#[test]
fn sigterm_exits_0_with_clients_connected() {
    let mut h = Herald::start(&[("JWT_SECRET", jwt::SECRET), ("ALLOW_ANONYMOUS", "true")]);
    let mut clients: Vec<_> = (0..4)
        .map(|i| h.sse_with_token(&jwt::user(&format!("u{i}"))))
        .collect();
    clients.push(h.sse("/sse", &[]));
    h.publish_ok(r#"{"message":"before"}"#);
    for c in &mut clients {
        assert_eq!(c.expect_event().data, "before");
    }
    // A half-open request and an idle socket too.
    let mut half = common::connect(h.addr()).unwrap();
    std::io::Write::write_all(&mut half, b"GET /sse HTTP/1.1\r\n").unwrap();
    let _idle = common::connect(h.addr()).unwrap();

    let (listen, admin) = (h.addr(), h.admin_addr());
    h.sigterm();
    let status = h
        .wait_exit(EVENT_TIMEOUT)
        .unwrap_or_else(|| panic!("herald still running 10 s after SIGTERM:\n{}", h.log()));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM exit: {status}\n{}",
        h.log()
    );
    // Streams end (EOF or reset, not a hang).
    for c in &mut clients {
        assert!(c.wait_closed(EVENT_TIMEOUT), "stream still open after exit");
    }
    // Listeners are gone.
    assert!(
        common::connect(listen).is_err(),
        "public listener still open"
    );
    assert!(common::connect(admin).is_err(), "admin listener still open");
}

#[test]
fn sigint_exits_0() {
    let mut h = Herald::start(&[("JWT_SECRET", jwt::SECRET)]);
    let mut c = h.sse_with_token(&jwt::user("u1"));
    h.sigint();
    let status = h.wait_exit(EVENT_TIMEOUT).expect("exit after SIGINT");
    assert_eq!(status.code(), Some(0), "{}", h.log());
    assert!(c.wait_closed(EVENT_TIMEOUT));
}

#[test]
fn sigterm_right_after_start() {
    let mut h = Herald::start(&[("JWT_SECRET", jwt::SECRET)]);
    h.sigterm();
    let status = h.wait_exit(EVENT_TIMEOUT).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", h.log());
}

#[test]
fn listen_addr_wins_over_app_port() {
    let listen = common::free_addr();
    let listen_s = listen.to_string();
    let h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("LISTEN_ADDR", &listen_s),
        ("APP_PORT", "1"),
    ]);
    assert_eq!(h.addr(), listen);
    // Herald::start already proved /health answers on LISTEN_ADDR.
    let r = common::http_exchange(
        listen,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        EVENT_TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn json_logs_in_prod() {
    let mut h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("APP_ENV", "prod"),
        ("LOG_LEVEL", "info"),
    ]);
    h.sigterm();
    h.wait_exit(EVENT_TIMEOUT).expect("exit");
    let log = h.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines at info level");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("APP_ENV=prod log line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
    }
}

#[test]
fn shutdown_is_bounded_by_shutdown_timeout() {
    // Many streams open; the exit still comes well within the limit.
    let mut h = Herald::start(&[
        ("JWT_SECRET", jwt::SECRET),
        ("SHUTDOWN_TIMEOUT_MS", "2000"),
        ("ALLOW_ANONYMOUS", "true"),
    ]);
    let _clients: Vec<_> = (0..50).map(|_| h.sse("/sse", &[])).collect();
    h.sigterm();
    let status = h
        .wait_exit(Duration::from_secs(10))
        .expect("exit within 10 s of SIGTERM");
    assert_eq!(status.code(), Some(0));
}
