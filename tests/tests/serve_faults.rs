//! Faults on real services, one set of services (tansu, InfluxDB 1.x) for the binary, the
//! scenarios one after the other (each stops a shared service):
//!
//! - Sink outage: InfluxDB stopped for 30 s mid-run while more events arrive; `/readyz`
//!   answers 503 and `paceline_sink_write_errors_total` rises meanwhile, pending points stay
//!   within their bound; once it is back the contents are equivalent to replay's.
//! - Broker restart: the tansu broker killed for 20 s mid-run and started again on the same
//!   storage; then the rest of the data; nothing lost, nothing doubled (counters equal
//!   replay's summary) and the output equivalent to replay's.
//!
//! Both feed the data in two halves with a pause, so the watermark of an idle stream must
//! not follow the wall clock (it is configured off, as for backfills).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use paceline_runtime::settings::InfluxApi;
use paceline_runtime::settings::Settings;
use paceline_tests::gate::Gate;
use paceline_tests::services::{Influx1, Tansu};
use paceline_tests::{
    drain_and_compare_influx1, eventually, kafka, scenario_config, topics, Dataset, Serve,
};

fn setup(tansu: &Tansu, influx: &Influx1, prefix: &str, db: &str) -> (Settings, [String; 3]) {
    let (t, dl) = topics(prefix);
    for name in &t {
        tansu.create_topic(name, 2);
    }
    tansu.create_topic(&dl, 1);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    config.service.idle_watermark_follows_clock = false;
    (config, t)
}

fn env(tansu: &Tansu, influx: &Influx1, db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PACELINE_KAFKA_BROKERS", tansu.brokers()),
        ("PACELINE_INFLUX_API", "v1".to_string()),
        ("PACELINE_INFLUX_URL", influx.url()),
        ("PACELINE_INFLUX_DB", db.to_string()),
    ]
}

fn sink_outage(tansu: &Tansu, influx: &mut Influx1) {
    let db = "outage";
    let (mut config, t) = setup(tansu, influx, "outage", db);
    config.influx.batch_points = 500;
    config.influx.max_pending_points = 2000;
    config.influx.retry_initial_ms = 100;
    config.influx.retry_max_ms = 2000;
    // Every telemetry event: the second half is more than every queue between the topics
    // and the sink holds, so the sources must pause.
    let data = Dataset::new(13, 1, false, &[]);
    let half = data.lines.len() / 2;
    kafka::produce(&tansu.brokers(), &t, &data.lines[..half]);
    let mut serve = Serve::start(&config, &env(tansu, influx, db));
    eventually("first points written", 120, || {
        serve
            .metrics()
            .sum("paceline_sink_points_written_total", &[])
            > 0.0
    });
    assert_eq!(serve.ready(), 200);

    influx.down();
    let down_at = Instant::now();
    let errors_before = serve.metrics().sum("paceline_sink_write_errors_total", &[]);
    kafka::produce(&tansu.brokers(), &t, &data.lines[half..]);
    eventually("/readyz to answer 503", 30, || serve.ready() == 503);
    let mut max_pending = 0.0f64;
    while down_at.elapsed() < Duration::from_secs(30) {
        let m = serve.metrics();
        max_pending = max_pending.max(m.sum("paceline_sink_pending_points", &[]));
        assert_eq!(serve.ready(), 503, "not ready while the database is down");
        std::thread::sleep(Duration::from_millis(500));
    }
    let m = serve.metrics();
    assert!(
        m.sum("paceline_sink_write_errors_total", &[]) > errors_before,
        "write errors counted"
    );
    assert_eq!(m.sum("paceline_sink_pending_points_max", &[]), 2000.0);
    // The bound itself: reached (the sink stops taking deliveries of up to 500 points once
    // one no longer fits) and never passed.
    assert!(
        max_pending > 2000.0 - 500.0 && max_pending <= 2000.0,
        "pending points reach the bound of 2000 and stay within it: {max_pending}"
    );
    // Behind the full sink the sources have stopped reading: nothing more is read while
    // messages wait in the topics.
    let read = m.sum("paceline_events_total", &[]);
    std::thread::sleep(Duration::from_secs(3));
    let later = serve.metrics();
    assert_eq!(
        later.sum("paceline_events_total", &[]),
        read,
        "the sources paused while the sink was full"
    );
    assert!(
        read < data.lines.len() as f64,
        "messages wait in the topics while the sources are paused: {read} of {} read",
        data.lines.len()
    );
    // The lag shows them, asked of the broker while the sources wait: some, and no more
    // than what was not counted (the sources read a little ahead of the count, into the
    // bounded queues before admission).
    let mut lag = 0.0;
    eventually("the lag to show the messages waiting", 20, || {
        lag = serve.metrics().sum("paceline_source_lag_messages", &[]);
        lag > 0.0
    });
    assert!(
        lag <= data.lines.len() as f64 - read,
        "the lag counts only what waits: {lag}, {read} of {} counted",
        data.lines.len()
    );

    influx.up();
    drain_and_compare_influx1(&mut serve, &data, &config, influx, db);
    assert_eq!(serve.ready(), 200);
    serve.stop_cleanly(None);
}

fn broker_restart(tansu: &mut Tansu, influx: &Influx1) {
    let db = "restart";
    let (config, t) = setup(tansu, influx, "restart", db);
    let data = Dataset::new(17, 8, false, &[]);
    let half = data.lines.len() / 2;
    kafka::produce(&tansu.brokers(), &t, &data.lines[..half]);
    let mut serve = Serve::start(&config, &env(tansu, influx, db));
    serve.wait_counted("the first half consumed", half, 120);

    tansu.down();
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        serve.proc.running(),
        "paceline survives the broker's absence"
    );
    tansu.up();
    kafka::produce(&tansu.brokers(), &t, &data.lines[half..]);
    drain_and_compare_influx1(&mut serve, &data, &config, influx, db);
    serve.stop_cleanly(None);
}

#[test]
fn faults_on_real_services() {
    let mut tansu = Tansu::start();
    let mut influx = Influx1::start();
    sink_outage(&tansu, &mut influx);
    broker_restart(&mut tansu, &influx);
    busy_database_retried(&tansu, &influx);
}

/// A database that answers writes 429 (too many requests) and 5xx for a while: each write
/// is retried, the same batch again, and in the end the database holds replay's output.
fn busy_database_retried(tansu: &Tansu, influx: &Influx1) {
    let db = "busy";
    let (mut config, t) = setup(tansu, influx, "busy", db);
    config.influx.batch_points = 300;
    config.influx.retry_initial_ms = 50;
    config.influx.retry_max_ms = 400;
    // The start-up check and the first batch pass, then five refusals of each kind.
    let statuses = [429, 503, 500, 429, 502];
    let gate = Gate::faulty(influx.url(), 2, &statuses);
    let data = Dataset::new(19, 8, false, &[]);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let mut env = env(tansu, influx, db);
    for (k, v) in env.iter_mut() {
        if *k == "PACELINE_INFLUX_URL" {
            *v = gate.url.clone();
        }
    }
    let mut serve = Serve::start(&config, &env);
    drain_and_compare_influx1(&mut serve, &data, &config, influx, db);
    let m = serve.metrics();
    assert_eq!(
        gate.seen.faulted.load(Ordering::SeqCst),
        statuses.len(),
        "every scripted answer was given"
    );
    assert!(
        m.sum("paceline_sink_write_errors_total", &[]) >= statuses.len() as f64,
        "each refusal counted"
    );
    serve.stop_cleanly(None);
}
