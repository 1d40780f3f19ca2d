//! The equivalence of docs/outputs.md: for every series and tick, the point in force (the last
//! at or before the tick) has the same fields, numbers within a relative 1e-9; a count or
//! sum series never written counts as 0.

use paceline_model::point::Fields;
use paceline_model::time::tick_ceil;
use paceline_model::{Nanos, SeriesKey};

use crate::lp::Points;

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()) || (a - b).abs() <= 1e-9
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => close(x, y),
        (None, None) => true,
        _ => false,
    }
}

/// Whether two points agree; a status may differ where a number sits within the tolerance
/// of a status threshold.
pub fn fields_agree(a: &Fields, b: &Fields, tolerance: f64) -> bool {
    let numbers = close(a.value, b.value)
        && close_opt(a.target, b.target)
        && close_opt(a.expected, b.expected)
        && close_opt(a.pace_ratio, b.pace_ratio)
        && close_opt(a.projected, b.projected);
    if !numbers {
        return false;
    }
    if a.status == b.status {
        return true;
    }
    let near = |x: f64, y: f64| (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0);
    let borderline = a.target.is_some_and(|t| near(a.value, t))
        || a.pace_ratio
            .is_some_and(|r| near(r, 1.0) || near(r, tolerance));
    borderline
}

fn in_force(points: &Points, key: &SeriesKey, t: Nanos) -> Option<Fields> {
    points
        .get(key)
        .and_then(|m| m.range(..=t).next_back().map(|(_, f)| *f))
        .or_else(|| key.indicator.zero_default().then(|| Fields::value(0.0)))
}

/// Compares two outputs over the ticks `from..=to` of each series' cadence; returns the
/// first differences found (at most `limit`).
pub fn differences(
    a: &Points,
    b: &Points,
    cadence: impl Fn(&SeriesKey) -> Nanos,
    range: impl Fn(&SeriesKey) -> Option<(Nanos, Nanos)>,
    limit: usize,
) -> Vec<String> {
    let mut keys: Vec<SeriesKey> = a.keys().chain(b.keys()).copied().collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for key in keys {
        let Some((from, to)) = range(&key) else {
            continue;
        };
        let c = cadence(&key);
        let mut t = tick_ceil(from, c);
        while t <= to {
            let (x, y) = (in_force(a, &key, t), in_force(b, &key, t));
            let same = match (&x, &y) {
                (Some(x), Some(y)) => fields_agree(x, y, 0.9),
                (None, None) => true,
                _ => false,
            };
            if !same {
                out.push(format!("{} at {}: {:?} vs {:?}", key.display(), t, x, y));
                if out.len() >= limit {
                    return out;
                }
                break;
            }
            t += c;
        }
    }
    out
}
