//! Per-entity state: how each enterprise, scenario, project and platform contributes to
//! the indicator slots over time (docs/indicators.md, "Shared definitions" and "Catalogue").
//!
//! Each entity keeps its events; when they change, its contribution intervals are
//! recomputed and the difference leaves as deltas. Windowed sums (heartbeats, usage) are
//! linear and leave as deltas directly. Everything here depends only on the set of events,
//! never on their arrival order.

use std::collections::{BTreeMap, HashMap};

/// Hashing of entity ids, which whoever writes events chooses: seeded per process like
/// std's SipHash, at a fraction of its cost.
type IdHasher = foldhash::quality::RandomState;

use paceline_model::catalogue::{Part, Slot, NO_TAG, UNASSIGNED_FIELD};
use paceline_model::event::{
    Cluster, PlatformKind, PlatformStatus, ProjectKind, ProjectStage, Region, ScenarioStage,
};
use paceline_model::time::{last_quarter_ended_by, quarter_end, QuarterIndex, DAY, HOUR};
use paceline_model::{Body, Event, Indicator, Nanos, SmolStr, Stream};
use serde::{Deserialize, Serialize};

use crate::intervals::{diff, Delta, Interval, Netting, Sweep, OPEN};
use crate::ticks::Sorted;

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

/// What an enterprise's filings say as of an instant: the fold of its events up to then.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnterpriseState {
    registered: Option<bool>,
    /// (cluster, region, sme) of the latest registration.
    attrs: Option<(Cluster, Region, bool)>,
    valuation: Option<f64>,
    srdi: Option<bool>,
    cloud: bool,
    /// quarter → (revision, revenue, added value); later (at, id) with ≥ revision wins.
    financials: BTreeMap<QuarterIndex, (u64, f64, f64)>,
}

impl EnterpriseState {
    fn apply(&mut self, e: &Event) {
        match &e.body {
            Body::Registered {
                cluster,
                region,
                sme,
                ..
            } => {
                self.registered = Some(true);
                self.attrs = Some((*cluster, *region, *sme));
            }
            Body::Deregistered { .. } => self.registered = Some(false),
            Body::Valuation { valuation_cny, .. } => self.valuation = Some(*valuation_cny),
            Body::Certification { granted, .. } => self.srdi = Some(*granted),
            Body::CloudMigration { .. } => self.cloud = true,
            Body::Financials {
                period,
                revenue_cny,
                added_value_cny,
                revision,
                ..
            } => {
                let entry = self.financials.entry(*period).or_insert((
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

    /// Instants after which a quarter's figures start or stop counting (its filing lag
    /// passed, a year later, two years later).
    fn quarter_breakpoints(period: QuarterIndex, filing_lag: Nanos) -> [Nanos; 3] {
        [0, 4, 8].map(|k| (quarter_end(period + k) + filing_lag).saturating_sub(1))
    }

    /// Forgets quarters no tick after `after` can count any more (revenue looks back 8
    /// quarters from the last one ended by `T − filing_lag`).
    fn prune_quarters(&mut self, after: Nanos, filing_lag: Nanos) {
        let oldest = last_quarter_ended_by(after.saturating_sub(filing_lag)) - 8;
        self.financials = self.financials.split_off(&oldest);
    }

    /// What the enterprise contributes for ticks `T > b`.
    fn contributions(&self, b: Nanos, filing_lag: Nanos, out: &mut Vec<(Slot, i64, f64)>) {
        out.clear();
        let Some((cluster, _region, sme)) = self.attrs else {
            return;
        };
        let c = cluster.index() as u8;
        if self.registered == Some(true) {
            out.push((slot(Indicator::ClusterEnterprises, c), 0, 1.0));
            if self.valuation.is_some_and(|v| v >= QUASI_UNICORN_CNY) {
                out.push((slot(Indicator::QuasiUnicorns, NO_TAG), 0, 1.0));
            }
            if self.srdi == Some(true) {
                out.push((slot(Indicator::SrdiEnterprises, NO_TAG), 0, 1.0));
            }
            if sme && self.cloud {
                out.push((slot(Indicator::SmesOnCloud, NO_TAG), 0, 1.0));
            }
        }
        // Revenue counts once the enterprise has a registration before T, whatever
        // happened to it since, attributed to its latest registration's cluster.
        let t = b.saturating_add(1);
        let last = last_quarter_ended_by(t.saturating_sub(filing_lag));
        for (&q, &(_, revenue, added)) in self.financials.range(last - 7..=last) {
            let sub = q as i64;
            if q > last - 4 {
                out.push((slot(Indicator::ClusterRevenueCny, c), sub, revenue));
                if cluster.is_core() {
                    out.push((
                        slot(Indicator::CoreIndustryRevenueCny, NO_TAG),
                        sub,
                        revenue,
                    ));
                    out.push((
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
                out.push((prev, sub, added));
            }
        }
    }
}

/// Intervals of one enterprise, from its events sorted by (`occurred_at`, `event_id`).
pub fn enterprise_intervals(events: &[Event], filing_lag: Nanos) -> Vec<Interval> {
    enterprise_intervals_from(&EnterpriseState::default(), None, events, filing_lag)
}

/// Intervals of one enterprise for ticks after `from` (all ticks when None), from its
/// state `base` as of `from` and its later events (sorted, all after `from`).
fn enterprise_intervals_from(
    base: &EnterpriseState,
    from: Option<Nanos>,
    events: &[Event],
    filing_lag: Nanos,
) -> Vec<Interval> {
    let breakpoints = enterprise_breakpoints(base, from, events, filing_lag);
    let mut sweep = EnterpriseSweep::new(base, events, filing_lag);
    sweep.segments(&breakpoints);
    sweep.sweep.finish()
}

/// The instants after which what an enterprise contributes may change: its events' times
/// and its quarters' breakpoints, from `from` on (with `from` itself).
fn enterprise_breakpoints(
    base: &EnterpriseState,
    from: Option<Nanos>,
    events: &[Event],
    filing_lag: Nanos,
) -> Vec<Nanos> {
    let mut breakpoints: Vec<Nanos> = events.iter().map(|e| e.at).collect();
    let quarters = base
        .financials
        .keys()
        .copied()
        .chain(events.iter().filter_map(|e| match e.body {
            Body::Financials { period, .. } => Some(period),
            _ => None,
        }));
    for q in quarters {
        breakpoints.extend(EnterpriseState::quarter_breakpoints(q, filing_lag));
    }
    if let Some(f) = from {
        // The first segment starts at `from`, with the folded state.
        breakpoints.retain(|b| *b > f);
        breakpoints.push(f);
    }
    breakpoints.sort_unstable();
    breakpoints.dedup();
    breakpoints
}

/// An enterprise's state walked along its breakpoints, its contributions swept into
/// intervals.
struct EnterpriseSweep<'a> {
    state: EnterpriseState,
    events: &'a [Event],
    next: usize,
    filing_lag: Nanos,
    contributions: Vec<(Slot, i64, f64)>,
    sweep: Sweep,
}

impl<'a> EnterpriseSweep<'a> {
    fn new(base: &EnterpriseState, events: &'a [Event], filing_lag: Nanos) -> Self {
        EnterpriseSweep {
            state: base.clone(),
            events,
            next: 0,
            filing_lag,
            contributions: Vec::new(),
            sweep: Sweep::default(),
        }
    }

    /// Applies the events at or before `b`: the state of the segment starting at `b`.
    fn advance_to(&mut self, b: Nanos) {
        while let Some(e) = self.events.get(self.next).filter(|e| e.at <= b) {
            self.next += 1;
            self.state.apply(e);
        }
    }

    fn segments(&mut self, breakpoints: &[Nanos]) {
        for &b in breakpoints {
            self.advance_to(b);
            self.state
                .contributions(b, self.filing_lag, &mut self.contributions);
            self.sweep.segment(b, &self.contributions);
        }
    }
}

/// Brings an enterprise's intervals up to date with the event at `at` just inserted in its
/// history (they were those of its events before it): recomputes them from the last
/// breakpoint before `at` on, and sends the difference.
/// The segments before `at` do not see the new event, so what they gave stands: the
/// intervals that ended by that breakpoint stay as they are, those still running there go
/// on from where they started, and only the segments from `at` on are walked again (an
/// enterprise gets its events mostly in order, at the end of a few dozen breakpoints).
fn update_enterprise_intervals(
    base: &EnterpriseState,
    history: &mut History,
    at: Nanos,
    filing_lag: Nanos,
    n: &mut Netting,
) {
    let breakpoints = enterprise_breakpoints(base, history.from, &history.events, filing_lag);
    let k = breakpoints.partition_point(|b| *b < at);
    let Some(&resume) = k.checked_sub(1).and_then(|i| breakpoints.get(i)) else {
        let mut new = enterprise_intervals_from(base, history.from, &history.events, filing_lag);
        clip(&mut new, history.from);
        replace_intervals(&mut history.intervals, new, n);
        return;
    };
    let mut sweep = EnterpriseSweep::new(base, &history.events, filing_lag);
    sweep.advance_to(resume);
    // Ended by `resume`: unchanged, left in place and out of the comparison.
    let mut old: Vec<Interval> = history
        .intervals
        .extract_if(.., |iv| iv.hi > resume)
        .collect();
    sweep.sweep.resume(old.iter().filter(|iv| iv.lo <= resume));
    sweep.segments(&breakpoints[k..]);
    let mut new = sweep.sweep.finish();
    clip(&mut new, history.from);
    diff(&mut old, &mut new, n);
    history.intervals.append(&mut new);
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
                    // The plan's 28 are in the four key regions; `other` counts only by region.
                    if region.is_key() {
                        contributions.push((
                            slot(Indicator::DemonstrationProjectsUnderway, NO_TAG),
                            0,
                            1.0,
                        ));
                    }
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
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioTimeline {
    /// `(from, field tag)`: the field for `T > from`; starts with `(MIN, unassigned)`.
    pub fields: Vec<(Nanos, u8)>,
    /// Live periods `(lo, hi]`.
    pub live: Vec<(Nanos, Nanos)>,
    /// Intervals of the stage indicators (live counts).
    pub intervals: Vec<Interval>,
}

/// The stage timeline of a scenario from its stage events sorted by (`occurred_at`,
/// `event_id`), and the time of its first stage event of stage live (`launched_at`: kept
/// by the scenario, since folding drops the events before it).
pub fn scenario_timeline(stages: &[Event], launched_at: Option<Nanos>) -> ScenarioTimeline {
    let mut t = ScenarioTimeline {
        fields: vec![(Nanos::MIN, UNASSIGNED_FIELD)],
        ..Default::default()
    };
    let mut sweep = Sweep::default();
    let mut contributions = Vec::new();
    let mut live_since: Option<Nanos> = None;
    each_instant(stages, |b, latest| {
        contributions.clear();
        // Put in place from its first stage event of stage live on, whatever follows
        // (that event need not be the latest of its instant).
        if launched_at.is_some_and(|at| b >= at) {
            contributions.push((
                slot(Indicator::ApplicationScenariosLaunched, NO_TAG),
                0,
                1.0,
            ));
        }
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

/// Cuts intervals to ticks after `from`. What an entity contributed up to a fold point can
/// no longer change, and (a, b] = (a, from] + (from, b] as deltas, so comparing the parts
/// after `from` sends exactly the deltas the whole intervals would.
fn clip(intervals: &mut Vec<Interval>, from: Option<Nanos>) {
    let Some(f) = from else { return };
    intervals.retain_mut(|iv| {
        iv.lo = iv.lo.max(f);
        iv.lo < iv.hi
    });
}

/// The index of the first event at or after `cutoff` (events sorted by time).
fn first_at_or_after(events: &[Event], cutoff: Nanos) -> usize {
    events.partition_point(|e| e.at < cutoff)
}

/// Events of an entity not yet folded, and its current intervals (for ticks after
/// `from`, the fold point).
#[derive(Debug, Default, Serialize, Deserialize)]
struct History {
    events: Vec<Event>,
    from: Option<Nanos>,
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
        let mut new = recompute(&self.events);
        clip(&mut new, self.from);
        replace_intervals(&mut self.intervals, new, n);
    }

    /// Moves the fold point to just before `cutoff` (no event older than `cutoff` can be
    /// admitted any more) and hands out the events before it.
    fn fold(&mut self, cutoff: Nanos) -> Vec<Event> {
        let from = cutoff.saturating_sub(1);
        if self.from.is_some_and(|f| f >= from) {
            return Vec::new();
        }
        self.from = Some(from);
        clip(&mut self.intervals, self.from);
        let k = first_at_or_after(&self.events, cutoff);
        self.events.drain(..k).collect()
    }
}

/// An enterprise: its state folded up to the fold point, and its later events.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Enterprise {
    base: EnterpriseState,
    history: History,
}

impl Enterprise {
    fn apply(&mut self, event: Event, filing_lag: Nanos, n: &mut Netting) {
        let at = event.at;
        insert_sorted(&mut self.history.events, event);
        update_enterprise_intervals(&self.base, &mut self.history, at, filing_lag, n);
        #[cfg(debug_assertions)]
        self.check_intervals(filing_lag);
    }

    /// The intervals kept by the partial recomputation are those of the whole one.
    #[cfg(debug_assertions)]
    fn check_intervals(&self, filing_lag: Nanos) {
        let h = &self.history;
        let mut whole = enterprise_intervals_from(&self.base, h.from, &h.events, filing_lag);
        clip(&mut whole, h.from);
        let mut kept = h.intervals.clone();
        whole.sort_by_key(Interval::sort_key);
        kept.sort_by_key(Interval::sort_key);
        debug_assert_eq!(kept, whole, "an enterprise's intervals, recomputed in part");
    }

    fn fold(&mut self, cutoff: Nanos, filing_lag: Nanos) {
        for e in self.history.fold(cutoff) {
            self.base.apply(&e);
        }
        if let Some(from) = self.history.from {
            self.base.prune_quarters(from, filing_lag);
        }
    }
}

/// A project: its stage is the latest event's, so folding keeps only the latest event
/// before the fold point.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Project {
    history: History,
}

impl Project {
    fn apply(&mut self, event: Event, n: &mut Netting) {
        self.history.apply(event, n, project_intervals);
    }

    fn fold(&mut self, cutoff: Nanos) {
        if let Some(last) = self.history.fold(cutoff).pop() {
            self.history.events.insert(0, last);
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Scenario {
    /// Stage events after the fold point, and the latest one before it.
    stages: Vec<Event>,
    timeline: ScenarioTimeline,
    /// (at, event_id) → (active users, transactions, value), for windows a stage change
    /// can still re-file.
    usage: BTreeMap<(Nanos, SmolStr), [f64; 3]>,
    coverage: BTreeMap<Nanos, Nanos>,
    idle: Vec<Interval>,
    from: Option<Nanos>,
    /// Its first stage event of stage live, ever (folding may drop that event).
    launched_at: Option<Nanos>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            stages: Vec::new(),
            timeline: scenario_timeline(&[], None),
            launched_at: None,
            usage: BTreeMap::new(),
            coverage: BTreeMap::new(),
            idle: Vec::new(),
            from: None,
        }
    }
}

impl Scenario {
    fn refresh_idle(&mut self, n: &mut Netting) {
        let mut idle = idle_intervals(&self.timeline.live, &self.coverage);
        clip(&mut idle, self.from);
        replace_intervals(&mut self.idle, idle, n);
    }

    fn usage(&mut self, at: Nanos, id: &SmolStr, amounts: [f64; 3], n: &mut Netting) {
        usage_deltas(&self.timeline.fields, at, amounts, 1.0, n);
        self.usage.insert((at, id.clone()), amounts);
        add_coverage(&mut self.coverage, at, at.saturating_add(USAGE_WINDOW));
        self.refresh_idle(n);
    }

    fn stage(&mut self, event: Event, n: &mut Netting) {
        let changed_from = event.at;
        if let Body::ScenarioStage {
            stage: ScenarioStage::Live,
            ..
        } = event.body
        {
            self.launched_at = Some(self.launched_at.map_or(event.at, |at| at.min(event.at)));
        }
        insert_sorted(&mut self.stages, event);
        let mut timeline = scenario_timeline(&self.stages, self.launched_at);
        let mut intervals = std::mem::take(&mut timeline.intervals);
        clip(&mut intervals, self.from);
        replace_intervals(&mut self.timeline.intervals, intervals, n);
        if timeline.fields != self.timeline.fields {
            // Re-file the usage whose windows reach past the change.
            let from = changed_from.saturating_sub(USAGE_WINDOW);
            for ((at, _), amounts) in self.usage.range((from, SmolStr::default())..) {
                usage_deltas(&self.timeline.fields, *at, *amounts, -1.0, n);
                usage_deltas(&timeline.fields, *at, *amounts, 1.0, n);
            }
        }
        self.timeline.fields = timeline.fields;
        self.timeline.live = timeline.live;
        self.refresh_idle(n);
    }

    /// Keeps what a stage or usage event at or after `cutoff` can still change: the latest
    /// stage before it (the state there), usage whose window a re-filing from `cutoff`
    /// reaches, coverage and live periods that reach past it.
    fn fold(&mut self, cutoff: Nanos) {
        let from = cutoff.saturating_sub(1);
        if self.from.is_some_and(|f| f >= from) {
            return;
        }
        self.from = Some(from);
        let k = first_at_or_after(&self.stages, cutoff);
        if k > 1 {
            self.stages.drain(..k - 1);
        }
        // The stored field periods must be the ones later re-filings are computed with:
        // old and new then share everything before the change, which nets to nothing.
        let timeline = scenario_timeline(&self.stages, self.launched_at);
        self.timeline.fields = timeline.fields;
        self.timeline.live = timeline.live;
        clip(&mut self.timeline.intervals, self.from);
        clip(&mut self.idle, self.from);
        let keep = (cutoff.saturating_sub(USAGE_WINDOW), SmolStr::default());
        self.usage = self.usage.split_off(&keep);
        self.coverage.retain(|_, hi| *hi > from);
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Platform {
    /// (at, event_id) → (kind, connected enterprises): reports after the fold point and
    /// the latest one before it. Reports come mostly in order: each is appended, and the
    /// one before it is the last.
    usage: Sorted<(Nanos, SmolStr), (PlatformKind, f64)>,
    /// The cutoff of the last fold. A platform reporting more often than `FOLD_AT_EVENTS`
    /// times per correction horizon stays over that count after a fold, and would search
    /// its reports again on every event for a cutoff that moves once an epoch. Not kept in
    /// checkpoints: a restored platform folds again once, to the same result.
    #[serde(skip)]
    folded: Option<Nanos>,
}

impl Platform {
    /// The latest usage report before T counts: the new report takes over from the one
    /// before it, up to the next one.
    fn usage(
        &mut self,
        at: Nanos,
        id: &SmolStr,
        kind: PlatformKind,
        connected: f64,
        n: &mut Netting,
    ) {
        let me = (at, id.clone());
        let next_at = self.usage.first_from(&me).map_or(OPEN, |((t, _), _)| *t);
        let conn = Indicator::PlatformConnectedEnterprises;
        let new_slot = slot(conn, kind.index() as u8);
        match self.usage.last_before(&me) {
            // Counts are whole numbers below 2^53 (docs/events.md), so their difference is
            // exact: one change over the span instead of a retraction and an addition.
            Some((_, (pk, pc))) if *pk == kind => {
                n.span(new_slot, at, next_at, connected - *pc, 1.0);
            }
            Some((_, (pk, pc))) => {
                n.span(slot(conn, pk.index() as u8), at, next_at, *pc, -1.0);
                n.span(new_slot, at, next_at, connected, 1.0);
            }
            None => n.span(new_slot, at, next_at, connected, 1.0),
        }
        self.usage.insert_at(me, (kind, connected));
    }

    fn fold(&mut self, cutoff: Nanos) {
        if self.folded.is_some_and(|f| f >= cutoff) {
            return;
        }
        self.folded = Some(cutoff);
        self.usage.keep_last_before(&(cutoff, SmolStr::default()));
    }
}

/// An entity with more unfolded events than this is folded when it gets its next event,
/// so that the work per event stays bounded by what the event can still change.
const FOLD_AT_EVENTS: usize = 32;

/// The entity state of one worker: every entity whose key hashes to it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Entities {
    filing_lag: Nanos,
    enterprises: HashMap<SmolStr, Enterprise, IdHasher>,
    projects: HashMap<SmolStr, Project, IdHasher>,
    scenarios: HashMap<SmolStr, Scenario, IdHasher>,
    platforms: HashMap<SmolStr, Platform, IdHasher>,
    /// Per stream: no event older than this is admitted any more (the watermark minus the
    /// correction horizon), and where the last fold of every entity was.
    cutoff: [Option<Nanos>; 3],
    folded: [Option<Nanos>; 3],
    #[serde(skip)]
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

/// Entities held, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EntityCounts {
    /// Enterprises.
    pub enterprises: usize,
    /// Projects.
    pub projects: usize,
    /// Scenarios.
    pub scenarios: usize,
    /// Platforms.
    pub platforms: usize,
    /// Events held unfolded, over all entities.
    pub events: usize,
}

impl Entities {
    /// Empty state; `filing_lag` as configured.
    pub fn new(filing_lag: Nanos) -> Self {
        Entities {
            filing_lag,
            enterprises: HashMap::default(),
            projects: HashMap::default(),
            scenarios: HashMap::default(),
            platforms: HashMap::default(),
            cutoff: [None; 3],
            folded: [None; 3],
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

    /// Entities and unfolded events held.
    pub fn counts(&self) -> EntityCounts {
        let events = self
            .enterprises
            .values()
            .map(|e| e.history.events.len())
            .chain(self.projects.values().map(|p| p.history.events.len()))
            .chain(
                self.scenarios
                    .values()
                    .map(|s| s.stages.len() + s.usage.len()),
            )
            .chain(self.platforms.values().map(|p| p.usage.len()))
            .sum();
        EntityCounts {
            enterprises: self.enterprises.len(),
            projects: self.projects.len(),
            scenarios: self.scenarios.len(),
            platforms: self.platforms.len(),
            events,
        }
    }

    /// Tells that no event of `stream` older than `cutoff` will come any more (its
    /// watermark minus its correction horizon). Everything older is folded: every entity of
    /// the stream at once whenever the cutoff has moved by `every` since the last time,
    /// and a busy entity on its next event.
    pub fn set_cutoff(&mut self, stream: Stream, cutoff: Nanos, every: Nanos) {
        let i = stream.index();
        if self.cutoff[i].is_some_and(|c| c >= cutoff) {
            return;
        }
        self.cutoff[i] = Some(cutoff);
        if self.folded[i].is_none_or(|f| cutoff.saturating_sub(f) >= every) {
            self.fold_all(stream, cutoff);
            self.folded[i] = Some(cutoff);
        }
    }

    fn fold_all(&mut self, stream: Stream, cutoff: Nanos) {
        let lag = self.filing_lag;
        match stream {
            Stream::Filings => self
                .enterprises
                .values_mut()
                .for_each(|e| e.fold(cutoff, lag)),
            Stream::Telemetry => self.platforms.values_mut().for_each(|p| p.fold(cutoff)),
            Stream::Scenarios => {
                self.projects.values_mut().for_each(|p| p.fold(cutoff));
                self.scenarios.values_mut().for_each(|s| s.fold(cutoff));
            }
        }
    }

    /// Sums the deltas of each slot's tick span of the grid `cadence` gives its group (by
    /// default keys are kept exact, which moves the same ticks).
    pub fn use_ticks(&mut self, cadence: impl Fn(Indicator) -> Nanos) {
        self.netting.use_ticks(cadence);
    }

    /// Applies one accepted event; its deltas are netted with those of the other events
    /// applied until [`Entities::drain_into`].
    pub fn apply(&mut self, event: Event) {
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
                let cutoff = self.cutoff[Stream::Telemetry.index()];
                let p = self.platforms.entry(platform.clone()).or_default();
                if let Some(c) = cutoff.filter(|_| p.usage.len() > FOLD_AT_EVENTS) {
                    p.fold(c);
                }
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
                let cutoff = self.cutoff[Stream::Scenarios.index()];
                let s = self.scenarios.entry(scenario.clone()).or_default();
                if let Some(c) = cutoff.filter(|_| s.stages.len() > FOLD_AT_EVENTS) {
                    s.fold(c);
                }
                s.stage(event, n);
            }
            Body::ProjectStage { project, .. } => {
                let cutoff = self.cutoff[Stream::Scenarios.index()];
                let p = self.projects.entry(project.clone()).or_default();
                if let Some(c) = cutoff.filter(|_| p.history.events.len() > FOLD_AT_EVENTS) {
                    p.fold(c);
                }
                p.apply(event, n);
            }
            body => {
                let lag = self.filing_lag;
                let cutoff = self.cutoff[Stream::Filings.index()];
                let e = self.enterprises.entry(body.entity().clone()).or_default();
                if let Some(c) = cutoff.filter(|_| e.history.events.len() > FOLD_AT_EVENTS) {
                    e.fold(c, lag);
                }
                e.apply(event, lag, n);
            }
        }
    }

    /// Moves out the net deltas of the events applied since the last call. Called once an
    /// epoch: a snapshot, taken between epochs, then finds nothing pending.
    pub fn drain_into(&mut self, out: &mut Vec<Delta>) {
        self.netting.drain_into(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact::ExactSum;
    use paceline_model::event::{Field, ProjectKind, ProjectStage, ScenarioStage};
    use paceline_model::time::days_from_civil;

    /// A small deterministic generator (xorshift), enough for shuffling test events.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
        fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
            xs[self.below(xs.len() as u64) as usize]
        }
    }

    fn random_body(r: &mut Rng, at: Nanos) -> Body {
        let e = format!("E{}", r.below(4));
        let period = last_quarter_ended_by(at) - r.below(3) as i32;
        match r.below(11) {
            0 => Body::Registered {
                enterprise: e.into(),
                cluster: r.pick(Cluster::ALL),
                region: r.pick(Region::ALL),
                sme: r.below(2) == 0,
            },
            1 => Body::Deregistered {
                enterprise: e.into(),
            },
            2 => Body::Valuation {
                enterprise: e.into(),
                valuation_cny: [5e8, 2e9][r.below(2) as usize],
            },
            3 => Body::Certification {
                enterprise: e.into(),
                granted: r.below(3) != 0,
            },
            4 => Body::Financials {
                enterprise: e.into(),
                period,
                revenue_cny: (r.below(1000) as f64) * 1e6 + 0.1,
                added_value_cny: (r.below(300) as f64) * 1e6,
                revision: r.below(3),
            },
            5 => Body::CloudMigration {
                enterprise: e.into(),
                deep: false,
            },
            6 => Body::PlatformUsage {
                platform: format!("P{}", r.below(2)).into(),
                kind: r.pick(PlatformKind::ALL),
                api_calls: r.below(100),
                records_shared: r.below(100),
                connected_enterprises: r.below(50),
            },
            7 => Body::ScenarioStage {
                scenario: format!("S{}", r.below(3)).into(),
                field: r.pick(&Field::ALL[..3]),
                region: r.pick(Region::ALL),
                stage: r.pick(ScenarioStage::ALL),
            },
            8 | 9 => Body::ScenarioUsage {
                scenario: format!("S{}", r.below(3)).into(),
                active_users: r.below(1000),
                transactions: r.below(1000),
                value_cny: r.below(1000) as f64 * 0.5,
            },
            _ => Body::ProjectStage {
                project: format!("J{}", r.below(3)).into(),
                kind: r.pick(ProjectKind::ALL),
                region: r.pick(Region::ALL),
                stage: r.pick(ProjectStage::ALL),
            },
        }
    }

    fn netted(out: &[Delta]) -> BTreeMap<(Slot, Nanos), f64> {
        let mut sums: BTreeMap<(Slot, Nanos), ExactSum> = BTreeMap::new();
        for d in out {
            sums.entry((d.slot, d.key)).or_default().add(d.amount);
        }
        sums.into_iter()
            .map(|(k, s)| (k, s.value()))
            .filter(|(_, v)| *v != 0.0)
            .collect()
    }

    /// Folding changes nothing: the same events, in the same disordered order, give the
    /// same net deltas whether every entity keeps its whole history or is folded at every
    /// cutoff the events allow, while the folded state holds fewer events.
    #[test]
    fn folding_gives_the_deltas_of_the_whole_history() {
        let t0 = days_from_civil(2022, 1, 1) * DAY;
        for seed in 1..=40u64 {
            let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut events: Vec<Event> = (0..400)
                .map(|i| {
                    let at =
                        t0 + r.below(900) as Nanos * DAY + r.below(86_400) as Nanos * 1_000_000_000;
                    Event {
                        id: format!("e{i}").into(),
                        at,
                        body: random_body(&mut r, at),
                    }
                })
                .collect();
            events.sort_by_key(|e| e.at);
            // Disorder within a window of 30 positions.
            for i in 0..events.len() {
                let j = (i + r.below(30) as usize).min(events.len() - 1);
                events.swap(i, j);
            }
            let lag = 45 * DAY;
            let (mut whole, mut folded) = (Entities::new(lag), Entities::new(lag));
            if seed % 2 == 0 {
                // Keys summed per daily span, as the dataflow does.
                whole.use_ticks(|_| DAY);
                folded.use_ticks(|_| DAY);
            }
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let every = [DAY, 6 * HOUR, 20 * DAY][r.below(3) as usize];
            for (i, e) in events.iter().enumerate() {
                whole.apply(e.clone());
                whole.drain_into(&mut a);
                folded.apply(e.clone());
                folded.drain_into(&mut b);
                // The earliest event still to come bounds what may be folded.
                if let Some(min) = events[i + 1..].iter().map(|e| e.at).min() {
                    for s in Stream::ALL {
                        folded.set_cutoff(s, min - r.below(3) as Nanos * DAY, every);
                    }
                }
            }
            assert_eq!(netted(&a), netted(&b), "seed {seed}");
            assert!(
                folded.counts().events < whole.counts().events / 2,
                "seed {seed}: {:?} vs {:?}",
                folded.counts(),
                whole.counts()
            );
        }
    }
}
