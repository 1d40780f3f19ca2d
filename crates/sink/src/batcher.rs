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
use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl SinkHealth {
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

/// What the request in flight writes: a batch of the queue's first points, or the
/// rewrite of the points in doubt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Batch {
    Queued(usize),
    Rewrite,
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

/// Runs the sink until `input` closes and everything queued is written. `on_ack` sees each
/// acknowledged batch: the points with the epochs they came from.
pub async fn run(
    writer: &InfluxWriter,
    settings: &BatchSettings,
    mut input: Receiver<(u64, Vec<Point>)>,
    metrics: &SinkMetrics,
    health: Arc<SinkHealth>,
    mut on_ack: impl FnMut(&[(u64, Point)]) + Send,
) -> Result<u64, SinkStopped> {
    metrics.pending_points_max.set(settings.max_pending as i64);
    let mut pending: VecDeque<(u64, Point)> = VecDeque::new();
    let mut oldest: Option<Instant> = None;
    let mut closed = false;
    let mut written = 0u64;
    // The batch being written: what it is, its body and the request in flight.
    let mut batch: Option<(Batch, String)> = None;
    let mut doubt = InDoubt::default();
    let mut inflight: Option<(WriteFuture<'_>, Instant)> = None;
    let mut retry_at: Option<Instant> = None;
    let mut attempt = 0u32;
    let mut next_ping = Instant::now();
    loop {
        metrics.pending_points.set(pending.len() as i64);
        if batch.is_none() {
            // Before the queue's next batch: the values in doubt are the newest written.
            if let Some(text) = doubt.due_body(
                &settings.measurements,
                writer.divisor,
                closed && pending.is_empty(),
            ) {
                batch = Some((Batch::Rewrite, text));
                retry_at = Some(Instant::now());
            }
        }
        if batch.is_none() {
            if closed && pending.is_empty() {
                return Ok(written);
            }
            let due = oldest.is_some_and(|t| t.elapsed() >= settings.linger);
            if !pending.is_empty() && (pending.len() >= settings.batch_points || due || closed) {
                let n = pending.len().min(settings.batch_points);
                let text = body(
                    &settings.measurements,
                    writer.divisor,
                    pending.iter().take(n).map(|(_, p)| p),
                );
                batch = Some((Batch::Queued(n), text));
                retry_at = Some(Instant::now());
            }
        }
        if let (Some(at), Some((_, text))) = (retry_at, &batch) {
            if at <= Instant::now() && inflight.is_none() {
                retry_at = None;
                inflight = Some((Box::pin(writer.write(text.clone())), Instant::now()));
            }
        }
        let linger_at = oldest.map(|t| t + settings.linger);
        tokio::select! {
            result = async { inflight.as_mut().map(|(f, _)| f).expect("guarded").await }, if inflight.is_some() => {
                let started = inflight.take().map(|(_, s)| s).unwrap_or_else(Instant::now);
                let what = batch.as_ref().map_or(Batch::Queued(0), |(w, _)| *w);
                let n = match what {
                    Batch::Queued(n) => n,
                    Batch::Rewrite => 0,
                };
                match result {
                    Ok(()) => {
                        health.set(&Ok(()));
                        metrics.write_duration.observe(started.elapsed().as_secs_f64());
                        if what == Batch::Rewrite {
                            metrics.points_rewritten.inc_by(doubt.points.len() as u64);
                            tracing::info!(points = doubt.points.len(), "points of failed writes written again with their newest values");
                            doubt = InDoubt::default();
                        }
                        metrics.points_written.inc_by(n as u64);
                        written += n as u64;
                        let done: Vec<(u64, Point)> = pending.drain(..n).collect();
                        doubt.written(done.iter().map(|(_, p)| p));
                        on_ack(&done);
                        batch = None;
                        attempt = 0;
                        oldest = if pending.is_empty() { None } else { Some(Instant::now()) };
                        next_ping = Instant::now() + settings.ping_interval;
                    }
                    Err(e) => {
                        metrics.write_errors.inc();
                        health.set(&Err(e.clone()));
                        if matches!(e, WriteError::Refused { .. }) && !settings.retry_client_errors {
                            return Err(SinkStopped { points: n, error: e });
                        }
                        // Refused (4xx) is not applied; anything else may be, later.
                        if !matches!(e, WriteError::Refused { .. }) {
                            doubt.failed(pending.iter().take(n).map(|(_, p)| p), settings.doubt_rewrite);
                        }
                        let wait = backoff(attempt, settings.retry_initial, settings.retry_max);
                        tracing::warn!(error = %e, points = n, retry_in_ms = wait.as_millis() as u64, "InfluxDB write failed; retrying");
                        attempt = attempt.saturating_add(1);
                        retry_at = Some(Instant::now() + wait);
                    }
                }
            }
            _ = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() && inflight.is_none() => {}
            // A delivery holds at most `batch_points`: taken only when one that large fits.
            msg = input.recv(), if !closed && pending.len() + settings.batch_points <= settings.max_pending => {
                match msg {
                    Some((epoch, points)) => {
                        if oldest.is_none() && !points.is_empty() {
                            oldest = Some(Instant::now());
                        }
                        pending.extend(points.into_iter().map(|p| (epoch, p)));
                    }
                    None => closed = true,
                }
            }
            _ = sleep_until(linger_at.unwrap_or_else(Instant::now)), if linger_at.is_some() && batch.is_none() => {}
            _ = sleep_until(doubt.due.unwrap_or_else(Instant::now)), if doubt.due.is_some() && batch.is_none() => {}
            _ = sleep_until(next_ping), if batch.is_none() && pending.is_empty() && !closed => {
                let r = writer.ping().await;
                health.set(&r);
                next_ping = Instant::now() + settings.ping_interval;
            }
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
