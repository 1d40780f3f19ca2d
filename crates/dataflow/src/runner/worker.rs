//! One timely worker: its dataflow (the entity and series operators), fed from its
//! channel epoch by epoch, answering snapshot requests between epochs.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, TryRecvError};
use paceline_model::Event;
use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use super::entities_op::entities;
use super::feed::Feed;
use super::marks::{Marks, WatermarkReport};
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
        let WorkerRun {
            local,
            settings,
            stats,
            points,
        } = self;
        let index = worker.index();
        let peers = worker.peers();
        let state = restored.unwrap_or_else(|| WorkerState {
            entities: Entities::new(settings.filing_lag),
            marks: Marks::default(),
            series: SeriesState::fresh(settings, index, peers),
        });
        let entities_state = Rc::new(RefCell::new(state.entities));
        let marks = Rc::new(RefCell::new(state.marks));
        let series_worker = Rc::new(RefCell::new(SeriesWorker {
            settings: settings.clone(),
            stats: stats.clone(),
            local,
            state: state.series,
        }));
        let mut events_in: InputHandle<u64, CapacityContainerBuilder<Vec<Event>>> =
            InputHandle::new();
        let mut reports_in: InputHandle<u64, CapacityContainerBuilder<Vec<WatermarkReport>>> =
            InputHandle::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let reports = scope.input_from(&mut reports_in).broadcast();
            let events = scope.input_from(&mut events_in);
            let deltas = entities(
                events,
                reports.clone(),
                (entities_state.clone(), marks.clone()),
                settings.horizon,
                settings.fold_every,
            );
            series(deltas, reports, series_worker.clone(), points.clone()).probe_with(&probe);
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
                    let ent = entities_state.borrow();
                    stats.set_entities(local, ent.counts());
                    let state = WorkerStateRef {
                        entities: &ent,
                        marks: &marks.borrow(),
                        series: &series_worker.borrow().state,
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
