//! Exactly-once recovery on real services (tansu, InfluxDB 1.x): checkpoints, restarts and
//! what the database holds afterwards, compared with `paceline replay` of the same events
//! (docs/outputs.md equivalence, status fields included).
//!
//! - Kill: a producer feeds the topics while the service runs; it is killed with SIGKILL
//!   at 10 random moments, each after a checkpoint, and restarted on the same state
//!   directory; every restart resumes from a checkpoint, the last run reads far fewer
//!   events than were produced, and the result is equivalent.
//! - Stale point: corrections emitted while the database is frozen (writes hang) and the
//!   process killed before they were acknowledged are in the database after a restart.
//! - Corrupt checkpoint: the newest checkpoint truncated, then garbled: start-up names it,
//!   falls back to the previous one, and the result is still equivalent; a checkpoint from
//!   another worker count is refused (exit 2) and `--rebuild` starts over.
//! - Panic: a panic in a source thread, the coordinator or a timely worker stops the
//!   service within seconds with exit code 1 and the panic's message.

use std::time::Duration;

use paceline_model::{Nanos, Stream};
use paceline_runtime::settings::InfluxApi;
use paceline_runtime::settings::Settings;
use paceline_tests::services::{Influx1, Tansu, TempDir};
use paceline_tests::{
    compare, create_topics, influx1_env, kafka, now_ms, reach, readback, scenario_config, topics,
    Dataset, Serve,
};

/// A scenario's configuration for recovery: checkpoints every second, and watermarks that
/// do not jump to the wall clock while the producer pauses between chunks.
fn recovery_config(prefix: &str) -> Settings {
    let mut c = scenario_config(prefix);
    c.influx.api = InfluxApi::V1;
    c.service.checkpoint_interval_s = 1;
    c.service.idle_watermark_follows_clock = false;
    c
}

/// The database holds an output equivalent to replay's, status fields included.
fn assert_equivalent(
    influx: &Influx1,
    db: &str,
    config: &Settings,
    data: &Dataset,
    serve: &mut Serve,
) -> paceline_tests::Metrics {
    let (expected, _) = data.replay(config);
    let m = serve.wait_drained(0, data.final_watermarks(config), Duration::from_secs(300));
    let actual = readback::influx1(influx, db, &config.indicators.measurement);
    let diff = compare(config, data, &expected, &actual, reach(&m));
    assert!(
        diff.is_empty(),
        "{db}: the database differs from replay:\n{}\n{}",
        diff.join("\n"),
        serve.proc.log_text()
    );
    m
}

/// Waits for the run's log to say where it started: it must be a checkpoint.
fn assert_resumed(serve: &Serve) -> String {
    let mut log = String::new();
    paceline_tests::eventually("the restart logs where it starts", 60, || {
        log = serve.proc.log_text();
        log.contains("resuming from checkpoint") || log.contains("no valid checkpoint")
    });
    assert!(
        log.contains("resuming from checkpoint"),
        "a restart resumes from a checkpoint:\n{log}"
    );
    log
}

/// A small deterministic generator for the kill moments.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// When `serve` first counted an event, within `within` (`None`: it read nothing, as when
/// everything produced was read before).
fn first_event_read(serve: &Serve, within: Duration) -> Option<u128> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if serve.metrics().sum("paceline_events_total", &[]) >= 1.0 {
            return Some(now_ms());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn killed_ten_times(tansu: &Tansu, influx: &Influx1) {
    let prefix = "rec-kill";
    let db = "rec_kill";
    create_topics(tansu, prefix, 2);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let data = Dataset::new(53, 2, false, &[]);
    let config = recovery_config(prefix);
    let env = influx1_env(tansu, influx, db);
    let (t, _) = topics(prefix);
    let brokers = tansu.brokers();
    let chunks: Vec<&[Vec<u8>]> = data.lines.chunks(data.lines.len() / 24 + 1).collect();
    let mut rng = Lcg(20261130);
    let dir = std::thread::scope(|s| {
        let mut dir = TempDir::new("serve-kill");
        let producer = s.spawn(|| {
            for chunk in &chunks {
                kafka::produce(&brokers, &t, chunk);
                std::thread::sleep(Duration::from_millis(600));
            }
        });
        for run in 0..10 {
            let started = now_ms();
            let mut serve = Serve::start_in(dir, &config, &env);
            if run > 0 {
                assert_resumed(&serve);
            }
            // Each killed run carries the reading forward: it waits for a checkpoint taken
            // after it read something (while anything is left), however slowly a loaded
            // machine starts it; otherwise ten runs may checkpoint only what they restored.
            let read_at = first_event_read(&serve, Duration::from_secs(30)).unwrap_or(started);
            serve.wait_checkpoint_after(read_at, Duration::from_secs(120));
            std::thread::sleep(Duration::from_millis(rng.below(1500)));
            dir = serve.kill();
            assert!(!Serve::checkpoints(&dir).is_empty());
        }
        producer.join().expect("the producer finished");
        dir
    });
    let mut serve = Serve::start_in(dir, &config, &env);
    assert_resumed(&serve);
    let m = assert_equivalent(influx, db, &config, &data, &mut serve);
    let consumed = m.sum("paceline_events_total", &[]) as usize;
    assert!(
        consumed < data.lines.len() / 2,
        "the last run read {consumed} of {} events: it should resume, not re-read",
        data.lines.len()
    );
    serve.stop_cleanly(None);
    // The final checkpoint's positions are committed for lag tools: every message read (a
    // partition that never held a message has nothing to commit).
    for topic in &t {
        let committed: Vec<i64> = kafka::committed(&brokers, &config.kafka.group_id, topic, 2)
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect();
        let high = kafka::high_watermarks(&brokers, topic, 2);
        assert!(high.iter().sum::<i64>() > 0, "{topic} held messages");
        assert_eq!(committed, high, "committed offsets of {topic}");
    }
}

/// Filing events of the last 300 days of the data (every 7th): held back and produced
/// later, they correct ticks already written.
fn split_late(data: &Dataset) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let end: Nanos = data.span()[Stream::Filings.index()]
        .map(|(_, max)| max)
        .expect("filings");
    let from = end - 300 * paceline_model::time::DAY;
    let (mut first, mut late) = (Vec::new(), Vec::new());
    let mut k = 0;
    for l in &data.lines {
        let is_late = paceline_decode::decode(l, None).is_ok_and(|e| {
            e.body.stream() == Stream::Filings && e.at >= from && {
                k += 1;
                k % 7 == 0
            }
        });
        if is_late {
            late.push(l.clone());
        } else {
            first.push(l.clone());
        }
    }
    (first, late)
}

fn stale_point(tansu: &Tansu) {
    let influx = Influx1::start();
    let prefix = "rec-stale";
    let db = "rec_stale";
    create_topics(tansu, prefix, 1);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let (first, late) = split_late(&Dataset::new(57, 8, true, &[]));
    assert!(late.len() > 20, "{} late events", late.len());
    let config = recovery_config(prefix);
    let env = influx1_env(tansu, &influx, db);
    let (t, _) = topics(prefix);

    // Everything but the late events, written and checkpointed.
    let part = Dataset::from_lines(first.clone());
    kafka::produce(&tansu.brokers(), &t, &first);
    let mut serve = Serve::start(&config, &env);
    serve.wait_drained(
        first.len(),
        part.final_watermarks(&config),
        Duration::from_secs(300),
    );
    serve.wait_checkpoint_after(now_ms(), Duration::from_secs(60));

    // The database freezes; the late events arrive and their corrections queue up.
    influx.pause();
    kafka::produce(&tansu.brokers(), &t, &late);
    let total = first.len() + late.len();
    paceline_tests::eventually("the late events are read", 120, || {
        let m = serve.metrics();
        m.sum("paceline_events_total", &[]) as usize >= total
            && m.sum("paceline_sink_pending_points", &[]) > 0.0
            && m.sum("paceline_corrections_total", &[]) > 0.0
    });
    let dir = serve.kill();
    influx.resume();

    let mut serve = Serve::start_in(dir, &config, &env);
    assert_resumed(&serve);
    let mut all = first;
    all.extend(late);
    let data = Dataset::from_lines(all);
    assert_equivalent(&influx, db, &config, &data, &mut serve);
    serve.stop_cleanly(None);
}

fn corrupt_checkpoints(tansu: &Tansu, influx: &Influx1) {
    let prefix = "rec-corrupt";
    let db = "rec_corrupt";
    create_topics(tansu, prefix, 1);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let data = Dataset::new(59, 8, false, &[]);
    let config = recovery_config(prefix);
    let env = influx1_env(tansu, influx, db);
    let (t, _) = topics(prefix);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let mut serve = Serve::start(&config, &env);
    assert_equivalent(influx, db, &config, &data, &mut serve);
    let mut dir = serve.stop_keeping_state();

    type Damage = fn(&[u8]) -> Vec<u8>;
    let damages: [(&str, Damage); 2] = [
        ("truncated", |b| b[..b.len() / 2].to_vec()),
        ("garbled", |b| {
            let mut b = b.to_vec();
            let mid = b.len() / 2;
            for x in &mut b[mid..mid + 16] {
                *x ^= 0xA5;
            }
            b
        }),
    ];
    for (what, damage) in damages {
        let files = Serve::checkpoints(&dir);
        assert_eq!(files.len(), 3, "the last 3 checkpoints are kept: {files:?}");
        let bytes = std::fs::read(&files[0]).expect("newest checkpoint");
        std::fs::write(&files[0], damage(&bytes)).expect("damaged");
        let mut serve = Serve::start_in(dir, &config, &env);
        let log = assert_resumed(&serve);
        let name = |p: &std::path::PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            log.contains("skipping an invalid checkpoint") && log.contains(&name(&files[0])),
            "{what}: the damaged checkpoint is named:\n{log}"
        );
        let resumed = log
            .lines()
            .find(|l| l.contains("resuming from checkpoint"))
            .unwrap_or_else(|| panic!("{what}: resumed from a checkpoint:\n{log}"));
        assert!(
            resumed.contains(&name(&files[1])),
            "{what}: resumed from the previous checkpoint {}:\n{log}",
            name(&files[1])
        );
        assert_equivalent(influx, db, &config, &data, &mut serve);
        dir = serve.stop_keeping_state();
    }

    // Another worker count: refused, exit 2, naming the setting; `--rebuild` starts over.
    let mut other = config.clone();
    other.dataflow.workers = config.dataflow.workers + 1;
    let (code, log) = Serve::run_to_exit(&dir, &other, &env, &[]);
    assert_eq!(
        code,
        Some(2),
        "an incompatible checkpoint is refused:\n{log}"
    );
    assert!(
        log.contains("dataflow.workers: checkpoint 2, configuration 3")
            && log.contains("--rebuild"),
        "the refusal names the setting and the way out:\n{log}"
    );
    let mut serve = Serve::start_in_with(dir, &other, &env, &["--rebuild"]);
    paceline_tests::eventually("the rebuild starts from the beginning", 60, || {
        serve
            .proc
            .log_text()
            .contains("starting from the topics' beginning")
    });
    let m = assert_equivalent(influx, db, &other, &data, &mut serve);
    assert_eq!(
        m.sum("paceline_events_total", &[]) as usize,
        data.lines.len(),
        "a rebuild reads everything again"
    );
    serve.stop_cleanly(None);
}

/// A panic in the pipeline (a source thread, the coordinator, a timely worker, each
/// through its failpoint) stops the service within seconds with exit code 1 and the
/// panic's message; the next start goes on normally.
fn a_panic_stops_the_service(tansu: &Tansu, influx: &Influx1) {
    let prefix = "rec-panic";
    let db = "rec_panic";
    create_topics(tansu, prefix, 1);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let data = Dataset::new(67, 50, true, &[]);
    let config = recovery_config(prefix);
    let (t, _) = topics(prefix);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let env = influx1_env(tansu, influx, db);
    let dir = TempDir::new("serve-panic");
    for (failpoint, thread) in [
        ("source", "source-"),
        ("coordinator", "coordinator"),
        ("worker", "timely:work-"),
    ] {
        let mut with_failpoint = env.to_vec();
        with_failpoint.push(("PACELINE_FAILPOINT", failpoint.to_string()));
        let started = std::time::Instant::now();
        let (code, log) = Serve::run_to_exit(&dir, &config, &with_failpoint, &[]);
        let took = started.elapsed();
        assert_eq!(
            code,
            Some(1),
            "a panic in {failpoint} stops the service:\n{log}"
        );
        assert!(
            log.contains(&format!("failpoint `{failpoint}` reached")) && log.contains(thread),
            "the panic's message and thread ({failpoint}):\n{log}"
        );
        // Start-up (Kafka metadata, restore) included; a stall would run into minutes.
        assert!(
            took < std::time::Duration::from_secs(30),
            "{failpoint}: exit after {took:?}"
        );
    }
    let mut serve = Serve::start_in(dir, &config, &env);
    assert_equivalent(influx, db, &config, &data, &mut serve);
    serve.stop_cleanly(None);
}

#[test]
fn recovery_on_real_services() {
    let tansu = Tansu::start();
    let influx = Influx1::start();
    let (tansu, influx) = (&tansu, &influx);
    paceline_tests::run_side_by_side(vec![
        (
            "killed ten times",
            Box::new(move || killed_ten_times(tansu, influx)),
        ),
        ("stale point", Box::new(move || stale_point(tansu))),
        (
            "corrupt checkpoint",
            Box::new(move || corrupt_checkpoints(tansu, influx)),
        ),
        (
            "panic",
            Box::new(move || a_panic_stops_the_service(tansu, influx)),
        ),
    ]);
}
