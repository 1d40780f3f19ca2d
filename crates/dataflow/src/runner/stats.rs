//! Counters, watermarks and heartbeats the workers share with the service.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use paceline_model::{Nanos, Stream};

use crate::entities::EntityCounts;

/// Counters the dataflow keeps, shared with the caller.
#[derive(Debug, Default)]
pub struct RunnerStats {
    /// Corrections by stream.
    pub corrections: [AtomicU64; 3],
    /// Unrepresentable corrections.
    pub unrepresentable: AtomicU64,
    /// Points emitted.
    pub points: AtomicU64,
    /// When each of this process's workers last went round its loop (milliseconds since
    /// the Unix epoch), one entry per worker: a worker that stops stepping is wedged (or
    /// blocked on a full sink) even while its peers step, waiting for it.
    last_step_ms: Box<[AtomicU64]>,
    /// Entities held per worker, as of each worker's last snapshot.
    pub entities: Mutex<Vec<EntityCounts>>,
    /// Per local worker, each stream's watermark over every source (of the whole
    /// cluster), as its series operator last applied it; `i64::MIN` before there is one.
    /// Workers apply the same watermarks epoch by epoch, but not at the same moment.
    applied: Box<[[AtomicI64; 3]]>,
}

impl RunnerStats {
    /// Stats of `workers` local workers; each counts as having stepped now, so that one
    /// stuck before its first step is found too.
    pub(super) fn new(workers: usize) -> Self {
        let now = now_ms();
        RunnerStats {
            applied: (0..workers.max(1))
                .map(|_| std::array::from_fn(|_| AtomicI64::new(i64::MIN)))
                .collect(),
            last_step_ms: (0..workers.max(1)).map(|_| AtomicU64::new(now)).collect(),
            ..RunnerStats::default()
        }
    }

    pub(super) fn beat(&self, worker: usize) {
        if let Some(last) = self.last_step_ms.get(worker) {
            last.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// The oldest of the local workers' last steps (milliseconds since the Unix epoch):
    /// the dataflow is as alive as its slowest worker.
    pub fn oldest_step_ms(&self) -> Option<u64> {
        self.last_step_ms
            .iter()
            .map(|t| t.load(Ordering::Relaxed))
            .min()
    }

    pub(super) fn applied(&self, worker: usize, stream: Stream, watermark: Nanos) {
        if let Some(w) = self.applied.get(worker) {
            w[stream.index()].fetch_max(watermark, Ordering::Relaxed);
        }
    }

    /// The stream's watermark over every source, as the furthest local worker applied
    /// it: where the cluster's input stands (an event older than its horizon is too
    /// late, whichever worker it goes to).
    pub fn watermark(&self, stream: Stream) -> Option<Nanos> {
        let w = self
            .applied
            .iter()
            .map(|w| w[stream.index()].load(Ordering::Relaxed))
            .max()?;
        (w != i64::MIN).then_some(w as Nanos)
    }

    /// The stream's watermark as every local worker has applied it: ticks before it are
    /// closed and their points handed over, whichever worker computes them.
    pub fn closed_through(&self, stream: Stream) -> Option<Nanos> {
        let w = self
            .applied
            .iter()
            .map(|w| w[stream.index()].load(Ordering::Relaxed))
            .min()?;
        (w != i64::MIN).then_some(w as Nanos)
    }

    pub(super) fn set_entities(&self, worker: usize, counts: EntityCounts) {
        if let Ok(mut e) = self.entities.lock() {
            if e.len() <= worker {
                e.resize(worker + 1, EntityCounts::default());
            }
            e[worker] = counts;
        }
    }

    /// Entities held, summed over the workers (as of their last snapshots).
    pub fn entity_counts(&self) -> EntityCounts {
        let mut sum = EntityCounts::default();
        if let Ok(e) = self.entities.lock() {
            for c in e.iter() {
                sum.enterprises += c.enterprises;
                sum.projects += c.projects;
                sum.scenarios += c.scenarios;
                sum.platforms += c.platforms;
                sum.events += c.events;
            }
        }
        sum
    }
}

/// The heartbeat's time: the service's clock, so that a jump of the system's does not
/// read as a worker that stopped stepping.
fn now_ms() -> u64 {
    (paceline_model::clock::now() / 1_000_000).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks are closed where the slowest local worker stands; the input stands where
    /// the furthest one does. A reader that took the furthest as "closed" read a series
    /// before its worker wrote it.
    #[test]
    fn ticks_are_closed_where_the_slowest_worker_stands() {
        let stats = RunnerStats::new(2);
        assert_eq!(stats.closed_through(Stream::Filings), None);
        stats.applied(0, Stream::Filings, 10);
        assert_eq!(stats.watermark(Stream::Filings), Some(10));
        assert_eq!(
            stats.closed_through(Stream::Filings),
            None,
            "worker 1 applied none"
        );
        stats.applied(1, Stream::Filings, 5);
        assert_eq!(stats.closed_through(Stream::Filings), Some(5));
        stats.applied(1, Stream::Filings, 12);
        assert_eq!(stats.closed_through(Stream::Filings), Some(10));
        assert_eq!(stats.watermark(Stream::Filings), Some(12));
        assert_eq!(stats.closed_through(Stream::Telemetry), None);
    }
}
