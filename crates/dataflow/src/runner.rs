//! Runs the dataflow on timely worker threads, fed through bounded channels.
//!
//! The feeding side (replay's reader, later the Kafka sources) sends one [`Epoch`] per
//! worker per epoch: that worker's share of the events and, from one source, the streams'
//! watermarks. Workers advance their inputs after every epoch, and stop taking input while
//! more than a few epochs are in flight, so memory stays bounded.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
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

use crate::entities::{entity_kind, Entities};
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
}

/// One worker's input for one epoch.
#[derive(Debug, Default)]
pub struct Epoch {
    /// Accepted events.
    pub events: Vec<Event>,
    /// Watermark reports.
    pub reports: Vec<WatermarkReport>,
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
        }
    }

    fn new_group(&self, group: Indicator) -> Group {
        let plans = self
            .plans
            .iter()
            .filter(|p| p.series.indicator.group() == group)
            .cloned()
            .collect();
        Group::new(
            group,
            self.cadence[&group],
            self.horizon[group.stream().index()],
            plans,
        )
    }
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
    /// When a worker last went round its loop (milliseconds since the Unix epoch): a
    /// worker that stops stepping is wedged (or blocked on a full sink).
    pub last_step_ms: AtomicU64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where points leave the dataflow: called on worker threads with the epoch they were
/// computed in (the index of the [`Epoch`] that let their ticks close) and the points.
/// May block: that is how a slow sink holds the dataflow back.
pub type PointsOut = Arc<dyn Fn(u64, Vec<Point>) + Send + Sync>;

/// Handle on running dataflow workers.
pub struct Runner {
    senders: Vec<Sender<Epoch>>,
    guards: Option<timely::communication::initialize::WorkerGuards<()>>,
    /// Shared counters.
    pub stats: Arc<RunnerStats>,
}

/// Routes an event to the worker that holds its entity.
fn entity_route(e: &Event) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (entity_kind(&e.body), e.body.entity()).hash(&mut h);
    h.finish()
}

/// The series operator's state on one worker: the groups it owns and the streams' progress.
struct SeriesWorker {
    settings: Arc<DataflowSettings>,
    stats: Arc<RunnerStats>,
    groups: BTreeMap<Indicator, Group>,
    /// Latest watermark per (source, stream).
    marks: HashMap<(u32, Stream), Nanos>,
    earliest: [Option<Nanos>; 3],
    end: Option<Nanos>,
}

impl SeriesWorker {
    fn new(
        settings: &Arc<DataflowSettings>,
        stats: Arc<RunnerStats>,
        index: usize,
        peers: usize,
    ) -> Self {
        let groups = Indicator::ALL
            .iter()
            .filter(|i| i.group() == **i && i.index() % peers == index)
            .map(|g| (*g, settings.new_group(*g)))
            .collect();
        SeriesWorker {
            settings: settings.clone(),
            stats,
            groups,
            marks: HashMap::new(),
            earliest: [None; 3],
            end: None,
        }
    }

    /// Applies one complete epoch and closes the ticks its watermarks allow.
    fn epoch(&mut self, deltas: &[Delta], reports: Vec<WatermarkReport>) -> Vec<Point> {
        for d in deltas {
            if let Some(g) = self.groups.get_mut(&d.slot.group) {
                g.apply(d);
            }
        }
        for r in reports {
            if let Some(w) = r.watermark {
                self.marks.insert((r.source, r.stream), w);
            }
            if let Some(e) = r.earliest {
                let slot = &mut self.earliest[r.stream.index()];
                *slot = Some(slot.map_or(e, |x| x.min(e)));
            }
            if let Some(e) = r.end_of_input {
                self.end = Some(self.end.map_or(e, |x| x.max(e)));
            }
        }
        let mut out = Vec::new();
        for (ind, g) in self.groups.iter_mut() {
            let stream = ind.stream();
            let Some(e) = self.earliest[stream.index()] else {
                continue;
            };
            g.set_earliest(e);
            let through = match self.end {
                Some(end) => Some(tick_after(end, self.settings.cadence[ind])),
                None => self
                    .marks
                    .iter()
                    .filter(|((_, s), _)| *s == stream)
                    .map(|(_, w)| *w)
                    .min(),
            };
            if let Some(through) = through {
                let s = g.close(through, &mut out);
                self.stats.corrections[stream.index()].fetch_add(s.corrections, Ordering::Relaxed);
                self.stats
                    .unrepresentable
                    .fetch_add(s.unrepresentable, Ordering::Relaxed);
            }
        }
        self.stats
            .points
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }
}

impl Runner {
    /// Starts `settings.workers` timely workers; points leave through `points`.
    pub fn start(settings: DataflowSettings, points: PointsOut) -> Result<Runner, String> {
        let workers = settings.workers.max(1);
        let stats = Arc::new(RunnerStats::default());
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..workers {
            let (tx, rx) = bounded::<Epoch>(2);
            senders.push(tx);
            receivers.push(Some(rx));
        }
        let receivers = Arc::new(Mutex::new(receivers));
        let settings = Arc::new(settings);
        let worker_stats = stats.clone();
        let guards = timely::execute(timely::Config::process(workers), move |worker| {
            let index = worker.index();
            let rx: Receiver<Epoch> = receivers
                .lock()
                .ok()
                .and_then(|mut r| r.get_mut(index).and_then(Option::take))
                .expect("one receiver per worker");
            let settings = settings.clone();
            let stats = worker_stats.clone();
            let heartbeat = worker_stats.clone();
            let points = points.clone();
            let mut events_in: InputHandle<u64, CapacityContainerBuilder<Vec<Event>>> =
                InputHandle::new();
            let mut reports_in: InputHandle<u64, CapacityContainerBuilder<Vec<WatermarkReport>>> =
                InputHandle::new();
            let probe = ProbeHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                let peers = scope.peers();
                let lag = settings.filing_lag;
                let deltas = scope.input_from(&mut events_in).unary(
                    Exchange::new(|e: &Event| entity_route(e)),
                    "Entities",
                    move |_cap, _info| {
                        let mut entities = Entities::new(lag);
                        move |input, output| {
                            input.for_each(|cap, data| {
                                let mut out: Vec<Delta> = Vec::new();
                                for e in data.drain(..) {
                                    entities.apply(e, &mut out);
                                }
                                output.session(&cap).give_container(&mut out);
                            });
                        }
                    },
                );
                let reports = scope.input_from(&mut reports_in).broadcast();
                let group_settings = settings.clone();
                deltas
                    .binary_frontier::<_, CapacityContainerBuilder<Vec<()>>, _, _, _, _>(
                        reports,
                        Exchange::new(|d: &Delta| d.slot.group.index() as u64),
                        timely::dataflow::channels::pact::Pipeline,
                        "Series",
                        move |_cap, _info| {
                            let mut series =
                                SeriesWorker::new(&group_settings, stats, index, peers);
                            // Per epoch: a capability, the deltas and the reports received.
                            type Stashed =
                                (Option<Capability<u64>>, Vec<Delta>, Vec<WatermarkReport>);
                            let mut stash: BTreeMap<u64, Stashed> = BTreeMap::new();
                            move |(in1, f1), (in2, f2), output| {
                                let port = output.output_index();
                                in1.for_each(|cap, data| {
                                    let Some(&t) = cap.least() else { return };
                                    let entry = stash.entry(t).or_default();
                                    entry.0 = entry.0.take().or_else(|| cap.retain_least(port));
                                    entry.1.append(data);
                                });
                                in2.for_each(|cap, data| {
                                    let Some(&t) = cap.least() else { return };
                                    let entry = stash.entry(t).or_default();
                                    entry.0 = entry.0.take().or_else(|| cap.retain_least(port));
                                    entry.2.append(data);
                                });
                                // Epochs both frontiers have passed are complete: process them in order.
                                while let Some(entry) = stash.first_entry() {
                                    let t = *entry.key();
                                    if f1.less_equal(&t) || f2.less_equal(&t) {
                                        break;
                                    }
                                    let (_cap, deltas, reports) = entry.remove();
                                    let out = series.epoch(&deltas, reports);
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
            loop {
                heartbeat.last_step_ms.store(now_ms(), Ordering::Relaxed);
                while probe.less_than(&epoch.saturating_sub(2)) {
                    worker.step();
                }
                match rx.recv_timeout(Duration::from_millis(1)) {
                    Ok(msg) => {
                        events_in.send_batch(&mut { msg.events });
                        reports_in.send_batch(&mut { msg.reports });
                        epoch += 1;
                        events_in.advance_to(epoch);
                        reports_in.advance_to(epoch);
                        worker.step();
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        worker.step();
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            drop(events_in);
            drop(reports_in);
            while worker.step() {}
        })?;
        Ok(Runner {
            senders,
            guards: Some(guards),
            stats,
        })
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.senders.len()
    }

    /// Sends worker `index` its input for the next epoch (blocks while it is busy).
    pub fn send(&self, index: usize, epoch: Epoch) -> Result<(), String> {
        self.senders[index]
            .send(epoch)
            .map_err(|_| format!("dataflow worker {index} has stopped"))
    }

    /// Sends every worker its share of the next epoch (`pending[i]` to worker `i`, emptied)
    /// and the watermark reports to worker 0.
    pub fn send_all(
        &self,
        pending: &mut [Vec<Event>],
        reports: Vec<WatermarkReport>,
    ) -> Result<(), String> {
        let mut reports = Some(reports);
        for (i, events) in pending.iter_mut().enumerate() {
            let reports = if i == 0 {
                reports.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            self.send(
                i,
                Epoch {
                    events: std::mem::take(events),
                    reports,
                },
            )?;
        }
        Ok(())
    }

    /// Closes the inputs and waits for the workers to drain and stop.
    pub fn finish(mut self) -> Result<Arc<RunnerStats>, String> {
        self.senders.clear();
        if let Some(guards) = self.guards.take() {
            for r in guards.join() {
                r?;
            }
        }
        Ok(self.stats)
    }
}
