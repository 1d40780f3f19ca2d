//! Event-time policy, in one place (docs/indicators.md, "Ticks and watermarks"; docs/events.md,
//! "Bad input"): what a stream's watermark is, what is `too_late`, what is a duplicate.
//!
//! - [`WatermarkRule`]: a stream's watermark from its partitions' progress: the minimum of
//!   the greatest accepted `occurred_at` over active partitions, minus the allowed
//!   out-of-orderness; idle partitions hold nothing back; all idle, the wall clock (or the
//!   greatest of them). Replay is one partition per stream, always active.
//! - [`Admission`]: per stream, `too_late` against the watermark minus the correction
//!   horizon, and duplicates by `event_id`. Ids are remembered for two correction horizons
//!   behind the watermark, then forgotten. Replay runs one `Admission` over the whole input
//!   sequence, so decisions follow the order of the input exactly as the spec defines
//!   them; serve runs one in its coordinator with the watermarks set from the rule.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use paceline_model::config::StreamsConfig;
use paceline_model::{Event, Nanos, SmolStr, Stream};
use serde::{Deserialize, Serialize};

/// Per-partition progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PartitionState {
    /// Greatest accepted `occurred_at`.
    pub max_at: Option<Nanos>,
    /// The source reported the partition idle, and no message came since.
    pub idle: bool,
}

/// A stream's watermark rule, given its partitions' states.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkRule {
    /// Allowed out-of-orderness.
    pub out_of_orderness: Nanos,
    /// All idle: follow the wall clock.
    pub follows_clock: bool,
}

impl WatermarkRule {
    /// The stream's watermark now (before the never-back rule), or None while an active
    /// partition has accepted nothing yet.
    pub fn compute(&self, parts: &[PartitionState], wall_clock: Nanos) -> Option<Nanos> {
        // Called for every event admitted: an iterator, not a vector allocated each time.
        let mut active = parts.iter().filter(|p| !p.idle).peekable();
        let base = if active.peek().is_none() {
            if self.follows_clock {
                Some(wall_clock)
            } else {
                parts.iter().filter_map(|p| p.max_at).max()
            }
        } else {
            let mut min = Nanos::MAX;
            for p in active {
                min = min.min(p.max_at?);
            }
            Some(min)
        };
        base.map(|b| b.saturating_sub(self.out_of_orderness))
    }

    /// The watermark after `current`, if the partitions move it forward: a watermark
    /// never moves back (an idle partition waking up with older data does not undo ticks).
    pub fn advance(
        &self,
        current: Option<Nanos>,
        parts: &[PartitionState],
        wall_clock: Nanos,
    ) -> Option<Nanos> {
        self.compute(parts, wall_clock)
            .filter(|w| current.is_none_or(|c| *w > c))
    }
}

/// What admission decided for a valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New: it enters the dataflow.
    Accepted,
    /// Same `event_id` as an accepted event: counted, changes nothing.
    Duplicate,
    /// Older than the watermark minus the correction horizon: rejected `too_late`.
    TooLate,
}

#[derive(Debug)]
struct Gate {
    out_of_orderness: Nanos,
    horizon: Nanos,
    max_at: Option<Nanos>,
    min_at: Option<Nanos>,
    /// A watermark set from outside (serve: the minimum over active partitions).
    external: Option<Nanos>,
    /// Judge `too_late` against `external` only (None: nothing is too late yet).
    external_only: bool,
    // Keyed by the event's own id: a `SmolStr` holds every id of up to 23 bytes in place,
    // so remembering one copies 24 bytes and allocates nothing (a longer one shares the
    // event's allocation). A key type of its own copied the bytes out through `memcpy`,
    // then read them back as words, about half of admission's time.
    seen: HashMap<SmolStr, Nanos, foldhash::quality::RandomState>,
    prune_at_len: usize,
}

impl Gate {
    fn watermark(&self) -> Option<Nanos> {
        if self.external_only {
            return self.external;
        }
        // One partition, always active: the same rule serve applies per partition.
        let rule = WatermarkRule {
            out_of_orderness: self.out_of_orderness,
            follows_clock: false,
        };
        let only = PartitionState {
            max_at: self.max_at,
            idle: false,
        };
        rule.compute(&[only], 0)
    }

    fn floor(&self) -> Option<Nanos> {
        self.watermark().map(|w| w.saturating_sub(self.horizon))
    }

    fn admit(&mut self, event: &Event) -> Verdict {
        let floor = self.floor();
        // Duplicates first (the spec's examples count a late repeat as a duplicate); one
        // lookup finds a repeat and the place of a new id.
        match self.seen.entry(event.id.clone()) {
            Entry::Occupied(_) => return Verdict::Duplicate,
            Entry::Vacant(_) if floor.is_some_and(|f| event.at < f) => return Verdict::TooLate,
            Entry::Vacant(new) => {
                new.insert(event.at);
            }
        }
        self.max_at = Some(self.max_at.map_or(event.at, |m| m.max(event.at)));
        self.min_at = Some(self.min_at.map_or(event.at, |m| m.min(event.at)));
        if self.seen.len() >= self.prune_at_len {
            // Forget ids of events a second horizon past the floor: memory stays bounded.
            if let Some(floor) = self.floor() {
                let keep = floor.saturating_sub(self.horizon);
                self.seen.retain(|_, at| *at >= keep);
            }
            self.prune_at_len = (self.seen.len() * 2).max(1024);
        }
        Verdict::Accepted
    }
}

/// Per-stream admission state.
#[derive(Debug)]
pub struct Admission {
    gates: [Gate; 3],
}

/// What a checkpoint keeps of one stream's admission: the configuration (out-of-orderness,
/// horizon) comes from the configuration at restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GateState {
    max_at: Option<Nanos>,
    min_at: Option<Nanos>,
    external: Option<Nanos>,
    /// Remembered ids with their `occurred_at`.
    seen: Vec<(String, Nanos)>,
}

/// What a checkpoint keeps of admission, per stream.
pub type AdmissionState = [GateState; 3];

impl Admission {
    /// Fresh state with the streams' out-of-orderness and horizons.
    pub fn new(streams: &StreamsConfig) -> Self {
        let gate = |s: Stream| {
            let c = streams.get(s);
            Gate {
                out_of_orderness: c.out_of_orderness(),
                horizon: c.horizon(),
                max_at: None,
                external: None,
                external_only: false,
                min_at: None,
                seen: HashMap::default(),
                prune_at_len: 1024,
            }
        };
        Admission {
            gates: [
                gate(Stream::Filings),
                gate(Stream::Telemetry),
                gate(Stream::Scenarios),
            ],
        }
    }

    /// Decides on one valid event and updates the stream's state.
    pub fn admit(&mut self, event: &Event) -> Verdict {
        self.gates[event.body.stream().index()].admit(event)
    }

    /// The stream's watermark: greatest accepted `occurred_at` minus out-of-orderness.
    pub fn watermark(&self, stream: Stream) -> Option<Nanos> {
        self.gates[stream.index()].watermark()
    }

    /// Admission whose watermarks are set from outside ([`Admission::set_watermark`]):
    /// serve computes them per partition, the minimum over active partitions, so the
    /// greatest `occurred_at` seen over all partitions must not judge `too_late`.
    pub fn with_external_watermarks(streams: &StreamsConfig) -> Self {
        let mut a = Admission::new(streams);
        for g in a.gates.iter_mut() {
            g.external_only = true;
        }
        a
    }

    /// Sets the stream's watermark (see [`Admission::with_external_watermarks`]).
    pub fn set_watermark(&mut self, stream: Stream, watermark: Nanos) {
        self.gates[stream.index()].external = Some(watermark);
    }

    /// The greatest accepted `occurred_at` of the stream.
    pub fn max_accepted(&self, stream: Stream) -> Option<Nanos> {
        self.gates[stream.index()].max_at
    }

    /// The earliest accepted `occurred_at` of the stream.
    pub fn min_accepted(&self, stream: Stream) -> Option<Nanos> {
        self.gates[stream.index()].min_at
    }

    /// The state to checkpoint.
    pub fn snapshot(&self) -> AdmissionState {
        self.gates.each_ref().map(|g| GateState {
            max_at: g.max_at,
            min_at: g.min_at,
            external: g.external,
            seen: g.seen.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        })
    }

    /// Puts back a checkpointed state (the streams' settings as configured now).
    pub fn restore(&mut self, state: AdmissionState) {
        for (g, s) in self.gates.iter_mut().zip(state) {
            g.max_at = s.max_at;
            g.min_at = s.min_at;
            g.external = s.external;
            g.seen = s.seen.iter().map(|(k, v)| (SmolStr::new(k), *v)).collect();
            g.prune_at_len = (g.seen.len() * 2).max(1024);
        }
    }

    /// Ids currently remembered for the stream (for memory accounting).
    pub fn remembered(&self, stream: Stream) -> usize {
        self.gates[stream.index()].seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::config::Config;
    use paceline_model::time::{DAY, SECOND};
    use paceline_model::Body;

    fn ev(id: &str, at: Nanos) -> Event {
        Event {
            id: id.into(),
            at,
            body: Body::Deregistered {
                enterprise: "E".into(),
            },
        }
    }

    #[test]
    fn duplicates_and_too_late() {
        let config = Config::default();
        let mut a = Admission::new(&config.streams);
        let t0 = 1_700_000_000 * SECOND;
        assert_eq!(a.admit(&ev("a", t0)), Verdict::Accepted);
        assert_eq!(
            a.admit(&ev("a", t0 + 5)),
            Verdict::Duplicate,
            "same id, whatever the content"
        );
        assert_eq!(a.watermark(Stream::Filings), Some(t0 - 300 * SECOND));
        // Exactly at the floor is accepted; one nanosecond older is too late.
        let floor = t0 - 300 * SECOND - 400 * DAY;
        assert_eq!(a.admit(&ev("b", floor)), Verdict::Accepted);
        assert_eq!(a.admit(&ev("c", floor - 1)), Verdict::TooLate);
        // A too-late event's id is not remembered.
        assert_eq!(a.admit(&ev("c", t0)), Verdict::Accepted);
        assert_eq!(a.watermark(Stream::Telemetry), None);
    }

    /// Ids held in place and on the heap, at the length between them, are told apart and
    /// found again, also after a checkpoint's round trip.
    #[test]
    fn ids_of_every_length_are_remembered_exactly() {
        let config = Config::default();
        let mut a = Admission::new(&config.streams);
        let t0 = 1_700_000_000 * SECOND;
        let ids: Vec<String> = (0..40)
            .map(|n| "x".repeat(n))
            .chain(["é·".repeat(12)])
            .collect();
        for id in &ids {
            assert_eq!(a.admit(&ev(id, t0)), Verdict::Accepted, "{id:?}");
        }
        let mut restored = Admission::new(&config.streams);
        restored.restore(a.snapshot());
        let mut kept = restored.snapshot()[0].seen.clone();
        kept.sort();
        let mut want: Vec<(String, Nanos)> = ids.iter().map(|i| (i.clone(), t0)).collect();
        want.sort();
        assert_eq!(kept, want);
        for id in &ids {
            assert_eq!(restored.admit(&ev(id, t0)), Verdict::Duplicate, "{id:?}");
        }
        assert_eq!(restored.admit(&ev(&"x".repeat(40), t0)), Verdict::Accepted);
    }

    #[test]
    fn external_watermarks_alone_judge_too_late() {
        let config = Config::default();
        let mut a = Admission::with_external_watermarks(&config.streams);
        // A partition far ahead does not make another partition's old events too late.
        assert_eq!(a.admit(&ev("a", 1000 * DAY)), Verdict::Accepted);
        assert_eq!(a.admit(&ev("b", 10 * DAY)), Verdict::Accepted);
        a.set_watermark(Stream::Filings, 1000 * DAY);
        assert_eq!(a.admit(&ev("c", 10 * DAY)), Verdict::TooLate);
        assert_eq!(a.admit(&ev("d", 700 * DAY)), Verdict::Accepted);
    }

    #[test]
    fn a_restored_admission_decides_as_the_original() {
        let config = Config::default();
        let mut a = Admission::with_external_watermarks(&config.streams);
        assert_eq!(a.admit(&ev("a", 500 * DAY)), Verdict::Accepted);
        assert_eq!(a.admit(&ev("b", 400 * DAY)), Verdict::Accepted);
        a.set_watermark(Stream::Filings, 900 * DAY);
        let mut b = Admission::with_external_watermarks(&config.streams);
        b.restore(a.snapshot());
        for (id, at) in [
            ("a", 10 * DAY),
            ("c", 100 * DAY),
            ("d", 600 * DAY),
            ("b", 0),
        ] {
            assert_eq!(b.admit(&ev(id, at)), a.admit(&ev(id, at)), "{id}");
        }
        assert_eq!(b.admit(&ev("a", 700 * DAY)), Verdict::Duplicate);
        assert_eq!(b.min_accepted(Stream::Filings), Some(400 * DAY));
        assert_eq!(b.max_accepted(Stream::Filings), Some(600 * DAY));
    }
}

#[cfg(test)]
mod watermark_tests {
    use super::*;

    const MIN: Nanos = 60_000_000_000;

    fn rule(follows_clock: bool) -> WatermarkRule {
        WatermarkRule {
            out_of_orderness: 5 * MIN,
            follows_clock,
        }
    }

    fn part(max: Nanos, idle: bool) -> PartitionState {
        PartitionState {
            max_at: Some(max),
            idle,
        }
    }

    #[test]
    fn watermark_is_the_minimum_over_active_partitions() {
        let r = rule(true);
        // Two active partitions: the slower one holds the stream back.
        assert_eq!(
            r.compute(&[part(100 * MIN, false), part(60 * MIN, false)], 0),
            Some(55 * MIN)
        );
        // An idle partition holds nothing back.
        assert_eq!(
            r.compute(&[part(100 * MIN, false), part(10 * MIN, true)], 0),
            Some(95 * MIN)
        );
        // An active partition that accepted nothing yet: no watermark.
        assert_eq!(
            r.compute(&[part(100 * MIN, false), PartitionState::default()], 0),
            None
        );
        // All idle: the wall clock, or (configured off) the greatest partition.
        let idle = [part(10 * MIN, true), part(20 * MIN, true)];
        assert_eq!(r.compute(&idle, 1000 * MIN), Some(995 * MIN));
        assert_eq!(rule(false).compute(&idle, 1000 * MIN), Some(15 * MIN));
        // An idle partition that never had data, beside an active one.
        let empty_idle = PartitionState {
            max_at: None,
            idle: true,
        };
        assert_eq!(
            r.compute(&[part(30 * MIN, false), empty_idle], 0),
            Some(25 * MIN)
        );
        // Never back: older data on a partition waking up leaves the watermark where it is.
        let parts = [part(100 * MIN, false), part(20 * MIN, false)];
        assert_eq!(r.advance(Some(50 * MIN), &parts, 0), None);
        assert_eq!(r.advance(Some(10 * MIN), &parts, 0), Some(15 * MIN));
        assert_eq!(r.advance(None, &parts, 0), Some(15 * MIN));
    }
}
