//! Whether the brokers and topics are still there, which partitions they have and how far
//! each partition's log reaches, with librdkafka's own words when they are not.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use crate::admin::{describe, Undescribed};
use crate::IngestError;

/// Keeps librdkafka's last word on a client's trouble (a refused connection, a name that
/// does not resolve, a TLS handshake or SASL authentication that failed), so that a failed
/// request can say why, not only that it timed out. A consumer hands such errors out only
/// through its log callback, which librdkafka calls from its own threads.
#[derive(Default)]
pub struct ErrorContext {
    last: Mutex<Option<String>>,
}

impl ErrorContext {
    fn last(&self) -> Option<String> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    fn clear(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = None;
        }
    }

    fn keep(&self, text: String) {
        if let Ok(mut l) = self.last.lock() {
            *l = Some(text);
        }
    }
}

impl ClientContext for ErrorContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        // Kept, not logged: librdkafka repeats a broker's failure at every reconnect, and
        // the service reports the trouble itself, once and then every 30 s.
        tracing::debug!(fac, message, "librdkafka (topic watch)");
        use rdkafka::config::RDKafkaLogLevel::*;
        if matches!(level, Emerg | Alert | Critical | Error | Warning) {
            self.keep(message.to_string());
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.keep(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for ErrorContext {}

/// Why the topics could not be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct LookError {
    /// What is wrong, naming the brokers or the topic, with librdkafka's last word.
    pub reason: String,
    /// The brokers answered that this topic does not exist.
    pub missing_topic: Option<String>,
}

/// Looks at the topics the service reads, on its own client: whether the brokers answer,
/// each topic still exists, and which partitions it has now (partitions can be added to a
/// topic while the service runs).
pub struct TopicWatch {
    consumer: BaseConsumer<ErrorContext>,
    topics: Vec<String>,
    brokers: String,
}

impl TopicWatch {
    /// A watch over `topics`.
    pub fn new(config: &ClientConfig, topics: Vec<String>) -> Result<Self, IngestError> {
        let consumer = config
            .create_with_context(ErrorContext::default())
            .map_err(|source| IngestError::Client {
                what: "topic watch",
                source,
            })?;
        let brokers = config.get("bootstrap.servers").unwrap_or("").to_string();
        Ok(TopicWatch {
            consumer,
            topics,
            brokers,
        })
    }

    /// The brokers it asks (`kafka.brokers`).
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The topics it watches, in the order given.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The first offset `partition` of `topic` still holds and the offset its next message
    /// will take, asked of the broker now; None when it cannot be asked within `timeout`.
    pub fn watermarks(&self, topic: &str, partition: i32, timeout: Duration) -> Option<(i64, i64)> {
        self.consumer
            .fetch_watermarks(topic, partition, timeout)
            .ok()
    }

    /// Every topic's partitions (in the order the topics were given), or what is wrong:
    /// a topic gone, the brokers unreachable or refusing the client, with librdkafka's
    /// last word on it.
    pub fn look(&self, timeout: Duration) -> Result<Vec<Vec<i32>>, LookError> {
        let looked = self.describe_all(timeout);
        // librdkafka's log and error events reach the context only through a poll (this
        // client reads no messages); polled every look, they never pile up either.
        for _ in 0..1000 {
            if self.consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
        let looked = looked.map_err(|(e, topic)| self.explain(e, topic));
        if looked.is_ok() {
            // A trouble once over is not the reason of the next one.
            self.consumer.context().clear();
        }
        looked
    }

    fn describe_all(&self, timeout: Duration) -> Result<Vec<Vec<i32>>, (Undescribed, String)> {
        self.topics
            .iter()
            .map(|topic| describe(&self.consumer, topic, timeout).map_err(|e| (e, topic.clone())))
            .collect()
    }

    /// What is wrong, in words a person can act on: the topic missing, or the brokers and
    /// librdkafka's last word on why they do not answer.
    fn explain(&self, (reason, missing): Undescribed, topic: String) -> LookError {
        if missing {
            return LookError {
                reason: format!("topic `{topic}`: {reason}"),
                missing_topic: Some(topic),
            };
        }
        let why = format!(
            "brokers {}: cannot describe topic `{topic}`: {reason}",
            self.brokers
        );
        LookError {
            reason: match self.consumer.context().last() {
                Some(client) => format!("{why}; librdkafka: {client}"),
                None => why,
            },
            missing_topic: None,
        }
    }
}
