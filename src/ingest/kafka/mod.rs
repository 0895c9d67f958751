//! The Kafka ingest thread (SPEC §4, seed 003): every partition of every
//! topic in `KAFKA_TOPICS`, read by every node, handed to the hub.
//!
//! Contract:
//! - **No consumer group.** herald assigns itself every partition of every
//!   listed topic (so each node sees every event), and picks up partitions
//!   added later (metadata is re-read every [`REFRESH`]).
//! - **Where to start.** The first time a partition is seen: at its end,
//!   with its last `HISTORY_SIZE` records loaded into history as
//!   replayable, not delivered live ([`partition`]). After an outage or a
//!   lost connection: the next offset after the last record read, per
//!   partition, so nothing produced meanwhile is lost or repeated.
//! - **Records.** The value is an envelope or a batch (SPEC §4); a record
//!   is all or nothing. A bad record (no value, not an envelope, an event
//!   over the size cap) is counted in `rejected_total` and logged
//!   (rate-limited), never half-delivered; the records around it go on.
//! - **Ids.** An envelope's own `id` is the SSE id. Otherwise the id is the
//!   record's position, `<topic>:<partition>:<offset>` (element `i` of a
//!   batch: `<topic>:<partition>:<offset>.<i>`), the same on every node.
//! - **Health.** `/health` says `kafka: down` (and `degraded`) until the
//!   first fetch succeeds and while any fetch fails; each failure and each
//!   recovery is logged once with the broker list or the partition.
//!   `/stats` gives each partition's last offset and lag.
//! - The client (`rskafka`) is async: it runs on one current-thread tokio
//!   runtime owned by this thread, never on a reactor.

mod partition;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{info, warn};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::BackoffConfig;

use crate::config::{KafkaConfig, SaslMechanism};
use crate::hub::status::{IngestStatus, RedisState};
use crate::hub::Hub;
use crate::ingest::RateLimitedLog;

/// How often topic metadata is re-read (new partitions).
const REFRESH: Duration = Duration::from_secs(10);
/// How long one client call may retry inside the client before it fails
/// (and the link is reported down).
const CALL_DEADLINE: Duration = Duration::from_secs(5);

pub struct KafkaIngest {
    cfg: KafkaConfig,
    hub: Arc<Hub>,
    status: Arc<IngestStatus>,
    /// `HISTORY_SIZE`: records per partition loaded into history at first.
    history_size: usize,
}

/// The next offset of each partition, kept across reconnects (written by
/// the partition readers after each fetch; this thread only).
pub(super) type Offsets = Arc<Mutex<HashMap<(String, i32), i64>>>;

impl KafkaIngest {
    pub fn new(
        cfg: KafkaConfig,
        hub: Arc<Hub>,
        status: Arc<IngestStatus>,
        history_size: usize,
    ) -> Self {
        Self {
            cfg,
            hub,
            status,
            history_size,
        }
    }

    /// Runs the ingest loop forever (the thread ends with the process).
    pub fn run(self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                warn!("kafka: cannot start its I/O runtime ({e}); Kafka ingest is off");
                return;
            }
        };
        rt.block_on(self.main());
    }

    async fn main(self) {
        let offsets = Offsets::default();
        let mut backoff = super::Backoff::new();
        let mut first = true;
        loop {
            let started = Instant::now();
            let err = self.session(&offsets).await;
            if self.status.set_kafka(RedisState::Down) || first {
                warn!(
                    "kafka: link down ({err}); brokers {}; retrying with backoff, listeners \
                     stay connected",
                    self.cfg.brokers.join(",")
                );
            }
            first = false;
            if started.elapsed() >= REFRESH {
                backoff.reset();
            }
            tokio::time::sleep(backoff.advance()).await;
        }
    }

    /// Connects and reads every partition until something fails.
    async fn session(&self, offsets: &Offsets) -> String {
        let client = match self.connect().await {
            Ok(c) => Arc::new(c),
            Err(e) => return format!("cannot connect: {e}"),
        };
        // Dropping the set (when the session ends) stops every reader.
        let mut readers = tokio::task::JoinSet::new();
        let mut running: BTreeSet<(String, i32)> = BTreeSet::new();
        loop {
            let found = match self.discover(&client).await {
                Ok(found) => found,
                Err(e) => return e,
            };
            for key in found {
                if running.contains(&key) {
                    continue;
                }
                let reader = partition::Reader {
                    client: client.clone(),
                    topic: key.0.clone(),
                    partition: key.1,
                    offsets: offsets.clone(),
                    hub: self.hub.clone(),
                    status: self.status.clone(),
                    history_size: self.history_size,
                    fetch_wait_ms: self.cfg.fetch_wait_ms,
                    bad_log: RateLimitedLog::new(Duration::from_secs(10)),
                };
                running.insert(key);
                readers.spawn(reader.run());
            }
            // Until the next metadata refresh, or a reader fails.
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => {}
                done = readers.join_next(), if !readers.is_empty() => match done {
                    Some(Ok(why)) => return why,
                    Some(Err(e)) => return format!("a partition reader failed: {e}"),
                    None => {}
                },
            }
        }
    }

    async fn connect(&self) -> Result<Client, String> {
        let mut b = ClientBuilder::new(self.cfg.brokers.clone())
            .client_id("herald")
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
                deadline: Some(CALL_DEADLINE),
            });
        if let Some(sasl) = &self.cfg.sasl {
            let c = Credentials::new(sasl.username.clone(), sasl.password.clone());
            b = b.sasl_config(match sasl.mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(c),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(c),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(c),
            });
        }
        if self.cfg.tls {
            b = b.tls_config(Arc::new(tls::client_config(self.cfg.ca_file.as_deref())?));
        }
        b.build().await.map_err(|e| e.to_string())
    }

    /// The partitions of the listed topics; says once about a missing one.
    async fn discover(&self, client: &Client) -> Result<BTreeSet<(String, i32)>, String> {
        let topics = client
            .list_topics()
            .await
            .map_err(|e| format!("metadata: {e}"))?;
        let mut found = BTreeSet::new();
        for name in &self.cfg.topics {
            match topics.iter().find(|t| &t.name == name) {
                Some(t) => found.extend(t.partitions.iter().map(|p| (name.clone(), *p))),
                None => warn!("kafka: topic {name:?} does not exist (yet); looking again in 10 s"),
            }
        }
        if self.status.set_kafka(RedisState::Up) {
            info!(
                "kafka: link up, brokers {}, reading {} partitions of {}",
                self.cfg.brokers.join(","),
                found.len(),
                self.cfg.topics.join(",")
            );
        }
        Ok(found)
    }
}

mod tls {
    //! The TLS client configuration for `SSL` and `SASL_SSL`.

    use std::path::Path;

    use rustls_pki_types::pem::PemObject;

    /// The system roots, or only the PEM CA file when one is given.
    pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        Ok(rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}
