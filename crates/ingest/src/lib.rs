//! The ingest stage: Kafka in, raw messages out, and the dead-letter topic.
//!
//! Place in the flow: **ingest** → decode → dataflow → sinks. A [`TopicSource`] is one
//! rdkafka consumer for the partitions of one topic that one worker owns ([`assign_stable`]
//! divides them); it hands out raw message bytes with their origin, and end-of-partition
//! notices from which the runtime tells idle partitions. Offsets are assigned explicitly (no
//! consumer-group rebalancing); lag per partition comes from librdkafka's statistics.
//! [`DeadLetterProducer`] writes rejected events with their reason and origin as headers;
//! [`TopicWatch`] tells whether the brokers and topics are still there and which partitions
//! they have; [`config`] is the `[kafka]` section.
//!
//! Modules: `consumer` (reading and who reads what), `positions` (a reset told from
//! compaction), `watch` (the brokers and topics as
//! they are now), `admin` (describing and creating topics), `dead_letters`, `config`.

mod admin;
pub mod config;
mod consumer;
mod dead_letters;
mod positions;
mod watch;

use paceline_model::secret::Secret;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

pub use admin::{create_missing_topics, topic_max_message_bytes, NewTopicSpec};
pub use config::KafkaConfig;
pub use consumer::{
    assign_stable, partition_owner, OffsetCommitter, Polled, SourceContext, TopicSource, PREFETCH,
};
pub use dead_letters::{
    DeadLetterProducer, Deliveries, DeliveryContext, Origin, DEAD_LETTER_ATTEMPTS,
    DEAD_LETTER_MAX_BYTES, DEAD_LETTER_QUEUE_KBYTES,
};
pub use positions::Positions;
pub use watch::{ErrorContext, LookError, TopicWatch};

/// Ingest failed: a client could not be created or the topics could not be described.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Creating a consumer or producer failed (bad client settings).
    #[error("cannot create the Kafka {what}: {source}")]
    Client {
        /// Consumer or producer.
        what: &'static str,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// Topic metadata could not be fetched.
    #[error("cannot read metadata of topic `{topic}` from {brokers}: {reason}")]
    Metadata {
        /// The topic.
        topic: String,
        /// The brokers asked.
        brokers: String,
        /// Why.
        reason: String,
    },
    /// Producing a dead letter failed for good.
    #[error("cannot write a dead letter to `{topic}`: {reason}")]
    DeadLetter {
        /// The dead-letter topic.
        topic: String,
        /// Why.
        reason: String,
    },
}

/// The client settings shared by consumers and the producer: brokers, pass-through
/// options (TLS, SASL) and the SASL password from the environment.
pub fn client_config(kafka: &KafkaConfig, sasl_password: Option<&Secret>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.brokers)
        .set("client.id", &kafka.client_id);
    for (k, v) in &kafka.options {
        c.set(k, v);
    }
    if let Some(p) = sasl_password {
        c.set("sasl.password", p.expose());
    }
    // librdkafka's own log lines go through its default logger at warning level.
    c.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
    c
}
