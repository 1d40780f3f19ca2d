//! Clock jumps (Debian's `faketime`): `paceline serve` runs with libfaketime reading its
//! offset from a file the test rewrites, the monotonic clock left alone as an NTP step or
//! a resumed VM leaves it. While every partition is idle (the watermark following the
//! clock) the clock goes three days ahead, then back, then two days behind, and stays
//! there while recent telemetry arrives:
//!
//! - no event is rejected: neither `too_late` (against a watermark that would have followed
//!   the clock three days ahead, beyond the telemetry's two-day horizon) nor
//!   `out_of_range` (against a clock two days behind, beyond the one-day future bound);
//! - no tick beyond the real time is written;
//! - the output equals replay's of the same events, and both jumps are counted.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paceline_model::{Indicator, Nanos, Stream};
use paceline_runtime::settings::InfluxApi;
use paceline_tests::services::{Influx1, TempDir};
use paceline_tests::{
    drain_and_compare_influx1, eventually, kafka, scenario_config, topics, Dataset, Serve,
};
use rdkafka::mocking::MockCluster;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn real_now() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as Nanos)
}

/// Heartbeats of three platforms, `count` of them, from `from` minutes ago on, one a
/// minute; ids from `first`.
fn heartbeats(first: usize, count: usize, from_minutes_ago: i64) -> Vec<Vec<u8>> {
    let now_s = real_now() / 1_000_000_000;
    (0..count)
        .map(|i| {
            let at = now_s - from_minutes_ago * 60 + i as i64 * 60;
            let kinds = ["government_big_data_platform", "network_communication", "industrial_internet_platform"];
            let line = format!(
                r#"{{"event_id":"clock-{}","type":"platform.heartbeat","occurred_at":"{}","platform_id":"p-{}","platform_kind":"{}","status":"up","interval_s":60}}"#,
                first + i,
                paceline_model::time::format_plan_time(at * 1_000_000_000),
                i % 3,
                kinds[i % 3],
            );
            line.into_bytes()
        })
        .collect()
}

/// Sets the offset libfaketime reads (re-read at every clock call): written aside and
/// renamed, so that no call reads a file half written (an empty file reads as no offset).
fn set_offset(file: &Path, offset: &str) {
    let aside = file.with_extension("new");
    std::fs::write(&aside, format!("{offset}\n")).expect("offset file");
    std::fs::rename(&aside, file).expect("offset file");
}

#[test]
fn clock_jumps_reject_nothing_and_write_no_tick_beyond_the_real_time() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME}: scripts/install-services installs Debian's faketime"
    );
    let influx = Influx1::start();
    influx.query("", "CREATE DATABASE clock");
    let mock = MockCluster::new(1).expect("mock cluster");
    let prefix = "clock";
    let (t, dl) = topics(prefix);
    for name in t.iter().chain([&dl]) {
        mock.create_topic(name, 1, 1).expect("topic");
    }
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    assert!(config.service.idle_watermark_follows_clock);
    let dir = TempDir::new("faketime");
    let offset = dir.join("offset");
    set_offset(&offset, "+0");
    let env = [
        ("PACELINE_KAFKA_BROKERS", mock.bootstrap_servers()),
        ("PACELINE_INFLUX_API", "v1".to_string()),
        ("PACELINE_INFLUX_URL", influx.url()),
        ("PACELINE_INFLUX_DB", "clock".to_string()),
        ("LD_PRELOAD", LIBFAKETIME.to_string()),
        ("FAKETIME_TIMESTAMP_FILE", offset.display().to_string()),
        ("FAKETIME_NO_CACHE", "1".to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
    ];
    let first = heartbeats(0, 30, 60);
    let later = heartbeats(100, 12, 20);
    let mut serve = Serve::start(&config, &env);
    kafka::produce(&mock.bootstrap_servers(), &t, &first);
    serve.wait_counted("the first heartbeats", first.len(), 120);
    // Idle: the watermark follows the clock. Three days ahead, back, two days behind.
    let telemetry_mark = |serve: &Serve| {
        (serve.metrics().sum(
            "paceline_watermark_timestamp_seconds",
            &[("stream", Stream::Telemetry.as_str())],
        ) * 1e9) as Nanos
    };
    eventually("the watermark follows the clock", 60, || {
        telemetry_mark(&serve) > real_now() - 10 * 60 * 1_000_000_000
    });
    set_offset(&offset, "+3d");
    std::thread::sleep(Duration::from_secs(4));
    let ahead = telemetry_mark(&serve);
    assert!(
        ahead <= real_now(),
        "the watermark did not follow the jump: {} s ahead",
        (ahead - real_now()) / 1_000_000_000
    );
    set_offset(&offset, "+0");
    std::thread::sleep(Duration::from_secs(2));
    set_offset(&offset, "-2d");
    std::thread::sleep(Duration::from_secs(2));
    kafka::produce(&mock.bootstrap_servers(), &t, &later);

    let mut all = first.clone();
    all.extend(later.iter().cloned());
    let data = Dataset::from_lines(all);
    drain_and_compare_influx1(&mut serve, &data, &config, &influx, "clock");
    let m = serve.metrics();
    assert_eq!(
        m.sum("paceline_events_rejected_total", &[]),
        0.0,
        "nothing rejected because of a jump"
    );
    // At least the two jumps: libfaketime now and then answers a call with the real time
    // (the clock flaps, each flap a jump seen), which a real step of the clock does not.
    assert!(
        m.sum("paceline_clock_jumps_total", &[]) >= 2.0,
        "both jumps counted"
    );
    // No tick beyond the real time: the newest point is at most one cadence ahead.
    let longest = Indicator::ALL
        .iter()
        .filter(|i| i.stream() == Stream::Telemetry)
        .map(|i| config.cadence(*i))
        .max()
        .expect("telemetry indicators");
    let answer = influx.query(
        "clock",
        &format!("SELECT last(value) FROM {}", config.indicators.measurement),
    );
    let newest = answer["results"][0]["series"][0]["values"][0][0]
        .as_i64()
        .expect("a newest point");
    assert!(
        newest <= real_now() + longest,
        "a tick {} s beyond the real time",
        (newest - real_now()) / 1_000_000_000
    );
    // Stopped by the drop (SIGKILL): librdkafka's own timers under libfaketime do not
    // survive the clock coming back two days (its metadata requests time out at once), which
    // a real step of the clock does not do to them.
    drop(serve);
}
