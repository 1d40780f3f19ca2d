//! Configuration of the long-running service (`paceline serve`): Kafka, InfluxDB, HTTP and
//! state, their validation, and the deployment environment overrides (`PACELINE_*`).
//!
//! Secrets (the InfluxDB token and password, a SASL password) are never part of this
//! configuration: they come from the environment or from files at start-up (see
//! [`Secret`]), and their `Debug` form is redacted so they cannot leak into logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

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
    /// How long to wait for topic metadata at start-up, in seconds. Default 60.
    pub metadata_timeout_s: u64,
    /// Consumer group the service commits its positions to after each checkpoint, only so
    /// that lag tools see progress (the checkpoint stays the truth). Default `paceline`.
    pub group_id: String,
    /// How long the brokers may stay unreachable, or a topic missing, before the service
    /// stops with an error (exit 1), in seconds; meanwhile `/readyz` answers 503 with the
    /// reason. Default 300.
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
            options: BTreeMap::new(),
        }
    }
}

/// Which InfluxDB write API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InfluxApi {
    /// `/api/v2/write` with org, bucket and token (InfluxDB 2.x, 1.8+, VictoriaMetrics).
    V2,
    /// `/write` with database, retention policy, user and password (InfluxDB 1.x).
    V1,
}

/// Timestamp precision of writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Nanoseconds.
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
}

impl Precision {
    /// The query parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }
    /// Nanoseconds per unit.
    pub fn divisor(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }
}

/// The InfluxDB sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InfluxConfig {
    /// `v2` or `v1`. Default `v2`. Env `PACELINE_INFLUX_API`.
    pub api: InfluxApi,
    /// Base URL. Default `http://127.0.0.1:8086`. Env `PACELINE_INFLUX_URL`.
    pub url: String,
    /// v2: organization. Default `paceline`. Env `PACELINE_INFLUX_ORG`.
    pub org: String,
    /// v2: bucket. Default `paceline`. Env `PACELINE_INFLUX_BUCKET`.
    pub bucket: String,
    /// v1: database. Default `paceline`. Env `PACELINE_INFLUX_DB`.
    pub database: String,
    /// v1: retention policy; empty for the database's default. Default empty.
    pub retention_policy: String,
    /// Timestamp precision of writes. Default `ns`.
    pub precision: Precision,
    /// Points per write request at most. Default 5000.
    pub batch_points: usize,
    /// How long a partial batch may wait for more points, in milliseconds. Default 100.
    pub linger_ms: u64,
    /// Points held while the database is slow or down; beyond this the sources stop reading.
    /// Default 200000.
    pub max_pending_points: usize,
    /// Timeout of one write request, in milliseconds. Default 10000.
    pub request_timeout_ms: u64,
    /// First retry delay, in milliseconds (doubles, with jitter). Default 200.
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds. Default 10000.
    pub retry_max_ms: u64,
    /// Keep retrying batches refused with a 4xx other than 429 (e.g. a bad token being
    /// rotated) instead of stopping the pipeline with an error. Default false.
    pub retry_client_errors: bool,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        InfluxConfig {
            api: InfluxApi::V2,
            url: "http://127.0.0.1:8086".into(),
            org: "paceline".into(),
            bucket: "paceline".into(),
            database: "paceline".into(),
            retention_policy: String::new(),
            precision: Precision::Ns,
            batch_points: 5000,
            linger_ms: 100,
            max_pending_points: 200_000,
            request_timeout_ms: 10_000,
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
            retry_client_errors: false,
        }
    }
}

/// The HTTP endpoints and process settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Address of `/metrics`, `/healthz`, `/readyz`, `/api/v1/indicators`.
    /// Default `127.0.0.1:9898`. Env `PACELINE_HTTP_ADDR`.
    pub http_addr: String,
    /// Directory for the service's state. Default `./paceline-state`. Env `PACELINE_STATE_DIR`.
    pub state_dir: String,
    /// The longest a graceful shutdown may take to drain and flush, in seconds. Default 30.
    pub shutdown_timeout_s: u64,
    /// How often input advances when events trickle in, in milliseconds. Default 100.
    pub epoch_linger_ms: u64,
    /// When every partition of a stream is idle, its watermark follows the wall clock minus
    /// the allowed out-of-orderness. Turn off for backfills through Kafka. Default true.
    pub idle_watermark_follows_clock: bool,
    /// How often a checkpoint of state and positions is taken, in seconds. Default 10.
    pub checkpoint_interval_s: u64,
    /// HTTP connections open at once; more wait until one closes. Default 1024.
    pub http_max_connections: usize,
    /// The longest an HTTP request's header may take to arrive, and an idle keep-alive
    /// connection may stay open, in seconds. Default 10.
    pub http_header_timeout_s: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            http_addr: "127.0.0.1:9898".into(),
            state_dir: "./paceline-state".into(),
            shutdown_timeout_s: 30,
            epoch_linger_ms: 100,
            idle_watermark_follows_clock: true,
            checkpoint_interval_s: 10,
            http_max_connections: 1024,
            http_header_timeout_s: 10,
        }
    }
}

/// Validates the service sections; errors are pushed with their keys.
pub fn validate(
    kafka: &KafkaConfig,
    influx: &InfluxConfig,
    service: &ServiceConfig,
    errors: &mut Vec<ConfigError>,
) {
    let mut err = |key: &str, reason: &str| {
        errors.push(ConfigError {
            key: key.into(),
            reason: reason.into(),
        })
    };
    if kafka.brokers.trim().is_empty() {
        err("kafka.brokers", "must name at least one broker (host:port)");
    }
    if kafka.dead_letter_topic.is_empty() {
        err("kafka.dead_letter_topic", "must not be empty");
    }
    if kafka.metadata_timeout_s == 0 {
        err("kafka.metadata_timeout_s", "must be at least 1");
    }
    if kafka.unavailable_timeout_s < 10 {
        err("kafka.unavailable_timeout_s", "must be at least 10");
    }
    if !(1..=10_000).contains(&kafka.topic_partitions) {
        err("kafka.topic_partitions", "must be between 1 and 10000");
    }
    if !(1..=32).contains(&kafka.topic_replication_factor) {
        err("kafka.topic_replication_factor", "must be between 1 and 32");
    }
    if kafka.telemetry_retention_h == 0 {
        err("kafka.telemetry_retention_h", "must be at least 1");
    }
    for key in kafka.options.keys() {
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
    if !(influx.url.starts_with("http://") || influx.url.starts_with("https://")) {
        err("influx.url", "must start with http:// or https://");
    } else if url_has_credentials(&influx.url) {
        err(
            "influx.url",
            "must not embed credentials (user:password@): use PACELINE_INFLUX_TOKEN, PACELINE_INFLUX_USER and PACELINE_INFLUX_PASSWORD, or their _FILE forms",
        );
    }
    match influx.api {
        InfluxApi::V2 => {
            if influx.org.is_empty() {
                err("influx.org", "must not be empty with api = \"v2\"");
            }
            if influx.bucket.is_empty() {
                err("influx.bucket", "must not be empty with api = \"v2\"");
            }
        }
        InfluxApi::V1 => {
            if influx.database.is_empty() {
                err("influx.database", "must not be empty with api = \"v1\"");
            }
        }
    }
    if influx.batch_points == 0 {
        err("influx.batch_points", "must be at least 1");
    }
    if influx.max_pending_points < influx.batch_points {
        err(
            "influx.max_pending_points",
            "must be at least influx.batch_points",
        );
    }
    if influx.request_timeout_ms == 0 {
        err("influx.request_timeout_ms", "must be at least 1");
    }
    if influx.retry_initial_ms == 0 || influx.retry_max_ms < influx.retry_initial_ms {
        err(
            "influx.retry_max_ms",
            "retry delays must be positive with retry_max_ms >= retry_initial_ms",
        );
    }
    if service.http_addr.parse::<std::net::SocketAddr>().is_err() {
        err(
            "service.http_addr",
            "must be an IP address and port, e.g. 127.0.0.1:9898",
        );
    }
    if kafka.group_id.trim().is_empty() {
        err("kafka.group_id", "must not be empty");
    }
    if service.checkpoint_interval_s == 0 {
        err("service.checkpoint_interval_s", "must be at least 1");
    }
    if service.state_dir.is_empty() {
        err("service.state_dir", "must not be empty");
    }
    if service.shutdown_timeout_s == 0 {
        err("service.shutdown_timeout_s", "must be at least 1");
    }
    if service.http_max_connections == 0 {
        err("service.http_max_connections", "must be at least 1");
    }
    if service.http_header_timeout_s == 0 || service.http_header_timeout_s > 3600 {
        err(
            "service.http_header_timeout_s",
            "must be between 1 and 3600",
        );
    }
    if service.epoch_linger_ms == 0 || service.epoch_linger_ms > 60_000 {
        err("service.epoch_linger_ms", "must be between 1 and 60000");
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

/// Whether an `http(s)://` URL carries `user:password@` (or `user@`) before its host.
fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// A secret value: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Secrets of the service, from the environment or files.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// InfluxDB v2 token (`PACELINE_INFLUX_TOKEN` or `PACELINE_INFLUX_TOKEN_FILE`).
    pub influx_token: Option<Secret>,
    /// InfluxDB v1 user (`PACELINE_INFLUX_USER`).
    pub influx_user: Option<String>,
    /// InfluxDB v1 password (`PACELINE_INFLUX_PASSWORD` or `PACELINE_INFLUX_PASSWORD_FILE`).
    pub influx_password: Option<Secret>,
    /// Kafka SASL password (`PACELINE_KAFKA_SASL_PASSWORD` or `..._FILE`).
    pub kafka_sasl_password: Option<Secret>,
}

impl Secrets {
    /// Which secrets are set, by the variable that carries each (their values never leave
    /// this type but through [`Secret::expose`]).
    pub fn presence(&self) -> [(&'static str, bool); 4] {
        [
            ("PACELINE_INFLUX_TOKEN", self.influx_token.is_some()),
            ("PACELINE_INFLUX_USER", self.influx_user.is_some()),
            ("PACELINE_INFLUX_PASSWORD", self.influx_password.is_some()),
            (
                "PACELINE_KAFKA_SASL_PASSWORD",
                self.kafka_sasl_password.is_some(),
            ),
        ]
    }
}

fn secret(
    env: &dyn Fn(&str) -> Option<String>,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Secret> {
    let file_key = format!("{name}_FILE");
    match (env(name), env(&file_key)) {
        (Some(_), Some(_)) => {
            errors.push(ConfigError {
                key: name.into(),
                reason: format!("set either {name} or {file_key}, not both"),
            });
            None
        }
        (Some(v), None) => Some(Secret(v)),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(v) => Some(Secret(v.trim_end_matches(['\n', '\r']).to_string())),
            Err(e) => {
                // The path is not secret; the contents never reach the message.
                errors.push(ConfigError {
                    key: file_key,
                    reason: format!("cannot read {path}: {e}"),
                });
                None
            }
        },
        (None, None) => None,
    }
}

impl Secrets {
    /// Reads the secrets through `env` (the process environment in production).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Secrets, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let s = Secrets {
            influx_token: secret(env, "PACELINE_INFLUX_TOKEN", &mut errors),
            influx_user: env("PACELINE_INFLUX_USER"),
            influx_password: secret(env, "PACELINE_INFLUX_PASSWORD", &mut errors),
            kafka_sasl_password: secret(env, "PACELINE_KAFKA_SASL_PASSWORD", &mut errors),
        };
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_exclusive() {
        let env = |k: &str| match k {
            "PACELINE_INFLUX_TOKEN" => Some("s3cr3t".to_string()),
            _ => None,
        };
        let s = Secrets::from_env(&env).expect("valid");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert_eq!(s.influx_token.as_ref().map(Secret::expose), Some("s3cr3t"));
        let both = |k: &str| match k {
            "PACELINE_INFLUX_PASSWORD" | "PACELINE_INFLUX_PASSWORD_FILE" => Some("x".to_string()),
            _ => None,
        };
        let e = Secrets::from_env(&both).expect_err("both set");
        assert_eq!(e[0].key, "PACELINE_INFLUX_PASSWORD");
        let missing =
            |k: &str| (k == "PACELINE_INFLUX_TOKEN_FILE").then(|| "/nonexistent/token".to_string());
        let e = Secrets::from_env(&missing).expect_err("unreadable");
        assert_eq!(e[0].key, "PACELINE_INFLUX_TOKEN_FILE");
    }

    #[test]
    fn service_errors_name_their_keys() {
        let mut k = KafkaConfig::default();
        k.brokers = " ".into();
        k.options.insert("sasl.password".into(), "x".into());
        let mut i = InfluxConfig::default();
        i.url = "ftp://x".into();
        i.batch_points = 0;
        let mut s = ServiceConfig::default();
        s.http_addr = "localhost".into();
        let mut errors = Vec::new();
        validate(&k, &i, &s, &mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "kafka.brokers",
                "kafka.options.sasl.password",
                "influx.url",
                "influx.batch_points",
                "service.http_addr"
            ]
        );
        // The refused option's value is not echoed.
        assert!(errors.iter().all(|e| !e.reason.contains("\"x\"")));
    }

    #[test]
    fn secrets_are_refused_where_they_hide() {
        let mut k = KafkaConfig::default();
        for key in [
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
        let mut i = InfluxConfig::default();
        i.url = "https://admin:hunter2@influx.example:8086/".into();
        let mut errors = Vec::new();
        validate(&k, &i, &ServiceConfig::default(), &mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "kafka.options.sasl.jaas.config",
                "kafka.options.sasl.oauthbearer.client.secret",
                "kafka.options.sasl.oauthbearer.config",
                "kafka.options.ssl.key.pem",
                "kafka.options.ssl.keystore.location",
                "kafka.options.ssl.keystore.password",
                "influx.url",
            ]
        );
        assert!(errors.iter().all(|e| !e.reason.contains("hunter2")));
        for (url, bad) in [
            ("http://user@h:8086", true),
            ("http://h:8086/write?u=x@y", false),
            ("https://h.example/path@x", false),
        ] {
            assert_eq!(url_has_credentials(url), bad, "{url}");
        }
    }
}
