//! Boot order: rlimits → listeners → inboxes and hub → a Redis stream's
//! tail into history → reactors → ingest → admin (and gRPC, when
//! `GRPC_ADDR` is set) → signals, then an orderly
//! stop on SIGTERM/SIGINT. SIGHUP reloads ([`crate::reload`]) and keeps
//! running.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};
use nix::sys::signal::{SigSet, Signal};

use crate::admin::Admin;
use crate::cluster::watch::Watch;
use crate::cluster::writer::Writer;
use crate::cluster::Directory;
use crate::config::{Config, IoBackend};
use crate::conn::auth::Verifier;
use crate::hub::inbox;
use crate::hub::registry::Record;
use crate::hub::status::IngestStatus;
use crate::hub::Hub;
use crate::ingest::kafka::KafkaIngest;
use crate::ingest::redis::RedisIngest;
use crate::reactor::driver::{self, Backend, Parts};
use crate::reactor::{Shared, Stats};
use crate::sys;

/// Replay requests waiting for the log reader at most.
const LOG_QUEUE: usize = 256 * 1024;

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
    /// The I/O driver `IO_BACKEND` resolved to on this host.
    pub backend: Backend,
}

impl Prepared {
    pub fn new(cfg: Config) -> Result<Self, crate::config::ConfigError> {
        let verifier = Verifier::from_config(&cfg)?;
        let redis = cfg
            .redis
            .as_ref()
            .map(crate::ingest::redis::client)
            .transpose()?;
        let backend = choose_backend(cfg.io_backend)?;
        Ok(Self {
            cfg,
            verifier,
            redis,
            backend,
        })
    }
}

/// `IO_BACKEND` on this host: `auto` takes io_uring when the probe passes
/// and says in one line why not otherwise; `uring` that cannot be had is a
/// configuration error (exit 2).
pub fn choose_backend(wanted: IoBackend) -> Result<Backend, crate::config::ConfigError> {
    match wanted {
        IoBackend::Epoll => Ok(Backend::Epoll),
        IoBackend::Uring => {
            sys::uring::probe()
                .map(|()| Backend::Uring)
                .map_err(|why| crate::config::ConfigError {
                    var: "IO_BACKEND",
                    message: format!("io_uring is not available here: {why}"),
                })
        }
        IoBackend::Auto => Ok(match sys::uring::probe() {
            Ok(()) => Backend::Uring,
            Err(why) => {
                info!("IO_BACKEND=auto: io_uring unavailable ({why}); using epoll");
                Backend::Epoll
            }
        }),
    }
}

/// Starts a named helper thread.
fn spawn(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| StartError(format!("cannot spawn {name} thread: {e}")))
}

/// Client connections that fit an open-file limit of `nofile`: what is
/// left after the descriptors herald needs besides them (listeners, pollers,
/// Redis links, the admin listener's connections), a quarter of a small
/// limit at most.
pub fn fd_budget(nofile: usize) -> usize {
    let reserve = (crate::admin::listener::MAX_HEADS + 64).min(nofile / 4);
    nofile.saturating_sub(reserve).max(1)
}

/// Runs herald until SIGTERM or SIGINT.
pub fn run(prepared: Prepared) -> Result<(), StartError> {
    let Prepared {
        mut cfg,
        verifier,
        redis,
        backend,
    } = prepared;
    // Signals are blocked before any thread starts, so every thread inherits
    // the mask and only the main thread's sigwait sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGHUP);
    signals
        .thread_block()
        .map_err(|e| StartError(format!("cannot block signals: {e}")))?;

    // As loaded, before the caps below: what a reload compares with.
    let loaded = cfg.clone();
    let nofile = sys::limits::raise_nofile();
    let mem = crate::doctor::mem_available();
    if let Some(why) = crate::doctor::fit_host(&mut cfg, nofile, mem) {
        info!("MAX_CONNECTIONS unset: {} = {why}", cfg.max_connections);
    }
    let fit = fd_budget(nofile as usize);
    if fit < cfg.max_connections {
        warn!(
            "open-file limit is {nofile}: MAX_CONNECTIONS={} capped at {fit}, so clients beyond \
             get 503 server_full rather than wait for a descriptor (raise LimitNOFILE / ulimit -n)",
            cfg.max_connections
        );
        cfg.max_connections = fit;
    }

    let workers = cfg.workers;
    let per_reactor = {
        let cap = cfg.max_connections.min(nofile as usize);
        cap.min(cap * 2 / workers + 1024)
    };
    // The kernel's send queue of each connection is fixed at a quarter of
    // MAX_PENDING_BYTES requested, which the kernel doubles: half the budget
    // (128 KiB by default); herald's own queue holds the rest
    // (`Shared::pending_max`). A smaller kernel share (an eighth) let busy
    // reactors cut a healthy listener whose bytes waited in herald's queue
    // (BENCHMARKS.md, stalled listeners).
    let mut listeners = Vec::with_capacity(workers);
    let mut kernel_queue = 0;
    for _ in 0..workers {
        let (listener, granted) =
            sys::net::reuseport_listener(cfg.listen_addr, cfg.max_pending_bytes / 4)
                .map_err(|e| StartError(format!("cannot listen on {}: {e}", cfg.listen_addr)))?;
        kernel_queue = granted;
        listeners.push(listener);
    }
    let admin_listener = TcpListener::bind(cfg.admin_addr).map_err(|e| {
        StartError(format!(
            "cannot listen on ADMIN_ADDR {}: {e}",
            cfg.admin_addr
        ))
    })?;

    let stats: Arc<[Arc<Stats>]> = (0..workers).map(|_| Arc::new(Stats::default())).collect();
    let mut status = IngestStatus::new(redis.is_some());
    if cfg.kafka.is_some() {
        status = status.with_kafka();
    }
    let status = Arc::new(status);
    let cfg = Arc::new(cfg);
    let (changes_tx, changes_rx) = crossbeam_channel::unbounded();
    let (queries_tx, queries_rx) =
        crossbeam_channel::bounded(crate::admin::connections::QUERY_QUEUE);
    let (records_tx, records_rx) = crossbeam_channel::unbounded();
    let mut shared = Shared::new(cfg.clone(), verifier, status.clone(), Some(changes_tx));
    shared.queries = Some(queries_tx);
    shared.records = cfg.registry_redis.then(|| records_tx.clone());
    // Streams mode: replays of positions memory no longer holds go to the
    // log reader (bounded: when it is swamped, memory alone answers).
    let streams = matches!(
        cfg.redis.as_ref().map(|r| &r.source),
        Some(crate::config::RedisSource::Stream(_))
    );
    let (log_tx, log_rx) = crossbeam_channel::bounded(LOG_QUEUE);
    shared.log = streams.then_some(log_tx);
    shared.pending_max = cfg
        .max_pending_bytes
        .saturating_sub(kernel_queue)
        .max(cfg.max_pending_bytes / 2);
    let shared = Arc::new(shared);
    let presence = shared.presence.clone();
    let ids = shared.ids;

    // The inboxes and the hub come before the reactors, so that in streams
    // mode the stream's tail is in every inbox before any reactor runs: a
    // reactor drains its inbox before it answers a stream, so even the first
    // listener (queued on the bound port meanwhile) is replayed from the
    // tail, not sent a false history-gap.
    let mut inboxes = Vec::with_capacity(workers);
    let mut receivers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (inbox, rx, wake) =
            inbox::inbox().map_err(|e| StartError(format!("cannot create eventfd: {e}")))?;
        inboxes.push(inbox);
        receivers.push((rx, wake));
    }
    let hub = Arc::new(Hub::new(inboxes.clone(), cfg.max_pending_bytes / 2));
    let redis_ingest = match (&redis, &cfg.redis) {
        (Some(client), Some(rc)) => {
            let mut ingest = RedisIngest::new(
                client.clone(),
                rc.source.clone(),
                shared.history_limits(),
                hub.clone(),
                status.clone(),
            );
            ingest.load_tail();
            Some(ingest)
        }
        _ => None,
    };

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut handles = Vec::with_capacity(workers);
    for (i, (listener, (rx, wake))) in listeners.into_iter().zip(receivers).enumerate() {
        let parts = Parts {
            index: i,
            shared: shared.clone(),
            stats: stats[i].clone(),
            listener,
            inbox: rx,
            wake,
            capacity: per_reactor,
        };
        let core = (cfg.pin_cores && !cores.is_empty()).then(|| cores[i % cores.len()]);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = std::thread::Builder::new()
            .name(format!("reactor-{i}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        warn!("reactor {i}: could not pin to core {}", core.id);
                    }
                }
                driver::run(backend, parts, |r| {
                    let _ = ready_tx.send(r);
                });
            })
            .map_err(|e| StartError(format!("cannot spawn reactor {i}: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(StartError(format!(
                    "cannot start reactor {i} ({}): {e}",
                    backend.name()
                )))
            }
            Err(_) => return Err(StartError(format!("reactor {i} ended during start-up"))),
        }
        handles.push(handle);
    }

    let dir = Arc::new(Directory::new(
        inboxes.clone(),
        ids,
        redis.clone().filter(|_| cfg.registry_redis),
    ));
    spawn("queries", {
        let dir = dir.clone();
        move || crate::admin::connections::serve_queries(queries_rx, &dir)
    })?;
    let mut registry = None;
    if cfg.registry_redis {
        let writer = Writer {
            dir: dir.clone(),
            records: records_rx,
            status: status.clone(),
            ttl: Duration::from_secs(cfg.registry_ttl_secs),
            per_user_max: cfg.max_connections_per_user,
        };
        registry = Some(spawn("registry", move || writer.run())?);
        let watch = Watch {
            dir: dir.clone(),
            presence: presence.clone(),
            hub: hub.clone(),
            now: crate::ingest::now,
        };
        spawn("cluster-watch", move || watch.run())?;
        info!("connection registry: Redis, node {}", dir.node());
    }
    if presence.events() && !cfg.registry_redis {
        let (presence, hub) = (presence.clone(), hub.clone());
        spawn("presence", move || {
            crate::presence::run_feed(changes_rx, &presence, &hub, crate::ingest::now)
        })?;
    }
    if let Some(ingest) = redis_ingest {
        if let Some(reader) = ingest.log_reader(log_rx) {
            spawn("log-reader", move || reader.run())?;
        }
        spawn("ingest-redis", move || ingest.run())?;
    }
    if let Some(kc) = cfg.kafka.clone() {
        let ingest = KafkaIngest::new(kc, hub.clone(), status.clone(), cfg.history_size);
        spawn("ingest-kafka", move || ingest.run())?;
    }
    let counters = crate::reactor::stats::Counters::new(stats);
    let admin = Admin::new(
        cfg.clone(),
        hub.clone(),
        status,
        counters,
        backend.name(),
        dir,
    );
    let admin = Arc::new(admin);
    if let Some(addr) = cfg.grpc_addr {
        crate::admin::grpc::start(addr, admin.clone(), presence.clone()).map_err(StartError)?;
    }
    let heads = crate::admin::listener::max_heads(nofile as usize);
    spawn("admin", move || {
        crate::admin::listener::serve(admin, admin_listener, heads)
    })?;

    sys::notify::ready(&format!("listening on {}", cfg.listen_addr));
    sys::notify::start_watchdog();
    info!(
        "herald listening on {} (admin {}), {workers} reactor(s) on {}, fd limit {nofile}",
        cfg.listen_addr,
        cfg.admin_addr,
        backend.name()
    );

    let mut reloader = crate::reload::Reloader::new(loaded, shared.clone());
    let sig = loop {
        match signals.wait() {
            Ok(Signal::SIGHUP) => reloader.reload(),
            Ok(sig) => break sig,
            Err(e) => return Err(StartError(format!("sigwait failed: {e}"))),
        }
    };
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
    if let Some(writer) = registry {
        // The streams' closes are queued; then this node leaves the
        // registry, so peers stop listing it now rather than after its TTL.
        let _ = records_tx.send(Record::Leave);
        while Instant::now() < deadline && !writer.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !writer.is_finished() {
            warn!("registry: not cleaned up within SHUTDOWN_TIMEOUT_MS; peers drop this node after REGISTRY_NODE_TTL_SECONDS");
        }
    }
    info!("herald stopped");
    Ok(())
}
