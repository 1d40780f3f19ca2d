//! Per-indicator tests with hand-worked expectations: tick boundaries, quarter boundaries in
//! UTC+08:00 with the filing lag, offsets, ties, amendments, revocations, deregistration,
//! events before registration.

use std::collections::BTreeMap;

use paceline_dataflow::entities::Entities;
use paceline_dataflow::series::Group;
use paceline_model::config::Config;
use paceline_model::event::{Cluster, Field, Region, ScenarioStage};
use paceline_model::point::Point;
use paceline_model::time::{parse_rfc3339, tick_after, DAY};
use paceline_model::{Body, Event, Indicator, Nanos, SeriesKey};

fn t(s: &str) -> Nanos {
    parse_rfc3339(s).expect("an RFC 3339 timestamp")
}

fn ev(id: &str, at: &str, body: Body) -> Event {
    Event {
        id: id.into(),
        at: t(at),
        body,
    }
}

/// Runs `events` (in the given order) through the entity and series logic of one group;
/// returns the series' in-force value at each tick asked.
fn values(events: &[Event], series: SeriesKey, ticks: &[&str]) -> Vec<Option<f64>> {
    run(events, series, ticks).0
}

/// [`values`], with the corrections left unwritten because a value became undefined.
fn run(events: &[Event], series: SeriesKey, ticks: &[&str]) -> (Vec<Option<f64>>, u64) {
    let config = Config::default();
    let group = series.indicator.group();
    let cadence = config.cadence(group);
    let plans = config
        .plan_specs()
        .into_iter()
        .filter(|p| p.series.indicator.group() == group)
        .collect();
    let mut g = Group::new(group, cadence, 400 * DAY, plans);
    let mut entities = Entities::new(config.filing_lag());
    let mut points: Vec<Point> = Vec::new();
    let min = events.iter().map(|e| e.at).min().expect("some events");
    let max = events.iter().map(|e| e.at).max().expect("some events");
    let end = ticks
        .iter()
        .map(|s| t(s))
        .max()
        .expect("some ticks asked")
        .max(tick_after(max, cadence));
    // Close as we go (so that late events cause corrections), then to the end.
    let mut unrepresentable = 0;
    for e in events {
        let mut deltas = Vec::new();
        let at = e.at;
        entities.apply(e.clone());
        entities.drain_into(&mut deltas);
        for d in deltas.iter().filter(|d| d.slot.group == group) {
            g.apply(d);
        }
        g.set_earliest(min);
        unrepresentable += g.close(at, &mut points).unrepresentable;
    }
    unrepresentable += g.close(end, &mut points).unrepresentable;
    let mut written: BTreeMap<Nanos, f64> = BTreeMap::new();
    for p in points.iter().filter(|p| p.series == series) {
        written.insert(p.tick, p.fields.value);
    }
    let values = ticks
        .iter()
        .map(|s| {
            written
                .range(..=t(s))
                .next_back()
                .map(|(_, v)| *v)
                .or_else(|| series.indicator.zero_default().then_some(0.0))
        })
        .collect();
    (values, unrepresentable)
}

fn reg(id: &str, at: &str, e: &str, cluster: Cluster, sme: bool) -> Event {
    ev(
        id,
        at,
        Body::Registered {
            enterprise: e.into(),
            cluster,
            region: Region::Other,
            sme,
        },
    )
}

#[test]
fn registration_counts_from_the_next_tick_and_not_at_an_exact_tick() {
    let events = [
        reg(
            "a",
            "2022-03-14T09:30:00+08:00",
            "E1",
            Cluster::Cybersecurity,
            true,
        ),
        // Exactly at a tick (2022-03-20T00:00+08:00, given as 16:00Z): not in that tick.
        reg(
            "b",
            "2022-03-19T16:00:00Z",
            "E2",
            Cluster::Cybersecurity,
            false,
        ),
    ];
    let key = SeriesKey::tagged(
        Indicator::ClusterEnterprises,
        Cluster::Cybersecurity.index() as u8,
    );
    let v = values(
        &events,
        key,
        &[
            "2022-03-14T00:00:00+08:00",
            "2022-03-15T00:00:00+08:00",
            "2022-03-20T00:00:00+08:00",
            "2022-03-21T00:00:00+08:00",
        ],
    );
    assert_eq!(v, vec![Some(0.0), Some(1.0), Some(1.0), Some(2.0)]);
}

#[test]
fn deregistration_at_the_last_nanosecond_and_reregistration() {
    let events = [
        reg(
            "a",
            "2022-03-14T09:30:00+08:00",
            "E1",
            Cluster::Metaverse,
            true,
        ),
        ev(
            "b",
            "2024-12-31T23:59:59.999999999+08:00",
            Body::Deregistered {
                enterprise: "E1".into(),
            },
        ),
        reg(
            "c",
            "2025-01-10T12:00:00-05:00",
            "E1",
            Cluster::Metaverse,
            true,
        ),
    ];
    let key = SeriesKey::tagged(
        Indicator::ClusterEnterprises,
        Cluster::Metaverse.index() as u8,
    );
    let v = values(
        &events,
        key,
        &[
            "2024-12-31T00:00:00+08:00",
            "2025-01-01T00:00:00+08:00",
            "2025-01-11T00:00:00+08:00",
            "2025-01-12T00:00:00+08:00",
        ],
    );
    // 2025-01-10T12:00-05:00 is 2025-01-11T01:00+08:00: counted from 2025-01-12.
    assert_eq!(v, vec![Some(1.0), Some(0.0), Some(0.0), Some(1.0)]);
}

#[test]
fn quasi_unicorn_valuation_before_registration_and_ties() {
    let events = [
        ev(
            "v1",
            "2022-05-01T10:00:00+08:00",
            Body::Valuation {
                enterprise: "E1".into(),
                valuation_cny: 2e9,
            },
        ),
        reg(
            "r",
            "2022-06-01T10:00:00+08:00",
            "E1",
            Cluster::Blockchain,
            false,
        ),
        // Two valuations at the same instant: the greater event_id wins.
        ev(
            "v3",
            "2022-07-01T10:00:00+08:00",
            Body::Valuation {
                enterprise: "E1".into(),
                valuation_cny: 5e8,
            },
        ),
        ev(
            "v2",
            "2022-07-01T10:00:00+08:00",
            Body::Valuation {
                enterprise: "E1".into(),
                valuation_cny: 3e9,
            },
        ),
        ev(
            "v4",
            "2022-08-01T10:00:00+08:00",
            Body::Valuation {
                enterprise: "E1".into(),
                valuation_cny: 1e9,
            },
        ),
    ];
    let v = values(
        &events,
        SeriesKey::plain(Indicator::QuasiUnicorns),
        &[
            "2022-06-01T00:00:00+08:00",
            "2022-06-02T00:00:00+08:00",
            "2022-07-02T00:00:00+08:00",
            "2022-08-02T00:00:00+08:00",
        ],
    );
    assert_eq!(v, vec![Some(0.0), Some(1.0), Some(0.0), Some(1.0)]);
}

#[test]
fn srdi_revocation() {
    let events = [
        reg(
            "r",
            "2022-01-05T00:00:00+08:00",
            "E1",
            Cluster::Blockchain,
            false,
        ),
        ev(
            "g",
            "2022-02-01T10:00:00+08:00",
            Body::Certification {
                enterprise: "E1".into(),
                granted: true,
            },
        ),
        ev(
            "x",
            "2022-03-01T10:00:00+08:00",
            Body::Certification {
                enterprise: "E1".into(),
                granted: false,
            },
        ),
    ];
    let v = values(
        &events,
        SeriesKey::plain(Indicator::SrdiEnterprises),
        &[
            "2022-02-01T00:00:00+08:00",
            "2022-02-02T00:00:00+08:00",
            "2022-03-02T00:00:00+08:00",
        ],
    );
    assert_eq!(v, vec![Some(0.0), Some(1.0), Some(0.0)]);
}

/// E1's financials of quarter `period`.
fn filing(id: &str, at: &str, period: i32, revenue: f64, added: f64, revision: u64) -> Event {
    ev(
        id,
        at,
        Body::Financials {
            enterprise: "E1".into(),
            period,
            revenue_cny: revenue,
            added_value_cny: added,
            revision,
        },
    )
}

fn fin(id: &str, at: &str, period: i32, revenue: f64, revision: u64) -> Event {
    filing(id, at, period, revenue, revenue / 10.0, revision)
}

/// Growth A / P − 1 is written at the tick 2023-05-16 (2023-Q1 counts from there, with its
/// 45-day filing lag) as 20 / 10 − 1 = 1, and stays in force (no point while unchanged). A
/// late amendment (occurred 2023-05-15, arriving after ticks through 2023-06-01 were
/// closed) turns P, 2022-Q1's added value, negative: growth has no value from 2023-05-16 on,
/// which the point written there cannot say. It is left as it was and counted once
/// (docs/outputs.md, "Corrections"); the ticks after it held no point, as in an in-order run.
#[test]
fn a_correction_to_an_undefined_growth_leaves_the_points_and_is_counted() {
    let q = |y: i32, n: i32| y * 4 + n - 1;
    let events = [
        reg(
            "r",
            "2021-01-05T00:00:00+08:00",
            "E1",
            Cluster::Cybersecurity,
            false,
        ),
        filing("p", "2022-04-20T08:00:00+08:00", q(2022, 1), 100.0, 10.0, 0),
        filing("a", "2023-04-20T08:00:00+08:00", q(2023, 1), 100.0, 20.0, 0),
        // Moves time on: ticks through 2023-06-01 are written.
        reg(
            "later",
            "2023-06-01T00:00:00+08:00",
            "E2",
            Cluster::Metaverse,
            false,
        ),
        filing(
            "amend",
            "2023-05-15T08:00:00+08:00",
            q(2022, 1),
            100.0,
            -10.0,
            1,
        ),
    ];
    let key = SeriesKey::plain(Indicator::DigitalEconomyAddedValueGrowth);
    let (v, unrepresentable) = run(
        &events,
        key,
        &[
            "2023-05-15T00:00:00+08:00",
            "2023-05-16T00:00:00+08:00",
            "2023-05-19T00:00:00+08:00",
            "2023-06-01T00:00:00+08:00",
        ],
    );
    assert_eq!(v, vec![None, Some(1.0), Some(1.0), Some(1.0)]);
    assert_eq!(unrepresentable, 1);
}

#[test]
fn quarters_with_the_filing_lag_and_amendments() {
    let q = |y: i32, n: i32| y * 4 + n - 1;
    let events = [
        reg(
            "r",
            "2022-01-05T00:00:00+08:00",
            "E1",
            Cluster::Cybersecurity,
            false,
        ),
        fin(
            "f1",
            "2023-04-20T08:00:00+08:00",
            q(2023, 1),
            48_000_000.5,
            0,
        ),
        // The amendment arrives first here; revision 1 wins whatever the order.
        fin(
            "f0",
            "2023-05-28T08:00:00+08:00",
            q(2023, 1),
            51_000_000.0,
            1,
        ),
        fin("f2", "2023-02-10T08:00:00+08:00", q(2022, 4), 10.0, 0),
    ];
    let key = SeriesKey::plain(Indicator::CoreIndustryRevenueCny);
    // 2023-Q1 ends 2023-04-01T00:00+08:00; with a 45-day lag it counts from the tick
    // 2023-05-16T00:00+08:00 (T − 45 d = 2023-04-01), not at 2023-05-15.
    let v = values(
        &events,
        key,
        &[
            "2023-05-15T00:00:00+08:00",
            "2023-05-16T00:00:00+08:00",
            "2023-05-28T00:00:00+08:00",
            "2023-05-29T00:00:00+08:00",
            // 2023-Q1 leaves the window when 2024-Q1 enters: 2024-05-16.
            "2024-05-15T00:00:00+08:00",
            "2024-05-16T00:00:00+08:00",
        ],
    );
    assert_eq!(
        v,
        vec![
            Some(10.0),
            Some(48_000_010.5),
            Some(48_000_010.5),
            Some(51_000_000.0 + 10.0),
            Some(51_000_000.0),
            Some(0.0)
        ]
    );
}

#[test]
fn scenario_usage_refiles_the_window_on_a_field_change_and_idle() {
    let stage = |id: &str, at: &str, field: Field, stage: ScenarioStage| {
        ev(
            id,
            at,
            Body::ScenarioStage {
                scenario: "S1".into(),
                field,
                region: Region::Other,
                stage,
            },
        )
    };
    let usage = |id: &str, at: &str, users: u64| {
        ev(
            id,
            at,
            Body::ScenarioUsage {
                scenario: "S1".into(),
                active_users: users,
                transactions: 0,
                value_cny: 0.0,
            },
        )
    };
    let events = [
        usage("u0", "2024-03-01T10:00:00+08:00", 5), // before any stage: unassigned
        stage(
            "s1",
            "2024-03-02T10:00:00+08:00",
            Field::DigitalFinance,
            ScenarioStage::Live,
        ),
        usage("u1", "2024-03-03T10:00:00+08:00", 7),
        stage(
            "s2",
            "2024-03-04T10:00:00+08:00",
            Field::SmartBuildings,
            ScenarioStage::Live,
        ),
    ];
    let finance = SeriesKey::tagged(
        Indicator::ScenarioActiveUsers,
        Field::DigitalFinance.index() as u8,
    );
    let smart = SeriesKey::tagged(
        Indicator::ScenarioActiveUsers,
        Field::SmartBuildings.index() as u8,
    );
    let unassigned = SeriesKey::tagged(Indicator::ScenarioActiveUsers, 8);
    let ticks = [
        "2024-03-02T10:00:00+08:00",
        "2024-03-03T11:00:00+08:00",
        "2024-03-04T11:00:00+08:00",
        "2024-03-08T11:00:00+08:00",
        "2024-03-10T11:00:00+08:00",
    ];
    assert_eq!(
        values(&events, unassigned, &ticks),
        vec![Some(5.0), Some(0.0), Some(0.0), Some(0.0), Some(0.0)]
    );
    assert_eq!(
        values(&events, finance, &ticks),
        vec![Some(0.0), Some(12.0), Some(0.0), Some(0.0), Some(0.0)]
    );
    // The whole window moves to the new field; u0 leaves it after 7 days (2024-03-08T10:00).
    assert_eq!(
        values(&events, smart, &ticks),
        vec![Some(0.0), Some(0.0), Some(12.0), Some(7.0), Some(0.0)]
    );
    // Idle: live since 03-02, usage covers until 03-10T10:00 (u1 + 7 d).
    let idle = SeriesKey::plain(Indicator::ScenariosIdle);
    assert_eq!(
        values(&events, idle, &ticks),
        vec![Some(0.0), Some(0.0), Some(0.0), Some(0.0), Some(1.0)]
    );
}
