//! One partition's reader: where to start, the fetch loop, and each
//! record's envelopes handed to the hub (see the contract in [`super`]).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use log::warn;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::Client;
use rskafka::record::RecordAndOffset;

use super::Offsets;
use crate::hub::status::{IngestStatus, Partition};
use crate::hub::{envelope, Hub};
use crate::ingest::RateLimitedLog;

/// Bytes one fetch may bring at most (a record larger than this still
/// comes whole: Kafka returns at least one).
const FETCH_BYTES: i32 = 4 << 20;

pub(super) struct Reader {
    pub client: Arc<Client>,
    pub topic: String,
    pub partition: i32,
    pub offsets: Offsets,
    pub hub: Arc<Hub>,
    pub status: Arc<IngestStatus>,
    pub history_size: usize,
    /// `KAFKA_FETCH_WAIT_MS`.
    pub fetch_wait_ms: i32,
    pub bad_log: RateLimitedLog,
}

impl Reader {
    /// Reads until something fails; returns what failed.
    pub async fn run(mut self) -> String {
        let err = self.read().await;
        format!("partition {}/{}: {err}", self.topic, self.partition)
    }

    async fn read(&mut self) -> String {
        let pc = match self
            .client
            .partition_client(
                self.topic.clone(),
                self.partition,
                UnknownTopicHandling::Retry,
            )
            .await
        {
            Ok(pc) => pc,
            Err(e) => return e.to_string(),
        };
        let key = (self.topic.clone(), self.partition);
        let known = self.offsets.lock().ok().and_then(|o| o.get(&key).copied());
        let mut next = match known {
            Some(next) => next,
            None => match self.start(&pc).await {
                Ok(next) => next,
                Err(e) => return e.to_string(),
            },
        };
        loop {
            let (records, high_watermark) = match pc
                .fetch_records(next, 1..FETCH_BYTES, self.fetch_wait_ms)
                .await
            {
                Ok(r) => r,
                Err(KafkaError::ServerError {
                    protocol_error: ProtocolError::OffsetOutOfRange,
                    ..
                }) => match self.skip_lost(&pc, next).await {
                    Ok(earliest) => {
                        next = earliest;
                        continue;
                    }
                    Err(e) => return e.to_string(),
                },
                Err(e) => return e.to_string(),
            };
            if let Some(last) = records.last() {
                next = last.offset + 1;
            }
            self.deliver(records, false);
            if let Ok(mut o) = self.offsets.lock() {
                o.insert(key.clone(), next);
            }
            let read = Partition {
                last_offset: next - 1,
                high_watermark,
            };
            self.status
                .partition_read(&self.topic, self.partition, read);
        }
    }

    /// The first time: the end of the partition, with its last
    /// `HISTORY_SIZE` records loaded into history (not delivered live).
    async fn start(&mut self, pc: &PartitionClient) -> Result<i64, KafkaError> {
        let latest = pc.get_offset(OffsetAt::Latest).await?;
        let earliest = pc.get_offset(OffsetAt::Earliest).await?;
        let mut from = latest
            .saturating_sub(self.history_size as i64)
            .max(earliest);
        while from < latest {
            let (mut records, _) = pc.fetch_records(from, 1..FETCH_BYTES, 0).await?;
            records.retain(|r| r.offset < latest);
            let Some(last) = records.last() else {
                break;
            };
            from = last.offset + 1;
            self.deliver(records, true);
        }
        self.status.partition_read(
            &self.topic,
            self.partition,
            Partition {
                last_offset: latest - 1,
                high_watermark: latest,
            },
        );
        Ok(latest)
    }

    /// Records at `next` are gone (retention) before herald read them: the
    /// listeners hear of it, and reading goes on from the earliest left.
    async fn skip_lost(&mut self, pc: &PartitionClient, next: i64) -> Result<i64, KafkaError> {
        let earliest = pc.get_offset(OffsetAt::Earliest).await?;
        if earliest > next {
            self.status.stream_gaps.fetch_add(1, Relaxed);
            warn!(
                "kafka: partition {}/{}: records {next}..{earliest} were deleted before herald \
                 read them; listeners are sent history-gap",
                self.topic, self.partition
            );
            self.hub.gap(&self.id(next - 1), crate::ingest::now());
            return Ok(earliest);
        }
        Ok(next)
    }

    /// Hands records to the hub, each one a group (all or nothing); bad
    /// ones are counted and logged.
    fn deliver(&mut self, records: Vec<RecordAndOffset>, preload: bool) {
        let mut groups = Vec::with_capacity(records.len());
        let mut offsets = Vec::with_capacity(records.len());
        for r in records {
            match self.envelopes(&r) {
                Ok(envs) => {
                    groups.push(envs);
                    offsets.push(r.offset);
                }
                Err(why) => self.reject(r.offset, &why),
            }
        }
        if groups.is_empty() {
            return;
        }
        let now = crate::ingest::now();
        let (n, refused) = if preload {
            self.hub.preload_each(groups, now)
        } else {
            self.hub.publish_each(groups, now)
        };
        if !preload {
            self.status.published.fetch_add(n as u64, Relaxed);
        }
        for r in refused {
            let offset = offsets.get(r.group).copied().unwrap_or(-1);
            self.reject(offset, &r.error.to_string());
        }
    }

    /// A record's envelopes, each with its SSE id.
    fn envelopes(&self, r: &RecordAndOffset) -> Result<Vec<envelope::Envelope>, String> {
        let value = r.record.value.as_deref().ok_or("no value")?;
        let envs = envelope::decode(value).map_err(|e| e.to_string())?;
        Ok(envelope::positioned(envs, &self.id(r.offset), true, false))
    }

    /// The SSE id of a record's position.
    fn id(&self, offset: i64) -> String {
        format!("{}:{}:{offset}", self.topic, self.partition)
    }

    fn reject(&mut self, offset: i64, why: &str) {
        self.status.rejected.fetch_add(1, Relaxed);
        self.bad_log.warn(&format!(
            "kafka: record {}/{} at offset {offset} refused: {why}",
            self.topic, self.partition
        ));
    }
}
