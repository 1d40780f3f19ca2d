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
    let dead = DeadLetterProducer::new(&base, "dead", 1_000_000).expect("producer");

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

/// A rejected message larger than the limit is dead-lettered cut to fit, whole record
/// included, with its original size and SHA-256 (`sha256sum`'s, computed apart) in
/// headers; a small one goes whole, without them.
#[test]
fn a_large_rejected_message_is_cut_to_the_limit() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("dead", 1, 1).expect("topic");
    let mut base = ClientConfig::new();
    base.set("bootstrap.servers", mock.bootstrap_servers());
    let limit = 100_000;
    let dead = DeadLetterProducer::new(&base, "dead", limit).expect("producer");
    // 1.5 MB of a repeated line, as a batch that inflated would give.
    let big: Vec<u8> = b"{\"event_id\":\"x\"}\n".repeat(90_000);
    let dir = std::env::temp_dir().join(format!("paceline-dl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big"), &big).unwrap();
    let sum = std::process::Command::new("sha256sum")
        .arg(dir.join("big"))
        .output()
        .expect("sha256sum");
    let expected_sha = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    dead.send(&big, "oversized", "1620000 bytes", &origin(3))
        .expect("queued");
    dead.send(b"short", "malformed_json", "detail", &origin(4))
        .expect("queued");
    settle(&dead).expect("delivered");

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "check")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["dead"]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < 2 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            got.push(m.detach());
        }
    }
    assert_eq!(got.len(), 2, "both dead letters arrive");
    let header = |m: &rdkafka::message::OwnedMessage, k: &str| {
        m.headers().and_then(|h| {
            h.iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    };
    let cut = &got[0];
    let value = cut.payload().unwrap_or_default();
    let record = value.len()
        + cut.key().map_or(0, <[u8]>::len)
        + cut.headers().map_or(0, |h| {
            h.iter()
                .map(|x| x.key.len() + x.value.map_or(0, <[u8]>::len))
                .sum()
        });
    assert!(record <= limit, "the record fits: {record} bytes");
    assert!(
        value.len() > limit / 2,
        "most of the room is the message's start"
    );
    assert_eq!(value, &big[..value.len()], "the message's start, unchanged");
    assert_eq!(header(cut, "truncated").as_deref(), Some("true"));
    assert_eq!(header(cut, "original_size"), Some(big.len().to_string()));
    assert_eq!(header(cut, "original_sha256"), Some(expected_sha));
    assert_eq!(header(cut, "reason").as_deref(), Some("oversized"));
    let whole = &got[1];
    assert_eq!(whole.payload(), Some(&b"short"[..]));
    assert_eq!(header(whole, "truncated"), None);
    std::fs::remove_dir_all(&dir).ok();
}
