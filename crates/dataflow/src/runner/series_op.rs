//! The series operator: deltas of slot levels in, by shard; ticks closed as the
//! watermarks pass them, points with plan pace out.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use paceline_model::point::Point;
use paceline_model::time::tick_after;
use paceline_model::{Nanos, Stream};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::StreamVec;

use super::epochs::whole_epochs;
use super::marks::{Marks, WatermarkReport};
use super::recycle::Recycle;
use super::settings::DataflowSettings;
use super::shard::Shard;
use super::stats::RunnerStats;
use super::PointsOut;
use crate::intervals::Delta;
use crate::series::Group;

/// The series operator of one worker: deltas exchanged by shard, each epoch applied whole
/// and its closed ticks' points handed to `points` before the epoch completes.
pub(super) fn series<'scope>(
    deltas: StreamVec<'scope, u64, Delta>,
    reports: StreamVec<'scope, u64, WatermarkReport>,
    worker: Rc<RefCell<SeriesWorker>>,
    points: PointsOut,
) -> StreamVec<'scope, u64, ()> {
    whole_epochs(
        deltas,
        reports,
        Exchange::new(|d: &Delta| Shard::of_series(d.slot.group, d.slot.tag).route()),
        "Series",
        move |t, deltas, reports, _out: &mut Vec<()>| {
            let out = worker.borrow_mut().epoch(&deltas, reports);
            if !out.is_empty() {
                points(t, out);
            }
        },
    )
}

/// The series operator's state on one worker: the groups it owns and the streams' progress.
pub(super) struct SeriesWorker {
    pub(super) settings: Arc<DataflowSettings>,
    pub(super) stats: Arc<RunnerStats>,
    /// This worker's index among the process's workers, for its entry in the stats.
    pub(super) local: usize,
    pub(super) state: SeriesState,
    /// Points the last epoch closed: the next epoch's vector starts with that room (grown by
    /// doubling instead, a large epoch's points were copied several times).
    pub(super) points_hint: usize,
    /// Where those vectors come from: given back by the writer when it has one, so that
    /// their pages are not faulted in anew each epoch (see [`Recycle`]).
    pub(super) point_vecs: Recycle<Point>,
}

/// What a snapshot keeps of a series operator.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SeriesState {
    pub(super) groups: BTreeMap<Shard, Group>,
    marks: Marks,
    earliest: [Option<Nanos>; 3],
    end: Option<Nanos>,
}

impl SeriesState {
    /// A worker's state before any input: the shards worker `index` of `peers` holds.
    pub(super) fn fresh(settings: &DataflowSettings, index: usize, peers: usize) -> Self {
        SeriesState {
            groups: Shard::all()
                .into_iter()
                .filter(|s| s.held_by(index, peers))
                .map(|s| (s, settings.new_group(s)))
                .collect(),
            marks: Marks::default(),
            earliest: [None; 3],
            end: None,
        }
    }
}

impl SeriesWorker {
    /// Applies one complete epoch and closes the ticks its watermarks allow.
    fn epoch(&mut self, deltas: &[Vec<Delta>], reports: Vec<WatermarkReport>) -> Vec<Point> {
        let st = &mut self.state;
        for d in deltas.iter().flatten() {
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
        let mut out = self.point_vecs.take(self.points_hint);
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
        self.points_hint = out.len();
        out
    }
}
