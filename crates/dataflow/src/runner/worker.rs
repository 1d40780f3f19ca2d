//! One timely worker: its dataflow (the entity and series operators), fed from its
//! channel epoch by epoch, answering snapshot requests between epochs.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, TryRecvError};
use paceline_model::point::Point;
use paceline_model::Event;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use super::entities_op::entities;
use super::feed::{Epoch, Feed};
use super::marks::{Marks, WatermarkReport};
use super::recycle::Recycle;
use super::series_op::{series, SeriesState, SeriesWorker};
use super::settings::DataflowSettings;
use super::stats::RunnerStats;
use super::{PointsOut, RunnerError};
use crate::entities::Entities;

/// How long a worker with nothing in its channel and nothing scheduled parks before it
/// looks again (it is woken earlier by input and by other workers' messages); also the
/// heartbeat's resolution.
const IDLE_PARK: Duration = Duration::from_millis(50);

/// One worker's part of a snapshot.
#[derive(Serialize, Deserialize)]
pub(super) struct WorkerState {
    entities: Entities,
    /// The entity operator's view of the watermarks (its cutoffs follow them).
    marks: Marks,
    series: SeriesState,
}

/// Restores a worker's state from its snapshot part, with the plan as configured now.
pub(super) fn restore_worker(
    bytes: &[u8],
    settings: &DataflowSettings,
) -> Result<WorkerState, RunnerError> {
    let mut state: WorkerState = bincode::deserialize(bytes).map_err(RunnerError::Restore)?;
    for (shard, group) in state.series.groups.iter_mut() {
        group.restore_plans(settings.plans_of(*shard));
        if let Some(until) = settings.rewrite_until {
            group.rewrite_through(until);
        }
    }
    Ok(state)
}

/// [`WorkerState`] by reference, to serialize without a copy.
#[derive(Serialize)]
struct WorkerStateRef<'a> {
    entities: &'a Entities,
    marks: &'a Marks,
    series: &'a SeriesState,
}

/// What one worker thread runs with.
pub(super) struct WorkerRun<'a> {
    /// This process's index of the worker.
    pub(super) local: usize,
    pub(super) settings: &'a Arc<DataflowSettings>,
    pub(super) stats: &'a Arc<RunnerStats>,
    pub(super) points: &'a PointsOut,
    /// Where emptied event vectors go back to, and point vectors come from.
    pub(super) pools: &'a (Recycle<Event>, Recycle<Point>),
}

impl WorkerRun<'_> {
    /// Builds one worker's dataflow and feeds it until its channel closes: events exchanged by
    /// entity to the entity operator, deltas exchanged by group to the series operator, the
    /// watermark reports broadcast to both. Both operators take each epoch whole, in order,
    /// once no input can add to it: a snapshot then holds exactly the epochs before it, even
    /// while other processes of a cluster already send the next ones.
    pub(super) fn run(
        self,
        worker: &mut timely::worker::Worker,
        rx: Receiver<Feed>,
        restored: Option<WorkerState>,
    ) {
        let mut built = self.build(worker, restored);
        // A worker that steps is alive, waiting for a slow peer included: only one stuck
        // inside a step stops the heartbeat (and turns /healthz red).
        let beat = || self.stats.beat(self.local);
        loop {
            beat();
            // At most two epochs in flight: the input waits, and memory stays bounded.
            built.step_while_behind(worker, 2, beat);
            match rx.try_recv() {
                Ok(Feed::Epoch(msg)) => {
                    paceline_model::failpoint::check_at("worker", self.local);
                    built.give(msg);
                    worker.step();
                }
                Ok(Feed::Snapshot(reply)) => {
                    built.step_while_behind(worker, 0, beat);
                    self.stats
                        .set_entities(self.local, built.entities.borrow().counts());
                    let _ = reply.send(built.snapshot(worker.index()));
                }
                Err(TryRecvError::Empty) => {
                    worker.step_or_park(Some(IDLE_PARK));
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        built.finish(worker);
    }

    /// The worker's dataflow on its state (restored, or fresh for the shards it holds).
    fn build(&self, worker: &mut timely::worker::Worker, restored: Option<WorkerState>) -> Built {
        let settings = self.settings;
        let state = restored.unwrap_or_else(|| WorkerState {
            entities: Entities::new(settings.filing_lag),
            marks: Marks::default(),
            series: SeriesState::fresh(settings, worker.index(), worker.peers()),
        });
        let mut held = state.entities;
        held.use_ticks(|i| settings.cadence[&i]);
        let entities_state = Rc::new(RefCell::new(held));
        let marks = Rc::new(RefCell::new(state.marks));
        let series_worker = Rc::new(RefCell::new(SeriesWorker {
            settings: settings.clone(),
            stats: self.stats.clone(),
            local: self.local,
            state: state.series,
            points_hint: 0,
            point_vecs: self.pools.1.clone(),
        }));
        let mut events_in = InputHandle::new();
        let mut reports_in = InputHandle::new();
        let probe = ProbeHandle::new();
        let points = self.points.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let reports = scope.input_from(&mut reports_in).broadcast();
            let events = scope.input_from(&mut events_in);
            let deltas = entities(
                events,
                reports.clone(),
                (entities_state.clone(), marks.clone()),
                settings.horizon,
                settings.fold_every,
                settings.input_routed,
                self.pools.0.clone(),
            );
            series(deltas, reports, series_worker.clone(), points).probe_with(&probe);
        });
        Built {
            events_in,
            reports_in,
            probe,
            epoch: 0,
            entities: entities_state,
            marks,
            series: series_worker,
        }
    }
}

/// One worker's built dataflow: its inputs at their epoch, its probe, and the operators'
/// state a snapshot reads.
struct Built {
    events_in: InputHandle<u64, CapacityContainerBuilder<Vec<Event>>>,
    reports_in: InputHandle<u64, CapacityContainerBuilder<Vec<WatermarkReport>>>,
    probe: ProbeHandle<u64>,
    epoch: u64,
    entities: Rc<RefCell<Entities>>,
    marks: Rc<RefCell<Marks>>,
    series: Rc<RefCell<SeriesWorker>>,
}

impl Built {
    /// Steps until at most `ahead` epochs given are still in flight.
    fn step_while_behind(&self, worker: &mut timely::worker::Worker, ahead: u64, beat: impl Fn()) {
        while self.probe.less_than(&self.epoch.saturating_sub(ahead)) {
            worker.step_or_park(Some(IDLE_PARK));
            beat();
        }
    }

    /// Gives one epoch's input and moves the inputs to the next epoch (or the one named).
    fn give(&mut self, msg: Epoch) {
        self.events_in.send_batch(&mut { msg.events });
        self.reports_in.send_batch(&mut { msg.reports });
        let next = msg.advance_to.unwrap_or(self.epoch + 1).max(self.epoch);
        if next > self.epoch {
            self.epoch = next;
            self.events_in.advance_to(self.epoch);
            self.reports_in.advance_to(self.epoch);
        }
    }

    /// This worker's part of an aligned snapshot (every epoch given is processed).
    fn snapshot(&self, index: usize) -> Result<Vec<u8>, RunnerError> {
        let state = WorkerStateRef {
            entities: &self.entities.borrow(),
            marks: &self.marks.borrow(),
            series: &self.series.borrow().state,
        };
        bincode::serialize(&state).map_err(|source| RunnerError::Serialize { index, source })
    }

    /// Closes the inputs and steps until the dataflow is done.
    fn finish(self, worker: &mut timely::worker::Worker) {
        drop(self.events_in);
        drop(self.reports_in);
        while worker.step() {}
    }
}
