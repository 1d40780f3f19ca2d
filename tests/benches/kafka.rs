//! `paceline serve` end to end on librdkafka's mock cluster, which runs in this bench's
//! process while the service runs in its own, so the broker is not the bottleneck the
//! local tansu is (~30 000 messages/s). Points go to InfluxDB 1.x. Three measures, each
//! printed as one JSON object per line (`scripts/bench` gathers them):
//!
//! - `throughput`: the generated district (`BENCH_KAFKA_SCALE`, default 1) produced first
//!   without keys (the mock keeps 5 MB per partition, hence 64 evenly filled partitions
//!   per topic), then the service
//!   started; events/s from its first counted event until every partition is read.
//! - `latency`: events produced at a steady `BENCH_RATE` per second (default 10 000) for
//!   `BENCH_SECONDS` (default 30) while the service runs; tick latency p50/p99 from its
//!   histogram (`paceline_tick_latency_seconds`, interpolated within buckets).
//! - `restart`: `BENCH_RESTART_SCALE` (default 10, ~10 M events) of history streamed
//!   through with checkpoints every 10 s, 50 000 more events after the last checkpoint,
//!   the service killed with SIGKILL, then the time from the restart until it is ready,
//!   has read those events again, its watermarks are back where they were and every point
//!   is written (a restore rewrites every tick still open to corrections).
//!
//! - `scaling`: the same pre-filled district (`BENCH_SCALING_SCALE`, default 1) read
//!   three times, by 1 process of 1 worker, 1 process of 2 workers and a cluster of 2
//!   processes of 1 worker, each from the topics' beginning: events/s of each.
//!
//! Run: `cargo bench -p paceline-tests --bench kafka -- throughput|latency|restart|scaling`
//! (after `scripts/test` installed InfluxDB).

use std::time::{Duration, Instant};

use paceline_model::Stream;
use paceline_runtime::settings::{InfluxApi, Settings};
use paceline_tests::services::Influx1;
use paceline_tests::{kafka, now_ms, scenario_config, topics, Metrics, Serve};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// Partitions of each input topic: the mock keeps 5 MB per partition (librdkafka's
/// rdkafka_mock.c) and drops older messages, so the district's 300 MB, spread evenly
/// (produced without keys), need this many.
const PARTITIONS: i32 = 64;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The generated district at `scale`, as produced to Kafka.
fn district(scale: f64) -> Vec<Vec<u8>> {
    paceline_generate::generate(1, scale)
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

/// A mock cluster with the topics, InfluxDB with the database, and the service's
/// configuration and environment for them.
struct Bench {
    mock: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    influx: Influx1,
    topics: [String; 3],
    config: Settings,
}

impl Bench {
    fn new() -> Bench {
        let influx = Influx1::start();
        let mock = MockCluster::new(1).expect("mock cluster");
        let prefix = "bench";
        let (t, dl) = topics(prefix);
        for name in &t {
            mock.create_topic(name, PARTITIONS, 1).expect("topic");
        }
        mock.create_topic(&dl, 1, 1).expect("topic");
        influx.query("", "CREATE DATABASE bench");
        let mut config = scenario_config(prefix);
        config.influx.api = InfluxApi::V1;
        config.service.idle_watermark_follows_clock = false;
        Bench {
            mock,
            influx,
            topics: t,
            config,
        }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PACELINE_KAFKA_BROKERS", self.mock.bootstrap_servers()),
            ("PACELINE_INFLUX_API", "v1".to_string()),
            ("PACELINE_INFLUX_URL", self.influx.url()),
            ("PACELINE_INFLUX_DB", "bench".to_string()),
        ]
    }

    /// Produces without keys: the partitions fill evenly (see [`PARTITIONS`]).
    fn produce(&self, lines: &[Vec<u8>]) {
        kafka::produce_with(&self.mock.bootstrap_servers(), &self.topics, lines, false);
    }

    fn start(&self) -> Serve {
        Serve::start(&self.config, &self.env())
    }

    /// Starts `processes` processes of `workers` workers each, as one cluster when several.
    fn start_layout(&self, processes: usize, workers: usize) -> Vec<Serve> {
        let mut config = self.config.clone();
        config.dataflow.workers = workers;
        let peers: Vec<String> = (0..processes)
            .map(|_| format!("127.0.0.1:{}", paceline_tests::services::free_port()))
            .collect();
        (0..processes)
            .map(|i| {
                let mut env = self.env();
                if processes > 1 {
                    env.push(("PACELINE_PEERS", peers.join(",")));
                    env.push(("PACELINE_PROCESS_INDEX", i.to_string()));
                    env.push((
                        "PACELINE_CLUSTER_SECRET",
                        "bench-cluster-secret".to_string(),
                    ));
                }
                Serve::start(&config, &env)
            })
            .collect()
    }
}

/// Reading `n` pre-filled events: from the first counted event until the count (summed
/// over the processes) reaches `n` or has not grown for 2 s (the mock may have dropped
/// some of the oldest messages). The count, the time reading took, and the time from
/// `started`.
fn read_through(procs: &mut [Serve], n: f64, started: Instant) -> (f64, Duration, Duration) {
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<Instant> = None;
    let mut grew = (started, 0.0);
    loop {
        for p in procs.iter_mut() {
            assert!(
                p.proc.running(),
                "paceline serve exited:\n{}",
                p.proc.log_text()
            );
        }
        let c: f64 = procs.iter().map(|p| counted(&p.metrics())).sum();
        let now = Instant::now();
        if c > 0.0 && first.is_none() {
            first = Some(now);
        }
        if c > grew.1 {
            grew = (now, c);
        }
        if c >= n || (c > 0.0 && now - grew.0 > Duration::from_secs(2)) {
            let (done, c) = grew;
            return (c, done - first.unwrap_or(started), done - started);
        }
        assert!(now < deadline, "not read within 900 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(measure: &str, value: f64, unit: &str, detail: &str) {
    println!(
        "{}",
        serde_json::json!({"measure": measure, "value": value, "unit": unit, "detail": detail})
    );
}

/// Polls the service's metrics every 100 ms until `done` holds; the metrics then.
fn poll_until(
    serve: &mut Serve,
    timeout: Duration,
    mut done: impl FnMut(&Serve, &Metrics) -> bool,
) -> Metrics {
    let deadline = Instant::now() + timeout;
    loop {
        assert!(
            serve.proc.running(),
            "paceline serve exited:\n{}",
            serve.proc.log_text()
        );
        let m = serve.metrics();
        if done(serve, &m) {
            return m;
        }
        assert!(Instant::now() < deadline, "not done within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn counted(m: &Metrics) -> f64 {
    m.sum("paceline_events_total", &[])
}

/// Produces `lines` on a thread of its own, at the producer's full speed.
fn produce_in_background(bench: &Bench, lines: Vec<Vec<u8>>) -> std::thread::JoinHandle<()> {
    let brokers = bench.mock.bootstrap_servers();
    let topics = bench.topics.clone();
    std::thread::spawn(move || kafka::produce_with(&brokers, &topics, &lines, false))
}

/// Waits until the count of events read has not grown for `quiet`; the metrics then.
fn quiet_for(serve: &mut Serve, quiet: Duration) -> Metrics {
    let mut grew = (Instant::now(), -1.0);
    poll_until(serve, Duration::from_secs(3600), |_, m| {
        let c = counted(m);
        if c > grew.1 {
            grew = (Instant::now(), c);
        }
        grew.0.elapsed() > quiet
    })
}

fn throughput() {
    let bench = Bench::new();
    let lines = district(env_f64("BENCH_KAFKA_SCALE", 1.0));
    let n = lines.len() as f64;
    let produced = Instant::now();
    bench.produce(&lines);
    let produce_s = produced.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut procs = vec![bench.start()];
    let (c, reading, from_start) = read_through(&mut procs, n, started);
    let serve = procs.remove(0);
    let skipped = serve
        .metrics()
        .sum("paceline_source_offset_resets_total", &[]);
    report(
        "kafka_events_per_s",
        c / reading.as_secs_f64(),
        "events/s",
        &format!(
            "{n} events pre-filled on the mock cluster without keys ({PARTITIONS} partitions per topic, 2 workers), {c} counted from first to last in {:.2} s ({:.2} s from start, 100 ms polling); produced at {:.0} events/s; {skipped} offset resets",
            reading.as_secs_f64(),
            from_start.as_secs_f64(),
            n / produce_s
        ),
    );
    let (code, log) = serve.stop();
    assert_eq!(code, Some(0), "graceful stop:\n{log}");
}

/// Quantile `q` of a Prometheus histogram, interpolated linearly within its bucket as
/// Prometheus' `histogram_quantile` does.
fn histogram_quantile(m: &Metrics, name: &str, q: f64) -> Option<f64> {
    let total = m.sum(&format!("{name}_count"), &[]);
    if total == 0.0 {
        return None;
    }
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = m
        .samples(&bucket)
        .filter_map(|(labels, v)| {
            let le = labels.get("le")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (count - lower.1).max(1e-9);
            return Some(lower.0 + (bound - lower.0) * within);
        }
        lower = (bound, count);
    }
    None
}

fn latency() {
    let bench = Bench::new();
    let rate = env_f64("BENCH_RATE", 10_000.0);
    let seconds = env_f64("BENCH_SECONDS", 30.0);
    // In event-time order, so that event time moves steadily and ticks close all along.
    let mut lines = district(1.0);
    lines.sort_by_cached_key(|l| paceline_decode::decode(l, None).map_or(i64::MIN, |e| e.at));
    let total = ((rate * seconds) as usize).min(lines.len());
    let mut serve = bench.start();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bench.mock.bootstrap_servers())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    // A batch every 100 ms, each sent only when its time has come: a steady rate.
    let per_batch = (rate / 10.0).max(1.0) as usize;
    let began = Instant::now();
    for (i, batch) in lines[..total].chunks(per_batch).enumerate() {
        let due = began + Duration::from_millis(100 * i as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for line in batch {
            let stream = kafka::route(line).map_or(Stream::Filings, |(s, _)| s);
            let mut rec: BaseRecord<'_, str, [u8]> =
                BaseRecord::to(&bench.topics[stream.index()]).payload(&line[..]);
            while let Err((_, r)) = producer.send(rec) {
                rec = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every message acknowledged");
    let achieved = total as f64 / began.elapsed().as_secs_f64();
    let mut grew = (Instant::now(), 0.0);
    let m = poll_until(&mut serve, Duration::from_secs(120), |_, m| {
        let c = counted(m);
        if c > grew.1 {
            grew = (Instant::now(), c);
        }
        let quiet = grew.0.elapsed() > Duration::from_secs(2);
        (c >= total as f64 || quiet) && m.sum("paceline_sink_pending_points", &[]) == 0.0
    });
    let name = "paceline_tick_latency_seconds";
    let ticks = m.sum(&format!("{name}_count"), &[]);
    for (q, measure) in [(0.5, "tick_latency_p50_s"), (0.99, "tick_latency_p99_s")] {
        let v = histogram_quantile(&m, name, q).expect("ticks closed during the run");
        report(
            measure,
            v,
            "s",
            &format!("{total} events at {achieved:.0} events/s, {ticks} ticks"),
        );
    }
    let (code, log) = serve.stop();
    assert_eq!(code, Some(0), "graceful stop:\n{log}");
}

/// Each stream's watermark as the service reports it (seconds), by stream name.
fn watermarks(m: &Metrics) -> Vec<(String, f64)> {
    Stream::ALL
        .iter()
        .map(|s| {
            let w = m.sum(
                "paceline_watermark_timestamp_seconds",
                &[("stream", s.as_str())],
            );
            (s.as_str().to_string(), w)
        })
        .collect()
}

fn restart() {
    let mut bench = Bench::new();
    bench.config.service.checkpoint_interval_s = 10;
    let scale = env_f64("BENCH_RESTART_SCALE", 10.0);
    let mut lines = district(scale);
    // The last 50 000 events come after the last checkpoint: the restart reads them again.
    let after = lines.split_off(lines.len().saturating_sub(50_000));
    let n = lines.len();
    let mut serve = bench.start();
    let producer = produce_in_background(&bench, lines);
    poll_until(&mut serve, Duration::from_secs(3600), |_, _| {
        producer.is_finished()
    });
    quiet_for(&mut serve, Duration::from_secs(2));
    serve.wait_checkpoint_after(now_ms(), Duration::from_secs(60));
    bench.produce(&after);
    let m = quiet_for(&mut serve, Duration::from_secs(2));
    let before = watermarks(&m);
    let dir = serve.kill();
    let restarted = Instant::now();
    let mut serve = Serve::start_in(dir, &bench.config, &bench.env());
    // Caught up: ready, the watermarks back where they were, what was read since the last
    // checkpoint counted and every point written (a restore rewrites the ticks still open
    // to corrections); the time is taken at the last poll that was not yet so.
    let mut grew = (restarted, 0.0);
    let mut busy_until = restarted;
    poll_until(&mut serve, Duration::from_secs(600), |serve, m| {
        let now = Instant::now();
        let c = counted(m);
        let back = watermarks(m)
            .iter()
            .zip(&before)
            .all(|((_, now), (_, then))| now >= then);
        let pending = m.sum("paceline_sink_pending_points", &[]);
        let growing = c > grew.1;
        if growing {
            grew = (now, c);
        }
        if c == 0.0 || growing || !back || pending > 0.0 || serve.ready() != 200 {
            busy_until = now;
        }
        now - busy_until > Duration::from_secs(2) && now - grew.0 > Duration::from_secs(2)
    });
    let caught_up = busy_until.max(grew.0) - restarted;
    report(
        "restart_to_caught_up_s",
        caught_up.as_secs_f64(),
        "s",
        &format!(
            "{n} events of history, checkpoints every 10 s, {} events after the last checkpoint, SIGKILL, then ready, those read, the watermarks back and every point written",
            after.len()
        ),
    );
    let (code, log) = serve.stop();
    assert_eq!(code, Some(0), "graceful stop:\n{log}");
}

/// One process of one worker, one of two, and a cluster of two processes of one worker,
/// each reading the same pre-filled topics from the beginning.
fn scaling() {
    let bench = Bench::new();
    let lines = district(env_f64("BENCH_SCALING_SCALE", 1.0));
    let n = lines.len() as f64;
    bench.produce(&lines);
    for (processes, workers, label) in [
        (1, 1, "1 process x 1 worker"),
        (1, 2, "1 process x 2 workers"),
        (2, 1, "2 processes x 1 worker"),
    ] {
        let started = Instant::now();
        let mut procs = bench.start_layout(processes, workers);
        let (c, reading, _) = read_through(&mut procs, n, started);
        println!(
            "{}",
            serde_json::json!({
                "measure": "kafka_scaling_events_per_s",
                "workers": label,
                "value": c / reading.as_secs_f64(),
                "unit": "events/s",
                "detail": format!("{n} events pre-filled on the mock cluster ({PARTITIONS} partitions per topic), {c} counted in {:.2} s from the first to the last", reading.as_secs_f64()),
            })
        );
        // A cluster's process stops alone and the others then stop with exit code 1; a
        // single process stops cleanly.
        for p in procs {
            let (code, log) = p.stop();
            if processes == 1 {
                assert_eq!(code, Some(0), "graceful stop:\n{log}");
            }
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the measure is the first other argument.
    let measure = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "throughput".to_string());
    match measure.as_str() {
        "throughput" => throughput(),
        "latency" => latency(),
        "restart" => restart(),
        "scaling" => scaling(),
        other => panic!("unknown measure `{other}`: throughput, latency, restart or scaling"),
    }
}
