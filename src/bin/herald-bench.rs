//! `herald-bench`: opens very many SSE listeners against herald (or nchan),
//! publishes timestamped events, and reports connections, memory, CPU,
//! latency and loss. `herald-bench --help` lists the options.

#[path = "herald_bench/mod.rs"]
mod bench;

fn main() {
    std::process::exit(bench::main(std::env::args().skip(1).collect()));
}
