//! Where each partition's reading stands, and telling a position that retention passed
//! (messages deleted before they were read) from a gap compaction leaves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Tells a position that retention passed from a gap compaction leaves. librdkafka
/// answers a position retention passed by going on at the partition's first offset
/// (`auto.offset.reset = earliest`), so the sign is a message beyond the next expected
/// offset while the partition's first offset is beyond it too; a compacted topic has gaps
/// above its first offset, which are not resets.
#[derive(Default)]
pub struct Positions {
    /// Per partition, the offset the next message should have.
    next: HashMap<i32, i64>,
    /// Per partition, its first offset when last asked: gaps at or above it are
    /// compaction's, asked again after [`LOW_FRESH_FOR`].
    low: HashMap<i32, (i64, Instant)>,
    /// Per partition, the gaps read and not yet told apart (from the first expected offset
    /// to the last offset read past a gap): merged, so bounded by the partitions.
    unsure: HashMap<i32, (i64, i64)>,
    /// When to ask the broker again after it did not answer.
    retry_at: Option<Instant>,
}

/// How long a partition's first offset is trusted when telling gaps apart.
const LOW_FRESH_FOR: Duration = Duration::from_secs(10);

/// How long to wait before asking again for a first offset the broker did not give (a
/// loaded broker: a gap stays unsure until it answers, it is never dropped).
const LOW_RETRY_AFTER: Duration = Duration::from_secs(1);

impl Positions {
    /// Records a message at `offset` (`start`: where reading began in the partition,
    /// None at its beginning); a gap before it waits for [`Positions::settle`].
    pub fn read(&mut self, partition: i32, offset: i64, start: Option<i64>) {
        let expected = self.next.insert(partition, offset + 1).or(start);
        if let Some(expected) = expected.filter(|e| offset > *e) {
            self.unsure
                .entry(partition)
                .and_modify(|gap| gap.1 = offset)
                .or_insert((expected, offset));
        }
    }

    /// A position of `partition` moved on without a message (a tombstone).
    pub fn skip(&mut self, partition: i32, offset: i64) {
        self.next.insert(partition, offset + 1);
    }

    /// librdkafka reported resetting a position: ask for first offsets afresh.
    pub fn forget_lows(&mut self) {
        self.low.clear();
    }

    /// Tells the unsure gaps apart, asking `first_offset` (the broker) where the cached
    /// first offset does not settle it: returns the (partition, skipped range) retention
    /// passed. A gap whose first offset cannot be had stays for a later call.
    pub fn settle(
        &mut self,
        now: Instant,
        mut first_offset: impl FnMut(i32) -> Option<i64>,
    ) -> Vec<(i32, (i64, i64))> {
        if self.unsure.is_empty() || self.retry_at.is_some_and(|at| now < at) {
            return Vec::new();
        }
        let mut resets = Vec::new();
        let mut unanswered = HashMap::new();
        for (partition, (from, to)) in std::mem::take(&mut self.unsure) {
            let low = match self.low.get(&partition) {
                Some((low, at)) if now.duration_since(*at) < LOW_FRESH_FOR && *low <= from => {
                    Some(*low)
                }
                _ => first_offset(partition).inspect(|low| {
                    self.low.insert(partition, (*low, now));
                }),
            };
            match low {
                Some(low) if low > from => resets.push((partition, (from, to))),
                Some(_) => {}
                None => {
                    unanswered.insert(partition, (from, to));
                }
            }
        }
        self.retry_at = (!unanswered.is_empty()).then(|| now + LOW_RETRY_AFTER);
        self.unsure = unanswered;
        resets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_below_the_first_offset_is_a_reset_reported_once() {
        let now = Instant::now();
        let mut p = Positions::default();
        // Resumed at 100; retention moved the first offset to 105.
        p.read(0, 105, Some(100));
        p.read(0, 106, Some(100));
        assert_eq!(p.settle(now, |_| Some(105)), vec![(0, (100, 105))]);
        assert_eq!(p.settle(now, |_| panic!("nothing unsure")), vec![]);
    }

    #[test]
    fn a_gap_above_the_first_offset_is_compaction() {
        let now = Instant::now();
        let mut p = Positions::default();
        p.read(3, 10, None);
        p.read(3, 14, None);
        assert_eq!(p.settle(now, |_| Some(0)), vec![]);
        // No gap at all: nothing to ask.
        p.read(3, 15, None);
        assert_eq!(p.settle(now, |_| panic!("no gap")), vec![]);
    }

    #[test]
    fn a_gap_waits_while_the_broker_does_not_answer() {
        let now = Instant::now();
        let mut p = Positions::default();
        p.read(1, 50, Some(40));
        assert_eq!(p.settle(now, |_| None), vec![]);
        // Another gap in the same partition meanwhile: one range.
        p.read(1, 60, Some(40));
        // Not asked again before the retry delay.
        assert_eq!(p.settle(now, |_| panic!("asked too soon")), vec![]);
        let later = now + LOW_RETRY_AFTER;
        assert_eq!(p.settle(later, |_| Some(61)), vec![(1, (40, 60))]);
    }
}
