//! Plan pace of a planned series at a tick (docs/indicators.md, "The plan and its pace").

use paceline_model::config::{PlanKind, PlanSpec};
use paceline_model::point::{Fields, Status};
use paceline_model::time::DAY;
use paceline_model::Nanos;

/// Length of the projection's look-back, 90 days.
pub const PROJECTION_LOOKBACK: Nanos = 90 * DAY;

/// The fields of a planned series with value `value` at tick `t` (≥ the plan's start).
/// `baseline` is the series' value at the start tick, `v90` its value at the latest tick at
/// or before `t − 90 days` (each `None` where the series had no value there).
pub fn pace_fields(
    plan: &PlanSpec,
    value: f64,
    t: Nanos,
    baseline: Option<f64>,
    v90: Option<f64>,
) -> Fields {
    let target = plan.target;
    let (expected, pace_ratio, projected) = match plan.kind {
        PlanKind::Cumulative => {
            let b = baseline.unwrap_or(0.0);
            let frac = ((t - plan.start) as f64 / (plan.deadline - plan.start) as f64).min(1.0);
            let expected = b + (target - b) * frac;
            let pace_ratio = if expected == b {
                None
            } else {
                Some((value - b) / (expected - b))
            };
            let projected = if t >= plan.deadline {
                Some(value)
            } else if t - PROJECTION_LOOKBACK < plan.start {
                None
            } else {
                v90.map(|v| {
                    value + (value - v) * ((plan.deadline - t) as f64 / PROJECTION_LOOKBACK as f64)
                })
            };
            (expected, pace_ratio, projected)
        }
        PlanKind::Threshold => (target, Some(value / target), None),
    };
    let status = if value >= target {
        Status::Met
    } else {
        match pace_ratio {
            None => Status::OnTrack,
            Some(r) if r >= 1.0 => Status::OnTrack,
            Some(r) if r >= plan.tolerance => Status::AtRisk,
            Some(_) => Status::Behind,
        }
    };
    Fields {
        value,
        target: Some(target),
        expected: Some(expected),
        pace_ratio: pace_ratio.filter(|r| r.is_finite()),
        projected: projected.filter(|p| p.is_finite()),
        status: Some(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::catalogue::SeriesKey;
    use paceline_model::time::parse_rfc3339;
    use paceline_model::Indicator;

    fn ts(s: &str) -> Nanos {
        parse_rfc3339(s).unwrap()
    }

    fn plan(kind: PlanKind, target: f64, start: &str, deadline: &str) -> PlanSpec {
        PlanSpec {
            series: SeriesKey::plain(Indicator::QuasiUnicorns),
            kind,
            target,
            start: ts(start),
            deadline: ts(deadline),
            tolerance: 0.9,
            verdict_tick: i64::MAX,
        }
    }

    const S: &str = "2022-01-01T00:00:00+08:00";
    const D: &str = "2025-01-01T00:00:00+08:00";

    #[test]
    fn cumulative_at_start_has_no_pace_ratio() {
        let p = plan(PlanKind::Cumulative, 10.0, S, D);
        let f = pace_fields(&p, 2.0, ts(S), Some(2.0), None);
        assert_eq!(f.expected, Some(2.0));
        assert_eq!(f.pace_ratio, None);
        assert_eq!(f.status, Some(Status::OnTrack));
        assert_eq!(f.projected, None, "T − 90 d is before the start");
        assert_eq!(f.target, Some(10.0));
    }

    #[test]
    fn cumulative_halfway() {
        // Start 2022-01-01, deadline 2025-01-01: 1096 days. At 548 days, half-way.
        let p = plan(PlanKind::Cumulative, 10.0, S, D);
        let t = ts(S) + 548 * DAY;
        let f = pace_fields(&p, 5.0, t, Some(0.0), Some(3.0));
        assert_eq!(f.expected, Some(5.0));
        assert_eq!(f.pace_ratio, Some(1.0));
        assert_eq!(f.status, Some(Status::OnTrack));
        // projected = 5 + (5 − 3) × 548 d / 90 d
        assert!((f.projected.unwrap() - (5.0 + 2.0 * 548.0 / 90.0)).abs() < 1e-12);
        // Baseline 2: expected = 2 + 8 × 0.5 = 6; ratio = (5 − 2) / (6 − 2) = 0.75 → behind.
        let g = pace_fields(&p, 5.0, t, Some(2.0), Some(3.0));
        assert_eq!(g.expected, Some(6.0));
        assert_eq!(g.pace_ratio, Some(0.75));
        assert_eq!(g.status, Some(Status::Behind));
        // Ratio 0.9 exactly is at risk; ratio 0.95 too.
        let h = pace_fields(&p, 4.5, t, Some(0.0), None);
        assert_eq!((h.pace_ratio, h.status), (Some(0.9), Some(Status::AtRisk)));
        assert_eq!(h.projected, None, "no value 90 days before");
    }

    #[test]
    fn cumulative_after_deadline_and_met() {
        let p = plan(PlanKind::Cumulative, 10.0, S, D);
        let t = ts(D) + 10 * DAY;
        let f = pace_fields(&p, 9.0, t, Some(0.0), Some(1.0));
        assert_eq!(f.expected, Some(10.0));
        assert_eq!(
            f.projected,
            Some(9.0),
            "equal to the value once T ≥ deadline"
        );
        assert_eq!(f.status, Some(Status::AtRisk));
        let m = pace_fields(&p, 10.0, ts(S) + DAY, Some(0.0), None);
        assert_eq!(m.status, Some(Status::Met));
    }

    #[test]
    fn threshold() {
        let p = plan(PlanKind::Threshold, 0.08, D, "2026-01-01T00:00:00+08:00");
        let f = pace_fields(&p, 0.04, ts(D), None, None);
        assert_eq!(f.expected, Some(0.08));
        assert_eq!(f.pace_ratio, Some(0.5));
        assert_eq!(f.status, Some(Status::Behind));
        assert_eq!(f.projected, None);
        let g = pace_fields(&p, 0.075, ts(D), None, None);
        assert_eq!(g.status, Some(Status::AtRisk));
        let h = pace_fields(&p, 0.08, ts(D), None, None);
        assert_eq!(h.status, Some(Status::Met));
        let n = pace_fields(&p, -0.1, ts(D), None, None);
        assert_eq!(n.status, Some(Status::Behind));
    }
}
