//! The ingest stage: Kafka in, raw messages out, and the dead-letter topic.
//!
//! Place in the flow: **ingest** → decode → dataflow → sinks. A [`TopicSource`] is one
//! rdkafka consumer for the partitions of one topic that one worker owns ([`assign_stable`]
//! divides them); it hands out raw message bytes with their origin, and end-of-partition
//! notices from which the runtime tells idle partitions. Offsets are assigned explicitly (no
//! consumer-group rebalancing); lag per partition comes from librdkafka's statistics.
//! [`DeadLetterProducer`] writes rejected events with their reason and origin as headers;
//! [`TopicWatch`] tells whether the brokers and topics are still there and which partitions
//! they have; [`config`] is the `[kafka]` section.

pub mod config;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paceline_model::secret::Secret;
use paceline_model::Stream;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

pub use config::KafkaConfig;

/// Ingest failed: a client could not be created or the topics could not be described.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Creating a consumer or producer failed (bad client settings).
    #[error("cannot create the Kafka {what}: {source}")]
    Client {
        /// Consumer or producer.
        what: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Topic metadata could not be fetched.
    #[error("cannot read metadata of topic `{topic}` from {brokers}: {reason}")]
    Metadata {
        /// The topic.
        topic: String,
        /// The brokers asked.
        brokers: String,
        /// Why.
        reason: String,
    },
    /// Producing a dead letter failed for good.
    #[error("cannot write a dead letter to `{topic}`: {reason}")]
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
        /// Why.
        reason: String,
    },
}

/// The client settings shared by consumers and the producer: brokers, pass-through
/// options (TLS, SASL) and the SASL password from the environment.
pub fn client_config(kafka: &KafkaConfig, sasl_password: Option<&Secret>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("client.id", &kafka.client_id);
    for (k, v) in &kafka.options {
        c.set(k, v);
    }
    if let Some(p) = sasl_password {
        c.set("sasl.password", p.expose());
    }
    // librdkafka's own log lines go through its default logger at warning level.
    c.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    c
}

/// Why a topic could not be described: the reason, and whether waiting cannot help (the
/// broker says the topic does not exist).
type Undescribed = (String, bool);

/// The partitions of `topic` as the brokers describe them now, sorted.
fn describe<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, Undescribed> {
    let md = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| (e.to_string(), false))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| ("topic missing from the metadata".to_string(), false))?;
    if let Some(e) = t.error() {
        let code = RDKafkaErrorCode::from(e);
        let missing = matches!(
            code,
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic
        );
        let reason = if missing {
            "the topic does not exist".to_string()
        } else {
            format!("{code:?}")
        };
        return Err((reason, missing));
    }
    let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    parts.sort_unstable();
    if parts.is_empty() {
        return Err(("the topic has no partitions".into(), false));
    }
    Ok(parts)
}

/// A topic to create when it is missing.
#[derive(Debug, Clone)]
pub struct NewTopicSpec {
    /// Its name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Replication factor.
    pub replication_factor: i32,
    /// `retention.ms`; None keeps everything (`-1`).
    pub retention_ms: Option<u64>,
}

/// Creates those of `topics` the brokers do not have; returns the names created. A topic
/// another client created meanwhile counts as there.
pub fn create_missing_topics(
    config: &ClientConfig,
    topics: &[NewTopicSpec],
    timeout: Duration,
) -> Result<Vec<String>, IngestError> {
    let brokers = config.get("bootstrap.servers").unwrap_or("").to_string();
    let consumer: BaseConsumer = config.create().map_err(|source| IngestError::Client {
        what: "metadata client",
        source,
    })?;
    let mut missing = Vec::new();
    for t in topics {
        match describe(&consumer, &t.name, timeout) {
            Ok(_) => {}
            Err((_, true)) => missing.push(t),
            Err((reason, false)) => {
                return Err(IngestError::Metadata {
                    topic: t.name.clone(),
                    brokers,
                    reason,
                })
            }
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|source| IngestError::Client {
            what: "admin client",
            source,
        })?;
    let retention: Vec<String> = missing
        .iter()
        .map(|t| t.retention_ms.map_or("-1".to_string(), |ms| ms.to_string()))
        .collect();
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&retention)
        .map(|(t, r)| {
            NewTopic::new(
                &t.name,
                t.partitions,
                TopicReplication::Fixed(t.replication_factor),
            )
            .set("retention.ms", r)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results =
        block_on(admin.create_topics(&new, &options)).map_err(|e| IngestError::Metadata {
            topic: missing
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            brokers: brokers.clone(),
            reason: format!("cannot create: {e}"),
        })?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(IngestError::Metadata {
                    topic: name,
                    brokers,
                    reason: format!("cannot create: {code}"),
                })
            }
        }
    }
    Ok(created)
}

/// The topic's `max.message.bytes` as the brokers describe it; `None` where they do not
/// say (a broker without DescribeConfigs, or no answer within `timeout`).
pub fn topic_max_message_bytes(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Option<usize> {
    let admin: AdminClient<DefaultClientContext> = config.create().ok()?;
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let described = block_on(
        admin.describe_configs(&[rdkafka::admin::ResourceSpecifier::Topic(topic)], &options),
    )
    .ok()?;
    described
        .into_iter()
        .flatten()
        .flat_map(|resource| resource.entries)
        .find(|e| e.name == "max.message.bytes")
        .and_then(|e| e.value?.parse().ok())
}

/// Runs a future to completion on this thread (the admin client's futures are completed
/// by its own background thread; no async runtime is needed, and a blocking caller may be
/// inside one).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Keeps librdkafka's last word on a client's trouble (a refused connection, a name that
/// does not resolve, a TLS handshake or SASL authentication that failed), so that a failed
/// request can say why, not only that it timed out. A consumer hands such errors out only
/// through its log callback, which librdkafka calls from its own threads.
#[derive(Default)]
pub struct ErrorContext {
    last: Mutex<Option<String>>,
}

impl ErrorContext {
    fn last(&self) -> Option<String> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    fn clear(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = None;
        }
    }

    fn keep(&self, text: String) {
        if let Ok(mut l) = self.last.lock() {
            *l = Some(text);
        }
    }
}

impl ClientContext for ErrorContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        // Kept, not logged: librdkafka repeats a broker's failure at every reconnect, and
        // the service reports the trouble itself, once and then every 30 s.
        tracing::debug!(fac, message, "librdkafka (topic watch)");
        use rdkafka::config::RDKafkaLogLevel::*;
        if matches!(level, Emerg | Alert | Critical | Error | Warning) {
            self.keep(message.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.keep(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ErrorContext {}

/// Why the topics could not be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct LookError {
    /// What is wrong, naming the brokers or the topic, with librdkafka's last word.
    pub reason: String,
    /// The brokers answered that this topic does not exist.
    pub missing_topic: Option<String>,
}

/// Looks at the topics the service reads, on its own client: whether the brokers answer,
/// each topic still exists, and which partitions it has now (partitions can be added to a
/// topic while the service runs).
pub struct TopicWatch {
    consumer: BaseConsumer<ErrorContext>,
    topics: Vec<String>,
    brokers: String,
}

impl TopicWatch {
    /// A watch over `topics`.
    pub fn new(config: &ClientConfig, topics: Vec<String>) -> Result<Self, IngestError> {
        let consumer = config
            .create_with_context(ErrorContext::default())
            .map_err(|source| IngestError::Client {
                what: "topic watch",
                source,
            })?;
        let brokers = config.get("bootstrap.servers").unwrap_or("").to_string();
        Ok(TopicWatch {
            consumer,
            topics,
            brokers,
        })
    }

    /// The brokers it asks (`kafka.brokers`).
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The topics it watches, in the order given.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The first offset `partition` of `topic` still holds and the offset its next message
    /// will take, asked of the broker now; None when it cannot be asked within `timeout`.
    pub fn watermarks(&self, topic: &str, partition: i32, timeout: Duration) -> Option<(i64, i64)> {
        self.consumer
            .fetch_watermarks(topic, partition, timeout)
            .ok()
    }

    /// Every topic's partitions (in the order the topics were given), or what is wrong:
    /// a topic gone, the brokers unreachable or refusing the client, with librdkafka's
    /// last word on it.
    pub fn look(&self, timeout: Duration) -> Result<Vec<Vec<i32>>, LookError> {
        let looked = self.describe_all(timeout);
        // librdkafka's log and error events reach the context only through a poll (this
        // client reads no messages); polled every look, they never pile up either.
        for _ in 0..1000 {
            if self.consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        let looked = looked.map_err(|(e, topic)| self.explain(e, topic));
        if looked.is_ok() {
            // A trouble once over is not the reason of the next one.
            self.consumer.context().clear();
        }
        looked
    }

    fn describe_all(&self, timeout: Duration) -> Result<Vec<Vec<i32>>, (Undescribed, String)> {
        self.topics
            .iter()
            .map(|topic| describe(&self.consumer, topic, timeout).map_err(|e| (e, topic.clone())))
            .collect()
    }

    /// What is wrong, in words a person can act on: the topic missing, or the brokers and
    /// librdkafka's last word on why they do not answer.
    fn explain(&self, (reason, missing): Undescribed, topic: String) -> LookError {
        if missing {
            return LookError {
                reason: format!("topic `{topic}`: {reason}"),
                missing_topic: Some(topic),
            };
        }
        let why = format!(
            "brokers {}: cannot describe topic `{topic}`: {reason}",
            self.brokers
        );
        LookError {
            reason: match self.consumer.context().last() {
                Some(client) => format!("{why}; librdkafka: {client}"),
                None => why,
            },
            missing_topic: None,
        }
    }
}

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
        let ctx = SourceContext {
            topic: topic.into(),
        };
        let consumer: BaseConsumer<SourceContext> =
            c.create_with_context(ctx)
                .map_err(|source| IngestError::Client {
                    what: "consumer",
                    source,
                })?;
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
        let (low, high) = self
            .consumer
            .fetch_watermarks(&self.topic, partition, timeout)
            .ok()?;
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
        self.consumer
            .fetch_watermarks(&self.topic, partition, timeout)
            .ok()
            .map(|(low, _)| low)
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

/// Where a rejected event came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The stream of the topic.
    pub stream: Stream,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// Delivery bookkeeping of the dead-letter producer, filled by librdkafka's delivery
/// reports: which dead letters are still in flight, and those the broker refused.
#[derive(Default)]
pub struct Deliveries {
    next: AtomicU64,
    in_flight: Mutex<BTreeSet<u64>>,
    failed: Mutex<Vec<Failed>>,
}

/// A dead letter the broker refused, kept for a retry.
struct Failed {
    sequence: u64,
    attempts: u32,
    message: OwnedMessage,
    error: String,
}

/// The producer's context: reads the delivery reports.
pub struct DeliveryContext {
    deliveries: Arc<Deliveries>,
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<(u64, u32)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Self::DeliveryOpaque) {
        let (sequence, attempts) = *opaque;
        match result {
            Ok(_) => {
                if let Ok(mut f) = self.deliveries.in_flight.lock() {
                    f.remove(&sequence);
                }
            }
            // Still in flight: no checkpoint passes it until a retry succeeds.
            Err((e, message)) => {
                if let Ok(mut f) = self.deliveries.failed.lock() {
                    f.push(Failed {
                        sequence,
                        attempts,
                        message: message.detach(),
                        error: e.to_string(),
                    });
                }
            }
        }
    }
}

/// A failed dead letter is sent again this many times before the service stops.
pub const DEAD_LETTER_ATTEMPTS: u32 = 5;

/// The largest dead letter the producer accepts: librdkafka's own limit on a message a
/// consumer receives, so that any message the broker delivered can be dead-lettered
/// (`receive.message.max.bytes`'s default, 100 MB, plus room for the headers).
pub const DEAD_LETTER_MAX_BYTES: usize = 100_000_000 + 64 * 1024;

/// The dead-letter producer's queue, in kilobytes: room for one dead letter of the
/// largest size, so that any rejected message can be queued.
pub const DEAD_LETTER_QUEUE_KBYTES: usize = DEAD_LETTER_MAX_BYTES / 1024 + 1024;

/// Writes rejected events to the dead-letter topic: the original bytes as the value, the
/// reason and origin as headers. librdkafka retries transient errors by itself (no message
/// timeout); a dead letter the broker refuses is sent again up to
/// [`DEAD_LETTER_ATTEMPTS`] times by [`DeadLetterProducer::retry_failed`], which then
/// reports it as an error.
#[derive(Clone)]
pub struct DeadLetterProducer {
    producer: Arc<ThreadedProducer<DeliveryContext>>,
    deliveries: Arc<Deliveries>,
    closing: Arc<AtomicBool>,
    topic: String,
    max_bytes: usize,
}

/// What a record adds besides its key, value and headers' keys and values (lengths,
/// offsets, timestamps, attributes), with room to spare.
const RECORD_OVERHEAD: usize = 512;

/// A dead letter's value: the rejected message, or its start when the whole would not fit
/// in `room` bytes; the headers that say so.
fn cut_to_fit(payload: &[u8], room: usize) -> (&[u8], Vec<(&'static str, String)>) {
    if payload.len() <= room {
        return (payload, Vec::new());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, payload);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    (
        &payload[..room],
        vec![
            ("truncated", "true".to_string()),
            ("original_size", payload.len().to_string()),
            ("original_sha256", hex),
        ],
    )
}

impl DeadLetterProducer {
    /// Creates the producer; dead letters are cut to `max_bytes` in all (see
    /// `kafka.dead_letter_max_bytes`).
    pub fn new(base: &ClientConfig, topic: &str, max_bytes: usize) -> Result<Self, IngestError> {
        let mut c = base.clone();
        c.set("message.timeout.ms", "0")
            .set("enable.idempotence", "false")
            .set("acks", "all")
            .set("linger.ms", "20")
            .set("message.max.bytes", DEAD_LETTER_MAX_BYTES.to_string())
            // The queue is bounded in bytes (a full queue blocks the source: backpressure),
            // and holds at least one dead letter of the largest size.
            .set(
                "queue.buffering.max.kbytes",
                DEAD_LETTER_QUEUE_KBYTES.to_string(),
            );
        let deliveries = Arc::new(Deliveries::default());
        let producer: ThreadedProducer<DeliveryContext> = c
            .create_with_context(DeliveryContext {
                deliveries: deliveries.clone(),
            })
            .map_err(|source| IngestError::Client {
                what: "dead-letter producer",
                source,
            })?;
        Ok(DeadLetterProducer {
            producer: Arc::new(producer),
            deliveries,
            closing: Arc::new(AtomicBool::new(false)),
            topic: topic.into(),
            max_bytes,
        })
    }

    /// Queues one dead letter, waiting while the producer's queue is full (until
    /// [`DeadLetterProducer::close`]).
    pub fn send(
        &self,
        payload: &[u8],
        reason: &str,
        detail: &str,
        origin: &Origin,
    ) -> Result<(), IngestError> {
        let partition = origin.partition.to_string();
        let offset = origin.offset.to_string();
        let key = format!("{}/{}/{}", origin.topic, origin.partition, origin.offset);
        // A message near or above the topic's limit would be refused by the broker every
        // time, and the service would stop before it again at each restart: cut it.
        let fixed: usize = [
            ("reason", reason),
            ("stream", origin.stream.as_str()),
            ("topic", origin.topic.as_str()),
            ("partition", partition.as_str()),
            ("offset", offset.as_str()),
            ("detail", detail),
        ]
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
        // The cut's own headers: three keys and at most 20 digits, 64 hex digits, "true".
        let cut_headers = 9 + 13 + 15 + 4 + 20 + 64;
        let room = self
            .max_bytes
            .saturating_sub(RECORD_OVERHEAD + key.len() + fixed + cut_headers);
        let (value, cut) = cut_to_fit(payload, room);
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(reason),
            })
            .insert(Header {
                key: "stream",
                value: Some(origin.stream.as_str()),
            })
            .insert(Header {
                key: "topic",
                value: Some(origin.topic.as_str()),
            })
            .insert(Header {
                key: "partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "detail",
                value: Some(detail),
            });
        for (k, v) in &cut {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_str()),
            });
        }
        self.produce(value, key.as_bytes(), headers, None)
    }

    /// Sends one message, tracked from now until its delivery report.
    fn produce(
        &self,
        payload: &[u8],
        key: &[u8],
        headers: OwnedHeaders,
        retry_of: Option<(u64, u32)>,
    ) -> Result<(), IngestError> {
        let (sequence, attempts) =
            retry_of.unwrap_or_else(|| (self.deliveries.next.fetch_add(1, Ordering::SeqCst), 0));
        if let Ok(mut f) = self.deliveries.in_flight.lock() {
            f.insert(sequence);
        }
        let mut record = BaseRecord::with_opaque_to(&self.topic, Box::new((sequence, attempts)))
            .payload(payload)
            .key(key)
            .headers(headers);
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if self.closing.load(Ordering::Relaxed) {
                        return Err(
                            self.error("shutting down with the producer's queue still full")
                        );
                    }
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(self.error(&e.to_string())),
            }
        }
    }

    fn error(&self, reason: &str) -> IngestError {
        IngestError::DeadLetter {
            topic: self.topic.clone(),
            reason: reason.into(),
        }
    }

    /// Sends again the dead letters the broker refused; one refused
    /// [`DEAD_LETTER_ATTEMPTS`] times is an error naming its origin.
    pub fn retry_failed(&self) -> Result<(), IngestError> {
        let failed = self
            .deliveries
            .failed
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        for f in failed {
            if f.attempts + 1 >= DEAD_LETTER_ATTEMPTS {
                let key = f
                    .message
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                return Err(self.error(&format!(
                    "the dead letter of {key} was refused {DEAD_LETTER_ATTEMPTS} times: {}",
                    f.error
                )));
            }
            let headers = f.message.headers().cloned();
            self.produce(
                f.message.payload().unwrap_or(&[]),
                f.message.key().unwrap_or(&[]),
                headers.unwrap_or_else(OwnedHeaders::new),
                Some((f.sequence, f.attempts + 1)),
            )?;
        }
        Ok(())
    }

    /// The sequence number the next dead letter will get: every dead letter queued so far
    /// has a smaller one.
    pub fn next_sequence(&self) -> u64 {
        self.deliveries.next.load(Ordering::SeqCst)
    }

    /// Whether every dead letter with a sequence number below `sequence` is delivered.
    pub fn delivered_below(&self, sequence: u64) -> bool {
        self.deliveries
            .in_flight
            .lock()
            .map(|f| f.first().is_none_or(|s| *s >= sequence))
            .unwrap_or(false)
    }

    /// From now on, a send that finds the queue full fails instead of waiting.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Waits until every queued dead letter is delivered, up to `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), IngestError> {
        self.producer
            .flush(timeout)
            .map_err(|e| self.error(&e.to_string()))?;
        self.retry_failed()?;
        if !self.delivered_below(self.next_sequence()) {
            return Err(self.error("dead letters are still undelivered"));
        }
        Ok(())
    }

    /// Dead letters queued but not yet delivered.
    pub fn in_flight(&self) -> i32 {
        self.producer.in_flight_count()
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
