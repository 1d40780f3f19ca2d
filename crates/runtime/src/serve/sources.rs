//! Source threads: one per (worker, topic) with partitions, each polling its consumer,
//! decoding messages (decoding runs in parallel across sources) and handing batches to the
//! coordinator through a bounded channel. A source also tells when a partition has gone
//! idle (docs/indicators.md: nothing unread for the idle timeout). Rejected messages go to the dead-letter topic from
//! here, with their origin. A full channel blocks the thread: the consumer stops reading.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};
use paceline_decode::{decode_at, latest_occurred_at};
use paceline_ingest::{DeadLetterProducer, Origin, Polled, TopicSource};
use paceline_model::{Event, Stream};

use super::metrics::ServeMetrics;

/// What a source reports to the coordinator.
#[derive(Debug)]
pub enum Item {
    /// A decoded event from a partition.
    Event {
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
        /// The original bytes (for a `too_late` dead letter).
        raw: Box<[u8]>,
        /// The event.
        event: Event,
    },
    /// A message of the partition was rejected while decoding (already dead-lettered).
    Rejected {
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
    /// A message of the partition without a value (a tombstone): skipped, counted.
    Skipped {
        /// The partition.
        partition: i32,
        /// The offset.
        offset: i64,
    },
    /// The partition has had nothing unread for the idle timeout (its position at its
    /// high watermark, checked with the broker): it holds the watermark back no longer,
    /// until its next message.
    Idle {
        /// The partition.
        partition: i32,
    },
}

/// One batch from one source.
#[derive(Debug)]
pub struct Batch {
    /// The worker that owns the source's partitions.
    pub worker: usize,
    /// The stream of the source's topic.
    pub stream: Stream,
    /// When the first message of the batch was consumed.
    pub consumed: Instant,
    /// The items, in consumption order.
    pub items: Vec<Item>,
}

const BATCH_ITEMS: usize = 1024;

/// Counts a rejected message (`paceline_events_total{outcome=rejected}` and
/// `paceline_events_rejected_total{reason}`) and writes it to the dead-letter topic with its
/// origin; an error means the dead letter cannot be written at all.
pub fn reject(
    metrics: &ServeMetrics,
    dead: &DeadLetterProducer,
    raw: &[u8],
    reason: &str,
    detail: &str,
    origin: &Origin,
) -> Result<(), String> {
    let stream = origin.stream.as_str();
    metrics
        .events
        .with_label_values(&[stream, "rejected"])
        .inc();
    metrics.rejected.with_label_values(&[stream, reason]).inc();
    dead.send(raw, reason, detail, origin)
        .map_err(|e| e.to_string())?;
    metrics.dead_letters.with_label_values(&[stream]).inc();
    Ok(())
}

/// Sends `batch` unless `stop` is raised first; false when the run is over.
fn deliver(tx: &Sender<Batch>, mut batch: Batch, stop: &AtomicBool) -> bool {
    loop {
        match tx.send_timeout(batch, Duration::from_millis(100)) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(b)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                batch = b;
            }
            Err(SendTimeoutError::Disconnected(_)) => return false,
        }
    }
}

/// Runs one source until `stop` is raised; returns a fatal error (dead letters that cannot
/// be written) as text.
#[allow(clippy::too_many_arguments)]
pub fn run_source(
    worker: usize,
    source: TopicSource,
    idle_timeout: Duration,
    max_future: paceline_model::Nanos,
    dead: DeadLetterProducer,
    metrics: ServeMetrics,
    tx: Sender<Batch>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let stream = source.stream;
    let mut items: Vec<Item> = Vec::with_capacity(BATCH_ITEMS);
    let mut consumed = Instant::now();
    let mut last_lag = Instant::now();
    let mut last_error: Option<Instant> = None;
    // Per partition: since when the consumer has been at its end, and whether it was
    // reported idle.
    let mut at_end: HashMap<i32, (Instant, bool)> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        paceline_model::failpoint::check("source");
        let mut fatal = None;
        let flush_now = source.poll(Duration::from_millis(50), |polled| match polled {
            Polled::Message {
                partition,
                offset,
                payload,
            } => {
                if items.is_empty() {
                    consumed = Instant::now();
                }
                at_end.remove(&partition);
                match decode_at(payload, Some(stream), latest_occurred_at(max_future)) {
                    Ok(event) => items.push(Item::Event {
                        partition,
                        offset,
                        raw: payload.into(),
                        event,
                    }),
                    Err(rejection) => {
                        let origin = Origin {
                            stream,
                            topic: source.topic.clone(),
                            partition,
                            offset,
                        };
                        let reason = rejection.reason.as_str();
                        if let Err(e) =
                            reject(&metrics, &dead, payload, reason, &rejection.detail, &origin)
                        {
                            fatal = Some(e);
                        }
                        items.push(Item::Rejected { partition, offset });
                    }
                }
                items.len() >= BATCH_ITEMS
            }
            Polled::Tombstone { partition, offset } => {
                // Compaction's deletion marker: skipped and counted, the position moves on.
                metrics
                    .tombstones
                    .with_label_values(&[source.topic.as_str()])
                    .inc();
                at_end.remove(&partition);
                items.push(Item::Skipped { partition, offset });
                items.len() >= BATCH_ITEMS
            }
            Polled::End { partition } => {
                at_end.entry(partition).or_insert((Instant::now(), false));
                true
            }
            Polled::Nothing => true,
            Polled::Error(e) => {
                // librdkafka reconnects by itself; say so once in a while, not per poll.
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(topic = %source.topic, error = %e, "Kafka consumer error");
                    last_error = Some(Instant::now());
                }
                true
            }
        });
        if let Some(e) = fatal {
            return Err(e);
        }
        // Idle: at the end for the idle timeout, and the broker confirms nothing is unread
        // (an end-of-partition notice alone can be stale).
        for (partition, (since, reported)) in at_end.iter_mut() {
            if *reported || since.elapsed() < idle_timeout {
                continue;
            }
            match source.unread(*partition, Duration::from_secs(2)) {
                Some(0) => {
                    tracing::info!(topic = %source.topic, partition = *partition, "partition idle");
                    *reported = true;
                    items.push(Item::Idle {
                        partition: *partition,
                    });
                }
                // Data is unread after all: wait for it.
                Some(_) => *since = Instant::now(),
                None => {}
            }
        }
        if (flush_now || items.iter().any(|i| matches!(i, Item::Idle { .. }))) && !items.is_empty()
        {
            let batch = Batch {
                worker,
                stream,
                consumed,
                items: std::mem::replace(&mut items, Vec::with_capacity(BATCH_ITEMS)),
            };
            if !deliver(&tx, batch, &stop) {
                break;
            }
        }
        if last_lag.elapsed() >= Duration::from_secs(1) {
            for (p, lag) in source.lag() {
                metrics
                    .source_lag
                    .with_label_values(&[source.topic.as_str(), &p.to_string()])
                    .set(lag);
            }
            last_lag = Instant::now();
        }
    }
    if !items.is_empty() {
        // Hand over what was read; the coordinator drains until every source is gone.
        let batch = Batch {
            worker,
            stream,
            consumed,
            items,
        };
        let _ = tx.send_timeout(batch, Duration::from_secs(5));
    }
    Ok(())
}
