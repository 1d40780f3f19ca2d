//! End-to-end benchmark of `paceline serve` on the local tansu broker and InfluxDB 1.x:
//! a generated district (every telemetry event) produced first, then the time from the
//! service's start until every event is counted, every watermark reached and nothing is
//! pending; tick latency and end-to-end latency quantiles from the service's histograms.
//!
//! Run: `cargo bench -p paceline-tests --bench serve` (after `scripts/test` installed the
//! services). The local broker consumes about 20 000–30 000 messages/s, so this measures
//! the pipeline at that rate, not the pipeline's own ceiling.

use std::time::{Duration, Instant};

use paceline_runtime::settings::InfluxApi;
use paceline_tests::services::{Influx1, Tansu};
use paceline_tests::{kafka, scenario_config, topics, Dataset, Metrics, Serve};

/// The smallest bucket bound holding quantile `q` of histogram `name`.
fn quantile(m: &Metrics, name: &str, q: f64) -> Option<f64> {
    let count = m.sum(&format!("{name}_count"), &[]);
    if count == 0.0 {
        return None;
    }
    let mut bounds: Vec<f64> = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ]
    .to_vec();
    bounds.sort_by(f64::total_cmp);
    bounds.into_iter().find(|b| {
        let le = format!("{b}");
        m.sum(&format!("{name}_bucket"), &[("le", le.as_str())]) >= q * count
    })
}

fn main() {
    let tansu = Tansu::start();
    let influx = Influx1::start();
    let prefix = "bench";
    let (t, dl) = topics(prefix);
    for name in &t {
        tansu.create_topic(name, 2);
    }
    tansu.create_topic(&dl, 1);
    influx.query("", "CREATE DATABASE bench");
    let data = Dataset::new(1, 1, false, &[]);
    let produced = Instant::now();
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let produce_s = produced.elapsed().as_secs_f64();
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    config.service.idle_watermark_follows_clock = false;
    let env = [
        ("PACELINE_KAFKA_BROKERS", tansu.brokers()),
        ("PACELINE_INFLUX_API", "v1".to_string()),
        ("PACELINE_INFLUX_URL", influx.url()),
        ("PACELINE_INFLUX_DB", "bench".to_string()),
    ];
    let started = Instant::now();
    let mut serve = Serve::start(&config, &env);
    let m = serve.wait_drained(
        data.lines.len(),
        data.final_watermarks(&config),
        Duration::from_secs(600),
    );
    let elapsed = started.elapsed().as_secs_f64();
    let events = data.lines.len() as f64;
    println!("events:                 {}", data.lines.len());
    println!(
        "produce to tansu:       {produce_s:.1} s ({:.0} events/s)",
        events / produce_s
    );
    println!(
        "serve, start to drained: {elapsed:.1} s ({:.0} events/s, includes start-up, the 1 s idle timeout and the 1.5 s polling of this bench)",
        events / elapsed
    );
    println!(
        "points written:         {}",
        m.sum("paceline_sink_points_written_total", &[])
    );
    for (label, name) in [
        ("tick latency", "paceline_tick_latency_seconds"),
        ("end-to-end latency", "paceline_end_to_end_latency_seconds"),
    ] {
        println!(
            "{label:<22}  p50 <= {:?} s, p99 <= {:?} s (histogram bucket bounds)",
            quantile(&m, name, 0.5),
            quantile(&m, name, 0.99)
        );
    }
    // For scripts/bench: the figure as one JSON object.
    println!(
        "{}",
        serde_json::json!({
            "measure": "kafka_tansu_events_per_s",
            "value": events / elapsed,
            "unit": "events/s",
            "detail": "tansu (SQLite storage), start to drained, start-up included",
        })
    );
    let (code, _) = serve.stop();
    assert_eq!(code, Some(0));
}
