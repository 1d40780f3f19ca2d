//! Runs the dataflow on timely worker threads, fed through bounded channels.
//!
//! The feeding side (replay's reader, later the Kafka sources) sends one [`Epoch`] per
//! worker per epoch: that worker's share of the events and, from one source, the streams'
//! watermarks. Workers advance their inputs after every epoch, and stop taking input while
//! more than a few epochs are in flight, so memory stays bounded.
//!
//! Modules by concern: [`feed`] what workers are sent, [`marks`] the watermark rule,
//! [`shard`] where work lands, [`settings`] what the configuration gives, [`stats`] what
//! workers share with the service, [`epochs`] the whole-epoch discipline both operators
//! follow, [`entities_op`] and [`series_op`] the two operators, [`worker`] one worker's
//! loop.

mod entities_op;
mod epochs;
mod feed;
mod marks;
mod recycle;
mod series_op;
mod settings;
mod shard;
mod stats;
mod worker;

use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::bounded;
use paceline_model::point::Point;
use paceline_model::Event;

pub use feed::{Epoch, Feed};
pub use marks::WatermarkReport;
pub use recycle::Recycle;
pub use settings::DataflowSettings;
pub use shard::{stable_hash, writer_of, ROUTING_VERSION};
pub use stats::RunnerStats;

use crate::cluster::{Connected, Placement};
use feed::Inbox;
use worker::{restore_worker, WorkerRun, WorkerState};

/// Where points leave the dataflow: called on worker threads with the epoch they were
/// computed in (the index of the [`Epoch`] that let their ticks close) and the points.
/// May block: that is how a slow sink holds the dataflow back.
pub type PointsOut = Arc<dyn Fn(u64, Vec<Point>) + Send + Sync>;

/// Handle on running dataflow workers.
pub struct Runner {
    senders: Vec<Inbox>,
    guards: Option<timely::communication::initialize::WorkerGuards<()>>,
    /// Shared counters.
    pub stats: Arc<RunnerStats>,
    placement: Placement,
    /// Event vectors the entity operators have emptied, for the next epochs' shares.
    event_vecs: Recycle<Event>,
    /// Point vectors for the series operators, from whoever the points went to.
    point_vecs: Recycle<Point>,
}

/// The dataflow failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A checkpoint was taken with another worker count.
    #[error("the checkpoint has {parts} worker parts, the configuration {workers} workers")]
    WorkerCount {
        /// Parts in the checkpoint.
        parts: usize,
        /// Workers configured.
        workers: usize,
    },
    /// A worker's part of a checkpoint cannot be read.
    #[error("cannot read a worker's checkpoint part: {0}")]
    Restore(#[source] bincode::Error),
    /// A worker's state cannot be serialized.
    #[error("dataflow worker {index} cannot serialize its state: {source}")]
    Serialize {
        /// The worker.
        index: usize,
        /// bincode's error.
        source: bincode::Error,
    },
    /// timely could not start its workers (its message).
    #[error("cannot start the dataflow workers: {0}")]
    Start(String),
    /// A worker ended (its channel closed): it failed or panicked.
    #[error("dataflow worker {0} has stopped")]
    Stopped(usize),
    /// A worker failed (timely's message).
    #[error("a dataflow worker failed: {0}")]
    Worker(String),
}

impl Runner {
    /// Starts `settings.workers` timely workers; points leave through `points`. `restore`
    /// holds one snapshot part per worker (from [`Runner::snapshot`]) to start from.
    pub fn start(
        settings: DataflowSettings,
        points: PointsOut,
        restore: Option<Vec<Vec<u8>>>,
    ) -> Result<Runner, RunnerError> {
        Runner::start_in(settings, points, restore, None)
    }

    /// As [`Runner::start`], as this process's part of the cluster `cluster` (its workers
    /// are `settings.workers`; `restore` holds their parts).
    pub fn start_in(
        settings: DataflowSettings,
        points: PointsOut,
        restore: Option<Vec<Vec<u8>>>,
        cluster: Option<Connected>,
    ) -> Result<Runner, RunnerError> {
        let mut settings = settings;
        // Another process's events reach this one's workers only through the exchange.
        settings.input_routed &= cluster.is_none();
        let workers = settings.workers.max(1);
        let placement = cluster
            .as_ref()
            .map_or(Placement::single(workers), |c| c.placement);
        if let Some(parts) = &restore {
            if parts.len() != workers {
                return Err(RunnerError::WorkerCount {
                    parts: parts.len(),
                    workers,
                });
            }
        }
        let stats = Arc::new(RunnerStats::new(workers));
        // Each worker has at most a few epochs in flight (`step_while_behind`); room for
        // that many vectors per worker.
        let event_vecs = Recycle::new(4 * workers);
        let point_vecs = Recycle::new(4 * workers);
        // Restored here, before any worker starts, so that a bad part is an error, not a
        // worker's panic.
        let mut parts: Vec<Option<WorkerState>> = match restore {
            Some(parts) => parts
                .iter()
                .map(|p| restore_worker(p, &settings).map(Some))
                .collect::<Result<_, _>>()?,
            None => (0..workers).map(|_| None).collect(),
        };
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for part in parts.iter_mut() {
            let (tx, rx) = bounded::<Feed>(2);
            let thread = Arc::new(OnceLock::new());
            senders.push(Inbox {
                tx,
                thread: thread.clone(),
            });
            receivers.push(Some((rx, thread, part.take())));
        }
        let receivers = Arc::new(Mutex::new(receivers));
        let settings = Arc::new(settings);
        let worker_stats = stats.clone();
        let pools = (event_vecs.clone(), point_vecs.clone());
        let (builders, comms) = allocators(workers, cluster)?;
        let guards = timely::execute::execute_from(
            builders,
            comms,
            timely::WorkerConfig::default(),
            move |worker| {
                let local = placement
                    .local(worker.index())
                    .expect("timely runs this process's workers");
                let (rx, thread, restored) = receivers
                    .lock()
                    .ok()
                    .and_then(|mut r| r.get_mut(local).and_then(Option::take))
                    .expect("one receiver per worker");
                let _ = thread.set(std::thread::current());
                let run = WorkerRun {
                    local,
                    settings: &settings,
                    stats: &worker_stats,
                    points: &points,
                    pools: &pools,
                };
                run.run(worker, rx, restored);
            },
        )
        .map_err(RunnerError::Start)?;
        Ok(Runner {
            senders,
            guards: Some(guards),
            stats,
            placement,
            event_vecs,
            point_vecs,
        })
    }

    /// The pool point vectors go back to once their points are written: the series
    /// operators take their next epochs' vectors from it.
    pub fn point_vecs(&self) -> Recycle<Point> {
        self.point_vecs.clone()
    }

    /// Takes an aligned snapshot: every worker's state once every epoch sent so far is
    /// processed everywhere, one part per worker. Blocks until all parts are in.
    pub fn snapshot(&self) -> Result<Vec<Vec<u8>>, RunnerError> {
        let mut replies = Vec::new();
        for (i, tx) in self.senders.iter().enumerate() {
            let (reply, rx) = bounded(1);
            tx.send(Feed::Snapshot(reply))
                .map_err(|()| RunnerError::Stopped(i))?;
            replies.push(rx);
        }
        replies
            .into_iter()
            .enumerate()
            .map(|(i, rx)| rx.recv().map_err(|_| RunnerError::Stopped(i))?)
            .collect()
    }

    /// The worker of this process whose entity operator holds `event`'s entity, if that
    /// worker is on this process. An event handed to it goes through the exchange without
    /// leaving its thread (the exchange still routes every event: this only saves the
    /// crossing, it decides nothing).
    pub fn worker_of(&self, event: &Event) -> Option<usize> {
        let peers = self.placement.total() as u64;
        // The exchange's own choice: a mask for a power of two, which equals the modulo.
        self.placement
            .local((shard::entity_route(event) % peers.max(1)) as usize)
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    /// Sends worker `index` its input for the next epoch (blocks while it is busy).
    pub fn send(&self, index: usize, epoch: Epoch) -> Result<(), RunnerError> {
        self.senders[index]
            .send(Feed::Epoch(epoch))
            .map_err(|()| RunnerError::Stopped(index))
    }

    /// Sends every worker its share of the next epoch (`pending[i]` to worker `i`, emptied)
    /// and the watermark reports to worker 0.
    pub fn send_all(
        &self,
        pending: &mut [Vec<Event>],
        reports: Vec<WatermarkReport>,
    ) -> Result<(), RunnerError> {
        self.send_all_to(pending, reports, None)
    }

    /// As [`Runner::send_all`], the inputs then moved to epoch `advance_to` (None: the next).
    pub fn send_all_to(
        &self,
        pending: &mut [Vec<Event>],
        reports: Vec<WatermarkReport>,
        advance_to: Option<u64>,
    ) -> Result<(), RunnerError> {
        let mut reports = Some(reports);
        for (i, events) in pending.iter_mut().enumerate() {
            let reports = if i == 0 {
                reports.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            // The next epoch's share is about as large as this one's: room for it now
            // saves regrowing the vector event by event.
            let next = self.event_vecs.take(events.len());
            self.send(
                i,
                Epoch {
                    events: std::mem::replace(events, next),
                    reports,
                    advance_to,
                },
            )?;
        }
        Ok(())
    }

    /// Closes the inputs and waits for the workers to drain and stop.
    pub fn finish(mut self) -> Result<Arc<RunnerStats>, RunnerError> {
        let threads: Vec<_> = self.senders.iter().map(|s| s.thread.clone()).collect();
        self.senders.clear();
        // Parked workers see their closed channel now, not after their park.
        for t in threads.iter().filter_map(|t| t.get()) {
            t.unpark();
        }
        if let Some(guards) = self.guards.take() {
            for r in guards.join() {
                r.map_err(RunnerError::Worker)?;
            }
        }
        Ok(self.stats)
    }

    /// Leaves the workers to the process's exit, without closing their inputs or joining
    /// them: what a process of a cluster stopping alone does, since its workers end only
    /// with every other process's input, which joining would wait for. The other processes
    /// stop once this one's connections close.
    pub fn leave_to_exit(self) {
        // Whole: dropping the guards would join the workers, and dropping the senders would
        // close the inputs, which the other processes would see as this one's input ending
        // (its epochs complete) rather than as its connections closing.
        std::mem::forget(self);
    }
}

/// The timely communication of one process (`workers` threads), or of this process's part
/// of a cluster over the connections already made.
fn allocators(
    workers: usize,
    cluster: Option<Connected>,
) -> Result<
    (
        Vec<timely::communication::AllocatorBuilder>,
        Box<dyn std::any::Any + Send>,
    ),
    RunnerError,
> {
    use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
    use timely::communication::allocator::ProcessBuilder;
    let Some(c) = cluster else {
        return timely::CommunicationConfig::Process(workers)
            .try_build()
            .map_err(RunnerError::Start);
    };
    let hooks = timely::communication::Hooks::default();
    let local =
        ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, guard) =
        initialize_networking_from_sockets(local, c.sockets, c.placement.process, workers, hooks)
            .map_err(|e| RunnerError::Start(format!("cluster connections: {e}")))?;
    Ok((
        builders
            .into_iter()
            .map(timely::communication::AllocatorBuilder::Tcp)
            .collect(),
        Box::new(guard),
    ))
}
