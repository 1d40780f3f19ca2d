//! Values by tick, for a series' written points, planned values and delta buckets, and
//! a platform's usage reports by instant.
//!
//! A series is evaluated tick after tick, so nearly every insert is past the last tick
//! held, and folding drops ticks from the front. A deque sorted by tick takes both in
//! constant time and searches by bisection, where a B-tree allocated and walked nodes for
//! each point written (a tenth of closing ticks, much of it first touches of fresh
//! memory). A correction inserts in the middle: a move of at most the horizon's ticks.

use std::collections::{BTreeMap, VecDeque};

use paceline_model::Nanos;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Values by key, in key order, mostly added at the end and dropped from the front.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sorted<K, V> {
    entries: VecDeque<(K, V)>,
}

/// Values by tick.
pub(crate) type TickMap<V> = Sorted<Nanos, V>;

impl<K, V> Default for Sorted<K, V> {
    fn default() -> Self {
        Sorted {
            entries: VecDeque::new(),
        }
    }
}

impl<K: Ord, V> Sorted<K, V> {
    /// Where `key` is held, or where it would go.
    fn search(&self, key: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    /// [`Sorted::search`], answered without a search when `key` is past the last key (the
    /// common case: keys come mostly in order).
    fn place(&self, key: &K) -> Result<usize, usize> {
        if self.entries.back().is_none_or(|(last, _)| last < key) {
            return Err(self.entries.len());
        }
        self.search(key)
    }

    /// Sets the value at `key`.
    pub fn insert_at(&mut self, key: K, v: V) {
        match self.place(&key) {
            Ok(i) => self.entries[i].1 = v,
            Err(i) => self.entries.insert(i, (key, v)),
        }
    }

    /// The first entry at or after `key`.
    pub fn first_from(&self, key: &K) -> Option<&(K, V)> {
        let i = self.entries.partition_point(|(k, _)| k < key);
        self.entries.get(i)
    }

    /// The last entry before `key`.
    pub fn last_before(&self, key: &K) -> Option<&(K, V)> {
        let i = self.entries.partition_point(|(k, _)| k < key);
        i.checked_sub(1).and_then(|i| self.entries.get(i))
    }

    /// Forgets the entries before `key` but the last of them.
    pub fn keep_last_before(&mut self, key: &K) {
        let before = self.entries.partition_point(|(k, _)| k < key);
        if before >= 2 {
            self.entries.drain(..before - 1);
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

impl<V> Sorted<Nanos, V> {
    /// The value at `t`.
    pub fn get(&self, t: Nanos) -> Option<&V> {
        self.search(&t).ok().map(|i| &self.entries[i].1)
    }

    /// The value at `t`, a default one put there first if none is.
    pub fn get_or_default(&mut self, t: Nanos) -> &mut V
    where
        V: Default,
    {
        let i = match self.place(&t) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (t, V::default()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// The ticks in `(after, through]` with their values, in order.
    pub fn between(&self, after: Nanos, through: Nanos) -> impl Iterator<Item = (Nanos, &V)> {
        let start = self.entries.partition_point(|(k, _)| *k <= after);
        let end = self.entries.partition_point(|(k, _)| *k <= through);
        self.entries
            .range(start..end.max(start))
            .map(|(k, v)| (*k, v))
    }

    /// The ticks at or before `t` with their values, in order.
    pub fn through(&self, t: Nanos) -> impl Iterator<Item = (Nanos, &V)> {
        let end = self.entries.partition_point(|(k, _)| *k <= t);
        self.entries.range(..end).map(|(k, v)| (*k, v))
    }

    /// Removes the ticks at or before `t` and returns them, in order.
    pub fn drain_through(&mut self, t: Nanos) -> impl Iterator<Item = (Nanos, V)> + '_ {
        let end = self.entries.partition_point(|(k, _)| *k <= t);
        self.entries.drain(..end)
    }

    /// Whether a value is held at `t`.
    pub fn contains(&self, t: Nanos) -> bool {
        self.search(&t).is_ok()
    }

    /// The latest tick at or before `t` and its value.
    pub fn at_or_before(&self, t: Nanos) -> Option<(Nanos, &V)> {
        // A new tick is evaluated past every tick written: `place` answers it without a
        // search.
        let i = match self.place(&t) {
            Ok(i) => Some(i),
            Err(i) => i.checked_sub(1),
        };
        i.map(|i| {
            let (k, v) = &self.entries[i];
            (*k, v)
        })
    }

    /// Forgets every tick before the latest one at or before `t` (that one stays: it is
    /// the value in force at `t`).
    pub fn keep_from_in_force_at(&mut self, t: Nanos) {
        let after = self.entries.partition_point(|(k, _)| *k <= t);
        if let Some(last_old) = after.checked_sub(1) {
            self.entries.drain(..last_old);
        }
    }

    /// Keeps the ticks `keep` says to.
    pub fn retain(&mut self, mut keep: impl FnMut(Nanos) -> bool) {
        self.entries.retain(|(k, _)| keep(*k));
    }
}

// As a map of key to value: the bytes of the B-tree map this replaced, so checkpoints
// written before read as they did.
impl<K: Serialize, V: Serialize> Serialize for Sorted<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: DeserializeOwned + Ord, V: DeserializeOwned> Deserialize<'de> for Sorted<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<K, V>::deserialize(d)?;
        Ok(Sorted {
            entries: map.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Bound;

    /// Against a B-tree map over random inserts, lookups, ranges and folds; and the same
    /// bytes.
    #[test]
    fn behaves_and_serializes_as_a_btree_map() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut ours, mut model) = (TickMap::default(), BTreeMap::new());
        let mut front = 0i64;
        for step in 0..20_000u32 {
            let t = match next(10) {
                // Mostly at or past the end, as a series is evaluated.
                0..=6 => front + next(3) as i64,
                _ => front - next(50) as i64,
            };
            front = front.max(t);
            match next(8) {
                0 => {
                    let at = front - next(60) as i64;
                    ours.keep_from_in_force_at(at);
                    if let Some((&last_old, _)) = model.range(..=at).next_back() {
                        model = model.split_off(&last_old);
                    }
                }
                1 => {
                    let at = front - next(40) as i64;
                    ours.retain(|k| k >= at || k % 7 == 0);
                    model.retain(|k, _| *k >= at || *k % 7 == 0);
                }
                4 => {
                    let at = front - next(60) as i64;
                    ours.keep_last_before(&at);
                    while model.range(..at).nth(1).is_some() {
                        model.pop_first();
                    }
                }
                2 => {
                    *ours.get_or_default(t) += step;
                    *model.entry(t).or_default() += step;
                }
                3 => {
                    let at = front - next(60) as i64;
                    let ours_old: Vec<_> = ours.drain_through(at).collect();
                    let keep = model.split_off(&(at + 1));
                    let model_old: Vec<_> =
                        std::mem::replace(&mut model, keep).into_iter().collect();
                    assert_eq!(ours_old, model_old);
                }
                _ => {
                    ours.insert_at(t, step);
                    model.insert(t, step);
                }
            }
            // Past the last key too, as a new tick's lookups are.
            let probe = front + 2 - next(82) as i64;
            assert_eq!(ours.get(probe), model.get(&probe));
            assert_eq!(ours.contains(probe), model.contains_key(&probe));
            assert_eq!(
                ours.at_or_before(probe),
                model.range(..=probe).next_back().map(|(k, v)| (*k, v))
            );
            let (lo, hi) = (probe - next(20) as i64, probe + next(20) as i64 - 10);
            assert!(ours
                .through(hi)
                .eq(model.range(..=hi).map(|(k, v)| (*k, v))));
            assert!(ours.between(lo, hi).eq(model
                .range((Bound::Excluded(lo), Bound::Included(hi.max(lo))))
                .map(|(k, v)| (*k, v))));
            assert_eq!(ours.len(), model.len());
            assert_eq!(
                ours.first_from(&probe).map(|(k, v)| (*k, *v)),
                model.range(probe..).next().map(|(k, v)| (*k, *v))
            );
            assert_eq!(
                ours.last_before(&probe).map(|(k, v)| (*k, *v)),
                model.range(..probe).next_back().map(|(k, v)| (*k, *v))
            );
        }
        let bytes = bincode::serialize(&ours).expect("serializes");
        assert_eq!(bytes, bincode::serialize(&model).expect("serializes"));
        let back: TickMap<u32> = bincode::deserialize(&bytes).expect("deserializes");
        assert_eq!(back, ours);
    }
}
