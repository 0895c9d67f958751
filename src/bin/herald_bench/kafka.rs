//! The Kafka publisher: one record per event on partition 0 of a topic,
//! produced with `rskafka` on a current-thread runtime owned by the
//! publisher (the bench's publishing loop stays synchronous).

use std::net::SocketAddr;
use std::time::Duration;

use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;

pub struct Producer {
    rt: tokio::runtime::Runtime,
    partition: PartitionClient,
}

impl Producer {
    pub fn connect(addr: &SocketAddr, topic: &str) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("kafka: runtime: {e}"))?;
        let partition = rt.block_on(async {
            let client = ClientBuilder::new(vec![addr.to_string()])
                .client_id("herald-bench")
                .build()
                .await
                .map_err(|e| format!("kafka: connect {addr}: {e}"))?;
            client
                .partition_client(topic, 0, UnknownTopicHandling::Retry)
                .await
                .map_err(|e| format!("kafka: topic {topic}: {e}"))
        })?;
        Ok(Self { rt, partition })
    }

    /// Produces one record and waits for the broker's ack.
    pub fn produce(&mut self, value: Vec<u8>) -> Result<(), String> {
        let record = Record {
            key: None,
            value: Some(value),
            headers: Default::default(),
            timestamp: chrono_now(),
        };
        let partition = &self.partition;
        self.rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    partition.produce(vec![record], Compression::NoCompression),
                )
                .await
            })
            .map_err(|_| "kafka: produce timed out".to_string())?
            .map(drop)
            .map_err(|e| format!("kafka: produce: {e}"))
    }
}

fn chrono_now() -> rskafka::chrono::DateTime<rskafka::chrono::Utc> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    rskafka::chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
