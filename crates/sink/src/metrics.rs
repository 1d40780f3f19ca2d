//! The sink's Prometheus metrics (docs/outputs.md names), declared in one place and registered
//! into the service's registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Metrics of the InfluxDB sink.
#[derive(Clone)]
pub struct SinkMetrics {
    /// `paceline_sink_points_written_total`: points acknowledged by the database.
    pub points_written: IntCounter,
    /// `paceline_sink_write_errors_total`: failed write attempts (each retry counts).
    pub write_errors: IntCounter,
    /// `paceline_sink_points_rewritten_total`: points of failed writes written again with
    /// their newest values (not counted as written).
    pub points_rewritten: IntCounter,
    /// `paceline_sink_write_duration_seconds`: duration of successful write requests.
    pub write_duration: Histogram,
    /// `paceline_sink_pending_points`: points received and not yet acknowledged.
    pub pending_points: IntGauge,
    /// `paceline_sink_pending_points_max`: the bound on pending points, past which the
    /// sources stop reading (alerts compare the pending points with it).
    pub pending_points_max: IntGauge,
}

impl SinkMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = SinkMetrics {
            points_written: IntCounter::new(
                "paceline_sink_points_written_total",
                "Points acknowledged by the database.",
            )?,
            write_errors: IntCounter::new(
                "paceline_sink_write_errors_total",
                "Failed write attempts, each retry counted.",
            )?,
            points_rewritten: IntCounter::new(
                "paceline_sink_points_rewritten_total",
                "Points of failed writes written again with their newest values, after influx.doubt_rewrite_s without failure.",
            )?,
            write_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "paceline_sink_write_duration_seconds",
                    "Duration of successful write requests.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            pending_points: IntGauge::new(
                "paceline_sink_pending_points",
                "Points received from the dataflow and not yet acknowledged.",
            )?,
            pending_points_max: IntGauge::new(
                "paceline_sink_pending_points_max",
                "Pending points held at most; past this the sources stop reading.",
            )?,
        };
        registry.register(Box::new(m.points_rewritten.clone()))?;
        registry.register(Box::new(m.points_written.clone()))?;
        registry.register(Box::new(m.write_errors.clone()))?;
        registry.register(Box::new(m.write_duration.clone()))?;
        registry.register(Box::new(m.pending_points.clone()))?;
        registry.register(Box::new(m.pending_points_max.clone()))?;
        Ok(m)
    }
}
