//! The output point of one series at one tick (docs/outputs.md, "Points").

use serde::{Deserialize, Serialize};

use crate::catalogue::SeriesKey;
use crate::time::Nanos;

/// Plan status of a planned series at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// value ≥ target.
    Met,
    /// On or ahead of pace, or nothing expected yet.
    OnTrack,
    /// Below pace but within the tolerance.
    AtRisk,
    /// Below the tolerance.
    Behind,
}

impl Status {
    /// All statuses.
    pub const ALL: [Status; 4] = [Status::Met, Status::OnTrack, Status::AtRisk, Status::Behind];
    /// The spelling in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Met => "met",
            Status::OnTrack => "on_track",
            Status::AtRisk => "at_risk",
            Status::Behind => "behind",
        }
    }
    /// Parses the output spelling.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// The fields of a point: `value` always, the pace fields where defined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fields {
    /// The indicator's value.
    pub value: f64,
    /// Plan target (planned series from their start).
    pub target: Option<f64>,
    /// Expected value at this tick.
    pub expected: Option<f64>,
    /// Pace ratio, absent while nothing is expected yet.
    pub pace_ratio: Option<f64>,
    /// Projection to the deadline (cumulative series with 90 days of history).
    pub projected: Option<f64>,
    /// Plan status.
    pub status: Option<Status>,
}

impl Fields {
    /// A point carrying only a value.
    pub fn value(value: f64) -> Fields {
        Fields {
            value,
            target: None,
            expected: None,
            pace_ratio: None,
            projected: None,
            status: None,
        }
    }
}

/// Was a plan goal met, judged at its verdict tick (docs/indicators.md, "Verdicts").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// The value at the verdict tick reached the target.
    Met,
    /// It did not, or the series had no value there.
    Missed,
}

impl Verdict {
    /// Both verdicts.
    pub const ALL: [Verdict; 2] = [Verdict::Met, Verdict::Missed];
    /// The spelling in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "missed",
        }
    }
    /// Parses the output spelling.
    pub fn parse(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// The fields of a `plan_verdict` point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VerdictFields {
    /// The series' value at the verdict tick, where it has one.
    pub value: Option<f64>,
    /// The plan's target.
    pub target: f64,
    /// Met or missed.
    pub verdict: Verdict,
}

impl VerdictFields {
    /// The verdict on `value` against `target`: met when the value reaches the target
    /// within a relative 1e-9 (a sum of filings may land a hair below an exact target),
    /// missed otherwise and without a value.
    pub fn judge(value: Option<f64>, target: f64) -> VerdictFields {
        let met = value.is_some_and(|v| v >= target - 1e-9 * target.abs());
        VerdictFields {
            value,
            target,
            verdict: if met { Verdict::Met } else { Verdict::Missed },
        }
    }
}

/// One point: a series, a tick and its fields; or, where `verdict` is set, the plan
/// verdict of that series judged at that tick (written to its own measurement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The series.
    pub series: SeriesKey,
    /// The tick T (nanoseconds).
    pub tick: Nanos,
    /// The fields in force at T (on a verdict point: `Fields::value(NaN)`, unused).
    pub fields: Fields,
    /// Whether this rewrites a point already written (a correction).
    pub correction: bool,
    /// Set on the plan verdict's point, which carries these fields instead.
    pub verdict: Option<VerdictFields>,
}

impl Point {
    /// An indicator point.
    pub fn indicator(series: SeriesKey, tick: Nanos, fields: Fields, correction: bool) -> Point {
        Point {
            series,
            tick,
            fields,
            correction,
            verdict: None,
        }
    }

    /// The plan verdict's point of `series`, judged at `tick`.
    pub fn verdict(
        series: SeriesKey,
        tick: Nanos,
        verdict: VerdictFields,
        correction: bool,
    ) -> Point {
        Point {
            series,
            tick,
            fields: Fields::value(f64::NAN),
            correction,
            verdict: Some(verdict),
        }
    }
}
