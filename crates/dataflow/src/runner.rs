//! Runs the dataflow on timely worker threads, fed through bounded channels.
//!
//! The feeding side (replay's reader, later the Kafka sources) sends one [`Epoch`] per
//! worker per epoch: that worker's share of the events and, from one source, the streams'
//! watermarks. Workers advance their inputs after every epoch, and stop taking input while
//! more than a few epochs are in flight, so memory stays bounded.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError};
use paceline_model::catalogue::{SeriesKey, NO_TAG};
use paceline_model::config::{Config, PlanSpec};
use paceline_model::point::Point;
use paceline_model::time::tick_after;
use paceline_model::{Event, Indicator, Nanos, Stream};
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use crate::cluster::{Connected, Placement};
use crate::entities::{entity_kind, Entities, EntityCounts};
use crate::intervals::Delta;
use crate::series::Group;

/// Progress of one stream as seen by one source.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WatermarkReport {
    /// The reporting source (a worker index).
    pub source: u32,
    /// The stream.
    pub stream: Stream,
    /// Ticks up to here may close.
    pub watermark: Option<Nanos>,
    /// The earliest accepted `occurred_at` of the stream: ticks begin after it.
    pub earliest: Option<Nanos>,
    /// End of input: close every tick up to the first tick after this instant (the greatest
    /// accepted `occurred_at` of any stream).
    pub end_of_input: Option<Nanos>,
    /// Every partition of the stream this source reads is idle (see [`Marks`]).
    pub idle: bool,
}

/// The streams' watermarks from every source's reports: one watermark per stream over
/// every source, by the rule one process applies to its partitions. The least over the
/// sources with active partitions (a source that reported the stream without a watermark
/// yet holds it back, so that a process whose partitions have not been read yet does not
/// let the others close ticks its events belong to); when every source is idle, the
/// greatest. Never moves back. Both operators follow this one rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Marks {
    /// Per (source, stream): its latest watermark, and whether all its partitions are idle.
    latest: HashMap<(u32, Stream), (Option<Nanos>, bool)>,
    global: [Option<Nanos>; 3],
}

impl Marks {
    /// Takes one epoch's reports. The watermarks are settled once all are in: a source's
    /// first report (a hold) must count before another's watermark can move the stream.
    fn record_all<'r>(&mut self, reports: impl IntoIterator<Item = &'r WatermarkReport>) {
        let mut streams = [false; 3];
        for r in reports {
            let e = self
                .latest
                .entry((r.source, r.stream))
                .or_insert((None, r.idle));
            e.1 = r.idle;
            if let Some(w) = r.watermark {
                e.0 = Some(e.0.map_or(w, |x| x.max(w)));
            }
            streams[r.stream.index()] = true;
        }
        for s in Stream::ALL.into_iter().filter(|s| streams[s.index()]) {
            self.settle(s);
        }
    }

    fn settle(&mut self, stream: Stream) {
        let of_stream = || {
            self.latest
                .iter()
                .filter(|((_, s), _)| *s == stream)
                .map(|(_, v)| *v)
        };
        let active: Vec<Option<Nanos>> = of_stream()
            .filter(|(_, idle)| !idle)
            .map(|(w, _)| w)
            .collect();
        let now = if active.is_empty() {
            of_stream().filter_map(|(w, _)| w).max()
        } else {
            active
                .iter()
                .copied()
                .collect::<Option<Vec<Nanos>>>()
                .and_then(|ws| ws.into_iter().min())
        };
        if let Some(now) = now {
            let g = &mut self.global[stream.index()];
            *g = Some(g.map_or(now, |x| x.max(now)));
        }
    }

    /// The stream's watermark over every source.
    fn of(&self, stream: Stream) -> Option<Nanos> {
        self.global[stream.index()]
    }
}

/// One worker's input for one epoch.
#[derive(Debug, Default)]
pub struct Epoch {
    /// Accepted events.
    pub events: Vec<Event>,
    /// Watermark reports.
    pub reports: Vec<WatermarkReport>,
    /// The epoch the worker's input moves to once this is given (at its current one);
    /// None: the next. Processes of a cluster number epochs by the clock, so that they
    /// advance together, and may give several inputs in one epoch.
    pub advance_to: Option<u64>,
}

/// What a worker is sent: the next epoch's input, or a request for its state.
#[derive(Debug)]
pub enum Feed {
    /// Input of one epoch.
    Epoch(Epoch),
    /// Once every epoch sent before has been processed by every worker, serialize this
    /// worker's state and send it back. No worker is sent input meanwhile, so the parts
    /// all describe the same point of the input (an aligned snapshot).
    Snapshot(Sender<Result<Vec<u8>, RunnerError>>),
}

/// What the dataflow needs from the configuration.
#[derive(Debug, Clone)]
pub struct DataflowSettings {
    /// Cadence of each group.
    pub cadence: HashMap<Indicator, Nanos>,
    /// Correction horizon of each stream.
    pub horizon: [Nanos; 3],
    /// Plan items.
    pub plans: Vec<PlanSpec>,
    /// Filing lag.
    pub filing_lag: Nanos,
    /// Worker threads.
    pub workers: usize,
    /// How far the correction cutoff moves between two folds of every entity, per stream.
    pub fold_every: [Nanos; 3],
    /// Restoring: rewrite every tick up to here on its next evaluation
    /// ([`Group::rewrite_through`]).
    pub rewrite_until: Option<Nanos>,
}

impl DataflowSettings {
    /// From a validated configuration.
    pub fn from_config(config: &Config) -> Self {
        DataflowSettings {
            cadence: Indicator::ALL
                .iter()
                .map(|i| (*i, config.cadence(*i)))
                .collect(),
            horizon: Stream::ALL.map(|s| config.streams.get(s).horizon()),
            plans: config.plan_specs(),
            filing_lag: config.filing_lag(),
            workers: config.dataflow.workers,
            fold_every: Stream::ALL.map(|s| (config.streams.get(s).horizon() / 8).max(1)),
            rewrite_until: None,
        }
    }

    fn plans_of(&self, shard: Shard) -> Vec<PlanSpec> {
        self.plans
            .iter()
            .filter(|p| Shard::of_series(p.series.indicator.group(), p.series.tag) == shard)
            .cloned()
            .collect()
    }

    fn new_group(&self, shard: Shard) -> Group {
        let group = shard.group;
        Group::new(
            group,
            self.cadence[&group],
            self.horizon[group.stream().index()],
            self.plans_of(shard),
        )
    }
}

/// The unit of work of the series stage: a whole group, or one tag's part of a group whose
/// series each depend on their own tag's slots only. A few groups carry most of the deltas
/// (platform availability alone about half of them on the generated district), so whole
/// groups left the series stage to one worker; per-tag shards spread those groups too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// The group.
    pub group: Indicator,
    /// The tag this shard holds, or [`NO_TAG`] when it holds the whole group.
    pub tag: u8,
}

impl Shard {
    /// Whether every series of `group` is computed from slots of its own tag alone.
    /// `scenario_fields_covered` counts over every field's slots, so its group stays whole.
    fn splits_by_tag(group: Indicator) -> bool {
        group.tag_kind().key().is_some() && group != Indicator::ApplicationScenariosLiveByField
    }

    /// The shard holding the slot or series with this tag.
    pub fn of_series(group: Indicator, tag: u8) -> Shard {
        let tag = if Shard::splits_by_tag(group) {
            tag
        } else {
            NO_TAG
        };
        Shard { group, tag }
    }

    /// Every shard: the whole groups, and each tag value of the groups split by tag.
    pub fn all() -> Vec<Shard> {
        Indicator::ALL
            .iter()
            .filter(|i| i.group() == **i)
            .flat_map(|&group| {
                let tags = if Shard::splits_by_tag(group) {
                    group.tag_kind().tags()
                } else {
                    vec![NO_TAG]
                };
                tags.into_iter().map(move |tag| Shard { group, tag })
            })
            .collect()
    }

    /// The exchange key: a group's shards go to consecutive workers, each group starting
    /// at its own index, so the tags of one heavy group land on different workers.
    fn route(self) -> u64 {
        let tag = if self.tag == NO_TAG {
            0
        } else {
            self.tag as u64
        };
        self.group.index() as u64 + tag
    }

    /// Whether worker `index` of `peers` holds this shard.
    fn held_by(self, index: usize, peers: usize) -> bool {
        (self.route() % peers as u64) as usize == index
    }
}

/// The worker (of `total_workers`, cluster-wide) whose series operator computes and emits
/// `series`: the only one that writes it.
pub fn writer_of(series: SeriesKey, total_workers: usize) -> usize {
    (Shard::of_series(series.indicator.group(), series.tag).route() % total_workers.max(1) as u64)
        as usize
}

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
    fn new(workers: usize) -> Self {
        let now = now_ms();
        RunnerStats {
            applied: (0..workers.max(1))
                .map(|_| std::array::from_fn(|_| AtomicI64::new(i64::MIN)))
                .collect(),
            last_step_ms: (0..workers.max(1)).map(|_| AtomicU64::new(now)).collect(),
            ..RunnerStats::default()
        }
    }

    fn beat(&self, worker: usize) {
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

    fn applied(&self, worker: usize, stream: Stream, watermark: Nanos) {
        if let Some(w) = self.applied.get(worker) {
            w[stream.index()].fetch_max(watermark as i64, Ordering::Relaxed);
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

    fn set_entities(&self, worker: usize, counts: EntityCounts) {
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

/// One worker's feed: the channel, and the worker's thread to wake once something is in
/// it (a worker with nothing to do parks instead of polling).
struct Inbox {
    tx: Sender<Feed>,
    thread: Arc<OnceLock<std::thread::Thread>>,
}

impl Inbox {
    fn send(&self, feed: Feed) -> Result<(), ()> {
        self.tx.send(feed).map_err(|_| ())?;
        // A worker that found its channel empty and parked wakes now; one that has not
        // parked yet keeps the token and returns from its next park at once.
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
        Ok(())
    }
}

/// How long a worker with nothing in its channel and nothing scheduled parks before it
/// looks again (it is woken earlier by input and by other workers' messages); also the
/// heartbeat's resolution.
const IDLE_PARK: Duration = Duration::from_millis(50);

/// The version of [`entity_route`] and of the shards' placement, recorded in every
/// checkpoint: state restored under another routing would sit on the wrong workers.
pub const ROUTING_VERSION: u32 = 1;

/// Routes an event to the worker that holds its entity: [`stable_hash`] of the entity's
/// kind, a 0 byte and its id. Never std's `DefaultHasher`, whose algorithm a toolchain
/// upgrade may change under restored state.
fn entity_route(e: &Event) -> u64 {
    let kind = entity_kind(&e.body).as_bytes();
    let id = e.body.entity().as_bytes();
    stable_hash([kind, &[0], id])
}

/// FNV-1a (64 bits) over the parts in order, then SplitMix64's finalizer so that the low
/// bits (a modulo by the worker count) depend on every byte. Fixed: part of the routing
/// version.
pub fn stable_hash<const N: usize>(parts: [&[u8]; N]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in parts {
        for b in part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The series operator's state on one worker: the groups it owns and the streams' progress.
struct SeriesWorker {
    settings: Arc<DataflowSettings>,
    stats: Arc<RunnerStats>,
    /// This worker's index among the process's workers, for its entry in the stats.
    local: usize,
    state: SeriesState,
}

/// What a snapshot keeps of a series operator.
#[derive(Debug, Serialize, Deserialize)]
struct SeriesState {
    groups: BTreeMap<Shard, Group>,
    marks: Marks,
    earliest: [Option<Nanos>; 3],
    end: Option<Nanos>,
}

/// One worker's part of a snapshot.
#[derive(Serialize, Deserialize)]
struct WorkerState {
    entities: Entities,
    /// The entity operator's view of the watermarks (its cutoffs follow them).
    marks: Marks,
    series: SeriesState,
}

/// Restores a worker's state from its snapshot part, with the plan as configured now.
fn restore_worker(bytes: &[u8], settings: &DataflowSettings) -> Result<WorkerState, RunnerError> {
    let mut state: WorkerState = bincode::deserialize(bytes).map_err(RunnerError::Restore)?;
    for (shard, group) in state.series.groups.iter_mut() {
        group.restore_plans(settings.plans_of(*shard));
        if let Some(until) = settings.rewrite_until {
            group.rewrite_through(until);
        }
    }
    Ok(state)
}

impl SeriesWorker {
    fn new(
        settings: &Arc<DataflowSettings>,
        stats: Arc<RunnerStats>,
        local: usize,
        index: usize,
        peers: usize,
    ) -> Self {
        let groups = Shard::all()
            .into_iter()
            .filter(|s| s.held_by(index, peers))
            .map(|s| (s, settings.new_group(s)))
            .collect();
        SeriesWorker {
            settings: settings.clone(),
            stats,
            local,
            state: SeriesState {
                groups,
                marks: Marks::default(),
                earliest: [None; 3],
                end: None,
            },
        }
    }

    /// Applies one complete epoch and closes the ticks its watermarks allow.
    fn epoch(&mut self, deltas: &[Delta], reports: Vec<WatermarkReport>) -> Vec<Point> {
        let st = &mut self.state;
        for d in deltas {
            if let Some(g) = st
                .groups
                .get_mut(&Shard::of_series(d.slot.group, d.slot.tag))
            {
                g.apply(d);
            }
        }
        st.marks.record_all(&reports);
        for r in reports {
            if let Some(e) = r.earliest {
                let slot = &mut st.earliest[r.stream.index()];
                *slot = Some(slot.map_or(e, |x| x.min(e)));
            }
            if let Some(e) = r.end_of_input {
                st.end = Some(st.end.map_or(e, |x| x.max(e)));
            }
        }
        let mut out = Vec::new();
        for (shard, g) in st.groups.iter_mut() {
            let ind = &shard.group;
            let stream = ind.stream();
            let Some(e) = st.earliest[stream.index()] else {
                continue;
            };
            g.set_earliest(e);
            let through = match st.end {
                Some(end) => Some(tick_after(end, self.settings.cadence[ind])),
                None => st.marks.of(stream),
            };
            if let Some(through) = through {
                let s = g.close(through, &mut out);
                self.stats.corrections[stream.index()].fetch_add(s.corrections, Ordering::Relaxed);
                self.stats
                    .unrepresentable
                    .fetch_add(s.unrepresentable, Ordering::Relaxed);
            }
        }
        for s in Stream::ALL {
            if let Some(w) = st.marks.of(s) {
                self.stats.applied(self.local, s, w);
            }
        }
        self.stats
            .points
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }
}

/// The oldest stashed epoch if it is complete (no input can add to it: both frontiers
/// have passed it), taken out: epochs are processed whole and in order.
fn next_complete<D>(
    stash: &mut Stash<D>,
    complete: impl Fn(&u64) -> bool,
) -> Option<(u64, StashEntry<D>)> {
    let entry = stash.first_entry()?;
    let t = *entry.key();
    complete(&t).then(|| (t, entry.remove()))
}

type StashEntry<D> = (Option<Capability<u64>>, Vec<D>, Vec<WatermarkReport>);

type Stash<D> = BTreeMap<u64, StashEntry<D>>;

/// Stashes what arrived for an epoch, keeping one capability for it.
fn stash_input<D>(
    stash: &mut Stash<D>,
    cap: &timely::dataflow::operators::InputCapability<u64>,
    port: usize,
    data: Option<&mut Vec<D>>,
    reports: Option<&mut Vec<WatermarkReport>>,
) {
    let Some(&t) = cap.least() else { return };
    let entry = stash
        .entry(t)
        .or_insert_with(|| (None, Vec::new(), Vec::new()));
    entry.0 = entry.0.take().or_else(|| cap.retain_least(port));
    if let Some(d) = data {
        entry.1.append(d);
    }
    if let Some(r) = reports {
        entry.2.append(r);
    }
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
                };
                run.run(worker, rx, restored);
            },
        )
        .map_err(RunnerError::Start)?;
        Ok(Runner {
            senders,
            guards: Some(guards),
            stats,
        })
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
            let next = Vec::with_capacity(events.len());
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

/// What one worker thread runs with.
struct WorkerRun<'a> {
    /// This process's index of the worker.
    local: usize,
    settings: &'a Arc<DataflowSettings>,
    stats: &'a Arc<RunnerStats>,
    points: &'a PointsOut,
}

impl WorkerRun<'_> {
    /// Builds one worker's dataflow and feeds it until its channel closes: events exchanged by
    /// entity to the entity operator, deltas exchanged by group to the series operator, the
    /// watermark reports broadcast to both. Both operators take each epoch whole, in order,
    /// once no input can add to it: a snapshot then holds exactly the epochs before it, even
    /// while other processes of a cluster already send the next ones.
    fn run(
        self,
        worker: &mut timely::worker::Worker,
        rx: Receiver<Feed>,
        restored: Option<WorkerState>,
    ) {
        let WorkerRun {
            local,
            settings,
            stats,
            points,
        } = self;
        let index = worker.index();
        let peers = worker.peers();
        let (entities, marks, series) = match restored {
            Some(s) => (s.entities, s.marks, s.series),
            None => {
                let fresh = SeriesWorker::new(settings, stats.clone(), local, index, peers);
                (
                    Entities::new(settings.filing_lag),
                    Marks::default(),
                    fresh.state,
                )
            }
        };
        let entities = Rc::new(RefCell::new(entities));
        let marks = Rc::new(RefCell::new(marks));
        let series = Rc::new(RefCell::new(SeriesWorker {
            settings: settings.clone(),
            stats: stats.clone(),
            local,
            state: series,
        }));
        let mut events_in: InputHandle<u64, CapacityContainerBuilder<Vec<Event>>> =
            InputHandle::new();
        let mut reports_in: InputHandle<u64, CapacityContainerBuilder<Vec<WatermarkReport>>> =
            InputHandle::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let reports = scope.input_from(&mut reports_in).broadcast();
            let horizon = settings.horizon;
            let fold_every = settings.fold_every;
            let ent = entities.clone();
            let ent_marks = marks.clone();
            let deltas = scope
                .input_from(&mut events_in)
                .binary_frontier::<_, CapacityContainerBuilder<Vec<Delta>>, _, _, _, _>(
                    reports.clone(),
                    Exchange::new(|e: &Event| entity_route(e)),
                    timely::dataflow::channels::pact::Pipeline,
                    "Entities",
                    move |_cap, _info| {
                        let mut stash: Stash<Event> = BTreeMap::new();
                        move |(in1, f1), (in2, f2), output| {
                            let port = output.output_index();
                            in1.for_each(|cap, data| {
                                stash_input(&mut stash, &cap, port, Some(data), None)
                            });
                            in2.for_each(|cap, data| {
                                stash_input(&mut stash, &cap, port, None, Some(data))
                            });
                            let complete = |t: &u64| !(f1.less_equal(t) || f2.less_equal(t));
                            while let Some((_, (cap, events, reports))) =
                                next_complete(&mut stash, complete)
                            {
                                let mut entities = ent.borrow_mut();
                                let mut out: Vec<Delta> = Vec::new();
                                for e in events {
                                    entities.apply(e, &mut out);
                                }
                                if let Some(cap) = cap {
                                    output.session(&cap).give_container(&mut out);
                                }
                                // A cutoff holds for the events of later epochs only: applied
                                // after its own epoch's events.
                                let mut m = ent_marks.borrow_mut();
                                m.record_all(&reports);
                                for s in Stream::ALL {
                                    if let Some(w) = m.of(s) {
                                        let c = w.saturating_sub(horizon[s.index()]);
                                        entities.set_cutoff(s, c, fold_every[s.index()]);
                                    }
                                }
                            }
                        }
                    },
                );
            let ser = series.clone();
            let points = points.clone();
            deltas
                .binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
                    reports,
                    Exchange::new(|d: &Delta| Shard::of_series(d.slot.group, d.slot.tag).route()),
                    timely::dataflow::channels::pact::Pipeline,
                    "Series",
                    move |_cap, _info| {
                        let mut stash: Stash<Delta> = BTreeMap::new();
                        move |(in1, f1), (in2, f2), output| {
                            let port = output.output_index();
                            in1.for_each(|cap, data| {
                                stash_input(&mut stash, &cap, port, Some(data), None)
                            });
                            in2.for_each(|cap, data| {
                                stash_input(&mut stash, &cap, port, None, Some(data))
                            });
                            let complete = |t: &u64| !(f1.less_equal(t) || f2.less_equal(t));
                            // The capability is held until the points are handed over.
                            while let Some((t, (_cap, deltas, reports))) =
                                next_complete(&mut stash, complete)
                            {
                                let out = ser.borrow_mut().epoch(&deltas, reports);
                                if !out.is_empty() {
                                    points(t, out);
                                }
                            }
                        }
                    },
                )
                .probe_with(&probe);
        });
        let mut epoch: u64 = 0;
        // A worker that steps is alive, waiting for a slow peer included: only one stuck
        // inside a step stops the heartbeat (and turns /healthz red).
        let beat = || stats.beat(local);
        loop {
            beat();
            while probe.less_than(&epoch.saturating_sub(2)) {
                worker.step_or_park(Some(IDLE_PARK));
                beat();
            }
            match rx.try_recv() {
                Ok(Feed::Epoch(msg)) => {
                    paceline_model::failpoint::check_at("worker", local);
                    events_in.send_batch(&mut { msg.events });
                    reports_in.send_batch(&mut { msg.reports });
                    let next = msg.advance_to.unwrap_or(epoch + 1).max(epoch);
                    if next > epoch {
                        epoch = next;
                        events_in.advance_to(epoch);
                        reports_in.advance_to(epoch);
                    }
                    worker.step();
                }
                Ok(Feed::Snapshot(reply)) => {
                    while probe.less_than(&epoch) {
                        worker.step_or_park(Some(IDLE_PARK));
                        beat();
                    }
                    let ent = entities.borrow();
                    stats.set_entities(local, ent.counts());
                    let state = WorkerStateRef {
                        entities: &ent,
                        marks: &marks.borrow(),
                        series: &series.borrow().state,
                    };
                    let bytes = bincode::serialize(&state)
                        .map_err(|source| RunnerError::Serialize { index, source });
                    let _ = reply.send(bytes);
                }
                Err(TryRecvError::Empty) => {
                    worker.step_or_park(Some(IDLE_PARK));
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        drop(events_in);
        drop(reports_in);
        while worker.step() {}
    }
}

/// [`WorkerState`] by reference, to serialize without a copy.
#[derive(Serialize)]
struct WorkerStateRef<'a> {
    entities: &'a Entities,
    marks: &'a Marks,
    series: &'a SeriesState,
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::catalogue::{Part, Slot};

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

    /// Pinned: a change of these values is a change of routing, which needs a new
    /// [`ROUTING_VERSION`] (values computed apart, by a few lines of Python).
    #[test]
    fn the_routing_hash_is_fixed_and_spreads() {
        assert_eq!(
            stable_hash([b"enterprise".as_slice(), &[0], b"E1001"]),
            0x5d6a_d86e_57e6_7cc5
        );
        assert_eq!(stable_hash([b"".as_slice()]), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(stable_hash([b"a".as_slice()]), 0x02c0_bdbf_4814_20f8);
        let mut per_worker = [0usize; 4];
        for i in 0..4000 {
            let id = format!("E{i:05}");
            per_worker
                [(stable_hash([b"enterprise".as_slice(), &[0], id.as_bytes()]) % 4) as usize] += 1;
        }
        assert!(
            per_worker.iter().all(|n| (850..1150).contains(n)),
            "{per_worker:?}"
        );
    }

    fn report(source: u32, watermark: Option<Nanos>, idle: bool) -> WatermarkReport {
        WatermarkReport {
            source,
            stream: Stream::Filings,
            watermark,
            earliest: None,
            end_of_input: None,
            idle,
        }
    }

    /// One watermark per stream over the sources, worked by hand: a source without a
    /// watermark holds the stream back even when it reports after another in the same
    /// epoch; the least over active sources, the greatest once all are idle; never back.
    #[test]
    fn one_watermark_over_every_source() {
        let mut m = Marks::default();
        let of = |m: &Marks| m.of(Stream::Filings);
        m.record_all(&[report(0, Some(10), false), report(1, None, false)]);
        assert_eq!(of(&m), None, "process 1 has not read yet");
        m.record_all(&[report(1, Some(5), false)]);
        assert_eq!(of(&m), Some(5));
        m.record_all(&[report(0, Some(12), false), report(1, Some(7), false)]);
        assert_eq!(of(&m), Some(7));
        m.record_all(&[report(1, Some(9), true)]);
        assert_eq!(of(&m), Some(12), "an idle process holds nothing back");
        m.record_all(&[report(0, Some(14), true)]);
        assert_eq!(of(&m), Some(14), "all idle: the greatest");
        m.record_all(&[report(1, Some(11), false)]);
        assert_eq!(of(&m), Some(14), "never moves back");
        m.record_all(&[report(1, Some(20), false)]);
        assert_eq!(of(&m), Some(20));
        assert_eq!(m.of(Stream::Telemetry), None, "streams are apart");
        let mut alone = Marks::default();
        alone.record_all(&[report(0, Some(3), false)]);
        assert_eq!(alone.of(Stream::Filings), Some(3), "one source: its own");
    }

    /// Every slot the operators can write lands in a shard some worker holds, exactly one
    /// whatever the worker count; the field-coverage group stays whole, and the tags of a
    /// heavy group are spread over two workers.
    #[test]
    fn every_slot_has_one_holder_and_heavy_groups_spread() {
        let all = Shard::all();
        for group in Indicator::ALL.iter().filter(|i| i.group() == **i) {
            let tags: Vec<u8> = (0..u8::MAX)
                .filter(|t| group.tag_kind().value(*t).is_some())
                .chain([NO_TAG])
                .collect();
            for tag in tags {
                let shard = Shard::of_series(*group, tag);
                if group.tag_kind().value(tag).is_some() || !Shard::splits_by_tag(*group) {
                    assert!(all.contains(&shard), "{group:?} tag {tag} has no shard");
                }
                for peers in 1..=5 {
                    let holders = (0..peers).filter(|w| shard.held_by(*w, peers)).count();
                    assert_eq!(holders, 1, "{shard:?} with {peers} workers");
                }
            }
        }
        let covered = Shard::of_series(Indicator::ApplicationScenariosLiveByField, 3);
        assert_eq!(
            covered.tag, NO_TAG,
            "scenario_fields_covered reads every field"
        );
        let slot = Slot {
            group: Indicator::PlatformAvailability,
            part: Part::TotalSeconds,
            tag: 0,
        };
        let kinds: Vec<Shard> = (0..4)
            .map(|tag| Shard::of_series(slot.group, tag))
            .collect();
        assert_eq!(kinds.len(), 4);
        let on_first = kinds.iter().filter(|s| s.held_by(0, 2)).count();
        assert_eq!(on_first, 2, "four platform kinds, two per worker");
    }
}
