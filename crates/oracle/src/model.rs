//! A brute-force model of docs/indicators.md: every series at every tick, recomputed from all
//! events with `occurred_at < T`. Quadratic and obvious on purpose; for small inputs only.

use std::collections::{BTreeMap, BTreeSet};

use paceline_model::catalogue::{Indicator, SeriesKey, NO_TAG, UNASSIGNED_FIELD};
use paceline_model::config::{Config, PlanKind, PlanSpec};
use paceline_model::event::{
    Field, PlatformStatus, ProjectKind, ProjectStage, Region, ScenarioStage,
};
use paceline_model::point::{Fields, Status, Verdict};
use paceline_model::time::{quarter_end, tick_after, DAY, HOUR};
use paceline_model::{Body, Event, Nanos};

use crate::lp::{Points, Verdicts};

/// The latest of `events` (already filtered) by (`occurred_at`, `event_id`).
fn latest<'a>(events: impl Iterator<Item = &'a Event>) -> Option<&'a Event> {
    events.max_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)))
}

/// The four quarters before T (those ending at or before T − lag, the last four), and the
/// four before those, found by walking quarters.
fn quarter_windows(t: Nanos, lag: Nanos) -> (Vec<i32>, Vec<i32>) {
    let mut q = 1900 * 4;
    while quarter_end(q + 1) <= t - lag {
        q += 1;
    }
    // q is the last quarter with end ≤ T − lag.
    ((q - 3..=q).collect(), (q - 7..=q - 4).collect())
}

fn value_at(ind: Indicator, tag: u8, t: Nanos, events: &[Event], lag: Nanos) -> Option<f64> {
    let before: Vec<&Event> = events.iter().filter(|e| e.at < t).collect();
    let enterprises: BTreeSet<&str> = before
        .iter()
        .filter(|e| e.body.stream() == paceline_model::Stream::Filings)
        .map(|e| e.body.entity().as_str())
        .collect();
    let of = |id: &str| -> Vec<&Event> {
        before
            .iter()
            .copied()
            .filter(|e| e.body.stream() == paceline_model::Stream::Filings && e.body.entity() == id)
            .collect()
    };
    // Enterprise helpers.
    let registered = |id: &str| {
        latest(
            of(id)
                .into_iter()
                .filter(|e| matches!(e.body, Body::Registered { .. } | Body::Deregistered { .. })),
        )
        .is_some_and(|e| matches!(e.body, Body::Registered { .. }))
    };
    let attrs = |id: &str| match latest(
        of(id)
            .into_iter()
            .filter(|e| matches!(e.body, Body::Registered { .. })),
    )
    .map(|e| &e.body)
    {
        Some(Body::Registered { cluster, sme, .. }) => Some((*cluster, *sme)),
        _ => None,
    };
    let revenue = |id: &str,
                   quarters: &[i32],
                   pick: fn(&Body) -> f64|
     -> Vec<(paceline_model::event::Cluster, f64)> {
        let Some((cluster, _)) = attrs(id) else {
            return vec![];
        };
        let mut out = vec![];
        for q in quarters {
            let best = of(id)
                .into_iter()
                .filter(|e| matches!(e.body, Body::Financials { period, .. } if period == *q))
                .max_by(|a, b| {
                    let ra = match a.body {
                        Body::Financials { revision, .. } => revision,
                        _ => 0,
                    };
                    let rb = match b.body {
                        Body::Financials { revision, .. } => revision,
                        _ => 0,
                    };
                    (ra, a.at, &a.id).cmp(&(rb, b.at, &b.id))
                });
            if let Some(e) = best {
                out.push((cluster, pick(&e.body)));
            }
        }
        out
    };
    let rev = |b: &Body| match b {
        Body::Financials { revenue_cny, .. } => *revenue_cny,
        _ => 0.0,
    };
    let av = |b: &Body| match b {
        Body::Financials {
            added_value_cny, ..
        } => *added_value_cny,
        _ => 0.0,
    };
    let (q4, q8) = quarter_windows(t, lag);
    let count = |f: &dyn Fn(&str) -> bool| enterprises.iter().filter(|id| f(id)).count() as f64;
    // Scenario helpers.
    let scen_ids: BTreeSet<&str> = before
        .iter()
        .filter(|e| {
            matches!(
                e.body,
                Body::ScenarioStage { .. } | Body::ScenarioUsage { .. }
            )
        })
        .map(|e| e.body.entity().as_str())
        .collect();
    let stage_of =
        |id: &str| {
            latest(before.iter().copied().filter(
                |e| matches!(&e.body, Body::ScenarioStage { scenario, .. } if scenario == id),
            ))
            .map(|e| match &e.body {
                Body::ScenarioStage { field, stage, .. } => (*field, *stage),
                _ => unreachable!(),
            })
        };
    let live = |id: &str| stage_of(id).is_some_and(|(_, s)| s == ScenarioStage::Live);
    // "Put in place": any stage event of stage live before T, whatever came after it.
    let launched = |id: &str| {
        before.iter().any(|e| {
            matches!(&e.body, Body::ScenarioStage { scenario, stage: ScenarioStage::Live, .. } if scenario == id)
        })
    };
    let field_tag = |id: &str| stage_of(id).map_or(UNASSIGNED_FIELD, |(f, _)| f.index() as u8);
    let usage_in_week = |id: &str| {
        before
            .iter()
            .filter(|e| {
                e.at >= t - 7 * DAY
                    && matches!(&e.body, Body::ScenarioUsage { scenario, .. } if scenario == id)
            })
            .map(|e| match &e.body {
                Body::ScenarioUsage {
                    active_users,
                    transactions,
                    value_cny,
                    ..
                } => (*active_users as f64, *transactions as f64, *value_cny),
                _ => unreachable!(),
            })
            .collect::<Vec<_>>()
    };
    // Projects.
    let proj_ids: BTreeSet<&str> = before
        .iter()
        .filter(|e| matches!(e.body, Body::ProjectStage { .. }))
        .map(|e| e.body.entity().as_str())
        .collect();
    let proj = |id: &str| {
        latest(
            before
                .iter()
                .copied()
                .filter(|e| matches!(&e.body, Body::ProjectStage { project, .. } if project == id)),
        )
        .map(|e| match &e.body {
            Body::ProjectStage {
                kind,
                region,
                stage,
                ..
            } => (*kind, *region, *stage),
            _ => unreachable!(),
        })
    };
    let proj_count = |f: &dyn Fn(ProjectKind, Region, ProjectStage) -> bool| {
        proj_ids
            .iter()
            .filter(|id| proj(id).is_some_and(|(k, r, s)| f(k, r, s)))
            .count() as f64
    };
    // Telemetry.
    let day_window = |e: &&&Event| e.at >= t - 24 * HOUR;
    use Indicator::*;
    Some(match ind {
        QuasiUnicorns => count(&|id| {
            registered(id)
                && latest(of(id).into_iter().filter(|e| matches!(e.body, Body::Valuation { .. })))
                    .is_some_and(|e| matches!(e.body, Body::Valuation { valuation_cny, .. } if valuation_cny >= 1e9))
        }),
        SrdiEnterprises => count(&|id| {
            registered(id)
                && latest(
                    of(id)
                        .into_iter()
                        .filter(|e| matches!(e.body, Body::Certification { .. })),
                )
                .is_some_and(|e| matches!(e.body, Body::Certification { granted: true, .. }))
        }),
        ClusterEnterprises => {
            count(&|id| registered(id) && attrs(id).is_some_and(|(c, _)| c.index() as u8 == tag))
        }
        SmesOnCloud => count(&|id| {
            registered(id)
                && attrs(id).is_some_and(|(_, sme)| sme)
                && of(id)
                    .into_iter()
                    .any(|e| matches!(e.body, Body::CloudMigration { .. }))
        }),
        CoreIndustryRevenueCny => enterprises
            .iter()
            .flat_map(|id| revenue(id, &q4, rev))
            .filter(|(c, _)| c.is_core())
            .map(|x| x.1)
            .sum(),
        ClusterRevenueCny => enterprises
            .iter()
            .flat_map(|id| revenue(id, &q4, rev))
            .filter(|(c, _)| c.index() as u8 == tag)
            .map(|x| x.1)
            .sum(),
        DigitalEconomyAddedValueCny => enterprises
            .iter()
            .flat_map(|id| revenue(id, &q4, av))
            .filter(|(c, _)| c.is_core())
            .map(|x| x.1)
            .sum(),
        DigitalEconomyAddedValueGrowth => {
            let a: f64 = enterprises
                .iter()
                .flat_map(|id| revenue(id, &q4, av))
                .filter(|(c, _)| c.is_core())
                .map(|x| x.1)
                .sum();
            let p: f64 = enterprises
                .iter()
                .flat_map(|id| revenue(id, &q8, av))
                .filter(|(c, _)| c.is_core())
                .map(|x| x.1)
                .sum();
            if p <= 0.0 {
                return None;
            }
            a / p - 1.0
        }
        ApplicationScenariosLive => scen_ids.iter().filter(|id| live(id)).count() as f64,
        ApplicationScenariosLaunched => scen_ids.iter().filter(|id| launched(id)).count() as f64,
        ApplicationScenariosLiveByField => scen_ids
            .iter()
            .filter(|id| live(id) && field_tag(id) == tag)
            .count() as f64,
        ScenarioFieldsCovered => Field::ALL
            .iter()
            .filter(|f| {
                scen_ids
                    .iter()
                    .any(|id| live(id) && field_tag(id) == f.index() as u8)
            })
            .count() as f64,
        DataZonesOperational => {
            proj_count(&|k, _, s| k == ProjectKind::DataZone && s == ProjectStage::Delivered)
        }
        BenchmarkProjectsDelivered => proj_count(&|k, _, s| {
            k == ProjectKind::BenchmarkProject && s == ProjectStage::Delivered
        }),
        // In the four key regions: the latest stage event's region is not `other`.
        DemonstrationProjectsUnderway => proj_count(&|k, r, s| {
            k == ProjectKind::DemonstrationProject
                && r != Region::Other
                && matches!(s, ProjectStage::Underway | ProjectStage::Delivered)
        }),
        DemonstrationProjectsUnderwayByRegion => proj_count(&|k, r, s| {
            k == ProjectKind::DemonstrationProject
                && r.index() as u8 == tag
                && matches!(s, ProjectStage::Underway | ProjectStage::Delivered)
        }),
        PlatformAvailability => {
            let beats: Vec<(f64, bool)> = before
                .iter()
                .filter(day_window)
                .filter_map(|e| match &e.body {
                    Body::Heartbeat {
                        kind,
                        status,
                        interval_s,
                        ..
                    } if kind.index() as u8 == tag => {
                        Some((*interval_s, *status != PlatformStatus::Down))
                    }
                    _ => None,
                })
                .collect();
            let total: f64 = beats.iter().map(|b| b.0).sum();
            if total <= 0.0 {
                return None;
            }
            beats.iter().filter(|b| b.1).map(|b| b.0).sum::<f64>() / total
        }
        PlatformApiCalls => before
            .iter()
            .filter(day_window)
            .filter_map(|e| match &e.body {
                Body::PlatformUsage {
                    kind, api_calls, ..
                } if kind.index() as u8 == tag => Some(*api_calls as f64),
                _ => None,
            })
            .sum(),
        PlatformRecordsShared => before
            .iter()
            .filter(day_window)
            .filter_map(|e| match &e.body {
                Body::PlatformUsage {
                    kind,
                    records_shared,
                    ..
                } if kind.index() as u8 == tag => Some(*records_shared as f64),
                _ => None,
            })
            .sum(),
        PlatformConnectedEnterprises => {
            let platforms: BTreeSet<&str> = before
                .iter()
                .filter(|e| matches!(e.body, Body::PlatformUsage { .. }))
                .map(|e| e.body.entity().as_str())
                .collect();
            platforms
                .iter()
                .filter_map(|p| {
                    latest(before.iter().copied().filter(|e| matches!(&e.body, Body::PlatformUsage { platform, .. } if platform == p)))
                })
                .filter_map(|e| match &e.body {
                    Body::PlatformUsage { kind, connected_enterprises, .. } if kind.index() as u8 == tag => {
                        Some(*connected_enterprises as f64)
                    }
                    _ => None,
                })
                .sum()
        }
        ScenarioActiveUsers | ScenarioTransactions | ScenarioValueCny => scen_ids
            .iter()
            .filter(|id| field_tag(id) == tag)
            .flat_map(|id| usage_in_week(id))
            .map(|(u, x, v)| match ind {
                ScenarioActiveUsers => u,
                ScenarioTransactions => x,
                _ => v,
            })
            .sum(),
        ScenariosIdle => scen_ids
            .iter()
            .filter(|id| live(id) && usage_in_week(id).is_empty())
            .count() as f64,
    })
}

fn tags(ind: Indicator) -> Vec<u8> {
    let kind = ind.tag_kind();
    if kind.key().is_none() {
        return vec![NO_TAG];
    }
    (0u8..=9).filter(|t| kind.value(*t).is_some()).collect()
}

fn pace(
    plan: &PlanSpec,
    value: f64,
    t: Nanos,
    series: &BTreeMap<Nanos, Option<f64>>,
    cadence: Nanos,
) -> Fields {
    let secs = |d: Nanos| d as f64 / 1e9;
    let (expected, ratio, projected) = match plan.kind {
        PlanKind::Threshold => (plan.target, Some(value / plan.target), None),
        PlanKind::Cumulative => {
            let start_tick = series.keys().copied().find(|k| *k >= plan.start);
            let b = start_tick
                .filter(|k| *k - plan.start < cadence)
                .and_then(|k| series[&k])
                .unwrap_or(0.0);
            let frac = (secs(t - plan.start) / secs(plan.deadline - plan.start)).min(1.0);
            let e = b + (plan.target - b) * frac;
            let r = if e == b {
                None
            } else {
                Some((value - b) / (e - b))
            };
            let p = if t >= plan.deadline {
                Some(value)
            } else if t - 90 * DAY < plan.start {
                None
            } else {
                series
                    .range(..=t - 90 * DAY)
                    .next_back()
                    .and_then(|(_, v)| *v)
                    .map(|v90| value + (value - v90) * secs(plan.deadline - t) / (90.0 * 86_400.0))
            };
            (e, r, p)
        }
    };
    let status = if value >= plan.target {
        Status::Met
    } else if ratio.is_none_or(|r| r >= 1.0) {
        Status::OnTrack
    } else if ratio.is_some_and(|r| r >= plan.tolerance) {
        Status::AtRisk
    } else {
        Status::Behind
    };
    Fields {
        value,
        target: Some(plan.target),
        expected: Some(expected),
        pace_ratio: ratio,
        projected,
        status: Some(status),
    }
}

/// The events of `stream`, and the earliest `occurred_at` among them (none without any).
fn of_stream(events: &[Event], stream: paceline_model::Stream) -> Option<(Vec<Event>, Nanos)> {
    let of: Vec<Event> = events
        .iter()
        .filter(|e| e.body.stream() == stream)
        .cloned()
        .collect();
    let min = of.iter().map(|e| e.at).min()?;
    Some((of, min))
}

/// Every series at every tick for the accepted `events`, with replay's tick rules: a
/// stream's ticks run from the first tick after its earliest event to the first tick after
/// the greatest `occurred_at` of any stream. Points are written at every tick with a value.
pub fn run(config: &Config, events: &[Event]) -> Points {
    let lag = config.filing_lag();
    let plans = config.plan_specs();
    let mut out = Points::new();
    let Some(global_max) = events.iter().map(|e| e.at).max() else {
        return out;
    };
    for ind in Indicator::ALL {
        let Some((stream_events, min)) = of_stream(events, ind.stream()) else {
            continue;
        };
        let cadence = config.cadence(*ind);
        let (first, last) = (tick_after(min, cadence), tick_after(global_max, cadence));
        for tag in tags(*ind) {
            let key = SeriesKey {
                indicator: *ind,
                tag,
            };
            let plan = plans.iter().find(|p| p.series == key);
            let mut values: BTreeMap<Nanos, Option<f64>> = BTreeMap::new();
            let mut t = first;
            while t <= last {
                let v = value_at(*ind, tag, t, &stream_events, lag);
                values.insert(t, v);
                if let Some(v) = v {
                    let f = match plan {
                        Some(p) if t >= p.start => pace(p, v, t, &values, cadence),
                        _ => Fields::value(v),
                    };
                    out.entry(key).or_default().insert(t, f);
                }
                t += cadence;
            }
        }
    }
    out
}

/// The plan verdicts for the accepted `events`, with replay's tick rules: a planned series
/// is judged at the first tick of its cadence at or after its deadline plus its data lag
/// (the filing lag for the four indicators computed from financials), once that tick is
/// one of the series' closed ticks; met when its value there is at least the target
/// (relative 1e-9), missed otherwise and without a value.
pub fn verdicts(config: &Config, events: &[Event]) -> Verdicts {
    let mut out = Verdicts::new();
    let Some(global_max) = events.iter().map(|e| e.at).max() else {
        return out;
    };
    for plan in config.plan_specs() {
        let ind = plan.series.indicator;
        let financial = matches!(
            ind,
            Indicator::CoreIndustryRevenueCny
                | Indicator::ClusterRevenueCny
                | Indicator::DigitalEconomyAddedValueCny
                | Indicator::DigitalEconomyAddedValueGrowth
        );
        let data_lag = if financial { config.filing_lag() } else { 0 };
        let cadence = config.cadence(ind);
        let judged_from = plan.deadline + data_lag;
        // The first tick at or after: ticks are tick_after's grid.
        let tick = tick_after(judged_from - 1, cadence);
        let Some((stream_events, min)) = of_stream(events, ind.stream()) else {
            continue;
        };
        if tick < tick_after(min, cadence) || tick > tick_after(global_max, cadence) {
            continue;
        }
        let value = value_at(
            ind,
            plan.series.tag,
            tick,
            &stream_events,
            config.filing_lag(),
        );
        let met = value.is_some_and(|v| v >= plan.target - 1e-9 * plan.target.abs());
        let verdict = if met { Verdict::Met } else { Verdict::Missed };
        out.insert(plan.series, (tick, value, plan.target, verdict));
    }
    out
}
