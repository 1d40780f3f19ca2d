//! Per-entity state: how each enterprise, scenario, project and platform contributes to
//! the indicator slots over time (indicators.md, "Shared definitions" and "Catalogue").
//!
//! Each entity keeps its events; when they change, its contribution intervals are
//! recomputed and the difference leaves as deltas. Windowed sums (heartbeats, usage) are
//! linear and leave as deltas directly. Everything here depends only on the set of events,
//! never on their arrival order.

use std::collections::{BTreeMap, HashMap};

use paceline_model::catalogue::{Part, Slot, NO_TAG, UNASSIGNED_FIELD};
use paceline_model::event::{
    PlatformKind, PlatformStatus, ProjectKind, ProjectStage, ScenarioStage,
};
use paceline_model::time::{last_quarter_ended_by, quarter_end, QuarterIndex, DAY, HOUR};
use paceline_model::{Body, Event, Indicator, Nanos};

use crate::intervals::{diff, Delta, Interval, Netting, Sweep, OPEN};

/// Valuation from which an enterprise is a quasi-unicorn, CNY.
pub const QUASI_UNICORN_CNY: f64 = 1_000_000_000.0;
const TELEMETRY_WINDOW: Nanos = 24 * HOUR;
const USAGE_WINDOW: Nanos = 7 * DAY;

fn slot(ind: Indicator, tag: u8) -> Slot {
    Slot::value(ind, tag)
}

fn insert_sorted(events: &mut Vec<Event>, e: Event) {
    let pos = events.partition_point(|x| (x.at, x.id.as_str()) < (e.at, e.id.as_str()));
    events.insert(pos, e);
}

/// Intervals of one enterprise, from its events sorted by (`occurred_at`, `event_id`).
pub fn enterprise_intervals(events: &[Event], filing_lag: Nanos) -> Vec<Interval> {
    let mut breakpoints: Vec<Nanos> = events.iter().map(|e| e.at).collect();
    for e in events {
        if let Body::Financials { period, .. } = e.body {
            for k in [0, 4, 8] {
                breakpoints.push((quarter_end(period + k) + filing_lag).saturating_sub(1));
            }
        }
    }
    breakpoints.sort_unstable();
    breakpoints.dedup();

    let mut registered: Option<bool> = None;
    let mut attrs = None;
    let mut valuation: Option<f64> = None;
    let mut srdi: Option<bool> = None;
    let mut cloud = false;
    // quarter → (revision, revenue, added value); later (at, id) with ≥ revision wins.
    let mut financials: BTreeMap<QuarterIndex, (u64, f64, f64)> = BTreeMap::new();
    let mut sweep = Sweep::default();
    let mut contributions = Vec::new();
    let mut next = 0;
    for b in breakpoints {
        while let Some(e) = events.get(next).filter(|e| e.at <= b) {
            next += 1;
            match &e.body {
                Body::Registered {
                    cluster,
                    region,
                    sme,
                    ..
                } => {
                    registered = Some(true);
                    attrs = Some((*cluster, *region, *sme));
                }
                Body::Deregistered { .. } => registered = Some(false),
                Body::Valuation { valuation_cny, .. } => valuation = Some(*valuation_cny),
                Body::Certification { granted, .. } => srdi = Some(*granted),
                Body::CloudMigration { .. } => cloud = true,
                Body::Financials {
                    period,
                    revenue_cny,
                    added_value_cny,
                    revision,
                    ..
                } => {
                    let entry = financials.entry(*period).or_insert((
                        *revision,
                        *revenue_cny,
                        *added_value_cny,
                    ));
                    if *revision >= entry.0 {
                        *entry = (*revision, *revenue_cny, *added_value_cny);
                    }
                }
                _ => {}
            }
        }
        contributions.clear();
        if let Some((cluster, _region, sme)) = attrs {
            let c = cluster.index() as u8;
            if registered == Some(true) {
                contributions.push((slot(Indicator::ClusterEnterprises, c), 0, 1.0));
                if valuation.is_some_and(|v| v >= QUASI_UNICORN_CNY) {
                    contributions.push((slot(Indicator::QuasiUnicorns, NO_TAG), 0, 1.0));
                }
                if srdi == Some(true) {
                    contributions.push((slot(Indicator::SrdiEnterprises, NO_TAG), 0, 1.0));
                }
                if sme && cloud {
                    contributions.push((slot(Indicator::SmesOnCloud, NO_TAG), 0, 1.0));
                }
            }
            // Revenue counts once the enterprise has a registration before T, whatever
            // happened to it since, attributed to its latest registration's cluster.
            let t = b.saturating_add(1);
            let last = last_quarter_ended_by(t.saturating_sub(filing_lag));
            for (&q, &(_, revenue, added)) in financials.range(last - 7..=last) {
                let sub = q as i64;
                if q > last - 4 {
                    contributions.push((slot(Indicator::ClusterRevenueCny, c), sub, revenue));
                    if cluster.is_core() {
                        contributions.push((
                            slot(Indicator::CoreIndustryRevenueCny, NO_TAG),
                            sub,
                            revenue,
                        ));
                        contributions.push((
                            slot(Indicator::DigitalEconomyAddedValueCny, NO_TAG),
                            sub,
                            added,
                        ));
                    }
                } else if cluster.is_core() {
                    let prev = Slot {
                        group: Indicator::DigitalEconomyAddedValueCny,
                        part: Part::PreviousAddedValue,
                        tag: NO_TAG,
                    };
                    contributions.push((prev, sub, added));
                }
            }
        }
        sweep.segment(b, &contributions);
    }
    sweep.finish()
}

/// Calls `f(b, latest)` for each distinct `occurred_at` `b` of `events` (sorted by
/// (`occurred_at`, `event_id`)) with the latest event at that instant.
fn each_instant<'a>(events: &'a [Event], mut f: impl FnMut(Nanos, &'a Event)) {
    let mut i = 0;
    while i < events.len() {
        let b = events[i].at;
        while i < events.len() && events[i].at == b {
            i += 1;
        }
        f(b, &events[i - 1]);
    }
}

/// Intervals of a project from its stage events sorted by (`occurred_at`, `event_id`).
pub fn project_intervals(events: &[Event]) -> Vec<Interval> {
    let mut sweep = Sweep::default();
    let mut contributions = Vec::new();
    each_instant(events, |b, latest| {
        contributions.clear();
        if let Body::ProjectStage {
            kind,
            region,
            stage,
            ..
        } = &latest.body
        {
            let delivered = *stage == ProjectStage::Delivered;
            match kind {
                ProjectKind::DataZone if delivered => {
                    contributions.push((slot(Indicator::DataZonesOperational, NO_TAG), 0, 1.0))
                }
                ProjectKind::BenchmarkProject if delivered => contributions.push((
                    slot(Indicator::BenchmarkProjectsDelivered, NO_TAG),
                    0,
                    1.0,
                )),
                ProjectKind::DemonstrationProject
                    if delivered || *stage == ProjectStage::Underway =>
                {
                    contributions.push((
                        slot(Indicator::DemonstrationProjectsUnderway, NO_TAG),
                        0,
                        1.0,
                    ));
                    contributions.push((
                        slot(
                            Indicator::DemonstrationProjectsUnderwayByRegion,
                            region.index() as u8,
                        ),
                        0,
                        1.0,
                    ));
                }
                _ => {}
            }
        }
        sweep.segment(b, &contributions);
    });
    sweep.finish()
}

/// A scenario's stage timeline: field periods and live periods.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScenarioTimeline {
    /// `(from, field tag)`: the field for `T > from`; starts with `(MIN, unassigned)`.
    pub fields: Vec<(Nanos, u8)>,
    /// Live periods `(lo, hi]`.
    pub live: Vec<(Nanos, Nanos)>,
    /// Intervals of the stage indicators (live counts).
    pub intervals: Vec<Interval>,
}

/// The stage timeline of a scenario from its stage events sorted by (`occurred_at`, `event_id`).
pub fn scenario_timeline(stages: &[Event]) -> ScenarioTimeline {
    let mut t = ScenarioTimeline {
        fields: vec![(Nanos::MIN, UNASSIGNED_FIELD)],
        ..Default::default()
    };
    let mut sweep = Sweep::default();
    let mut contributions = Vec::new();
    let mut live_since: Option<Nanos> = None;
    each_instant(stages, |b, latest| {
        contributions.clear();
        if let Body::ScenarioStage { field, stage, .. } = &latest.body {
            let tag = field.index() as u8;
            if t.fields.last().map(|f| f.1) != Some(tag) {
                t.fields.push((b, tag));
            }
            let live = *stage == ScenarioStage::Live;
            if live {
                contributions.push((slot(Indicator::ApplicationScenariosLive, NO_TAG), 0, 1.0));
                contributions.push((
                    slot(Indicator::ApplicationScenariosLiveByField, tag),
                    0,
                    1.0,
                ));
                live_since.get_or_insert(b);
            } else if let Some(lo) = live_since.take() {
                t.live.push((lo, b));
            }
        }
        sweep.segment(b, &contributions);
    });
    if let Some(lo) = live_since {
        t.live.push((lo, OPEN));
    }
    t.intervals = sweep.finish();
    t
}

/// Adds (sign +1) or retracts (−1) one usage report's window, split by field periods.
fn usage_deltas(
    fields: &[(Nanos, u8)],
    at: Nanos,
    amounts: [f64; 3],
    sign: f64,
    out: &mut Netting,
) {
    let (lo, hi) = (at, at.saturating_add(USAGE_WINDOW));
    for (i, &(from, tag)) in fields.iter().enumerate() {
        let to = fields.get(i + 1).map_or(OPEN, |f| f.0);
        let (a, b) = (lo.max(from), hi.min(to));
        if a >= b {
            continue;
        }
        let inds = [
            Indicator::ScenarioActiveUsers,
            Indicator::ScenarioTransactions,
            Indicator::ScenarioValueCny,
        ];
        for (ind, amount) in inds.into_iter().zip(amounts) {
            out.interval(
                &Interval {
                    slot: slot(ind, tag),
                    sub: 0,
                    lo: a,
                    hi: b,
                    amount,
                },
                sign,
            );
        }
    }
}

/// Idle intervals: live periods not covered by any usage window.
fn idle_intervals(live: &[(Nanos, Nanos)], coverage: &BTreeMap<Nanos, Nanos>) -> Vec<Interval> {
    let idle = slot(Indicator::ScenariosIdle, NO_TAG);
    let mut out = Vec::new();
    for &(lo, hi) in live {
        let mut cursor = lo;
        // Coverage intervals (c_lo, c_hi] overlapping (lo, hi].
        let start = coverage.range(..=lo).next_back().map_or(lo, |(k, _)| *k);
        for (&c_lo, &c_hi) in coverage.range(start..) {
            if c_lo >= hi {
                break;
            }
            if c_hi <= cursor {
                continue;
            }
            if c_lo > cursor {
                out.push(Interval {
                    slot: idle,
                    sub: 0,
                    lo: cursor,
                    hi: c_lo,
                    amount: 1.0,
                });
            }
            cursor = cursor.max(c_hi);
            if cursor >= hi {
                break;
            }
        }
        if cursor < hi {
            out.push(Interval {
                slot: idle,
                sub: 0,
                lo: cursor,
                hi,
                amount: 1.0,
            });
        }
    }
    out
}

fn add_coverage(coverage: &mut BTreeMap<Nanos, Nanos>, lo: Nanos, hi: Nanos) {
    let (mut lo, mut hi) = (lo, hi);
    // Merge with every interval that overlaps or touches (lo, hi].
    let first = coverage
        .range(..=lo)
        .next_back()
        .filter(|(_, h)| **h >= lo)
        .map(|(k, _)| *k)
        .unwrap_or(lo);
    let keys: Vec<Nanos> = coverage.range(first..=hi).map(|(k, _)| *k).collect();
    for k in keys {
        if let Some(h) = coverage.remove(&k) {
            lo = lo.min(k);
            hi = hi.max(h);
        }
    }
    coverage.insert(lo, hi);
}

#[derive(Debug)]
struct Scenario {
    stages: Vec<Event>,
    timeline: ScenarioTimeline,
    /// (at, event_id) → (active users, transactions, value).
    usage: BTreeMap<(Nanos, String), [f64; 3]>,
    coverage: BTreeMap<Nanos, Nanos>,
    idle: Vec<Interval>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            stages: Vec::new(),
            timeline: scenario_timeline(&[]),
            usage: BTreeMap::new(),
            coverage: BTreeMap::new(),
            idle: Vec::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Platform {
    /// (at, event_id) → (kind, connected enterprises).
    usage: BTreeMap<(Nanos, String), (PlatformKind, f64)>,
}

#[derive(Debug)]
enum Entity {
    Enterprise {
        events: Vec<Event>,
        intervals: Vec<Interval>,
    },
    Project {
        events: Vec<Event>,
        intervals: Vec<Interval>,
    },
    Scenario(Box<Scenario>),
    Platform(Platform),
}

/// The entity state of one worker: every entity whose key hashes to it.
#[derive(Debug)]
pub struct Entities {
    filing_lag: Nanos,
    entities: HashMap<(u8, String), Entity>,
    netting: Netting,
}

impl Entities {
    /// Empty state; `filing_lag` as configured.
    pub fn new(filing_lag: Nanos) -> Self {
        Entities {
            filing_lag,
            entities: HashMap::new(),
            netting: Netting::default(),
        }
    }

    /// Number of entities held.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether no entity is held.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Applies one accepted event; appends the deltas it causes.
    pub fn apply(&mut self, event: Event, out: &mut Vec<Delta>) {
        let n = &mut self.netting;
        match &event.body {
            Body::Heartbeat {
                kind,
                status,
                interval_s,
                ..
            } => {
                let tag = kind.index() as u8;
                let (lo, hi) = (event.at, event.at.saturating_add(TELEMETRY_WINDOW));
                let g = Indicator::PlatformAvailability;
                let total = Slot {
                    group: g,
                    part: Part::TotalSeconds,
                    tag,
                };
                n.interval(
                    &Interval {
                        slot: total,
                        sub: 0,
                        lo,
                        hi,
                        amount: *interval_s,
                    },
                    1.0,
                );
                if *status != PlatformStatus::Down {
                    let up = Slot {
                        group: g,
                        part: Part::AvailableSeconds,
                        tag,
                    };
                    n.interval(
                        &Interval {
                            slot: up,
                            sub: 0,
                            lo,
                            hi,
                            amount: *interval_s,
                        },
                        1.0,
                    );
                }
            }
            Body::PlatformUsage {
                platform,
                kind,
                api_calls,
                records_shared,
                connected_enterprises,
            } => {
                let tag = kind.index() as u8;
                let (lo, hi) = (event.at, event.at.saturating_add(TELEMETRY_WINDOW));
                for (ind, amount) in [
                    (Indicator::PlatformApiCalls, *api_calls),
                    (Indicator::PlatformRecordsShared, *records_shared),
                ] {
                    n.interval(
                        &Interval {
                            slot: slot(ind, tag),
                            sub: 0,
                            lo,
                            hi,
                            amount: amount as f64,
                        },
                        1.0,
                    );
                }
                let key = (3u8, platform.clone());
                let entity = self
                    .entities
                    .entry(key)
                    .or_insert_with(|| Entity::Platform(Platform::default()));
                if let Entity::Platform(p) = entity {
                    let me = (event.at, event.id.clone());
                    let prev = p.usage.range(..me.clone()).next_back().map(|(_, v)| *v);
                    let next_at = p
                        .usage
                        .range(me.clone()..)
                        .next()
                        .map_or(OPEN, |((at, _), _)| *at);
                    let conn = Indicator::PlatformConnectedEnterprises;
                    if let Some((pk, pc)) = prev {
                        let iv = Interval {
                            slot: slot(conn, pk.index() as u8),
                            sub: 0,
                            lo: event.at,
                            hi: next_at,
                            amount: pc,
                        };
                        n.interval(&iv, -1.0);
                    }
                    let amount = *connected_enterprises as f64;
                    n.interval(
                        &Interval {
                            slot: slot(conn, tag),
                            sub: 0,
                            lo: event.at,
                            hi: next_at,
                            amount,
                        },
                        1.0,
                    );
                    p.usage.insert(me, (*kind, amount));
                }
            }
            Body::ScenarioUsage {
                scenario,
                active_users,
                transactions,
                value_cny,
            } => {
                let key = (2u8, scenario.clone());
                let entity = self
                    .entities
                    .entry(key)
                    .or_insert_with(|| Entity::Scenario(Box::default()));
                if let Entity::Scenario(s) = entity {
                    let amounts = [*active_users as f64, *transactions as f64, *value_cny];
                    usage_deltas(&s.timeline.fields, event.at, amounts, 1.0, n);
                    s.usage.insert((event.at, event.id.clone()), amounts);
                    add_coverage(
                        &mut s.coverage,
                        event.at,
                        event.at.saturating_add(USAGE_WINDOW),
                    );
                    let mut idle = idle_intervals(&s.timeline.live, &s.coverage);
                    diff(&mut s.idle, &mut idle, n);
                    s.idle = idle;
                }
            }
            Body::ScenarioStage { scenario, .. } => {
                let key = (2u8, scenario.clone());
                let entity = self
                    .entities
                    .entry(key)
                    .or_insert_with(|| Entity::Scenario(Box::default()));
                if let Entity::Scenario(s) = entity {
                    let changed_from = event.at;
                    insert_sorted(&mut s.stages, event);
                    let mut timeline = scenario_timeline(&s.stages);
                    diff(&mut s.timeline.intervals, &mut timeline.intervals, n);
                    if timeline.fields != s.timeline.fields {
                        // Re-file the usage whose windows reach past the change.
                        let from = changed_from.saturating_sub(USAGE_WINDOW);
                        for ((at, _), amounts) in s.usage.range((from, String::new())..) {
                            usage_deltas(&s.timeline.fields, *at, *amounts, -1.0, n);
                            usage_deltas(&timeline.fields, *at, *amounts, 1.0, n);
                        }
                    }
                    let mut idle = idle_intervals(&timeline.live, &s.coverage);
                    diff(&mut s.idle, &mut idle, n);
                    s.idle = idle;
                    s.timeline = timeline;
                }
                n.drain_into(out);
                return;
            }
            Body::ProjectStage { project, .. } => {
                let key = (1u8, project.clone());
                let entity = self.entities.entry(key).or_insert_with(|| Entity::Project {
                    events: Vec::new(),
                    intervals: Vec::new(),
                });
                if let Entity::Project { events, intervals } = entity {
                    insert_sorted(events, event);
                    let mut new = project_intervals(events);
                    diff(intervals, &mut new, n);
                    *intervals = new;
                }
                n.drain_into(out);
                return;
            }
            _ => {
                let key = (0u8, event.body.entity().to_string());
                let entity = self
                    .entities
                    .entry(key)
                    .or_insert_with(|| Entity::Enterprise {
                        events: Vec::new(),
                        intervals: Vec::new(),
                    });
                if let Entity::Enterprise { events, intervals } = entity {
                    insert_sorted(events, event);
                    let mut new = enterprise_intervals(events, self.filing_lag);
                    diff(intervals, &mut new, n);
                    *intervals = new;
                }
                n.drain_into(out);
                return;
            }
        }
        n.drain_into(out);
    }
}
