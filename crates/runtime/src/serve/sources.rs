//! Source threads: one per (worker, topic) with partitions, each polling its consumer,
//! decoding messages (decoding runs in parallel across sources) and handing batches to the
//! coordinator through a bounded channel. A source also tells when a partition has gone
//! idle (docs/indicators.md: nothing unread for the idle timeout). Rejected messages go to the dead-letter topic from
//! here, with their origin. A full channel blocks the thread: the consumer stops reading.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};
use paceline_decode::{decode_at, latest_occurred_at};
use paceline_ingest::{DeadLetterProducer, IngestError, Origin, Polled, Positions, TopicSource};
use paceline_model::{Event, Stream};
use rdkafka::config::ClientConfig;

use super::metrics::ServeMetrics;
use super::supervisor::{Cancel, Fatal, StageContext};
use super::PipelineError;
use paceline_model::config::Config;

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
    /// The partition was added to the topic while the service ran: from now on it holds
    /// the stream's watermark back like any other, until its first event or idleness.
    Assigned {
        /// The partition.
        partition: i32,
    },
    /// The partition has had nothing unread for the idle timeout (its position at its
    /// high watermark, checked with the broker): it holds the watermark back no longer,
    /// until its next message.
    Idle {
        /// The partition.
        partition: i32,
    },
    /// A partition reported idle is idle no longer: the broker shows messages unread, or
    /// cannot be asked (the brokers away, this consumer cut off from them). It holds the
    /// watermark back again until it is idle once more.
    Awake {
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

/// Where this process's sources stand: per (stream, partition), the offset after the last
/// message read (a message read is in memory, on its way through the pipeline). The watch
/// asks the broker where each partition ends and shows the difference as the lag, also
/// while a source waits on a full pipeline and reads nothing.
#[derive(Debug, Clone, Default)]
pub struct ReadPositions(Arc<Mutex<HashMap<(usize, i32), i64>>>);

impl ReadPositions {
    /// The next offset to read in `partition` of `stream`; None before the source of that
    /// partition has started.
    pub fn next(&self, stream: Stream, partition: i32) -> Option<i64> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(&(stream.index(), partition)).copied())
    }

    fn set(&self, stream: Stream, next: impl IntoIterator<Item = (i32, i64)>) {
        if let Ok(mut m) = self.0.lock() {
            for (partition, offset) in next {
                m.insert((stream.index(), partition), offset);
            }
        }
    }

    /// Records the positions after `items`: once per batch, not per message.
    fn read(&self, stream: Stream, items: &[Item]) {
        let mut last: HashMap<i32, i64> = HashMap::new();
        for item in items {
            if let Item::Event {
                partition, offset, ..
            }
            | Item::Rejected { partition, offset }
            | Item::Skipped { partition, offset } = item
            {
                last.insert(*partition, offset + 1);
            }
        }
        self.set(stream, last);
    }
}

/// A batch is handed over at this many items or this many bytes of kept payloads,
/// whichever comes first: with the channel's 16 batches, at most ~16 MiB of payloads wait
/// for the coordinator.
const BATCH_ITEMS: usize = 1024;
/// How often a partition reported idle is confirmed idle with the broker. A backlog that
/// builds behind an idle partition (a broker restart, a cut between this consumer and the
/// brokers) must hold the watermark back before the other partitions' backlogs, read in
/// the meantime, carry it past: the gap is this long at most. Not shorter: each
/// confirmation is a request per partition, and a slow broker asked every second per
/// partition timed out fetches (seen with tansu, when they shared the consumer's
/// connection; they no longer do).
const IDLE_CONFIRM_EVERY: Duration = Duration::from_secs(5);
const BATCH_BYTES: usize = 1 << 20;

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
) -> Result<(), IngestError> {
    let stream = origin.stream.as_str();
    metrics
        .events
        .with_label_values(&[stream, "rejected"])
        .inc();
    metrics.rejected.with_label_values(&[stream, reason]).inc();
    dead.send(raw, reason, detail, origin)?;
    metrics.dead_letters.with_label_values(&[stream]).inc();
    Ok(())
}

/// Starts source threads: the initial ones, and later those of partitions added to a topic
/// while the service runs. Closing it hands back every thread for joining and drops its
/// end of the channel, so that the coordinator sees the sources end.
pub struct Spawner {
    inner: Mutex<SpawnerInner>,
    kafka: ClientConfig,
    config: Config,
    dead: DeadLetterProducer,
    metrics: ServeMetrics,
    read: ReadPositions,
    stop: Cancel,
    fatal: Fatal,
}

struct SpawnerInner {
    tx: Option<Sender<Batch>>,
    threads: Vec<SourceThread>,
}

/// A source thread's result.
pub type SourceThread = JoinHandle<Result<(), PipelineError>>;

impl Spawner {
    /// A spawner handing batches to `tx`; its sources stop on `ctx`'s cancel, and one
    /// failing for good reports on its fatal reporter.
    pub(crate) fn new(
        kafka: ClientConfig,
        config: Config,
        (dead, metrics): (DeadLetterProducer, ServeMetrics),
        tx: Sender<Batch>,
        ctx: &StageContext,
    ) -> Self {
        Spawner {
            inner: Mutex::new(SpawnerInner {
                tx: Some(tx),
                threads: Vec::new(),
            }),
            kafka,
            config,
            dead,
            metrics,
            read: ReadPositions::default(),
            stop: ctx.cancel.clone(),
            fatal: ctx.fatal.clone(),
        }
    }

    /// Where the sources it started stand.
    pub fn read_positions(&self) -> ReadPositions {
        self.read.clone()
    }

    /// Starts the source of `partitions` of `stream` for `worker`, each partition from its
    /// offset in `start` (the beginning where none). `added`: partitions that appeared
    /// while running, announced to the coordinator before anything is read from them.
    /// Nothing happens once the spawner is closed.
    pub fn spawn(
        &self,
        worker: usize,
        stream: Stream,
        partitions: &[i32],
        start: &HashMap<i32, i64>,
        added: bool,
    ) -> Result<(), PipelineError> {
        let mut inner = self
            .inner
            .lock()
            .map_err(|_| PipelineError::Panicked("source spawner".into()))?;
        let Some(tx) = inner.tx.clone() else {
            return Ok(());
        };
        let topic = self.config.streams.get(stream).topic.clone();
        let source = TopicSource::new(&self.kafka, stream, &topic, partitions, start)?;
        if added {
            let batch = Batch {
                worker,
                stream,
                consumed: Instant::now(),
                items: partitions
                    .iter()
                    .map(|p| Item::Assigned { partition: *p })
                    .collect(),
            };
            if !deliver(&tx, batch, &self.stop) {
                return Ok(());
            }
        }
        // Where reading starts counts as read up to there: a resumed partition is behind
        // by what follows its checkpoint's offset, not by the whole partition.
        self.read.set(
            stream,
            partitions
                .iter()
                .filter_map(|p| source.start_offset(*p).map(|o| (*p, o))),
        );
        let settings = SourceSettings {
            worker,
            idle_timeout: Duration::from_secs(self.config.streams.get(stream).idle_timeout_s),
            max_future: self.config.streams.max_future(),
        };
        let links = SourceLinks {
            dead: self.dead.clone(),
            metrics: self.metrics.clone(),
            read: self.read.clone(),
            tx,
            stop: self.stop.clone(),
        };
        let thread = super::spawn_reporting(
            &format!("source-{}-{worker}", stream.as_str()),
            &format!("source {topic}"),
            &self.fatal,
            move || run_source(source, &settings, &links),
        )?;
        inner.threads.push(thread);
        Ok(())
    }

    /// Stops further spawns and hands back every source thread started.
    pub fn close(&self) -> Vec<SourceThread> {
        match self.inner.lock() {
            Ok(mut inner) => {
                inner.tx = None;
                std::mem::take(&mut inner.threads)
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Counts and reports a position retention passed.
fn offset_reset(metrics: &ServeMetrics, topic: &str, partition: i32, (from, to): (i64, i64)) {
    metrics
        .offset_resets
        .with_label_values(&[topic, &partition.to_string()])
        .inc();
    tracing::error!(
        topic,
        partition,
        skipped_from = from,
        skipped_to = to,
        skipped = to - from,
        "position fell out of the topic's retention: offsets {from}..{to} were deleted before they were read"
    );
}

/// Sends `batch` unless `stop` is raised first; false when the run is over.
fn deliver(tx: &Sender<Batch>, mut batch: Batch, stop: &Cancel) -> bool {
    loop {
        match tx.send_timeout(batch, Duration::from_millis(100)) {
            Ok(()) => return true,
            Err(SendTimeoutError::Timeout(b)) => {
                if stop.is_cancelled() {
                    return false;
                }
                batch = b;
            }
            Err(SendTimeoutError::Disconnected(_)) => return false,
        }
    }
}

/// Idleness, as docs/indicators.md defines it: a partition is idle once it has had nothing
/// unread for the idle timeout (at its end that long, and the broker confirms it: an
/// end-of-partition notice alone can be stale), and only while the broker keeps confirming
/// it, asked every [`IDLE_CONFIRM_EVERY`]; `at_end` holds, per partition at its end, since
/// when (once reported: when last confirmed) and whether it was reported idle.
fn check_idleness(
    source: &TopicSource,
    at_end: &mut HashMap<i32, (Instant, bool)>,
    idle_timeout: Duration,
    items: &mut Vec<Item>,
) {
    for (partition, (since, reported)) in at_end.iter_mut() {
        let wait = if *reported {
            IDLE_CONFIRM_EVERY
        } else {
            idle_timeout
        };
        if since.elapsed() < wait {
            continue;
        }
        let partition = *partition;
        match (*reported, source.unread(partition, Duration::from_secs(2))) {
            (false, Some(0)) => {
                tracing::info!(topic = %source.topic, partition, "partition idle");
                (*since, *reported) = (Instant::now(), true);
                items.push(Item::Idle { partition });
            }
            // Data is unread after all: wait for it.
            (false, Some(_)) => *since = Instant::now(),
            (false, None) => {}
            (true, Some(0)) => *since = Instant::now(),
            (true, unread) => {
                tracing::info!(topic = %source.topic, partition, ?unread, "partition no longer idle");
                (*since, *reported) = (Instant::now(), false);
                items.push(Item::Awake { partition });
            }
        }
    }
}

/// What a source is: the worker owning its partitions and its stream's settings.
struct SourceSettings {
    worker: usize,
    idle_timeout: Duration,
    max_future: paceline_model::Nanos,
}

/// What a source hands its results to.
struct SourceLinks {
    dead: DeadLetterProducer,
    metrics: ServeMetrics,
    read: ReadPositions,
    tx: Sender<Batch>,
    stop: Cancel,
}

/// Runs one source until `stop` is raised; fails when dead letters cannot be written.
fn run_source(
    source: TopicSource,
    settings: &SourceSettings,
    links: &SourceLinks,
) -> Result<(), PipelineError> {
    show_reset_counters(&source, &links.metrics);
    let mut run = SourceRun::new(source.stream, settings, links);
    while !links.stop.is_cancelled() {
        paceline_model::failpoint::check("source");
        let flush_now = source.poll(Duration::from_millis(50), |polled| {
            run.take(&source, polled)
        });
        if let Some(e) = run.fatal.take() {
            return Err(e.into());
        }
        run.settle_positions(&source);
        check_idleness(
            &source,
            &mut run.at_end,
            settings.idle_timeout,
            &mut run.items,
        );
        if run.due(flush_now) && !run.hand_over() {
            break;
        }
    }
    run.hand_over_last();
    Ok(())
}

/// Every partition's reset counter exists from the start (at 0), so that rules and
/// dashboards reading it see the series before anything goes wrong.
fn show_reset_counters(source: &TopicSource, metrics: &ServeMetrics) {
    for p in &source.partitions {
        metrics
            .offset_resets
            .with_label_values(&[source.topic.as_str(), &p.to_string()])
            .inc_by(0);
    }
}

/// One source's loop: the batch it gathers and what it knows of each partition.
struct SourceRun<'a> {
    stream: Stream,
    settings: &'a SourceSettings,
    links: &'a SourceLinks,
    items: Vec<Item>,
    batch_bytes: usize,
    /// When the batch's first message was consumed.
    consumed: Instant,
    last_error: Option<Instant>,
    /// Per partition: since when the consumer has been at its end, and whether it was
    /// reported idle.
    at_end: HashMap<i32, (Instant, bool)>,
    positions: Positions,
    /// A dead letter that could not be written: the source stops with it.
    fatal: Option<IngestError>,
}

impl<'a> SourceRun<'a> {
    fn new(stream: Stream, settings: &'a SourceSettings, links: &'a SourceLinks) -> Self {
        SourceRun {
            stream,
            settings,
            links,
            items: Vec::with_capacity(BATCH_ITEMS),
            batch_bytes: 0,
            consumed: Instant::now(),
            last_error: None,
            at_end: HashMap::new(),
            positions: Positions::default(),
            fatal: None,
        }
    }

    /// Takes what one poll gave; true when the batch should be handed over now.
    fn take(&mut self, source: &TopicSource, polled: Polled<'_>) -> bool {
        match polled {
            Polled::Message {
                partition,
                offset,
                payload,
            } => self.message(source, partition, offset, payload),
            Polled::Tombstone { partition, offset } => {
                // Compaction's deletion marker: skipped and counted, the position moves on.
                self.links
                    .metrics
                    .tombstones
                    .with_label_values(&[source.topic.as_str()])
                    .inc();
                self.at_end.remove(&partition);
                self.positions.skip(partition, offset);
                self.items.push(Item::Skipped { partition, offset });
                self.items.len() >= BATCH_ITEMS
            }
            Polled::End { partition } => {
                self.at_end
                    .entry(partition)
                    .or_insert((Instant::now(), false));
                true
            }
            Polled::Nothing => true,
            Polled::Error(e) => {
                self.consumer_error(source, &e);
                true
            }
        }
    }

    /// A message: decoded into the batch, or rejected (counted, dead-lettered, and its
    /// position kept in the batch so that the offsets stay contiguous).
    fn message(
        &mut self,
        source: &TopicSource,
        partition: i32,
        offset: i64,
        payload: &[u8],
    ) -> bool {
        if self.items.is_empty() {
            self.consumed = Instant::now();
        }
        self.at_end.remove(&partition);
        self.positions
            .read(partition, offset, source.start_offset(partition));
        let stream = self.stream;
        let latest = latest_occurred_at(self.settings.max_future);
        match decode_at(payload, Some(stream), latest) {
            Ok(event) => {
                self.batch_bytes += payload.len();
                self.items.push(Item::Event {
                    partition,
                    offset,
                    raw: payload.into(),
                    event,
                })
            }
            Err(rejection) => {
                let origin = Origin {
                    stream,
                    topic: source.topic.clone(),
                    partition,
                    offset,
                };
                let reason = rejection.reason.as_str();
                let SourceLinks { metrics, dead, .. } = self.links;
                if let Err(e) = reject(metrics, dead, payload, reason, &rejection.detail, &origin) {
                    self.fatal = Some(e);
                }
                self.items.push(Item::Rejected { partition, offset });
            }
        }
        self.items.len() >= BATCH_ITEMS || self.batch_bytes >= BATCH_BYTES
    }

    fn consumer_error(&mut self, source: &TopicSource, e: &str) {
        if e.contains("out of range") || e.contains("AutoOffsetReset") {
            self.positions.forget_lows();
        }
        // librdkafka reconnects by itself; say so once in a while, not per poll.
        if self
            .last_error
            .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
        {
            tracing::warn!(topic = %source.topic, error = %e, "Kafka consumer error");
            self.last_error = Some(Instant::now());
        }
    }

    /// Positions that retention passed are counted and reported.
    fn settle_positions(&mut self, source: &TopicSource) {
        let resets = self.positions.settle(Instant::now(), |partition| {
            source.low_watermark(partition, Duration::from_secs(2))
        });
        for (partition, skipped) in resets {
            offset_reset(&self.links.metrics, &source.topic, partition, skipped);
        }
    }

    /// The batch goes now: the poll said so, or a partition went idle or woke (news the
    /// watermark waits for), and there is something to hand over.
    fn due(&self, flush_now: bool) -> bool {
        let news = self
            .items
            .iter()
            .any(|i| matches!(i, Item::Idle { .. } | Item::Awake { .. }));
        (flush_now || news) && !self.items.is_empty()
    }

    fn batch(&mut self) -> Batch {
        self.links.read.read(self.stream, &self.items);
        self.batch_bytes = 0;
        Batch {
            worker: self.settings.worker,
            stream: self.stream,
            consumed: self.consumed,
            items: std::mem::replace(&mut self.items, Vec::with_capacity(BATCH_ITEMS)),
        }
    }

    /// Hands the batch to the coordinator, waiting while it is full; false once the run is
    /// over.
    fn hand_over(&mut self) -> bool {
        let batch = self.batch();
        deliver(&self.links.tx, batch, &self.links.stop)
    }

    /// Hands over what was read at the stop; the coordinator drains until every source is
    /// gone.
    fn hand_over_last(&mut self) {
        if !self.items.is_empty() {
            let batch = self.batch();
            let _ = self.links.tx.send_timeout(batch, Duration::from_secs(5));
        }
    }
}
