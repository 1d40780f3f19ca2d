//! The service's settings: the pipeline's configuration and the deployment sections of the
//! same file (`[kafka]` owned by `paceline_ingest`, `[influx]` by `paceline_sink`,
//! `[service]` here), the `PACELINE_*` environment overrides, and the secrets, which only
//! ever come from the environment or files.
//!
//! The pipeline crates (decode, dataflow) see only [`Config`]; [`Settings`] derefs to it, so
//! `settings.streams` reads as before while `settings.kafka` exists only here.

use std::ops::{Deref, DerefMut};

pub use paceline_ingest::KafkaConfig;
use paceline_model::config::{from_toml_over, Config, ConfigError, LoadError};
use paceline_model::secret::Secret;
use paceline_model::Stream;
pub use paceline_sink::config::{InfluxApi, InfluxConfig, InfluxCredentials, Precision};
use serde::{Deserialize, Serialize};

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
    /// HTTP connections open at once (at the cap the oldest idle one gives way). Default 1024.
    pub http_max_connections: usize,
    /// The longest an HTTP request's header may take to arrive, and an idle keep-alive
    /// connection may stay open, in seconds. Default 10.
    pub http_header_timeout_s: u64,
    /// The status page's language when the address names none (`?lang=`): `en`, `zh`, or
    /// `auto` for the browser's `Accept-Language`. Default `auto`.
    pub language: String,
    /// The address people open the status page at (e.g. `https://paceline.example.gov/`),
    /// named in the plan alerts' text; empty: `http://<scraped address>/`. Default empty.
    pub public_url: String,
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
            language: "auto".into(),
            public_url: String::new(),
        }
    }
}

impl ServiceConfig {
    /// Every error of the `[service]` section, pushed with its key.
    pub fn validate(&self, errors: &mut Vec<ConfigError>) {
        let mut err = |key: &str, reason: &str| {
            errors.push(ConfigError {
                key: key.into(),
                reason: reason.into(),
            })
        };
        if self.http_addr.parse::<std::net::SocketAddr>().is_err() {
            err(
                "service.http_addr",
                "must be an IP address and port, e.g. 127.0.0.1:9898",
            );
        }
        if self.checkpoint_interval_s == 0 {
            err("service.checkpoint_interval_s", "must be at least 1");
        }
        if self.state_dir.is_empty() {
            err("service.state_dir", "must not be empty");
        }
        if self.shutdown_timeout_s == 0 {
            err("service.shutdown_timeout_s", "must be at least 1");
        }
        if self.http_max_connections == 0 {
            err("service.http_max_connections", "must be at least 1");
        }
        if self.http_header_timeout_s == 0 || self.http_header_timeout_s > 3600 {
            err(
                "service.http_header_timeout_s",
                "must be between 1 and 3600",
            );
        }
        if self.epoch_linger_ms == 0 || self.epoch_linger_ms > 60_000 {
            err("service.epoch_linger_ms", "must be between 1 and 60000");
        }
        let url = &self.public_url;
        if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
            err(
                "service.public_url",
                "must be empty or an http:// or https:// address",
            );
        }
        if self.language != "auto" && self.page_language().is_none() {
            err("service.language", "must be en, zh or auto");
        }
    }

    /// The configured page language; `None` for `auto` (the browser's).
    pub fn page_language(&self) -> Option<paceline_model::names::Lang> {
        match self.language.as_str() {
            "en" => Some(paceline_model::names::Lang::En),
            "zh" => Some(paceline_model::names::Lang::Zh),
            _ => None,
        }
    }
}

/// The processes of one timely cluster (docs/configuration.md, "Scaling"). Workers per
/// process are `dataflow.workers`, the same on every process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Every process's address for the dataflow's connections (`host:port`), by process
    /// index; empty or one entry: a single process. Env `PACELINE_PEERS` (comma-separated).
    pub processes: Vec<String>,
    /// This process's index in `processes`. Env `PACELINE_PROCESS_INDEX`; unset, the
    /// ordinal that ends the host name (`paceline-2` is process 2), as in a StatefulSet.
    pub process_index: Option<usize>,
    /// How long to wait at start for every process to answer, in seconds. Default 120.
    pub connect_timeout_s: u64,
    /// How long a peer that vanished without closing its connections (a machine lost, a
    /// cut link) may go unnoticed, in seconds: TCP keepalive and a user timeout on every
    /// connection. Default 30.
    pub peer_timeout_s: u64,
    /// The processes' addresses as one pattern, `{i}` standing for the index
    /// (`paceline-{i}.paceline-peers:7000`), with `size`: the list a StatefulSet's
    /// `replicas` implies, so that resizing is one edit. Instead of `processes`. Env
    /// `PACELINE_PEER_PATTERN`.
    pub peer_pattern: String,
    /// How many processes `peer_pattern` makes. Env `PACELINE_CLUSTER_SIZE`.
    pub size: usize,
    /// Every process's HTTP address (`host:port`), by index: each process's page and API
    /// show the whole cluster's series, fetching the others' from here. Empty: each
    /// process's host from `processes` with this process's `service.http_addr` port, as in
    /// a StatefulSet. Env `PACELINE_HTTP_PEERS` (comma-separated).
    pub http_peers: Vec<String>,
    /// The CA (PEM) whose certificates every process presents and accepts: set with
    /// `tls_cert_file` and `tls_key_file`, every connection between processes is mutual
    /// TLS. Env `PACELINE_CLUSTER_TLS_CA_FILE`.
    pub tls_ca_file: String,
    /// This process's certificate chain (PEM), naming the host its peers dial. Env
    /// `PACELINE_CLUSTER_TLS_CERT_FILE`.
    pub tls_cert_file: String,
    /// This process's private key (PEM). Env `PACELINE_CLUSTER_TLS_KEY_FILE`.
    pub tls_key_file: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            processes: Vec::new(),
            process_index: None,
            connect_timeout_s: 120,
            peer_timeout_s: 30,
            peer_pattern: String::new(),
            size: 0,
            http_peers: Vec::new(),
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

impl ClusterConfig {
    /// The TLS of the connections between processes, read from the three files (None
    /// when none is set); an error names the key.
    pub fn tls(&self) -> Result<Option<paceline_dataflow::cluster::ClusterTls>, ConfigError> {
        use paceline_dataflow::cluster::{ClusterTls, TlsError};
        let files = [
            ("cluster.tls_ca_file", &self.tls_ca_file),
            ("cluster.tls_cert_file", &self.tls_cert_file),
            ("cluster.tls_key_file", &self.tls_key_file),
        ];
        if files.iter().all(|(_, f)| f.is_empty()) {
            return Ok(None);
        }
        let mut pems = Vec::new();
        for (key, file) in files {
            if file.is_empty() {
                return Err(ConfigError {
                    key: key.into(),
                    reason: "must be set with the other two cluster.tls_* files".into(),
                });
            }
            pems.push(std::fs::read(file).map_err(|e| ConfigError {
                key: key.into(),
                reason: format!("cannot read {file}: {e}"),
            })?);
        }
        ClusterTls::from_pem(&pems[0], &pems[1], &pems[2])
            .map(Some)
            .map_err(|e| ConfigError {
                key: match e {
                    TlsError::Ca(_) => "cluster.tls_ca_file",
                    TlsError::Cert(_) => "cluster.tls_cert_file",
                    TlsError::Key(_) => "cluster.tls_key_file",
                    TlsError::Config(_) => "cluster.tls_cert_file and cluster.tls_key_file",
                }
                .into(),
                reason: e.to_string(),
            })
    }
}

/// Most processes `cluster.size` may ask for.
const MAX_PROCESSES: usize = 256;

/// The ordinal that ends a StatefulSet pod's host name (`paceline-2` → 2).
pub fn ordinal_of_host(host: &str) -> Option<usize> {
    let (_, n) = host.rsplit_once('-')?;
    n.parse().ok()
}

impl ClusterConfig {
    /// Several processes form the cluster.
    pub fn is_cluster(&self) -> bool {
        self.processes.len() > 1
    }

    /// Each process's HTTP address: `http_peers`, else each process's host with the port
    /// of `http_addr` (this process's own, the same on every process of a StatefulSet).
    pub fn http_addresses(&self, http_addr: &str) -> Vec<String> {
        if !self.http_peers.is_empty() {
            return self.http_peers.clone();
        }
        let port = http_addr.rsplit_once(':').map_or("9898", |(_, p)| p);
        self.processes
            .iter()
            .map(|a| {
                let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                format!("{host}:{port}")
            })
            .collect()
    }

    /// Fills `processes` from `peer_pattern` and `size`; an error names the key at fault.
    /// A list equal to the pattern's (as `print-config` writes it back) is no conflict.
    pub fn derive_processes(&mut self) -> Result<(), ConfigError> {
        let err = |key: &str, reason: &str| ConfigError {
            key: key.into(),
            reason: reason.into(),
        };
        match (self.peer_pattern.is_empty(), self.size) {
            (true, 0) => return Ok(()),
            (true, _) => {
                return Err(err(
                    "cluster.peer_pattern",
                    "not set: cluster.size needs the pattern of the processes' addresses",
                ))
            }
            (false, 0) => {
                return Err(err(
                    "cluster.size",
                    "not set: cluster.peer_pattern needs the number of processes",
                ))
            }
            _ => {}
        }
        if !self.peer_pattern.contains("{i}") {
            return Err(err(
                "cluster.peer_pattern",
                "must contain `{i}`, which stands for each process's index",
            ));
        }
        if self.size > MAX_PROCESSES {
            return Err(err(
                "cluster.size",
                &format!("must be between 1 and {MAX_PROCESSES}"),
            ));
        }
        let derived: Vec<String> = (0..self.size)
            .map(|i| self.peer_pattern.replace("{i}", &i.to_string()))
            .collect();
        if !self.processes.is_empty() && self.processes != derived {
            return Err(err(
                "cluster.processes",
                "set together with cluster.peer_pattern: give the list or the pattern, not both",
            ));
        }
        self.processes = derived;
        Ok(())
    }

    /// Every error of the `[cluster]` section, pushed with its key.
    pub fn validate(&self, errors: &mut Vec<ConfigError>) {
        let mut err = |key: &str, reason: String| {
            errors.push(ConfigError {
                key: key.into(),
                reason,
            })
        };
        for (i, a) in self.processes.iter().enumerate() {
            let port = a.rsplit_once(':').and_then(|(h, p)| {
                (!h.is_empty()).then_some(())?;
                p.parse::<u16>().ok()
            });
            if port.is_none() {
                err(
                    "cluster.processes",
                    format!("entry {i} `{a}` is not host:port"),
                );
            }
            if self.processes[..i].contains(a) {
                err("cluster.processes", format!("`{a}` is listed twice"));
            }
        }
        match self.process_index {
            Some(i) if self.processes.len() > 1 && i >= self.processes.len() => err(
                "cluster.process_index",
                format!(
                    "{i} is out of range: cluster.processes lists {} processes (0 to {})",
                    self.processes.len(),
                    self.processes.len() - 1
                ),
            ),
            None if self.is_cluster() => err(
                "cluster.process_index",
                "not set: set it, or PACELINE_PROCESS_INDEX, or run under a host name that ends in -<ordinal>".into(),
            ),
            _ => {}
        }
        if !self.http_peers.is_empty() && self.http_peers.len() != self.processes.len() {
            err(
                "cluster.http_peers",
                format!(
                    "lists {} addresses for {} processes: one per process, in the same order",
                    self.http_peers.len(),
                    self.processes.len()
                ),
            );
        }
        if !(3..=3600).contains(&self.peer_timeout_s) {
            err(
                "cluster.peer_timeout_s",
                "must be between 3 and 3600".into(),
            );
        }
        if self.connect_timeout_s == 0 || self.connect_timeout_s > 3600 {
            err(
                "cluster.connect_timeout_s",
                "must be between 1 and 3600".into(),
            );
        }
    }
}

/// Everything `paceline serve` is configured with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Settings {
    /// The pipeline: indicators, streams, plan, dataflow.
    pub pipeline: Config,
    /// `[kafka]`.
    pub kafka: KafkaConfig,
    /// `[influx]`.
    pub influx: InfluxConfig,
    /// `[service]`.
    pub service: ServiceConfig,
    /// `[cluster]`.
    pub cluster: ClusterConfig,
}

impl Deref for Settings {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.pipeline
    }
}

impl DerefMut for Settings {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.pipeline
    }
}

/// The deployment sections as they are in the file (the pipeline's sections are read by
/// [`Config`], which also refuses unknown sections).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Deployment {
    kafka: KafkaConfig,
    influx: InfluxConfig,
    service: ServiceConfig,
    cluster: ClusterConfig,
}

impl Settings {
    /// Parses TOML text (unknown keys and wrong types are errors) and validates it.
    pub fn from_toml(text: &str, path: &str) -> Result<Settings, LoadError> {
        let settings = Settings::parse(text, path)?;
        let errors = settings.validate();
        LoadError::unless_invalid(settings, errors, path)
    }

    /// The settings of a service: the file (or the defaults without one), then the
    /// environment overrides ([`Settings::apply_env`]), then validation of the result.
    pub fn load_with_env(
        path: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings, LoadError> {
        let mut settings = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| LoadError::Read {
                    path: p.into(),
                    source,
                })?;
                Settings::parse(&text, p)?
            }
            None => Settings::default(),
        };
        let mut errors = settings.apply_env(env);
        errors.extend(settings.validate());
        LoadError::unless_invalid(settings, errors, path.unwrap_or("(defaults)"))
    }

    fn parse(text: &str, path: &str) -> Result<Settings, LoadError> {
        let pipeline = from_toml_over(text, path, &Config::default())?;
        let d = from_toml_over(text, path, &Deployment::default())?;
        Ok(Settings {
            pipeline,
            kafka: d.kafka,
            influx: d.influx,
            service: d.service,
            cluster: d.cluster,
        })
    }

    /// Applies the deployment overrides of the environment (`PACELINE_KAFKA_BROKERS`,
    /// `PACELINE_INFLUX_API`, `PACELINE_INFLUX_URL`, `PACELINE_INFLUX_ORG`,
    /// `PACELINE_INFLUX_BUCKET`, `PACELINE_INFLUX_DB`, `PACELINE_INFLUX_CA_FILE`,
    /// `PACELINE_CLUSTER_TLS_CA_FILE`, `_CERT_FILE`, `_KEY_FILE`, `PACELINE_HTTP_ADDR`,
    /// `PACELINE_STATE_DIR`, `PACELINE_WORKERS`, `PACELINE_PEERS`, `PACELINE_PEER_PATTERN`,
    /// `PACELINE_CLUSTER_SIZE`, `PACELINE_HTTP_PEERS`, `PACELINE_PROCESS_INDEX`, and, for the process index when neither sets it, `HOSTNAME`'s ordinal). Returns the
    /// errors of values that cannot apply.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let set = |name: &str, target: &mut String| {
            if let Some(v) = env(name) {
                *target = v;
            }
        };
        set("PACELINE_KAFKA_BROKERS", &mut self.kafka.brokers);
        set("PACELINE_INFLUX_URL", &mut self.influx.url);
        set("PACELINE_INFLUX_ORG", &mut self.influx.org);
        set("PACELINE_INFLUX_BUCKET", &mut self.influx.bucket);
        set("PACELINE_INFLUX_DB", &mut self.influx.database);
        set("PACELINE_INFLUX_CA_FILE", &mut self.influx.ca_file);
        set(
            "PACELINE_CLUSTER_TLS_CA_FILE",
            &mut self.cluster.tls_ca_file,
        );
        set(
            "PACELINE_CLUSTER_TLS_CERT_FILE",
            &mut self.cluster.tls_cert_file,
        );
        set(
            "PACELINE_CLUSTER_TLS_KEY_FILE",
            &mut self.cluster.tls_key_file,
        );
        set("PACELINE_HTTP_ADDR", &mut self.service.http_addr);
        set("PACELINE_STATE_DIR", &mut self.service.state_dir);
        self.apply_cluster_env(env, &mut errors);
        if let Some(api) = env("PACELINE_INFLUX_API") {
            match api.as_str() {
                "v2" => self.influx.api = InfluxApi::V2,
                "v1" => self.influx.api = InfluxApi::V1,
                other => errors.push(ConfigError {
                    key: "PACELINE_INFLUX_API".into(),
                    reason: format!("`{other}` is neither `v2` nor `v1`"),
                }),
            }
        }
        errors
    }

    fn apply_cluster_env(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        errors: &mut Vec<ConfigError>,
    ) {
        let mut number = |name: &str| -> Option<usize> {
            let v = env(name)?;
            v.trim()
                .parse()
                .inspect_err(|_| {
                    errors.push(ConfigError {
                        key: name.into(),
                        reason: format!("`{v}` is not a whole number"),
                    })
                })
                .ok()
        };
        if let Some(w) = number("PACELINE_WORKERS") {
            self.pipeline.dataflow.workers = w;
        }
        if let Some(i) = number("PACELINE_PROCESS_INDEX") {
            self.cluster.process_index = Some(i);
        }
        if let Some(peers) = env("PACELINE_PEERS") {
            self.cluster.processes = peers
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(peers) = env("PACELINE_HTTP_PEERS") {
            self.cluster.http_peers = peers
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(pattern) = env("PACELINE_PEER_PATTERN") {
            self.cluster.peer_pattern = pattern;
        }
        if let Some(n) = number("PACELINE_CLUSTER_SIZE") {
            self.cluster.size = n;
        }
        if let Err(e) = self.cluster.derive_processes() {
            errors.push(e);
            return;
        }
        if self.cluster.process_index.is_none() && self.cluster.is_cluster() {
            let Some(host) = env("HOSTNAME") else { return };
            let Some(i) = ordinal_of_host(&host) else {
                return;
            };
            // The host name must be the one its entry names, or the ordinal means nothing.
            match self.cluster.processes.get(i) {
                Some(a) if a.starts_with(&format!("{host}.")) || a.starts_with(&format!("{host}:")) => {
                    self.cluster.process_index = Some(i);
                }
                _ => errors.push(ConfigError {
                    key: "cluster.processes".into(),
                    reason: format!(
                        "this process (host {host}, ordinal {i}) is not in the list: entry {i} must name {host}"
                    ),
                }),
            }
        }
    }

    /// Every validation error of every section, each with its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = self.pipeline.validate();
        self.kafka.validate(&mut errors);
        self.influx.validate(&mut errors);
        self.service.validate(&mut errors);
        self.cluster.validate(&mut errors);
        let telemetry_days = self.streams.get(Stream::Telemetry).correction_horizon_days as u64;
        if self.kafka.create_topics && self.kafka.telemetry_retention_h < telemetry_days * 24 {
            errors.push(ConfigError {
                key: "kafka.telemetry_retention_h".into(),
                reason: format!(
                    "must cover the telemetry correction horizon ({telemetry_days} days)"
                ),
            });
        }
        errors
    }
}

/// The settings as TOML text (every key written out).
pub fn to_toml(settings: &Settings) -> String {
    let deployment = Deployment {
        kafka: settings.kafka.clone(),
        influx: settings.influx.clone(),
        service: settings.service.clone(),
        cluster: settings.cluster.clone(),
    };
    let rest = toml::to_string(&deployment).unwrap_or_else(|e| format!("# cannot serialize: {e}"));
    format!(
        "{}\n{rest}",
        paceline_model::config::to_toml(&settings.pipeline)
    )
}

/// Secrets of the service, from the environment or files.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// InfluxDB: the v2 token (`PACELINE_INFLUX_TOKEN` or `PACELINE_INFLUX_TOKEN_FILE`), the
    /// v1 user (`PACELINE_INFLUX_USER`) and password (`PACELINE_INFLUX_PASSWORD` or
    /// `PACELINE_INFLUX_PASSWORD_FILE`).
    pub influx: InfluxCredentials,
    /// Kafka SASL password (`PACELINE_KAFKA_SASL_PASSWORD` or `..._FILE`).
    pub kafka_sasl_password: Option<Secret>,
    /// The secret a cluster's processes prove to each other (`PACELINE_CLUSTER_SECRET` or
    /// `..._FILE`); required with several processes.
    pub cluster_secret: Option<Secret>,
    /// The bearer token HTTP clients must present for everything but `/healthz` and
    /// `/readyz` (`PACELINE_HTTP_TOKEN` or `..._FILE`); none: open, on the address
    /// `service.http_addr` binds.
    pub http_token: Option<Secret>,
}

impl Secrets {
    /// Which secrets are set, by the variable that carries each (their values never leave
    /// this type but through [`Secret::expose`]).
    pub fn presence(&self) -> [(&'static str, bool); 6] {
        [
            ("PACELINE_INFLUX_TOKEN", self.influx.token.is_some()),
            ("PACELINE_INFLUX_USER", self.influx.user.is_some()),
            ("PACELINE_INFLUX_PASSWORD", self.influx.password.is_some()),
            (
                "PACELINE_KAFKA_SASL_PASSWORD",
                self.kafka_sasl_password.is_some(),
            ),
            ("PACELINE_HTTP_TOKEN", self.http_token.is_some()),
            ("PACELINE_CLUSTER_SECRET", self.cluster_secret.is_some()),
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
        (Some(v), None) => Some(Secret::new(v)),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(v) => Some(Secret::new(v.trim_end_matches(['\n', '\r']).to_string())),
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
            influx: InfluxCredentials {
                token: secret(env, "PACELINE_INFLUX_TOKEN", &mut errors),
                user: env("PACELINE_INFLUX_USER"),
                password: secret(env, "PACELINE_INFLUX_PASSWORD", &mut errors),
            },
            kafka_sasl_password: secret(env, "PACELINE_KAFKA_SASL_PASSWORD", &mut errors),
            http_token: secret(env, "PACELINE_HTTP_TOKEN", &mut errors),
            cluster_secret: secret(env, "PACELINE_CLUSTER_SECRET", &mut errors),
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

    const SHIPPED: &str = include_str!("../../../config/paceline.toml");

    #[test]
    fn shipped_file_equals_defaults_and_round_trips() {
        let parsed = Settings::from_toml(SHIPPED, "config/paceline.toml").unwrap();
        assert_eq!(parsed, Settings::default());
        assert!(Settings::default().validate().is_empty());
        let mut changed = Settings::default();
        changed.kafka.brokers = "k1:9092,k2:9092".into();
        changed.service.http_max_connections = 7;
        changed.streams.filings.idle_timeout_s = 3;
        let again = Settings::from_toml(&to_toml(&changed), "round trip").unwrap();
        assert_eq!(again, changed);
    }

    /// Every leaf key of `table` with its dotted path; arrays are leaves (they replace whole).
    fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<(String, toml::Value)>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::Table(t) => leaves(&path, t, out),
                other => out.push((path, other.clone())),
            }
        }
    }

    /// A valid value other than the shipped `value` of `key`.
    fn changed(key: &str, value: &toml::Value) -> toml::Value {
        use toml::Value::*;
        match (key, value) {
            ("service.http_addr", _) => String("127.0.0.1:9999".into()),
            ("influx.url", _) => String("https://influx.example:8086".into()),
            ("influx.api", _) => String("v1".into()),
            ("influx.precision", _) => String("ms".into()),
            ("service.language", _) => String("zh".into()),
            ("service.public_url", _) => String("https://paceline.example/".into()),
            ("kafka.brokers", _) => String("k1:9092,k2:9092".into()),
            ("cluster.processes", _) => Array(vec![String("127.0.0.1:7000".into())]),
            ("plan.items", Array(items)) => Array(items[..1].to_vec()),
            (_, String(s)) => String(format!("{s}-changed")),
            (_, Integer(i)) => Integer(i + 1),
            (_, Float(f)) => Float(f / 2.0),
            (_, Boolean(b)) => Boolean(!b),
            (k, v) => panic!("no changed value for {k} = {v}"),
        }
    }

    /// The one-key file that sets `path` to `value`: a table header and the key.
    fn one_key_file(path: &str, value: &toml::Value) -> std::string::String {
        let (section, key) = path.rsplit_once('.').expect("every key is in a section");
        if path == "plan.items" {
            let toml::Value::Array(items) = value else {
                unreachable!()
            };
            let item = toml::to_string(&items[0]).unwrap();
            return format!("[[plan.items]]\n{item}");
        }
        format!("[{section}]\n{key} = {value}\n")
    }

    #[test]
    fn a_file_of_one_key_changes_that_key_alone() {
        let shipped: toml::Table = toml::from_str(SHIPPED).unwrap();
        let mut keys = Vec::new();
        leaves("", &shipped, &mut keys);
        assert!(keys.len() > 50, "only {} keys found", keys.len());
        let defaults: toml::Table = toml::from_str(&to_toml(&Settings::default())).unwrap();
        let mut default_leaves = Vec::new();
        leaves("", &defaults, &mut default_leaves);
        for (path, _) in &keys {
            // Files read at load (a CA bundle, a certificate with its key): their own tests
            // in paceline-sink give them real files.
            if path.starts_with("influx.") && path.ends_with("_file") {
                continue;
            }
            // One address per process: set with `cluster.processes`, never alone.
            if path == "cluster.http_peers" {
                continue;
            }
            // The printed default, not the shipped text: `target = 10` prints as 10.0.
            let (_, value) = default_leaves
                .iter()
                .find(|(k, _)| k == path)
                .unwrap_or_else(|| panic!("{path} is shipped but not printed"));
            let new = changed(path, value);
            let file = one_key_file(path, &new);
            let settings = Settings::from_toml(&file, "one key")
                .unwrap_or_else(|e| panic!("a file of only `{path}` is refused: {e}\n{file}"));
            let printed: toml::Table = toml::from_str(&to_toml(&settings)).unwrap();
            let mut printed_leaves = Vec::new();
            leaves("", &printed, &mut printed_leaves);
            let differing: Vec<&str> = printed_leaves
                .iter()
                .filter(|leaf| !default_leaves.contains(leaf))
                .map(|(k, _)| k.as_str())
                .collect();
            assert_eq!(differing, [path.as_str()], "file:\n{file}");
            let shown = printed_leaves.iter().find(|(k, _)| k == path).unwrap();
            assert_eq!(shown.1, new, "{path} as printed");
        }
    }

    #[test]
    fn errors_of_every_section_name_their_keys() {
        let text = "[kafka]\nbrokers = \" \"\n[influx]\nbatch_points = 0\n[service]\nhttp_addr = \"localhost\"\n[dataflow]\nworkers = 0\n";
        let Err(LoadError::Invalid { errors, .. }) = Settings::from_toml(text, "t") else {
            panic!("expected validation errors")
        };
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "dataflow.workers",
                "kafka.brokers",
                "influx.batch_points",
                "service.http_addr"
            ]
        );
        for bad in [
            "[kafak]\nbrokers = \"x\"\n",
            "[service]\nhttp_adr = \"x\"\n",
        ] {
            let Err(LoadError::Parse { message, .. }) = Settings::from_toml(bad, "t") else {
                panic!("expected a parse error for {bad}")
            };
            assert!(
                message.contains("kafak") || message.contains("http_adr"),
                "{message}"
            );
        }
    }

    #[test]
    fn cluster_settings_from_environment_and_their_errors() {
        fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        }
        let peers = "paceline-0.paceline-peers:7000, paceline-1.paceline-peers:7000";
        let s = Settings::load_with_env(
            None,
            &env(&[
                ("PACELINE_PEERS", peers),
                ("HOSTNAME", "paceline-1"),
                ("PACELINE_WORKERS", "2"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.cluster.processes.len(), 2);
        assert_eq!(
            s.cluster.process_index,
            Some(1),
            "from the host name's ordinal"
        );
        assert_eq!(s.dataflow.workers, 2);
        let explicit = Settings::load_with_env(
            None,
            &env(&[
                ("PACELINE_PEERS", peers),
                ("HOSTNAME", "paceline-1"),
                ("PACELINE_PROCESS_INDEX", "0"),
            ]),
        )
        .expect("valid");
        assert_eq!(explicit.cluster.process_index, Some(0), "the variable wins");
        let keys = |vars: &[(&str, &str)]| -> Vec<String> {
            match Settings::load_with_env(None, &env(vars)) {
                Err(LoadError::Invalid { errors, .. }) => errors
                    .iter()
                    .map(|e| format!("{}: {}", e.key, e.reason))
                    .collect(),
                other => panic!("expected errors, got {other:?}"),
            }
        };
        let out_of_range = keys(&[
            ("PACELINE_PEERS", "a:1,b:1"),
            ("PACELINE_PROCESS_INDEX", "2"),
        ]);
        assert!(
            out_of_range[0].starts_with("cluster.process_index: 2 is out of range"),
            "{out_of_range:?}"
        );
        let twice = keys(&[
            ("PACELINE_PEERS", "a:1,a:1"),
            ("PACELINE_PROCESS_INDEX", "0"),
        ]);
        assert!(
            twice[0].starts_with("cluster.processes: `a:1` is listed twice"),
            "{twice:?}"
        );
        let not_listed = keys(&[("PACELINE_PEERS", "a:1,b:1"), ("HOSTNAME", "paceline-1")]);
        assert!(
            not_listed[0].contains("host paceline-1, ordinal 1) is not in the list"),
            "{not_listed:?}"
        );
        let unset = keys(&[("PACELINE_PEERS", "a:1,b:1")]);
        assert!(
            unset[0].starts_with("cluster.process_index: not set"),
            "{unset:?}"
        );
        let bad = keys(&[("PACELINE_WORKERS", "two")]);
        assert_eq!(bad[0], "PACELINE_WORKERS: `two` is not a whole number");

        // The list from a pattern and a size, as a StatefulSet's replicas imply it.
        let pattern = "paceline-{i}.paceline-peers:7000";
        let derived = Settings::load_with_env(
            None,
            &env(&[
                ("PACELINE_PEER_PATTERN", pattern),
                ("PACELINE_CLUSTER_SIZE", "3"),
                ("HOSTNAME", "paceline-2"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            derived.cluster.processes,
            [
                "paceline-0.paceline-peers:7000",
                "paceline-1.paceline-peers:7000",
                "paceline-2.paceline-peers:7000"
            ]
        );
        assert_eq!(derived.cluster.process_index, Some(2));
        assert_eq!(
            derived.cluster.http_addresses("0.0.0.0:9898"),
            [
                "paceline-0.paceline-peers:9898",
                "paceline-1.paceline-peers:9898",
                "paceline-2.paceline-peers:9898"
            ],
            "each pod's host, the HTTP port"
        );
        let listed = Settings::load_with_env(
            None,
            &env(&[
                ("PACELINE_PEERS", "127.0.0.1:7000,127.0.0.1:7001"),
                ("PACELINE_HTTP_PEERS", "127.0.0.1:9000, 127.0.0.1:9001"),
                ("PACELINE_PROCESS_INDEX", "1"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            listed.cluster.http_addresses("127.0.0.1:9001"),
            ["127.0.0.1:9000", "127.0.0.1:9001"]
        );
        let short = keys(&[
            ("PACELINE_PEERS", "a:1,b:1"),
            ("PACELINE_HTTP_PEERS", "a:2"),
            ("PACELINE_PROCESS_INDEX", "0"),
        ]);
        assert!(
            short[0].starts_with("cluster.http_peers: lists 1 addresses for 2 processes"),
            "{short:?}"
        );
        // What print-config writes loads again: the list it carries is the pattern's.
        let again = Settings::load_with_env(None, &env(&[]))
            .map(|mut d| {
                d.cluster = derived.cluster.clone();
                d.cluster.derive_processes()
            })
            .expect("defaults");
        assert!(again.is_ok(), "{again:?}");
        let size_alone = keys(&[("PACELINE_CLUSTER_SIZE", "2")]);
        assert!(
            size_alone[0].starts_with("cluster.peer_pattern: not set"),
            "{size_alone:?}"
        );
        let pattern_alone = keys(&[("PACELINE_PEER_PATTERN", pattern)]);
        assert!(
            pattern_alone[0].starts_with("cluster.size: not set"),
            "{pattern_alone:?}"
        );
        let no_index = keys(&[
            ("PACELINE_PEER_PATTERN", "paceline.peers:7000"),
            ("PACELINE_CLUSTER_SIZE", "2"),
        ]);
        assert!(
            no_index[0].starts_with("cluster.peer_pattern: must contain `{i}`"),
            "{no_index:?}"
        );
        let both = keys(&[
            ("PACELINE_PEERS", "a:1,b:1"),
            ("PACELINE_PEER_PATTERN", pattern),
            ("PACELINE_CLUSTER_SIZE", "2"),
        ]);
        assert!(
            both[0].starts_with("cluster.processes: set together with cluster.peer_pattern"),
            "{both:?}"
        );
    }

    #[test]
    fn secrets_are_redacted_and_exclusive() {
        let env = |k: &str| match k {
            "PACELINE_INFLUX_TOKEN" => Some("s3cr3t".to_string()),
            _ => None,
        };
        let s = Secrets::from_env(&env).expect("valid");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        assert_eq!(s.influx.token.as_ref().map(Secret::expose), Some("s3cr3t"));
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
}
