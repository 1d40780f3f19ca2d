//! The Grafana dashboards of `deploy/grafana/dashboards/`, tried as Grafana would run them.
//!
//! - Structure: valid JSON with a title, a uid, a schema version, and panels that each name
//!   a data source and have queries.
//! - "Plan pace" (InfluxQL), in English and Chinese: a real run's output (`paceline replay`
//!   of a generated district) is written to a real InfluxDB 1.x; every panel query of both
//!   variants runs with Grafana's macros (`$timeFilter`, `$__interval`) substituted and
//!   returns data; every measurement, field, tag, indicator and tag value it names is one
//!   that run wrote (asked of the database, not taken from the project's constants); the
//!   goal tables return each planned series at its own newest tick (the run's, read from
//!   its output), and the verdicts table the run's verdicts; the indicator columns map
//!   identifiers to the catalogue's titles. That the files equal what `paceline
//!   dashboards` writes is checked in `crates/paceline/tests/cli.rs`.
//! - "Pipeline" (PromQL): every expression parses in `promtool` with Grafana's variables
//!   substituted; the metric names it reads are checked against a real serve's `/metrics`
//!   in `serve_end_to_end`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use paceline_model::names::Lang;
use paceline_model::Indicator;
use paceline_runtime::settings::Settings;
use paceline_runtime::ReplayOptions;
use paceline_tests::services::{Influx1, TempDir};

fn dashboards() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards")
}

fn load(name: &str) -> serde_json::Value {
    let path = dashboards().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(panel title, query text)` of every target of every panel.
fn queries(d: &serde_json::Value, key: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(q) = t[key].as_str() {
                out.push((title.clone(), q.to_string()));
            }
        }
    }
    out
}

#[test]
fn dashboards_are_well_formed() {
    let mut n = 0;
    for entry in std::fs::read_dir(dashboards()).expect("dashboards") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_string();
        let d = load(&name);
        for key in ["title", "uid"] {
            assert!(
                d[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: {key}"
            );
        }
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 30),
            "{name}: schemaVersion"
        );
        let panels = d["panels"].as_array().expect("panels");
        assert!(panels.len() >= 5, "{name}: panels");
        // Rows and text panels hold no query.
        for p in panels
            .iter()
            .filter(|p| p["type"] != "row" && p["type"] != "text")
        {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(
                p["datasource"]["uid"].as_str().is_some(),
                "{name}/{title}: a data source"
            );
            let targets = p["targets"].as_array().map_or(0, Vec::len);
            assert!(targets > 0, "{name}/{title}: queries");
        }
        n += 1;
    }
    assert_eq!(n, 3, "Plan pace (English, Chinese) and Pipeline");
}

/// Grafana's `$timeFilter` for the whole plan period and beyond.
const TIME_FILTER: &str = "time >= 1630454400000ms and time <= 1798761600000ms";

fn substitute(q: &str) -> String {
    q.replace("$timeFilter", TIME_FILTER)
        .replace("$__interval", "1d")
}

fn series_of(answer: &serde_json::Value) -> Vec<serde_json::Value> {
    answer["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn last_column_strings(answer: &serde_json::Value) -> BTreeSet<String> {
    series_of(answer)
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|row| {
            row[row.as_array().map_or(0, |r| r.len().saturating_sub(1))]
                .as_str()
                .map(String::from)
        })
        .collect()
}

/// The names a query uses: `"quoted"` identifiers (aliases after AS aside), `'quoted'`
/// values, and the alternatives of `/^(a|b)$/` regexes.
fn names_in(q: &str) -> (Vec<String>, Vec<String>) {
    let aliases: BTreeSet<&str> = q
        .split(" AS ")
        .skip(1)
        .filter_map(|s| s.split('"').nth(1))
        .collect();
    let identifiers = q
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|n| !aliases.contains(n))
        .map(String::from)
        .collect();
    let mut values: Vec<String> = q.split('\'').skip(1).step_by(2).map(String::from).collect();
    for regex in q.split("/^(").skip(1) {
        let inner = regex.split(")$/").next().unwrap_or_default();
        values.extend(inner.split('|').map(String::from));
    }
    (identifiers, values)
}

/// A row of an answer: its time, tags and columns by name.
type Row = (
    i64,
    BTreeMap<String, String>,
    BTreeMap<String, serde_json::Value>,
);

/// Every row of an answer in table form.
fn rows_of(answer: &serde_json::Value) -> Vec<Row> {
    let mut out = Vec::new();
    for s in series_of(answer) {
        let tags: BTreeMap<String, String> = s["tags"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let columns: Vec<String> = s["columns"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(String::from))
            .collect();
        for row in s["values"].as_array().into_iter().flatten() {
            let cells: BTreeMap<String, serde_json::Value> = columns
                .iter()
                .cloned()
                .zip(row.as_array().cloned().unwrap_or_default())
                .collect();
            let time = cells["time"].as_i64().expect("epoch=ns times");
            out.push((time, tags.clone(), cells));
        }
    }
    out
}

/// A series' display name (`name{k=v}`) from a row's tags.
fn display_of(tags: &BTreeMap<String, String>) -> String {
    let ind = tags.get("indicator").cloned().unwrap_or_default();
    match tags.iter().find(|(k, _)| k.as_str() != "indicator") {
        Some((k, v)) => format!("{ind}{{{k}={v}}}"),
        None => ind,
    }
}

#[test]
fn plan_pace_queries_return_data_from_a_real_run() {
    let dir = TempDir::new("dashboards");
    let events = dir.join("events.jsonl");
    paceline_generate::generate_to_file(5, 0.05, &events).expect("events");
    let config = Settings::default();
    let opts = ReplayOptions {
        inputs: vec![events],
        output: dir.join("out.lp"),
        dead_letters: dir.join("dl.jsonl"),
    };
    paceline_runtime::replay(&config, &opts).expect("replay");
    let lp = std::fs::read_to_string(&opts.output).expect("output");
    let (points, verdicts) = paceline_oracle::lp::parse_all(&lp).expect("line protocol");

    let influx = Influx1::start();
    influx.query("", "CREATE DATABASE dash");
    influx.write_lines("dash", &lp);

    // What the run wrote, asked of the database.
    let measurements = last_column_strings(&influx.query("dash", "SHOW MEASUREMENTS"));
    let fields: BTreeSet<String> = series_of(&influx.query("dash", "SHOW FIELD KEYS"))
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|row| row[0].as_str().map(String::from))
        .collect();
    let tags = last_column_strings(&influx.query("dash", "SHOW TAG KEYS"));
    let mut tag_values = BTreeSet::new();
    for key in &tags {
        tag_values.extend(last_column_strings(
            &influx.query("dash", &format!(r#"SHOW TAG VALUES WITH KEY = "{key}""#)),
        ));
    }
    assert!(
        measurements.contains("indicator")
            && measurements.contains("plan_verdict")
            && fields.contains("value"),
        "{measurements:?} {fields:?}"
    );
    let plans = config.plan_specs();
    assert!(!verdicts.is_empty(), "the run reaches verdict ticks");

    for lang in ["en", "zh"] {
        let d = load(&format!("plan-pace-{lang}.json"));
        let qs = queries(&d, "query");
        assert!(qs.len() >= plans.len() + 10, "{lang}: {qs:?}");
        for (title, q) in &qs {
            let (identifiers, values) = names_in(q);
            for name in identifiers {
                let known =
                    measurements.contains(&name) || fields.contains(&name) || tags.contains(&name);
                assert!(known, "{lang} {title}: \"{name}\" was not written");
            }
            for value in values {
                assert!(
                    tag_values.contains(&value),
                    "{lang} {title}: '{value}' was not written"
                );
            }
            let sql = substitute(q);
            let answer = influx.query("dash", &sql);
            assert!(
                answer["results"][0]["error"].is_null(),
                "{lang} {title}: {sql}\n{answer}"
            );
            let rows = rows_of(&answer);
            assert!(!rows.is_empty(), "{lang} {title} returns no data: {sql}");
        }

        // The goal tables: every planned series once, at its own newest tick, with the
        // run's newest fields there.
        let tables: Vec<&serde_json::Value> = d["panels"]
            .as_array()
            .expect("panels")
            .iter()
            .filter(|p| p["type"] == "table")
            .collect();
        let mut seen = BTreeSet::new();
        for table in &tables {
            let q = table["targets"][0]["query"].as_str().expect("query");
            let answer = influx.query("dash", &substitute(q));
            for (time, row_tags, cells) in rows_of(&answer) {
                let name = display_of(&row_tags);
                let plan = plans
                    .iter()
                    .find(|p| p.series.display() == name)
                    .unwrap_or_else(|| panic!("{lang}: {name} is not planned"));
                if q.contains("plan_verdict") {
                    let (tick, _, target, verdict) = verdicts[&plan.series];
                    assert_eq!(time, tick, "{lang}: {name}'s verdict tick");
                    assert_eq!(cells["verdict"].as_str(), Some(verdict.as_str()));
                    assert_eq!(cells["target"].as_f64(), Some(target));
                    continue;
                }
                let (tick, f) = points[&plan.series].iter().next_back().expect("points");
                assert_eq!(
                    time, *tick,
                    "{lang}: {name}'s newest tick, not the range's start"
                );
                assert_eq!(cells["value"].as_f64(), Some(f.value), "{lang}: {name}");
                assert_eq!(cells["expected"].as_f64(), f.expected, "{lang}: {name}");
                assert_eq!(
                    cells["status"].as_str(),
                    f.status.map(|s| s.as_str()),
                    "{lang}: {name}"
                );
                assert!(seen.insert(name.clone()), "{lang}: {name} twice");
            }
        }
        let written: BTreeSet<String> = plans
            .iter()
            .filter(|p| points.contains_key(&p.series))
            .map(|p| p.series.display())
            .collect();
        assert_eq!(
            seen, written,
            "{lang}: the goal tables hold every planned series"
        );

        // Identifiers are shown by title: each goal table maps every indicator it holds
        // to its title (hand-typed for two, the catalogue's for the rest).
        let hand_typed = |ind: &str| match (lang, ind) {
            ("en", "quasi_unicorns") => Some("Quasi-unicorn enterprises"),
            ("zh", "quasi_unicorns") => Some("准独角兽企业"),
            ("zh", "core_industry_revenue_cny") => Some("数字经济核心产业营业收入（近四个季度）"),
            _ => None,
        };
        let the_lang = if lang == "zh" { Lang::Zh } else { Lang::En };
        let mut mapped = BTreeSet::new();
        for table in &tables {
            let overrides = table["fieldConfig"]["overrides"]
                .as_array()
                .expect("overrides");
            let indicator = overrides
                .iter()
                .find(|o| o["matcher"]["options"] == "indicator")
                .expect("an indicator column override");
            let options = &indicator["properties"]
                .as_array()
                .expect("properties")
                .iter()
                .find(|p| p["id"] == "mappings")
                .expect("mappings")["value"][0]["options"];
            for (id, entry) in options.as_object().expect("options") {
                let ind = Indicator::parse(id).expect("an indicator");
                let want = hand_typed(id).unwrap_or(ind.title().get(the_lang));
                assert_eq!(entry["text"].as_str(), Some(want), "{lang}: {id}");
                mapped.insert(id.clone());
            }
        }
        for plan in &plans {
            assert!(
                mapped.contains(plan.series.indicator.name()),
                "{lang}: {}",
                plan.series.display()
            );
        }
    }
}

#[test]
fn pipeline_expressions_parse() {
    let d = load("pipeline.json");
    let exprs = queries(&d, "expr");
    assert!(exprs.len() >= 13, "{exprs:?}");
    // promtool parses them as recording rules, with Grafana's variables substituted.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, e)) in exprs.iter().enumerate() {
        let e = e.replace("$__rate_interval", "5m").replace("$job", ".*");
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: '{}'\n",
            e.replace('\'', "''")
        ));
    }
    let dir = TempDir::new("pipeline-exprs");
    let path = dir.join("rules.yml");
    std::fs::write(&path, rules).expect("rules");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .expect("promtool (scripts/test installs Debian's prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
