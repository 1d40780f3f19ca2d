//! Broker faults injected with librdkafka's mock cluster (in this test process, reached by
//! `paceline serve` over TCP like any broker): fetch and list-offsets requests failing with
//! retriable errors, then every broker down for a few seconds and up again. Nothing is
//! lost: the counters equal replay's summary and InfluxDB 1.x holds an output equivalent
//! to replay's.

use std::time::Duration;

use paceline_model::service::InfluxApi;
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
