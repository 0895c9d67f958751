//! Boot order: rlimits → listeners → reactors → hub → admin → signals, then
//! an orderly stop on SIGTERM/SIGINT.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use nix::sys::signal::{SigSet, Signal};

use crate::admin::Admin;
use crate::config::{Config, IoBackend};
use crate::conn::auth::Verifier;
use crate::hub::Hub;
use crate::ingest::IngestStatus;
use crate::reactor::{self, Reactor, Shared, Stats};
use crate::sys;

/// A start-up failure that is not a configuration mistake (exit code 1).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything built from the configuration before any socket is opened, so
/// that every configuration mistake is found (exit code 2) before start-up.
pub struct Prepared {
    pub cfg: Config,
    pub verifier: Verifier,
    pub redis: Option<redis::Client>,
}

impl Prepared {
    pub fn new(cfg: Config) -> Result<Self, crate::config::ConfigError> {
        let verifier = Verifier::from_config(&cfg)?;
        let redis = cfg
            .redis
            .as_ref()
            .map(crate::ingest::redis::client)
            .transpose()?;
        Ok(Self {
            cfg,
            verifier,
            redis,
        })
    }
}

/// Runs herald until SIGTERM or SIGINT.
pub fn run(prepared: Prepared) -> Result<(), StartError> {
    let Prepared {
        cfg,
        verifier,
        redis,
    } = prepared;
    // Signals are blocked before any thread starts, so every thread inherits
    // the mask and only the main thread's sigwait sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .map_err(|e| StartError(format!("cannot block signals: {e}")))?;

    let nofile = sys::limits::raise_nofile();
    if (nofile as usize) < cfg.max_connections {
        warn!(
            "open-file limit is {nofile}, below MAX_CONNECTIONS={}: at most about {} clients \
             fit (raise LimitNOFILE / ulimit -n)",
            cfg.max_connections,
            nofile.saturating_sub(64)
        );
    }
    if cfg.io_backend == IoBackend::Auto {
        info!("IO_BACKEND=auto: using epoll (this build has no io_uring backend)");
    }

    let workers = cfg.workers;
    let per_reactor = {
        let cap = cfg.max_connections.min(nofile as usize);
        cap.min(cap * 2 / workers + 1024)
    };
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        listeners.push(
            sys::net::reuseport_listener(cfg.listen_addr)
                .map_err(|e| StartError(format!("cannot listen on {}: {e}", cfg.listen_addr)))?,
        );
    }
    let admin_listener = TcpListener::bind(cfg.admin_addr).map_err(|e| {
        StartError(format!(
            "cannot listen on ADMIN_ADDR {}: {e}",
            cfg.admin_addr
        ))
    })?;

    let stats: Arc<[Arc<Stats>]> = (0..workers).map(|_| Arc::new(Stats::default())).collect();
    let status = Arc::new(IngestStatus::new(redis.is_some()));
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        verifier,
        stats: stats.clone(),
        status: status.clone(),
    });

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut inboxes = Vec::with_capacity(workers);
    let mut handles = Vec::with_capacity(workers);
    for (i, listener) in listeners.into_iter().enumerate() {
        let (inbox, rx, wake) =
            reactor::inbox().map_err(|e| StartError(format!("cannot create eventfd: {e}")))?;
        let reactor = Reactor::new(i, shared.clone(), listener, rx, wake, per_reactor)
            .map_err(|e| StartError(format!("cannot create reactor {i}: {e}")))?;
        let core = (cfg.pin_cores && !cores.is_empty()).then(|| cores[i % cores.len()]);
        let handle = std::thread::Builder::new()
            .name(format!("reactor-{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        warn!("reactor {i}: could not pin to core {}", core.id);
                    }
                }
                reactor.run();
            })
            .map_err(|e| StartError(format!("cannot spawn reactor {i}: {e}")))?;
        inboxes.push(inbox);
        handles.push(handle);
    }

    let hub = Arc::new(Hub::new(inboxes, cfg.max_pending_bytes / 2));
    if let (Some(client), Some(rc)) = (redis, &cfg.redis) {
        let (hub, status, source) = (hub.clone(), status.clone(), rc.source.clone());
        let history_size = cfg.history_size;
        std::thread::Builder::new()
            .name("ingest-redis".into())
            .spawn(move || crate::ingest::redis::run(client, source, history_size, hub, status))
            .map_err(|e| StartError(format!("cannot spawn Redis ingest thread: {e}")))?;
    }
    let admin = Admin::new(cfg.clone(), hub.clone(), status, stats);
    std::thread::Builder::new()
        .name("admin".into())
        .spawn(move || admin.serve(admin_listener))
        .map_err(|e| StartError(format!("cannot spawn admin thread: {e}")))?;

    sys::notify::ready(&format!("listening on {}", cfg.listen_addr));
    sys::notify::start_watchdog();
    info!(
        "herald listening on {} (admin {}), {workers} reactor(s), fd limit {nofile}",
        cfg.listen_addr, cfg.admin_addr
    );

    let sig = signals
        .wait()
        .map_err(|e| StartError(format!("sigwait failed: {e}")))?;
    sys::notify::stopping();
    info!("{sig:?} received: closing listeners and connections");
    for inbox in hub.inboxes() {
        inbox.shutdown();
    }
    let deadline = Instant::now() + Duration::from_millis(cfg.shutdown_timeout_ms);
    while Instant::now() < deadline && handles.iter().any(|h| !h.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    if handles.iter().any(|h| !h.is_finished()) {
        error!("reactors did not stop within SHUTDOWN_TIMEOUT_MS; exiting anyway");
    } else {
        for h in handles {
            let _ = h.join();
        }
    }
    info!("herald stopped");
    Ok(())
}
