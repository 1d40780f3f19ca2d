//! The equivalence of docs/outputs.md: for every series and tick, the point in force (the last
//! at or before the tick) has the same fields, numbers within a relative 1e-9; a count or
//! sum series never written counts as 0.

use std::fmt;

use paceline_model::point::Fields;
use paceline_model::time::{tick_ceil, DAY};
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
    a.target.is_some_and(|t| near(a.value, t))
        || a.pace_ratio
            .is_some_and(|r| near(r, 1.0) || near(r, tolerance))
}

fn in_force(points: &Points, key: &SeriesKey, t: Nanos) -> Option<Fields> {
    points
        .get(key)
        .and_then(|m| m.range(..=t).next_back().map(|(_, f)| *f))
        .or_else(|| key.indicator.zero_default().then(|| Fields::value(0.0)))
}

/// The first tick of a series where two outputs' points in force disagree, with both points
/// (`None`: that output has no point in force there).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// The series that differs.
    pub key: SeriesKey,
    /// Its first tick in the compared range where the points in force disagree.
    pub tick: Nanos,
    /// The first output's point in force at `tick`.
    pub left: Option<Fields>,
    /// The second output's.
    pub right: Option<Fields>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}: {:?} vs {:?}",
            self.key.display(),
            self.tick,
            self.left,
            self.right
        )
    }
}

impl Difference {
    /// The points each output wrote for this series from `before` ahead of the tick to
    /// `after` it, one line per output: what tells a lost or late write (the other side's
    /// points simply missing) from a wrong value.
    pub fn neighbourhood(
        &self,
        left: &Points,
        right: &Points,
        before: Nanos,
        after: Nanos,
    ) -> String {
        let written = |points: &Points| match points.get(&self.key) {
            Some(by_tick) => by_tick
                .range(self.tick.saturating_sub(before)..=self.tick.saturating_add(after))
                .map(|(at, f)| format!("{at}={}", f.value))
                .collect::<Vec<_>>()
                .join(" "),
            None => "no such series".into(),
        };
        format!(
            "{} near {}:\n  left:  {}\n  right: {}",
            self.key.display(),
            self.tick,
            written(left),
            written(right)
        )
    }
}

/// Each difference on a line, then the points both outputs wrote around it (three days
/// before to one after): the message of a failed comparison.
pub fn explain(diffs: &[Difference], left: &Points, right: &Points) -> String {
    let listed = diffs.iter().map(Difference::to_string);
    let around = diffs
        .iter()
        .map(|d| d.neighbourhood(left, right, 3 * DAY, DAY));
    listed.chain(around).collect::<Vec<_>>().join("\n")
}

/// Compares two outputs over the ticks `from..=to` of each series' cadence; returns the
/// first difference of each series, of at most `limit` series.
pub fn differences(
    a: &Points,
    b: &Points,
    cadence: impl Fn(&SeriesKey) -> Nanos,
    range: impl Fn(&SeriesKey) -> Option<(Nanos, Nanos)>,
    limit: usize,
) -> Vec<Difference> {
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
            let (left, right) = (in_force(a, &key, t), in_force(b, &key, t));
            let same = match (&left, &right) {
                (Some(x), Some(y)) => fields_agree(x, y, 0.9),
                (None, None) => true,
                _ => false,
            };
            if !same {
                out.push(Difference {
                    key,
                    tick: t,
                    left,
                    right,
                });
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

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::Indicator;

    fn series(points: &[(Nanos, f64)]) -> std::collections::BTreeMap<Nanos, Fields> {
        points.iter().map(|&(t, v)| (t, Fields::value(v))).collect()
    }

    /// Worked by hand, on daily series (ticks at midnight +08:00): the right output's value
    /// at day 2 is 3 where the left's is 2; a zero-default count the left never wrote is 0
    /// there, as the right's written 0 says, so it is no difference; a series without a
    /// zero default written on one side only differs from its first tick.
    #[test]
    fn names_the_first_tick_of_each_series_where_the_points_in_force_differ() {
        let day = |k: i64| tick_ceil(0, DAY) + k * DAY;
        let count = SeriesKey::plain(Indicator::QuasiUnicorns);
        let silent = SeriesKey::plain(Indicator::SrdiEnterprises);
        let growth = SeriesKey::plain(Indicator::DigitalEconomyAddedValueGrowth);
        let left: Points = [(
            count,
            series(&[(day(0), 1.0), (day(2), 2.0), (day(3), 5.0)]),
        )]
        .into();
        let right: Points = [
            (
                count,
                series(&[(day(0), 1.0), (day(2), 3.0), (day(3), 5.0)]),
            ),
            (silent, series(&[(day(0), 0.0)])),
            (growth, series(&[(day(1), 0.08)])),
        ]
        .into();
        let diffs = differences(&left, &right, |_| DAY, |_| Some((0, day(4))), 10);
        assert_eq!(
            diffs,
            vec![
                Difference {
                    key: count,
                    tick: day(2),
                    left: Some(Fields::value(2.0)),
                    right: Some(Fields::value(3.0)),
                },
                Difference {
                    key: growth,
                    tick: day(1),
                    left: None,
                    right: Some(Fields::value(0.08)),
                },
            ]
        );
        assert_eq!(
            differences(&left, &right, |_| DAY, |_| Some((0, day(4))), 1).len(),
            1,
            "the limit holds"
        );
        assert_eq!(
            diffs[0].to_string(),
            format!(
                "quasi_unicorns at {}: {:?} vs {:?}",
                day(2),
                Some(Fields::value(2.0)),
                Some(Fields::value(3.0))
            )
        );
        // Day 3 is in the neighbourhood of one day after; day 0 is outside one day before.
        assert_eq!(
            diffs[0].neighbourhood(&left, &right, DAY, DAY),
            format!(
                "quasi_unicorns near {}:\n  left:  {}=2 {}=5\n  right: {}=3 {}=5",
                day(2),
                day(2),
                day(3),
                day(2),
                day(3)
            )
        );
        assert!(diffs[1]
            .neighbourhood(&left, &right, DAY, DAY)
            .contains("left:  no such series"));
        let message = explain(&diffs, &left, &right);
        assert_eq!(message.lines().count(), 2 + 2 * 3, "{message}");
    }
}
