//! What a checkpoint waits for, in one place: the points handed to the sink and those the
//! database acknowledged, the dead letters queued and those the broker acknowledged, and
//! whether the run was abandoned. A checkpoint counts only once everything before it is
//! acknowledged; [`CommitProgress::reached`] is the only place that rule is decided.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use paceline_ingest::{DeadLetterProducer, IngestError};

/// The dead letters as the checkpoints see them: numbered as queued, acknowledged or not.
pub(crate) trait DeadLetterLedger: Send + Sync {
    /// The number the next dead letter gets.
    fn next_sequence(&self) -> u64;
    /// Whether every dead letter numbered below `sequence` is acknowledged.
    fn delivered_below(&self, sequence: u64) -> bool;
    /// Sends again what the broker refused; an error when one was refused for good.
    fn retry_failed(&self) -> Result<(), IngestError>;
}

impl DeadLetterLedger for DeadLetterProducer {
    fn next_sequence(&self) -> u64 {
        DeadLetterProducer::next_sequence(self)
    }
    fn delivered_below(&self, sequence: u64) -> bool {
        DeadLetterProducer::delivered_below(self, sequence)
    }
    fn retry_failed(&self) -> Result<(), IngestError> {
        DeadLetterProducer::retry_failed(self)
    }
}

/// Where the output stood when a snapshot was taken: what must be acknowledged before the
/// checkpoint made from it may count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Points handed to the sink before the snapshot.
    pub points: u64,
    /// Dead letters queued before the snapshot are numbered below this.
    pub dead_letters_below: u64,
}

#[derive(Default)]
struct Counts {
    handed: AtomicU64,
    acknowledged: AtomicU64,
    abandoned: AtomicBool,
    /// A checkpoint is on its way to disk: the next snapshot waits (or, alone, is skipped).
    writing: AtomicBool,
}

/// Shared by the dataflow's callback (points handed), the sink (points acknowledged), the
/// coordinator (marks, at snapshots) and the checkpoint writer (may it count?).
#[derive(Clone)]
pub struct CommitProgress {
    counts: Arc<Counts>,
    dead: Arc<dyn DeadLetterLedger>,
}

impl CommitProgress {
    pub(crate) fn new(dead: Arc<dyn DeadLetterLedger>) -> Self {
        CommitProgress {
            counts: Arc::default(),
            dead,
        }
    }

    /// `n` points went to the sink.
    pub fn handed(&self, n: u64) {
        self.counts.handed.fetch_add(n, Ordering::SeqCst);
    }

    /// The database acknowledged `n` more points.
    pub fn acknowledged(&self, n: u64) {
        self.counts.acknowledged.fetch_add(n, Ordering::SeqCst);
    }

    /// Where the output stands now. Taken after the dataflow's snapshot: every point of the
    /// epochs before it has been handed to the sink by then.
    pub fn mark(&self) -> Mark {
        Mark {
            points: self.counts.handed.load(Ordering::SeqCst),
            dead_letters_below: self.dead.next_sequence(),
        }
    }

    /// Whether everything before `mark` is acknowledged, points and dead letters; dead
    /// letters the broker refused are sent again first.
    pub fn reached(&self, mark: Mark) -> Result<bool, IngestError> {
        self.dead.retry_failed()?;
        Ok(
            self.counts.acknowledged.load(Ordering::SeqCst) >= mark.points
                && self.dead.delivered_below(mark.dead_letters_below),
        )
    }

    /// The run failed or stops without its output: a pending checkpoint is never written.
    pub fn abandon(&self) {
        self.counts.abandoned.store(true, Ordering::SeqCst);
    }

    pub fn abandoned(&self) -> bool {
        self.counts.abandoned.load(Ordering::SeqCst)
    }

    /// A checkpoint was handed to the writer, or the writer finished with it.
    pub fn set_writing(&self, writing: bool) {
        self.counts.writing.store(writing, Ordering::SeqCst);
    }

    pub fn writing(&self) -> bool {
        self.counts.writing.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Dead letters numbered from 0; `delivered` of them acknowledged, in order.
    #[derive(Default)]
    struct Ledger {
        queued: AtomicU64,
        delivered: AtomicU64,
        refused_for_good: Mutex<bool>,
    }

    impl DeadLetterLedger for Ledger {
        fn next_sequence(&self) -> u64 {
            self.queued.load(Ordering::SeqCst)
        }
        fn delivered_below(&self, sequence: u64) -> bool {
            self.delivered.load(Ordering::SeqCst) >= sequence
        }
        fn retry_failed(&self) -> Result<(), IngestError> {
            if *self.refused_for_good.lock().unwrap() {
                return Err(IngestError::DeadLetter {
                    topic: "dl".into(),
                    reason: "refused 5 times".into(),
                });
            }
            Ok(())
        }
    }

    /// Worked by hand: a mark counts once the points handed before it and the dead
    /// letters queued before it are acknowledged, not before, and what comes after it
    /// does not matter.
    #[test]
    fn a_mark_is_reached_once_everything_before_it_is_acknowledged() {
        let ledger = Arc::new(Ledger::default());
        let p = CommitProgress::new(ledger.clone());
        p.handed(10);
        ledger.queued.store(2, Ordering::SeqCst);
        let mark = p.mark();
        assert_eq!(
            mark,
            Mark {
                points: 10,
                dead_letters_below: 2
            }
        );
        p.handed(5);
        ledger.queued.store(3, Ordering::SeqCst);
        p.acknowledged(9);
        ledger.delivered.store(2, Ordering::SeqCst);
        assert!(!p.reached(mark).unwrap(), "one point of the ten is not in");
        p.acknowledged(1);
        assert!(p.reached(mark).unwrap());
        let later = p.mark();
        assert!(
            !p.reached(later).unwrap(),
            "5 points and 1 dead letter after"
        );
        p.acknowledged(5);
        assert!(
            !p.reached(later).unwrap(),
            "the third dead letter is not in"
        );
        ledger.delivered.store(3, Ordering::SeqCst);
        assert!(p.reached(later).unwrap());
    }

    #[test]
    fn a_dead_letter_refused_for_good_is_an_error_not_a_wait() {
        let ledger = Arc::new(Ledger::default());
        let p = CommitProgress::new(ledger.clone());
        *ledger.refused_for_good.lock().unwrap() = true;
        assert!(p.reached(p.mark()).is_err());
    }

    #[test]
    fn abandoning_and_writing_are_seen_by_every_clone() {
        let p = CommitProgress::new(Arc::new(Ledger::default()));
        let q = p.clone();
        assert!(!q.abandoned() && !q.writing());
        p.set_writing(true);
        p.abandon();
        assert!(q.abandoned() && q.writing());
        q.set_writing(false);
        assert!(!p.writing());
    }
}
