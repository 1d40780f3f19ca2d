//! The Kafka watch: every few seconds, on a client of its own, whether the brokers answer
//! and the three topics still exist, and which partitions they have.
//!
//! Trouble (brokers unreachable or refusing the client, a topic deleted) turns `/readyz`
//! 503 with the reason at once; trouble that lasts `kafka.unavailable_timeout_s` stops the
//! service with that reason (exit 1) rather than leave it waiting unnoticed. Partitions
//! added to a topic get a source of their own, on the worker the stable rule names.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use paceline_dataflow::cluster::Placement;
use paceline_ingest::{partition_owner, TopicWatch};
use paceline_model::Stream;

use super::sources::Spawner;
use super::{PipelineError, ServeError};

/// Kafka as the watch last saw it: fine, or in trouble since when and why.
#[derive(Debug, Default)]
pub struct KafkaHealth {
    trouble: Mutex<Option<(Instant, String)>>,
}

impl KafkaHealth {
    /// Records a look: `None` when all was well. Trouble keeps the time it began.
    pub fn record(&self, trouble: Option<String>) {
        if let Ok(mut t) = self.trouble.lock() {
            *t = match (t.take(), trouble) {
                (_, None) => None,
                (Some((since, _)), Some(reason)) => Some((since, reason)),
                (None, Some(reason)) => Some((Instant::now(), reason)),
            };
        }
    }

    /// The trouble and how long it has lasted, if any.
    pub fn trouble(&self) -> Option<(Duration, String)> {
        let t = self.trouble.lock().ok()?;
        t.as_ref()
            .map(|(since, why)| (since.elapsed(), why.clone()))
    }
}

/// How often the watch looks.
const LOOK_EVERY: Duration = Duration::from_secs(2);

/// How long one metadata request may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(3);

/// The watch's inputs.
pub struct Watch {
    /// The metadata client and the topics, in `Stream::ALL` order.
    pub watch: TopicWatch,
    /// Partitions known per stream.
    pub known: Arc<Mutex<[Vec<i32>; 3]>>,
    /// The workers the partitions are divided among, and which of them run here.
    pub placement: Placement,
    /// `kafka.unavailable_timeout_s`.
    pub unavailable_timeout: Duration,
    /// What `/readyz` reads.
    pub health: Arc<KafkaHealth>,
    /// Starts sources for added partitions.
    pub spawner: Arc<Spawner>,
    /// Raised at shutdown.
    pub stop: Arc<AtomicBool>,
    /// Where lasting trouble is reported.
    pub fatal: tokio::sync::mpsc::UnboundedSender<ServeError>,
}

impl Watch {
    /// Looks every [`LOOK_EVERY`] until `stop`; returns after reporting lasting trouble.
    pub fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            match self.watch.look(LOOK_TIMEOUT) {
                Ok(partitions) => {
                    self.health.record(None);
                    if let Err(e) = self.start_added(&partitions) {
                        let _ = self
                            .fatal
                            .send(ServeError::Pipeline(e.in_part("kafka-watch")));
                        return;
                    }
                }
                Err(reason) => {
                    self.health.record(Some(reason));
                    if let Some((lasted, why)) = self.health.trouble() {
                        if lasted >= self.unavailable_timeout {
                            let _ = self.fatal.send(ServeError::Kafka(format!(
                                "unavailable for {} s (kafka.unavailable_timeout_s): {why}",
                                lasted.as_secs()
                            )));
                            return;
                        }
                    }
                }
            }
            let slept = Instant::now();
            while slept.elapsed() < LOOK_EVERY && !self.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Starts a source for every partition not seen before (a partition that disappears
    /// is the topic's trouble, reported by the next look).
    fn start_added(&self, partitions: &[Vec<i32>]) -> Result<(), PipelineError> {
        let mut known = self
            .known
            .lock()
            .map_err(|_| PipelineError::Panicked("kafka-watch".into()))?;
        for (s, now) in Stream::ALL.iter().zip(partitions) {
            let added: Vec<i32> = now
                .iter()
                .filter(|p| !known[s.index()].contains(p))
                .copied()
                .collect();
            if added.is_empty() {
                continue;
            }
            tracing::info!(
                stream = s.as_str(),
                ?added,
                "partitions added to the topic; reading them"
            );
            let mut by_worker: HashMap<usize, Vec<i32>> = HashMap::new();
            for p in &added {
                let owner = partition_owner(*s, *p, self.placement.total());
                // Another process of the cluster reads it.
                if self.placement.local(owner).is_some() {
                    by_worker.entry(owner).or_default().push(*p);
                }
            }
            for (worker, parts) in by_worker {
                // From the beginning: everything in a new partition is new.
                self.spawner
                    .spawn(worker, *s, &parts, &HashMap::new(), true)?;
            }
            known[s.index()].extend(added);
            known[s.index()].sort_unstable();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trouble_keeps_its_start_until_a_good_look() {
        let h = KafkaHealth::default();
        assert!(h.trouble().is_none());
        h.record(Some("brokers down".into()));
        std::thread::sleep(Duration::from_millis(30));
        h.record(Some("still down".into()));
        let (lasted, why) = h.trouble().expect("in trouble");
        assert!(lasted >= Duration::from_millis(30), "{lasted:?}");
        assert_eq!(why, "still down");
        h.record(None);
        assert!(h.trouble().is_none());
        h.record(Some("again".into()));
        assert!(h.trouble().expect("again").0 < Duration::from_millis(30));
    }
}
