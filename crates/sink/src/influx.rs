//! InfluxDB writers: the v2 API through the influxdb2 crate (`/api/v2/write` with org,
//! bucket and token) and the 1.x API (`/write` with database, retention policy, user and
//! password). Both take a body of line protocol and classify failures as retryable
//! (network errors, 429, 5xx) or refused (any other 4xx).

use std::time::Duration;

use crate::config::{InfluxApi, InfluxConfig, InfluxCredentials, Precision};
use influxdb2::api::write::TimestampPrecision;

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Worth retrying: the database is unreachable, overloaded or failing.
    #[error("{0}")]
    Retryable(String),
    /// The database refused the batch (4xx other than 429).
    #[error("refused with HTTP {status}: {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The answer's text (truncated).
        body: String,
    },
}

/// The writer could not be built from the configuration.
#[derive(Debug, thiserror::Error)]
#[error("influx.url `{url}`: {reason}")]
pub struct BuildError {
    /// The URL.
    pub url: String,
    /// Why.
    pub reason: String,
}

enum Api {
    V2 {
        client: influxdb2::Client,
        bucket: String,
        precision: Precision,
    },
    V1 {
        url: String,
        query: Vec<(&'static str, String)>,
    },
}

/// Writes line-protocol bodies to one InfluxDB.
pub struct InfluxWriter {
    api: Api,
    base: String,
    http: reqwest::Client,
    ping_url: String,
    user: Option<String>,
    password: Option<String>,
    /// Nanoseconds per timestamp unit of the bodies this writer expects.
    pub divisor: i64,
}

fn classify(status: u16, body: String) -> WriteError {
    let body: String = body.trim().chars().take(500).collect();
    if status == 429 || status >= 500 {
        WriteError::Retryable(format!("HTTP {status}: {body}"))
    } else {
        WriteError::Refused { status, body }
    }
}

/// A network error's text with its causes (`connection refused`, a certificate not
/// trusted, ...), without the URL's query (which may name a user).
fn network(e: reqwest::Error) -> WriteError {
    WriteError::Retryable(format!("network error: {}", error_chain(&e.without_url())))
}

/// An error's text followed by its causes' (`connection refused`, ...), each once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        // hyper repeats its cause's text inside its own at times.
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

impl InfluxWriter {
    /// Builds the writer for `config`, with `credentials`.
    pub fn new(config: &InfluxConfig, credentials: &InfluxCredentials) -> Result<Self, BuildError> {
        let base = config.url.trim_end_matches('/').to_string();
        let bad = |reason: String| BuildError {
            url: config.url.clone(),
            reason,
        };
        reqwest::Url::parse(&base).map_err(|e| bad(e.to_string()))?;
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let builder = || -> Result<reqwest::ClientBuilder, BuildError> {
            let tls = config.tls_files().map_err(|e| bad(e.to_string()))?;
            Ok(tls.apply(reqwest::Client::builder().timeout(timeout)))
        };
        let http = builder()?.build().map_err(|e| bad(e.to_string()))?;
        let (api, ping_url) = match config.api {
            InfluxApi::V2 => {
                let token = credentials
                    .token
                    .as_ref()
                    .map(|t| t.expose().to_string())
                    .unwrap_or_default();
                let client = influxdb2::ClientBuilder::with_builder(
                    builder()?,
                    base.clone(),
                    config.org.clone(),
                    token,
                )
                .build()
                .map_err(|e| bad(e.to_string()))?;
                let precision = config.precision;
                (
                    Api::V2 {
                        client,
                        bucket: config.bucket.clone(),
                        precision,
                    },
                    format!("{base}/health"),
                )
            }
            InfluxApi::V1 => {
                let mut query = vec![
                    ("db", config.database.clone()),
                    ("precision", config.precision.as_str().to_string()),
                ];
                if !config.retention_policy.is_empty() {
                    query.push(("rp", config.retention_policy.clone()));
                }
                (
                    Api::V1 {
                        url: format!("{base}/write"),
                        query,
                    },
                    format!("{base}/ping"),
                )
            }
        };
        Ok(InfluxWriter {
            api,
            base,
            http,
            ping_url,
            user: credentials.user.clone(),
            password: credentials
                .password
                .as_ref()
                .map(|p| p.expose().to_string()),
            divisor: config.precision.divisor(),
        })
    }

    /// Writes one body of line protocol.
    pub async fn write(&self, body: String) -> Result<(), WriteError> {
        match &self.api {
            Api::V2 {
                client,
                bucket,
                precision,
            } => {
                let org = client.org.clone();
                let precision = match precision {
                    Precision::Ns => TimestampPrecision::Nanoseconds,
                    Precision::Us => TimestampPrecision::Microseconds,
                    Precision::Ms => TimestampPrecision::Milliseconds,
                    Precision::S => TimestampPrecision::Seconds,
                };
                client
                    .write_line_protocol_with_precision(&org, bucket, body, precision)
                    .await
                    .map_err(|e| match e {
                        influxdb2::RequestError::Http { status, text } => {
                            classify(status.as_u16(), text)
                        }
                        influxdb2::RequestError::ReqwestProcessing { source } => network(source),
                        other => WriteError::Retryable(other.to_string()),
                    })
            }
            Api::V1 { url, query } => {
                let mut req = self.http.post(url).query(query).body(body);
                if let Some(user) = &self.user {
                    req = req.basic_auth(user, self.password.as_deref());
                }
                let resp = req.send().await.map_err(network)?;
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    Ok(())
                } else {
                    let text = resp.text().await.unwrap_or_default();
                    Err(classify(status, text))
                }
            }
        }
    }

    /// Whether the database takes writes from this writer: an empty write, which passes
    /// through the database's checks of credentials and of the database or bucket before
    /// it finds nothing to write.
    pub async fn check(&self) -> Result<(), WriteError> {
        self.write(String::new()).await
    }

    /// The database's base URL, as the log and `/readyz` name it.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Whether the database answers its health endpoint (`/health` for v2, `/ping` for v1).
    pub async fn ping(&self) -> Result<(), WriteError> {
        let resp = self
            .http
            .get(&self.ping_url)
            .send()
            .await
            .map_err(network)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(classify(status, String::new()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify(429, "x".into()),
            WriteError::Retryable(_)
        ));
        assert!(matches!(
            classify(503, "x".into()),
            WriteError::Retryable(_)
        ));
        assert_eq!(
            classify(401, "unauthorized".into()),
            WriteError::Refused {
                status: 401,
                body: "unauthorized".into()
            }
        );
        match classify(400, "y".repeat(2000)) {
            WriteError::Refused { body, .. } => assert_eq!(body.len(), 500),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_bad_url_is_an_error_not_a_panic() {
        let c = InfluxConfig {
            url: "http://[::1".into(),
            ..InfluxConfig::default()
        };
        let e = InfluxWriter::new(&c, &InfluxCredentials::default())
            .err()
            .expect("refused");
        assert!(e.to_string().starts_with("influx.url"));
    }
}
