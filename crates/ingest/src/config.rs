//! The `[kafka]` section: brokers, topics' handling, timeouts and librdkafka pass-through
//! options, with its validation. Secrets are never part of it: the SASL password comes from
//! the environment (`paceline_runtime` reads it) and options that carry secrets are refused.

use std::collections::BTreeMap;

use paceline_model::config::ConfigError;
use serde::{Deserialize, Serialize};

/// Kafka consumers and the dead-letter producer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma separated. Default `127.0.0.1:9092`. Env `PACELINE_KAFKA_BROKERS`.
    pub brokers: String,
    /// Client id reported to the brokers. Default `paceline`.
    pub client_id: String,
    /// Topic rejected events are written to. Default `paceline-dead-letters`.
    pub dead_letter_topic: String,
    /// How long one request creating topics at start-up (`create_topics`) may take, in
    /// seconds. Default 60.
    pub metadata_timeout_s: u64,
    /// Consumer group the service commits its positions to after each checkpoint, only so
    /// that lag tools see progress (the checkpoint stays the truth). Default `paceline`.
    pub group_id: String,
    /// How long the brokers may stay unreachable or refuse the client, or a topic stay
    /// missing while running, before the service stops with an error (exit 1), in seconds,
    /// from the first second of a start on; meanwhile `/readyz` answers 503 with the reason
    /// and the log says it. Default 300.
    pub unavailable_timeout_s: u64,
    /// Create missing topics at start (the three input topics and the dead-letter topic)
    /// instead of failing. Default false.
    pub create_topics: bool,
    /// Partitions of a topic created by `create_topics`. Default 3.
    pub topic_partitions: i32,
    /// Replication factor of a topic created by `create_topics`. Default 1 (set 3 on a
    /// production cluster).
    pub topic_replication_factor: i32,
    /// Retention of a created telemetry topic, in hours (filings and scenarios topics keep
    /// everything: the state is rebuilt from them). At least the telemetry correction
    /// horizon. Default 168.
    pub telemetry_retention_h: u64,
    /// The largest dead letter written, in bytes (value, key and headers): a rejected
    /// message larger than this is cut to fit, its original size and SHA-256 in headers.
    /// Below the dead-letter topic's `max.message.bytes`, which the start reads from the
    /// brokers where they tell it (the smaller of the two applies). Default 1000000.
    pub dead_letter_max_bytes: usize,
    /// Extra librdkafka properties passed through to consumers and producer (TLS, SASL), e.g.
    /// `"security.protocol" = "SASL_SSL"`. Passwords are refused here: use
    /// `PACELINE_KAFKA_SASL_PASSWORD` or `PACELINE_KAFKA_SASL_PASSWORD_FILE`. Default empty.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            client_id: "paceline".into(),
            dead_letter_topic: "paceline-dead-letters".into(),
            metadata_timeout_s: 60,
            group_id: "paceline".into(),
            unavailable_timeout_s: 300,
            create_topics: false,
            topic_partitions: 3,
            topic_replication_factor: 1,
            telemetry_retention_h: 168,
            dead_letter_max_bytes: 1_000_000,
            options: BTreeMap::new(),
        }
    }
}

/// The smallest dead-letter limit: room for the headers and the start of the payload.
pub const MIN_DEAD_LETTER_BYTES: usize = 16 * 1024;

impl KafkaConfig {
    /// Every error of the `[kafka]` section, pushed with its key.
    pub fn validate(&self, errors: &mut Vec<ConfigError>) {
        let mut err = |key: &str, reason: &str| {
            errors.push(ConfigError {
                key: key.into(),
                reason: reason.into(),
            })
        };
        if self.brokers.trim().is_empty() {
            err("kafka.brokers", "must name at least one broker (host:port)");
        }
        if self.dead_letter_topic.is_empty() {
            err("kafka.dead_letter_topic", "must not be empty");
        }
        if self.metadata_timeout_s == 0 {
            err("kafka.metadata_timeout_s", "must be at least 1");
        }
        if self.unavailable_timeout_s < 10 {
            err("kafka.unavailable_timeout_s", "must be at least 10");
        }
        if !(1..=10_000).contains(&self.topic_partitions) {
            err("kafka.topic_partitions", "must be between 1 and 10000");
        }
        if !(1..=32).contains(&self.topic_replication_factor) {
            err("kafka.topic_replication_factor", "must be between 1 and 32");
        }
        if !(MIN_DEAD_LETTER_BYTES..=crate::DEAD_LETTER_MAX_BYTES)
            .contains(&self.dead_letter_max_bytes)
        {
            err(
                "kafka.dead_letter_max_bytes",
                &format!(
                    "must be between {MIN_DEAD_LETTER_BYTES} and {}",
                    crate::DEAD_LETTER_MAX_BYTES
                ),
            );
        }
        if self.telemetry_retention_h == 0 {
            err("kafka.telemetry_retention_h", "must be at least 1");
        }
        for key in self.options.keys() {
            let k = key.to_ascii_lowercase();
            if carries_secret(&k) {
                err(
                    &format!("kafka.options.{key}"),
                    "secrets may not be in the configuration file: use PACELINE_KAFKA_SASL_PASSWORD or PACELINE_KAFKA_SASL_PASSWORD_FILE",
                );
            }
            if matches!(
                k.as_str(),
                "bootstrap.servers" | "group.id" | "enable.auto.commit" | "enable.partition.eof"
            ) {
                err(
                    &format!("kafka.options.{key}"),
                    "is set by paceline itself (use kafka.brokers for the brokers)",
                );
            }
        }
        if self.group_id.trim().is_empty() {
            err("kafka.group_id", "must not be empty");
        }
    }
}

/// librdkafka properties whose values are secrets (passwords, private keys, key stores,
/// OAuth configuration, SASL/JAAS settings): refused in the configuration file.
fn carries_secret(key: &str) -> bool {
    key.contains("password")
        || key.contains("secret")
        || key.contains("token")
        || key.ends_with(".key.pem")
        || key.starts_with("ssl.keystore.")
        || key == "sasl.oauthbearer.config"
        || key == "sasl.jaas.config"
        || key == "ssl.key.pem"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_name_their_keys_and_refuse_secrets() {
        let mut k = KafkaConfig {
            brokers: " ".into(),
            ..KafkaConfig::default()
        };
        for key in [
            "sasl.password",
            "ssl.key.pem",
            "ssl.keystore.location",
            "ssl.keystore.password",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
        ] {
            k.options.insert(key.into(), "x".into());
        }
        // Not secrets: where a CA or a certificate lies, the mechanism, the user.
        for key in [
            "ssl.ca.location",
            "ssl.certificate.location",
            "sasl.mechanism",
            "sasl.username",
        ] {
            k.options.insert(key.into(), "x".into());
        }
        let mut errors = Vec::new();
        k.validate(&mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "kafka.brokers",
                "kafka.options.sasl.jaas.config",
                "kafka.options.sasl.oauthbearer.client.secret",
                "kafka.options.sasl.oauthbearer.config",
                "kafka.options.sasl.password",
                "kafka.options.ssl.key.pem",
                "kafka.options.ssl.keystore.location",
                "kafka.options.ssl.keystore.password",
            ]
        );
        // The refused option's value is not echoed.
        assert!(errors.iter().all(|e| !e.reason.contains("\"x\"")));
    }
}
