//! The `[influx]` section: the write API, where and how to write, batching, retries, with
//! its validation; and the credentials, which never come from the file.

use paceline_model::config::ConfigError;
use paceline_model::secret::Secret;
use serde::{Deserialize, Serialize};

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
    /// How long a starting service waits to reach the database (unreachable, or refusing
    /// the credentials) before it stops with the reason, exit 1, in seconds. Once reached,
    /// an outage is waited out with backpressure, however long. Default 300.
    pub start_timeout_s: u64,
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
            start_timeout_s: 300,
        }
    }
}

impl InfluxConfig {
    /// Every error of the `[influx]` section, pushed with its key.
    pub fn validate(&self, errors: &mut Vec<ConfigError>) {
        let mut err = |key: &str, reason: &str| {
            errors.push(ConfigError {
                key: key.into(),
                reason: reason.into(),
            })
        };
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            err("influx.url", "must start with http:// or https://");
        } else if url_has_credentials(&self.url) {
            err(
                "influx.url",
                "must not embed credentials (user:password@): use PACELINE_INFLUX_TOKEN, PACELINE_INFLUX_USER and PACELINE_INFLUX_PASSWORD, or their _FILE forms",
            );
        }
        match self.api {
            InfluxApi::V2 => {
                if self.org.is_empty() {
                    err("influx.org", "must not be empty with api = \"v2\"");
                }
                if self.bucket.is_empty() {
                    err("influx.bucket", "must not be empty with api = \"v2\"");
                }
            }
            InfluxApi::V1 => {
                if self.database.is_empty() {
                    err("influx.database", "must not be empty with api = \"v1\"");
                }
            }
        }
        if self.batch_points == 0 {
            err("influx.batch_points", "must be at least 1");
        }
        if self.max_pending_points < self.batch_points {
            err(
                "influx.max_pending_points",
                "must be at least influx.batch_points",
            );
        }
        if self.request_timeout_ms == 0 {
            err("influx.request_timeout_ms", "must be at least 1");
        }
        if self.start_timeout_s == 0 {
            err("influx.start_timeout_s", "must be at least 1");
        }
        if self.retry_initial_ms == 0 || self.retry_max_ms < self.retry_initial_ms {
            err(
                "influx.retry_max_ms",
                "retry delays must be positive with retry_max_ms >= retry_initial_ms",
            );
        }
    }
}

/// Whether an `http(s)://` URL carries `user:password@` (or `user@`) before its host.
fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.contains('@')
}

/// InfluxDB credentials, from the environment or files (never from the configuration file).
#[derive(Debug, Clone, Default)]
pub struct InfluxCredentials {
    /// v2 token.
    pub token: Option<Secret>,
    /// v1 user.
    pub user: Option<String>,
    /// v1 password.
    pub password: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn influx_errors_name_their_keys_and_refuse_credentials_in_the_url() {
        let mut i = InfluxConfig::default();
        i.url = "ftp://x".into();
        i.batch_points = 0;
        let mut errors = Vec::new();
        i.validate(&mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["influx.url", "influx.batch_points"]);
        let mut i = InfluxConfig::default();
        i.url = "https://admin:hunter2@influx.example:8086/".into();
        let mut errors = Vec::new();
        i.validate(&mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "influx.url");
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
