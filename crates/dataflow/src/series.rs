//! The series of one indicator group: slot levels from deltas, tick closing, derived
//! values, plan pace, and the points to write, corrections included.
//!
//! A slot keeps its deltas bucketed by the first tick they count in. Closing ticks walks
//! them in order. A delta for a tick already closed marks the group dirty from that tick;
//! the next close re-evaluates from there and writes every point whose fields differ from
//! the point in force (the last written at or before the tick), which is exactly what makes
//! the output equivalent to an in-order run's (docs/outputs.md, "Corrections").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use paceline_model::catalogue::{Part, SeriesKey, Slot, NO_TAG};
use paceline_model::config::PlanSpec;
use paceline_model::point::{Fields, Point, VerdictFields};
use paceline_model::time::{tick_after, tick_ceil, tick_floor};
use paceline_model::{Indicator, Nanos};

use crate::exact::ExactSum;
use crate::intervals::Delta;
use crate::pace::{pace_fields, PROJECTION_LOOKBACK};
use crate::ticks::TickMap;

#[derive(Debug, Default, Serialize, Deserialize)]
struct SlotState {
    /// Sum of folded buckets (ticks ≤ `Group::folded_through`).
    base: ExactSum,
    buckets: TickMap<ExactSum>,
    /// Level at `Group::closed_through`.
    level_closed: ExactSum,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Output {
    /// From the configuration, never from a checkpoint: plan edits apply to restored state.
    #[serde(skip)]
    plan: Option<PlanSpec>,
    written: TickMap<Fields>,
    /// Desired values per tick (planned series only: baseline and 90-day look-back).
    history: TickMap<Option<f64>>,
    /// The plan verdict written at its tick (planned series only).
    verdict: Option<(Nanos, VerdictFields)>,
    /// The tick last evaluated and the series' value there (never from a checkpoint).
    #[serde(skip)]
    last: Option<(Nanos, Option<f64>)>,
}

/// Counts from closing ticks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CloseStats {
    /// Points written at ticks that had already been closed.
    pub corrections: u64,
    /// Corrections that could not be written (a field became undefined at a written tick).
    pub unrepresentable: u64,
}

/// One indicator group's state.
#[derive(Debug, Serialize, Deserialize)]
pub struct Group {
    group: Indicator,
    cadence: Nanos,
    horizon: Nanos,
    #[serde(skip)]
    plans: Vec<PlanSpec>,
    slots: BTreeMap<Slot, SlotState>,
    outputs: BTreeMap<SeriesKey, Output>,
    first_tick: Option<Nanos>,
    closed_through: Option<Nanos>,
    folded_through: Nanos,
    dirty_from: Option<Nanos>,
    /// After a restore: ticks in `(after, until]` are written on their next evaluation
    /// even when unchanged, since the stopped run may have written other values there
    /// after its last checkpoint.
    rewrite: Option<(Nanos, Nanos)>,
}

/// Writes the plan verdict of `key` judged at its verdict tick `t` on `value` (the series'
/// value there, where it has one): when the tick is first closed, when a correction
/// changed the value, and when a restore must write again what the stopped run may have
/// written (`force`). A plan edit applies to verdicts not yet written, and to a rewrite.
#[allow(clippy::too_many_arguments)]
fn judge(
    key: SeriesKey,
    target: f64,
    t: Nanos,
    value: Option<f64>,
    (is_new, force): (bool, bool),
    output: &mut Output,
    out: &mut Vec<Point>,
    stats: &mut CloseStats,
) {
    if output.verdict.is_some_and(|(at, _)| at != t) {
        // Judged already at another tick (the deadline was edited since): a plan edit
        // applies to verdicts not yet written.
        return;
    }
    let written = output.verdict.map(|(_, v)| v);
    let changed = written.is_none_or(|w| w.value != value);
    if !(is_new || force || changed) {
        return;
    }
    let verdict = match written {
        // The value did not change: the verdict written stands, whatever the plan says now.
        Some(w) if !changed => w,
        _ => VerdictFields::judge(value, target),
    };
    let correction = !is_new;
    if correction && changed {
        stats.corrections += 1;
    }
    output.verdict = Some((t, verdict));
    out.push(Point::verdict(key, t, verdict, correction));
}

/// What evaluating a tick of a group needs besides its outputs and levels.
#[derive(Debug, Clone, Copy)]
struct TickContext {
    group: Indicator,
    cadence: Nanos,
    rewrite: Option<(Nanos, Nanos)>,
}

/// Evaluates every output of a group at tick `t` from its slots' `levels` there: writes
/// the points whose fields differ from the point in force, and the plan verdicts due.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    outputs: &mut BTreeMap<SeriesKey, Output>,
    context: TickContext,
    t: Nanos,
    levels: &[(Slot, ExactSum)],
    is_new: bool,
    out: &mut Vec<Point>,
    stats: &mut CloseStats,
) {
    let level = |part: Part, tag: u8| -> f64 {
        levels
            .iter()
            .find(|(s, _)| s.part == part && s.tag == tag)
            .map_or(0.0, |(_, l)| l.value())
    };
    let TickContext {
        group,
        cadence,
        rewrite,
    } = context;
    let force = rewrite.is_some_and(|(after, until)| t > after && t <= until);
    for (key, output) in outputs.iter_mut() {
        let value = match key.indicator {
            Indicator::PlatformAvailability => {
                let total = level(Part::TotalSeconds, key.tag);
                (total > 0.0).then(|| level(Part::AvailableSeconds, key.tag) / total)
            }
            Indicator::DigitalEconomyAddedValueGrowth => {
                let p = level(Part::PreviousAddedValue, NO_TAG);
                (p > 0.0).then(|| level(Part::Value, NO_TAG) / p - 1.0)
            }
            Indicator::ScenarioFieldsCovered => Some(
                (0..8u8)
                    .filter(|tag| level(Part::Value, *tag) > 0.5)
                    .count() as f64,
            ),
            _ => Some(level(Part::Value, key.tag)),
        };
        debug_assert_eq!(key.indicator.group(), group);
        let value = value.filter(|v| v.is_finite());
        // A new tick whose value equals the tick just before writes nothing there: the
        // point in force is what that tick left (its value, or none since), and no
        // point lies at a new tick yet. Planned series move with time; never skipped.
        let unchanged = is_new
            && !force
            && output.plan.is_none()
            && output.last == Some((t.saturating_sub(cadence), value));
        output.last = Some((t, value));
        if unchanged {
            continue;
        }
        let judged = output.plan.as_ref().filter(|p| p.verdict_tick == t);
        if let Some(target) = judged.map(|p| p.target) {
            judge(*key, target, t, value, (is_new, force), output, out, stats);
        }
        let mut desired = value.map(Fields::value);
        if let Some(plan) = &output.plan {
            output.history.insert_at(t, desired.map(|f| f.value));
            if let (Some(f), true) = (desired.as_mut(), t >= plan.start) {
                let start_tick = tick_ceil(plan.start, cadence);
                let baseline = output.history.get(start_tick).copied().flatten();
                let back = tick_floor(t - PROJECTION_LOOKBACK, cadence);
                let v90 = output.history.get(back).copied().flatten();
                *f = pace_fields(plan, f.value, t, baseline, v90);
            }
        }
        let in_force = output
            .written
            .at_or_before(t)
            .map(|(_, f)| *f)
            .or_else(|| key.indicator.zero_default().then(|| Fields::value(0.0)));
        match desired.or(in_force.filter(|_| force)) {
            Some(f) => {
                let always = (is_new && f.status.is_some()) || force;
                if always || in_force != Some(f) {
                    if !is_new && in_force != Some(f) {
                        stats.corrections += 1;
                    }
                    output.written.insert_at(t, f);
                    out.push(Point::indicator(*key, t, f, !is_new));
                }
            }
            None => {
                if !is_new && output.written.contains(t) {
                    stats.unrepresentable += 1;
                }
            }
        }
    }
}

impl Group {
    /// A group with its cadence, its stream's correction horizon and the plan items of its
    /// series.
    pub fn new(group: Indicator, cadence: Nanos, horizon: Nanos, plans: Vec<PlanSpec>) -> Self {
        let mut g = Group {
            group,
            cadence,
            horizon,
            plans,
            slots: BTreeMap::new(),
            outputs: BTreeMap::new(),
            first_tick: None,
            closed_through: None,
            folded_through: Nanos::MIN,
            dirty_from: None,
            rewrite: None,
        };
        // Series that exist without data: planned ones, and the derived ones.
        let mut always: Vec<SeriesKey> = g.plans.iter().map(|p| p.series).collect();
        match group {
            Indicator::DigitalEconomyAddedValueCny => {
                always.push(SeriesKey::plain(Indicator::DigitalEconomyAddedValueCny));
                always.push(SeriesKey::plain(Indicator::DigitalEconomyAddedValueGrowth));
            }
            Indicator::ApplicationScenariosLiveByField => {
                always.push(SeriesKey::plain(Indicator::ScenarioFieldsCovered))
            }
            g if g.tag_kind().key().is_none() && g.zero_default() => {
                always.push(SeriesKey::plain(g))
            }
            _ => {}
        }
        for key in always {
            g.ensure_output(key);
        }
        g
    }

    /// Attaches the configured plan items to a restored group: targets, deadlines and
    /// tolerances as configured now, and new planned series.
    pub fn restore_plans(&mut self, plans: Vec<PlanSpec>) {
        self.plans = plans;
        for (key, output) in self.outputs.iter_mut() {
            output.plan = self.plans.iter().find(|p| p.series == *key).cloned();
        }
        let keys: Vec<SeriesKey> = self.plans.iter().map(|p| p.series).collect();
        for key in keys {
            self.ensure_output(key);
        }
    }

    /// After a restore from a checkpoint: every tick still open to corrections, and every
    /// new tick up to `until` (the latest the stopped run can have written), is written on
    /// its next evaluation whether or not it changed.
    pub fn rewrite_through(&mut self, until: Nanos) {
        let after = self.folded_through;
        self.rewrite = Some((after, until));
        if let Some(c) = self.closed_through {
            let first = after
                .saturating_add(self.cadence)
                .max(self.first_tick.unwrap_or(c));
            if first <= c {
                self.dirty_from = Some(self.dirty_from.map_or(first, |d| d.min(first)));
            }
        }
    }

    fn ensure_output(&mut self, key: SeriesKey) {
        // Called for every delta: the plan is looked up only for a series not seen before.
        if self.outputs.contains_key(&key) {
            return;
        }
        let plan = self.plans.iter().find(|p| p.series == key).cloned();
        self.outputs.insert(
            key,
            Output {
                plan,
                ..Default::default()
            },
        );
    }

    fn mark_dirty(&mut self, tick: Nanos) {
        if self.closed_through.is_some_and(|c| tick <= c) {
            self.dirty_from = Some(self.dirty_from.map_or(tick, |d| d.min(tick)));
        }
    }

    /// Applies one delta.
    pub fn apply(&mut self, d: &Delta) {
        let tick = tick_after(d.key, self.cadence);
        let output = match d.slot.part {
            Part::Value => Some(SeriesKey {
                indicator: d.slot.group,
                tag: d.slot.tag,
            }),
            Part::TotalSeconds => Some(SeriesKey {
                indicator: d.slot.group,
                tag: d.slot.tag,
            }),
            _ => None,
        };
        if let Some(key) = output {
            self.ensure_output(key);
        }
        let folded = self.folded_through;
        let closed = self.closed_through;
        let slot = self.slots.entry(d.slot).or_default();
        if tick <= folded {
            slot.base.add(d.amount);
        } else {
            slot.buckets.get_or_default(tick).add(d.amount);
        }
        if closed.is_some_and(|c| tick <= c) {
            slot.level_closed.add(d.amount);
        }
        self.mark_dirty(tick.max(folded.saturating_add(self.cadence)));
    }

    /// Sets the earliest accepted event time of the group's stream: ticks begin at the
    /// first tick after it.
    pub fn set_earliest(&mut self, earliest: Nanos) {
        let first = tick_after(earliest, self.cadence);
        if self.first_tick.is_none_or(|f| first < f) {
            self.first_tick = Some(first);
            self.mark_dirty(first);
        }
    }

    /// The last closed tick.
    pub fn closed_through(&self) -> Option<Nanos> {
        self.closed_through
    }

    fn level_at(&self, slot: &SlotState, t: Nanos) -> ExactSum {
        let mut level = slot.level_closed.clone();
        match self.closed_through {
            Some(c) if t == c => {}
            Some(c) if t < c => {
                for (_, b) in slot.buckets.between(t, c) {
                    level.sub_sum(b);
                }
            }
            Some(c) => {
                for (_, b) in slot.buckets.between(c, t) {
                    level.add_sum(b);
                }
            }
            None => {
                level = slot.base.clone();
                for (_, b) in slot.buckets.through(t) {
                    level.add_sum(b);
                }
            }
        }
        level
    }

    /// Closes every tick up to `through` (a tick time or not) and re-evaluates dirty ticks;
    /// appends the points to write.
    pub fn close(&mut self, through: Nanos, out: &mut Vec<Point>) -> CloseStats {
        let mut stats = CloseStats::default();
        let Some(first) = self.first_tick else {
            return stats;
        };
        let to = tick_floor(through, self.cadence);
        let old_closed = self.closed_through;
        let next_new = old_closed
            .map_or(first, |c| c.saturating_add(self.cadence))
            .max(first);
        let from = match self.dirty_from {
            Some(d) => d.max(first),
            None => next_new,
        };
        let to = to.max(old_closed.unwrap_or(Nanos::MIN));
        if from > to {
            return stats;
        }
        let mut running: Vec<(Slot, ExactSum)> = self
            .slots
            .iter()
            .map(|(s, st)| (*s, self.level_at(st, from)))
            .collect();
        // Each slot's buckets of (from, to], walked once in tick order alongside the ticks
        // rather than looked up per slot and tick (most ticks move few slots).
        let mut buckets: Vec<_> = self
            .slots
            .values()
            .map(|st| st.buckets.between(from, to).peekable())
            .collect();
        let context = TickContext {
            group: self.group,
            cadence: self.cadence,
            rewrite: self.rewrite,
        };
        let mut t = from;
        loop {
            for ((_, level), next) in running.iter_mut().zip(buckets.iter_mut()) {
                // A bucket off the grid of ticks is never reached (as no lookup at a tick
                // found it).
                while let Some((k, b)) = next.next_if(|(k, _)| *k <= t) {
                    if k == t {
                        level.add_sum(b);
                    }
                }
            }
            let is_new = old_closed.is_none_or(|c| t > c);
            evaluate(
                &mut self.outputs,
                context,
                t,
                &running,
                is_new,
                out,
                &mut stats,
            );
            if t >= to {
                break;
            }
            t = t.saturating_add(self.cadence);
        }
        drop(buckets);
        for (slot, level) in running {
            if let Some(st) = self.slots.get_mut(&slot) {
                st.level_closed = level;
            }
        }
        self.closed_through = Some(to);
        self.dirty_from = None;
        if let Some((after, until)) = &mut self.rewrite {
            *after = (*after).max(to);
            if *after >= *until {
                self.rewrite = None;
            }
        }
        self.fold(to);
        stats
    }

    /// Forgets what no correction can reach any more: deltas and written points older
    /// than the horizon (keeping the point in force there).
    fn fold(&mut self, closed: Nanos) {
        let keep_from = tick_floor(closed.saturating_sub(self.horizon), self.cadence)
            .saturating_sub(2 * self.cadence);
        if keep_from <= self.folded_through {
            return;
        }
        for st in self.slots.values_mut() {
            for (_, b) in st.buckets.drain_through(keep_from) {
                st.base.add_sum(&b);
            }
        }
        // Planned series look back to their start tick (baseline) and 90 days (projection)
        // from any tick still evaluated.
        let look_back = keep_from
            .saturating_sub(PROJECTION_LOOKBACK)
            .saturating_sub(self.cadence);
        let cadence = self.cadence;
        for o in self.outputs.values_mut() {
            o.written.keep_from_in_force_at(keep_from);
            let start_tick = o.plan.as_ref().map(|p| tick_ceil(p.start, cadence));
            o.history
                .retain(|t| t >= look_back || Some(t) == start_tick);
        }
        self.folded_through = keep_from;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::time::DAY;

    fn delta(key: Nanos, amount: f64) -> Delta {
        Delta {
            slot: Slot::value(Indicator::QuasiUnicorns, NO_TAG),
            key,
            amount,
        }
    }

    /// After a restore, every tick a stopped run may have written since its checkpoint is
    /// written again (unchanged values included), once; later closes write only changes.
    #[test]
    fn a_restored_group_rewrites_what_the_stopped_run_may_have_written() {
        let day = DAY;
        // Ticks are local midnights: tick k is `first + k days`.
        let first = tick_after(0, day);
        let tick = |k: i64| first + k * day;
        let mut g = Group::new(Indicator::QuasiUnicorns, day, 10 * day, Vec::new());
        g.apply(&delta(0, 1.0));
        g.apply(&delta(tick(3) - 1, 1.0));
        g.set_earliest(0);
        let mut out = Vec::new();
        g.close(tick(6), &mut out);
        let index = |p: &Point| (p.tick - first) / day;
        // Written on change only: 1 from tick 0, 2 from tick 3.
        assert_eq!(out.iter().map(index).collect::<Vec<_>>(), vec![0, 3]);

        let bytes = bincode::serialize(&g).expect("serializes");
        let mut restored: Group = bincode::deserialize(&bytes).expect("deserializes");
        restored.restore_plans(Vec::new());
        restored.rewrite_through(tick(9));
        let mut again = Vec::new();
        restored.close(tick(8), &mut again);
        let rewritten: Vec<(i64, f64)> = again.iter().map(|p| (index(p), p.fields.value)).collect();
        let expected: Vec<(i64, f64)> = (0..=8)
            .map(|k| (k, if k < 3 { 1.0 } else { 2.0 }))
            .collect();
        assert_eq!(
            rewritten, expected,
            "every tick up to the close, unchanged ones too"
        );
        let mut later = Vec::new();
        restored.close(tick(12), &mut later);
        assert_eq!(
            later.iter().map(index).collect::<Vec<_>>(),
            vec![9],
            "new ticks up to the bound only, then changes only"
        );
    }
}
