//! Reads the written indicators back from the databases, as the oracle's `Points`:
//! InfluxDB 1.x through InfluxQL, VictoriaMetrics through its export API (numeric fields
//! only: it keeps no strings, so no `status`).

use std::collections::BTreeMap;

use paceline_model::config::parse_series;
use paceline_model::point::{Fields, Status};
use paceline_model::{Nanos, SeriesKey};
use paceline_oracle::lp::Points;

use crate::services::{http, Influx1, Victoria};

const TAGS: [&str; 4] = ["cluster", "field", "region", "platform_kind"];

fn series_of(labels: &serde_json::Map<String, serde_json::Value>) -> SeriesKey {
    let name = labels
        .get("indicator")
        .and_then(|v| v.as_str())
        .expect("indicator tag");
    let tag = TAGS.iter().find_map(|k| {
        labels
            .get(*k)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(|v| format!("{k}={v}"))
    });
    let text = match tag {
        Some(t) => format!("{name}{{{t}}}"),
        None => name.to_string(),
    };
    parse_series(&text).unwrap_or_else(|e| panic!("series {text}: {e}"))
}

fn set(f: &mut Fields, field: &str, v: &serde_json::Value) {
    let num = v.as_f64();
    match field {
        "value" => f.value = num.unwrap_or(f64::NAN),
        "target" => f.target = num,
        "expected" => f.expected = num,
        "pace_ratio" => f.pace_ratio = num,
        "projected" => f.projected = num,
        "status" => f.status = v.as_str().and_then(Status::parse),
        _ => {}
    }
}

/// Every point of `measurement` in database `db`.
pub fn influx1(influx: &Influx1, db: &str, measurement: &str) -> Points {
    let answer = influx.query(db, &format!("SELECT * FROM \"{measurement}\" GROUP BY *"));
    let mut out: Points = BTreeMap::new();
    let series = answer["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for s in series {
        let key = series_of(s["tags"].as_object().expect("tags"));
        let columns: Vec<String> = s["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().unwrap_or("").to_string())
            .collect();
        for row in s["values"].as_array().expect("values") {
            let row = row.as_array().expect("row");
            let t = row[0].as_i64().expect("time");
            let mut f = Fields::value(f64::NAN);
            for (c, v) in columns.iter().zip(row).skip(1) {
                set(&mut f, c, v);
            }
            assert!(!f.value.is_nan(), "{key:?} at {t}: no value");
            out.entry(key).or_default().insert(t, f);
        }
    }
    out
}

/// Every sample of `<measurement>_*` in VictoriaMetrics; a (series, timestamp) written more
/// than once keeps the last sample.
pub fn victoria(vm: &Victoria, measurement: &str) -> Points {
    let c = http();
    let _ = c.get(format!("{}/internal/force_flush", vm.url())).send();
    let text = c
        .post(format!("{}/api/v1/export", vm.url()))
        .form(&[("match[]", format!("{{__name__=~\"{measurement}_.*\"}}"))])
        .send()
        .expect("export")
        .text()
        .expect("export text");
    let mut out: Points = BTreeMap::new();
    let prefix = format!("{measurement}_");
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("export line");
        let labels = v["metric"].as_object().expect("metric");
        let field = labels["__name__"]
            .as_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .expect("name")
            .to_string();
        if field == "status" {
            continue;
        }
        let key = series_of(labels);
        let values = v["values"].as_array().expect("values");
        let stamps = v["timestamps"].as_array().expect("timestamps");
        for (x, t) in values.iter().zip(stamps) {
            let t: Nanos = t.as_i64().expect("ms") * 1_000_000;
            let f = out
                .entry(key)
                .or_default()
                .entry(t)
                .or_insert_with(|| Fields::value(f64::NAN));
            set(f, &field, x);
        }
    }
    for (k, m) in &out {
        for (t, f) in m {
            assert!(!f.value.is_nan(), "{k:?} at {t}: no value sample");
        }
    }
    out
}

/// The same points without `status` (for comparing with a store that keeps no strings).
pub fn without_status(p: &Points) -> Points {
    p.iter()
        .map(|(k, m)| {
            (
                *k,
                m.iter()
                    .map(|(t, f)| {
                        let mut f = *f;
                        f.status = None;
                        (*t, f)
                    })
                    .collect(),
            )
        })
        .collect()
}
