//! The service's settings: the pipeline's configuration and the deployment sections of the
//! same file (`[kafka]` owned by `paceline_ingest`, `[influx]` by `paceline_sink`,
//! `[service]` here), the `PACELINE_*` environment overrides, and the secrets, which only
//! ever come from the environment or files.
//!
//! The pipeline crates (decode, dataflow) see only [`Config`]; [`Settings`] derefs to it, so
//! `settings.streams` reads as before while `settings.kafka` exists only here.

use std::ops::{Deref, DerefMut};

pub use paceline_ingest::KafkaConfig;
use paceline_model::config::{Config, ConfigError, LoadError};
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
        let pipeline: Config = toml::from_str(text).map_err(|e| LoadError::parse(path, e))?;
        let d: Deployment = toml::from_str(text).map_err(|e| LoadError::parse(path, e))?;
        Ok(Settings {
            pipeline,
            kafka: d.kafka,
            influx: d.influx,
            service: d.service,
        })
    }

    /// Applies the deployment overrides of the environment (`PACELINE_KAFKA_BROKERS`,
    /// `PACELINE_INFLUX_API`, `PACELINE_INFLUX_URL`, `PACELINE_INFLUX_ORG`,
    /// `PACELINE_INFLUX_BUCKET`, `PACELINE_INFLUX_DB`, `PACELINE_HTTP_ADDR`,
    /// `PACELINE_STATE_DIR`). Returns the errors of values that cannot apply.
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
        set("PACELINE_HTTP_ADDR", &mut self.service.http_addr);
        set("PACELINE_STATE_DIR", &mut self.service.state_dir);
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

    /// Every validation error of every section, each with its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = self.pipeline.validate();
        self.kafka.validate(&mut errors);
        self.influx.validate(&mut errors);
        self.service.validate(&mut errors);
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
}

impl Secrets {
    /// Which secrets are set, by the variable that carries each (their values never leave
    /// this type but through [`Secret::expose`]).
    pub fn presence(&self) -> [(&'static str, bool); 4] {
        [
            ("PACELINE_INFLUX_TOKEN", self.influx.token.is_some()),
            ("PACELINE_INFLUX_USER", self.influx.user.is_some()),
            ("PACELINE_INFLUX_PASSWORD", self.influx.password.is_some()),
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
