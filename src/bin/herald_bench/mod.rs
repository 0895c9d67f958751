//! herald-bench: the capacity benchmark client (see [`args::USAGE`]).
//!
//! ```text
//! coordinator ── spawns N/19,900 workers ── JSON lines on stdin/stdout ──► worker (epoll, sockets)
//!   │ publishes events {"t":µs,"n":seq}                                       │ parses SSE, measures
//!   │ samples /proc of the server and the kernel                              │ latency, loss, dups
//!   └ merges worker reports → summary (human or --json)                      ◄┘
//! ```
//!
//! - [`args`]: options; [`coord`]: phases, publishing, merging;
//!   [`worker`]: the epoll client; [`proto`]: what they say to each other.
//! - [`sse`]: the event-stream parser; [`probe`]: the event payload and
//!   random targets; [`hist`]: latency histograms.
//! - [`publish`]: herald / nchan HTTP and Redis publishing;
//!   [`sample`]: `/proc` readings; [`report`]: the summary.

mod args;
mod clock;
mod coord;
mod hist;
mod kafka;
mod probe;
mod proto;
mod publish;
mod report;
mod sample;
mod sse;
mod worker;

use args::Mode;

/// Runs `herald-bench <args>`; returns the exit code.
pub fn main(args: Vec<String>) -> i32 {
    let (mode, rest) = match args.first().map(String::as_str) {
        Some("connect") => (Mode::Connect, &args[1..]),
        Some("fanout") => (Mode::Fanout, &args[1..]),
        Some("storm") => (Mode::Storm, &args[1..]),
        Some("worker") => return run_worker(&args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{}", args::USAGE);
            return 0;
        }
        _ => {
            eprint!("{}", args::USAGE);
            return 2;
        }
    };
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        print!("{}", args::USAGE);
        return 0;
    }
    match args::parse(mode, rest) {
        Ok(o) => coord::run(o),
        Err(e) => {
            eprintln!("herald-bench: {e}");
            2
        }
    }
}

/// `herald-bench worker '<plan JSON>'`, started by the coordinator.
fn run_worker(args: &[String]) -> i32 {
    match args.first().map(|p| serde_json::from_str::<proto::Plan>(p)) {
        Some(Ok(plan)) => worker::run(plan),
        Some(Err(e)) => {
            eprintln!("herald-bench worker: bad plan: {e}");
            2
        }
        None => {
            eprintln!("herald-bench worker: needs a plan (started by the coordinator)");
            2
        }
    }
}
