//! The running pipeline of `serve`: started stage by stage in the order data flows, and
//! shut down in the same order (stop reading, drain the coordinator and the dataflow,
//! flush the sink and the dead letters, write the final checkpoint), each step bounded by
//! `service.shutdown_timeout_s`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use paceline_dataflow::cluster::{Connected, Placement};
use paceline_dataflow::{DataflowSettings, PointsOut, Runner};
use paceline_ingest::{
    assign_stable, partition_owner, DeadLetterProducer, OffsetCommitter, TopicWatch,
};
use paceline_model::point::Point;
use paceline_model::Stream;
use paceline_sink::batcher::{self, BatchSettings, SinkStopped};
use paceline_sink::influx::InfluxWriter;
use rdkafka::config::ClientConfig;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle as TaskHandle;

use super::checkpoint::{Checkpoint, Compatibility, Pending, Store, Writer};
use super::commit::CommitProgress;
use super::coordinator::{CheckpointFeed, Coordinator, EpochLog};
use super::sources::{Batch, Spawner};
use super::status::SourceStatus;
use super::watch::Watch;
use super::{
    join_thread, on_ack, rewrite_until, spawn_reporting, Observed, PipelineError, ServeError,
    ServeReport,
};
use crate::board::Freshness;
use crate::settings::Settings;

type PointsRx = tokio::sync::mpsc::Receiver<(u64, Vec<Point>)>;
type SinkResult = Result<Result<u64, SinkStopped>, tokio::task::JoinError>;

/// Every running part, kept for the shutdown.
pub(super) struct Pipeline {
    stop: Arc<AtomicBool>,
    spawner: Arc<Spawner>,
    coordinator: JoinHandle<Result<(), PipelineError>>,
    sink: TaskHandle<Result<u64, SinkStopped>>,
    sink_result: Option<SinkResult>,
    dead: DeadLetterProducer,
    progress: CommitProgress,
    checkpoints: JoinHandle<Result<(), PipelineError>>,
    lag: TaskHandle<()>,
    watch: JoinHandle<()>,
    fatal: UnboundedReceiver<ServeError>,
    pending: prometheus::IntGauge,
    /// One process of several: it stops alone, without the final epoch and checkpoint.
    in_cluster: bool,
}

/// What the dataflow hands on: the runner and the points for the sink.
struct Dataflow {
    runner: Runner,
    points: PointsRx,
}

/// The checkpoint writer's handles.
struct CheckpointWriter {
    thread: JoinHandle<Result<(), PipelineError>>,
    tx: crossbeam_channel::Sender<Pending>,
}

impl Pipeline {
    /// Starts every stage on `partitions` (of this process's workers, in `cluster` when
    /// given), from `restored` when given.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start(
        config: &Settings,
        kafka: &ClientConfig,
        store: Store,
        restored: Option<Checkpoint>,
        partitions: [Vec<i32>; 3],
        observed: &Observed,
        writer: InfluxWriter,
        cluster: Option<Connected>,
    ) -> Result<Pipeline, ServeError> {
        let placement = cluster
            .as_ref()
            .map_or(Placement::single(config.dataflow.workers), |c| c.placement);
        let (restored_workers, restored_coordinator, restored_next) = match restored {
            Some(c) => (Some(c.workers), Some(c.coordinator), c.sequence + 1),
            None => (None, None, 1),
        };
        // Above every file present (one restored from, invalid ones skipped): a new
        // checkpoint numbered below them would be the first the retention removes.
        let next_sequence =
            restored_next.max(store.next_sequence().map_err(|e| PipelineError::from(e))?);
        let dead = DeadLetterProducer::new(
            kafka,
            &config.kafka.dead_letter_topic,
            config.kafka.dead_letter_max_bytes,
        )?;
        let progress = CommitProgress::new(Arc::new(dead.clone()));
        let dataflow = start_dataflow(config, restored_workers, observed, cluster, &progress)?;
        let stop = Arc::new(AtomicBool::new(false));
        // A part failing for good stops the service.
        let (fatal_tx, fatal) = tokio::sync::mpsc::unbounded_channel::<ServeError>();
        let (batch_tx, batch_rx) = crossbeam_channel::bounded::<Batch>(16);
        let spawner = Arc::new(Spawner::new(
            kafka.clone(),
            config.pipeline.clone(),
            (dead.clone(), observed.metrics.clone()),
            batch_tx,
            stop.clone(),
            fatal_tx.clone(),
        ));
        let start_offsets = restored_coordinator
            .as_ref()
            .map(|c| c.offsets.each_ref().map(|o| o.iter().copied().collect()))
            .unwrap_or_default();
        let own = start_sources(&spawner, &partitions, placement, &start_offsets)?;
        observed
            .state
            .sources_assigned
            .store(true, Ordering::Relaxed);
        tracing::info!(
            partitions = ?own,
            workers = placement.workers,
            process = placement.process,
            processes = placement.processes,
            "sources assigned"
        );
        let known = Arc::new(Mutex::new(partitions.clone()));
        let status = Arc::new(SourceStatus::new(
            Stream::ALL.map(|s| config.streams.get(s).topic.clone()),
            observed.metrics.clone(),
        ));
        let watch = start_watch(
            kafka,
            (observed, &status),
            &known,
            &spawner,
            (config, placement),
            (&stop, &fatal_tx),
        )?;
        let ckpt = start_checkpoint_writer(config, kafka, store, &progress, observed, &fatal_tx)?;
        let epochs = Arc::new(EpochLog::default());
        let coordinator = Coordinator {
            config: config.clone(),
            partitions: own,
            input: batch_rx,
            runner: dataflow.runner,
            metrics: observed.metrics.clone(),
            epochs: epochs.clone(),
            dead: dead.clone(),
            restored: restored_coordinator,
            checkpoints: CheckpointFeed {
                tx: ckpt.tx,
                interval: Duration::from_secs(config.service.checkpoint_interval_s),
                next_sequence,
                compatibility: Compatibility::of(config, placement.process, placement.processes),
                progress: progress.clone(),
            },
            placement,
            status: status.clone(),
        };
        let coordinator = spawn_reporting("coordinator", "coordinator", &fatal_tx, move || {
            coordinator.run()
        })?;
        let sink = start_sink(
            config,
            writer,
            dataflow.points,
            observed,
            epochs,
            progress.clone(),
        );
        let lag = start_lag_task(observed, status, known, placement);
        Ok(Pipeline {
            stop,
            spawner,
            coordinator,
            sink,
            sink_result: None,
            dead,
            progress,
            checkpoints: ckpt.thread,
            lag,
            watch,
            fatal,
            pending: observed.state.sink_pending.clone(),
            in_cluster: placement.processes > 1,
        })
    }

    /// Runs until `shutdown`, the sink stopping, or a part failing for good (returned).
    pub(super) async fn until_stopped(
        &mut self,
        shutdown: &mut (impl Future<Output = ()> + Unpin),
    ) -> Option<ServeError> {
        tokio::select! {
            _ = shutdown => {
                tracing::info!("shutdown requested: stop reading, drain, flush");
                None
            }
            r = &mut self.sink => {
                self.sink_result = Some(r);
                None
            }
            Some(e) = self.fatal.recv() => {
                tracing::error!(error = %e, "stopping");
                Some(e)
            }
        }
    }

    /// Stops reading and takes every stage down in order within `timeout`; the first
    /// failure (`early` first) is the result.
    pub(super) async fn shut_down(
        self,
        early: Option<ServeError>,
        timeout: Duration,
    ) -> Result<ServeReport, ServeError> {
        let Pipeline {
            stop,
            spawner,
            coordinator,
            sink,
            sink_result,
            dead,
            progress,
            checkpoints,
            lag,
            watch,
            fatal: _,
            pending,
            in_cluster,
        } = self;
        stop.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        // `None` from a step: the deadline passed.
        let timed_out = || ServeError::ShutdownTimeout(timeout.as_secs(), pending.get());
        let mut failure = early;
        if let Err(e) = drain(spawner, coordinator, deadline).await {
            prefer(&mut failure, e.unwrap_or_else(timed_out));
        }
        let mut report = ServeReport::default();
        // A cluster's process stops alone: its workers' points end only with the others',
        // and its checkpoint in flight would be its part alone. What it has not written
        // is written again on the restore, like every tick after the last complete
        // checkpoint.
        if in_cluster {
            progress.abandon();
        }
        let wait_for_sink = failure.is_none() && !in_cluster;
        match finish_sink(sink, sink_result, deadline, wait_for_sink).await {
            Ok(written) => report.points_written = written,
            Err(e) => prefer(&mut failure, e.unwrap_or_else(timed_out)),
        }
        if let Err(e) = flush_dead_letters(&dead, deadline).await {
            prefer(&mut failure, e);
        }
        if let Err(e) =
            finish_checkpoints(checkpoints, &progress, failure.is_some(), deadline).await
        {
            prefer(&mut failure, e.unwrap_or_else(timed_out));
        }
        lag.abort();
        // It looks every 2 s and each question waits 3 s at most: it has seen the stop by
        // now, or does within one look.
        let watch_ended = tokio::task::spawn_blocking(move || watch.join());
        if tokio::time::timeout(Duration::from_secs(10), watch_ended)
            .await
            .is_err()
        {
            tracing::warn!("the Kafka watch did not end within 10 s of the stop");
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// Keeps the first failure, except that a part's stop signal gives way to the error the
/// part's thread hands over.
fn prefer(failure: &mut Option<ServeError>, e: ServeError) {
    if matches!(
        failure,
        None | Some(ServeError::Pipeline(PipelineError::Stopped(_)))
    ) {
        *failure = Some(e);
    }
}

/// Joins the sources, then the coordinator (which sends its last epoch, takes the final
/// snapshot and drains the dataflow once its input ends).
async fn drain(
    spawner: Arc<Spawner>,
    coordinator: JoinHandle<Result<(), PipelineError>>,
    deadline: Instant,
) -> Result<(), Option<ServeError>> {
    let drained = tokio::task::spawn_blocking(move || -> Result<(), PipelineError> {
        // Closing drops the sources' last spare sender: once they end, the coordinator
        // sees its input end and drains.
        for h in spawner.close() {
            join_thread(h, "source")?;
        }
        join_thread(coordinator, "coordinator")
    });
    match tokio::time::timeout_at(deadline.into(), drained).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(Some(ServeError::Pipeline(e))),
        Ok(Err(e)) => Err(Some(ServeError::Task(e))),
        Err(_) => Err(None),
    }
}

/// The sink's result: it ends once the dataflow's points are written. Unless `wait` (after
/// a failure) it is not waited for.
async fn finish_sink(
    mut sink: TaskHandle<Result<u64, SinkStopped>>,
    finished: Option<SinkResult>,
    deadline: Instant,
    wait: bool,
) -> Result<u64, Option<ServeError>> {
    let result = match finished {
        Some(r) => r,
        None if wait => match tokio::time::timeout_at(deadline.into(), &mut sink).await {
            Ok(r) => r,
            Err(_) => return Err(None),
        },
        None => {
            sink.abort();
            return Ok(0);
        }
    };
    match result {
        Ok(Ok(written)) => Ok(written),
        Ok(Err(stopped)) => Err(Some(ServeError::SinkStopped(stopped))),
        Err(e) => Err(Some(ServeError::Task(e))),
    }
}

/// Waits for the broker to acknowledge every dead letter, with what is left of the
/// deadline (at least a second).
async fn flush_dead_letters(
    dead: &DeadLetterProducer,
    deadline: Instant,
) -> Result<(), ServeError> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    dead.close();
    let dead = dead.clone();
    match tokio::task::spawn_blocking(move || dead.flush(left)).await {
        Ok(Err(e)) => Err(ServeError::Ingest(e)),
        _ => Ok(()),
    }
}

/// The final checkpoint is written once the sink and the dead letters are acknowledged;
/// after a failure the pending one is abandoned, never written.
async fn finish_checkpoints(
    writer: JoinHandle<Result<(), PipelineError>>,
    progress: &CommitProgress,
    failed: bool,
    deadline: Instant,
) -> Result<(), Option<ServeError>> {
    if failed {
        progress.abandon();
    }
    let written = tokio::task::spawn_blocking(move || join_thread(writer, "checkpoint writer"));
    match tokio::time::timeout_at(deadline.into(), written).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(Some(ServeError::Pipeline(e))),
        Ok(Err(e)) => Err(Some(ServeError::Task(e))),
        Err(_) => {
            progress.abandon();
            Err(None)
        }
    }
}

/// The dataflow, its points into the sink's bounded channel.
fn start_dataflow(
    config: &Settings,
    restored: Option<Vec<Vec<u8>>>,
    observed: &Observed,
    cluster: Option<Connected>,
    progress: &CommitProgress,
) -> Result<Dataflow, ServeError> {
    let batch = batch_settings(config);
    // On their way to the sink, as many points as the sink itself holds at most: with a
    // fixed number of deliveries the channel alone could hold 64 x `batch_points` and keep
    // the sources reading long after the sink is full.
    let in_flight = (batch.max_pending / batch.batch_points).max(1);
    let (points_tx, points) = tokio::sync::mpsc::channel::<(u64, Vec<Point>)>(in_flight);
    let counted = progress.clone();
    let handed = observed.metrics.dataflow_points.clone();
    let out: PointsOut = Arc::new(move |epoch, points| {
        for delivery in batcher::deliveries(points, &batch) {
            let n = delivery.len() as u64;
            // Blocks while the sink is full; fails only when the sink has stopped.
            if points_tx.blocking_send((epoch, delivery)).is_err() {
                return;
            }
            counted.handed(n);
            handed.inc_by(n);
        }
    });
    let mut settings = DataflowSettings::from_config(config);
    if restored.is_some() {
        settings.rewrite_until = Some(rewrite_until(config));
    }
    let runner = Runner::start_in(settings, out, restored, cluster).map_err(PipelineError::from)?;
    if let Ok(mut d) = observed.state.dataflow.lock() {
        *d = Some(runner.stats.clone());
    }
    Ok(Dataflow { runner, points })
}

/// One source per (worker of this process, topic) with partitions, each partition from
/// its restored offset (the beginning where none). The partitions are divided among every
/// worker of the cluster; returns this process's.
fn start_sources(
    spawner: &Spawner,
    partitions: &[Vec<i32>; 3],
    placement: Placement,
    start: &[HashMap<i32, i64>; 3],
) -> Result<[Vec<i32>; 3], ServeError> {
    let all: Vec<(Stream, i32)> = Stream::ALL
        .iter()
        .flat_map(|s| partitions[s.index()].iter().map(move |p| (*s, *p)))
        .collect();
    let mut own: [Vec<i32>; 3] = Default::default();
    for (worker, owned) in assign_stable(&all, placement.total()).iter().enumerate() {
        if placement.local(worker).is_none() {
            continue;
        }
        for (s, p) in owned {
            own[s.index()].push(*p);
        }
        for s in Stream::ALL {
            let parts: Vec<i32> = owned
                .iter()
                .filter(|(st, _)| *st == s)
                .map(|(_, p)| *p)
                .collect();
            if !parts.is_empty() {
                spawner.spawn(worker, s, &parts, &start[s.index()], false)?;
            }
        }
    }
    Ok(own)
}

/// The watch: brokers and topics still there, partitions added.
fn start_watch(
    kafka: &ClientConfig,
    (observed, status): (&Observed, &Arc<SourceStatus>),
    known: &Arc<Mutex<[Vec<i32>; 3]>>,
    spawner: &Arc<Spawner>,
    (config, placement): (&Settings, Placement),
    (stop, fatal): (&Arc<AtomicBool>, &UnboundedSender<ServeError>),
) -> Result<JoinHandle<()>, ServeError> {
    let topics = Stream::ALL.map(|s| config.streams.get(s).topic.clone());
    let watch = Watch {
        watch: TopicWatch::new(kafka, topics.to_vec())?,
        known: known.clone(),
        placement,
        health: observed.state.kafka.clone(),
        spawner: spawner.clone(),
        status: status.clone(),
        stop: stop.clone(),
        fatal: fatal.clone(),
    };
    // Joined last at shutdown: it holds nothing the drain waits for, and ends within a look.
    std::thread::Builder::new()
        .name("kafka-watch".into())
        .spawn(move || watch.run())
        .map_err(|source| {
            ServeError::Pipeline(PipelineError::Spawn {
                name: "kafka-watch".into(),
                source,
            })
        })
}

/// The checkpoint writer: a snapshot becomes a checkpoint once what came before it is
/// acknowledged.
fn start_checkpoint_writer(
    config: &Settings,
    kafka: &ClientConfig,
    store: Store,
    progress: &CommitProgress,
    observed: &Observed,
    fatal: &UnboundedSender<ServeError>,
) -> Result<CheckpointWriter, ServeError> {
    let (tx, rx) = crossbeam_channel::bounded::<Pending>(1);
    let committer = OffsetCommitter::new(kafka, &config.kafka.group_id)
        .inspect_err(|e| tracing::warn!(error = %e, "no offset commits for lag tools"))
        .ok();
    let writer = Writer {
        store,
        progress: progress.clone(),
        committer,
        topics: Stream::ALL.map(|s| config.streams.get(s).topic.clone()),
        board: observed.state.board.clone(),
        metrics: observed.metrics.clone(),
    };
    let thread = spawn_reporting("checkpoints", "checkpoints", fatal, move || writer.run(rx))?;
    Ok(CheckpointWriter { thread, tx })
}

/// The sink's batching, as both ends of the dataflow → sink channel read it.
fn batch_settings(config: &Settings) -> BatchSettings {
    BatchSettings::from_config(
        paceline_sink::Measurements::from_config(&config.indicators),
        &config.influx,
    )
}

/// The sink: batches the dataflow's points into InfluxDB; each acknowledgement feeds the
/// board, the latency metrics and the checkpoint writer's count.
fn start_sink(
    config: &Settings,
    writer: InfluxWriter,
    points: PointsRx,
    observed: &Observed,
    epochs: Arc<EpochLog>,
    progress: CommitProgress,
) -> TaskHandle<Result<u64, SinkStopped>> {
    let settings = batch_settings(config);
    let state = observed.state.clone();
    let metrics = observed.metrics.clone();
    let sink_metrics = observed.sink_metrics.clone();
    let health = observed.state.sink.clone();
    tokio::spawn(async move {
        batcher::run(
            &writer,
            &settings,
            points,
            &sink_metrics,
            health,
            move |done| {
                on_ack(&state, &metrics, &epochs, done);
                progress.acknowledged(done.len() as u64);
            },
        )
        .await
    })
}

/// Stream lag: the sum over each stream's partitions this process reads (the others
/// report theirs); with the watermark, the stream's freshness on the status page. Every
/// second, from the sources' status table.
fn start_lag_task(
    observed: &Observed,
    status: Arc<SourceStatus>,
    known: Arc<Mutex<[Vec<i32>; 3]>>,
    placement: Placement,
) -> TaskHandle<()> {
    let metrics = observed.metrics.clone();
    let board = observed.state.board.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let partitions = known.lock().map(|k| k.clone()).unwrap_or_default();
            for s in Stream::ALL {
                let own = |p: i32| {
                    placement
                        .local(partition_owner(s, p, placement.total()))
                        .is_some()
                };
                let lag = status.stream_lag(s, |p| own(p) && partitions[s.index()].contains(&p));
                metrics.stream_lag.with_label_values(&[s.as_str()]).set(lag);
                board.set_stream(
                    s,
                    Freshness {
                        watermark: status.watermark(s),
                        lag: Some(lag),
                    },
                );
            }
        }
    })
}
