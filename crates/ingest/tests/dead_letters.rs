//! The dead-letter producer reads its delivery reports (librdkafka's mock cluster): a dead
//! letter the broker refuses stays undelivered, so no checkpoint passes it, is sent again,
//! and is delivered once the broker accepts it; one refused every time is an error naming
//! its origin.

use std::time::{Duration, Instant};

use paceline_ingest::{DeadLetterProducer, Origin, DEAD_LETTER_ATTEMPTS};
use paceline_model::Stream;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

fn origin(offset: i64) -> Origin {
    Origin {
        stream: Stream::Filings,
        topic: "filings".into(),
        partition: 0,
        offset,
    }
}

/// Retries until every dead letter is delivered or `retry_failed` gives up.
fn settle(dead: &DeadLetterProducer) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        dead.retry_failed().map_err(|e| e.to_string())?;
        if dead.delivered_below(dead.next_sequence()) {
            return Ok(());
        }
        assert!(Instant::now() < deadline, "neither delivered nor given up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn refused_dead_letters_are_retried_then_reported() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("dead", 1, 1).expect("topic");
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", mock.bootstrap_servers());
    let dead = DeadLetterProducer::new(&base, "dead").expect("producer");

    // Refused twice (a non-retriable error), then accepted: delivered, in order.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD; 2],
    );
    dead.send(b"not json", "malformed_json", "detail", &origin(1))
        .expect("queued");
    let before = dead.next_sequence();
    settle(&dead).expect("delivered after the refusals");
    assert!(dead.delivered_below(before));

    // Refused every time: an error naming the origin, and still not delivered.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD; 2 * DEAD_LETTER_ATTEMPTS as usize],
    );
    dead.send(b"[1]", "malformed_json", "detail", &origin(7))
        .expect("queued");
    let err = settle(&dead).expect_err("given up");
    assert!(err.contains("filings/0/7"), "{err}");
    assert!(
        err.contains(&format!("{DEAD_LETTER_ATTEMPTS} times")),
        "{err}"
    );
    assert!(!dead.delivered_below(dead.next_sequence()));
}
