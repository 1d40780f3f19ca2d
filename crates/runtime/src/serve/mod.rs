//! Serve: Kafka in, InfluxDB out, the HTTP endpoints up, until shutdown.
//!
//! Threads and tasks, in the order data flows: one source thread per (worker, topic) with
//! partitions ([`sources`]) → the coordinator thread ([`coordinator`]: admission,
//! watermarks, epochs) → the timely workers → the sink task (`paceline_sink::batcher`) →
//! InfluxDB. Every hand-over is a bounded channel, so a slow database stops the consumers.
//! Shutdown: stop reading, let the coordinator send its last epoch, drain the dataflow,
//! flush the sink and the dead letters, within `service.shutdown_timeout_s`.

pub mod checkpoint;
pub mod coordinator;
pub mod http;
pub mod metrics;
pub mod sources;
pub mod watch;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paceline_dataflow::{DataflowSettings, PointsOut, Runner};
use paceline_ingest::{
    assign_stable, client_config, create_missing_topics, topic_partitions, DeadLetterProducer,
    NewTopicSpec, OffsetCommitter, TopicWatch,
};
use paceline_model::config::Config;
use paceline_model::point::Point;
use paceline_model::service::Secrets;
use paceline_model::{Indicator, Nanos, Stream};
use paceline_sink::batcher::{self, BatchSettings, SinkHealth};
use paceline_sink::influx::InfluxWriter;
use paceline_sink::metrics::SinkMetrics;
use prometheus::Registry;

use crate::board::{Board, Freshness};
use checkpoint::{Checkpoint, CheckpointError, Compatibility, Pending, Store, Writer};
use coordinator::{CheckpointFeed, Coordinator, EpochLog};
use http::HttpState;
use metrics::ServeMetrics;

/// Serve failed or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A setting cannot be used (named in the message).
    #[error("{0}")]
    Setup(String),
    /// Kafka could not be reached or read.
    #[error("Kafka: {0}")]
    Kafka(String),
    /// The sink stopped (a refused batch).
    #[error("{0}")]
    Sink(String),
    /// The dataflow or the coordinator failed.
    #[error("pipeline: {0}")]
    Pipeline(String),
    /// The state directory holds a checkpoint this configuration cannot continue from.
    #[error("{0}")]
    Incompatible(String),
    /// Shutdown did not finish in time.
    #[error("shutdown did not finish within {0} s ({1} points still pending); nothing was committed past them")]
    ShutdownTimeout(u64, i64),
}

/// How to start.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Discard the checkpoints and rebuild the state from the topics' beginning.
    pub rebuild: bool,
}

/// What a finished serve run did.
#[derive(Debug, Clone, Default)]
pub struct ServeReport {
    /// Points acknowledged by the database.
    pub points_written: u64,
}

/// The topics `kafka.create_topics` creates: the three input topics (filings and
/// scenarios keep everything, telemetry its configured retention) and the dead letters.
fn topics_to_create(config: &Config) -> Vec<NewTopicSpec> {
    let k = &config.kafka;
    let spec = |name: &str, retention_ms: Option<u64>| NewTopicSpec {
        name: name.to_string(),
        partitions: k.topic_partitions,
        replication_factor: k.topic_replication_factor,
        retention_ms,
    };
    let mut out: Vec<NewTopicSpec> = Stream::ALL
        .iter()
        .map(|s| {
            let retention =
                (*s == Stream::Telemetry).then_some(k.telemetry_retention_h * 3_600_000);
            spec(&config.streams.get(*s).topic, retention)
        })
        .collect();
    // Dead letters are kept: they are what is left of the events they stand for.
    out.push(spec(&k.dead_letter_topic, None));
    out
}

fn join_thread(h: std::thread::JoinHandle<Result<(), String>>, what: &str) -> Result<(), String> {
    h.join()
        .map_err(|_| format!("the {what} thread panicked"))?
}

/// Runs the service until `shutdown` resolves (or a fatal error), then shuts down
/// gracefully.
pub async fn serve(
    config: Config,
    secrets: Secrets,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<ServeReport, ServeError> {
    let registry = Registry::new();
    let metrics =
        ServeMetrics::register(&registry).map_err(|e| ServeError::Setup(e.to_string()))?;
    metrics.set_cadences(&config);
    let sink_metrics =
        SinkMetrics::register(&registry).map_err(|e| ServeError::Setup(e.to_string()))?;
    let writer = InfluxWriter::new(&config.influx, &secrets)
        .map_err(|e| ServeError::Setup(e.to_string()))?;
    let sink_health = Arc::new(SinkHealth::default());
    let state = Arc::new(HttpState {
        registry,
        sink: sink_health.clone(),
        sources_assigned: AtomicBool::new(false),
        kafka: Default::default(),
        dataflow: Mutex::new(None),
        sink_pending: sink_metrics.pending_points.clone(),
        board: Arc::new(Board::new(config.plan_specs())),
        mode: "serve",
    });

    // HTTP first, so that probes answer (not ready) while Kafka is being reached.
    let listener = tokio::net::TcpListener::bind(&config.service.http_addr)
        .await
        .map_err(|e| {
            ServeError::Setup(format!(
                "service.http_addr {}: cannot listen: {e}",
                config.service.http_addr
            ))
        })?;
    let (http_stop_tx, mut http_stop_rx) = tokio::sync::watch::channel(false);
    let app = http::router(state.clone());
    let limits = http::HttpLimits::from_config(&config.service);
    let http_task = tokio::spawn(http::run_server(listener, app, limits, async move {
        let _ = http_stop_rx.wait_for(|s| *s).await;
    }));
    tracing::info!(addr = %config.service.http_addr, "HTTP endpoints up");

    // Restore before reading anything: `/readyz` stays 503 until the sources are assigned.
    let store = Store::open(Path::new(&config.service.state_dir))
        .map_err(|e| ServeError::Setup(format!("service.state_dir: {e}")))?;
    let restored = match restore(&config, &store, options) {
        Ok(r) => r,
        Err(e) => {
            let _ = http_stop_tx.send(true);
            let _ = http_task.await;
            return Err(e);
        }
    };
    if let Some(c) = &restored {
        state.board.record(&c.board);
        metrics.checkpoint_last_success.set(c.taken_ms as f64 / 1e3);
    }

    // Kafka: topics' partitions, divided among the workers.
    let kafka = client_config(&config.kafka, secrets.kafka_sasl_password.as_ref());
    let metadata_timeout = Duration::from_secs(config.kafka.metadata_timeout_s);
    let topics: Vec<(Stream, String)> = Stream::ALL
        .iter()
        .map(|s| (*s, config.streams.get(*s).topic.clone()))
        .collect();
    let kafka_md = kafka.clone();
    let create = config
        .kafka
        .create_topics
        .then(|| topics_to_create(&config));
    let metadata = tokio::task::spawn_blocking(move || {
        if let Some(specs) = create {
            let created = create_missing_topics(&kafka_md, &specs, metadata_timeout)
                .map_err(|e| ServeError::Kafka(e.to_string()))?;
            if !created.is_empty() {
                tracing::info!(?created, "topics created (kafka.create_topics)");
            }
        }
        let mut out: [Vec<i32>; 3] = Default::default();
        for (s, topic) in &topics {
            out[s.index()] = topic_partitions(&kafka_md, topic, metadata_timeout)
                .map_err(|e| ServeError::Kafka(e.to_string()))?;
        }
        Ok::<_, ServeError>(out)
    });
    // A shutdown while Kafka is still being reached stops at once: nothing was read.
    let mut shutdown = std::pin::pin!(shutdown);
    let partitions: [Vec<i32>; 3] = tokio::select! {
        r = metadata => r.map_err(|e| ServeError::Pipeline(e.to_string()))??,
        _ = &mut shutdown => {
            tracing::info!("shutdown requested before the sources were assigned");
            let _ = http_stop_tx.send(true);
            let _ = http_task.await;
            return Ok(ServeReport::default());
        }
    };
    let workers = config.dataflow.workers.max(1);
    let all: Vec<(Stream, i32)> = Stream::ALL
        .iter()
        .flat_map(|s| partitions[s.index()].iter().map(move |p| (*s, *p)))
        .collect();
    let division = assign_stable(&all, workers);

    // The dataflow, its points into the sink's bounded channel.
    let (points_tx, points_rx) = tokio::sync::mpsc::channel::<(u64, Vec<Point>)>(64);
    let points_sent = Arc::new(AtomicU64::new(0));
    let sent = points_sent.clone();
    let out: PointsOut = Arc::new(move |epoch, points| {
        let n = points.len() as u64;
        // Blocks while the sink is full; fails only when the sink has stopped.
        if points_tx.blocking_send((epoch, points)).is_ok() {
            sent.fetch_add(n, Ordering::SeqCst);
        }
    });
    let mut settings = DataflowSettings::from_config(&config);
    let (restored_workers, restored_coordinator, next_sequence) = match restored {
        Some(c) => {
            settings.rewrite_until = Some(rewrite_until(&config));
            (Some(c.workers), Some(c.coordinator), c.sequence + 1)
        }
        None => (None, None, 1),
    };
    let runner = Runner::start(settings, out, restored_workers).map_err(ServeError::Pipeline)?;
    if let Ok(mut d) = state.dataflow.lock() {
        *d = Some(runner.stats.clone());
    }

    // Sources, one thread per (worker, topic) with partitions.
    let dead = DeadLetterProducer::new(&kafka, &config.kafka.dead_letter_topic)
        .map_err(|e| ServeError::Kafka(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    // A part failing for good stops the service.
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel::<ServeError>();
    let (batch_tx, batch_rx) = crossbeam_channel::bounded::<sources::Batch>(16);
    let spawner = Arc::new(sources::Spawner::new(
        kafka.clone(),
        config.clone(),
        dead.clone(),
        metrics.clone(),
        batch_tx,
        stop.clone(),
        fatal_tx.clone(),
    ));
    for (worker, owned) in division.iter().enumerate() {
        for s in Stream::ALL {
            let parts: Vec<i32> = owned
                .iter()
                .filter(|(st, _)| *st == s)
                .map(|(_, p)| *p)
                .collect();
            if parts.is_empty() {
                continue;
            }
            let start: HashMap<i32, i64> = restored_coordinator
                .as_ref()
                .map(|c| c.offsets[s.index()].iter().copied().collect())
                .unwrap_or_default();
            spawner
                .spawn(worker, s, &parts, &start, false)
                .map_err(ServeError::Kafka)?;
        }
    }
    state.sources_assigned.store(true, Ordering::Relaxed);
    tracing::info!(?partitions, workers, "sources assigned");

    // The watch: brokers and topics still there, partitions added.
    let known = Arc::new(Mutex::new(partitions.clone()));
    let topic_watch = TopicWatch::new(
        &kafka,
        Stream::ALL
            .map(|s| config.streams.get(s).topic.clone())
            .to_vec(),
    )
    .map_err(|e| ServeError::Kafka(e.to_string()))?;
    let kafka_watch = watch::Watch {
        watch: topic_watch,
        known: known.clone(),
        workers,
        unavailable_timeout: Duration::from_secs(config.kafka.unavailable_timeout_s),
        health: state.kafka.clone(),
        spawner: spawner.clone(),
        stop: stop.clone(),
        fatal: fatal_tx.clone(),
    };
    std::thread::Builder::new()
        .name("kafka-watch".into())
        .spawn(move || kafka_watch.run())
        .map_err(|e| ServeError::Pipeline(e.to_string()))?;

    // The checkpoint writer: a snapshot becomes a checkpoint once what came before it is
    // acknowledged.
    let (ckpt_tx, ckpt_rx) = crossbeam_channel::bounded::<Pending>(1);
    let points_acked = Arc::new(AtomicU64::new(0));
    let abandon = Arc::new(AtomicBool::new(false));
    let busy = Arc::new(AtomicBool::new(false));
    let committer = OffsetCommitter::new(&kafka, &config.kafka.group_id)
        .inspect_err(|e| tracing::warn!(error = %e, "no offset commits for lag tools"))
        .ok();
    let checkpoint_writer = Writer {
        store: store.clone(),
        acked: points_acked.clone(),
        dead: dead.clone(),
        committer,
        topics: Stream::ALL.map(|s| config.streams.get(s).topic.clone()),
        board: state.board.clone(),
        metrics: metrics.clone(),
        abandon: abandon.clone(),
        busy: busy.clone(),
    };
    let writer_fatal = fatal_tx.clone();
    let writer_thread = std::thread::Builder::new()
        .name("checkpoints".into())
        .spawn(move || {
            let r = checkpoint_writer.run(ckpt_rx);
            if let Err(e) = &r {
                let _ = writer_fatal.send(ServeError::Pipeline(format!("checkpoints: {e}")));
            }
            r
        })
        .map_err(|e| ServeError::Pipeline(e.to_string()))?;

    let epochs = Arc::new(EpochLog::default());
    let coordinator = Coordinator {
        config: config.clone(),
        partitions: partitions.clone(),
        input: batch_rx,
        runner,
        metrics: metrics.clone(),
        epochs: epochs.clone(),
        dead: dead.clone(),
        restored: restored_coordinator,
        checkpoints: CheckpointFeed {
            tx: ckpt_tx,
            busy,
            interval: Duration::from_secs(config.service.checkpoint_interval_s),
            next_sequence,
            compatibility: Compatibility::of(&config),
            points_sent,
        },
    };
    let coordinator_thread = std::thread::Builder::new()
        .name("coordinator".into())
        .spawn(move || {
            let r = coordinator.run();
            if let Err(e) = &r {
                let _ = fatal_tx.send(ServeError::Pipeline(format!("coordinator: {e}")));
            }
            r
        })
        .map_err(|e| ServeError::Pipeline(e.to_string()))?;

    // The sink.
    let settings = BatchSettings::from_config(&config.indicators.measurement, &config.influx);
    let ack_state = state.clone();
    let ack_metrics = metrics.clone();
    let acked = points_acked.clone();
    let mut sink_task = tokio::spawn(async move {
        batcher::run(
            &writer,
            &settings,
            points_rx,
            &sink_metrics,
            sink_health,
            move |done| {
                on_ack(&ack_state, &ack_metrics, &epochs, done);
                acked.fetch_add(done.len() as u64, Ordering::SeqCst);
            },
        )
        .await
    });

    // Stream lag: the sum over each stream's partitions; with the watermark, the stream's
    // freshness on the status page.
    let lag_metrics = metrics.clone();
    let lag_board = state.board.clone();
    let lag_topics: Vec<(Stream, String)> = Stream::ALL
        .iter()
        .map(|s| (*s, config.streams.get(*s).topic.clone()))
        .collect();
    let lag_task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let partitions = known.lock().map(|k| k.clone()).unwrap_or_default();
            for (s, topic) in &lag_topics {
                let sum: i64 = partitions[s.index()]
                    .iter()
                    .map(|p| {
                        lag_metrics
                            .source_lag
                            .with_label_values(&[topic.as_str(), &p.to_string()])
                            .get()
                    })
                    .sum();
                lag_metrics
                    .stream_lag
                    .with_label_values(&[s.as_str()])
                    .set(sum);
                let mark = lag_metrics.watermark.with_label_values(&[s.as_str()]).get();
                lag_board.set_stream(
                    *s,
                    Freshness {
                        watermark: (mark != 0.0).then(|| (mark * 1e9) as i64),
                        lag: Some(sum),
                    },
                );
            }
        }
    });

    // Run until shutdown or until the sink stops.
    let mut sink_result = None;
    let mut failure: Option<ServeError> = None;
    tokio::select! {
        _ = &mut shutdown => tracing::info!("shutdown requested: stop reading, drain, flush"),
        r = &mut sink_task => sink_result = Some(r),
        Some(e) = fatal_rx.recv() => {
            tracing::error!(error = %e, "stopping");
            failure = Some(e);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let timeout = Duration::from_secs(config.service.shutdown_timeout_s);
    let deadline = Instant::now() + timeout;
    let pending = state.sink_pending.clone();
    let drained = tokio::task::spawn_blocking(move || -> Result<(), String> {
        // Closing drops the sources' last spare sender: once they end, the coordinator
        // sees its input end and drains.
        for h in spawner.close() {
            join_thread(h, "source")?;
        }
        join_thread(coordinator_thread, "coordinator")
    });
    match tokio::time::timeout_at(deadline.into(), drained).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => failure = failure.or(Some(ServeError::Pipeline(e))),
        Ok(Err(e)) => failure = failure.or(Some(ServeError::Pipeline(e.to_string()))),
        Err(_) => {
            failure = failure.or(Some(ServeError::ShutdownTimeout(
                timeout.as_secs(),
                pending.get(),
            )))
        }
    }
    let sink_result = match sink_result {
        Some(r) => Some(r),
        None if failure.is_none() => {
            match tokio::time::timeout_at(deadline.into(), sink_task).await {
                Ok(r) => Some(r),
                Err(_) => {
                    failure = Some(ServeError::ShutdownTimeout(
                        timeout.as_secs(),
                        pending.get(),
                    ));
                    None
                }
            }
        }
        None => {
            sink_task.abort();
            None
        }
    };
    let mut report = ServeReport::default();
    match sink_result {
        Some(Ok(Ok(n))) => report.points_written = n,
        Some(Ok(Err(stopped))) => failure = failure.or(Some(ServeError::Sink(stopped.to_string()))),
        Some(Err(e)) => failure = failure.or(Some(ServeError::Sink(e.to_string()))),
        None => {}
    }
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    dead.close();
    let flush = tokio::task::spawn_blocking(move || dead.flush(left)).await;
    if let Ok(Err(e)) = flush {
        failure = failure.or(Some(ServeError::Kafka(e.to_string())));
    }
    // The final checkpoint is written once the sink and the dead letters are acknowledged;
    // after a failure the pending one is abandoned, never written.
    if failure.is_some() {
        abandon.store(true, Ordering::SeqCst);
    }
    let written =
        tokio::task::spawn_blocking(move || join_thread(writer_thread, "checkpoint writer"));
    match tokio::time::timeout_at(deadline.into(), written).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => failure = failure.or(Some(ServeError::Pipeline(e))),
        Ok(Err(e)) => failure = failure.or(Some(ServeError::Pipeline(e.to_string()))),
        Err(_) => {
            abandon.store(true, Ordering::SeqCst);
            failure = failure.or(Some(ServeError::ShutdownTimeout(
                timeout.as_secs(),
                pending.get(),
            )));
        }
    }
    lag_task.abort();
    let _ = http_stop_tx.send(true);
    let _ = http_task.await;
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The newest valid checkpoint to start from, checked against the configuration; None
/// to start from the topics' beginning (no checkpoint, or `--rebuild`).
fn restore(
    config: &Config,
    store: &Store,
    options: ServeOptions,
) -> Result<Option<Checkpoint>, ServeError> {
    let setup = |e: CheckpointError| ServeError::Setup(format!("service.state_dir: {e}"));
    if options.rebuild {
        let removed = store.clear().map_err(setup)?;
        tracing::warn!(
            removed,
            "rebuild: checkpoints discarded; starting from the topics' beginning"
        );
        return Ok(None);
    }
    let Some((path, checkpoint)) = store.load_newest().map_err(setup)? else {
        tracing::info!(state_dir = %config.service.state_dir, "no valid checkpoint: starting from the topics' beginning");
        return Ok(None);
    };
    let differences = checkpoint
        .compatibility
        .differences(&Compatibility::of(config));
    if !differences.is_empty() {
        return Err(ServeError::Incompatible(
            CheckpointError::Incompatible { path, differences }.to_string(),
        ));
    }
    let positions: usize = checkpoint.coordinator.offsets.iter().map(Vec::len).sum();
    tracing::info!(
        checkpoint = %path.display(),
        sequence = checkpoint.sequence,
        taken_ms = checkpoint.taken_ms,
        partitions = positions,
        "resuming from checkpoint"
    );
    Ok(Some(checkpoint))
}

/// After a restore, ticks up to here are written again whatever their value: the stopped
/// run may have written any tick its watermarks reached after its last checkpoint, and no
/// watermark passes the wall clock plus `streams.max_future_s` (events further ahead are
/// `out_of_range`).
fn rewrite_until(config: &Config) -> Nanos {
    let longest = Indicator::ALL
        .iter()
        .map(|i| config.cadence(*i))
        .max()
        .unwrap_or(0);
    paceline_decode::latest_occurred_at(config.streams.max_future()).saturating_add(longest)
}

/// After the sink's acknowledgement: the board (newest point per series, charts), the
/// indicator gauges and the latency histograms.
fn on_ack(state: &HttpState, metrics: &ServeMetrics, epochs: &EpochLog, done: &[(u64, Point)]) {
    let now = Instant::now();
    state
        .board
        .record_with(done.iter().map(|(_, p)| p), |p| metrics.set_indicator(p));
    let mut seen_epoch = None;
    for (epoch, _) in done {
        if seen_epoch == Some(*epoch) {
            continue;
        }
        seen_epoch = Some(*epoch);
        if let Some((sent, consumed)) = epochs.take(*epoch) {
            metrics
                .tick_latency
                .observe(now.duration_since(sent).as_secs_f64());
            if let Some(c) = consumed {
                metrics
                    .end_to_end
                    .observe(now.duration_since(c).as_secs_f64());
            }
        }
    }
}
