//! The Kafka watch: every few seconds, on a client of its own, whether the brokers answer
//! and the three topics still exist, and which partitions they have.
//!
//! Trouble (brokers unreachable or refusing the client, a topic deleted) turns `/readyz`
//! 503 with the reason at once; trouble that lasts `kafka.unavailable_timeout_s` stops the
//! service with that reason (exit 1) rather than leave it waiting unnoticed. Partitions
//! added to a topic get a source of their own, on the worker the stable rule names. After
//! each look it asks where each partition this process reads ends: the sources' lag.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paceline_dataflow::cluster::Placement;
use paceline_ingest::{create_missing_topics, partition_owner, NewTopicSpec, TopicWatch};
use paceline_model::Stream;
use rdkafka::config::ClientConfig;

use super::sources::Spawner;
use super::status::SourceStatus;
use super::supervisor::{Cancel, Fatal};
use super::trouble::Trouble;
use super::{PipelineError, ServeError};

/// Topics to create at start (`kafka.create_topics`): the client, the topics, and how long
/// the request may take (`kafka.metadata_timeout_s`).
pub struct ToCreate {
    /// The client settings.
    pub client: ClientConfig,
    /// The three input topics and the dead letters.
    pub topics: Vec<NewTopicSpec>,
    /// `kafka.metadata_timeout_s`.
    pub timeout: Duration,
}

/// The start's look: from the first second, the same watch as a running service's. It
/// looks until every topic is described (creating missing topics first when `create` says
/// so) and returns their partitions; trouble meanwhile is on `/readyz` and in the log, and
/// past `kafka.unavailable_timeout_s` it stops the start. A topic the brokers say does not
/// exist stops it at once, named: nothing but a person fixes that.
pub async fn first_look(
    watch: TopicWatch,
    health: &Trouble,
    mut create: Option<ToCreate>,
) -> Result<[Vec<i32>; 3], ServeError> {
    let watch = Arc::new(watch);
    loop {
        let w = watch.clone();
        let looked = tokio::task::spawn_blocking(move || w.look(LOOK_TIMEOUT)).await?;
        let brokers_answer = looked
            .as_ref()
            .map_or_else(|e| e.missing_topic.is_some(), |_| true);
        match (looked, create.take()) {
            (_, Some(c)) if brokers_answer => {
                let (client, topics, timeout) = (c.client.clone(), c.topics.clone(), c.timeout);
                let created = tokio::task::spawn_blocking(move || {
                    create_missing_topics(&client, &topics, timeout)
                })
                .await?;
                match created {
                    Ok(names) => {
                        if !names.is_empty() {
                            tracing::info!(created = ?names, "topics created (kafka.create_topics)");
                        }
                        continue;
                    }
                    Err(e) => {
                        health.record(Some(e.to_string()));
                        create = Some(c);
                        if let Some(why) = health.past_bound() {
                            return Err(ServeError::Kafka(why));
                        }
                    }
                }
            }
            (Ok(mut partitions), _) => {
                health.record(None);
                // The three input topics come first; any after them (the dead-letter
                // topic) only had to exist.
                partitions.truncate(3);
                return partitions.try_into().map_err(|_| {
                    ServeError::Kafka("the watch described another number of topics".into())
                });
            }
            (Err(e), c) => {
                create = c;
                if e.missing_topic.is_some() {
                    return Err(ServeError::Kafka(format!(
                        "{} (create it first, or set kafka.create_topics = true)",
                        e.reason
                    )));
                }
                health.record(Some(e.reason));
                if let Some(why) = health.past_bound() {
                    return Err(ServeError::Kafka(why));
                }
            }
        }
        tokio::time::sleep(LOOK_EVERY).await;
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
    /// What `/readyz` reads; it says the trouble in the log too.
    pub health: Arc<Trouble>,
    /// Starts sources for added partitions.
    pub spawner: Arc<Spawner>,
    /// Where the lag is kept (and shown: `paceline_source_lag_messages`).
    pub status: Arc<SourceStatus>,
    /// Raised at shutdown.
    pub stop: Cancel,
    /// Where lasting trouble is reported.
    pub fatal: Fatal,
}

impl Watch {
    /// Looks every [`LOOK_EVERY`] until `stop`; returns after reporting lasting trouble.
    pub fn run(self) {
        while !self.stop.is_cancelled() {
            match self.watch.look(LOOK_TIMEOUT) {
                Ok(partitions) => {
                    self.health.record(None);
                    if let Err(e) = self.start_added(&partitions) {
                        self.fatal
                            .report(ServeError::Pipeline(e.in_part("kafka-watch")));
                        return;
                    }
                    self.show_lag();
                }
                Err(e) => {
                    self.health.record(Some(e.reason));
                    if let Some(why) = self.health.past_bound() {
                        self.fatal.report(ServeError::Kafka(why));
                        return;
                    }
                }
            }
            self.stop.sleep(LOOK_EVERY);
        }
    }

    /// Each partition this process reads: messages between where its source stands and
    /// where the partition ends, asked of the broker here, on the watch's own client, so
    /// that the answer neither waits for a source nor holds one up. A partition the broker
    /// does not answer for keeps its last figure.
    fn show_lag(&self) {
        let known = self.known.lock().map(|k| k.clone()).unwrap_or_default();
        let read = self.spawner.read_positions();
        for (s, topic) in Stream::ALL.iter().zip(self.watch.topics()) {
            for p in &known[s.index()] {
                let owner = partition_owner(*s, *p, self.placement.total());
                if self.placement.local(owner).is_none() || self.stop.is_cancelled() {
                    continue;
                }
                // One unanswered question is enough for this round: the next look tells
                // whether the broker is in trouble.
                let Some((low, high)) = self.watch.watermarks(topic, *p, LOOK_TIMEOUT) else {
                    return;
                };
                // Before its source has read anything, a partition is behind by all it holds.
                let position = read.next(*s, *p).unwrap_or(low).max(low);
                self.status.set_lag(*s, *p, (high - position).max(0));
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
