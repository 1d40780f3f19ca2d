//! `paceline produce`: publishes JSON Lines events to the three topics, so a district (the
//! generator's, or a team's own export) can be fed to `serve` through Kafka: the compose
//! kit's feeder, backfills, demos on real infrastructure.
//!
//! Each event goes to its stream's topic keyed by its entity (docs/events.md, "Streams and
//! topics"), so one entity's events stay in one partition, in file order. A line whose
//! stream cannot be told goes to the topics in turn: `serve` rejects it there into the dead
//! letters, as it would any producer's bad message.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use paceline_model::Stream;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::settings::{Secrets, Settings};

use crate::progress::Progress;

/// What to publish.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// JSON Lines files, published in this order.
    pub inputs: Vec<PathBuf>,
    /// Events per second at most (none: as fast as the brokers take them).
    pub rate: Option<f64>,
}

/// Publishing failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// An input could not be read.
    #[error("cannot read {path}: {source}")]
    Input {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The producer could not be created or a message not queued.
    #[error("Kafka: {0}")]
    Kafka(#[source] KafkaError),
    /// Messages the brokers did not acknowledge.
    #[error("{0} messages were not acknowledged by the brokers (last error: {1})")]
    Undelivered(u64, String),
}

/// Counts delivery failures reported by librdkafka.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    last_error: std::sync::Mutex<String>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = e.to_string();
            }
        }
    }
}

/// Per topic, the messages published.
#[derive(Debug, Default, Clone)]
pub struct ProduceSummary {
    /// Messages by stream (the topic they went to).
    pub by_stream: [u64; 3],
    /// Of those, lines whose stream could not be told.
    pub unroutable: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// The stream and entity key of a line, by its decoded event; `None` for a line that is not
/// a valid event.
fn route(line: &[u8]) -> Option<(Stream, String)> {
    let event = paceline_decode::decode(line, None).ok()?;
    Some((event.body.stream(), event.body.entity().to_string()))
}

/// Publishes every line of the inputs to its topic; waits until the brokers acknowledged
/// every message.
pub fn produce(
    config: &Settings,
    secrets: &Secrets,
    opts: &ProduceOptions,
) -> Result<ProduceSummary, ProduceError> {
    let started = Instant::now();
    let mut client =
        paceline_ingest::client_config(&config.kafka, secrets.kafka_sasl_password.as_ref());
    // Idempotent, acknowledged by all replicas: the broker drops a retried batch it has
    // already stored and a retry cannot overtake a later batch, so each partition holds
    // the files' events once, in their order.
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "300000");
    let producer: ThreadedProducer<Deliveries> = client
        .create_with_context(Deliveries::default())
        .map_err(ProduceError::Kafka)?;
    let topics = Stream::ALL.map(|s| config.streams.get(s).topic.clone());
    let total = opts
        .inputs
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
        .sum::<Option<u64>>();
    let progress = Progress::for_terminal(total);
    let mut summary = ProduceSummary::default();
    let (mut bytes, mut sent, mut turn) = (0u64, 0u64, 0usize);
    for path in &opts.inputs {
        let input_error = |source| ProduceError::Input {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(input_error)?;
        for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
            let mut line = line.map_err(input_error)?;
            bytes += line.len() as u64 + 1;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                continue;
            }
            let (stream, key) = match route(&line) {
                Some((s, key)) => (s, Some(key)),
                None => {
                    summary.unroutable += 1;
                    turn += 1;
                    (Stream::ALL[(turn - 1) % 3], None)
                }
            };
            send(&producer, &topics[stream.index()], key.as_deref(), &line)?;
            summary.by_stream[stream.index()] += 1;
            sent += 1;
            pace(opts.rate, sent, started);
            if sent % 4096 == 0 {
                progress.update(bytes, sent, None);
            }
        }
    }
    progress.update(bytes, sent, None);
    producer
        .flush(Duration::from_secs(300))
        .map_err(ProduceError::Kafka)?;
    progress.finish();
    let deliveries = producer.context();
    let failed = deliveries.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let last = deliveries
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        return Err(ProduceError::Undelivered(failed, last));
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Queues one message, waiting while librdkafka's queue is full.
fn send(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    key: Option<&str>,
    payload: &[u8],
) -> Result<(), ProduceError> {
    let mut record = BaseRecord::to(topic).payload(payload);
    if let Some(k) = key {
        record = record.key(k);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(ProduceError::Kafka(e)),
        }
    }
}

/// Holds the rate at or under `rate` events per second.
fn pace(rate: Option<f64>, sent: u64, started: Instant) {
    let Some(rate) = rate.filter(|r| *r > 0.0) else {
        return;
    };
    let due = Duration::from_secs_f64(sent as f64 / rate);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }
}
