//! Reads line-protocol output back: `(series, timestamp) → fields`, last line wins.

use std::collections::BTreeMap;

use paceline_model::catalogue::{Indicator, SeriesKey, NO_TAG};
use paceline_model::point::{Fields, Status, Verdict};
use paceline_model::Nanos;

/// The points of an output: per series, per timestamp, the last fields written.
pub type Points = BTreeMap<SeriesKey, BTreeMap<Nanos, Fields>>;

/// The plan verdicts of an output: per planned series, its verdict tick, value (where it
/// has one), target and verdict, the last written.
pub type Verdicts = BTreeMap<SeriesKey, (Nanos, Option<f64>, f64, Verdict)>;

/// Parses line protocol written by paceline, leaving out the plan verdicts' lines.
pub fn parse(text: &str) -> Result<Points, String> {
    parse_all(text).map(|(points, _)| points)
}

/// Parses line protocol written by paceline (measurement, `indicator` tag, one other tag):
/// the indicator points, and the plan verdicts (the lines with a `verdict` field).
pub fn parse_all(text: &str) -> Result<(Points, Verdicts), String> {
    let mut out: Points = BTreeMap::new();
    let mut verdicts = Verdicts::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let err = |what: &str| format!("line {}: {what}: {line}", n + 1);
        let mut parts = line.splitn(3, ' ');
        let (head, fields, ts) = match (parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(f), Some(t)) => (h, f, t),
            _ => return Err(err("not three parts")),
        };
        let mut tags = head.split(',').skip(1);
        let name = tags
            .next()
            .and_then(|t| t.strip_prefix("indicator="))
            .ok_or_else(|| err("no indicator tag"))?;
        let indicator = Indicator::parse(name).ok_or_else(|| err("unknown indicator"))?;
        let tag = match tags.next() {
            Some(kv) => {
                let (_, v) = kv.split_once('=').ok_or_else(|| err("bad tag"))?;
                indicator
                    .tag_kind()
                    .parse(v)
                    .ok_or_else(|| err("bad tag value"))?
            }
            None => NO_TAG,
        };
        let ts: Nanos = ts.trim().parse().map_err(|_| err("bad timestamp"))?;
        let key = SeriesKey { indicator, tag };
        if fields.contains("verdict=") {
            let (mut value, mut target, mut verdict) = (None, None, None);
            for kv in fields.split(',') {
                let (k, v) = kv.split_once('=').ok_or_else(|| err("bad field"))?;
                let num = || v.parse::<f64>().map_err(|_| err("bad number"));
                match k {
                    "value" => value = Some(num()?),
                    "target" => target = Some(num()?),
                    "verdict" => verdict = Verdict::parse(v.trim_matches('"')),
                    _ => return Err(err("unknown verdict field")),
                }
            }
            let target = target.ok_or_else(|| err("verdict without target"))?;
            let verdict = verdict.ok_or_else(|| err("bad verdict"))?;
            if let Some((t, ..)) = verdicts.get(&key) {
                if *t != ts {
                    return Err(err("a second verdict tick for the series"));
                }
            }
            verdicts.insert(key, (ts, value, target, verdict));
            continue;
        }
        let mut f = Fields::value(f64::NAN);
        for kv in fields.split(',') {
            let (k, v) = kv.split_once('=').ok_or_else(|| err("bad field"))?;
            let num = || v.parse::<f64>().map_err(|_| err("bad number"));
            match k {
                "value" => f.value = num()?,
                "target" => f.target = Some(num()?),
                "expected" => f.expected = Some(num()?),
                "pace_ratio" => f.pace_ratio = Some(num()?),
                "projected" => f.projected = Some(num()?),
                "status" => {
                    f.status =
                        Some(Status::parse(v.trim_matches('"')).ok_or_else(|| err("bad status"))?)
                }
                _ => return Err(err("unknown field")),
            }
        }
        if f.value.is_nan() {
            return Err(err("no value field"));
        }
        out.entry(key).or_default().insert(ts, f);
    }
    Ok((out, verdicts))
}
