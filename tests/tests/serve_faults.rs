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

use std::time::{Duration, Instant};

use paceline_runtime::settings::InfluxApi;
use paceline_runtime::settings::Settings;
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
    let data = Dataset::new(13, 8, false, &[]);
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
    assert!(
        max_pending > 0.0,
        "points were held while the database was down"
    );
    // Bounded: the batcher takes input up to its bound plus one delivery of the dataflow.
    assert!(
        max_pending <= 2000.0 + 5000.0,
        "pending points stay bounded: {max_pending}"
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
}
