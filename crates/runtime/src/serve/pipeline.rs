//! The running pipeline of `serve`: started stage by stage in the order data flows, and
//! shut down in the same order (stop reading, drain the coordinator and the dataflow,
//! flush the sink and the dead letters, write the final checkpoint, join the watch), each a
//! [`Stage`] the supervisor stops under one deadline, `service.shutdown_timeout_s`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
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
use paceline_sink::batcher::{self, BatchSettings, SinkHealth, SinkStopped};
use paceline_sink::influx::InfluxWriter;
use rdkafka::config::ClientConfig;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle as TaskHandle;

use super::checkpoint::{Checkpoint, Compatibility, Pending, Store, Writer};
use super::commit::CommitProgress;
use super::coordinator::{CheckpointFeed, Coordinator, EpochLog};
use super::sources::{Batch, Spawner};
use super::status::SourceStatus;
use super::supervisor::{stop_in_order, Cancel, Fatal, Stage, StageContext, StopContext, Stopping};
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
    cancel: Cancel,
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
    sink_health: Arc<SinkHealth>,
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
        let next_sequence = restored_next.max(store.next_sequence().map_err(PipelineError::from)?);
        let dead = DeadLetterProducer::new(
            kafka,
            &config.kafka.dead_letter_topic,
            config.kafka.dead_letter_max_bytes,
        )?;
        // A part failing for good stops the service: `fatal` is the supervisor's end.
        let (reporter, fatal) = Fatal::channel();
        let ctx = StageContext {
            cancel: Cancel::default(),
            fatal: reporter,
            status: Arc::new(SourceStatus::new(
                Stream::ALL.map(|s| config.streams.get(s).topic.clone()),
                observed.metrics.clone(),
            )),
            progress: CommitProgress::new(Arc::new(dead.clone())),
        };
        let dataflow = start_dataflow(config, restored_workers, observed, cluster, &ctx)?;
        let (batch_tx, batch_rx) = crossbeam_channel::bounded::<Batch>(16);
        let spawner = Arc::new(Spawner::new(
            kafka.clone(),
            config.pipeline.clone(),
            (dead.clone(), observed.metrics.clone()),
            batch_tx,
            &ctx,
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
        let watch = start_watch(kafka, observed, &known, &spawner, (config, placement), &ctx)?;
        let ckpt = start_checkpoint_writer(config, kafka, store, observed, &ctx)?;
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
                progress: ctx.progress.clone(),
            },
            placement,
            status: ctx.status.clone(),
        };
        let coordinator = spawn_reporting("coordinator", "coordinator", &ctx.fatal, move || {
            coordinator.run()
        })?;
        let sink = start_sink(
            config,
            writer,
            dataflow.points,
            observed,
            epochs,
            ctx.progress.clone(),
        );
        let lag = start_lag_task(observed, ctx.status.clone(), known, placement);
        let StageContext {
            cancel, progress, ..
        } = ctx;
        Ok(Pipeline {
            cancel,
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
            sink_health: observed.state.sink.clone(),
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

    /// Stops reading and takes every stage down in flow order within `timeout`, under
    /// the supervisor; the first failure (`early` first) is the result.
    pub(super) async fn shut_down(
        self,
        early: Option<ServeError>,
        timeout: Duration,
    ) -> Result<ServeReport, ServeError> {
        let Pipeline {
            cancel,
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
            sink_health,
            in_cluster,
        } = self;
        let written = Arc::new(AtomicU64::new(0));
        let stages: Vec<Box<dyn Stage>> = vec![
            Box::new(Drain {
                cancel,
                spawner,
                coordinator,
            }),
            Box::new(Sink {
                task: sink,
                finished: sink_result,
                in_cluster,
                progress: progress.clone(),
                written: written.clone(),
            }),
            Box::new(DeadLetters(dead)),
            Box::new(Checkpoints {
                writer: checkpoints,
                progress,
            }),
            Box::new(Watching { lag, watch }),
        ];
        let timed_out = || ServeError::ShutdownTimeout(timeout.as_secs(), sink_health.pending());
        match stop_in_order(stages, early, timeout, timed_out).await {
            Some(e) => Err(e),
            None => Ok(ServeReport {
                points_written: written.load(Ordering::SeqCst),
            }),
        }
    }
}

/// Stop reading, then drain: the sources are joined, then the coordinator (which sends
/// its last epoch, takes the final snapshot and drains the dataflow once its input ends).
struct Drain {
    cancel: Cancel,
    spawner: Arc<Spawner>,
    coordinator: JoinHandle<Result<(), PipelineError>>,
}

impl Stage for Drain {
    fn name(&self) -> &'static str {
        "sources and coordinator"
    }

    fn stop(self: Box<Self>, _: StopContext) -> Stopping {
        self.cancel.cancel();
        let Drain {
            spawner,
            coordinator,
            ..
        } = *self;
        let drained = tokio::task::spawn_blocking(move || -> Result<(), PipelineError> {
            // Closing drops the sources' last spare sender: once they end, the coordinator
            // sees its input end and drains.
            for h in spawner.close() {
                join_thread(h, "source")?;
            }
            join_thread(coordinator, "coordinator")
        });
        Box::pin(async move {
            match drained.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(Some(ServeError::Pipeline(e))),
                Err(e) => Err(Some(ServeError::Task(e))),
            }
        })
    }
}

/// The sink: it ends once the dataflow's points are written. After a failure it is not
/// waited for; nor in a cluster, where a process stops alone.
struct Sink {
    task: TaskHandle<Result<u64, SinkStopped>>,
    finished: Option<SinkResult>,
    in_cluster: bool,
    progress: CommitProgress,
    written: Arc<AtomicU64>,
}

impl Stage for Sink {
    fn name(&self) -> &'static str {
        "sink"
    }

    fn stop(self: Box<Self>, ctx: StopContext) -> Stopping {
        let Sink {
            mut task,
            finished,
            in_cluster,
            progress,
            written,
        } = *self;
        // A cluster's process stops alone: its workers' points end only with the others',
        // and its checkpoint in flight would be its part alone. What it has not written
        // is written again on the restore, like every tick after the last complete
        // checkpoint.
        if in_cluster {
            progress.abandon();
        }
        let wait = !ctx.failed && !in_cluster;
        Box::pin(async move {
            let result = match finished {
                Some(r) => r,
                None if wait => (&mut task).await,
                None => {
                    task.abort();
                    return Ok(());
                }
            };
            match result {
                Ok(Ok(n)) => {
                    written.store(n, Ordering::SeqCst);
                    Ok(())
                }
                Ok(Err(stopped)) => Err(Some(ServeError::SinkStopped(stopped))),
                Err(e) => Err(Some(ServeError::Task(e))),
            }
        })
    }
}

/// The dead letters: the broker acknowledges every one, with what is left of the
/// deadline (at least a second).
struct DeadLetters(DeadLetterProducer);

impl Stage for DeadLetters {
    fn name(&self) -> &'static str {
        "dead letters"
    }

    fn stop(self: Box<Self>, ctx: StopContext) -> Stopping {
        let left = ctx
            .deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let dead = self.0;
        dead.close();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || dead.flush(left)).await {
                Ok(Err(e)) => Err(Some(ServeError::Ingest(e))),
                _ => Ok(()),
            }
        })
    }
}

/// The final checkpoint is written once the sink and the dead letters are acknowledged;
/// after a failure, or past the deadline, the pending one is abandoned, never written.
struct Checkpoints {
    writer: JoinHandle<Result<(), PipelineError>>,
    progress: CommitProgress,
}

impl Stage for Checkpoints {
    fn name(&self) -> &'static str {
        "checkpoint writer"
    }

    fn stop(self: Box<Self>, ctx: StopContext) -> Stopping {
        let Checkpoints { writer, progress } = *self;
        if ctx.failed {
            progress.abandon();
        }
        let written = tokio::task::spawn_blocking(move || join_thread(writer, "checkpoint writer"));
        Box::pin(async move {
            // Its own deadline, polled before the supervisor's: the writer is told to
            // abandon before the stop gives up on it.
            match tokio::time::timeout_at(ctx.deadline.into(), written).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(Some(ServeError::Pipeline(e))),
                Ok(Err(e)) => Err(Some(ServeError::Task(e))),
                Err(_) => {
                    progress.abandon();
                    Err(None)
                }
            }
        })
    }
}

/// The lag task and the Kafka watch: neither holds anything the others wait for.
struct Watching {
    lag: TaskHandle<()>,
    watch: JoinHandle<()>,
}

impl Stage for Watching {
    fn name(&self) -> &'static str {
        "Kafka watch"
    }

    fn stop(self: Box<Self>, _: StopContext) -> Stopping {
        self.lag.abort();
        let watch = self.watch;
        Box::pin(async move {
            // It looks every 2 s and each question waits 3 s at most: it has seen the stop
            // by now, or does within one look.
            let ended = tokio::task::spawn_blocking(move || watch.join());
            if tokio::time::timeout(Duration::from_secs(10), ended)
                .await
                .is_err()
            {
                tracing::warn!("the Kafka watch did not end within 10 s of the stop");
            }
            Ok(())
        })
    }
}

/// The dataflow, its points into the sink's bounded channel.
fn start_dataflow(
    config: &Settings,
    restored: Option<Vec<Vec<u8>>>,
    observed: &Observed,
    cluster: Option<Connected>,
    ctx: &StageContext,
) -> Result<Dataflow, ServeError> {
    let batch = batch_settings(config);
    // On their way to the sink, as many points as the sink itself holds at most: with a
    // fixed number of deliveries the channel alone could hold 64 x `batch_points` and keep
    // the sources reading long after the sink is full.
    let in_flight = (batch.max_pending / batch.batch_points).max(1);
    let (points_tx, points) = tokio::sync::mpsc::channel::<(u64, Vec<Point>)>(in_flight);
    let counted = ctx.progress.clone();
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
    observed: &Observed,
    known: &Arc<Mutex<[Vec<i32>; 3]>>,
    spawner: &Arc<Spawner>,
    (config, placement): (&Settings, Placement),
    ctx: &StageContext,
) -> Result<JoinHandle<()>, ServeError> {
    let topics = Stream::ALL.map(|s| config.streams.get(s).topic.clone());
    let watch = Watch {
        watch: TopicWatch::new(kafka, topics.to_vec())?,
        known: known.clone(),
        placement,
        health: observed.state.kafka.clone(),
        spawner: spawner.clone(),
        status: ctx.status.clone(),
        stop: ctx.cancel.clone(),
        fatal: ctx.fatal.clone(),
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
    observed: &Observed,
    ctx: &StageContext,
) -> Result<CheckpointWriter, ServeError> {
    let (tx, rx) = crossbeam_channel::bounded::<Pending>(1);
    let committer = OffsetCommitter::new(kafka, &config.kafka.group_id)
        .inspect_err(|e| tracing::warn!(error = %e, "no offset commits for lag tools"))
        .ok();
    let writer = Writer {
        store,
        progress: ctx.progress.clone(),
        committer,
        topics: Stream::ALL.map(|s| config.streams.get(s).topic.clone()),
        board: observed.state.board.clone(),
        metrics: observed.metrics.clone(),
    };
    let thread = spawn_reporting("checkpoints", "checkpoints", &ctx.fatal, move || {
        writer.run(rx)
    })?;
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
