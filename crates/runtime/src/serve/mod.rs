//! Serve: Kafka in, InfluxDB out, the HTTP endpoints up, until shutdown.
//!
//! Threads and tasks, in the order data flows: one source thread per (worker, topic) with
//! partitions ([`sources`]) → the coordinator thread ([`coordinator`]: admission,
//! watermarks, epochs) → the timely workers → the sink task (`paceline_sink::batcher`) →
//! InfluxDB. Every hand-over is a bounded channel, so a slow database stops the consumers.
//! Shutdown: stop reading, let the coordinator send its last epoch, drain the dataflow,
//! flush the sink and the dead letters, within `service.shutdown_timeout_s`.

pub mod checkpoint;
pub(crate) mod commit;
pub(crate) mod coordinator;
pub(crate) mod http;
pub(crate) mod http_server;
pub(crate) mod metrics;
pub mod peers;
mod pipeline;
pub(crate) mod sources;
pub(crate) mod status;
mod supervisor;
pub(crate) mod trouble;
pub(crate) mod watch;
pub(crate) mod write_deadline;

pub use paceline_dataflow::cluster::peer_of_thread;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paceline_dataflow::cluster::{ClusterSpec, Connected, Placement};
use paceline_ingest::{client_config, NewTopicSpec, TopicWatch};
use paceline_model::config::Config;
use paceline_model::point::Point;
use paceline_model::{Indicator, Nanos, Stream};
use paceline_sink::batcher::SinkHealth;
use paceline_sink::influx::{InfluxWriter, WriteError};
use paceline_sink::metrics::SinkMetrics;
use prometheus::Registry;

use crate::board::Board;
use crate::settings::{Secrets, Settings};
use checkpoint::{Checkpoint, CheckpointError, Compatibility, Store};
use coordinator::EpochLog;
use http::HttpState;
use metrics::ServeMetrics;
use pipeline::Pipeline;
use trouble::Trouble;

/// A part of the running pipeline (a source, the coordinator, the dataflow, the checkpoint
/// writer) failed for good.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The dataflow failed.
    #[error("dataflow: {0}")]
    Dataflow(#[from] paceline_dataflow::RunnerError),
    /// Kafka: a consumer could not be created, or dead letters cannot be written.
    #[error("{0}")]
    Kafka(#[from] paceline_ingest::IngestError),
    /// A checkpoint could not be written.
    #[error("cannot write a checkpoint into service.state_dir: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint writer's thread is gone.
    #[error("the checkpoint writer has stopped")]
    WriterGone,
    /// A thread panicked (its message was logged by the panic hook).
    #[error("the {0} thread panicked")]
    Panicked(String),
    /// A thread could not be started.
    #[error("cannot start the {name} thread: {source}")]
    Spawn {
        /// The thread.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A part stopped with an error, which its thread hands over when joined: a signal
    /// to stop, never the final word.
    #[error("the {0} stopped")]
    Stopped(String),
    /// A part failed, named.
    #[error("{part}: {source}")]
    In {
        /// The part (`coordinator`, `source <topic>`, `checkpoints`).
        part: String,
        /// What failed.
        source: Box<PipelineError>,
    },
}

impl PipelineError {
    /// This error, named after the part it happened in.
    pub fn in_part(self, part: impl Into<String>) -> PipelineError {
        PipelineError::In {
            part: part.into(),
            source: Box::new(self),
        }
    }
}

/// Serve failed or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Kafka could not be reached or read (why, in the watch's words).
    #[error("Kafka: {0}")]
    Kafka(String),
    /// A Kafka client failed: it could not be created, or a dead letter was refused for
    /// good.
    #[error("Kafka: {0}")]
    Ingest(#[from] paceline_ingest::IngestError),
    /// InfluxDB could not be used at start (why, named).
    #[error("{0}")]
    Sink(String),
    /// The sink stopped: the database refused a batch.
    #[error("{0}")]
    SinkStopped(#[from] paceline_sink::batcher::SinkStopped),
    /// The InfluxDB client cannot be built from its settings.
    #[error("{0}")]
    InfluxClient(#[source] paceline_sink::influx::BuildError),
    /// The metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The HTTP address cannot be listened on.
    #[error("service.http_addr {addr}: cannot listen: {source}")]
    Listen {
        /// The configured address.
        addr: String,
        /// The operating system's refusal.
        #[source]
        source: std::io::Error,
    },
    /// A part of the pipeline failed.
    #[error("pipeline: {0}")]
    Pipeline(#[from] PipelineError),
    /// A task of the async runtime failed (a panic, reported by the panic hook first).
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The state directory holds a checkpoint this configuration cannot continue from.
    #[error("{0}")]
    Incompatible(String),
    /// A setting or secret is missing or wrong (named), found at start.
    #[error("{0}")]
    Config(String),
    /// The state directory cannot be used: another process holds it, it cannot be
    /// written, or it holds checkpoints of another format.
    #[error("service.state_dir: {0}")]
    StateDir(#[source] CheckpointError),
    /// The cluster could not be formed.
    #[error("{0}")]
    Cluster(#[from] paceline_dataflow::cluster::ClusterError),
    /// Shutdown did not finish in time.
    #[error("shutdown did not finish within {0} s ({1} points still pending); nothing was committed past them")]
    ShutdownTimeout(u64, u64),
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
fn topics_to_create(config: &Settings) -> Vec<NewTopicSpec> {
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

/// Starts thread `name` running `f`; when `f` fails, the service is told at once (a stop
/// signal on `fatal`), and the error, named after `part`, is what joining the thread gives.
fn spawn_reporting(
    name: &str,
    part: &str,
    fatal: &supervisor::Fatal,
    f: impl FnOnce() -> Result<(), PipelineError> + Send + 'static,
) -> Result<std::thread::JoinHandle<Result<(), PipelineError>>, PipelineError> {
    let fatal = fatal.clone();
    let part = part.to_string();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            f().map_err(|e| {
                fatal.report(ServeError::Pipeline(PipelineError::Stopped(part.clone())));
                e.in_part(part)
            })
        })
        .map_err(|source| PipelineError::Spawn {
            name: name.into(),
            source,
        })
}

fn join_thread(
    h: std::thread::JoinHandle<Result<(), PipelineError>>,
    what: &str,
) -> Result<(), PipelineError> {
    h.join()
        .map_err(|_| PipelineError::Panicked(what.to_string()))?
}

/// What every stage reports to: the metrics and the HTTP endpoints' view of the service.
pub(crate) struct Observed {
    state: Arc<HttpState>,
    metrics: ServeMetrics,
    sink_metrics: SinkMetrics,
}

impl Observed {
    fn register(
        config: &Settings,
        http_token: Option<paceline_model::secret::Secret>,
    ) -> Result<Observed, ServeError> {
        let registry = Registry::new();
        let metrics = ServeMetrics::register(&registry)?;
        metrics.set_cadences(config);
        metrics.set_plan(config, &config.service.public_url);
        let sink_metrics = SinkMetrics::register(&registry)?;
        let state = Arc::new(HttpState {
            registry,
            sink: Arc::new(SinkHealth::default()),
            sources_assigned: AtomicBool::new(false),
            kafka: Arc::new(Trouble::new(
                "Kafka",
                (
                    "kafka.unavailable_timeout_s",
                    Duration::from_secs(config.kafka.unavailable_timeout_s),
                ),
            )),
            influx: Arc::new(Trouble::new(
                "InfluxDB",
                (
                    "influx.start_timeout_s",
                    Duration::from_secs(config.influx.start_timeout_s),
                ),
            )),
            dataflow: Mutex::new(None),
            board: Arc::new(Board::new(config.plan_specs())),
            mode: "serve",
            language: config.service.page_language(),
            ready: metrics.ready.clone(),
            cluster: placement_of(config).map(|placement| {
                http::ClusterView::new(
                    placement,
                    config.cluster.http_addresses(&config.service.http_addr),
                    http_token.clone(),
                )
            }),
            token: http_token,
        });
        Ok(Observed {
            state,
            metrics,
            sink_metrics,
        })
    }
}

/// The HTTP endpoints, up from the start to the very end.
struct Http {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Http {
    async fn start(config: &Settings, state: Arc<HttpState>) -> Result<Http, ServeError> {
        let addr = &config.service.http_addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen {
                addr: addr.clone(),
                source,
            })?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let limits = http_server::HttpLimits::from_config(&config.service);
        let task = tokio::spawn(http_server::run_server(
            listener,
            http::router(state),
            limits,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
        tracing::info!(%addr, "HTTP endpoints up");
        Ok(Http { stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Runs the service until `shutdown` resolves (or a fatal error), then shuts down
/// gracefully.
pub async fn serve(
    config: Settings,
    secrets: Secrets,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<ServeReport, ServeError> {
    // A cluster without its secret is a configuration error: found before anything starts.
    let spec = cluster_spec(&config, secrets.cluster_secret.as_ref())?;
    let observed = Observed::register(&config, secrets.http_token.clone())?;
    let writer =
        InfluxWriter::new(&config.influx, &secrets.influx).map_err(ServeError::InfluxClient)?;
    // HTTP first, so that probes answer (not ready) while Kafka is being reached.
    let http = Http::start(&config, observed.state.clone()).await?;
    let result = run(config, secrets, options, spec, shutdown, observed, writer).await;
    http.stop().await;
    result
}

/// Restore (or join the cluster) while reaching Kafka and the database, start the
/// pipeline, run it until stopped, shut it down.
async fn run(
    config: Settings,
    secrets: Secrets,
    options: ServeOptions,
    spec: Option<ClusterSpec>,
    shutdown: impl Future<Output = ()>,
    observed: Observed,
    writer: InfluxWriter,
) -> Result<ServeReport, ServeError> {
    // Restore before reading anything: `/readyz` stays 503 until the sources are assigned.
    let store = Store::open(Path::new(&config.service.state_dir)).map_err(ServeError::StateDir)?;
    let kafka = client_config(&config.kafka, secrets.kafka_sasl_password.as_ref());
    let mut shutdown = std::pin::pin!(shutdown);
    // From the first second, Kafka and the database are looked at as a running service
    // looks at them: what the start waits for is on /readyz and in the log.
    let start = async {
        tokio::try_join!(
            restore_or_join(&config, &store, options, spec),
            discover_partitions(&config, &kafka, &observed.state.kafka),
            reach_influx(&writer, &observed.state.influx, &config),
        )
    };
    // A shutdown while starting stops at once: nothing was read.
    let ((restored, cluster), partitions, ()) = tokio::select! {
        started = start => started?,
        _ = &mut shutdown => {
            tracing::info!("shutdown requested while starting");
            return Ok(ServeReport::default());
        }
    };
    let config = with_dead_letter_limit(config, &kafka).await?;
    if let Some(c) = &restored {
        observed.state.board.record(&c.board);
        observed
            .metrics
            .checkpoint_last_success
            .set(c.taken_ms as f64 / 1e3);
    }
    let mut pipeline = Pipeline::start(
        &config, &kafka, store, restored, partitions, &observed, writer, cluster,
    )?;
    let early = pipeline.until_stopped(&mut shutdown).await;
    let timeout = Duration::from_secs(config.service.shutdown_timeout_s);
    pipeline.shut_down(early, timeout).await
}

/// The checkpoint to resume from, and the cluster when there is one.
async fn restore_or_join(
    config: &Settings,
    store: &Store,
    options: ServeOptions,
    spec: Option<ClusterSpec>,
) -> Result<(Option<Checkpoint>, Option<Connected>), ServeError> {
    match spec {
        None => Ok((restore(config, store, options)?, None)),
        Some(spec) => {
            let (connected, restored) = join_cluster(config, store, options, spec).await?;
            Ok((restored, Some(connected)))
        }
    }
}

/// The partitions of each stream's topic, creating missing topics first when
/// `kafka.create_topics` says so; the start's look of the Kafka watch.
async fn discover_partitions(
    config: &Settings,
    kafka: &rdkafka::config::ClientConfig,
    health: &Trouble,
) -> Result<[Vec<i32>; 3], ServeError> {
    let topics = Stream::ALL.map(|s| config.streams.get(s).topic.clone());
    // The dead-letter topic is looked at like the inputs: a missing one fails the start,
    // named, rather than the first rejection.
    let mut looked_at = topics.to_vec();
    looked_at.push(config.kafka.dead_letter_topic.clone());
    let watch = TopicWatch::new(kafka, looked_at)?;
    let create = config.kafka.create_topics.then(|| watch::ToCreate {
        client: kafka.clone(),
        topics: topics_to_create(config),
        timeout: Duration::from_secs(config.kafka.metadata_timeout_s),
    });
    watch::first_look(watch, health, create).await
}

/// The configuration with `kafka.dead_letter_max_bytes` lowered to what the dead-letter
/// topic takes (its `max.message.bytes`), where the brokers say.
async fn with_dead_letter_limit(
    mut config: Settings,
    kafka: &rdkafka::config::ClientConfig,
) -> Result<Settings, ServeError> {
    let (client, topic) = (kafka.clone(), config.kafka.dead_letter_topic.clone());
    // Short: a broker without DescribeConfigs (librdkafka's mock cluster) never answers,
    // and the configured limit applies then.
    let timeout = Duration::from_secs(config.kafka.metadata_timeout_s.min(3));
    let topic_max = tokio::task::spawn_blocking(move || {
        paceline_ingest::topic_max_message_bytes(&client, &topic, timeout)
    })
    .await?;
    let configured = config.kafka.dead_letter_max_bytes;
    let limit = topic_max.map_or(configured, |t| configured.min(t));
    tracing::info!(
        topic = %config.kafka.dead_letter_topic,
        topic_max_message_bytes = ?topic_max,
        dead_letter_max_bytes = limit,
        "dead letters larger than this are cut, their original size and SHA-256 in headers"
    );
    config.kafka.dead_letter_max_bytes = limit;
    Ok(config)
}

/// How often a starting service asks the database again.
const INFLUX_LOOK_EVERY: Duration = Duration::from_secs(2);

/// Waits until the database takes writes from this writer. Unreachable, failing, or
/// refusing the credentials, it is trouble (on `/readyz`, in the log) until
/// `influx.start_timeout_s`; any other refusal (a database or bucket that does not exist)
/// stops the start at once, as a refused batch stops a running service, unless
/// `influx.retry_client_errors`.
async fn reach_influx(
    writer: &InfluxWriter,
    health: &Trouble,
    config: &Settings,
) -> Result<(), ServeError> {
    let url = writer.url();
    loop {
        match writer.check().await {
            // 400: the checks of credentials and database passed; only the empty body was
            // refused (InfluxDB 2.x may refuse a write with no points).
            Ok(()) | Err(WriteError::Refused { status: 400, .. }) => {
                health.record(None);
                return Ok(());
            }
            Err(e @ WriteError::Refused { status: 401 | 403, .. }) => health.record(Some(format!(
                "{url}: {e} (the credentials: PACELINE_INFLUX_TOKEN for api v2, PACELINE_INFLUX_USER and PACELINE_INFLUX_PASSWORD for v1, or their _FILE forms)"
            ))),
            Err(e @ WriteError::Refused { .. }) if !config.influx.retry_client_errors => {
                return Err(ServeError::Sink(format!(
                    "InfluxDB {url}: {e}; stopping at start (set influx.retry_client_errors = true to keep retrying)"
                )));
            }
            Err(e) => health.record(Some(format!("{url}: {e}"))),
        }
        if let Some(why) = health.past_bound() {
            return Err(ServeError::Sink(format!("InfluxDB: {why}")));
        }
        tokio::time::sleep(INFLUX_LOOK_EVERY).await;
    }
}

/// This process's place in the cluster, when `[cluster]` lists several processes.
fn placement_of(config: &Settings) -> Option<Placement> {
    let c = &config.cluster;
    c.is_cluster().then(|| Placement {
        process: c.process_index.unwrap_or(0),
        processes: c.processes.len(),
        workers: config.dataflow.workers.max(1),
    })
}

/// How to reach the other processes and prove this one of them, when `[cluster]` lists
/// several; the secret is required then.
fn cluster_spec(
    config: &Settings,
    secret: Option<&paceline_model::secret::Secret>,
) -> Result<Option<ClusterSpec>, ServeError> {
    let Some(placement) = placement_of(config) else {
        return Ok(None);
    };
    let c = &config.cluster;
    let secret = secret.ok_or_else(|| {
        ServeError::Config(format!(
            "PACELINE_CLUSTER_SECRET (or PACELINE_CLUSTER_SECRET_FILE): required with several processes (cluster.processes lists {}); the same on every process",
            c.processes.len()
        ))
    })?;
    Ok(Some(ClusterSpec {
        placement,
        addresses: c.processes.clone(),
        connect_timeout: Duration::from_secs(c.connect_timeout_s),
        fingerprint: fingerprint(config),
        secret: secret.expose().as_bytes().to_vec(),
        build: format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            crate::build::revision()
        ),
        peer_timeout: Duration::from_secs(c.peer_timeout_s),
        tls: c.tls().map_err(|e| ServeError::Config(e.to_string()))?,
    }))
}

/// A digest of every setting the processes of a cluster must share: the pipeline's
/// (cadences, horizons, topics, the plan: processes configured differently would compute
/// different series) and the epochs' (linger, checkpoint interval, the clock rule: they
/// must advance and checkpoint together). A fixed hash: the processes may be of builds
/// that differ only in the toolchain.
fn fingerprint(config: &Settings) -> u64 {
    let pipeline = paceline_model::config::to_toml(&config.pipeline);
    let s = &config.service;
    let epochs = format!(
        "epoch_linger_ms={}\ncheckpoint_interval_s={}\nidle_watermark_follows_clock={}\n",
        s.epoch_linger_ms, s.checkpoint_interval_s, s.idle_watermark_follows_clock
    );
    paceline_dataflow::stable_hash([pipeline.as_bytes(), epochs.as_bytes()])
}

/// Connects to the other processes, and agrees with them on the newest checkpoint every
/// one of them holds: that one is loaded (checked against the configuration), or none.
async fn join_cluster(
    config: &Settings,
    store: &Store,
    options: ServeOptions,
    spec: ClusterSpec,
) -> Result<(Connected, Option<Checkpoint>), ServeError> {
    let setup = ServeError::StateDir;
    if options.rebuild {
        let removed = store.clear().map_err(setup)?;
        tracing::warn!(
            removed,
            "rebuild: this process's checkpoints discarded; the cluster starts over"
        );
    }
    store.check_format().map_err(ServeError::StateDir)?;
    let now = Compatibility::of(config, spec.placement.process, spec.placement.processes);
    // Every valid checkpoint is read once: the newest is kept (the one the cluster
    // resumes from unless a peer lacks it), the others only for their sequences.
    let mut newest = None;
    let mut held = Vec::new();
    for (path, checkpoint) in store.valid().map_err(setup)? {
        held.push(checkpoint.sequence);
        if newest.is_none() {
            // Refused here, before the others are reached: a cluster resized, or
            // reconfigured, must not start over silently on the processes that hold none.
            check_compatible(&path, &checkpoint, &now)?;
            newest = Some((path, checkpoint));
        }
    }
    tracing::info!(
        process = spec.placement.process,
        processes = spec.placement.processes,
        peers = ?spec.addresses,
        tls = spec.tls.is_some(),
        "connecting to the cluster"
    );
    let connected =
        tokio::task::spawn_blocking(move || paceline_dataflow::cluster::connect(&spec, &held))
            .await??;
    let Some(sequence) = connected.resume_from else {
        // Some process holds checkpoints, but none every process holds: starting over
        // would re-read every topic from its beginning, which nobody asked for.
        if connected.held.iter().any(|h| !h.is_empty()) {
            return Err(ServeError::Incompatible(format!(
                "no checkpoint every process of the cluster holds ({}); start every process with `paceline serve --rebuild` to rebuild the state from the topics' beginning",
                holdings(&connected.held)
            )));
        }
        tracing::info!("no checkpoint on any process: starting from the topics' beginning");
        return Ok((connected, None));
    };
    // Checkpoints past the one resumed from are abandoned: the cluster numbers its next
    // ones by the clock alike on every process.
    let abandoned = store.discard_after(sequence).map_err(setup)?;
    if abandoned > 0 {
        tracing::info!(
            abandoned,
            sequence,
            "removed checkpoints newer than the one the cluster resumes from"
        );
    }
    let (path, checkpoint) = match newest {
        Some((path, c)) if c.sequence == sequence => (path, c),
        _ => {
            let (path, c) = store.load(sequence).map_err(setup)?;
            check_compatible(&path, &c, &now)?;
            (path, c)
        }
    };
    tracing::info!(
        checkpoint = %path.display(),
        sequence,
        "the cluster resumes from the newest checkpoint every process holds"
    );
    Ok((connected, Some(checkpoint)))
}

/// What each process of a cluster holds, for a refusal: `process 0 holds 12, 13; process
/// 1 holds none`.
fn holdings(held: &[Vec<u64>]) -> String {
    held.iter()
        .enumerate()
        .map(|(i, h)| {
            if h.is_empty() {
                format!("process {i} holds none")
            } else {
                let list: Vec<String> = h.iter().map(u64::to_string).collect();
                format!("process {i} holds {}", list.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The newest valid checkpoint to start from, checked against the configuration; None
/// to start from the topics' beginning (no checkpoint, or `--rebuild`).
fn restore(
    config: &Settings,
    store: &Store,
    options: ServeOptions,
) -> Result<Option<Checkpoint>, ServeError> {
    let setup = ServeError::StateDir;
    if options.rebuild {
        let removed = store.clear().map_err(setup)?;
        tracing::warn!(
            removed,
            "rebuild: checkpoints discarded; starting from the topics' beginning"
        );
        return Ok(None);
    }
    store.check_format().map_err(ServeError::StateDir)?;
    let Some((path, checkpoint)) = store.load_newest().map_err(setup)? else {
        tracing::info!(state_dir = %config.service.state_dir, "no valid checkpoint: starting from the topics' beginning");
        return Ok(None);
    };
    check_compatible(&path, &checkpoint, &Compatibility::of(config, 0, 1))?;
    let partitions: usize = checkpoint.coordinator.offsets.iter().map(Vec::len).sum();
    tracing::info!(
        checkpoint = %path.display(),
        sequence = checkpoint.sequence,
        taken_ms = checkpoint.taken_ms,
        partitions,
        positions = %checkpoint.coordinator.positions(),
        "resuming from checkpoint"
    );
    Ok(Some(checkpoint))
}

/// Refuses a checkpoint taken under settings that differ from `now`, naming the file and
/// every difference.
fn check_compatible(
    path: &Path,
    checkpoint: &Checkpoint,
    now: &Compatibility,
) -> Result<(), ServeError> {
    let differences = checkpoint.compatibility.differences(now);
    if differences.is_empty() {
        return Ok(());
    }
    Err(ServeError::Incompatible(
        CheckpointError::Incompatible {
            path: path.to_path_buf(),
            differences,
        }
        .to_string(),
    ))
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
