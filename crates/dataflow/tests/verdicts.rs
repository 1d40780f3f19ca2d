//! Plan verdicts with hand-worked expectations (docs/indicators.md, "Verdicts"): a revenue
//! goal judged on calendar 2024 at 2025-02-15, a late filing that flips the verdict and
//! rewrites only the verdict point and the indicator's own ticks, a series with no value
//! at its verdict tick, a plan edit before and after the verdict tick, and the verdict
//! kept across a checkpoint.

use paceline_dataflow::entities::Entities;
use paceline_dataflow::series::Group;
use paceline_model::config::{Config, PlanKind, PlanSpec};
use paceline_model::event::{Cluster, Region};
use paceline_model::point::{Point, Verdict};
use paceline_model::time::{parse_rfc3339, DAY};
use paceline_model::{Body, Event, Indicator, Nanos, SeriesKey};

fn t(s: &str) -> Nanos {
    parse_rfc3339(s).expect("an RFC 3339 timestamp")
}

/// One group's entities and series, fed events and closed by hand.
struct Run {
    config: Config,
    group: Group,
    entities: Entities,
    earliest: Option<Nanos>,
}

impl Run {
    /// A run of `series`' group under `config`'s plan.
    fn new(config: Config, series: SeriesKey) -> Run {
        let group = series.indicator.group();
        let plans = plans_of(&config, group);
        Run {
            group: Group::new(group, config.cadence(group), 400 * DAY, plans),
            entities: {
                let mut e = Entities::new(config.filing_lag());
                e.use_ticks(|i| config.cadence(i));
                e
            },
            config,
            earliest: None,
        }
    }

    fn feed(&mut self, events: &[Event]) {
        for e in events {
            let mut deltas = Vec::new();
            self.entities.apply(e.clone());
            self.entities.drain_into(&mut deltas);
            for d in &deltas {
                if d.slot.group == self.group_indicator() {
                    self.group.apply(d);
                }
            }
            let earliest = self.earliest.map_or(e.at, |m| m.min(e.at));
            self.earliest = Some(earliest);
            self.group.set_earliest(earliest);
        }
    }

    fn group_indicator(&self) -> Indicator {
        self.config.plan_specs()[0].series.indicator.group()
    }

    /// Closes every tick up to `through`; the points written.
    fn close(&mut self, through: &str) -> Vec<Point> {
        let mut out = Vec::new();
        self.group.close(t(through), &mut out);
        out
    }
}

fn plans_of(config: &Config, group: Indicator) -> Vec<PlanSpec> {
    config
        .plan_specs()
        .into_iter()
        .filter(|p| p.series.indicator.group() == group)
        .collect()
}

/// A configuration whose plan is the one item given.
fn plan(series: &str, kind: PlanKind, target: f64, start: &str, deadline: &str) -> Config {
    let mut c = Config::default();
    c.plan.items.retain(|i| i.series == series);
    let item = &mut c.plan.items[0];
    item.kind = kind;
    item.target = target;
    item.start = start.into();
    item.deadline = deadline.into();
    assert!(c.validate().is_empty());
    c
}

fn ev(id: &str, at: &str, body: Body) -> Event {
    Event {
        id: id.into(),
        at: t(at),
        body,
    }
}

fn registered(id: &str, at: &str, e: &str) -> Event {
    ev(
        id,
        at,
        Body::Registered {
            enterprise: e.into(),
            cluster: Cluster::Cybersecurity,
            region: Region::Other,
            sme: false,
        },
    )
}

/// A filing of quarter `q` (1..=4) of `year`.
fn filing(id: &str, at: &str, e: &str, year: i32, q: i32, revenue: f64, revision: u64) -> Event {
    ev(
        id,
        at,
        Body::Financials {
            enterprise: e.into(),
            period: year * 4 + (q - 1),
            revenue_cny: revenue,
            added_value_cny: revenue / 2.0,
            revision,
        },
    )
}

fn verdicts(points: &[Point]) -> Vec<&Point> {
    points.iter().filter(|p| p.verdict.is_some()).collect()
}

fn revenue_run() -> (Run, SeriesKey) {
    let series = SeriesKey::plain(Indicator::CoreIndustryRevenueCny);
    let config = plan(
        "core_industry_revenue_cny",
        PlanKind::Cumulative,
        1500.0,
        "2022-01-01T00:00:00+08:00",
        "2025-01-01T00:00:00+08:00",
    );
    let mut run = Run::new(config, series);
    // 2023-Q4: 1000; each quarter of 2024: 300, Q4 filed on 2025-01-20.
    run.feed(&[
        registered("r", "2023-06-01T10:00:00+08:00", "E1"),
        filing("f0", "2024-01-20T10:00:00+08:00", "E1", 2023, 4, 1000.0, 0),
        filing("f1", "2024-04-20T10:00:00+08:00", "E1", 2024, 1, 300.0, 0),
        filing("f2", "2024-07-20T10:00:00+08:00", "E1", 2024, 2, 300.0, 0),
        filing("f3", "2024-10-20T10:00:00+08:00", "E1", 2024, 3, 300.0, 0),
        filing("f4", "2025-01-20T10:00:00+08:00", "E1", 2024, 4, 300.0, 0),
    ]);
    (run, series)
}

#[test]
fn a_revenue_goal_is_judged_on_calendar_2024_at_2025_02_15() {
    let (mut run, series) = revenue_run();
    let plan = &run.config.plan_specs()[0];
    assert_eq!(plan.verdict_tick, t("2025-02-15T00:00:00+08:00"));
    let points = run.close("2025-02-14T12:00:00+08:00");
    assert!(verdicts(&points).is_empty(), "no verdict before its tick");
    // At the deadline the four quarters are 2023-Q4..2024-Q3: 1000 + 3 x 300 = 1900, met
    // by the rolling status; the goal is judged on 2024 alone: 4 x 300 = 1200.
    let at_deadline = points
        .iter()
        .find(|p| p.series == series && p.tick == t("2025-01-01T00:00:00+08:00"))
        .expect("the deadline tick is written");
    assert_eq!(at_deadline.fields.value, 1900.0);
    let points = run.close("2025-03-01T00:00:00+08:00");
    let v = verdicts(&points);
    assert_eq!(v.len(), 1, "one verdict point");
    let v = v[0];
    assert_eq!((v.series, v.tick), (series, t("2025-02-15T00:00:00+08:00")));
    let f = v.verdict.unwrap();
    assert_eq!(
        (f.value, f.target, f.verdict),
        (Some(1200.0), 1500.0, Verdict::Missed)
    );
    assert!(!v.correction);
    // Closing further writes no other verdict.
    assert!(verdicts(&run.close("2025-06-01T00:00:00+08:00")).is_empty());
}

#[test]
fn a_late_filing_that_flips_the_verdict_rewrites_the_verdict_point_and_the_ticks_it_touches() {
    let (mut run, series) = revenue_run();
    run.close("2025-03-01T00:00:00+08:00");
    // Q4 amended to 600 (revision 1), filed 2025-02-01 but read only now: 2024 sums 1500.
    run.feed(&[filing(
        "f4b",
        "2025-02-01T10:00:00+08:00",
        "E1",
        2024,
        4,
        600.0,
        1,
    )]);
    let points = run.close("2025-03-01T00:00:00+08:00");
    let v = verdicts(&points);
    assert_eq!(v.len(), 1, "the verdict point is rewritten once: {v:?}");
    let f = v[0].verdict.unwrap();
    assert_eq!((f.value, f.verdict), (Some(1500.0), Verdict::Met));
    assert!(v[0].correction);
    assert_eq!(v[0].tick, t("2025-02-15T00:00:00+08:00"));
    // Besides it, only the indicator's own ticks from the filing's next tick on, with the
    // amended sum: from 2025-02-02 (Q4 counts once 45 days passed: from 2025-02-15).
    let others: Vec<&Point> = points.iter().filter(|p| p.verdict.is_none()).collect();
    assert!(!others.is_empty());
    for p in &others {
        assert_eq!(p.series, series);
        assert!(p.correction);
        assert!(p.tick >= t("2025-02-15T00:00:00+08:00"), "{p:?}");
        assert_eq!(p.fields.value, 1500.0);
    }
    // A late filing that leaves the value at the verdict tick as it was writes no verdict.
    run.feed(&[filing(
        "f0b",
        "2025-02-20T10:00:00+08:00",
        "E1",
        2023,
        4,
        999.0,
        1,
    )]);
    let points = run.close("2025-03-01T00:00:00+08:00");
    assert!(verdicts(&points).is_empty(), "{points:?}");
}

#[test]
fn a_series_with_no_value_at_its_verdict_tick_is_missed() {
    let series = SeriesKey::plain(Indicator::DigitalEconomyAddedValueGrowth);
    let config = plan(
        "digital_economy_added_value_growth",
        PlanKind::Threshold,
        0.08,
        "2025-01-01T00:00:00+08:00",
        "2026-01-01T00:00:00+08:00",
    );
    let mut run = Run::new(config, series);
    // Added value in 2025 only: P (2024) is 0, so growth has no value at 2026-02-15.
    run.feed(&[
        registered("r", "2024-06-01T10:00:00+08:00", "E1"),
        filing("a1", "2025-04-20T10:00:00+08:00", "E1", 2025, 1, 100.0, 0),
        filing("a4", "2026-01-20T10:00:00+08:00", "E1", 2025, 4, 100.0, 0),
    ]);
    let points = run.close("2026-03-01T00:00:00+08:00");
    let v = verdicts(&points);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].tick, t("2026-02-15T00:00:00+08:00"));
    let f = v[0].verdict.unwrap();
    assert_eq!(
        (f.value, f.target, f.verdict),
        (None, 0.08, Verdict::Missed)
    );
    assert!(
        !points
            .iter()
            .any(|p| p.series == series && p.verdict.is_none()),
        "growth has no point without P"
    );
}

/// A count planned with target 2 and deadline 2024-06-01 (verdict tick the same day: the
/// data lag of counts is 0); two enterprises registered before it, one after.
fn count_run(target: f64) -> Run {
    let series = SeriesKey::plain(Indicator::QuasiUnicorns);
    let config = plan(
        "quasi_unicorns",
        PlanKind::Cumulative,
        target,
        "2024-01-01T00:00:00+08:00",
        "2024-06-01T00:00:00+08:00",
    );
    let mut run = Run::new(config, series);
    let valued = |id: &str, at: &str, e: &str| {
        ev(
            id,
            at,
            Body::Valuation {
                enterprise: e.into(),
                valuation_cny: 2e9,
            },
        )
    };
    run.feed(&[
        registered("r1", "2024-02-01T10:00:00+08:00", "E1"),
        valued("v1", "2024-02-02T10:00:00+08:00", "E1"),
        registered("r2", "2024-03-01T10:00:00+08:00", "E2"),
        valued("v2", "2024-03-02T10:00:00+08:00", "E2"),
        registered("r3", "2024-06-10T10:00:00+08:00", "E3"),
        valued("v3", "2024-06-11T10:00:00+08:00", "E3"),
    ]);
    run
}

fn edit_target(run: &mut Run, target: f64) {
    run.config.plan.items[0].target = target;
    let plans = plans_of(&run.config, Indicator::QuasiUnicorns);
    run.group.restore_plans(plans);
}

#[test]
fn a_plan_edit_applies_to_verdicts_not_yet_written() {
    // Before the verdict tick: target 2 becomes 3, and the goal (2 at the deadline) is missed.
    let mut run = count_run(2.0);
    assert!(verdicts(&run.close("2024-05-01T00:00:00+08:00")).is_empty());
    edit_target(&mut run, 3.0);
    let v = run.close("2024-07-01T00:00:00+08:00");
    let v = verdicts(&v);
    assert_eq!(v.len(), 1);
    let f = v[0].verdict.unwrap();
    assert_eq!(v[0].tick, t("2024-06-01T00:00:00+08:00"));
    assert_eq!(
        (f.value, f.target, f.verdict),
        (Some(2.0), 3.0, Verdict::Missed)
    );

    // After it: the verdict written (met against 2) stands; nothing is rewritten.
    let mut run = count_run(2.0);
    let v = run.close("2024-07-01T00:00:00+08:00");
    let f = verdicts(&v)[0].verdict.unwrap();
    assert_eq!((f.target, f.verdict), (2.0, Verdict::Met));
    edit_target(&mut run, 3.0);
    assert!(verdicts(&run.close("2024-08-01T00:00:00+08:00")).is_empty());
}

#[test]
fn a_verdict_written_is_kept_across_a_checkpoint() {
    let mut run = count_run(2.0);
    run.close("2024-07-01T00:00:00+08:00");
    let bytes = bincode::serialize(&run.group).expect("serializes");
    let mut restored: Group = bincode::deserialize(&bytes).expect("deserializes");
    restored.restore_plans(plans_of(&run.config, Indicator::QuasiUnicorns));
    run.group = restored;
    // A late registration before the deadline changes the value there: 3, still met; the
    // verdict is rewritten with the value, once.
    run.feed(&[
        registered("r4", "2024-05-01T10:00:00+08:00", "E4"),
        ev(
            "v4",
            "2024-05-02T10:00:00+08:00",
            Body::Valuation {
                enterprise: "E4".into(),
                valuation_cny: 2e9,
            },
        ),
    ]);
    let points = run.close("2024-07-01T00:00:00+08:00");
    let v = verdicts(&points);
    assert_eq!(v.len(), 1, "{v:?}");
    let f = v[0].verdict.unwrap();
    assert_eq!((f.value, f.verdict), (Some(3.0), Verdict::Met));
    assert!(v[0].correction);
}
