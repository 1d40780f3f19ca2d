//! The dead-letter topic: rejected events with their reason and origin as headers, cut to
//! fit the topic, each delivery report read.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paceline_model::Stream;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::IngestError;

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
