//! Reading back what the sink wrote, for `paceline report`: InfluxQL through the `/query`
//! endpoint, which InfluxDB 1.x serves natively and 2.x and 3.x through their v1
//! compatibility API (the bucket mapped to a database, the token in an `Authorization:
//! Token` header). The same `[influx]` settings and secrets as the writer.

use std::time::Duration;

use crate::config::{InfluxApi, InfluxConfig, InfluxCredentials};

/// A query failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The database could not be reached.
    #[error("InfluxDB at {url}: cannot reach it: {reason}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The network error, with its causes.
        reason: String,
    },
    /// The database answered with an error.
    #[error("InfluxDB at {url}: HTTP {status}: {body}")]
    Refused {
        /// The base URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of its answer.
        body: String,
    },
    /// The query itself failed (`"error"` in the answer).
    #[error("InfluxDB at {url}: query `{query}` failed: {reason}")]
    Query {
        /// The base URL.
        url: String,
        /// The InfluxQL.
        query: String,
        /// What the database said.
        reason: String,
    },
    /// The settings do not make a client.
    #[error("influx.url `{url}`: {reason}")]
    Build {
        /// The configured URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// One series of an answer: its tags, column names and rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Tags of a `GROUP BY` series.
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// Column names; the first is `time` (nanoseconds, `epoch=ns`).
    pub columns: Vec<String>,
    /// Rows of values, in column order.
    pub values: Vec<Vec<serde_json::Value>>,
}

impl Series {
    /// A row's value of `column`.
    pub fn get<'a>(
        &self,
        row: &'a [serde_json::Value],
        column: &str,
    ) -> Option<&'a serde_json::Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        row.get(i)
    }
}

/// Runs InfluxQL queries on the database the sink writes.
pub struct InfluxReader {
    base: String,
    database: String,
    http: reqwest::Client,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

impl InfluxReader {
    /// A reader of `config`'s database (v1) or bucket (v2, through its DBRP mapping).
    pub fn new(config: &InfluxConfig, credentials: &InfluxCredentials) -> Result<Self, ReadError> {
        let base = config.url.trim_end_matches('/').to_string();
        let build = |reason: String| ReadError::Build {
            url: config.url.clone(),
            reason,
        };
        reqwest::Url::parse(&base).map_err(|e| build(e.to_string()))?;
        let tls = config.tls_files().map_err(|e| build(e.to_string()))?;
        let http = tls
            .apply(reqwest::Client::builder())
            .timeout(Duration::from_millis(config.request_timeout_ms.max(1000)))
            .build()
            .map_err(|e| build(e.to_string()))?;
        let (database, token) = match config.api {
            InfluxApi::V2 => (
                config.bucket.clone(),
                credentials.token.as_ref().map(|t| t.expose().to_string()),
            ),
            InfluxApi::V1 => (config.database.clone(), None),
        };
        Ok(InfluxReader {
            base,
            database,
            http,
            token,
            user: credentials.user.clone(),
            password: credentials
                .password
                .as_ref()
                .map(|p| p.expose().to_string()),
        })
    }

    /// The database's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The database (or bucket) queried.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Runs one InfluxQL statement; the series of its answer.
    pub async fn query(&self, query: &str) -> Result<Vec<Series>, ReadError> {
        let mut req = self.http.get(format!("{}/query", self.base)).query(&[
            ("db", self.database.as_str()),
            ("q", query),
            ("epoch", "ns"),
        ]);
        if let Some(token) = &self.token {
            req = req.header("Authorization", format!("Token {token}"));
        } else if let Some(user) = &self.user {
            req = req.basic_auth(user, self.password.as_deref());
        }
        let resp = req.send().await.map_err(|e| ReadError::Unreachable {
            url: self.base.clone(),
            reason: crate::influx::error_chain(&e.without_url()),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(ReadError::Refused {
                url: self.base.clone(),
                status,
                body: text.trim().chars().take(300).collect(),
            });
        }
        let answer: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ReadError::Query {
                url: self.base.clone(),
                query: query.into(),
                reason: format!("not JSON: {e}"),
            })?;
        let result = &answer["results"][0];
        if let Some(reason) = result["error"].as_str().or(answer["error"].as_str()) {
            return Err(ReadError::Query {
                url: self.base.clone(),
                query: query.into(),
                reason: reason.into(),
            });
        }
        Ok(result["series"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Series {
                tags: s["tags"].as_object().cloned().unwrap_or_default(),
                columns: s["columns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect(),
                values: s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_array().cloned())
                    .collect(),
            })
            .collect())
    }
}
