//! `herald-bench` end to end against a real herald: small runs of each mode,
//! checked through the `--json` report. (The SSE parser, histogram, targets
//! and option parsing have unit tests inside the binary:
//! `cargo test --bin herald-bench`.)

mod common;

use std::process::{Command, Stdio};

use common::{free_addr, Herald, RedisServer};

const BENCH: &str = env!("CARGO_BIN_EXE_herald-bench");
const SECRET: &str = "bench-test-secret";

/// Runs `herald-bench <mode> <args>` (whitespace-separated) against `h` and
/// returns its JSON report. Events go to `h`'s `POST /publish` unless `args`
/// name another `--pub`.
fn bench(h: &Herald, mode: &str, args: &str) -> serde_json::Value {
    let url = format!("http://{}/sse", h.addr());
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
        cmd.args(["--drain", "10s"]);
        if !args.contains("--pub ") {
            cmd.args(["--pub", &format!("http://{}/publish", h.admin_addr())]);
        }
    }
    run(cmd.args(args.split_whitespace()), h)
}

fn run(cmd: &mut Command, h: &Herald) -> serde_json::Value {
    let out = cmd.stdin(Stdio::null()).output().expect("run herald-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "herald-bench failed: {stderr}\nherald log:\n{}",
        h.log()
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        let stdout = String::from_utf8_lossy(&out.stdout);
        panic!("bad JSON ({e}):\n{stdout}\nstderr:\n{stderr}")
    })
}

fn start() -> Herald {
    Herald::start(&[("JWT_SECRET", SECRET), ("HEARTBEAT_SECONDS", "0")])
}

#[test]
fn fanout_100_listeners_5_events_no_loss() {
    let h = start();
    // Two worker processes, so the merge of their reports is exercised too.
    let r = bench(&h, "fanout", "-n 100 --procs 2 --events 5 --event-rate 50");
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
    assert!(r["server"]["rss_held_kb"].as_u64().unwrap() > 0, "{r:#}");
}

#[test]
fn targeted_events_reach_exactly_their_users() {
    let h = start();
    let r = bench(
        &h,
        "fanout",
        "-n 60 --events 8 --event-rate 40 --to random:7",
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
        "-n 50 --events 20 --event-rate 40 --storm-after 5",
    );
    let s = &r["storm"];
    assert_eq!(s["closed"], 50, "{r:#}");
    assert_eq!(s["back"], 50, "{r:#}");
    assert_eq!(s["replayed_exactly_once"], true, "{r:#}");
    assert_eq!(r["events"]["delivered"], 1000, "{r:#}");
}

#[test]
fn storm_across_two_processes_fed_by_a_redis_stream_replays_exactly_once() {
    // Two herald processes on one SO_REUSEPORT port: a listener may come back
    // on the other process, so only ids shared through the stream resume it.
    let redis = RedisServer::start();
    let listen = free_addr().to_string();
    let url = redis.url();
    let envs = [
        ("JWT_SECRET", SECRET),
        ("HEARTBEAT_SECONDS", "0"),
        ("LISTEN_ADDR", listen.as_str()),
        ("REDIS_URL", url.as_str()),
        ("REDIS_STREAM", "bench-stream"),
    ];
    let a = Herald::start(&envs);
    let _b = Herald::start(&envs);
    let args = format!(
        "-n 60 --events 20 --event-rate 40 --storm-after 5 --pub redis://{} \
         --pub-kind redis-stream --redis-stream bench-stream",
        redis.addr()
    );
    let r = bench(&a, "storm", &args);
    assert_eq!(r["storm"]["back"], 60, "{r:#}");
    assert_eq!(r["storm"]["replayed_exactly_once"], true, "{r:#}");
    assert_eq!(r["events"]["delivered"], 1200, "{r:#}");
}

#[test]
fn refused_connections_are_counted_by_reason() {
    let h = start();
    // Tokens signed with another secret: every listener gets 401.
    let url = format!("http://{}/sse", h.addr());
    let mut cmd = Command::new(BENCH);
    cmd.args([
        "connect",
        "--url",
        &url,
        "-n",
        "20",
        "--jwt-secret",
        "wrong",
    ])
    .args(["--hold", "0s", "--json", "--deadline", "30s"]);
    let r = run(&mut cmd, &h);
    assert_eq!(r["connect"]["open"], 0, "{r:#}");
    assert_eq!(r["connect"]["failed"], 20);
    assert_eq!(r["connect"]["failures"]["HTTP 401"], 20, "{r:#}");
    assert!(r["server"].is_null(), "no --server-pid, no server figures");
}
