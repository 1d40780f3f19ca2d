//! Reading: which worker reads which partition, the consumer of one topic's partitions,
//! and the committer of positions for lag tools.

use std::collections::HashMap;
use std::time::Duration;

use paceline_model::Stream;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::IngestError;

/// The worker that reads `partition` of `stream`: partitions of a stream in turn, each
/// stream starting one worker further. It depends only on the stream, the partition and
/// the worker count, so every process of a cluster agrees, and a partition added to a
/// topic moves no other.
pub fn partition_owner(stream: Stream, partition: i32, workers: usize) -> usize {
    (partition.max(0) as usize + stream.index()) % workers.max(1)
}

/// Divides the partitions of all streams among `workers` by [`partition_owner`], each
/// worker's sorted by (stream, partition).
pub fn assign_stable(parts: &[(Stream, i32)], workers: usize) -> Vec<Vec<(Stream, i32)>> {
    let mut sorted = parts.to_vec();
    sorted.sort_by_key(|(s, p)| (s.index(), *p));
    sorted.dedup();
    let mut out = vec![Vec::new(); workers.max(1)];
    for (s, p) in sorted {
        out[partition_owner(s, p, workers)].push((s, p));
    }
    out
}

/// Consumer context of a source: librdkafka's errors in the log, a partition's end (a
/// notice the source handles) left out. How far behind a source is, is asked of the broker
/// apart from it ([`TopicWatch::watermarks`]): statistics stop with a source that waits.
#[derive(Default)]
pub struct SourceContext {
    topic: String,
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::warn!(topic = %self.topic, %error, reason, "Kafka client error");
        }
    }
}

impl ConsumerContext for SourceContext {}

/// What one poll gave.
#[derive(Debug)]
pub enum Polled<'a> {
    /// A message.
    Message {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// The value.
        payload: &'a [u8],
    },
    /// A message without a value (a compaction tombstone): not an event, not a rejection.
    Tombstone {
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// The consumer reached the end of a partition: nothing unread there right now.
    End {
        /// Partition.
        partition: i32,
    },
    /// Nothing arrived within the timeout.
    Nothing,
    /// A transient client error (broker down, ...); librdkafka reconnects by itself.
    Error(String),
}

/// librdkafka's read-ahead per consumer, unless `kafka.options` sets them: at most this
/// many kilobytes queued locally, and this many bytes per fetch response in flight. With
/// one consumer per (worker, topic) that is 3 × workers × 8 MiB at most (librdkafka's own
/// defaults, 64 MiB queued and 50 MiB per fetch, would allow 3 × workers × 114 MiB).
/// With the queue that small one fetch response fills it, and librdkafka then postpones
/// the next fetch by `fetch.queue.backoff.ms` (1 s by default): reading stalled a second at
/// a time, about 55 000 events/s in all on an idle broker. 10 ms keeps the queue topped up.
pub const PREFETCH: [(&str, &str); 3] = [
    ("queued.max.messages.kbytes", "4096"),
    ("fetch.max.bytes", "4194304"),
    ("fetch.queue.backoff.ms", "10"),
];

/// One consumer for the partitions of one topic that one worker owns.
pub struct TopicSource {
    consumer: BaseConsumer<SourceContext>,
    /// A client that only asks the brokers for watermarks, on connections of its own: on
    /// the consumer's, a question waits behind the fetch in flight, which a broker holds up
    /// to `fetch.wait.max.ms` (500 ms) while the partition is idle, so confirming the 32
    /// idle partitions of a source one after the other took 16 s.
    asker: BaseConsumer<SourceContext>,
    /// The stream of the topic.
    pub stream: Stream,
    /// The topic.
    pub topic: String,
    /// The partitions assigned.
    pub partitions: Vec<i32>,
    /// Where reading started per partition (absent: the beginning).
    start: HashMap<i32, i64>,
}

impl TopicSource {
    /// Creates the consumer and assigns `partitions` of `topic`, each at its offset in
    /// `start` (the beginning where none is given).
    pub fn new(
        base: &ClientConfig,
        stream: Stream,
        topic: &str,
        partitions: &[i32],
        start: &HashMap<i32, i64>,
    ) -> Result<TopicSource, IngestError> {
        let mut c = base.clone();
        c.set("group.id", "paceline")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        for (key, value) in PREFETCH {
            if c.get(key).is_none() {
                c.set(key, value);
            }
        }
        let client = |what: &'static str| -> Result<BaseConsumer<SourceContext>, IngestError> {
            c.create_with_context(SourceContext {
                topic: topic.into(),
            })
            .map_err(|source| IngestError::Client { what, source })
        };
        let consumer = client("consumer")?;
        let asker = client("watermark client")?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let offset = start
                .get(p)
                .map_or(Offset::Beginning, |o| Offset::Offset(*o));
            tpl.add_partition_offset(topic, *p, offset)
                .map_err(|source| IngestError::Client {
                    what: "consumer assignment",
                    source,
                })?;
        }
        consumer
            .assign(&tpl)
            .map_err(|source| IngestError::Client {
                what: "consumer assignment",
                source,
            })?;
        Ok(TopicSource {
            consumer,
            asker,
            stream,
            topic: topic.into(),
            partitions: partitions.to_vec(),
            start: start.clone(),
        })
    }

    /// Waits up to `timeout` for the next message or notice and hands it to `f` (the
    /// message's bytes are borrowed from the consumer only for that call).
    pub fn poll<R>(&self, timeout: Duration, f: impl FnOnce(Polled<'_>) -> R) -> R {
        match self.consumer.poll(timeout) {
            None => f(Polled::Nothing),
            Some(Ok(m)) => match m.payload() {
                Some(payload) => f(Polled::Message {
                    partition: m.partition(),
                    offset: m.offset(),
                    payload,
                }),
                None => f(Polled::Tombstone {
                    partition: m.partition(),
                    offset: m.offset(),
                }),
            },
            Some(Err(KafkaError::PartitionEOF(partition))) => f(Polled::End { partition }),
            Some(Err(e)) => f(Polled::Error(e.to_string())),
        }
    }

    /// Messages of `partition` not yet read: its high watermark (asked of the broker now,
    /// waiting up to `timeout`) minus the consumer's position (when nothing was read yet:
    /// the offset it was assigned at, or the low watermark). None when the broker cannot be
    /// asked.
    pub fn unread(&self, partition: i32, timeout: Duration) -> Option<i64> {
        let (low, high) = self.watermarks(partition, timeout)?;
        let position = self
            .consumer
            .position()
            .ok()
            .and_then(|tpl| {
                tpl.find_partition(&self.topic, partition)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
            })
            .or_else(|| self.start.get(&partition).copied())
            .unwrap_or(low)
            .max(low);
        Some((high - position).max(0))
    }

    /// The first offset `partition` still holds (retention and compaction remove from the
    /// front), asked of the broker now; None when it cannot be asked.
    pub fn low_watermark(&self, partition: i32, timeout: Duration) -> Option<i64> {
        self.watermarks(partition, timeout).map(|(low, _)| low)
    }

    /// `partition`'s low and high watermarks, asked by the asker; None when the brokers
    /// cannot be asked.
    fn watermarks(&self, partition: i32, timeout: Duration) -> Option<(i64, i64)> {
        let asked = self
            .asker
            .fetch_watermarks(&self.topic, partition, timeout)
            .ok();
        // Its errors and logs reach the context only when polled (it is assigned nothing,
        // so no message comes): served here, they neither pile up nor go unlogged.
        let _ = self.asker.poll(Duration::ZERO);
        asked
    }

    /// Where reading started in `partition` (None: its beginning).
    pub fn start_offset(&self, partition: i32) -> Option<i64> {
        self.start.get(&partition).copied()
    }
}

/// Commits positions to a consumer group, only so that standard lag tools see progress:
/// the service itself resumes from its checkpoints, never from these.
pub struct OffsetCommitter {
    consumer: BaseConsumer,
}

impl OffsetCommitter {
    /// A client for `group_id` that never joins the group (no rebalancing).
    pub fn new(base: &ClientConfig, group_id: &str) -> Result<Self, IngestError> {
        let mut c = base.clone();
        c.set("group.id", group_id)
            .set("enable.auto.commit", "false");
        let consumer = c.create().map_err(|source| IngestError::Client {
            what: "offset committer",
            source,
        })?;
        Ok(OffsetCommitter { consumer })
    }

    /// Commits the next offset of each (topic, partition).
    pub fn commit(&self, offsets: &[(String, i32, i64)]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_assignment_takes_each_streams_partitions_in_turn() {
        let parts = [
            (Stream::Scenarios, 0),
            (Stream::Filings, 1),
            (Stream::Filings, 0),
            (Stream::Telemetry, 0),
            (Stream::Telemetry, 1),
        ];
        let a = assign_stable(&parts, 2);
        assert_eq!(
            a,
            vec![
                vec![
                    (Stream::Filings, 0),
                    (Stream::Telemetry, 1),
                    (Stream::Scenarios, 0)
                ],
                vec![(Stream::Filings, 1), (Stream::Telemetry, 0)],
            ]
        );
        // Discovery order does not matter.
        let mut rev = parts;
        rev.reverse();
        assert_eq!(assign_stable(&rev, 2), a);
        assert_eq!(assign_stable(&parts, 1)[0].len(), 5);
        // A partition added later moves no other.
        let mut more = parts.to_vec();
        more.push((Stream::Filings, 2));
        let b = assign_stable(&more, 2);
        for (w, owned) in a.iter().enumerate() {
            assert!(owned.iter().all(|sp| b[w].contains(sp)));
        }
        assert!(b[0].contains(&(Stream::Filings, 2)));
    }
}
