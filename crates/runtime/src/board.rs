//! The status board: what people are shown of a run. Each series' newest point, a bounded
//! chart history of every planned series and each stream's freshness, fed from the points
//! the sink wrote (serve: acknowledged by the database; replay and demo: written out).
//!
//! The status page (`/`), the `/api/v1/indicators` answer, the demo's table and the replay
//! summary all read it, so they always agree with each other.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Mutex;

use paceline_model::config::PlanSpec;
use paceline_model::point::{Fields, Point, VerdictFields};
use paceline_model::{Nanos, SeriesKey, Stream};

/// Chart points kept per planned series across its plan period: finer than any chart is
/// drawn, coarse enough that an hourly series over years stays small.
const CHART_BUCKETS: i64 = 600;
/// Past the deadline the chart goes on at the same resolution, up to this many buckets in
/// all; the oldest go first, so memory stays bounded however long the service runs.
const CHART_MAX_POINTS: usize = 4 * CHART_BUCKETS as usize;

/// A planned series' chart history: the latest point of each time bucket from its start.
#[derive(Debug, Clone)]
struct Chart {
    start: Nanos,
    width: Nanos,
    points: BTreeMap<i64, (Nanos, Fields)>,
}

impl Chart {
    fn new(plan: &PlanSpec) -> Chart {
        Chart {
            start: plan.start,
            width: ((plan.deadline - plan.start) / CHART_BUCKETS).max(1),
            points: BTreeMap::new(),
        }
    }

    fn record(&mut self, tick: Nanos, fields: Fields) {
        if tick < self.start {
            return;
        }
        let bucket = (tick - self.start) / self.width;
        match self.points.entry(bucket) {
            Entry::Occupied(mut held) if tick >= held.get().0 => {
                held.insert((tick, fields));
            }
            Entry::Occupied(_) => {}
            Entry::Vacant(free) => {
                free.insert((tick, fields));
            }
        }
        while self.points.len() > CHART_MAX_POINTS {
            self.points.pop_first();
        }
    }
}

/// How far a stream has got.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Freshness {
    /// The stream's watermark.
    pub watermark: Option<Nanos>,
    /// Messages not yet read, summed over the stream's partitions (serve only).
    pub lag: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    latest: BTreeMap<SeriesKey, Point>,
    /// Each planned series' verdict point, once written.
    verdicts: BTreeMap<SeriesKey, Point>,
    charts: BTreeMap<SeriesKey, Chart>,
    streams: [Freshness; 3],
}

/// A planned series as shown: its plan, its newest point and its chart.
#[derive(Debug, Clone)]
pub struct PlannedView {
    /// The plan item.
    pub plan: PlanSpec,
    /// The newest point written, if any.
    pub latest: Option<Point>,
    /// `(tick, fields)` from the plan's start, in time order.
    pub chart: Vec<(Nanos, Fields)>,
    /// The verdict and the tick it was judged at, once written.
    pub verdict: Option<(Nanos, VerdictFields)>,
}

/// A consistent copy of the board.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The planned series, in the plan's order.
    pub planned: Vec<PlannedView>,
    /// Every series' newest point.
    pub latest: Vec<Point>,
    /// Freshness of each stream, by [`Stream::index`].
    pub streams: [Freshness; 3],
}

/// The board, shared between the sink side (writing) and the readers.
#[derive(Debug)]
pub struct Board {
    plans: Vec<PlanSpec>,
    state: Mutex<State>,
}

impl Board {
    /// An empty board for these plan items.
    pub fn new(plans: Vec<PlanSpec>) -> Board {
        let charts = plans.iter().map(|p| (p.series, Chart::new(p))).collect();
        Board {
            plans,
            state: Mutex::new(State {
                charts,
                ..State::default()
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything the board holds as points (each chart's, then each series' newest):
    /// recording them on an empty board with the same plan gives the same board. Kept in
    /// checkpoints, so that charts survive a restart.
    pub fn points(&self) -> Vec<Point> {
        let st = self.state();
        let charts = st.charts.iter().flat_map(|(series, chart)| {
            chart
                .points
                .values()
                .map(|(tick, fields)| Point::indicator(*series, *tick, *fields, false))
        });
        charts
            .chain(st.latest.values().cloned())
            .chain(st.verdicts.values().cloned())
            .collect()
    }

    /// A board of the same plan holding this one's points and `others` (the other
    /// processes' shares of a cluster: each series is written by one process, so none
    /// overlap), with this one's stream freshness.
    pub fn merged_with(&self, others: &[Vec<Point>]) -> Board {
        let merged = Board::new(self.plans.clone());
        merged.record(self.points().iter().chain(others.iter().flatten()));
        merged.state().streams = self.state().streams;
        merged
    }

    /// Records written points. A point replaces a series' newest one unless it is for an
    /// earlier tick (a correction further back changes the chart, not the newest point).
    pub fn record<'a>(&self, points: impl IntoIterator<Item = &'a Point>) {
        self.record_with(points, |_| {});
    }

    /// As [`Board::record`], calling `on_newest` with each point that became its series'
    /// newest, and with each verdict point (serve sets the gauges from them).
    pub fn record_with<'a>(
        &self,
        points: impl IntoIterator<Item = &'a Point>,
        mut on_newest: impl FnMut(&Point),
    ) {
        let mut s = self.state();
        for p in points {
            if p.verdict.is_some() {
                s.verdicts.insert(p.series, p.clone());
                on_newest(p);
                continue;
            }
            if let Some(chart) = s.charts.get_mut(&p.series) {
                chart.record(p.tick, p.fields);
            }
            // One search per point: this runs for every point written.
            match s.latest.get_mut(&p.series) {
                Some(q) if p.tick < q.tick => {}
                Some(q) => {
                    q.clone_from(p);
                    on_newest(p);
                }
                None => {
                    s.latest.insert(p.series, p.clone());
                    on_newest(p);
                }
            }
        }
    }

    /// Sets a stream's freshness.
    pub fn set_stream(&self, stream: Stream, freshness: Freshness) {
        self.state().streams[stream.index()] = freshness;
    }

    /// Every series' newest point.
    pub fn latest(&self) -> Vec<Point> {
        self.state().latest.values().cloned().collect()
    }

    /// Every planned series' verdict point written so far.
    pub fn verdicts(&self) -> Vec<Point> {
        self.state().verdicts.values().cloned().collect()
    }

    /// The planned series' newest points, in the plan's order (`None` where nothing was
    /// written yet).
    pub fn planned_latest(&self) -> Vec<(PlanSpec, Option<Point>)> {
        let s = self.state();
        self.plans
            .iter()
            .map(|p| (p.clone(), s.latest.get(&p.series).cloned()))
            .collect()
    }

    /// A consistent copy of everything.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.state();
        let planned = self
            .plans
            .iter()
            .map(|p| PlannedView {
                plan: p.clone(),
                latest: s.latest.get(&p.series).cloned(),
                chart: s
                    .charts
                    .get(&p.series)
                    .map(|c| c.points.values().copied().collect())
                    .unwrap_or_default(),
                verdict: s
                    .verdicts
                    .get(&p.series)
                    .and_then(|v| Some((v.tick, v.verdict?))),
            })
            .collect();
        Snapshot {
            planned,
            latest: s.latest.values().cloned().collect(),
            streams: s.streams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::config::PlanKind;
    use paceline_model::time::DAY;
    use paceline_model::Indicator;

    fn plan() -> PlanSpec {
        PlanSpec {
            series: SeriesKey::plain(Indicator::QuasiUnicorns),
            kind: PlanKind::Cumulative,
            target: 10.0,
            start: 0,
            deadline: 1000 * DAY,
            tolerance: 0.9,
            verdict_tick: i64::MAX,
        }
    }

    fn point(tick: Nanos, value: f64) -> Point {
        Point::indicator(
            SeriesKey::plain(Indicator::QuasiUnicorns),
            tick,
            Fields::value(value),
            false,
        )
    }

    #[test]
    fn newest_point_is_kept_and_corrections_reach_the_chart() {
        let board = Board::new(vec![plan()]);
        board.record(&[point(DAY, 1.0), point(2 * DAY, 2.0)]);
        // A correction of an older tick: the newest point stays, the chart changes.
        board.record(&[point(DAY, 5.0)]);
        let snap = board.snapshot();
        assert_eq!(snap.latest.len(), 1);
        assert_eq!(snap.latest[0].fields.value, 2.0);
        let chart = &snap.planned[0].chart;
        // 1000 days over 600 buckets: days 1 and 2 fall in buckets 0 and 1.
        assert_eq!(
            chart,
            &vec![(DAY, Fields::value(5.0)), (2 * DAY, Fields::value(2.0))]
        );
        // A correction at the newest tick replaces it.
        board.record(&[point(2 * DAY, 3.0)]);
        assert_eq!(board.latest()[0].fields.value, 3.0);
    }

    #[test]
    fn a_cluster_board_is_each_process_share_together() {
        let own = Board::new(vec![plan()]);
        own.record(&[point(DAY, 1.0), point(2 * DAY, 2.0)]);
        own.set_stream(
            Stream::Filings,
            Freshness {
                watermark: Some(3 * DAY),
                lag: Some(0),
            },
        );
        let other = Point::indicator(
            SeriesKey::plain(Indicator::SrdiEnterprises),
            2 * DAY,
            Fields::value(7.0),
            false,
        );
        let merged = own.merged_with(&[vec![other.clone()]]);
        let snap = merged.snapshot();
        assert_eq!(snap.latest.len(), 2);
        assert!(snap.latest.contains(&other));
        assert_eq!(snap.planned[0].chart.len(), 2, "the chart came along");
        assert_eq!(
            snap.streams[Stream::Filings.index()].watermark,
            Some(3 * DAY)
        );
        assert_eq!(own.latest().len(), 1, "the own board is unchanged");
    }

    #[test]
    fn chart_is_bounded_and_ignores_ticks_before_the_start() {
        let board = Board::new(vec![plan()]);
        board.record(&[point(-DAY, 1.0)]);
        assert!(board.snapshot().planned[0].chart.is_empty());
        // Hourly points over ten times the plan period.
        let pts: Vec<Point> = (0..24 * 10_000)
            .map(|h| point(h * (DAY / 24), h as f64))
            .collect();
        board.record(&pts);
        let chart = &board.snapshot().planned[0].chart;
        assert_eq!(chart.len(), CHART_MAX_POINTS);
        // The newest point is always there.
        assert_eq!(chart.last().map(|c| c.0), pts.last().map(|p| p.tick));
        assert!(chart.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
