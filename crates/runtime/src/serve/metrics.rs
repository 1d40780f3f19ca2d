//! The service's Prometheus metrics (docs/outputs.md names), declared in one place: pipeline
//! health (events, lag, watermarks, corrections, latency, checkpoints) and the indicator
//! gauges. The sink's own metrics are declared in `paceline-sink`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use paceline_model::names::Lang;
use paceline_model::point::{Fields, Point, Status};
use paceline_model::{Nanos, SeriesKey, Stream};
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
    /// `paceline_clock_jumps_total`: steps of the system's clock the service did not
    /// follow ([`paceline_model::clock`]).
    pub clock_jumps: IntCounter,
    /// `paceline_dataflow_points_total`: points the dataflow handed to the sink; less
    /// `paceline_sink_points_written_total` and the sink's pending points, what is between.
    pub dataflow_points: IntCounter,
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
    /// `paceline_indicator_status_since_timestamp_seconds`: the first tick of the run of
    /// ticks holding the series' current status, so that rules can ask how long (in event
    /// time) a goal has been behind.
    status_since: GaugeVec,
    /// Each series' status and the tick it began at, behind `status_since`.
    since: Arc<Mutex<HashMap<SeriesKey, (Status, Nanos)>>>,
    /// `paceline_plan_item_info{indicator,<tags>,owner,title_en,title_zh,deadline,status_page}`:
    /// 1 per planned series, for rules to join owners and titles onto the gauges.
    plan_info: GaugeVec,
    /// `paceline_plan_item_deadline_timestamp_seconds`: each planned series' deadline.
    plan_deadline: GaugeVec,
    /// `paceline_stream_last_event_timestamp_seconds{stream}`: when the stream's newest
    /// accepted event was read (wall clock); the process's start until one is.
    pub last_event: GaugeVec,
    /// `paceline_ready`: 1 while `/readyz` answers 200, as of the last scrape.
    pub ready: IntGauge,
}

/// The labels of a series on the indicator gauges: its indicator and its tag's slot.
fn series_labels(series: &SeriesKey) -> [&'static str; 5] {
    let mut labels = [series.indicator.name(), "", "", "", ""];
    if let Some((k, v)) = series.tag_pair() {
        if let Some(i) = INDICATOR_LABELS.iter().position(|l| *l == k) {
            labels[i] = v;
        }
    }
    labels
}

/// The wall clock in seconds since the Unix epoch.
fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
        let mut info_labels = INDICATOR_LABELS.to_vec();
        info_labels.extend(["owner", "title_en", "title_zh", "deadline", "status_page"]);
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
                "Messages the partition holds beyond what this process has read (asked of the broker every few seconds, also while reading waits on a full pipeline).",
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
            clock_jumps: {
                let c = IntCounter::new(
                    "paceline_clock_jumps_total",
                    "Steps of the system's clock (an NTP step, a VM resumed) the service did not follow: time went on with the monotonic clock.",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            dataflow_points: {
                let c = IntCounter::new(
                    "paceline_dataflow_points_total",
                    "Points the dataflow handed to the sink (each is written once acknowledged).",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
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
            status_since: gauge(
                "paceline_indicator_status_since_timestamp_seconds",
                "The first tick of the series' current run of ticks with its current status (as far as this process has seen).",
                &INDICATOR_LABELS,
            )?,
            since: Arc::new(Mutex::new(HashMap::new())),
            plan_info: gauge(
                "paceline_plan_item_info",
                "1 per planned series: its owner, titles, deadline (plan-local day) and the status page's address.",
                &info_labels,
            )?,
            plan_deadline: gauge(
                "paceline_plan_item_deadline_timestamp_seconds",
                "The planned series' deadline.",
                &INDICATOR_LABELS,
            )?,
            last_event: gauge(
                "paceline_stream_last_event_timestamp_seconds",
                "Wall-clock time at which the stream's newest accepted event was read (the process's start until one is).",
                &["stream"],
            )?,
            ready: {
                let g = IntGauge::new(
                    "paceline_ready",
                    "1 while the service is ready (/readyz answers 200), as of the last scrape.",
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
        };
        let build = gauge(
            "paceline_build_info",
            "Always 1: the build's version and git revision.",
            &["version", "revision"],
        )?;
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::build::revision()])
            .set(1.0);
        register_process_metrics(r)?;
        m.start_at_zero();
        Ok(m)
    }

    /// Publishes `paceline_plan_item_info` and the deadlines of `config`'s plan;
    /// `status_page` is the page's public address (may be empty).
    pub fn set_plan(&self, config: &paceline_model::config::Config, status_page: &str) {
        let owners: HashMap<SeriesKey, String> = config.plan_owners().into_iter().collect();
        for plan in config.plan_specs() {
            let labels = series_labels(&plan.series);
            let owner = owners.get(&plan.series).map_or("", String::as_str);
            let deadline = crate::present::day(plan.deadline);
            let en = plan.series.title(Lang::En);
            let zh = plan.series.title(Lang::Zh);
            let mut info: Vec<&str> = labels.to_vec();
            info.extend([
                owner,
                en.as_str(),
                zh.as_str(),
                deadline.as_str(),
                status_page,
            ]);
            self.plan_info.with_label_values(&info).set(1.0);
            self.plan_deadline
                .with_label_values(&labels)
                .set(plan.deadline as f64 / 1e9);
        }
    }

    /// Marks an accepted event of `stream` read now.
    pub fn event_read(&self, stream: Stream) {
        self.last_event
            .with_label_values(&[stream.as_str()])
            .set(now_s());
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
            // No event yet: as if one came at the start, so that a stream silent since a
            // start alerts once its silence is longer than it may be.
            self.last_event.with_label_values(&[st]).set(now_s());
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
        let labels = series_labels(&p.series);
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
        self.set_status_since(p, &labels);
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

    /// Keeps the tick since which the series holds its status: a new status starts a run
    /// at this tick, the same one carries it on.
    fn set_status_since(&self, p: &Point, labels: &[&str; 5]) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        match p.fields.status {
            Some(status) => {
                let run = since.entry(p.series).or_insert((status, p.tick));
                if run.0 != status {
                    *run = (status, p.tick);
                }
                self.status_since
                    .with_label_values(labels)
                    .set(run.1 as f64 / 1e9);
            }
            None => {
                since.remove(&p.series);
                let _ = self.status_since.remove_label_values(labels);
            }
        }
    }
}

/// The standard `process_*` metrics (CPU, resident memory, open file descriptors, start
/// time), where the platform has them.
fn register_process_metrics(r: &Registry) -> Result<(), prometheus::Error> {
    #[cfg(target_os = "linux")]
    r.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    #[cfg(not(target_os = "linux"))]
    let _ = r;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use paceline_model::config::Config;
    use paceline_model::Indicator;

    /// The samples of `name` as (labels, value).
    fn samples(r: &Registry, name: &str) -> Vec<(HashMap<String, String>, f64)> {
        r.gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().to_vec())
            .map(|m| {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect();
                (labels, m.get_gauge().get_value())
            })
            .collect()
    }

    #[test]
    fn plan_items_carry_owner_titles_and_deadline() {
        let r = Registry::new();
        let m = ServeMetrics::register(&r).unwrap();
        let mut config = Config::default();
        config.plan.items[8].owner = Some("industry-bureau".into());
        m.set_plan(&config, "https://paceline.example/");
        let info = samples(&r, "paceline_plan_item_info");
        assert_eq!(info.len(), config.plan.items.len());
        let unicorns = info
            .iter()
            .find(|(l, _)| l["indicator"] == "quasi_unicorns")
            .expect("quasi_unicorns");
        // Hand-written: the default owner, the contract's titles, the plan's deadline.
        assert_eq!(unicorns.0["owner"], "plan-office");
        assert_eq!(unicorns.0["title_zh"], "准独角兽企业");
        assert_eq!(unicorns.0["deadline"], "2025-01-01");
        assert_eq!(unicorns.0["status_page"], "https://paceline.example/");
        assert_eq!(unicorns.1, 1.0);
        let cyber = info
            .iter()
            .find(|(l, _)| l.get("cluster").is_some_and(|c| c == "cybersecurity"))
            .expect("cluster goal");
        assert_eq!(cyber.0["owner"], "industry-bureau");
        assert_eq!(
            cyber.0["title_en"],
            "Industry cluster revenue, last four quarters — Cybersecurity"
        );
        let build = samples(&r, "paceline_build_info");
        assert_eq!(build.len(), 1);
        assert_eq!(build[0].0["version"], env!("CARGO_PKG_VERSION"));
        assert!(r
            .gather()
            .iter()
            .any(|f| f.name() == "process_resident_memory_bytes"));
        assert_eq!(
            samples(&r, "paceline_stream_last_event_timestamp_seconds").len(),
            3,
            "every stream has a freshness from the start"
        );
    }

    #[test]
    fn status_since_is_the_first_tick_of_the_current_run() {
        let r = Registry::new();
        let m = ServeMetrics::register(&r).unwrap();
        let series = SeriesKey::plain(Indicator::QuasiUnicorns);
        let point = |tick: Nanos, status| {
            let mut f = Fields::value(1.0);
            f.status = Some(status);
            Point::indicator(series, tick * 1_000_000_000, f, false)
        };
        let since = || samples(&r, "paceline_indicator_status_since_timestamp_seconds")[0].1;
        m.set_indicator(&point(100, Status::Behind));
        m.set_indicator(&point(200, Status::Behind));
        assert_eq!(since(), 100.0);
        m.set_indicator(&point(300, Status::AtRisk));
        assert_eq!(since(), 300.0);
        m.set_indicator(&point(400, Status::Behind));
        m.set_indicator(&point(500, Status::Behind));
        assert_eq!(since(), 400.0);
    }
}
