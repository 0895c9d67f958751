//! `herald-bench` end to end against a real herald: small runs of each mode,
//! checked through the `--json` report. (The SSE parser, histogram, targets
//! and option parsing have unit tests inside the binary:
//! `cargo test --bin herald-bench`.)

mod common;

use std::process::{Command, Stdio};

use common::Herald;

const BENCH: &str = env!("CARGO_BIN_EXE_herald-bench");
const SECRET: &str = "bench-test-secret";

/// Runs `herald-bench <args>` against `h` and returns its JSON report.
fn bench(h: &Herald, mode: &str, args: &[&str]) -> serde_json::Value {
    let url = format!("http://{}/sse", h.addr());
    let publish = format!("http://{}/publish", h.admin_addr());
    let pid = h.pid().expect("herald runs").to_string();
    let mut cmd = Command::new(BENCH);
    cmd.args([
        mode,
        "--url",
        &url,
        "--jwt-secret",
        SECRET,
        "--server-pid",
        &pid,
    ])
    .args(["--json", "--deadline", "60s", "--hold", "200ms"]);
    if mode != "connect" {
        cmd.args(["--pub", &publish, "--drain", "10s"]);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run herald-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "herald-bench failed: {stderr}\nherald log:\n{}",
        h.log()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad JSON ({e}):\n{}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn start() -> Herald {
    Herald::start(&[("JWT_SECRET", SECRET), ("HEARTBEAT_SECONDS", "0")])
}

#[test]
fn fanout_100_listeners_5_events_no_loss() {
    let h = start();
    // Two worker processes, so the merge of their reports is exercised too.
    let r = bench(
        &h,
        "fanout",
        &[
            "-n",
            "100",
            "--procs",
            "2",
            "--events",
            "5",
            "--event-rate",
            "50",
        ],
    );
    assert_eq!(r["procs"], 2);
    assert_eq!(r["connect"]["open"], 100, "{r:#}");
    assert_eq!(r["connect"]["failed"], 0, "{r:#}");
    let e = &r["events"];
    assert_eq!(e["published"], 5);
    assert_eq!(e["publish_errors"], 0, "{r:#}");
    assert_eq!(e["armed_listeners"], 100);
    assert_eq!(e["expected"], 500);
    assert_eq!(e["delivered"], 500, "{r:#}");
    assert_eq!(e["lost"], 0);
    assert_eq!(e["duplicates"], 0);
    assert_eq!(e["gaps"], 0);
    assert_eq!(e["latency_ms"]["count"], 500);
    assert_eq!(e["completion_ms"]["count"], 5);
    let server = &r["server"];
    assert!(server["rss_held_kb"].as_u64().unwrap() > 0, "{r:#}");
}

#[test]
fn targeted_events_reach_exactly_their_users() {
    let h = start();
    let r = bench(
        &h,
        "fanout",
        &[
            "-n",
            "60",
            "--events",
            "8",
            "--event-rate",
            "40",
            "--to",
            "random:7",
        ],
    );
    let e = &r["events"];
    assert_eq!(e["expected"], 56, "{r:#}");
    assert_eq!(e["delivered"], 56, "{r:#}");
    assert_eq!(e["strays"], 0, "{r:#}");
    assert_eq!(e["lost"], 0);
}

#[test]
fn storm_reconnects_everyone_and_replays_what_they_missed() {
    let h = start();
    let r = bench(
        &h,
        "storm",
        &[
            "-n",
            "50",
            "--events",
            "20",
            "--event-rate",
            "40",
            "--storm-after",
            "5",
        ],
    );
    let s = &r["storm"];
    assert_eq!(s["closed"], 50, "{r:#}");
    assert_eq!(s["back"], 50, "{r:#}");
    assert_eq!(s["replayed_exactly_once"], true, "{r:#}");
    assert_eq!(r["events"]["delivered"], 1000, "{r:#}");
}

#[test]
fn refused_connections_are_counted_by_reason() {
    let h = start();
    // Tokens signed with another secret: every listener gets 401.
    let url = format!("http://{}/sse", h.addr());
    let out = Command::new(BENCH)
        .args([
            "connect",
            "--url",
            &url,
            "-n",
            "20",
            "--jwt-secret",
            "wrong",
            "--hold",
            "0s",
        ])
        .args(["--json", "--deadline", "30s"])
        .stdin(Stdio::null())
        .output()
        .expect("run herald-bench");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["connect"]["open"], 0, "{r:#}");
    assert_eq!(r["connect"]["failed"], 20);
    assert_eq!(r["connect"]["failures"]["HTTP 401"], 20, "{r:#}");
    assert!(r["server"].is_null(), "no --server-pid, no server figures");
}
