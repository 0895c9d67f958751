//! The `herald` binary: configuration, exit codes, then [`herald::server::run`].

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    // First, before the allocator's arenas grow: no transparent huge pages
    // for herald's many small records (see sys::limits::disable_thp).
    let thp_disabled = herald::sys::limits::disable_thp();
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
        Some("doctor") => {
            let (cfg, _) = herald::config::Source::from_env()
                .load_at_start()
                .unwrap_or_else(|e| config_error(&e));
            std::process::exit(if herald::doctor::run(&cfg) { 0 } else { 1 });
        }
        Some(other) => {
            eprintln!("herald: unknown argument {other:?}; see herald --help");
            std::process::exit(2);
        }
    }
    // The environment, with HERALD_ENV_FILE laid over it (what SIGHUP
    // re-reads).
    let (cfg, notes) = match herald::config::Source::from_env().load_at_start() {
        Ok(c) => c,
        Err(e) => config_error(&e),
    };
    herald::logging::init(cfg.log_format, cfg.log_level);
    for note in notes {
        log::warn!("{note}");
    }
    for (name, nearest) in herald::config::typos(std::env::vars().map(|(k, _)| k)) {
        log::warn!("{name} is not a herald variable (ignored); did you mean {nearest}?");
    }
    if !thp_disabled {
        log::debug!("PR_SET_THP_DISABLE refused: huge pages may inflate memory per connection");
    }
    let prepared = match herald::server::Prepared::new(cfg) {
        Ok(p) => p,
        Err(e) => config_error(&e),
    };
    if !prepared.verifier.has_keys() && !prepared.cfg.allow_anonymous {
        log::warn!(
            "no JWT_SECRET or JWT_PUBLIC_KEY and ALLOW_ANONYMOUS=false: every /sse request \
             will be refused"
        );
    }
    if let Err(e) = herald::server::run(prepared) {
        log::error!("{e}");
        eprintln!("herald: {e}");
        std::process::exit(1);
    }
}

fn config_error(e: &herald::config::ConfigError) -> ! {
    eprintln!("herald: configuration error: {e}");
    std::process::exit(2);
}
