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

/// One point: a series, a tick and its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The series.
    pub series: SeriesKey,
    /// The tick T (nanoseconds).
    pub tick: Nanos,
    /// The fields in force at T.
    pub fields: Fields,
    /// Whether this rewrites a point already written (a correction).
    pub correction: bool,
}
