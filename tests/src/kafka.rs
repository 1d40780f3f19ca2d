//! Kafka helpers for the tests: metadata probe, producing events to the three topics (by
//! type, keyed by entity, bad lines spread over every topic) and reading the dead letters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paceline_model::Stream;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};

/// Whether the brokers answer a metadata request.
pub fn metadata_ok(brokers: &str) -> bool {
    let c: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Emerg)
        .create();
    c.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
}

/// The stream of an event line by its `type` and its entity key; None when it cannot be
/// parsed (the line is then a poison message for any topic).
pub fn route(line: &[u8]) -> Option<(Stream, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let t = v.get("type")?.as_str()?;
    let stream = if t.starts_with("enterprise.") {
        Stream::Filings
    } else if t.starts_with("platform.") {
        Stream::Telemetry
    } else if t.starts_with("scenario.") || t.starts_with("project.") {
        Stream::Scenarios
    } else {
        return None;
    };
    let key = ["enterprise_id", "platform_id", "scenario_id", "project_id"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_string));
    Some((stream, key))
}

/// Produces `lines` to `topics` (indexed by stream): each event to its stream's topic keyed
/// by its entity; a line whose stream cannot be told goes to the topics in turn. Waits
/// until every message is acknowledged.
pub fn produce(brokers: &str, topics: &[String; 3], lines: &[Vec<u8>]) {
    produce_with(brokers, topics, lines, true)
}

/// [`produce`], keyed by entity or not: without keys the partitions fill evenly (the
/// throughput benchmark's broker keeps a bounded log per partition, and a few platforms'
/// telemetry would crowd a few partitions), at the cost of each entity's order.
///
/// Exact: each message is stored once, in the order given per partition, or the test
/// fails here naming why. The producer is idempotent: the broker drops a retried batch it
/// already stored, and a retry cannot land after a later batch. A message refused for good
/// is never sent again (it might have been stored, or a later one might be ahead of it).
pub fn produce_with(brokers: &str, topics: &[String; 3], lines: &[Vec<u8>], keyed: bool) {
    let refused = Arc::new(Mutex::new(Vec::new()));
    let p: ThreadedProducer<Refused> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "120000")
        .create_with_context(Refused(refused.clone()))
        .expect("producer");
    let mut turn = 0usize;
    for line in lines {
        let (topic, key) = match route(line) {
            Some((s, key)) => (&topics[s.index()], key),
            None => {
                turn += 1;
                (&topics[turn % 3], None)
            }
        };
        send(&p, topic, key.as_deref().filter(|_| keyed), line);
    }
    p.flush(Duration::from_secs(120))
        .expect("every message acknowledged");
    let refused = refused.lock().expect("delivery reports");
    if let Some((topic, error)) = refused.first() {
        panic!(
            "produce: the broker refused {} of {} messages for good, first to {topic} ({error})",
            refused.len(),
            lines.len(),
        );
    }
}

/// Queues a message, waiting while the producer's queue is full.
fn send(p: &ThreadedProducer<Refused>, topic: &str, key: Option<&str>, payload: &[u8]) {
    let mut rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(payload);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    loop {
        match p.send(rec) {
            Ok(()) => return,
            Err((_, r)) => {
                rec = r;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// A producer context that keeps the topic of each message whose delivery failed, with
/// the error.
struct Refused(Arc<Mutex<Vec<(String, String)>>>);

impl ClientContext for Refused {}

impl ProducerContext for Refused {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            if let Ok(mut refused) = self.0.lock() {
                refused.push((m.topic().to_string(), e.to_string()));
            }
        }
    }
}

/// One dead letter as read back.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The value (the original bytes).
    pub value: Vec<u8>,
    /// Headers.
    pub headers: BTreeMap<String, String>,
}

/// Reads every message of `topic` (partitions from metadata) until `expected` arrived or
/// `timeout` passed.
pub fn read_all(brokers: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<DeadLetter> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "paceline-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    c.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for i in 0..h.count() {
                    let hd = h.get(i);
                    headers.insert(
                        hd.key.to_string(),
                        String::from_utf8_lossy(hd.value.unwrap_or(&[])).into_owned(),
                    );
                }
            }
            out.push(DeadLetter {
                value: m.payload().unwrap_or(&[]).to_vec(),
                headers,
            });
        }
    }
    out
}

/// The high watermark of partition 0 of `topic`: how many messages it holds.
pub fn high_watermark(brokers: &str, topic: &str) -> i64 {
    high_watermarks(brokers, topic, 1)[0]
}

/// The offsets consumer group `group` committed for partitions `0..partitions` of `topic`
/// (None where nothing was committed).
pub fn committed(brokers: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets");
    (0..partitions)
        .map(|p| {
            got.find_partition(topic, p).and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
        })
        .collect()
}

/// The high watermark of each partition `0..partitions` of `topic`.
pub fn high_watermarks(brokers: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(30))
                .expect("watermarks")
                .1
        })
        .collect()
}

/// Produces one message without a value (a compaction tombstone) with `key` to `topic`.
pub fn produce_tombstone(brokers: &str, topic: &str, key: &str) {
    let p: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .expect("producer");
    let rec: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key);
    p.send(rec).map_err(|(e, _)| e).expect("queued");
    p.flush(Duration::from_secs(60)).expect("acknowledged");
}

/// Creates a consumer with the client settings `serve` builds from `kafka` (and a SASL
/// password): librdkafka checks every property and loads the files they name. Its refusal.
pub fn librdkafka_accepts(
    kafka: &paceline_ingest::config::KafkaConfig,
    sasl_password: Option<&str>,
) -> Result<(), String> {
    let secret = sasl_password.map(|p| paceline_model::secret::Secret::new(p.to_string()));
    let mut config = paceline_ingest::client_config(kafka, secret.as_ref());
    config.set("group.id", "paceline-docs-check");
    config
        .create::<rdkafka::consumer::BaseConsumer>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}
