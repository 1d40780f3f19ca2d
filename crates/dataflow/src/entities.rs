//! Per-entity state: how each enterprise, scenario, project and platform contributes to
//! the indicator slots over time (docs/indicators.md, "Shared definitions" and "The 23 indicators").
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
            out.span(slot(ind, tag), a, b, amount, sign);
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

/// Replaces an entity's intervals, sending the difference.
fn replace_intervals(old: &mut Vec<Interval>, mut new: Vec<Interval>, n: &mut Netting) {
    diff(old, &mut new, n);
    *old = new;
}

/// An entity whose contributions are recomputed from its whole (sorted) history:
/// enterprises and projects.
#[derive(Debug, Default)]
struct History {
    events: Vec<Event>,
    intervals: Vec<Interval>,
}

impl History {
    fn apply(
        &mut self,
        event: Event,
        n: &mut Netting,
        recompute: impl Fn(&[Event]) -> Vec<Interval>,
    ) {
        insert_sorted(&mut self.events, event);
        let new = recompute(&self.events);
        replace_intervals(&mut self.intervals, new, n);
    }
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

impl Scenario {
    fn refresh_idle(&mut self, n: &mut Netting) {
        let idle = idle_intervals(&self.timeline.live, &self.coverage);
        replace_intervals(&mut self.idle, idle, n);
    }

    fn usage(&mut self, at: Nanos, id: &str, amounts: [f64; 3], n: &mut Netting) {
        usage_deltas(&self.timeline.fields, at, amounts, 1.0, n);
        self.usage.insert((at, id.to_string()), amounts);
        add_coverage(&mut self.coverage, at, at.saturating_add(USAGE_WINDOW));
        self.refresh_idle(n);
    }

    fn stage(&mut self, event: Event, n: &mut Netting) {
        let changed_from = event.at;
        insert_sorted(&mut self.stages, event);
        let mut timeline = scenario_timeline(&self.stages);
        let intervals = std::mem::take(&mut timeline.intervals);
        replace_intervals(&mut self.timeline.intervals, intervals, n);
        if timeline.fields != self.timeline.fields {
            // Re-file the usage whose windows reach past the change.
            let from = changed_from.saturating_sub(USAGE_WINDOW);
            for ((at, _), amounts) in self.usage.range((from, String::new())..) {
                usage_deltas(&self.timeline.fields, *at, *amounts, -1.0, n);
                usage_deltas(&timeline.fields, *at, *amounts, 1.0, n);
            }
        }
        self.timeline.fields = timeline.fields;
        self.timeline.live = timeline.live;
        self.refresh_idle(n);
    }
}

#[derive(Debug, Default)]
struct Platform {
    /// (at, event_id) → (kind, connected enterprises).
    usage: BTreeMap<(Nanos, String), (PlatformKind, f64)>,
}

impl Platform {
    /// The latest usage report before T counts: the new report takes over from the one
    /// before it, up to the next one.
    fn usage(&mut self, at: Nanos, id: &str, kind: PlatformKind, connected: f64, n: &mut Netting) {
        let me = (at, id.to_string());
        let next_at = self
            .usage
            .range(me.clone()..)
            .next()
            .map_or(OPEN, |((t, _), _)| *t);
        let conn = Indicator::PlatformConnectedEnterprises;
        if let Some((_, (pk, pc))) = self.usage.range(..me.clone()).next_back() {
            n.span(slot(conn, pk.index() as u8), at, next_at, *pc, -1.0);
        }
        n.span(slot(conn, kind.index() as u8), at, next_at, connected, 1.0);
        self.usage.insert(me, (kind, connected));
    }
}

/// The entity state of one worker: every entity whose key hashes to it.
#[derive(Debug)]
pub struct Entities {
    filing_lag: Nanos,
    enterprises: HashMap<String, History>,
    projects: HashMap<String, History>,
    scenarios: HashMap<String, Scenario>,
    platforms: HashMap<String, Platform>,
    netting: Netting,
}

/// Which entity an event belongs to, for routing events to the worker holding it.
pub fn entity_kind(body: &Body) -> &'static str {
    match body {
        Body::Heartbeat { .. } | Body::PlatformUsage { .. } => "platform",
        Body::ScenarioStage { .. } | Body::ScenarioUsage { .. } => "scenario",
        Body::ProjectStage { .. } => "project",
        _ => "enterprise",
    }
}

impl Entities {
    /// Empty state; `filing_lag` as configured.
    pub fn new(filing_lag: Nanos) -> Self {
        Entities {
            filing_lag,
            enterprises: HashMap::new(),
            projects: HashMap::new(),
            scenarios: HashMap::new(),
            platforms: HashMap::new(),
            netting: Netting::default(),
        }
    }

    /// Number of entities held.
    pub fn len(&self) -> usize {
        self.enterprises.len() + self.projects.len() + self.scenarios.len() + self.platforms.len()
    }

    /// Whether no entity is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies one accepted event; appends the deltas it causes.
    pub fn apply(&mut self, event: Event, out: &mut Vec<Delta>) {
        let n = &mut self.netting;
        let (lo, day) = (event.at, event.at.saturating_add(TELEMETRY_WINDOW));
        match &event.body {
            Body::Heartbeat {
                kind,
                status,
                interval_s,
                ..
            } => {
                let tag = kind.index() as u8;
                let g = Indicator::PlatformAvailability;
                n.span(
                    Slot {
                        group: g,
                        part: Part::TotalSeconds,
                        tag,
                    },
                    lo,
                    day,
                    *interval_s,
                    1.0,
                );
                if *status != PlatformStatus::Down {
                    n.span(
                        Slot {
                            group: g,
                            part: Part::AvailableSeconds,
                            tag,
                        },
                        lo,
                        day,
                        *interval_s,
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
                n.span(
                    slot(Indicator::PlatformApiCalls, tag),
                    lo,
                    day,
                    *api_calls as f64,
                    1.0,
                );
                n.span(
                    slot(Indicator::PlatformRecordsShared, tag),
                    lo,
                    day,
                    *records_shared as f64,
                    1.0,
                );
                let p = self.platforms.entry(platform.clone()).or_default();
                p.usage(event.at, &event.id, *kind, *connected_enterprises as f64, n);
            }
            Body::ScenarioUsage {
                scenario,
                active_users,
                transactions,
                value_cny,
            } => {
                let amounts = [*active_users as f64, *transactions as f64, *value_cny];
                let s = self.scenarios.entry(scenario.clone()).or_default();
                s.usage(event.at, &event.id, amounts, n);
            }
            Body::ScenarioStage { scenario, .. } => {
                let s = self.scenarios.entry(scenario.clone()).or_default();
                s.stage(event, n);
            }
            Body::ProjectStage { project, .. } => {
                let h = self.projects.entry(project.clone()).or_default();
                h.apply(event, n, project_intervals);
            }
            body => {
                let lag = self.filing_lag;
                let h = self
                    .enterprises
                    .entry(body.entity().to_string())
                    .or_default();
                h.apply(event, n, |events| enterprise_intervals(events, lag));
            }
        }
        n.drain_into(out);
    }
}
