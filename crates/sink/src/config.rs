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
    /// After a write that failed in a way the database may still apply later (a timeout,
    /// a broken connection, a 5xx), the points it held are written again with their
    /// newest values this many seconds after the last such failure, so that the late
    /// original cannot leave an older value over a correction written since. Default 60.
    pub doubt_rewrite_s: u64,
    /// A PEM file of CA certificates trusted for `https://` besides the system's (a
    /// private or government CA). Default empty: the system's alone.
    pub ca_file: String,
    /// A PEM client certificate (with its chain) for databases that ask for one; needs
    /// `client_key_file`. Default empty.
    pub client_cert_file: String,
    /// The client certificate's private key (PEM, PKCS#8 or RSA). Default empty.
    pub client_key_file: String,
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
            doubt_rewrite_s: 60,
            ca_file: String::new(),
            client_cert_file: String::new(),
            client_key_file: String::new(),
        }
    }
}

/// What `https://` trusts and presents beyond the defaults, read from the configured files.
#[derive(Default)]
pub struct TlsFiles {
    /// Extra trusted CAs.
    pub roots: Vec<reqwest::Certificate>,
    /// The client certificate and key.
    pub identity: Option<reqwest::Identity>,
}

impl TlsFiles {
    /// Adds the files' roots and identity to a client builder.
    pub fn apply(self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for root in self.roots {
            builder = builder.add_root_certificate(root);
        }
        if let Some(identity) = self.identity {
            builder = builder.identity(identity);
        }
        builder
    }
}

impl InfluxConfig {
    /// Reads `ca_file` and the client certificate files; an error names the key.
    pub fn tls_files(&self) -> Result<TlsFiles, ConfigError> {
        let read = |key: &str, path: &str| {
            std::fs::read(path).map_err(|e| ConfigError {
                key: key.into(),
                reason: format!("cannot read {path}: {e}"),
            })
        };
        let invalid = |key: &str, what: &str, e: reqwest::Error| ConfigError {
            key: key.into(),
            reason: format!("not {what}: {e}"),
        };
        let mut files = TlsFiles::default();
        if !self.ca_file.is_empty() {
            let pem = read("influx.ca_file", &self.ca_file)?;
            files.roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid("influx.ca_file", "PEM certificates", e))?;
            if files.roots.is_empty() {
                return Err(ConfigError {
                    key: "influx.ca_file".into(),
                    reason: format!("{} holds no PEM certificate", self.ca_file),
                });
            }
        }
        match (
            self.client_cert_file.is_empty(),
            self.client_key_file.is_empty(),
        ) {
            (true, true) => {}
            (false, true) => {
                return Err(ConfigError {
                    key: "influx.client_key_file".into(),
                    reason: "must be set with influx.client_cert_file".into(),
                })
            }
            (true, false) => {
                return Err(ConfigError {
                    key: "influx.client_cert_file".into(),
                    reason: "must be set with influx.client_key_file".into(),
                })
            }
            (false, false) => {
                // reqwest takes the chain and the key as one PEM.
                let mut pem = read("influx.client_cert_file", &self.client_cert_file)?;
                pem.push(b'\n');
                pem.extend(read("influx.client_key_file", &self.client_key_file)?);
                files.identity = Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    invalid("influx.client_key_file", "a PEM certificate and key", e)
                })?);
            }
        }
        Ok(files)
    }

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
        if let Err(e) = self.tls_files() {
            err(&e.key, &e.reason);
        }
        if self.batch_points == 0 {
            err("influx.batch_points", "must be at least 1");
        }
        if self.doubt_rewrite_s == 0 || self.doubt_rewrite_s > 86_400 {
            err("influx.doubt_rewrite_s", "must be between 1 and 86400");
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

    /// A self-signed certificate and its key made for this test alone (they sign nothing
    /// anywhere else): `openssl req -x509 -newkey ec ... -days 36500`.
    const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBkDCCATegAwIBAgIUNbDismaRbYIdCTxlTaV995s5sO4wCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwScGFjZWxpbmUgdW5pdCB0ZXN0MCAXDTI2MTIwMjEwMjU1MloY
DzIxMjYxMTA4MTAyNTUyWjAdMRswGQYDVQQDDBJwYWNlbGluZSB1bml0IHRlc3Qw
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATaa4x68Z2waqpu0XgTzvrotFXvlovW
UrUzR15LlxgXvQT8wZv1G/9zminVmHp6qXzmqYXjpiCwRDjib1dROW7po1MwUTAd
BgNVHQ4EFgQUR6cqA/K9rkOCAyheXc8nT42c0+kwHwYDVR0jBBgwFoAUR6cqA/K9
rkOCAyheXc8nT42c0+kwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBE
AiBNOkZ+0MmER7cBdyFg35kRKwuLoXtTP3yXoEUqi9E/dwIgEPs3i3rTZCcYXN3a
KixnQpeDG2yedDKOVuthrDp10tI=
-----END CERTIFICATE-----
";
    const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgG+A6uZ75Kx1biSpP
2xqUdVTP08nsHr9iunUompv00TChRANCAATaa4x68Z2waqpu0XgTzvrotFXvlovW
UrUzR15LlxgXvQT8wZv1G/9zminVmHp6qXzmqYXjpiCwRDjib1dROW7p
-----END PRIVATE KEY-----
";

    #[test]
    fn tls_files_are_read_at_load_and_each_fault_names_its_key() {
        let dir = std::env::temp_dir().join(format!("paceline-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let cert = file("cert.pem", TEST_CERT);
        let key = file("key.pem", TEST_KEY);
        let empty = file("empty.pem", "no certificate here\n");
        let errors_of = |c: &InfluxConfig| {
            let mut e = Vec::new();
            c.validate(&mut e);
            e.iter()
                .map(|e| format!("{}: {}", e.key, e.reason))
                .collect::<Vec<_>>()
        };
        let ok = InfluxConfig {
            ca_file: cert.clone(),
            client_cert_file: cert.clone(),
            client_key_file: key.clone(),
            ..InfluxConfig::default()
        };
        assert!(errors_of(&ok).is_empty(), "{:?}", errors_of(&ok));
        let files = ok.tls_files().unwrap();
        assert_eq!(files.roots.len(), 1);
        assert!(files.identity.is_some());

        let missing = InfluxConfig {
            ca_file: dir.join("absent.pem").display().to_string(),
            ..InfluxConfig::default()
        };
        let e = errors_of(&missing);
        assert!(e[0].starts_with("influx.ca_file: cannot read"), "{e:?}");
        let no_cert = InfluxConfig {
            ca_file: empty,
            ..InfluxConfig::default()
        };
        let e = errors_of(&no_cert);
        assert!(e[0].starts_with("influx.ca_file:"), "{e:?}");
        let half = InfluxConfig {
            client_cert_file: cert.clone(),
            ..InfluxConfig::default()
        };
        assert!(errors_of(&half)[0].starts_with("influx.client_key_file: must be set"));
        let other_half = InfluxConfig {
            client_key_file: key,
            ..InfluxConfig::default()
        };
        assert!(errors_of(&other_half)[0].starts_with("influx.client_cert_file: must be set"));
        let no_key = InfluxConfig {
            client_cert_file: cert.clone(),
            client_key_file: cert,
            ..InfluxConfig::default()
        };
        assert!(errors_of(&no_key)[0].starts_with("influx.client_key_file: not a PEM"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn influx_errors_name_their_keys_and_refuse_credentials_in_the_url() {
        let i = InfluxConfig {
            url: "ftp://x".into(),
            batch_points: 0,
            ..InfluxConfig::default()
        };
        let mut errors = Vec::new();
        i.validate(&mut errors);
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["influx.url", "influx.batch_points"]);
        let i = InfluxConfig {
            url: "https://admin:hunter2@influx.example:8086/".into(),
            ..InfluxConfig::default()
        };
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
