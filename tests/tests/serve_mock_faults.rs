//! Broker faults injected with librdkafka's mock cluster (in this test process, reached by
//! `paceline serve` over TCP like any broker):
//!
//! - Transient: fetch and list-offsets requests failing with retriable errors, then every
//!   broker down for a few seconds and up again. Nothing is lost: the counters equal
//!   replay's summary and InfluxDB 1.x holds an output equivalent to replay's.
//! - Lasting: a topic deleted (the brokers answer that it is unknown), and every broker
//!   down for good. `/readyz` answers 503 with the reason within seconds; past
//!   `kafka.unavailable_timeout_s` the service stops with exit 1 and the reason.
//! - Oversized: a 1.6 MB message and a gzip-compressed one that inflates to 3 MB on an
//!   input topic are dead-lettered cut to `kafka.dead_letter_max_bytes`, with their size
//!   and SHA-256 (`sha256sum`'s); the service stays ready, reads on and checkpoints.

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
    tweak: impl FnOnce(&mut Settings),
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
    tweak(&mut config);
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
    let (mock, config, serve) = ready_on_mock("mock-deleted", influx, |_| {});
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
    let (mock, config, serve) = ready_on_mock("mock-gone", influx, |_| {});
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

/// `sha256sum`'s digest of `bytes`: computed apart from the service's own.
fn sha256sum(bytes: &[u8]) -> String {
    let file = paceline_tests::services::TempDir::new("sha");
    let path = file.join("message");
    std::fs::write(&path, bytes).expect("written");
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum runs");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

#[test]
fn oversized_messages_are_dead_lettered_cut_and_the_service_goes_on() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let influx = Influx1::start();
    let limit = 100_000;
    let (mock, _config, mut serve) = ready_on_mock("mock-big", &influx, |c| {
        c.kafka.dead_letter_max_bytes = limit;
        c.service.checkpoint_interval_s = 1;
    });
    let brokers = mock.bootstrap_servers();
    let (t, dl) = topics("mock-big");

    // A plain 1.6 MB message, and 3 MB of one repeated line sent gzip-compressed (a small
    // batch on the wire that inflates past every limit once read).
    let plain: Vec<u8> = (0..1_600_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let inflating: Vec<u8> = b"{\"event_id\":\"x\",\"type\":\"scenario.usage\"}\n".repeat(70_000);
    for (message, compression) in [(&plain, "none"), (&inflating, "gzip")] {
        let p: BaseProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("message.max.bytes", "10000000")
            .set("compression.type", compression)
            .create()
            .expect("producer");
        p.send(BaseRecord::<(), _>::to(&t[2]).payload(message.as_slice()))
            .expect("queued");
        p.flush(Duration::from_secs(30)).expect("acknowledged");
    }
    let got = kafka::read_all(&brokers, &dl, 2, Duration::from_secs(120));
    assert_eq!(
        got.len(),
        2,
        "both are dead-lettered: {}",
        serve.proc.log_text()
    );
    for (letter, original) in got.iter().zip([&plain, &inflating]) {
        let record = letter.value.len()
            + letter
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        assert!(record <= limit, "the dead letter fits: {record} bytes");
        assert_eq!(
            letter.value.as_slice(),
            &original[..letter.value.len()],
            "the message's start, unchanged"
        );
        assert_eq!(
            letter.headers.get("truncated").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            letter.headers.get("original_size"),
            Some(&original.len().to_string())
        );
        assert_eq!(
            letter.headers.get("original_sha256"),
            Some(&sha256sum(original))
        );
        assert_eq!(
            letter.headers.get("reason").map(String::as_str),
            Some("too_large")
        );
    }

    eventually("both counted as dead letters", 30, || {
        serve.metrics().sum("paceline_dead_letters_total", &[]) as usize == 2
    });

    // The service goes on: ready, reading what follows, checkpointing after it.
    let after = paceline_tests::now_ms();
    let data = Dataset::new(23, 50, true, &[]);
    let few = &data.lines[..200.min(data.lines.len())];
    kafka::produce(&brokers, &t, few);
    eventually("the events after the oversized ones are read", 120, || {
        serve.metrics().sum("paceline_events_total", &[]) as usize >= few.len() + 2
    });
    serve.wait_checkpoint_after(after, Duration::from_secs(60));
    assert_eq!(serve.ready(), 200, "{}", serve.readiness().1);
    serve.stop_cleanly(None);
}
