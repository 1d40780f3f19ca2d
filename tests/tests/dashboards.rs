//! The Grafana dashboards of `deploy/grafana/dashboards/`, tried as Grafana would run them.
//!
//! - Structure: valid JSON with a title, a uid, a schema version, and panels that each name
//!   a data source and have queries.
//! - "Plan pace" (InfluxQL): a real run's output (`paceline replay` of a generated district)
//!   is written to a real InfluxDB 1.x; the template variable's query runs as is, every
//!   panel query runs with Grafana's macros (`$timeFilter`, `$__interval`) and the
//!   variable substituted for each planned indicator, and returns data; every measurement,
//!   field, tag and indicator it names is one that run wrote (asked of the database, not
//!   taken from the project's constants).
//! - "Pipeline" (PromQL): every expression parses in `promtool` with Grafana's variables
//!   substituted; the metric names it reads are checked against a real serve's `/metrics`
//!   in `serve_end_to_end`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use paceline_runtime::settings::Settings;
use paceline_runtime::ReplayOptions;
use paceline_tests::services::{http, Influx1, TempDir};

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
        for p in panels {
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
    assert_eq!(n, 2, "Plan pace and Pipeline");
}

/// Grafana's `$timeFilter` for the whole plan period and beyond.
const TIME_FILTER: &str = "time >= 1630454400000ms and time <= 1798761600000ms";

fn substitute(q: &str, indicator: &str) -> String {
    q.replace("$timeFilter", TIME_FILTER)
        .replace("$__interval", "1d")
        .replace("$indicator", indicator)
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

/// Writes a replay's line protocol into database `db`.
fn write_lines(influx: &Influx1, db: &str, text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    for chunk in lines.chunks(5000) {
        let r = http()
            .post(format!("{}/write", influx.url()))
            .query(&[("db", db), ("precision", "ns")])
            .body(chunk.join("\n"))
            .send()
            .expect("write");
        assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap_or_default());
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

    let influx = Influx1::start();
    influx.query("", "CREATE DATABASE dash");
    write_lines(&influx, "dash", &lp);

    // What the run wrote, asked of the database.
    let measurements = last_column_strings(&influx.query("dash", "SHOW MEASUREMENTS"));
    let fields: BTreeSet<String> = series_of(&influx.query("dash", "SHOW FIELD KEYS"))
        .iter()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|row| row[0].as_str().map(String::from))
        .collect();
    let tags = last_column_strings(&influx.query("dash", "SHOW TAG KEYS"));
    let indicators = last_column_strings(&influx.query(
        "dash",
        r#"SHOW TAG VALUES FROM "indicator" WITH KEY = "indicator""#,
    ));
    assert!(
        measurements.contains("indicator") && fields.contains("value"),
        "{measurements:?} {fields:?}"
    );

    let d = load("plan-pace.json");
    // The template variable lists every indicator written.
    let var = d["templating"]["list"][0]["query"]
        .as_str()
        .expect("variable query");
    let listed = last_column_strings(&influx.query("dash", var));
    assert_eq!(listed, indicators);
    let planned: BTreeSet<String> = config
        .plan_specs()
        .iter()
        .map(|p| p.series.indicator.name().to_string())
        .collect();
    assert!(
        planned.is_subset(&listed),
        "planned indicators are offered: {planned:?}"
    );

    let qs = queries(&d, "query");
    assert!(qs.len() >= 9, "{qs:?}");
    for (title, q) in &qs {
        // Every name the query uses is one the run wrote (aliases after AS aside).
        let aliases: BTreeSet<&str> = q
            .split(" AS ")
            .skip(1)
            .filter_map(|s| s.split('"').nth(1))
            .collect();
        for name in q.split('"').skip(1).step_by(2) {
            let known = measurements.contains(name) || fields.contains(name) || tags.contains(name);
            assert!(
                known || aliases.contains(name),
                "{title}: \"{name}\" was not written"
            );
        }
        for name in q.split('\'').skip(1).step_by(2) {
            assert!(
                indicators.contains(name),
                "{title}: indicator '{name}' was not written"
            );
        }
        let values: Vec<String> = if q.contains("$indicator") {
            planned.iter().cloned().collect()
        } else {
            vec![String::new()]
        };
        for ind in values {
            let sql = substitute(q, &ind);
            let answer = influx.query("dash", &sql);
            assert!(
                answer["results"][0]["error"].is_null(),
                "{title}: {sql}\n{answer}"
            );
            let rows: usize = series_of(&answer)
                .iter()
                .map(|s| s["values"].as_array().map_or(0, Vec::len))
                .sum();
            assert!(rows > 0, "{title} ({ind}) returns no data: {sql}");
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
