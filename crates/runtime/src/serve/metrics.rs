//! The service's Prometheus metrics (docs/outputs.md names), declared in one place: pipeline
//! health (events, lag, watermarks, corrections, latency, checkpoints) and the indicator
//! gauges. The sink's own metrics are declared in `paceline-sink`.

use paceline_model::point::{Fields, Point, Status};
use paceline_model::{Nanos, Stream};
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// Labels of the indicator gauges: the indicator and every tag an indicator may carry
/// (empty where the indicator has none, which Prometheus treats as absent).
const INDICATOR_LABELS: [&str; 5] = ["indicator", "cluster", "field", "region", "platform_kind"];

/// Metrics of the serve pipeline.
#[derive(Clone)]
pub struct ServeMetrics {
    /// `paceline_events_total{stream,outcome}`.
    pub events: IntCounterVec,
    /// `paceline_events_rejected_total{stream,reason}`.
    pub rejected: IntCounterVec,
    /// `paceline_source_tombstones_total{topic}`: messages without a value, skipped.
    pub tombstones: IntCounterVec,
    /// `paceline_source_offset_resets_total{topic,partition}`: positions retention passed.
    pub offset_resets: IntCounterVec,
    /// `paceline_source_lag_messages{topic,partition}`.
    pub source_lag: IntGaugeVec,
    /// `paceline_stream_lag_messages{stream}`.
    pub stream_lag: IntGaugeVec,
    /// `paceline_watermark_timestamp_seconds{stream}`: over this process's partitions.
    pub watermark: GaugeVec,
    /// `paceline_cluster_watermark_timestamp_seconds{stream}`: over every process's, as
    /// the dataflow closes ticks.
    pub cluster_watermark: GaugeVec,
    /// `paceline_corrections_total{stream}`.
    pub corrections: IntCounterVec,
    /// `paceline_corrections_unrepresentable_total`.
    pub unrepresentable: IntCounter,
    /// `paceline_checkpoint_duration_seconds`.
    pub checkpoint_duration: Histogram,
    /// `paceline_checkpoint_last_success_timestamp_seconds`.
    pub checkpoint_last_success: Gauge,
    /// `paceline_checkpoint_size_bytes`: the last checkpoint file's size.
    pub checkpoint_size: IntGauge,
    /// `paceline_state_entities{kind}`: entities held by the dataflow (as of the last
    /// checkpoint), and `kind="event"` for the events not yet folded.
    pub state_entities: IntGaugeVec,
    /// `paceline_end_to_end_latency_seconds`: consuming an event to the sink's ack.
    pub end_to_end: Histogram,
    /// `paceline_tick_latency_seconds`: the watermark passing ticks to the sink's ack.
    pub tick_latency: Histogram,
    /// `paceline_dead_letters_total{stream}`: rejected events written to the dead-letter topic.
    pub dead_letters: IntCounterVec,
    /// `paceline_indicator_cadence_seconds{indicator,stream}`: each indicator's cadence and
    /// the stream it reads, so that rules can relate a series' ticks to its watermark.
    pub cadence: GaugeVec,
    value: GaugeVec,
    target: GaugeVec,
    expected: GaugeVec,
    pace_ratio: GaugeVec,
    projected: GaugeVec,
    status: GaugeVec,
    tick: GaugeVec,
    verdict: GaugeVec,
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ]
}

impl ServeMetrics {
    /// Sets `paceline_state_entities` from the dataflow's counts.
    pub fn set_entities(&self, c: paceline_dataflow::entities::EntityCounts) {
        for (kind, n) in [
            ("enterprise", c.enterprises),
            ("project", c.projects),
            ("scenario", c.scenarios),
            ("platform", c.platforms),
            ("event", c.events),
        ] {
            self.state_entities.with_label_values(&[kind]).set(n as i64);
        }
    }

    /// Creates and registers every metric.
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                r.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
                let g = GaugeVec::new(Opts::new(name, help), labels)?;
                r.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let igauge =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
                r.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let histogram = |name: &str, help: &str| -> Result<Histogram, prometheus::Error> {
            let h =
                Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency_buckets()))?;
            r.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let mut status_labels = INDICATOR_LABELS.to_vec();
        status_labels.push("status");
        let m = ServeMetrics {
            events: counter(
                "paceline_events_total",
                "Events read, by stream and outcome (accepted, duplicate, rejected).",
                &["stream", "outcome"],
            )?,
            rejected: counter(
                "paceline_events_rejected_total",
                "Rejected events, by stream and reason.",
                &["stream", "reason"],
            )?,
            tombstones: counter(
                "paceline_source_tombstones_total",
                "Messages without a value (compaction tombstones), skipped: not events, not rejections.",
                &["topic"],
            )?,
            offset_resets: counter(
                "paceline_source_offset_resets_total",
                "Positions that fell out of the topic's retention: reading went on at the partition's first offset, the messages in between were never read.",
                &["topic", "partition"],
            )?,
            source_lag: igauge(
                "paceline_source_lag_messages",
                "Messages behind the partition's high watermark.",
                &["topic", "partition"],
            )?,
            stream_lag: igauge(
                "paceline_stream_lag_messages",
                "Messages behind, summed over the stream's partitions.",
                &["stream"],
            )?,
            watermark: gauge(
                "paceline_watermark_timestamp_seconds",
                "The stream's watermark (event time, seconds since the Unix epoch).",
                &["stream"],
            )?,
            cluster_watermark: gauge(
                "paceline_cluster_watermark_timestamp_seconds",
                "The stream's watermark over every process of the cluster, at which ticks close (one process: as paceline_watermark_timestamp_seconds once applied).",
                &["stream"],
            )?,
            corrections: counter(
                "paceline_corrections_total",
                "Points rewritten because of late or amended events.",
                &["stream"],
            )?,
            unrepresentable: {
                let c = IntCounter::new("paceline_corrections_unrepresentable_total", "Corrections that would leave a written field undefined; the point was left as it was.")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            checkpoint_duration: histogram(
                "paceline_checkpoint_duration_seconds",
                "Duration of checkpoints.",
            )?,
            checkpoint_last_success: {
                let g = Gauge::new(
                    "paceline_checkpoint_last_success_timestamp_seconds",
                    "When the last checkpoint succeeded.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            checkpoint_size: {
                let g = IntGauge::new(
                    "paceline_checkpoint_size_bytes",
                    "Size of the last checkpoint written.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
            state_entities: igauge(
                "paceline_state_entities",
                "Entities held by the dataflow, by kind (enterprise, project, scenario, platform; event: events not yet folded into their entity's state), as of the last checkpoint.",
                &["kind"],
            )?,
            end_to_end: histogram(
                "paceline_end_to_end_latency_seconds",
                "From consuming an event to the sink's acknowledgement of the points it changed.",
            )?,
            tick_latency: histogram(
                "paceline_tick_latency_seconds",
                "From the watermark passing ticks to the sink's acknowledgement of their points.",
            )?,
            dead_letters: counter(
                "paceline_dead_letters_total",
                "Rejected events written to the dead-letter topic.",
                &["stream"],
            )?,
            cadence: gauge(
                "paceline_indicator_cadence_seconds",
                "The indicator's cadence; its `stream` label names the stream it reads.",
                &["indicator", "stream"],
            )?,
            value: gauge(
                "paceline_indicator_value",
                "The indicator's value at the newest tick written.",
                &INDICATOR_LABELS,
            )?,
            target: gauge(
                "paceline_indicator_target",
                "The plan's target, on planned series.",
                &INDICATOR_LABELS,
            )?,
            expected: gauge(
                "paceline_indicator_expected",
                "The value expected at this tick by the plan's pace.",
                &INDICATOR_LABELS,
            )?,
            pace_ratio: gauge(
                "paceline_indicator_pace_ratio",
                "Progress over expected progress.",
                &INDICATOR_LABELS,
            )?,
            projected: gauge(
                "paceline_indicator_projected",
                "The value projected at the deadline.",
                &INDICATOR_LABELS,
            )?,
            status: gauge(
                "paceline_indicator_status",
                "1 for the series' current status, 0 for the others.",
                &status_labels,
            )?,
            tick: gauge(
                "paceline_indicator_tick_timestamp_seconds",
                "The newest tick written for the series.",
                &INDICATOR_LABELS,
            )?,
            verdict: gauge(
                "paceline_plan_verdict",
                "The planned series' verdict once its verdict tick is written: 1 met, 0 missed.",
                &INDICATOR_LABELS,
            )?,
        };
        m.start_at_zero();
        Ok(m)
    }

    /// Creates the per-stream counters at 0, so that rates and dashboards show a stream
    /// before its first event, correction or dead letter (not "no data").
    fn start_at_zero(&self) {
        for s in paceline_model::Stream::ALL {
            let st = s.as_str();
            for outcome in ["accepted", "duplicate", "rejected"] {
                self.events.with_label_values(&[st, outcome]);
            }
            self.corrections.with_label_values(&[st]);
            self.dead_letters.with_label_values(&[st]);
        }
        self.set_entities(paceline_dataflow::entities::EntityCounts::default());
    }

    /// `paceline_watermark_timestamp_seconds{stream}` from a watermark in nanoseconds.
    pub fn set_watermark(&self, stream: Stream, watermark: Nanos) {
        self.watermark
            .with_label_values(&[stream.as_str()])
            .set(watermark as f64 / 1e9);
    }

    /// Publishes every indicator's cadence and stream.
    pub fn set_cadences(&self, config: &paceline_model::config::Config) {
        for ind in paceline_model::Indicator::ALL {
            self.cadence
                .with_label_values(&[ind.name(), ind.stream().as_str()])
                .set(config.cadence(*ind) as f64 / 1e9);
        }
    }

    /// Sets the indicator gauges of one series to `p` (its newest tick written), or its
    /// verdict gauge to a verdict point.
    pub fn set_indicator(&self, p: &Point) {
        let mut labels = [p.series.indicator.name(), "", "", "", ""];
        if let Some((k, v)) = p.series.tag_pair() {
            if let Some(i) = INDICATOR_LABELS.iter().position(|l| *l == k) {
                labels[i] = v;
            }
        }
        if let Some(v) = &p.verdict {
            let met = v.verdict == paceline_model::point::Verdict::Met;
            self.verdict
                .with_label_values(&labels)
                .set(f64::from(u8::from(met)));
            return;
        }
        let f: &Fields = &p.fields;
        self.value.with_label_values(&labels).set(f.value);
        self.tick
            .with_label_values(&labels)
            .set(p.tick as f64 / 1e9);
        for (g, v) in [
            (&self.target, f.target),
            (&self.expected, f.expected),
            (&self.pace_ratio, f.pace_ratio),
            (&self.projected, f.projected),
        ] {
            match v {
                Some(v) => g.with_label_values(&labels).set(v),
                None => {
                    let _ = g.remove_label_values(&labels);
                }
            }
        }
        for s in Status::ALL {
            let mut l = labels.to_vec();
            l.push(s.as_str());
            match f.status {
                Some(cur) => self
                    .status
                    .with_label_values(&l)
                    .set(f64::from(u8::from(cur == s))),
                None => {
                    let _ = self.status.remove_label_values(&l);
                }
            }
        }
    }
}
