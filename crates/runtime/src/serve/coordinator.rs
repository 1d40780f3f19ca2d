//! The coordinator: admission and watermarks for the whole process, and the epochs that
//! feed the dataflow.
//!
//! Sources decode in parallel; admission (duplicates, `too_late`) needs one view per
//! stream, so it happens here, in arrival order. Per partition it keeps the greatest
//! accepted `occurred_at` and whether its source reported it idle (nothing unread for the
//! idle timeout); a stream's watermark is the minimum over active partitions, or, when all are
//! idle, the wall clock (or, configured off, the greatest of its partitions), never moving
//! back (docs/indicators.md, "Ticks and watermarks"). Events go to the worker that owns their
//! partition; an epoch is sent when `epoch_events` are pending or `epoch_linger` passed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use paceline_dataflow::cluster::Placement;
use paceline_dataflow::{Runner, RunnerStats, WatermarkReport};
use paceline_decode::{Admission, PartitionState, Rejection, WatermarkRule};
use paceline_ingest::DeadLetterProducer;
use paceline_model::config::Config;
use paceline_model::{Event, Nanos, Stream};

use super::checkpoint::{Checkpoint, Compatibility, CoordinatorState, Pending};
use super::commit::CommitProgress;
use super::metrics::ServeMetrics;
use super::sources::{reject, Batch, Item};
use super::status::SourceStatus;
use super::PipelineError;
use crate::admit::{admit, AdmissionSink};
use crate::settings::Settings;

/// When each epoch was sent and when its oldest event was consumed, for the latency
/// metrics the sink observes on acknowledgement.
#[derive(Debug, Default)]
pub struct EpochLog {
    entries: Mutex<BTreeMap<u64, (Instant, Option<Instant>)>>,
}

impl EpochLog {
    fn record(&self, epoch: u64, sent: Instant, consumed: Option<Instant>) {
        if let Ok(mut e) = self.entries.lock() {
            // A cluster gives an epoch's input in several sends: the first one counts.
            e.entry(epoch).or_insert((sent, consumed));
            // Epochs that produced no points are never acknowledged: keep the log bounded.
            while e.len() > 100_000 {
                e.pop_first();
            }
        }
    }

    /// Takes the entry of `epoch` (once) and forgets older ones.
    pub fn take(&self, epoch: u64) -> Option<(Instant, Option<Instant>)> {
        let mut e = self.entries.lock().ok()?;
        let found = e.remove(&epoch);
        while e.first_key_value().is_some_and(|(k, _)| *k < epoch) {
            e.pop_first();
        }
        found
    }
}

/// Now, as the pipeline reads it: the system's clock without its jumps
/// ([`paceline_model::clock`]).
fn wall_clock_ns() -> Nanos {
    paceline_model::clock::now()
}

/// The dataflow's counters already added to the Prometheus counters.
#[derive(Debug, Default)]
struct Published {
    corrections: [u64; 3],
    unrepresentable: u64,
    clock_jumps: u64,
}

impl Published {
    /// Adds what the dataflow counted since the last call, and shows its watermarks.
    fn publish(&mut self, metrics: &ServeMetrics, stats: &RunnerStats) {
        for s in Stream::ALL {
            // Where every worker closed its ticks: a reader of the metric (a test draining
            // the output, an operator) may take every point before it as written.
            if let Some(w) = stats.closed_through(s) {
                metrics
                    .cluster_watermark
                    .with_label_values(&[s.as_str()])
                    .set(w as f64 / 1e9);
            }
        }
        for s in Stream::ALL {
            let c = stats.corrections[s.index()].load(Ordering::Relaxed);
            let new = c.saturating_sub(self.corrections[s.index()]);
            if new > 0 {
                metrics
                    .corrections
                    .with_label_values(&[s.as_str()])
                    .inc_by(new);
                self.corrections[s.index()] = c;
            }
        }
        let jumps = paceline_model::clock::jumps();
        if jumps > self.clock_jumps {
            let days = paceline_model::clock::last_jump() as f64 / 86_400e9;
            tracing::warn!(
                jump_days = days,
                "the system's clock jumped; not followed: time goes on with the monotonic clock (restart to take the system's clock as it is)"
            );
            metrics.clock_jumps.inc_by(jumps - self.clock_jumps);
            self.clock_jumps = jumps;
        }
        let u = stats.unrepresentable.load(Ordering::Relaxed);
        metrics
            .unrepresentable
            .inc_by(u.saturating_sub(self.unrepresentable));
        self.unrepresentable = self.unrepresentable.max(u);
    }
}

/// Admission, partition progress, watermarks and positions: the coordinator's state, all
/// of which a checkpoint keeps.
struct Progress {
    admission: Admission,
    parts: [HashMap<i32, PartitionState>; 3],
    marks: [Option<Nanos>; 3],
    /// Next offset to read per partition, of the items taken so far.
    offsets: [HashMap<i32, i64>; 3],
}

impl Progress {
    fn new(
        config: &Config,
        partitions: &[Vec<i32>; 3],
        restored: Option<CoordinatorState>,
    ) -> Self {
        let mut p = Progress {
            admission: Admission::with_external_watermarks(&config.streams),
            parts: Stream::ALL.map(|s| {
                partitions[s.index()]
                    .iter()
                    .map(|p| (*p, PartitionState::default()))
                    .collect()
            }),
            marks: [None; 3],
            offsets: Default::default(),
        };
        if let Some(r) = restored {
            p.admission.restore(r.admission);
            for s in Stream::ALL {
                let i = s.index();
                // Every partition starts active, whatever it was at the checkpoint: messages
                // may have come while the service was down, and a partition with a backlog
                // is never idle. Its source reports it idle again once it is.
                p.parts[i].extend(
                    r.partitions[i]
                        .iter()
                        .map(|(k, st)| (*k, PartitionState { idle: false, ..*st })),
                );
                p.offsets[i].extend(r.offsets[i].iter().copied());
            }
            p.marks = r.marks;
            for s in Stream::ALL {
                if let Some(w) = p.marks[s.index()] {
                    p.admission.set_watermark(s, w);
                }
            }
        }
        p
    }

    /// Shows the watermarks it starts from (a restored state's) in the metrics.
    fn publish_watermarks(&self, status: &SourceStatus) {
        for s in Stream::ALL {
            if let Some(w) = self.marks[s.index()] {
                status.set_watermark(s, w);
            }
        }
    }

    fn state(&self) -> CoordinatorState {
        fn sorted<V: Copy>(m: &HashMap<i32, V>) -> Vec<(i32, V)> {
            let mut v: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect();
            v.sort_by_key(|(k, _)| *k);
            v
        }
        CoordinatorState {
            admission: self.admission.snapshot(),
            partitions: self.parts.each_ref().map(sorted),
            marks: self.marks,
            offsets: self.offsets.each_ref().map(sorted),
        }
    }

    /// A message of the partition was taken: it is active, and its position is past it.
    fn read(&mut self, stream: Stream, partition: i32, offset: i64) {
        let i = stream.index();
        self.offsets[i].insert(partition, offset + 1);
        self.parts[i].entry(partition).or_default().idle = false;
    }

    /// Moves each stream's watermark over this process's partitions forward where they
    /// allow (never back); true when one moved. `cluster`: the dataflow's watermarks over
    /// every process, which judge `too_late` when behind this process's own.
    fn advance_watermarks(
        &mut self,
        rules: &[WatermarkRule; 3],
        status: &SourceStatus,
        cluster: Option<&RunnerStats>,
    ) -> bool {
        let wall = wall_clock_ns();
        let mut changed = false;
        for s in Stream::ALL {
            let states: Vec<PartitionState> = self.parts[s.index()].values().copied().collect();
            if let Some(w) = rules[s.index()].advance(self.marks[s.index()], &states, wall) {
                self.marks[s.index()] = Some(w);
                status.set_watermark(s, w);
                changed = true;
            }
            let Some(own) = self.marks[s.index()] else {
                continue;
            };
            match cluster {
                None => self.admission.set_watermark(s, own),
                // An event is too late only once the whole cluster's watermark passed it:
                // another process may still be behind this one.
                Some(stats) => {
                    if let Some(all) = stats.watermark(s) {
                        self.admission.set_watermark(s, own.min(all));
                    }
                }
            }
        }
        changed
    }

    /// Each stream's report from this process (`source`) for every stream it reads: its
    /// watermark (none yet holds the stream's back) and whether all its partitions of the
    /// stream are idle.
    fn reports(&self, source: u32) -> Vec<WatermarkReport> {
        Stream::ALL
            .iter()
            .filter(|s| !self.parts[s.index()].is_empty())
            .map(|&s| WatermarkReport {
                source,
                stream: s,
                watermark: self.marks[s.index()],
                earliest: self.admission.min_accepted(s),
                end_of_input: None,
                idle: self.parts[s.index()].values().all(|p| p.idle),
            })
            .collect()
    }
}

/// Where the coordinator's snapshots go, and when.
pub struct CheckpointFeed {
    /// To the checkpoint writer.
    pub tx: Sender<Pending>,
    /// `service.checkpoint_interval_s`.
    pub interval: Duration,
    /// The next checkpoint's sequence number.
    pub next_sequence: u64,
    /// The settings the state depends on.
    pub compatibility: Compatibility,
    /// What the output has had acknowledged; whether the writer is still busy.
    pub progress: CommitProgress,
}

/// The coordinator's inputs and outputs.
pub struct Coordinator {
    /// Configuration.
    pub config: Settings,
    /// Partitions of each stream.
    pub partitions: [Vec<i32>; 3],
    /// Batches from the sources.
    pub input: Receiver<Batch>,
    /// The dataflow.
    pub runner: Runner,
    /// Metrics.
    pub metrics: ServeMetrics,
    /// Epoch timings.
    pub epochs: Arc<EpochLog>,
    /// For `too_late` dead letters.
    pub dead: DeadLetterProducer,
    /// The state to start from (None: the beginning).
    pub restored: Option<CoordinatorState>,
    /// Checkpoints.
    pub checkpoints: CheckpointFeed,
    /// Where this process's workers are in the cluster.
    pub placement: Placement,
    /// Where the watermarks are shown.
    pub status: Arc<SourceStatus>,
}

impl Coordinator {
    /// Runs until every source has gone: alone, it then sends the last epoch, takes the
    /// final snapshot and waits for the dataflow to drain; in a cluster it just stops.
    pub fn run(self) -> Result<(), PipelineError> {
        if self.placement.processes > 1 {
            self.run_in_cluster()
        } else {
            self.run_alone()
        }
    }

    fn run_alone(mut self) -> Result<(), PipelineError> {
        let mut run = Run::new(&mut self);
        let Coordinator {
            config,
            input,
            runner,
            metrics,
            epochs,
            mut checkpoints,
            ..
        } = self;
        let epoch_events = config.dataflow.epoch_events.max(1);
        let mut last_checkpoint = Instant::now();
        loop {
            let done = run.receive(&input, run.linger, &config, &metrics)?;
            let checkpoint_due = last_checkpoint.elapsed() >= checkpoints.interval
                && !checkpoints.progress.writing();
            if !(run.next.due(epoch_events, run.linger) || checkpoint_due || done) {
                continue;
            }
            let moved = run
                .progress
                .advance_watermarks(&run.rules, &run.status, None);
            // Watermarks alone make an epoch too: ticks close on them.
            if run.next.count > 0 || moved || checkpoint_due || done {
                run.next
                    .send(&runner, run.progress.reports(0), &epochs, None)?;
            }
            // Every linger, not only after a send: the workers count corrections after
            // an epoch is handed over, and input may stop right after it (a quiet stream,
            // a checkpoint held back by a stuck sink): the counters must still catch up.
            run.published.publish(&metrics, &runner.stats);
            run.next.lingered_from = Instant::now();
            // The final snapshot once the sources are gone: a graceful stop checkpoints.
            if checkpoint_due || done {
                let sequence = checkpoints.next_sequence;
                take_checkpoint(&runner, &run.progress, &mut checkpoints, &metrics, sequence)?;
                checkpoints.next_sequence += 1;
                last_checkpoint = Instant::now();
            }
            if done {
                break;
            }
        }
        let stats = runner.finish()?;
        run.published.publish(&metrics, &stats);
        Ok(())
    }

    /// A cluster's processes number epochs by the clock (one per `service.epoch_linger_ms`
    /// since the Unix epoch), so that they advance together whatever each one reads, and
    /// checkpoint at the same epochs (every `service.checkpoint_interval_s`): a checkpoint
    /// is the state before its epoch on every process, and its sequence is that epoch.
    fn run_in_cluster(mut self) -> Result<(), PipelineError> {
        let mut run = Run::new(&mut self);
        let Coordinator {
            config,
            input,
            runner,
            metrics,
            epochs,
            mut checkpoints,
            placement,
            ..
        } = self;
        let source = placement.process as u32;
        let epoch_events = config.dataflow.epoch_events.max(1);
        let linger_ms = config.service.epoch_linger_ms.max(1);
        let period = (checkpoints.interval.as_millis() as u64 / linger_ms).max(1);
        let now = || (wall_clock_ns() / 1_000_000) as u64 / linger_ms;
        // Every process's first reports are given at epoch 0, so that each stream's
        // watermark waits for every process that reads it from the start. Starting from
        // the boundary below the clock, the processes' first boundary is the same one.
        let mut current = now() / period * period;
        run.next.send(
            &runner,
            run.progress.reports(source),
            &epochs,
            Some(current),
        )?;
        let poll = Duration::from_millis((linger_ms / 4).max(1));
        loop {
            if run.receive(&input, poll, &config, &metrics)? {
                break;
            }
            let slot = now();
            let boundary = next_boundary(current, period);
            // Every process takes every boundary, in order: one still writing its previous
            // checkpoint holds its epochs below the next boundary until the write is done
            // (its events still flow, within the current epoch). Since no process's
            // snapshot at a boundary completes before every process's input reached it,
            // a process holding checkpoint N means every other one has written N - period:
            // the newest checkpoints kept always include one every process holds.
            let held = slot >= boundary && checkpoints.progress.writing();
            if slot <= current || held {
                if run.next.count >= epoch_events {
                    run.next.send(&runner, Vec::new(), &epochs, Some(current))?;
                }
                continue;
            }
            run.progress
                .advance_watermarks(&run.rules, &run.status, Some(&runner.stats));
            if slot >= boundary {
                run.next.send(
                    &runner,
                    run.progress.reports(source),
                    &epochs,
                    Some(boundary),
                )?;
                current = boundary;
                take_checkpoint(&runner, &run.progress, &mut checkpoints, &metrics, boundary)?;
            }
            // Up to the slot, never past the next boundary: that one is taken first.
            let reach = slot.min(next_boundary(current, period) - 1);
            if reach > current {
                run.next
                    .send(&runner, run.progress.reports(source), &epochs, Some(reach))?;
                current = reach;
            }
            run.published.publish(&metrics, &runner.stats);
        }
        // No last epoch and no final checkpoint: the other processes could not align with
        // them. The cluster resumes from its last complete checkpoint.
        runner.leave_to_exit();
        Ok(())
    }
}

/// The first checkpoint boundary (a multiple of `period` epochs) after epoch `current`.
fn next_boundary(current: u64, period: u64) -> u64 {
    (current / period + 1) * period
}

/// What both ways of running keep between batches.
struct Run {
    progress: Progress,
    rules: [WatermarkRule; 3],
    next: NextEpoch,
    published: Published,
    linger: Duration,
    dead: DeadLetterProducer,
    status: Arc<SourceStatus>,
}

impl Run {
    /// Takes the restored state out of `c` (a checkpoint's can be large: not copied).
    fn new(c: &mut Coordinator) -> Run {
        let progress = Progress::new(&c.config, &c.partitions, c.restored.take());
        progress.publish_watermarks(&c.status);
        Run {
            progress,
            rules: watermark_rules(&c.config),
            next: NextEpoch::new(c.runner.workers()),
            published: Published::default(),
            linger: Duration::from_millis(c.config.service.epoch_linger_ms),
            dead: c.dead.clone(),
            status: c.status.clone(),
        }
    }

    /// Takes the next batch (waiting at most `wait`) into the epoch; true once every
    /// source has gone.
    fn receive(
        &mut self,
        input: &Receiver<Batch>,
        wait: Duration,
        config: &Config,
        metrics: &ServeMetrics,
    ) -> Result<bool, PipelineError> {
        match input.recv_timeout(wait) {
            Ok(batch) => {
                paceline_model::failpoint::check("coordinator");
                let (worker, consumed) = (batch.worker, batch.consumed);
                let events = take_batch(batch, &mut self.progress, config, metrics, &self.dead)?;
                self.next.add(worker, events, consumed);
                Ok(false)
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Err(RecvTimeoutError::Disconnected) => Ok(true),
        }
    }
}

/// Each stream's watermark rule from the configuration.
fn watermark_rules(config: &Settings) -> [WatermarkRule; 3] {
    Stream::ALL.map(|s| WatermarkRule {
        out_of_orderness: config.streams.get(s).out_of_orderness(),
        follows_clock: config.service.idle_watermark_follows_clock,
    })
}

/// The epoch being gathered: accepted events per worker, and since when.
struct NextEpoch {
    /// The workers' current input epoch: what is sent next is given at it.
    time: u64,
    events: Vec<Vec<Event>>,
    count: usize,
    /// When the oldest event in it was consumed (for the end-to-end latency).
    oldest: Option<Instant>,
    /// Since when the epoch has been gathering (the linger runs from here).
    lingered_from: Instant,
}

impl NextEpoch {
    fn new(workers: usize) -> Self {
        NextEpoch {
            time: 0,
            events: vec![Vec::new(); workers.max(1)],
            count: 0,
            oldest: None,
            lingered_from: Instant::now(),
        }
    }

    /// Events read by the source of `worker` (a cluster index: this process's workers are
    /// consecutive, so it is the local index modulo the workers), consumed from `consumed`.
    fn add(&mut self, worker: usize, events: Vec<Event>, consumed: Instant) {
        if events.is_empty() {
            return;
        }
        self.oldest.get_or_insert(consumed);
        self.count += events.len();
        let workers = self.events.len();
        self.events[worker % workers].extend(events);
    }

    /// Full, or lingered long enough.
    fn due(&self, epoch_events: usize, linger: Duration) -> bool {
        self.count >= epoch_events || self.lingered_from.elapsed() >= linger
    }

    /// Hands what was gathered to the dataflow with the watermark reports, the inputs
    /// then moved to `advance_to` (None: the next epoch).
    fn send(
        &mut self,
        runner: &Runner,
        reports: Vec<WatermarkReport>,
        epochs: &EpochLog,
        advance_to: Option<u64>,
    ) -> Result<(), PipelineError> {
        epochs.record(self.time, Instant::now(), self.oldest.take());
        runner.send_all_to(&mut self.events, reports, advance_to)?;
        self.time = advance_to.unwrap_or(self.time + 1).max(self.time);
        self.count = 0;
        Ok(())
    }
}

/// Admits one batch's items in order; returns the accepted events. A `too_late` event is
/// dead-lettered here, with its origin.
fn take_batch(
    batch: Batch,
    progress: &mut Progress,
    config: &Config,
    metrics: &ServeMetrics,
    dead: &DeadLetterProducer,
) -> Result<Vec<Event>, PipelineError> {
    let Batch { stream, items, .. } = batch;
    let mut accepted = Vec::new();
    let mut sink = ServeRejections {
        metrics,
        dead,
        topic: &config.streams.get(stream).topic,
    };
    for item in items {
        match item {
            Item::Event {
                partition,
                offset,
                raw,
                event,
            } => {
                progress.read(stream, partition, offset);
                let origin = (stream, partition, offset);
                if let Some(event) =
                    admit(&mut progress.admission, Ok(event), &origin, &raw, &mut sink)?
                {
                    let st = progress.parts[stream.index()].entry(partition).or_default();
                    st.max_at = Some(st.max_at.map_or(event.at, |m| m.max(event.at)));
                    accepted.push(event);
                }
            }
            Item::Rejected { partition, offset } | Item::Skipped { partition, offset } => {
                progress.read(stream, partition, offset);
            }
            Item::Assigned { partition } => {
                progress.parts[stream.index()].entry(partition).or_default();
            }
            Item::Awake { partition } => {
                progress.parts[stream.index()]
                    .entry(partition)
                    .or_default()
                    .idle = false;
            }
            Item::Idle { partition } => {
                progress.parts[stream.index()]
                    .entry(partition)
                    .or_default()
                    .idle = true;
            }
        }
    }
    if !accepted.is_empty() {
        metrics.event_read(stream);
    }
    Ok(accepted)
}

/// Serve's outcomes: the events metrics, rejected events to the dead-letter topic with
/// their topic, partition and offset.
struct ServeRejections<'a> {
    metrics: &'a ServeMetrics,
    dead: &'a DeadLetterProducer,
    topic: &'a str,
}

impl ServeRejections<'_> {
    fn count(&self, stream: Stream, outcome: &str) {
        self.metrics
            .events
            .with_label_values(&[stream.as_str(), outcome])
            .inc();
    }
}

impl AdmissionSink for ServeRejections<'_> {
    /// Stream, partition, offset.
    type Origin = (Stream, i32, i64);
    type Error = paceline_ingest::IngestError;

    fn accepted(&mut self, stream: Stream) {
        self.count(stream, "accepted");
    }

    fn duplicate(&mut self, stream: Stream) {
        self.count(stream, "duplicate");
    }

    fn rejected(
        &mut self,
        rejection: &Rejection,
        &(stream, partition, offset): &(Stream, i32, i64),
        raw: &[u8],
    ) -> Result<(), Self::Error> {
        tracing::debug!(
            stream = stream.as_str(),
            partition,
            offset,
            reason = rejection.reason.as_str(),
            "rejected at admission"
        );
        let origin = paceline_ingest::Origin {
            stream,
            topic: self.topic.to_string(),
            partition,
            offset,
        };
        reject(
            self.metrics,
            self.dead,
            raw,
            rejection.reason.as_str(),
            &rejection.detail,
            &origin,
        )
    }
}

/// Takes an aligned snapshot of the dataflow with the coordinator's state and hands it to
/// the writer, which writes it once everything before it is acknowledged.
fn take_checkpoint(
    runner: &Runner,
    progress: &Progress,
    feed: &mut CheckpointFeed,
    metrics: &ServeMetrics,
    sequence: u64,
) -> Result<(), PipelineError> {
    let started = Instant::now();
    let workers = runner.snapshot()?;
    // Every point of the epochs sent so far has been handed to the sink by now.
    let mark = feed.progress.mark();
    metrics.set_entities(runner.stats.entity_counts());
    let checkpoint = Checkpoint {
        compatibility: feed.compatibility.clone(),
        sequence,
        taken_ms: (wall_clock_ns() / 1_000_000) as u64,
        coordinator: progress.state(),
        workers,
        board: Vec::new(),
    };
    feed.progress.set_writing(true);
    let pending = Pending {
        checkpoint,
        mark,
        snapshot_time: started.elapsed(),
    };
    feed.tx.send(pending).map_err(|_| PipelineError::WriterGone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_log_hands_out_each_epoch_once() {
        let log = EpochLog::default();
        let t = Instant::now();
        log.record(1, t, None);
        log.record(2, t, Some(t));
        log.record(3, t, None);
        assert!(log.take(2).is_some());
        assert!(log.take(2).is_none());
        assert!(log.take(1).is_none(), "older epochs are forgotten");
        assert!(log.take(3).is_some());
    }
}
