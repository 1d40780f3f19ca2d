//! Reads line-protocol output back: `(series, timestamp) → fields`, last line wins.

use std::collections::BTreeMap;

use paceline_model::catalogue::{Indicator, SeriesKey, NO_TAG};
use paceline_model::point::{Fields, Status};
use paceline_model::Nanos;

/// The points of an output: per series, per timestamp, the last fields written.
pub type Points = BTreeMap<SeriesKey, BTreeMap<Nanos, Fields>>;

/// Parses line protocol written by paceline (measurement, `indicator` tag, one other tag).
pub fn parse(text: &str) -> Result<Points, String> {
    let mut out: Points = BTreeMap::new();
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
        let ts: Nanos = ts.trim().parse().map_err(|_| err("bad timestamp"))?;
        out.entry(SeriesKey { indicator, tag })
            .or_default()
            .insert(ts, f);
    }
    Ok(out)
}
