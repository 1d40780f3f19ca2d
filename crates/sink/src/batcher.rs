//! The sink loop: points from the dataflow in, InfluxDB writes out.
//!
//! Points queue in arrival order (so a correction is written after the point it corrects).
//! A batch of up to `batch_points` leaves when full or after `linger`; within a batch only
//! the last point of a (series, tick) is sent. Failed writes are retried with exponential
//! backoff and jitter, the same batch again, never skipped; meanwhile input is still taken
//! while one more delivery fits under `max_pending` points, then not at all, so the bounded
//! channel behind it fills and the sources stop reading. Deliveries hold at most
//! `batch_points` points ([`deliveries`] cuts the dataflow's output so), which makes
//! `max_pending` an exact bound. A refused batch (4xx other than 429) stops the loop with an
//! error unless configured to keep retrying. While idle the database is pinged so that
//! readiness follows it.
//!
//! The loop is a state machine (`State`: gathering, ready, writing, backing off) driven by
//! one event at a time, over a [`PointWriter`], so its rules are tested against a scripted
//! database as well as the real ones.
//!
//! A failed write may still be applied by the database later (a request that timed out
//! on the client but not on the server): it would then put back older values over a
//! correction written after the retry. So the points of every write that failed so (any
//! failure but a refusal) are kept "in doubt" with the newest value written for each, and
//! once no write has failed for `doubt_rewrite` they are written once more. The late
//! original must land within that time; the rewrite is not counted as points written
//! (it is not the dataflow's output, and no checkpoint waits for it).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::InfluxConfig;
use paceline_model::point::Point;
use paceline_model::{Nanos, SeriesKey};
use rand::Rng as _;
use tokio::sync::mpsc::Receiver;
use tokio::time::{sleep_until, Instant};

use crate::influx::{InfluxWriter, WriteError};
use crate::metrics::SinkMetrics;

/// Batching and retry settings.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// Measurement name.
    pub measurements: crate::Measurements,
    /// Points per request at most.
    pub batch_points: usize,
    /// How long a partial batch waits.
    pub linger: Duration,
    /// Points held at most (at least `batch_points`).
    pub max_pending: usize,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Retry refused batches too.
    pub retry_client_errors: bool,
    /// How often to ping while idle.
    pub ping_interval: Duration,
    /// How long after the last failed write its points are written again.
    pub doubt_rewrite: Duration,
}

impl BatchSettings {
    /// From the configuration.
    pub fn from_config(measurements: crate::Measurements, c: &InfluxConfig) -> Self {
        BatchSettings {
            measurements,
            batch_points: c.batch_points.max(1),
            linger: Duration::from_millis(c.linger_ms),
            max_pending: c.max_pending_points.max(c.batch_points),
            retry_initial: Duration::from_millis(c.retry_initial_ms.max(1)),
            retry_max: Duration::from_millis(c.retry_max_ms.max(c.retry_initial_ms)),
            retry_client_errors: c.retry_client_errors,
            ping_interval: Duration::from_secs(2),
            doubt_rewrite: Duration::from_secs(c.doubt_rewrite_s.max(1)),
        }
    }
}

/// Health of the sink, shared with `/readyz`.
#[derive(Debug, Default)]
pub struct SinkHealth {
    /// The last write or ping succeeded.
    pub accepting: AtomicBool,
    /// The last failure, when not accepting.
    pub last_error: Mutex<Option<String>>,
    /// Points received and not yet acknowledged (`paceline_sink_pending_points` is written
    /// from it): a dataflow that stops stepping while the sink holds points is waiting, not
    /// wedged.
    pending: AtomicU64,
}

impl SinkHealth {
    /// Points received and not yet acknowledged.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    fn set_pending(&self, n: usize, metrics: &SinkMetrics) {
        self.pending.store(n as u64, Ordering::Relaxed);
        metrics.pending_points.set(n as i64);
    }

    fn set(&self, result: &Result<(), WriteError>) {
        self.accepting.store(result.is_ok(), Ordering::Relaxed);
        if let Ok(mut e) = self.last_error.lock() {
            *e = result.as_ref().err().map(|e| e.to_string());
        }
    }
}

/// The sink stopped: the database refused a batch.
#[derive(Debug, thiserror::Error)]
#[error("InfluxDB refused a batch of {points} points ({error}); stopping without skipping it (set influx.retry_client_errors = true to keep retrying)")]
pub struct SinkStopped {
    /// Points in the refused batch.
    pub points: usize,
    /// The refusal.
    pub error: WriteError,
}

/// Backoff before retry `attempt` (0-based): `initial · 2^attempt` capped at `max`, then a
/// uniformly random delay in its upper half.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let base = initial
        .saturating_mul(1u32 << attempt.min(20))
        .min(max)
        .max(Duration::from_millis(1));
    let half = base / 2;
    half + rand::thread_rng().gen_range(Duration::ZERO..=base - half)
}

/// The body of the first `n` queued points: the last point of each (series, tick) only.
fn body<'a>(
    measurements: &crate::Measurements,
    divisor: i64,
    points: impl Iterator<Item = &'a Point> + Clone,
) -> String {
    // A verdict point shares its series and tick with the indicator's: a point of its own.
    let mut last: HashMap<(SeriesKey, Nanos, bool), usize> = HashMap::new();
    for (i, p) in points.clone().enumerate() {
        last.insert((p.series, p.tick, p.verdict.is_some()), i);
    }
    let mut out = String::new();
    for (i, p) in points.enumerate() {
        if last.get(&(p.series, p.tick, p.verdict.is_some())) == Some(&i) {
            crate::format_point_in(measurements, p, divisor, &mut out);
        }
    }
    out
}

type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send + 'a>>;

/// A point's identity in the database: series, tick, and whether it is a verdict.
type PointKey = (SeriesKey, Nanos, bool);

fn key_of(p: &Point) -> PointKey {
    (p.series, p.tick, p.verdict.is_some())
}

/// Points of failed writes the database may still apply late, each with the newest value
/// written since, and when to write them again.
#[derive(Default)]
struct InDoubt {
    points: HashMap<PointKey, Point>,
    /// Past it (no failure since), the points are written once more.
    due: Option<Instant>,
}

impl InDoubt {
    /// A write of `points` failed in a way the database may still apply.
    fn failed<'a>(&mut self, points: impl Iterator<Item = &'a Point>, after: Duration) {
        for p in points {
            self.points.insert(key_of(p), p.clone());
        }
        self.due = Some(Instant::now() + after);
    }

    /// A write of `points` succeeded: the values to put back are now theirs.
    fn written<'a>(&mut self, points: impl Iterator<Item = &'a Point>) {
        if self.points.is_empty() {
            return;
        }
        for p in points {
            if let Some(v) = self.points.get_mut(&key_of(p)) {
                *v = p.clone();
            }
        }
    }

    /// The rewrite's body, when it is due: its time has come, or the input is closed (a
    /// stopping service writes it at once rather than wait past its shutdown bound).
    fn due_body(
        &self,
        measurements: &crate::Measurements,
        divisor: i64,
        closed: bool,
    ) -> Option<String> {
        let time = closed || self.due.is_some_and(|d| d <= Instant::now());
        (time && !self.points.is_empty()).then(|| body(measurements, divisor, self.points.values()))
    }
}

/// Where the sink's batches go: InfluxDB in the service ([`InfluxWriter`]), a stand-in
/// in tests.
pub trait PointWriter: Sync {
    /// What a point's tick (nanoseconds) is divided by for the database's precision.
    fn divisor(&self) -> i64;
    /// Writes one body of line protocol.
    fn write(&self, body: String) -> impl Future<Output = Result<(), WriteError>> + Send;
    /// Whether the database answers, asked while idle so that readiness follows it.
    fn ping(&self) -> impl Future<Output = Result<(), WriteError>> + Send;
}

impl PointWriter for InfluxWriter {
    fn divisor(&self) -> i64 {
        self.divisor
    }
    fn write(&self, body: String) -> impl Future<Output = Result<(), WriteError>> + Send {
        InfluxWriter::write(self, body)
    }
    fn ping(&self) -> impl Future<Output = Result<(), WriteError>> + Send {
        InfluxWriter::ping(self)
    }
}

/// What a batch writes: the queue's first points, or the rewrite of the points in doubt.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Batch {
    Queued(usize),
    Rewrite,
}

impl Batch {
    /// Queued points it takes off the queue once written.
    fn queued(self) -> usize {
        match self {
            Batch::Queued(n) => n,
            Batch::Rewrite => 0,
        }
    }
}

/// Where the sink stands with its current batch.
enum State {
    /// No batch: points gather until one is full, has lingered, or the input closes.
    Gathering,
    /// A batch to send now.
    Ready(Batch, String),
    /// A batch's request is in flight.
    Writing(Batch, String),
    /// A batch's write failed: sent again at the instant given.
    BackingOff(Batch, String, Instant),
}

/// `points` in deliveries of at most `settings.batch_points`, in order: what [`run`] takes
/// in one receive, so that its bound on pending points holds exactly.
pub fn deliveries(points: Vec<Point>, settings: &BatchSettings) -> Vec<Vec<Point>> {
    let size = settings.batch_points;
    if points.len() <= size {
        return vec![points];
    }
    let mut out = Vec::with_capacity(points.len().div_ceil(size));
    let mut rest = points.into_iter();
    loop {
        let delivery: Vec<Point> = rest.by_ref().take(size).collect();
        if delivery.is_empty() {
            return out;
        }
        out.push(delivery);
    }
}

/// The sink's state between events: the queue, the current batch, the points in doubt.
/// Each event (a delivery, a write's result, a timer) is one method; the write requests
/// themselves are made by [`run`], which owns the futures.
struct Sink<'a> {
    settings: &'a BatchSettings,
    metrics: &'a SinkMetrics,
    health: Arc<SinkHealth>,
    divisor: i64,
    pending: VecDeque<(u64, Point)>,
    /// When the queue's oldest unsent point arrived (the linger runs from here).
    oldest: Option<Instant>,
    closed: bool,
    written: u64,
    state: State,
    doubt: InDoubt,
    attempt: u32,
    next_ping: Instant,
}

impl Sink<'_> {
    /// Whether one more delivery (at most `batch_points`) fits under `max_pending`: the
    /// bound is exact because nothing is taken that would pass it.
    fn may_take(&self) -> bool {
        !self.closed && self.pending.len() + self.settings.batch_points <= self.settings.max_pending
    }

    fn take(&mut self, msg: Option<(u64, Vec<Point>)>) {
        match msg {
            Some((epoch, points)) => {
                if self.oldest.is_none() && !points.is_empty() {
                    self.oldest = Some(Instant::now());
                }
                self.pending.extend(points.into_iter().map(|p| (epoch, p)));
            }
            None => self.closed = true,
        }
    }

    /// Everything taken is written and the input is closed.
    fn done(&self) -> bool {
        matches!(self.state, State::Gathering)
            && self.closed
            && self.pending.is_empty()
            && self.doubt.points.is_empty()
    }

    /// Moves to the next state that needs no event: a batch chosen while gathering, a
    /// backoff that has run out. The points in doubt go first: their rewrite must come
    /// before any later write of the same points.
    fn advance(&mut self) {
        match &self.state {
            State::Gathering => {
                let drained = self.closed && self.pending.is_empty();
                if let Some(text) =
                    self.doubt
                        .due_body(&self.settings.measurements, self.divisor, drained)
                {
                    self.state = State::Ready(Batch::Rewrite, text);
                } else if self.batch_due() {
                    let n = self.pending.len().min(self.settings.batch_points);
                    let text = body(
                        &self.settings.measurements,
                        self.divisor,
                        self.pending.iter().take(n).map(|(_, p)| p),
                    );
                    self.state = State::Ready(Batch::Queued(n), text);
                }
            }
            State::BackingOff(_, _, at) if *at <= Instant::now() => {
                if let State::BackingOff(what, text, _) =
                    std::mem::replace(&mut self.state, State::Gathering)
                {
                    self.state = State::Ready(what, text);
                }
            }
            _ => {}
        }
    }

    /// A batch of the queue leaves when full, lingered, or at the end of input.
    fn batch_due(&self) -> bool {
        let lingered = self
            .oldest
            .is_some_and(|t| t.elapsed() >= self.settings.linger);
        !self.pending.is_empty()
            && (self.pending.len() >= self.settings.batch_points || lingered || self.closed)
    }

    /// The body to send now, the batch then in flight.
    fn send(&mut self) -> Option<String> {
        if !matches!(self.state, State::Ready(..)) {
            return None;
        }
        let State::Ready(what, text) = std::mem::replace(&mut self.state, State::Gathering) else {
            return None;
        };
        self.state = State::Writing(what, text.clone());
        Some(text)
    }

    /// The request in flight answered.
    fn answered(
        &mut self,
        result: Result<(), WriteError>,
        took: Duration,
        on_ack: &mut impl FnMut(&[(u64, Point)]),
    ) -> Result<(), SinkStopped> {
        let State::Writing(what, text) = std::mem::replace(&mut self.state, State::Gathering)
        else {
            return Ok(());
        };
        match result {
            Ok(()) => {
                self.metrics.write_duration.observe(took.as_secs_f64());
                self.written_ok(what, on_ack);
                Ok(())
            }
            Err(e) => self.write_failed(what, text, e),
        }
    }

    fn written_ok(&mut self, what: Batch, on_ack: &mut impl FnMut(&[(u64, Point)])) {
        self.health.set(&Ok(()));
        if what == Batch::Rewrite {
            self.metrics
                .points_rewritten
                .inc_by(self.doubt.points.len() as u64);
            tracing::info!(
                points = self.doubt.points.len(),
                "points of failed writes written again with their newest values"
            );
            self.doubt = InDoubt::default();
        }
        let n = what.queued();
        self.metrics.points_written.inc_by(n as u64);
        self.written += n as u64;
        let done: Vec<(u64, Point)> = self.pending.drain(..n).collect();
        self.doubt.written(done.iter().map(|(_, p)| p));
        on_ack(&done);
        self.attempt = 0;
        self.oldest = (!self.pending.is_empty()).then(Instant::now);
        self.next_ping = Instant::now() + self.settings.ping_interval;
    }

    fn write_failed(
        &mut self,
        what: Batch,
        text: String,
        e: WriteError,
    ) -> Result<(), SinkStopped> {
        let n = what.queued();
        self.metrics.write_errors.inc();
        self.health.set(&Err(e.clone()));
        let refused = matches!(e, WriteError::Refused { .. });
        if refused && !self.settings.retry_client_errors {
            return Err(SinkStopped {
                points: n,
                error: e,
            });
        }
        // Refused (4xx) is not applied; anything else may be, later.
        if !refused {
            let points = self.pending.iter().take(n).map(|(_, p)| p);
            self.doubt.failed(points, self.settings.doubt_rewrite);
        }
        let wait = backoff(
            self.attempt,
            self.settings.retry_initial,
            self.settings.retry_max,
        );
        tracing::warn!(error = %e, points = n, retry_in_ms = wait.as_millis() as u64, "InfluxDB write failed; retrying");
        self.attempt = self.attempt.saturating_add(1);
        self.state = State::BackingOff(what, text, Instant::now() + wait);
        Ok(())
    }

    /// The next instant something is due without an event: a backoff's end, the queue's
    /// linger, the rewrite of the points in doubt, or a ping while idle.
    fn next_timer(&self) -> Option<Instant> {
        match &self.state {
            State::BackingOff(_, _, at) => Some(*at),
            State::Gathering => {
                let linger = self.oldest.map(|t| t + self.settings.linger);
                let idle = self.pending.is_empty() && !self.closed;
                let ping = idle.then_some(self.next_ping);
                [linger, self.doubt.due, ping].into_iter().flatten().min()
            }
            State::Ready(..) | State::Writing(..) => None,
        }
    }

    /// Nothing to write: the database is pinged so that readiness follows it.
    fn ping_due(&self) -> bool {
        matches!(self.state, State::Gathering)
            && self.pending.is_empty()
            && !self.closed
            && self.next_ping <= Instant::now()
    }

    fn pinged(&mut self, result: Result<(), WriteError>) {
        self.health.set(&result);
        self.next_ping = Instant::now() + self.settings.ping_interval;
    }
}

/// Runs the sink until `input` closes and everything queued is written. `on_ack` sees each
/// acknowledged batch: the points with the epochs they came from.
pub async fn run<W: PointWriter>(
    writer: &W,
    settings: &BatchSettings,
    mut input: Receiver<(u64, Vec<Point>)>,
    metrics: &SinkMetrics,
    health: Arc<SinkHealth>,
    mut on_ack: impl FnMut(&[(u64, Point)]) + Send,
) -> Result<u64, SinkStopped> {
    metrics.pending_points_max.set(settings.max_pending as i64);
    let mut sink = Sink {
        settings,
        metrics,
        health,
        divisor: writer.divisor(),
        pending: VecDeque::new(),
        oldest: None,
        closed: false,
        written: 0,
        state: State::Gathering,
        doubt: InDoubt::default(),
        attempt: 0,
        next_ping: Instant::now(),
    };
    // The request in flight, outside `sink` so that the select below can poll it while
    // its handlers change `sink`.
    let mut inflight: Option<(WriteFuture<'_>, Instant)> = None;
    loop {
        sink.health.set_pending(sink.pending.len(), metrics);
        sink.advance();
        if sink.done() {
            return Ok(sink.written);
        }
        if let Some(text) = sink.send() {
            inflight = Some((Box::pin(writer.write(text)), Instant::now()));
        }
        if sink.ping_due() {
            let r = writer.ping().await;
            sink.pinged(r);
            continue;
        }
        let timer = sink.next_timer();
        tokio::select! {
            result = async { inflight.as_mut().map(|(f, _)| f).expect("guarded").await }, if inflight.is_some() => {
                let took = inflight.take().map_or(Duration::ZERO, |(_, s)| s.elapsed());
                sink.answered(result, took, &mut on_ack)?;
            }
            msg = input.recv(), if sink.may_take() => sink.take(msg),
            _ = sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() && inflight.is_none() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::point::Fields;
    use paceline_model::Indicator;

    #[test]
    fn backoff_doubles_within_bounds() {
        let (i, m) = (Duration::from_millis(100), Duration::from_millis(1000));
        for attempt in 0..10 {
            let full = Duration::from_millis((100u64 << attempt).min(1000));
            let d = backoff(attempt, i, m);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn a_batch_sends_the_last_point_of_each_series_and_tick() {
        let s = SeriesKey::plain(Indicator::QuasiUnicorns);
        let p = |tick, v| Point::indicator(s, tick, Fields::value(v), false);
        let m = crate::Measurements {
            points: "indicator".into(),
            verdicts: "plan_verdict".into(),
        };
        let text = body(
            &m,
            1_000_000_000,
            [
                p(3_000_000_000, 1.0),
                p(6_000_000_000, 2.0),
                p(3_000_000_000, 5.0),
            ]
            .iter(),
        );
        assert_eq!(
            text,
            "indicator,indicator=quasi_unicorns value=2 6\nindicator,indicator=quasi_unicorns value=5 3\n"
        );
    }

    /// A database stand-in: answers each write from a script (then from `otherwise`),
    /// and keeps every body it was sent, in order.
    struct Scripted {
        answers: Mutex<VecDeque<Result<(), WriteError>>>,
        otherwise: Mutex<Result<(), WriteError>>,
        bodies: Mutex<Vec<String>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<(), WriteError>>, otherwise: Result<(), WriteError>) -> Self {
            Scripted {
                answers: Mutex::new(answers.into()),
                otherwise: Mutex::new(otherwise),
                bodies: Mutex::new(Vec::new()),
            }
        }
        fn bodies(&self) -> Vec<String> {
            self.bodies.lock().unwrap().clone()
        }
    }

    impl PointWriter for Scripted {
        fn divisor(&self) -> i64 {
            1
        }
        fn write(&self, body: String) -> impl Future<Output = Result<(), WriteError>> + Send {
            self.bodies.lock().unwrap().push(body);
            let scripted = self.answers.lock().unwrap().pop_front();
            let answer = scripted.unwrap_or_else(|| self.otherwise.lock().unwrap().clone());
            async move { answer }
        }
        async fn ping(&self) -> Result<(), WriteError> {
            Ok(())
        }
    }

    fn settings(batch: usize, max_pending: usize) -> BatchSettings {
        let mut s = BatchSettings::from_config(
            crate::Measurements {
                points: "m".into(),
                verdicts: "v".into(),
            },
            &InfluxConfig {
                batch_points: batch,
                max_pending_points: max_pending,
                linger_ms: 5,
                retry_initial_ms: 1,
                retry_max_ms: 4,
                ..InfluxConfig::default()
            },
        );
        s.ping_interval = Duration::from_secs(3600);
        s
    }

    fn ticks(n: i64) -> Vec<Point> {
        let s = SeriesKey::plain(Indicator::QuasiUnicorns);
        (0..n)
            .map(|i| Point::indicator(s, i, Fields::value(i as f64), false))
            .collect()
    }

    /// The line of tick `t` (value `t`) as the stand-in receives it.
    fn line(t: i64) -> String {
        format!("m,indicator=quasi_unicorns value={t} {t}\n")
    }

    fn lines(ts: std::ops::Range<i64>) -> String {
        ts.map(line).collect()
    }

    fn retryable() -> Result<(), WriteError> {
        Err(WriteError::Retryable("connection refused".into()))
    }

    #[tokio::test]
    async fn a_failed_batch_is_sent_again_whole_then_the_rest_in_order() {
        let db = Scripted::new(vec![retryable(), retryable()], Ok(()));
        let settings = settings(3, 9);
        let metrics = SinkMetrics::register(&prometheus::Registry::new()).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for (epoch, d) in deliveries(ticks(7), &settings).into_iter().enumerate() {
            tx.send((epoch as u64, d)).await.unwrap();
        }
        drop(tx);
        let mut acked = Vec::new();
        let health = Arc::new(SinkHealth::default());
        let written = run(&db, &settings, rx, &metrics, health.clone(), |done| {
            acked.extend(done.iter().map(|(e, p)| (*e, p.tick)))
        })
        .await
        .unwrap();
        assert_eq!(written, 7);
        // Epochs 0, 1, 2 hold ticks 0-2, 3-5 and 6: acknowledged once each, in order.
        let expected: Vec<(u64, i64)> = (0..7).map(|t| ((t / 3) as u64, t)).collect();
        assert_eq!(acked, expected);
        // The first batch twice more after its failures, then the rest; the points of the
        // failed writes once more at the end (in any order), since the database may still
        // apply a failed write late.
        let mut bodies = db.bodies();
        assert_eq!(bodies.len(), 6, "{bodies:?}");
        let mut rewrite: Vec<&str> = bodies[5].lines().collect();
        rewrite.sort();
        assert_eq!(rewrite.join("\n") + "\n", lines(0..3));
        bodies.truncate(5);
        assert_eq!(
            bodies,
            vec![
                lines(0..3),
                lines(0..3),
                lines(0..3),
                lines(3..6),
                lines(6..7)
            ]
        );
        assert_eq!(metrics.write_errors.get(), 2);
        assert_eq!(metrics.points_written.get(), 7);
        assert_eq!(metrics.points_rewritten.get(), 3);
        assert!(health.accepting.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn a_refused_batch_stops_the_sink_without_acknowledging_it() {
        let refused = Err(WriteError::Refused {
            status: 400,
            body: "bad".into(),
        });
        let db = Scripted::new(vec![Ok(()), refused], Ok(()));
        let settings = settings(2, 8);
        let metrics = SinkMetrics::register(&prometheus::Registry::new()).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send((0, ticks(4))).await.unwrap();
        drop(tx);
        let mut acked = Vec::new();
        let stopped = run(&db, &settings, rx, &metrics, Arc::default(), |done| {
            acked.extend(done.iter().map(|(_, p)| p.tick))
        })
        .await
        .unwrap_err();
        assert_eq!(stopped.points, 2);
        assert_eq!(acked, vec![0, 1]);
        assert_eq!(db.bodies(), vec![lines(0..2), lines(2..4)]);
    }

    #[tokio::test]
    async fn while_the_database_is_down_the_bound_holds_and_the_input_waits() {
        // Down until told otherwise; then everything is written, in order.
        let db = Arc::new(Scripted::new(vec![], retryable()));
        let settings = Arc::new(settings(10, 35));
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(SinkMetrics::register(&registry).unwrap());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let acked = Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let (db, settings, metrics, acked) =
                (db.clone(), settings.clone(), metrics.clone(), acked.clone());
            tokio::spawn(async move {
                run(&*db, &settings, rx, &metrics, Arc::default(), |done| {
                    acked
                        .lock()
                        .unwrap()
                        .extend(done.iter().map(|(_, p)| p.tick))
                })
                .await
            })
        };
        // 20 deliveries of 10 points: the sink takes 3 (a fourth would pass 35), the
        // channel one more, and the producer waits on the fifth.
        let producer = tokio::spawn(async move {
            let mut sent = 0usize;
            for d in deliveries(ticks(200), &settings) {
                if tx.send((0, d)).await.is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            metrics.pending_points.get(),
            30,
            "three deliveries taken, a fourth would pass 35"
        );
        assert!(
            !producer.is_finished(),
            "the producer waits behind the full sink"
        );
        assert!(acked.lock().unwrap().is_empty());
        assert!(metrics.write_errors.get() >= 2, "the first batch retried");
        *db.otherwise.lock().unwrap() = Ok(());
        assert_eq!(producer.await.unwrap(), 20);
        let written = sink.await.unwrap().unwrap();
        assert_eq!(written, 200);
        assert_eq!(*acked.lock().unwrap(), (0..200).collect::<Vec<i64>>());
    }

    #[test]
    fn deliveries_keep_the_order_in_pieces_of_a_batch_at_most() {
        let s = SeriesKey::plain(Indicator::QuasiUnicorns);
        let points: Vec<Point> = (0..7)
            .map(|i| Point::indicator(s, i, Fields::value(i as f64), false))
            .collect();
        let settings = BatchSettings::from_config(
            crate::Measurements {
                points: "indicator".into(),
                verdicts: "plan_verdict".into(),
            },
            &InfluxConfig {
                batch_points: 3,
                ..InfluxConfig::default()
            },
        );
        let ticks = |d: &[Vec<Point>]| -> Vec<Vec<Nanos>> {
            d.iter()
                .map(|v| v.iter().map(|p| p.tick).collect())
                .collect()
        };
        let cut = deliveries(points.clone(), &settings);
        assert_eq!(ticks(&cut), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        let whole = deliveries(points[..3].to_vec(), &settings);
        assert_eq!(ticks(&whole), vec![vec![0, 1, 2]]);
        assert_eq!(deliveries(Vec::new(), &settings).len(), 1);
    }
}
