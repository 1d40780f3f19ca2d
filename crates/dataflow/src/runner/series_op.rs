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
            // Only now: a reader of the closed watermark (the drain of a test, an operator)
            // takes every point of the ticks before it as handed over.
            worker.borrow().publish_closed();
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
        self.stats
            .points
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        self.points_hint = out.len();
        out
    }

    /// Shows where this worker's ticks are closed, once the points of the epoch that closed
    /// them have been handed to the output.
    fn publish_closed(&self) {
        for s in Stream::ALL {
            if let Some(w) = self.state.marks.of(s) {
                self.stats.applied(self.local, s, w);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, OnceLock};

    use paceline_model::config::Config;
    use paceline_model::event::{Cluster, Region};
    use paceline_model::time::{parse_rfc3339, DAY};
    use paceline_model::{Body, Event, Nanos, Stream};

    use crate::runner::{DataflowSettings, PointsOut, Runner, RunnerStats, WatermarkReport};

    fn filings_report(watermark: Nanos, earliest: Nanos) -> Vec<WatermarkReport> {
        vec![WatermarkReport {
            source: 0,
            stream: Stream::Filings,
            watermark: Some(watermark),
            earliest: Some(earliest),
            end_of_input: None,
            idle: false,
        }]
    }

    /// The closed watermark moves only after the points of the ticks it closes are handed
    /// over: the output, handed an epoch's points, still sees the epoch before's (a test
    /// that drained on it read the database before the last epoch's points were sent).
    #[test]
    fn the_closed_watermark_moves_once_its_points_are_handed_over() {
        let stats: Arc<OnceLock<Arc<RunnerStats>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Option<Nanos>>>> = Arc::default();
        let out: PointsOut = {
            let (stats, seen) = (stats.clone(), seen.clone());
            Arc::new(move |_, _points| {
                let closed = stats.get().and_then(|s| s.closed_through(Stream::Filings));
                seen.lock().unwrap().push(closed);
            })
        };
        let mut settings = DataflowSettings::from_config(&Config::default());
        settings.workers = 1;
        let runner = Runner::start(settings, out, None).unwrap();
        let _ = stats.set(runner.stats.clone());
        let day1 = parse_rfc3339("2023-03-01T00:00:00+08:00").unwrap();
        let registered = Event {
            id: "f-1".into(),
            at: day1,
            body: Body::Registered {
                enterprise: "e-1".into(),
                cluster: Cluster::Cybersecurity,
                region: Region::Other,
                sme: true,
            },
        };
        runner
            .send_all(
                &mut [vec![registered]],
                filings_report(day1 + 3 * DAY, day1),
            )
            .unwrap();
        runner
            .send_all(&mut [vec![]], filings_report(day1 + 10 * DAY, day1))
            .unwrap();
        let stats = runner.finish().unwrap();
        // Planned series have a point at every tick: both epochs close some.
        assert_eq!(
            *seen.lock().unwrap(),
            vec![None, Some(day1 + 3 * DAY)],
            "what the output saw closed when handed each epoch's points"
        );
        assert_eq!(stats.closed_through(Stream::Filings), Some(day1 + 10 * DAY));
    }
}
