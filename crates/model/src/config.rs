//! Configuration: serde structs with documented defaults, and a validate step that reports
//! every error at once, each naming its key.
//!
//! The shipped defaults are `config/paceline.toml`; `Config::default()` equals it (a test
//! checks). A file need only name what it changes; a file with `[[plan.items]]` replaces the
//! whole default plan.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalogue::{Indicator, SeriesKey, TagKind, NO_TAG};
use crate::event::Stream;
use crate::time::{parse_rfc3339, tick_ceil, Nanos, DAY, SECOND};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Indicator settings: measurement, cadences, filing lag.
    pub indicators: IndicatorsConfig,
    /// Per-stream event-time settings.
    pub streams: StreamsConfig,
    /// The plan: targets and deadlines of planned series.
    pub plan: PlanConfig,
    /// Dataflow execution settings.
    pub dataflow: DataflowConfig,
    // The deployment sections of the same file, owned and read by the crates that use
    // them (`paceline_runtime::settings`): here they are only let through, unread, so that
    // one file serves both and an unknown section is still refused by name.
    #[serde(default, skip_serializing)]
    kafka: Unread,
    #[serde(default, skip_serializing)]
    influx: Unread,
    #[serde(default, skip_serializing)]
    service: Unread,
    #[serde(default, skip_serializing)]
    cluster: Unread,
}

/// A section of the file that another crate reads: accepted whole, not kept.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Unread;

impl<'de> Deserialize<'de> for Unread {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(Unread)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            indicators: IndicatorsConfig::default(),
            streams: StreamsConfig::default(),
            plan: PlanConfig::default(),
            dataflow: DataflowConfig::default(),
            kafka: Unread,
            influx: Unread,
            service: Unread,
            cluster: Unread,
        }
    }
}

/// Indicator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IndicatorsConfig {
    /// Measurement name of the points. Default `indicator`.
    pub measurement: String,
    /// Measurement name of the plan verdicts' points. Default `plan_verdict`.
    pub verdict_measurement: String,
    /// Filing lag in days: quarters count once they ended at or before T − lag. Default 45.
    pub filing_lag_days: u32,
    /// Cadence overrides in seconds, by indicator name. Default: daily for filing,
    /// scenario-stage and project indicators, hourly for telemetry and usage indicators.
    /// A cadence must divide a day or be a whole number of days.
    pub cadence_s: BTreeMap<String, u64>,
}

impl Default for IndicatorsConfig {
    fn default() -> Self {
        IndicatorsConfig {
            measurement: "indicator".into(),
            verdict_measurement: "plan_verdict".into(),
            filing_lag_days: 45,
            cadence_s: BTreeMap::new(),
        }
    }
}

/// Settings of the three streams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// Enterprise filings.
    pub filings: StreamConfig,
    /// Platform telemetry.
    pub telemetry: StreamConfig,
    /// Scenario usage and stages.
    pub scenarios: StreamConfig,
    /// How far ahead of the wall clock an `occurred_at` may be, in seconds, in every mode;
    /// later events are `out_of_range`, so that no event moves time past what the
    /// pipeline can hold. Default 86 400 (a day).
    pub max_future_s: u64,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            filings: StreamConfig::new("enterprise-filings", 400),
            telemetry: StreamConfig::new("platform-telemetry", 2),
            scenarios: StreamConfig::new("scenario-usage", 400),
            max_future_s: 86_400,
        }
    }
}

impl StreamsConfig {
    /// `max_future_s` in nanoseconds.
    pub fn max_future(&self) -> Nanos {
        (self.max_future_s.min(100 * 365 * 86_400) as Nanos) * 1_000_000_000
    }

    /// The settings of one stream.
    pub fn get(&self, stream: Stream) -> &StreamConfig {
        match stream {
            Stream::Filings => &self.filings,
            Stream::Telemetry => &self.telemetry,
            Stream::Scenarios => &self.scenarios,
        }
    }
}

/// Event-time settings of one stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Kafka topic. Defaults: `enterprise-filings`, `platform-telemetry`, `scenario-usage`.
    pub topic: String,
    /// Allowed out-of-orderness in seconds: the watermark trails the greatest accepted
    /// `occurred_at` by this much. Default 300.
    pub max_out_of_orderness_s: u64,
    /// Seconds without unread messages after which a partition is idle. Default 30.
    pub idle_timeout_s: u64,
    /// Correction horizon in days: events older than the watermark minus this are rejected
    /// as `too_late`. Defaults: 400 for filings and scenarios, 2 for telemetry.
    pub correction_horizon_days: u32,
}

impl StreamConfig {
    fn new(topic: &str, horizon_days: u32) -> Self {
        StreamConfig {
            topic: topic.into(),
            max_out_of_orderness_s: 300,
            idle_timeout_s: 30,
            correction_horizon_days: horizon_days,
        }
    }
    /// Allowed out-of-orderness in nanoseconds.
    pub fn out_of_orderness(&self) -> Nanos {
        (self.max_out_of_orderness_s as i64).saturating_mul(SECOND)
    }
    /// Correction horizon in nanoseconds.
    pub fn horizon(&self) -> Nanos {
        self.correction_horizon_days as i64 * DAY
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig::new("", 400)
    }
}

/// The plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlanConfig {
    /// Status tolerance of items that set none: `at_risk` from this pace ratio, `behind`
    /// below. Default 0.9.
    pub default_tolerance: f64,
    /// The office told about the goals of items that name no `owner` (their plan alerts
    /// carry it as the `owner` label). Default `plan-office`.
    pub default_owner: String,
    /// The planned series. Default: the action plan's table (docs/indicators.md, "The default plan").
    pub items: Vec<PlanItem>,
}

/// Kind of plan item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Grows from a baseline to the target by the deadline.
    Cumulative,
    /// Must stay at or above the target from the start.
    Threshold,
}

/// One planned series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanItem {
    /// The series, e.g. `quasi_unicorns` or `cluster_revenue_cny{cluster=cybersecurity}`.
    pub series: String,
    /// `cumulative` or `threshold`.
    pub kind: PlanKind,
    /// The target value.
    pub target: f64,
    /// RFC 3339 start, e.g. `2022-01-01T00:00:00+08:00`.
    pub start: String,
    /// RFC 3339 deadline, after the start.
    pub deadline: String,
    /// Status tolerance for this item (default: `plan.default_tolerance`).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// The office accountable for this goal, told when it falls behind (default:
    /// `plan.default_owner`).
    #[serde(default)]
    pub owner: Option<String>,
}

impl Default for PlanConfig {
    fn default() -> Self {
        let item = |series: &str, kind, target: f64, start: &str, deadline: &str| PlanItem {
            series: series.into(),
            kind,
            target,
            start: start.into(),
            deadline: deadline.into(),
            tolerance: None,
            owner: None,
        };
        let s22 = "2022-01-01T00:00:00+08:00";
        let d25 = "2025-01-01T00:00:00+08:00";
        let d26 = "2026-01-01T00:00:00+08:00";
        use PlanKind::*;
        PlanConfig {
            default_tolerance: 0.9,
            default_owner: "plan-office".into(),
            items: vec![
                item("quasi_unicorns", Cumulative, 10.0, s22, d25),
                item("srdi_enterprises", Cumulative, 80.0, s22, d25),
                item("core_industry_revenue_cny", Cumulative, 5.5e9, s22, d25),
                item("application_scenarios_launched", Cumulative, 30.0, s22, d25),
                item("scenario_fields_covered", Cumulative, 8.0, s22, d25),
                item("data_zones_operational", Cumulative, 2.0, s22, d25),
                item("benchmark_projects_delivered", Cumulative, 2.0, s22, d25),
                item(
                    "demonstration_projects_underway",
                    Cumulative,
                    28.0,
                    s22,
                    d25,
                ),
                item(
                    "cluster_revenue_cny{cluster=cybersecurity}",
                    Cumulative,
                    1e10,
                    s22,
                    d26,
                ),
                item(
                    "cluster_revenue_cny{cluster=urban_technology}",
                    Cumulative,
                    1e10,
                    s22,
                    d26,
                ),
                item(
                    "digital_economy_added_value_growth",
                    Threshold,
                    0.08,
                    d25,
                    d26,
                ),
            ],
        }
    }
}

/// Dataflow execution settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataflowConfig {
    /// Timely worker threads in this process. Default 1.
    pub workers: usize,
    /// Events per epoch: the unit in which input advances. Default 8192.
    pub epoch_events: usize,
}

impl Default for DataflowConfig {
    fn default() -> Self {
        DataflowConfig {
            workers: 1,
            epoch_events: 8192,
        }
    }
}

/// One configuration error: the key and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// The dotted key, e.g. `plan.items[2].deadline`.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Loading failed: the file could not be read or parsed, or values are invalid.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// TOML syntax or a key of the wrong type or unknown.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The path.
        path: String,
        /// The parser's message, naming the key.
        message: String,
    },
    /// Values that parse but are invalid; every one is listed.
    #[error("configuration file {path} has {} error(s):\n{}", errors.len(), errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The path.
        path: String,
        /// Every error found.
        errors: Vec<ConfigError>,
    },
}

impl LoadError {
    /// The file at `path` is not TOML of the expected shape.
    pub fn parse(path: &str, e: toml::de::Error) -> LoadError {
        LoadError::Parse {
            path: path.into(),
            message: e.to_string(),
        }
    }

    /// `value` when `errors` is empty; otherwise every error, for the file at `path`.
    pub fn unless_invalid<T>(
        value: T,
        errors: Vec<ConfigError>,
        path: &str,
    ) -> Result<T, LoadError> {
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(LoadError::Invalid {
                path: path.into(),
                errors,
            })
        }
    }
}

/// Parses the file's `text` as a `T` whose every key the file leaves out, at any depth, is
/// the one of `defaults`: tables merge key by key, anything else (a value, an array such as
/// `[[plan.items]]`) replaces the default whole. Unknown keys and wrong types are refused,
/// named, with the file's line.
pub fn from_toml_over<T>(text: &str, path: &str, defaults: &T) -> Result<T, LoadError>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    // The file alone, parsed first as a `T`, so that shape errors point into the file
    // (the merged table has no lines); a section's own `Default` only fills this check.
    toml::from_str::<T>(text).map_err(|e| LoadError::parse(path, e))?;
    let file: toml::Table = toml::from_str(text).map_err(|e| LoadError::parse(path, e))?;
    let mut merged = toml::Table::try_from(defaults).map_err(|e| LoadError::Parse {
        path: path.into(),
        message: format!("cannot write the defaults out: {e}"),
    })?;
    merge_table(&mut merged, file);
    toml::Value::Table(merged)
        .try_into()
        .map_err(|e| LoadError::parse(path, e))
}

/// Lays `over` onto `base`: tables merge recursively, every other value replaces.
fn merge_table(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_table(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The pipeline's configuration as TOML text (every key written out; the deployment
/// sections are written by `paceline_runtime::settings`).
pub fn to_toml(config: &Config) -> String {
    toml::to_string(config).unwrap_or_else(|e| format!("# cannot serialize: {e}"))
}

/// A validated plan item, ready for the dataflow.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSpec {
    /// The planned series.
    pub series: SeriesKey,
    /// Cumulative or threshold.
    pub kind: PlanKind,
    /// Target.
    pub target: f64,
    /// Start instant.
    pub start: Nanos,
    /// Deadline instant.
    pub deadline: Nanos,
    /// Status tolerance.
    pub tolerance: f64,
    /// The tick the goal is judged at: the first tick of the series' cadence at or after
    /// the deadline plus the indicator's data lag (docs/indicators.md, "Verdicts").
    pub verdict_tick: Nanos,
}

/// Parses a series name like `cluster_revenue_cny{cluster=cybersecurity}`.
pub fn parse_series(s: &str) -> Result<SeriesKey, String> {
    let (name, tag) = match s.find('{') {
        Some(i) if s.ends_with('}') => (&s[..i], Some(&s[i + 1..s.len() - 1])),
        Some(_) => {
            return Err(format!(
                "`{s}` is not of the form name or name{{tag=value}}"
            ))
        }
        None => (s, None),
    };
    let indicator = Indicator::parse(name).ok_or_else(|| format!("unknown indicator `{name}`"))?;
    let kind = indicator.tag_kind();
    match (tag, kind.key()) {
        (None, None) => Ok(SeriesKey::plain(indicator)),
        (None, Some(k)) => Err(format!("`{name}` needs its tag, e.g. {name}{{{k}=...}}")),
        (Some(_), None) => Err(format!("`{name}` has no tags")),
        (Some(t), Some(k)) => {
            let (tk, tv) = t
                .split_once('=')
                .ok_or_else(|| format!("tag `{t}` is not key=value"))?;
            if tk != k {
                return Err(format!("`{name}` is tagged by `{k}`, not `{tk}`"));
            }
            let v = kind
                .parse(tv)
                .ok_or_else(|| format!("unknown {k} `{tv}`"))?;
            Ok(SeriesKey::tagged(indicator, v))
        }
    }
}

impl Config {
    /// Parses TOML text (unknown keys and wrong types are errors) and validates it.
    pub fn from_toml(text: &str, path: &str) -> Result<Config, LoadError> {
        let config = from_toml_over(text, path, &Config::default())?;
        let errors = config.validate();
        LoadError::unless_invalid(config, errors, path)
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &str) -> Result<Config, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.into(),
            source,
        })?;
        Config::from_toml(&text, path)
    }

    /// Every validation error, each with its key.
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut err = |key: String, reason: String| errors.push(ConfigError { key, reason });
        if self.indicators.measurement.is_empty()
            || self.indicators.measurement.contains([' ', ',', '\n'])
        {
            err(
                "indicators.measurement".into(),
                "must be non-empty, without spaces, commas or newlines".into(),
            );
        }
        let verdicts = &self.indicators.verdict_measurement;
        if verdicts.is_empty() || verdicts.contains([' ', ',', '\n']) {
            err(
                "indicators.verdict_measurement".into(),
                "must be non-empty, without spaces, commas or newlines".into(),
            );
        } else if *verdicts == self.indicators.measurement {
            err(
                "indicators.verdict_measurement".into(),
                "must differ from indicators.measurement".into(),
            );
        }
        if self.indicators.filing_lag_days > 3660 {
            err(
                "indicators.filing_lag_days".into(),
                "must be at most 3660 days".into(),
            );
        }
        for (name, secs) in &self.indicators.cadence_s {
            let key = format!("indicators.cadence_s.{name}");
            if Indicator::parse(name).is_none() {
                err(key, format!("unknown indicator `{name}`"));
            } else if *secs == 0
                || (86_400 % secs != 0 && secs % 86_400 != 0)
                || *secs > 86_400 * 366
            {
                err(
                    key,
                    format!(
                        "{secs} s must divide a day or be a whole number of days (at most 366)"
                    ),
                );
            }
        }
        for ind in Indicator::ALL {
            if ind.group() != *ind && self.cadence(*ind) != self.cadence(ind.group()) {
                err(
                    format!("indicators.cadence_s.{}", ind.name()),
                    format!(
                        "must equal the cadence of `{}`, from which it is derived",
                        ind.group().name()
                    ),
                );
            }
        }
        for stream in Stream::ALL {
            let s = self.streams.get(stream);
            let key = |k: &str| format!("streams.{}.{k}", stream.as_str());
            if s.topic.is_empty() {
                err(key("topic"), "must not be empty".into());
            }
            if s.correction_horizon_days == 0 || s.correction_horizon_days > 3660 {
                err(
                    key("correction_horizon_days"),
                    "must be 1 to 3660 days".into(),
                );
            }
            if s.max_out_of_orderness_s > 30 * 86_400 {
                err(
                    key("max_out_of_orderness_s"),
                    "must be at most 30 days".into(),
                );
            }
            if s.idle_timeout_s == 0 {
                err(key("idle_timeout_s"), "must be positive".into());
            }
        }
        let tol = self.plan.default_tolerance;
        if !(tol.is_finite() && tol > 0.0 && tol <= 1.0) {
            err("plan.default_tolerance".into(), "must be in (0, 1]".into());
        }
        if let Some(why) = owner_error(&self.plan.default_owner) {
            err("plan.default_owner".into(), why.into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, item) in self.plan.items.iter().enumerate() {
            let key = |k: &str| format!("plan.items[{i}].{k}");
            match parse_series(&item.series) {
                Ok(s) => {
                    if !seen.insert(s) {
                        err(key("series"), format!("`{}` is planned twice", item.series));
                    }
                }
                Err(e) => err(key("series"), e),
            }
            if !item.target.is_finite() {
                err(key("target"), "must be a finite number".into());
            }
            let start = parse_rfc3339(&item.start);
            let deadline = parse_rfc3339(&item.deadline);
            if start.is_err() {
                err(
                    key("start"),
                    format!(
                        "`{}` is not an RFC 3339 date-time with an offset",
                        item.start
                    ),
                );
            }
            if deadline.is_err() {
                err(
                    key("deadline"),
                    format!(
                        "`{}` is not an RFC 3339 date-time with an offset",
                        item.deadline
                    ),
                );
            }
            if let (Ok(s), Ok(d)) = (start, deadline) {
                if d <= s {
                    err(key("deadline"), "must be after start".into());
                }
            }
            if let Some(t) = item.tolerance {
                if !(t.is_finite() && t > 0.0 && t <= 1.0) {
                    err(key("tolerance"), "must be in (0, 1]".into());
                }
            }
            if let Some(why) = item.owner.as_deref().and_then(owner_error) {
                err(key("owner"), why.into());
            }
        }
        if self.dataflow.workers == 0 || self.dataflow.workers > 256 {
            err("dataflow.workers".into(), "must be 1 to 256".into());
        }
        if self.dataflow.epoch_events == 0 {
            err("dataflow.epoch_events".into(), "must be positive".into());
        }
        errors
    }

    /// The cadence of an indicator in nanoseconds.
    pub fn cadence(&self, indicator: Indicator) -> Nanos {
        match self.indicators.cadence_s.get(indicator.name()) {
            Some(s) => *s as i64 * SECOND,
            None => indicator.default_cadence(),
        }
    }

    /// The validated plan (call after [`Config::validate`] found nothing).
    pub fn plan_specs(&self) -> Vec<PlanSpec> {
        self.plan
            .items
            .iter()
            .filter_map(|item| {
                let series = parse_series(&item.series).ok()?;
                let deadline = parse_rfc3339(&item.deadline).ok()?;
                let judged_from = deadline.saturating_add(self.data_lag(series.indicator));
                Some(PlanSpec {
                    series,
                    kind: item.kind,
                    target: item.target,
                    start: parse_rfc3339(&item.start).ok()?,
                    deadline,
                    tolerance: item.tolerance.unwrap_or(self.plan.default_tolerance),
                    verdict_tick: tick_ceil(judged_from, self.cadence(series.indicator)),
                })
            })
            .collect()
    }

    /// Each planned series' owner, in the plan's order (call after [`Config::validate`]).
    pub fn plan_owners(&self) -> Vec<(SeriesKey, String)> {
        self.plan
            .items
            .iter()
            .filter_map(|item| {
                let series = parse_series(&item.series).ok()?;
                let owner = item.owner.as_ref().unwrap_or(&self.plan.default_owner);
                Some((series, owner.clone()))
            })
            .collect()
    }

    /// Filing lag in nanoseconds.
    pub fn filing_lag(&self) -> Nanos {
        self.indicators.filing_lag_days as i64 * DAY
    }

    /// An indicator's data lag: how long after an instant its value there is complete
    /// (the filing lag for the indicators computed from financials, else 0).
    pub fn data_lag(&self, indicator: Indicator) -> Nanos {
        if indicator.lags_filings() {
            self.filing_lag()
        } else {
            0
        }
    }
}

/// Why an owner's name cannot route alerts, if it cannot: it is a label value Alertmanager
/// matches on, so it must be a short, printable name.
fn owner_error(owner: &str) -> Option<&'static str> {
    if owner.trim().is_empty() {
        Some("must not be empty")
    } else if owner.len() > 128 || owner.chars().any(char::is_control) {
        Some("must be a printable name of at most 128 bytes")
    } else {
        None
    }
}

/// Whether a series key has its tag set as its indicator requires.
pub fn tag_is_consistent(key: &SeriesKey) -> bool {
    (key.indicator.tag_kind() == TagKind::None) == (key.tag == NO_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../../../config/paceline.toml");

    #[test]
    fn shipped_file_equals_defaults() {
        let parsed = Config::from_toml(SHIPPED, "config/paceline.toml").unwrap();
        assert_eq!(parsed, Config::default());
        assert!(Config::default().validate().is_empty());
        assert_eq!(Config::default().plan_specs().len(), 11);
    }

    #[test]
    fn reports_every_error_with_its_key() {
        let text = r#"
[indicators]
measurement = ""
cadence_s = { quasi_unicorns = 7000, nope = 3600 }
[streams.telemetry]
correction_horizon_days = 0
[[plan.items]]
series = "cluster_revenue_cny"
kind = "cumulative"
target = 1
start = "2022-01-01T00:00:00+08:00"
deadline = "2021-01-01T00:00:00+08:00"
tolerance = 2
"#;
        let Err(LoadError::Invalid { errors, .. }) = Config::from_toml(text, "t.toml") else {
            panic!("expected validation errors")
        };
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "indicators.measurement",
            "indicators.cadence_s.quasi_unicorns",
            "indicators.cadence_s.nope",
            "streams.telemetry.correction_horizon_days",
            "plan.items[0].series",
            "plan.items[0].deadline",
            "plan.items[0].tolerance",
        ] {
            assert!(keys.contains(&k), "missing {k} in {keys:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let Err(LoadError::Parse { message, .. }) =
            Config::from_toml("[streams.filings]\ntopik = \"x\"\n", "t")
        else {
            panic!("expected a parse error")
        };
        assert!(message.contains("topik"), "{message}");
    }

    #[test]
    fn series_names() {
        assert!(parse_series("cluster_revenue_cny{cluster=urban_technology}").is_ok());
        assert!(parse_series("cluster_revenue_cny{field=urban_technology}").is_err());
        assert!(parse_series("quasi_unicorns{cluster=blockchain}").is_err());
        assert!(parse_series("unicorns").is_err());
    }
}
