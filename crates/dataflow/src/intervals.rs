//! Contributions as intervals, and the deltas that move a series when they change.
//!
//! An entity contributes `amount` to a slot over the ticks `T` in `(lo, hi]` (an event at
//! `t` counts for `T > t`; "from `T ≥ s`" is `lo = s − 1`). A series is the sum of the
//! intervals covering `T`, so it is kept as deltas: `+amount` at `lo`, `−amount` at `hi`
//! (a delta at key `k` applies to every tick `T > k`). When an entity's events change, its
//! intervals are recomputed and only the difference is sent, netted exactly per key.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use paceline_model::catalogue::Slot;
use paceline_model::time::tick_floor;
use paceline_model::{Indicator, Nanos};
use serde::{Deserialize, Serialize};

use crate::exact::{two_sum, ExactSum};

/// An open end: the interval lasts for ever.
pub const OPEN: Nanos = Nanos::MAX;

/// A change of a slot's level for every tick `T > key`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// The slot.
    pub slot: Slot,
    /// Applies to ticks after this instant.
    pub key: Nanos,
    /// The change.
    pub amount: f64,
}

/// One contribution: `amount` to `slot` for ticks in `(lo, hi]`. `sub` tells apart the
/// contributions of one entity to one slot (a quarter, for revenue).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The slot.
    pub slot: Slot,
    /// Distinguishes several contributions of one entity to one slot.
    pub sub: i64,
    /// Exclusive start.
    pub lo: Nanos,
    /// Inclusive end, or [`OPEN`].
    pub hi: Nanos,
    /// The amount.
    pub amount: f64,
}

impl Interval {
    pub(crate) fn sort_key(&self) -> (Slot, i64, Nanos, Nanos, u64) {
        (self.slot, self.sub, self.lo, self.hi, self.amount.to_bits())
    }
}

/// Deltas collected per (slot, tick span) and netted exactly, so that a retraction and a
/// re-insertion in the same span send nothing.
#[derive(Debug, Default)]
pub struct Netting {
    // A hash map, kept with its capacity from epoch to epoch: an epoch's spans are many
    // and scattered (a heartbeat reaches a day ahead), and the series operator sums
    // exactly, so the order deltas are added in does not matter. Its entries are 24
    // bytes: a sum is one `f64` while that holds it exactly (amounts are mostly whole
    // numbers), so an epoch's map stays in the core's cache; each first touch of an entry
    // was a cache miss when entries were exact sums of 40 bytes.
    sums: HashMap<SpanKey, f64, foldhash::fast::FixedState>,
    /// The sums one `f64` no longer holds exactly; their entry in `sums` is NaN.
    spilled: HashMap<SpanKey, ExactSum, foldhash::fast::FixedState>,
    /// Each group's tick grid, by [`Indicator::index`]; empty (keys kept as they are)
    /// until [`Netting::use_ticks`].
    grids: Vec<Grid>,
}

/// A group's tick cadence and the span the last key fell in.
#[derive(Debug, Clone, Copy)]
struct Grid {
    cadence: Nanos,
    last_floor: Option<Nanos>,
}

impl Grid {
    /// The start of the span `key` falls in. Keys come mostly in time order, so most fall
    /// in the span the key before fell in: a comparison instead of a division.
    fn floor(&mut self, key: Nanos) -> Nanos {
        let in_last = self.last_floor.filter(|f| {
            key.checked_sub(*f)
                .is_some_and(|d| (0..self.cadence).contains(&d))
        });
        if let Some(f) = in_last {
            return f;
        }
        let f = tick_floor(key, self.cadence);
        // `tick_floor` clamps a floor before the first representable instant to it, which
        // is then no tick of the grid: no span starts there.
        self.last_floor = (f != Nanos::MIN).then_some(f);
        f
    }
}

/// A slot and the start of a tick span, ordered as (slot, key).
///
/// Built in registers: a key struct of a 3-byte slot and a time was stored byte by byte
/// and read back as one word to be hashed, a store the load could not be forwarded from,
/// which made that load the hottest instruction of the netting. Two `u64`s, not one
/// `u128`: aligned to 8, a map entry (key and sum) keeps to 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SpanKey {
    slot: u64,
    /// The time with its sign bit flipped, so that unsigned order is the order of times.
    time: u64,
}

impl SpanKey {
    fn new(slot: Slot, key: Nanos) -> SpanKey {
        SpanKey {
            slot: u64::from(slot.pack()),
            time: (key as u64) ^ (1 << 63),
        }
    }

    fn slot(self) -> Slot {
        Slot::unpack(self.slot as u32)
    }

    fn key(self) -> Nanos {
        (self.time ^ (1 << 63)) as Nanos
    }
}

impl Hash for SpanKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u128((u128::from(self.slot) << 64) | u128::from(self.time));
    }
}

impl Netting {
    /// Sums deltas per tick span of their group's grid from now on.
    pub fn use_ticks(&mut self, cadence: impl Fn(Indicator) -> Nanos) {
        self.grids = Indicator::ALL
            .iter()
            .map(|i| Grid {
                cadence: cadence(*i),
                last_floor: None,
            })
            .collect();
    }

    /// Adds `amount` at `key`.
    pub fn add(&mut self, slot: Slot, key: Nanos, amount: f64) {
        if key == OPEN || amount == 0.0 {
            return;
        }
        // Every key in `[floor, floor + cadence)` moves the same ticks (those after the
        // span: a delta at `k` applies to `T > k`), so the span's deltas are summed under
        // its start: the series operator gets one delta per slot and tick an epoch moved,
        // not one per event, and the series are the same.
        let key = match self.grids.get_mut(slot.group.index()) {
            Some(g) => g.floor(key),
            None => key,
        };
        let k = SpanKey::new(slot, key);
        let sum = self.sums.entry(k).or_insert(0.0);
        if sum.is_nan() {
            self.spilled.entry(k).or_default().add(amount);
            return;
        }
        let (hi, lo) = two_sum(*sum, amount);
        if lo == 0.0 && hi.is_finite() {
            *sum = hi;
            return;
        }
        // One f64 no longer holds it: the sum so far and `amount` move to an exact sum.
        let mut exact = ExactSum::default();
        exact.add(*sum);
        exact.add(amount);
        self.spilled.insert(k, exact);
        *sum = f64::NAN;
    }

    /// Adds an interval (sign +1) or retracts it (sign −1).
    pub fn interval(&mut self, iv: &Interval, sign: f64) {
        if iv.lo >= iv.hi {
            return;
        }
        self.add(iv.slot, iv.lo, sign * iv.amount);
        self.add(iv.slot, iv.hi, -sign * iv.amount);
    }

    /// Adds (sign +1) or retracts (−1) `amount` to `slot` for ticks in `(lo, hi]`.
    pub fn span(&mut self, slot: Slot, lo: Nanos, hi: Nanos, amount: f64, sign: f64) {
        self.interval(
            &Interval {
                slot,
                sub: 0,
                lo,
                hi,
                amount,
            },
            sign,
        );
    }

    /// Moves the non-zero netted deltas out, in order of slot and key.
    pub fn drain_into(&mut self, out: &mut Vec<Delta>) {
        let start = out.len();
        // Most sums are one f64: one allocation, not a vector regrown as it fills.
        out.reserve(self.sums.len());
        for (k, sum) in self.sums.drain() {
            if sum.is_nan() {
                continue;
            }
            if sum != 0.0 {
                out.push(Delta {
                    slot: k.slot(),
                    key: k.key(),
                    amount: sum,
                });
            }
        }
        for (k, sum) in self.spilled.drain() {
            for &amount in sum.partials() {
                if amount != 0.0 {
                    out.push(Delta {
                        slot: k.slot(),
                        key: k.key(),
                        amount,
                    });
                }
            }
        }
        // The series operator files each delta under its tick in a vector sorted by tick:
        // in the hash map's order most were inserts in the middle, each moving the ticks
        // after it; in order they are appends or land on ticks already there.
        out[start..].sort_unstable_by_key(|d| SpanKey::new(d.slot, d.key));
    }
}

/// Sends the difference between an entity's old and new intervals.
pub fn diff(old: &mut [Interval], new: &mut [Interval], out: &mut Netting) {
    old.sort_by_key(Interval::sort_key);
    new.sort_by_key(Interval::sort_key);
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let ord = match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) => a.sort_key().cmp(&b.sort_key()),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                out.interval(&old[i], -1.0);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.interval(&new[j], 1.0);
                j += 1;
            }
        }
    }
}

/// Builds intervals from a piecewise-constant contribution: `segments` are breakpoints in
/// increasing order, each with what the entity contributes for `T` in `(b, next b]`.
#[derive(Debug, Default)]
pub struct Sweep {
    // A vector, not a map: an entity has a few dozen contributions at most, and each
    // segment lists them in the order the one before did, so the search from `cursor`
    // finds each at its first look. The order intervals come out in does not matter
    // (`diff` sorts them).
    open: Vec<Open>,
    done: Vec<Interval>,
    cursor: usize,
    segment: u32,
}

/// A contribution running since `lo`; `seen` is the last segment that listed it.
#[derive(Debug, Clone, Copy)]
struct Open {
    slot: Slot,
    sub: i64,
    lo: Nanos,
    amount: f64,
    seen: u32,
}

impl Open {
    fn until(&self, hi: Nanos) -> Interval {
        Interval {
            slot: self.slot,
            sub: self.sub,
            lo: self.lo,
            hi,
            amount: self.amount,
        }
    }
}

impl Sweep {
    /// Sets the contribution from breakpoint `b` on.
    pub fn segment(&mut self, b: Nanos, contributions: &[(Slot, i64, f64)]) {
        self.segment = self.segment.wrapping_add(1);
        let now = self.segment;
        for &(slot, sub, amount) in contributions {
            match self.find(slot, sub) {
                Some(i) => {
                    let o = &mut self.open[i];
                    o.seen = now;
                    if o.amount.to_bits() != amount.to_bits() {
                        self.done.push(o.until(b));
                        o.lo = b;
                        o.amount = amount;
                    }
                }
                None => {
                    self.cursor = self.open.len();
                    self.open.push(Open {
                        slot,
                        sub,
                        lo: b,
                        amount,
                        seen: now,
                    });
                }
            }
            self.cursor += 1;
        }
        let done = &mut self.done;
        self.open.retain(|o| {
            if o.seen == now {
                true
            } else {
                done.push(o.until(b));
                false
            }
        });
        self.cursor = 0;
    }

    /// Starts from contributions already running (intervals still open at the last
    /// segment walked before, with their start), as if their segments had been walked.
    pub fn resume<'a>(&mut self, running: impl IntoIterator<Item = &'a Interval>) {
        let now = self.segment;
        self.open.extend(running.into_iter().map(|iv| Open {
            slot: iv.slot,
            sub: iv.sub,
            lo: iv.lo,
            amount: iv.amount,
            seen: now,
        }));
    }

    /// Where `(slot, sub)` is open, looking from the cursor on first.
    fn find(&mut self, slot: Slot, sub: i64) -> Option<usize> {
        let n = self.open.len();
        let start = self.cursor.min(n);
        let hit = (start..n)
            .chain(0..start)
            .find(|&i| self.open[i].slot == slot && self.open[i].sub == sub)?;
        self.cursor = hit;
        Some(hit)
    }

    /// Closes every open contribution at [`OPEN`] and returns the intervals.
    pub fn finish(mut self) -> Vec<Interval> {
        self.done.extend(self.open.iter().map(|o| o.until(OPEN)));
        self.done.retain(|iv| iv.lo < iv.hi && iv.amount != 0.0);
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::catalogue::NO_TAG;
    use paceline_model::Indicator;

    /// A reproducible stream of pseudo-random words (xorshift64) from a non-zero seed.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// Sums kept as one `f64` while exact, spilled to exact sums when not: over random
    /// adds (amounts whose sums stop being one exact `f64`, keys hit in runs and
    /// scattered), each key's drained deltas sum exactly to the exact sum of what was
    /// added to it, and a key whose adds cancel sends nothing.
    #[test]
    fn netted_deltas_sum_exactly_to_what_was_added_per_key() {
        let amounts = [
            1.0, -1.0, 3600.0, -3600.0, 0.1, -0.3, 1e16, -1e16, 1e-16, 7.0,
        ];
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15_u64);
        let mut n = Netting::default();
        n.use_ticks(|_| 3600);
        for epoch in 0..20 {
            let mut expected: HashMap<(Slot, Nanos), ExactSum> = HashMap::new();
            for _ in 0..5_000 {
                let r = next();
                let slot = Slot::value(Indicator::ALL[(r % 3) as usize], (r >> 8) as u8 % 4);
                let key = if r.is_multiple_of(5) {
                    (r >> 16) as i64 % 1_000_000
                } else {
                    (epoch * 100 + (r >> 20) as i64 % 8) * 3600 + 17
                };
                let amount = amounts[(r >> 32) as usize % amounts.len()];
                n.add(slot, key, amount);
                expected
                    .entry((slot, tick_floor(key, 3600)))
                    .or_default()
                    .add(amount);
            }
            let mut out = Vec::new();
            n.drain_into(&mut out);
            assert!(
                out.windows(2)
                    .all(|w| (w[0].slot, w[0].key) <= (w[1].slot, w[1].key)),
                "drained in order of slot and key"
            );
            let mut got: HashMap<(Slot, Nanos), ExactSum> = HashMap::new();
            for d in &out {
                assert_ne!(d.amount, 0.0, "a zero delta is never sent");
                got.entry((d.slot, d.key)).or_default().add(d.amount);
            }
            expected.retain(|_, sum| !sum.is_zero());
            assert_eq!(
                got.len(),
                expected.len(),
                "keys with a non-zero sum, epoch {epoch}"
            );
            for (key, sum) in &expected {
                let value = got.get(key).map(ExactSum::value);
                assert_eq!(
                    value.map(f64::to_bits),
                    Some(sum.value().to_bits()),
                    "{key:?}"
                );
            }
        }
    }

    /// A map entry stays as small as the comment on [`Netting`] says.
    #[test]
    fn netting_entries_take_24_bytes() {
        assert_eq!(std::mem::size_of::<(SpanKey, f64)>(), 24);
    }

    /// The span remembered from the key before gives the floor `tick_floor` gives: keys
    /// in runs, scattered, negative, and at the ends of the representable instants.
    #[test]
    fn a_grid_floors_as_tick_floor_does() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d_u64);
        for cadence in [1, 7, 3600, 86_400_000_000_000] {
            let mut g = Grid {
                cadence,
                last_floor: None,
            };
            let mut key = 0i64;
            for i in 0..20_000 {
                let r = next();
                key = match r % 6 {
                    0 => r as i64,
                    1 => Nanos::MIN.saturating_add((r % 100_000) as i64 * cadence / 7),
                    2 => Nanos::MAX - (r % 1_000) as i64,
                    3 => -((r >> 8) as i64 % (1 << 50)),
                    _ => key.saturating_add((r >> 40) as i64 % (2 * cadence + 1) - cadence / 2),
                };
                assert_eq!(
                    g.floor(key),
                    tick_floor(key, cadence),
                    "{i}: {key} by {cadence}"
                );
            }
        }
    }

    #[test]
    fn deregistration_moves_only_the_end() {
        let slot = Slot::value(Indicator::QuasiUnicorns, NO_TAG);
        let mut s = Sweep::default();
        s.segment(10, &[(slot, 0, 1.0)]);
        let mut old = s.finish();
        let mut s = Sweep::default();
        s.segment(10, &[(slot, 0, 1.0)]);
        s.segment(50, &[]);
        let mut new = s.finish();
        let mut n = Netting::default();
        diff(&mut old, &mut new, &mut n);
        let mut out = Vec::new();
        n.drain_into(&mut out);
        assert_eq!(
            out,
            vec![Delta {
                slot,
                key: 50,
                amount: -1.0
            }]
        );
    }
}
