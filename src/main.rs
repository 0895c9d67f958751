//! The `herald` binary: configuration, exit codes, then [`herald::server::run`].

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => {}
        Some("-h" | "--help" | "help") => {
            print!("{}", herald::config::Config::help());
            return;
        }
        Some("-V" | "--version") => {
            println!("herald {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Some(other) => {
            eprintln!("herald: unknown argument {other:?}; see herald --help");
            std::process::exit(2);
        }
    }
    let cfg = match herald::config::Config::from_env() {
        Ok(c) => c,
        Err(e) => config_error(&e),
    };
    herald::logging::init(cfg.log_format, cfg.log_level);
    let verifier = match herald::conn::auth::Verifier::from_config(&cfg) {
        Ok(v) => v,
        Err(e) => config_error(&e),
    };
    if !verifier.has_keys() && !cfg.allow_anonymous {
        log::warn!(
            "no JWT_SECRET or JWT_PUBLIC_KEY and ALLOW_ANONYMOUS=false: every /sse request \
             will be refused"
        );
    }
    if let Err(e) = herald::server::run(cfg, verifier) {
        log::error!("{e}");
        eprintln!("herald: {e}");
        std::process::exit(1);
    }
}

fn config_error(e: &herald::config::ConfigError) -> ! {
    eprintln!("herald: configuration error: {e}");
    std::process::exit(2);
}
