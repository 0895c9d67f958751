//! A throwaway Kafka-protocol broker for the Kafka tests: `tansu` (an Apache
//! Kafka API-compatible broker written in Rust) on a free loopback port,
//! storing into SQLite in a temp dir, so a broker killed and started again
//! keeps its topics and records. Records are produced with librdkafka
//! (Python `confluent-kafka`, `tests/support/kafka_produce.py`), a client
//! independent of herald's.
//!
//! `scripts/test.sh` installs both; a missing one fails the tests with a
//! clear message, never a silent pass. Only our own child is ever killed.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TempDir, START_TIMEOUT};

/// Where `tansu` is: `HERALD_TEST_TANSU`, `PATH`, or cargo's bin dir.
fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HERALD_TEST_TANSU") {
        return p.into();
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("tansu"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    on_path
        .into_iter()
        .chain(cargo_bin)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "tansu is not installed: the Kafka tests need it (scripts/test.sh installs it: \
                 cargo install tansu --locked --features dynostore,libsql)"
            )
        })
}

/// One record to produce.
pub struct Record<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    /// `None`: a record without a value.
    pub value: Option<String>,
}

/// Where a produced record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produced {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Produced {
    /// herald's SSE id for this record (no envelope id; not a batch).
    pub fn id(&self) -> String {
        format!("{}:{}:{}", self.topic, self.partition, self.offset)
    }
}

pub struct Broker {
    port: u16,
    child: Option<Child>,
    dir: TempDir,
    starts: u32,
    /// Clients must authenticate (SASL SCRAM, users made with
    /// [`Broker::create_user`]).
    authentication: bool,
    /// The producer's SASL settings: (mechanism, user, password).
    sasl: Option<(String, String, String)>,
}

impl Broker {
    pub fn start() -> Broker {
        let mut b = Broker {
            port: free_port(),
            child: None,
            dir: TempDir::new("tansu"),
            starts: 0,
            authentication: false,
            sasl: None,
        };
        b.spawn();
        b
    }

    /// Creates a SCRAM user (`scram256` or `scram512`), then restarts the
    /// broker requiring authentication; the producer then logs in as that
    /// user (`mechanism`: `SCRAM-SHA-256` or `SCRAM-SHA-512`).
    pub fn require_scram(&mut self, user: &str, password: &str, mechanism: &str) {
        let tansu_mech = if mechanism.ends_with("256") {
            "scram256"
        } else {
            "scram512"
        };
        let out = Command::new(tansu_bin())
            .args(["user", "create", "--broker", &self.url()])
            .args(["--mechanism", tansu_mech, user, password])
            .output()
            .expect("tansu user create");
        assert!(
            out.status.success(),
            "tansu user create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.kill();
        self.authentication = true;
        self.sasl = Some((mechanism.into(), user.into(), password.into()));
        self.spawn();
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log_path = self.dir.join(&format!("tansu-{}.log", self.starts));
        let log = File::create(&log_path).expect("tansu log");
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &self.url()])
            .args(["--advertised-listener-url", &self.url()])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .args(self.authentication.then_some("--authentication"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(self.addr()).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                panic!(
                    "tansu exited with {status}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Creates `name` with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu_bin())
            .args(["topic", "create", "--broker", &self.url()])
            .args(["--partitions", &partitions.to_string(), name])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces `records` in order (one in flight at a time) with
    /// librdkafka; returns where each landed.
    pub fn produce(&self, records: &[Record<'_>]) -> Vec<Produced> {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/kafka_produce.py"
        );
        let sasl: Vec<&str> = match &self.sasl {
            Some((m, u, p)) => vec![m, u, p],
            None => vec![],
        };
        let mut child = Command::new("python3")
            .args([script, &self.addr()])
            .args(sasl)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 kafka_produce.py");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            for r in records {
                let line = serde_json::json!({
                    "topic": r.topic,
                    "partition": r.partition,
                    "value": r.value,
                });
                writeln!(stdin, "{line}").expect("write record");
            }
        }
        let out = child.wait_with_output().expect("producer");
        assert!(
            out.status.success(),
            "producing failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("producer output");
                Produced {
                    topic: v["topic"].as_str().expect("topic").to_string(),
                    partition: v["partition"].as_i64().expect("partition") as i32,
                    offset: v["offset"].as_i64().expect("offset"),
                }
            })
            .collect()
    }

    /// Produces one value to `topic`/`partition`.
    pub fn produce_one(&self, topic: &str, partition: i32, value: &serde_json::Value) -> Produced {
        self.produce(&[Record {
            topic,
            partition: Some(partition),
            value: Some(value.to_string()),
        }])
        .remove(0)
    }

    /// Kills the broker (SIGKILL: a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, with the same storage.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
