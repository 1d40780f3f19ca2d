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
//! - Upgrade: the newest checkpoint as the previous format's build wrote it is migrated and
//!   resumed from; after a SIGKILL the next start resumes from the checkpoint the new build
//!   wrote.
//! - Panic: a panic in a source thread, the coordinator or a timely worker stops the
//!   service within seconds with exit code 1 and the panic's message.

use std::time::Duration;

use paceline_model::{Indicator, Nanos, SeriesKey, Stream};
use paceline_runtime::serve::checkpoint::{Store, FORMAT_VERSION, MIGRATES_FROM};
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
        "{db}: the database (right) differs from replay (left):\n{}\n{}",
        paceline_tests::explain(&diff, &expected, &actual),
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

/// Ten SIGKILLs while the input is produced: every other one at a random moment from the
/// start (start-up, restore, reading, a checkpoint write), the others after a checkpoint
/// moved the positions on; the last run resumes exactly after its checkpoint's positions
/// and the database ends equal to replay's.
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
    // The positions the newest checkpoint committed, summed over every partition.
    let committed_total = || -> i64 {
        t.iter()
            .flat_map(|topic| kafka::committed(&brokers, &config.kafka.group_id, topic, 2))
            .flatten()
            .sum()
    };
    let dir = std::thread::scope(|s| {
        let mut dir = TempDir::new("serve-kill");
        let producer = s.spawn(|| {
            for chunk in &chunks {
                kafka::produce(&brokers, &t, chunk);
                std::thread::sleep(Duration::from_millis(600));
            }
        });
        for run in 0..10 {
            let before = committed_total();
            let mut serve = Serve::start_in(dir, &config, &env);
            if run % 2 == 1 {
                // Anywhere: during start-up, the restore's rewrite, reading or a checkpoint
                // write (one a second), whatever this moment of this machine holds.
                std::thread::sleep(Duration::from_millis(rng.below(4000)));
                dir = serve.kill();
                continue;
            }
            if run > 0 {
                assert_resumed(&serve);
            }
            // Each killed run carries the reading forward: it is killed only after one of
            // its checkpoints moved the committed positions (while anything is left to
            // read), however slowly a loaded machine starts it. A checkpoint written after
            // the first event read may still hold only what was restored (its boundary
            // came first), so ten runs could otherwise end where they began.
            paceline_tests::eventually("a checkpoint moves the positions forward", 120, || {
                assert!(
                    serve.proc.running(),
                    "paceline serve exited:\n{}",
                    serve.proc.log_text()
                );
                let now = committed_total();
                now > before || now == data.lines.len() as i64
            });
            std::thread::sleep(Duration::from_millis(rng.below(1500)));
            dir = serve.kill();
            assert!(!Serve::checkpoints(&dir).is_empty());
        }
        producer.join().expect("the producer finished");
        dir
    });
    let mut serve = Serve::start_in(dir, &config, &env);
    let log = assert_resumed(&serve);
    let already_read = messages_before_positions(resumed_line(&log));
    let m = assert_equivalent(influx, db, &config, &data, &mut serve);
    // Exactly the rest: every message before the checkpoint's positions is neither read
    // again nor skipped (each message of these topics holds one event, offsets from 0).
    let consumed = m.sum("paceline_events_total", &[]) as u64;
    assert_eq!(
        consumed + already_read,
        data.lines.len() as u64,
        "the last run read {consumed} events after a checkpoint past {already_read} messages"
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
        let name = |p: &std::path::PathBuf| {
            p.file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned()
        };
        assert!(
            log.contains("skipping an invalid checkpoint") && log.contains(&name(&files[0])),
            "{what}: the damaged checkpoint is named:\n{log}"
        );
        let resumed = resumed_line(&log);
        assert!(
            resumed.contains(&name(&files[1])),
            "{what}: resumed from the previous checkpoint {}:\n{log}",
            name(&files[1])
        );
        assert_equivalent(influx, db, &config, &data, &mut serve);
        dir = serve.stop_keeping_state();
    }

    let dir = upgraded(dir, influx, db, &config, &data, &env);

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

/// The log's line saying which checkpoint the run resumed from.
fn resumed_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("resuming from checkpoint"))
        .unwrap_or_default()
}

/// How many messages lie before the positions of a "resuming from checkpoint" line
/// (`positions=filings/0@12,...`: the next offsets, so the count read from offset 0).
fn messages_before_positions(line: &str) -> u64 {
    let field = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("positions="))
        .unwrap_or_else(|| panic!("no positions in {line:?}"));
    field
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (_, offset) = p.split_once('@').expect("stream/partition@offset");
            offset.parse::<u64>().expect("an offset")
        })
        .sum()
}

/// The format version in a checkpoint file's header.
fn format_of(file: &std::path::Path) -> u32 {
    let bytes = std::fs::read(file).expect("checkpoint file");
    u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])
}

/// An upgrade: `dir`'s newest checkpoint rewritten as the previous format's build wrote it
/// is migrated and resumed from; killed after its next checkpoint, the run after resumes
/// from that one, written in this format.
fn upgraded(
    dir: TempDir,
    influx: &Influx1,
    db: &str,
    config: &Settings,
    data: &Dataset,
    env: &[(&str, String)],
) -> TempDir {
    let name = |p: &std::path::PathBuf| {
        p.file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned()
    };
    let newest = Serve::checkpoints(&dir)[0].clone();
    {
        // The store's lock is released at the end of this block, before serve starts.
        let store = Store::open(&dir.join("state")).expect("the state directory opens");
        let checkpoint = Store::read(&newest).expect("the newest checkpoint reads");
        std::fs::remove_file(&newest).expect("removed");
        store
            .write_previous_format(checkpoint)
            .expect("written in the previous format");
    }
    assert_eq!(format_of(&newest), MIGRATES_FROM);

    let mut serve = Serve::start_in(dir, config, env);
    let log = assert_resumed(&serve);
    let resumed = resumed_line(&log);
    assert!(
        log.contains("migrating a checkpoint of the previous format")
            && resumed.contains(&name(&newest)),
        "the previous format's checkpoint {} is migrated and resumed from:\n{log}",
        name(&newest)
    );
    let m = assert_equivalent(influx, db, config, data, &mut serve);
    assert!(
        (m.sum("paceline_events_total", &[]) as usize) < data.lines.len(),
        "the upgraded run resumes, it does not read everything again"
    );
    serve.wait_checkpoint_after(now_ms(), Duration::from_secs(60));
    let dir = serve.kill();

    let own = Serve::checkpoints(&dir)[0].clone();
    assert!(name(&own) > name(&newest), "a newer checkpoint {own:?}");
    assert_eq!(format_of(&own), FORMAT_VERSION);
    let mut serve = Serve::start_in(dir, config, env);
    let log = assert_resumed(&serve);
    let resumed = resumed_line(&log);
    assert!(
        resumed.contains(&name(&own)) && !log.contains("migrating"),
        "after the kill, the start resumes from {}, its own:\n{log}",
        name(&own)
    );
    assert_equivalent(influx, db, config, data, &mut serve);
    serve.stop_keeping_state()
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

/// One of two workers stuck for good inside a step (`PACELINE_FAILPOINT=worker.1:stall`)
/// while the other keeps stepping, waiting for it, with nothing pending in the sink:
/// `/healthz` turns 503 saying the dataflow is wedged, so that the orchestrator restarts
/// it.
fn a_stuck_worker_turns_healthz_red(tansu: &Tansu, influx: &Influx1) {
    let prefix = "rec-wedged";
    let db = "rec_wedged";
    create_topics(tansu, prefix, 1);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let data = Dataset::new(71, 50, true, &[]);
    let mut config = recovery_config(prefix);
    config.dataflow.workers = 2;
    let (t, _) = topics(prefix);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let mut env = influx1_env(tansu, influx, db).to_vec();
    env.push(("PACELINE_FAILPOINT", "worker.1:stall".to_string()));
    let serve = Serve::start(&config, &env);
    let healthz = format!("{}/healthz", serve.http);
    let mut last = (0, String::new());
    paceline_tests::eventually("/healthz to say the dataflow is wedged", 150, || {
        last = paceline_tests::services::get(&healthz).unwrap_or_default();
        last.0 == 503
    });
    assert!(
        last.1.starts_with("dataflow wedged: no step for "),
        "{last:?}"
    );
    serve.kill();
}

/// A plan edit needs no rebuild: restored with another target for quasi-unicorns, every
/// tick written after the restart carries the new target; the ticks written before keep
/// the old one, or carry the new one where the restore wrote them again.
fn plan_edit_after_restore(tansu: &Tansu, influx: &Influx1) {
    let prefix = "rec-plan";
    let db = "rec_plan";
    create_topics(tansu, prefix, 1);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let data = Dataset::new(61, 8, true, &[]);
    let config = recovery_config(prefix);
    let env = influx1_env(tansu, influx, db);
    let (t, _) = topics(prefix);
    let half = data.lines.len() / 2;
    kafka::produce(&tansu.brokers(), &t, &data.lines[..half]);
    let mut serve = Serve::start(&config, &env);
    serve.wait_counted("the first half", half, 120);
    let dir = serve.stop_keeping_state();
    let key = SeriesKey::plain(Indicator::QuasiUnicorns);
    let target_at = |points: &paceline_oracle::lp::Points, tick: Nanos| points[&key][&tick].target;
    let before = readback::influx1(influx, db, &config.indicators.measurement);
    let last_before = *before
        .get(&key)
        .and_then(|p| p.keys().next_back())
        .expect("quasi-unicorn points before the edit");
    let old_target = target_at(&before, last_before).expect("a planned series' target");

    let mut edited = config.clone();
    let item = edited
        .pipeline
        .plan
        .items
        .iter_mut()
        .find(|i| i.series == "quasi_unicorns")
        .expect("the default plan tracks quasi-unicorns");
    let new_target = old_target + 7.0;
    item.target = new_target;
    let mut serve = Serve::start_in(dir, &edited, &env);
    assert_resumed(&serve);
    kafka::produce(&tansu.brokers(), &t, &data.lines[half..]);
    serve.wait_drained(0, data.final_watermarks(&edited), Duration::from_secs(300));
    let after = readback::influx1(influx, db, &edited.indicators.measurement);
    let later: Vec<(Nanos, f64)> = after[&key]
        .keys()
        .filter(|tick| **tick > last_before)
        .filter_map(|tick| Some((*tick, target_at(&after, *tick)?)))
        .collect();
    assert!(
        !later.is_empty(),
        "ticks with a target written after the restart"
    );
    for (tick, target) in &later {
        assert_eq!(*target, new_target, "tick {tick}");
    }
    for tick in after[&key].keys().filter(|tick| **tick <= last_before) {
        let target = target_at(&after, *tick);
        assert!(
            target.is_none_or(|t| t == old_target || t == new_target),
            "tick {tick}: target {target:?}"
        );
    }
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
        (
            "plan edit",
            Box::new(move || plan_edit_after_restore(tansu, influx)),
        ),
        (
            "wedged",
            Box::new(move || a_stuck_worker_turns_healthz_red(tansu, influx)),
        ),
    ]);
}
