//! Kafka topics changing under a running service (tansu, InfluxDB 1.x):
//!
//! - Partition added: partitions added to the filings and scenarios topics mid-run are
//!   read: every message is counted once, those produced into the added partitions
//!   included, and the added partitions report their lag.
//! - Retention passed: messages deleted below a stopped service's position; on restart
//!   the skipped range is counted (`paceline_source_offset_resets_total`) and logged as an
//!   error with the partition and the range; a real Prometheus with the deploy kit's rules
//!   (windows shortened from 1 h to 30 s) fires `PacelineOffsetReset`, which then resolves
//!   by itself.
//! - Topics created: with `kafka.create_topics`, a broker without the topics gets them
//!   (partitions as configured) and the service reads what is produced to them.
//!
//! A deleted topic and brokers gone for good are in `serve_mock_faults.rs`: tansu 0.6's
//! `topic delete` removes every topic, and the metadata it then serves crashes
//! librdkafka, so those run on librdkafka's mock cluster.

use paceline_runtime::settings::Settings;
use paceline_tests::services::{Influx1, Prometheus, Tansu, TempDir};
use paceline_tests::{
    create_topics, drain_and_compare_influx1, eventually, influx1_env, kafka, scenario_config,
    topics, Dataset, Serve,
};

/// A scenario's configuration: InfluxDB 1.x, data fed in parts (no clock rule).
fn config(prefix: &str) -> Settings {
    let mut c = scenario_config(prefix);
    c.influx.api = paceline_runtime::settings::InfluxApi::V1;
    c.service.idle_watermark_follows_clock = false;
    c
}

/// A scenario's topics (`partitions` each), database, configuration and environment.
fn prepare(
    tansu: &Tansu,
    influx: &Influx1,
    prefix: &str,
    partitions: u32,
) -> (Settings, [String; 3], [(&'static str, String); 4]) {
    let db = prefix.replace('-', "_");
    create_topics(tansu, prefix, partitions);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let (t, _) = topics(prefix);
    (config(prefix), t, influx1_env(tansu, influx, &db))
}

fn partition_added(tansu: &Tansu, influx: &Influx1) {
    let (config, t, env) = prepare(tansu, influx, "topo-add", 2);
    let data = Dataset::new(71, 8, false, &[]);
    let half = data.lines.len() / 2;
    kafka::produce(&tansu.brokers(), &t, &data.lines[..half]);
    let mut serve = Serve::start(&config, &env);
    serve.wait_counted("the first half consumed", half, 120);

    tansu.add_partitions(&t[0], 3);
    tansu.add_partitions(&t[2], 4);
    eventually("the added partitions read", 60, || {
        serve
            .proc
            .log_text()
            .matches("partitions added to the topic")
            .count()
            >= 2
    });
    // A fresh producer sees the new partitions and spreads keys over them.
    kafka::produce(&tansu.brokers(), &t, &data.lines[half..]);
    let in_added = kafka::high_watermarks(&tansu.brokers(), &t[0], 3)[2]
        + kafka::high_watermarks(&tansu.brokers(), &t[2], 4)[2..]
            .iter()
            .sum::<i64>();
    assert!(in_added > 0, "some events went to the added partitions");
    // Every message counted once, those of the added partitions included. (Not compared
    // with replay: while the service learns of a new partition, the others' events may
    // move the watermark past the new one's older events, which are then `too_late`.)
    serve.wait_counted("every message counted", data.lines.len(), 120);
    assert_eq!(
        serve.metrics().sum("paceline_events_total", &[]) as usize,
        data.lines.len()
    );
    for (topic, partition) in [(&t[0], "2"), (&t[2], "2"), (&t[2], "3")] {
        eventually(
            &format!("the added partition {topic}/{partition} to report its lag"),
            30,
            || {
                serve.metrics().has_sample(
                    "paceline_source_lag_messages",
                    &[("topic", topic.as_str()), ("partition", partition)],
                )
            },
        );
    }
    // Everything read: the lag of every partition comes down to nothing.
    eventually(
        "the lag to come down to 0 once everything is read",
        30,
        || serve.metrics().sum("paceline_source_lag_messages", &[]) == 0.0,
    );
    serve.stop_cleanly(None);
}

/// A position that retention passed while the service was stopped: on restart the
/// skipped range is counted and logged with its partition, and reading goes on after it.
fn retention_passed(tansu: &Tansu, influx: &Influx1) {
    let (config, t, env) = prepare(tansu, influx, "topo-ret", 1);
    let data = Dataset::new(83, 8, true, &[]);
    let half = data.lines.len() / 2;
    kafka::produce(&tansu.brokers(), &t, &data.lines[..half]);
    let mut serve = Serve::start(&config, &env);
    serve.wait_counted("the first half consumed", half, 120);
    let dir = serve.stop_keeping_state();
    let stopped_at = kafka::high_watermark(&tansu.brokers(), &t[0]);
    kafka::produce(&tansu.brokers(), &t, &data.lines[half..]);
    assert!(kafka::high_watermark(&tansu.brokers(), &t[0]) > stopped_at + 5);
    tansu.expire(&t[0], 0, stopped_at + 5);

    let mut serve = Serve::start_in(dir, &config, &env);
    let rest = data.lines.len() - half - 5;
    serve.wait_counted("the rest read, the expired messages skipped", rest, 120);
    // (tansu delivers a few messages after such a gap twice: more than `rest` is counted,
    // the repeats as duplicates. The gap is told apart once the broker gives the
    // partition's first offset: a loaded broker may answer after the rest was read.)
    eventually("the reset counted", 60, || {
        serve
            .metrics()
            .sum("paceline_source_offset_resets_total", &[])
            >= 1.0
    });
    let m = serve.metrics();
    let log = serve.proc.log_text();
    assert_eq!(
        m.sum(
            "paceline_source_offset_resets_total",
            &[("topic", t[0].as_str()), ("partition", "0")]
        ),
        1.0,
        "the reset counted on its partition:\n{log}"
    );
    assert_eq!(
        m.sum("paceline_source_offset_resets_total", &[]),
        1.0,
        "only that reset counted:\n{log}"
    );
    assert!(
        log.contains("ERROR") && log.contains(&format!("offsets {stopped_at}..{}", stopped_at + 5)),
        "the reset is logged as an error with its range:\n{log}"
    );
    offset_reset_alert_fires_then_resolves(&serve);
    serve.stop_cleanly(None);
}

/// The deploy kit's `PacelineOffsetReset` on a real Prometheus scraping `serve`: firing,
/// then resolved once the reset is older than the (shortened) window.
fn offset_reset_alert_fires_then_resolves(serve: &Serve) {
    let rules = std::fs::read_to_string(format!(
        "{}/../deploy/prometheus/paceline-rules.yml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("rules")
    .replace("[1h]", "[30s]")
    .replace("offset 1h", "offset 30s");
    let dir = TempDir::new("offset-reset-rules");
    let path = dir.join("rules.yml");
    std::fs::write(&path, rules).expect("rules");
    let target = serve.http.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&target, &[path], None);
    let firing = || {
        !prom
            .query(r#"ALERTS{alertname="PacelineOffsetReset",alertstate="firing"}"#)
            .is_empty()
    };
    eventually("PacelineOffsetReset fires", 60, firing);
    eventually("PacelineOffsetReset resolves by itself", 120, || !firing());
}

fn topics_created(tansu: &Tansu, influx: &Influx1) {
    let prefix = "topo-new";
    let db = "topo_new";
    influx.query("", &format!("CREATE DATABASE {db}"));
    let mut config = config(prefix);
    config.kafka.create_topics = true;
    config.kafka.topic_partitions = 2;
    // The topics start empty, so with a 1 s idle timeout their partitions are idle before
    // anything is produced; a partition whose first fetch then comes late (its leader just
    // elected, a loaded machine) would stay idle while the other one moves the watermark
    // past its events (`too_late`). Idle only once the data is in.
    for s in [
        &mut config.pipeline.streams.filings,
        &mut config.pipeline.streams.telemetry,
        &mut config.pipeline.streams.scenarios,
    ] {
        s.idle_timeout_s = 15;
    }
    let (t, dl) = topics(prefix);
    let mut serve = Serve::start(&config, &influx1_env(tansu, influx, db));
    eventually("ready", 120, || serve.ready() == 200);
    for topic in t.iter().chain([&dl]) {
        assert_eq!(
            kafka::high_watermarks(&tansu.brokers(), topic, 2).len(),
            2,
            "{topic} created with 2 partitions"
        );
    }
    assert!(serve.proc.log_text().contains("topics created"));
    let data = Dataset::new(79, 8, true, &[]);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    drain_and_compare_influx1(&mut serve, &data, &config, influx, db);
    serve.stop_cleanly(None);
}

/// Each scenario has a broker of its own: two of them edit its SQLite storage while it
/// runs, which must not compete with the other scenarios' producers for the database
/// (tansu answered a concurrent producer "Unknown broker error", then reset every
/// connection, once).
#[test]
fn kafka_changes_under_a_running_service() {
    let influx = Influx1::start();
    let influx = &influx;
    paceline_tests::run_side_by_side(vec![
        (
            "partition added",
            Box::new(move || partition_added(&Tansu::start(), influx)),
        ),
        (
            "topics created",
            Box::new(move || topics_created(&Tansu::start(), influx)),
        ),
        (
            "retention passed",
            Box::new(move || retention_passed(&Tansu::start(), influx)),
        ),
    ]);
}
