//! Broker faults injected with librdkafka's mock cluster (in this test process, reached by
//! `paceline serve` over TCP like any broker):
//!
//! - Transient: fetch and list-offsets requests failing with retriable errors, then every
//!   broker down for a few seconds and up again. Nothing is lost: the counters equal
//!   replay's summary and InfluxDB 1.x holds an output equivalent to replay's.
//! - Lasting: a topic deleted (the brokers answer that it is unknown), and every broker
//!   down for good. `/readyz` answers 503 with the reason within seconds; past
//!   `kafka.unavailable_timeout_s` the service stops with exit 1 and the reason.

use std::time::{Duration, Instant};

use paceline_runtime::settings::InfluxApi;
use paceline_runtime::settings::Settings;
use paceline_tests::services::Influx1;
use paceline_tests::{
    drain_and_compare_influx1, eventually, kafka, scenario_config, topics, Dataset, Serve,
};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

#[test]
fn no_loss_under_mock_cluster_faults() {
    let influx = Influx1::start();
    let mock = MockCluster::new(3).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let prefix = "mock";
    let (t, dl) = topics(prefix);
    for name in &t {
        mock.create_topic(name, 2, 1).expect("topic");
    }
    mock.create_topic(&dl, 1, 1).expect("topic");
    influx.query("", "CREATE DATABASE mock");
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    config.service.idle_watermark_follows_clock = false;
    let data = Dataset::new(19, 8, false, &[]);
    let half = data.lines.len() / 2;
    kafka::produce(&brokers, &t, &data.lines[..half]);

    // Retriable errors on the first fetches and offset lookups.
    use RDKafkaRespErr::*;
    let errors = [
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    ];
    mock.request_errors(RDKafkaApiKey::Fetch, &errors);
    mock.request_errors(RDKafkaApiKey::ListOffsets, &errors);

    let env = [
        ("PACELINE_KAFKA_BROKERS", brokers.clone()),
        ("PACELINE_INFLUX_API", "v1".to_string()),
        ("PACELINE_INFLUX_URL", influx.url()),
        ("PACELINE_INFLUX_DB", "mock".to_string()),
    ];
    let mut serve = Serve::start(&config, &env);
    eventually("some events consumed", 120, || {
        serve.metrics().sum("paceline_events_total", &[]) > 0.0
    });

    // Every broker down, then up again; the rest of the data after.
    for b in 1..=3 {
        mock.broker_down(b).expect("broker down");
    }
    std::thread::sleep(Duration::from_secs(5));
    for b in 1..=3 {
        mock.broker_up(b).expect("broker up");
    }
    kafka::produce(&brokers, &t, &data.lines[half..]);

    drain_and_compare_influx1(&mut serve, &data, &config, &influx, "mock");
    serve.stop_cleanly(None);
}

/// Starts serve on a fresh mock cluster with its topics; waits until it is ready.
fn ready_on_mock(
    prefix: &str,
    influx: &Influx1,
) -> (
    MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    Settings,
    Serve,
) {
    let mock = MockCluster::new(1).expect("mock cluster");
    let (t, dl) = topics(prefix);
    for name in t.iter().chain([&dl]) {
        mock.create_topic(name, 1, 1).expect("topic");
    }
    let db = prefix.replace('-', "_");
    influx.query("", &format!("CREATE DATABASE {db}"));
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    config.kafka.unavailable_timeout_s = 10;
    config.service.shutdown_timeout_s = 10;
    let env = [
        ("PACELINE_KAFKA_BROKERS", mock.bootstrap_servers()),
        ("PACELINE_INFLUX_API", "v1".to_string()),
        ("PACELINE_INFLUX_URL", influx.url()),
        ("PACELINE_INFLUX_DB", db),
    ];
    let serve = Serve::start(&config, &env);
    eventually("ready", 120, || serve.ready() == 200);
    (mock, config, serve)
}

/// Waits until `/readyz` answers 503 with all of `reason` in its body, then until the
/// process exits: exit 1, not before the timeout, the log naming `expect`.
fn red_then_stopped(serve: Serve, timeout_s: u64, reason: &[&str], expect: &[&str]) {
    let since = Instant::now();
    eventually("/readyz to say why", 30, || {
        let (code, why) = serve.readiness();
        code == 503 && reason.iter().all(|r| why.contains(r))
    });
    let mut proc = serve.proc;
    // The timeout, a look, the bounded shutdown.
    let code = proc.wait(Duration::from_secs(timeout_s + 40));
    let log = proc.log_text();
    assert_eq!(code, Some(1), "stops with exit 1:\n{log}");
    assert!(
        since.elapsed() >= Duration::from_secs(timeout_s - 2),
        "not before the timeout: {:?}",
        since.elapsed()
    );
    for e in expect {
        assert!(log.contains(e), "the log says `{e}`:\n{log}");
    }
}

fn topic_deleted(influx: &Influx1) {
    let (mock, config, serve) = ready_on_mock("mock-deleted", influx);
    let topic = config.streams.scenarios.topic.clone();
    mock.topic_error(
        &topic,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
    )
    .expect("topic error");
    red_then_stopped(
        serve,
        config.kafka.unavailable_timeout_s,
        &["Kafka:", &topic, "does not exist"],
        &["kafka.unavailable_timeout_s", &topic],
    );
}

fn brokers_gone(influx: &Influx1) {
    let (mock, config, serve) = ready_on_mock("mock-gone", influx);
    mock.broker_down(1).expect("broker down");
    red_then_stopped(
        serve,
        config.kafka.unavailable_timeout_s,
        &["Kafka:"],
        &["kafka.unavailable_timeout_s"],
    );
}

#[test]
fn lasting_kafka_trouble_turns_readiness_red_then_stops() {
    let influx = Influx1::start();
    let influx = &influx;
    paceline_tests::run_side_by_side(vec![
        ("topic deleted", Box::new(move || topic_deleted(influx))),
        ("brokers gone", Box::new(move || brokers_gone(influx))),
    ]);
}
