//! End to end on real services: a generated data set produced to a real Kafka-protocol
//! broker (tansu), `paceline serve` until drained, the database read back and compared
//! with `paceline replay` of the same events (docs/outputs.md equivalence).
//!
//! - InfluxDB 1.x (`/write`, InfluxQL read-back): data with late events and amendments, so
//!   corrections are checked too; plus poison messages on every topic, the dead-letter
//!   topic's contents and headers, `/metrics` names and counters against replay's summary,
//!   `/api/v1/indicators`, and a password that must never appear.
//! - VictoriaMetrics (`/api/v2/write` through the influxdb2 crate, export API read-back):
//!   data in event-time order (VictoriaMetrics keeps every write of a point, not the last),
//!   numeric fields only, and a token that must never appear.
//!
//! - The status page (`/`): each planned row shows the newest point the database holds,
//!   with a chart; after a graceful restart (from the final checkpoint) the same numbers
//!   and the same chart history are there.
//!
//! One set of services serves every scenario; they run side by side on their own topics
//! and databases.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use paceline_model::Stream;
use paceline_runtime::settings::InfluxApi;
use paceline_runtime::ReplaySummary;
use paceline_tests::gate::{Expected, Gate};
use paceline_tests::services::{get, Influx1, Tansu, TempDir, Victoria};
use paceline_tests::{
    assert_no_loss, compare, create_topics, influx1_env, kafka, reach, scenario_config, topics,
    Dataset, Metrics, Serve,
};
use paceline_tests::{page, readback};

/// docs/outputs.md's metric names that must be present once data went through.
const METRIC_NAMES: [&str; 18] = [
    "paceline_source_tombstones_total",
    "paceline_indicator_value",
    "paceline_indicator_target",
    "paceline_indicator_expected",
    "paceline_indicator_pace_ratio",
    "paceline_indicator_projected",
    "paceline_indicator_status",
    "paceline_indicator_tick_timestamp_seconds",
    "paceline_events_total",
    "paceline_events_rejected_total",
    "paceline_source_lag_messages",
    "paceline_stream_lag_messages",
    "paceline_watermark_timestamp_seconds",
    "paceline_sink_points_written_total",
    "paceline_sink_write_errors_total",
    "paceline_sink_write_duration_seconds_count",
    "paceline_sink_pending_points",
    "paceline_end_to_end_latency_seconds_count",
];

const PASSWORD: &str = "pw-9f3a-never-logged";
const TOKEN: &str = "tok-51c2-never-logged";

/// `influx` has authentication on: the service writes as a user with write rights on its
/// database only, the password from a file.
fn influx_v1(tansu: &Tansu, influx: &Influx1) {
    let prefix = "e2e-v1";
    create_topics(tansu, prefix, 2);
    influx.query("", "CREATE DATABASE e2e_v1");
    influx.query(
        "",
        &format!("CREATE USER writer WITH PASSWORD '{PASSWORD}'"),
    );
    influx.query("", "GRANT WRITE ON e2e_v1 TO writer");
    let secrets = TempDir::new("e2e-v1-secrets");
    let password_file = secrets.join("influx-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    // Three lines no stream can be told of: the producer spreads them over the three topics.
    let poison: [&[u8]; 3] = [b"\xff\xfe not utf-8", b"{\"event_id\":", b"[1,2,3]"];
    let data = Dataset::new(7, 8, false, &poison);
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    let (expected, summary) = data.replay(&config);
    assert!(summary.rejected_total() >= 3, "{}", summary.render(false));
    assert!(
        summary.corrections.iter().sum::<u64>() > 0,
        "the data set has late events: {}",
        summary.render(false)
    );

    let (t, dl_topic) = topics(prefix);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    // A filing on the telemetry topic: wrong_stream (Kafka only, replay has no topics).
    let wrong = br#"{"event_id":"ws-1","type":"enterprise.deregistered","occurred_at":"2023-01-01T00:00:00Z","enterprise_id":"E1"}"#;
    let mut on_telemetry = t.clone();
    on_telemetry[Stream::Filings.index()] = t[Stream::Telemetry.index()].clone();
    kafka::produce(&tansu.brokers(), &on_telemetry, &[wrong.to_vec()]);
    // A compaction tombstone: skipped and counted, neither an event nor a dead letter.
    kafka::produce_tombstone(&tansu.brokers(), &t[Stream::Filings.index()], "E1");

    let env = [
        ("PACELINE_KAFKA_BROKERS", tansu.brokers()),
        ("PACELINE_INFLUX_API", "v1".to_string()),
        ("PACELINE_INFLUX_URL", influx.url()),
        ("PACELINE_INFLUX_DB", "e2e_v1".to_string()),
        ("PACELINE_INFLUX_USER", "writer".to_string()),
        (
            "PACELINE_INFLUX_PASSWORD_FILE",
            password_file.display().to_string(),
        ),
    ];
    let mut serve = Serve::start(&config, &env);
    let marks = data.span().map(|s| s.map(|(_, max)| max));
    let m = serve.wait_drained(data.lines.len() + 1, marks, Duration::from_secs(300));
    assert_eq!(serve.ready(), 200);

    let rejected_total = check_counters(&m, &summary, Some("wrong_stream"));
    assert_eq!(m.sum("paceline_source_tombstones_total", &[]), 1.0);
    for name in METRIC_NAMES {
        assert!(m.has(name), "/metrics lacks {name}");
    }
    for file in [
        "prometheus/paceline-rules.yml",
        "grafana/dashboards/pipeline.json",
    ] {
        for name in metric_names_in(file) {
            let histogram = format!("{name}_count");
            assert!(
                m.has(&name) || m.has(&histogram),
                "deploy/{file} reads {name}, which this run does not emit"
            );
        }
    }

    // The database holds an output equivalent to replay's.
    let actual = readback::influx1(influx, "e2e_v1", &config.indicators.measurement);
    let diff = compare(&config, &data, &expected, &actual, reach(&m));
    assert!(
        diff.is_empty(),
        "InfluxDB 1.x (right) differs from replay (left):\n{}",
        paceline_tests::explain(&diff, &expected, &actual)
    );

    // The API and the gauges show each series' newest point.
    let (status, body) = get(&format!("{}/api/v1/indicators", serve.http)).expect("API answers");
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let series = api["series"].as_array().expect("series");
    assert_eq!(series.len(), actual.len(), "one entry per series written");
    let qu = series
        .iter()
        .find(|s| s["indicator"] == "quasi_unicorns")
        .expect("quasi_unicorns");
    let newest = actual
        .iter()
        .find(|(k, _)| k.indicator.name() == "quasi_unicorns")
        .and_then(|(_, m)| m.iter().next_back())
        .expect("written");
    assert_eq!(qu["tick_ns"].as_i64(), Some(*newest.0));
    assert_eq!(qu["value"].as_f64(), Some(newest.1.value));
    assert_eq!(
        m.sum(
            "paceline_indicator_value",
            &[("indicator", "quasi_unicorns")]
        ),
        newest.1.value
    );

    // Every rejected event is on the dead-letter topic with its reason and origin, from
    // every topic.
    let letters = kafka::read_all(
        &tansu.brokers(),
        &dl_topic,
        rejected_total as usize,
        Duration::from_secs(60),
    );
    assert_eq!(letters.len() as u64, rejected_total);
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut from_topics = std::collections::BTreeSet::new();
    for l in &letters {
        *reasons.entry(l.headers["reason"].clone()).or_default() += 1;
        from_topics.insert(l.headers["topic"].clone());
        assert!(l.headers.contains_key("partition") && l.headers.contains_key("offset"));
    }
    assert_eq!(reasons.values().sum::<u64>(), rejected_total);
    assert_eq!(reasons.get("wrong_stream"), Some(&1));
    assert_eq!(
        from_topics.len(),
        3,
        "poison reached the dead letters from every topic: {from_topics:?}"
    );
    assert!(
        letters.iter().any(|l| l.value == b"\xff\xfe not utf-8"),
        "original bytes kept"
    );

    serve.stop_cleanly(Some(PASSWORD));
}

/// The paceline metrics a file of the deploy kit reads (recording rules' own names, with a
/// colon, and histogram suffixes set aside).
fn metric_names_in(file: &str) -> std::collections::BTreeSet<String> {
    let path = format!("{}/../deploy/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("a deploy file");
    let mut names = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices("paceline_") {
        if i > 0 && text.as_bytes()[i - 1] == b':' {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let name = name.trim_end_matches("_bucket").to_string();
        names.insert(name);
    }
    assert!(names.len() > 10, "{names:?}");
    names
}

/// The event counters equal replay's summary: accepted and duplicates by stream, rejected
/// by reason (replay's stream `unknown` is the topic's stream in serve), plus one event of
/// `extra` reason (Kafka only). Returns the rejected total.
fn check_counters(m: &Metrics, summary: &ReplaySummary, extra: Option<&str>) -> u64 {
    assert_no_loss(m, summary);
    let mut by_reason: BTreeMap<&str, u64> = BTreeMap::new();
    for ((_, r), n) in &summary.rejected {
        *by_reason.entry(r).or_default() += n;
    }
    if let Some(r) = extra {
        *by_reason.entry(r).or_default() += 1;
    }
    for (r, n) in &by_reason {
        let got = m.sum("paceline_events_rejected_total", &[("reason", r)]);
        assert_eq!(got as u64, *n, "rejected {r}");
    }
    let total: u64 = by_reason.values().sum();
    assert_eq!(
        m.sum("paceline_events_total", &[("outcome", "rejected")]) as u64,
        total
    );
    total
}

/// What the gate in front of VictoriaMetrics lets through.
fn v2_expected() -> Expected {
    Expected {
        token: TOKEN.to_string(),
        org: "district".to_string(),
        bucket: "paceline".to_string(),
    }
}

/// The v2 API through a gate that checks the token, organisation and bucket as InfluxDB
/// 2.x does; the token from a file.
fn victoria_v2(tansu: &Tansu, vm: &Victoria) {
    let prefix = "e2e-v2";
    create_topics(tansu, prefix, 2);
    let gate = Gate::start(vm.url(), v2_expected());
    let secrets = TempDir::new("e2e-v2-secrets");
    let token_file = secrets.join("influx-token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    let data = Dataset::new(11, 8, true, &[]);
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V2;
    config.influx.precision = paceline_runtime::settings::Precision::Ms;
    let (expected, summary) = data.replay(&config);
    let (t, _) = topics(prefix);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let env = [
        ("PACELINE_KAFKA_BROKERS", tansu.brokers()),
        ("PACELINE_INFLUX_API", "v2".to_string()),
        ("PACELINE_INFLUX_URL", gate.url.clone()),
        ("PACELINE_INFLUX_ORG", "district".to_string()),
        ("PACELINE_INFLUX_BUCKET", "paceline".to_string()),
        (
            "PACELINE_INFLUX_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ];
    let mut serve = Serve::start(&config, &env);
    let marks = data.span().map(|s| s.map(|(_, max)| max));
    let m = serve.wait_drained(data.lines.len(), marks, Duration::from_secs(300));
    check_counters(&m, &summary, None);
    assert_eq!(
        m.sum("paceline_corrections_total", &[]),
        0.0,
        "in-order data needs no corrections"
    );
    let actual = readback::victoria(vm, &config.indicators.measurement);
    let expected = readback::without_status(&expected);
    let diff = compare(&config, &data, &expected, &actual, reach(&m));
    assert!(
        diff.is_empty(),
        "VictoriaMetrics (right) differs from replay (left):\n{}",
        paceline_tests::explain(&diff, &expected, &actual)
    );
    assert!(gate.seen.forwarded.load(Ordering::SeqCst) > 0);
    assert_eq!(gate.seen.wrong_token.load(Ordering::SeqCst), 0);
    assert_eq!(gate.seen.wrong_place.load(Ordering::SeqCst), 0);
    serve.stop_cleanly(Some(TOKEN));
}

/// A token the database refuses is trouble named on `/readyz` and in the log (never the
/// token), asked again only until `influx.start_timeout_s`, then the start stops, exit 1;
/// a bucket that does not exist stops the start at once, named.
fn wrong_token_or_bucket(tansu: &Tansu, vm: &Victoria) {
    let prefix = "e2e-v2-wrong";
    create_topics(tansu, prefix, 1);
    let gate = Gate::start(vm.url(), v2_expected());
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V2;
    config.influx.start_timeout_s = 10;
    let wrong = "tok-wrong-0d1e-never-logged";
    let env = |token: &str, bucket: &str| {
        vec![
            ("PACELINE_KAFKA_BROKERS", tansu.brokers()),
            ("PACELINE_INFLUX_URL", gate.url.clone()),
            ("PACELINE_INFLUX_ORG", "district".to_string()),
            ("PACELINE_INFLUX_BUCKET", bucket.to_string()),
            ("PACELINE_INFLUX_TOKEN", token.to_string()),
        ]
    };

    let started = std::time::Instant::now();
    let mut serve = Serve::start(&config, &env(wrong, "paceline"));
    paceline_tests::eventually("/readyz names the refused token", 60, || {
        let (code, why) = serve.readiness();
        code == 503 && why.contains("HTTP 401") && why.contains("PACELINE_INFLUX_TOKEN")
    });
    let code = serve.proc.wait(Duration::from_secs(90));
    let log = serve.proc.log_text();
    assert_eq!(code, Some(1), "the start stops past its timeout:\n{log}");
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "not before influx.start_timeout_s"
    );
    assert!(log.contains("HTTP 401"), "the refusal is named:\n{log}");
    assert!(!log.contains(wrong), "the token in the log");
    let refused = gate.seen.wrong_token.load(Ordering::SeqCst);
    assert!(refused >= 1, "the gate saw the token");
    assert_eq!(gate.seen.forwarded.load(Ordering::SeqCst), 0);
    // Asked again every 2 s within the 10 s, not in a tight loop.
    assert!(refused <= 10, "asked {refused} times");

    let started = std::time::Instant::now();
    let dir = TempDir::new("e2e-v2-no-bucket");
    let (code, log) = Serve::run_to_exit(&dir, &config, &env(TOKEN, "no-such-bucket"), &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("HTTP 404") && log.contains("retry_client_errors"),
        "the missing bucket stops the start, named:\n{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "at once, not after a timeout"
    );
    assert_eq!(gate.seen.wrong_place.load(Ordering::SeqCst), 1);
}

/// A batch the database refuses (4xx: here a database dropped while the service runs)
/// stops the pipeline with a clear error and exit code 1; nothing is skipped. A database
/// missing at start stops the start at once, named.
fn refused_batch_stops(tansu: &Tansu, influx: &Influx1) {
    let prefix = "e2e-refused";
    create_topics(tansu, prefix, 1);
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    let (code, log) = Serve::run_to_exit(
        &paceline_tests::services::TempDir::new("serve-no-db"),
        &config,
        &influx1_env(tansu, influx, "no_such_database"),
        &[],
    );
    assert_eq!(code, Some(1), "a missing database stops the start:\n{log}");
    for words in [
        "refused with HTTP 404",
        "no_such_database",
        "retry_client_errors",
    ] {
        assert!(log.contains(words), "the error says `{words}`:\n{log}");
    }
    influx.query("", "CREATE DATABASE e2e_refused");
    let serve = Serve::start(&config, &influx1_env(tansu, influx, "e2e_refused"));
    paceline_tests::eventually("ready", 120, || serve.ready() == 200);
    influx.query("", "DROP DATABASE e2e_refused");
    let data = Dataset::new(23, 50, false, &[]);
    let (t, _) = topics(prefix);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let (code, log, dir) = serve.exited(Duration::from_secs(120));
    assert_eq!(code, Some(1), "a refused batch stops the pipeline:\n{log}");
    assert!(
        log.contains("refused with HTTP 404"),
        "the error names the refusal:\n{log}"
    );
    assert!(
        log.contains("retry_client_errors"),
        "the error names the setting:\n{log}"
    );

    // Restarted with `retry_client_errors` while the database is still missing: it keeps
    // asking, not ready, instead of stopping; once the database is back every point lands,
    // the refused batch included (nothing was skipped).
    config.influx.retry_client_errors = true;
    let env = influx1_env(tansu, influx, "e2e_refused");
    let mut serve = Serve::start_in(dir, &config, &env);
    paceline_tests::eventually("the refusal is retried and named", 60, || {
        let (code, why) = serve.readiness();
        code == 503 && why.contains("HTTP 404")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(serve.proc.running(), "{}", serve.proc.log_text());
    influx.query("", "CREATE DATABASE e2e_refused");
    paceline_tests::drain_and_compare_influx1(&mut serve, &data, &config, influx, "e2e_refused");
    serve.stop_cleanly(None);
}

/// The status page shows what the database holds, and its chart history is there after a
/// restart on the same state directory.
fn status_page_survives_restart(tansu: &Tansu, influx: &Influx1) {
    let prefix = "e2e-page";
    create_topics(tansu, prefix, 1);
    influx.query("", "CREATE DATABASE e2e_page");
    let data = Dataset::new(31, 20, true, &[]);
    let (t, _) = topics(prefix);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    let env = influx1_env(tansu, influx, "e2e_page");
    let marks = data.span().map(|s| s.map(|(_, max)| max));
    let mut serve = Serve::start(&config, &env);
    serve.wait_drained(data.lines.len(), marks, Duration::from_secs(300));
    let before = status_page(&serve);
    let stored = readback::influx1(influx, "e2e_page", &config.indicators.measurement);
    let mut checked = 0;
    for plan in config.plan_specs() {
        let name = plan.series.display();
        let row = &before[&name];
        assert!(row.has_chart(), "{name} has a chart");
        let Some((tick, fields)) = stored.get(&plan.series).and_then(|m| m.iter().next_back())
        else {
            continue;
        };
        assert_eq!(
            row.attr("data-tick"),
            Some(tick.to_string().as_str()),
            "{name}"
        );
        assert_eq!(row.number("data-value"), Some(fields.value), "{name} value");
        assert_eq!(
            row.number("data-expected"),
            fields.expected,
            "{name} expected"
        );
        assert_eq!(
            row.attr("data-status"),
            fields.status.map(|s| s.as_str()),
            "{name}"
        );
        assert!(
            row.value_line().len() > 10,
            "{name}: a chart of its history"
        );
        checked += 1;
    }
    assert!(
        checked + 1 >= config.plan_specs().len(),
        "only {checked} planned series were written"
    );

    // The restart resumes from the final checkpoint: nothing is read again, and the board
    // (numbers and charts) comes back from the checkpoint.
    let mut serve = serve.restart(&config, &env);
    serve.wait_drained(0, marks, Duration::from_secs(300));
    assert!(
        serve.proc.log_text().contains("resuming from checkpoint"),
        "{}",
        serve.proc.log_text()
    );
    let after = status_page(&serve);
    for (name, row) in &before {
        let again = &after[name];
        assert_eq!(
            again.tag, row.tag,
            "{name}: the same numbers after a restart"
        );
        assert_eq!(
            again.value_line(),
            row.value_line(),
            "{name}: the same chart history after a restart"
        );
    }
    serve.stop_cleanly(None);
}

fn status_page(serve: &Serve) -> BTreeMap<String, page::Row> {
    let (status, html) = get(&format!("{}/", serve.http)).expect("the status page answers");
    assert_eq!(status, 200);
    assert!(html.contains("Service ready"), "{html}");
    page::planned_rows(&html)
}

/// `paceline produce` publishes a data set (bad lines included) to the three topics, each
/// event to its stream's topic; serve then gives the same output as replay.
fn produce_then_serve(tansu: &Tansu, influx: &Influx1) {
    let prefix = "e2e-produce";
    create_topics(tansu, prefix, 1);
    influx.query("", "CREATE DATABASE e2e_produce");
    let poison: [&[u8]; 2] = [b"{\"event_id\":", b"not json"];
    let data = Dataset::new(43, 10, false, &poison);
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    let config_path = data.dir.join("produce.toml");
    std::fs::write(&config_path, paceline_tests::toml_of(&config)).expect("config");
    // Two inputs, one sequence: the file cut in two (the service's output below equals
    // replay's of the whole file), at a rate that makes the run last about two seconds.
    let (first, second) = data.lines.split_at(data.lines.len() / 3);
    let halves = [data.dir.join("first.jsonl"), data.dir.join("second.jsonl")];
    for (path, lines) in halves.iter().zip([first, second]) {
        let mut text = lines.join(&b'\n');
        text.push(b'\n');
        std::fs::write(path, text).expect("input file");
    }
    let rate = (data.lines.len() / 2) as f64;
    let started = std::time::Instant::now();
    let out = std::process::Command::new(paceline_tests::paceline_bin())
        .arg("produce")
        .arg("--input")
        .args(&halves)
        .arg("--config")
        .arg(&config_path)
        .arg("--rate")
        .arg(rate.to_string())
        .env("PACELINE_KAFKA_BROKERS", tansu.brokers())
        .output()
        .expect("paceline produce runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Never faster than the rate: n events at r per second take n / r seconds at least.
    let least = Duration::from_secs_f64(data.lines.len() as f64 / rate);
    assert!(
        started.elapsed() >= least,
        "{} events at --rate {rate} took {:?}, less than {least:?}",
        data.lines.len(),
        started.elapsed()
    );
    // Every valid event on its stream's topic; lines that are not events in turn.
    let mut expected = [0i64; 3];
    let mut turn = 0usize;
    for l in &data.lines {
        match paceline_decode::decode(l, None) {
            Ok(e) => expected[e.body.stream().index()] += 1,
            Err(_) => {
                expected[turn % 3] += 1;
                turn += 1;
            }
        }
    }
    assert!(turn >= 2, "the data has lines that are not events");
    let (t, _) = topics(prefix);
    for s in Stream::ALL {
        let high = kafka::high_watermark(&tansu.brokers(), &t[s.index()]);
        assert_eq!(high, expected[s.index()], "messages on {}", t[s.index()]);
    }
    let env = influx1_env(tansu, influx, "e2e_produce");
    let mut serve = Serve::start(&config, &env);
    paceline_tests::drain_and_compare_influx1(&mut serve, &data, &config, influx, "e2e_produce");
    serve.stop_cleanly(None);
}

/// A filing older than the watermark minus the correction horizon is rejected `too_late`
/// and dead-lettered with the headers that say where it came from and why; killed before
/// a checkpoint past it, the restart reads it again and dead-letters it again (at least
/// once, never lost).
fn too_late_dead_lettered(tansu: &Tansu, influx: &Influx1) {
    let prefix = "e2e-late";
    create_topics(tansu, prefix, 1);
    influx.query("", "CREATE DATABASE e2e_late");
    let (t, dl_topic) = topics(prefix);
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    config.service.idle_watermark_follows_clock = false;
    // Checkpoints only at a graceful stop: the one before the rejection is the one the
    // restart after the SIGKILL resumes from.
    config.service.checkpoint_interval_s = 3600;
    let event = |id: &str, at: &str, e: &str| {
        format!(
            r#"{{"event_id":"{id}","type":"enterprise.registered","occurred_at":"{at}","enterprise_id":"{e}","name":"n","cluster":"blockchain","region":"other","sme":false}}"#
        )
        .into_bytes()
    };
    let recent = event("late-a", "2024-06-01T00:00:00Z", "E1");
    // 400 days and 5 minutes before the first: beyond the filings' horizon.
    let old = event("late-c", "2023-04-20T00:00:00Z", "E3");
    let env = influx1_env(tansu, influx, "e2e_late");
    let brokers = tansu.brokers();
    kafka::produce(&brokers, &t, &[recent]);
    let mut serve = Serve::start(&config, &env);
    serve.wait_counted("the recent filing", 1, 60);
    // Its watermark is in the checkpoint of the graceful stop, positioned before the old
    // filing; every later judgement of the old filing starts from there.
    let dir = serve.stop_keeping_state();
    kafka::produce(&brokers, &t, std::slice::from_ref(&old));
    let serve = Serve::start_in(dir, &config, &env);
    let rejected_once = |serve: &Serve| {
        paceline_tests::eventually("the old filing rejected too_late", 60, || {
            serve
                .metrics()
                .sum("paceline_events_rejected_total", &[("reason", "too_late")])
                == 1.0
        });
    };
    rejected_once(&serve);
    let letters = kafka::read_all(&brokers, &dl_topic, 1, Duration::from_secs(60));
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.value, old, "the original bytes");
    let header = |k: &str| letter.headers.get(k).cloned().unwrap_or_default();
    assert_eq!(header("reason"), "too_late");
    assert_eq!(header("stream"), "filings");
    assert_eq!(header("topic"), t[Stream::Filings.index()]);
    assert_eq!(header("partition"), "0");
    assert_eq!(header("offset"), "1", "the second message of its partition");
    assert!(!header("detail").is_empty(), "{:?}", letter.headers);
    let m = serve.metrics();
    assert_eq!(
        m.sum("paceline_dead_letters_total", &[("stream", "filings")]),
        1.0
    );

    let dir = serve.kill();
    let serve = Serve::start_in(dir, &config, &env);
    let mut log = String::new();
    paceline_tests::eventually("the restart to log where it resumes", 30, || {
        log = serve.proc.log_text();
        log.contains("resuming from checkpoint")
    });
    assert!(
        log.lines()
            .any(|l| l.contains("resuming from checkpoint") && l.contains("filings/0@1")),
        "the restart resumes before the old filing:\n{log}"
    );
    rejected_once(&serve);
    let letters = kafka::read_all(&brokers, &dl_topic, 3, Duration::from_secs(10));
    assert_eq!(letters.len(), 2, "dead-lettered again: {letters:?}");
    assert_eq!(letters[1].value, old);
    assert_eq!(
        letters[1].headers.get("offset").map(String::as_str),
        Some("1")
    );
    serve.stop_cleanly(None);
}

/// A topic that does not exist stops the start at once with its name, exit 1, instead of
/// waiting for `kafka.metadata_timeout_s` (30 s here).
fn missing_topic_fails_fast(tansu: &Tansu, influx: &Influx1) {
    let config = scenario_config("e2e-absent");
    influx.query("", "CREATE DATABASE e2e_absent");
    let env = influx1_env(tansu, influx, "e2e_absent");
    let dir = paceline_tests::services::TempDir::new("serve-absent");
    let started = std::time::Instant::now();
    let (code, log) = Serve::run_to_exit(&dir, &config, &env, &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("e2e-absent-enterprise-filings") && log.contains("does not exist"),
        "the missing topic is named:\n{log}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "failed after {:?}, not at once",
        started.elapsed()
    );
}

#[test]
fn end_to_end_on_real_services() {
    let tansu = Tansu::start();
    let influx = Influx1::start();
    let secured = Influx1::start_with_auth();
    let vm = Victoria::start();
    let (tansu, influx, secured, vm) = (&tansu, &influx, &secured, &vm);
    paceline_tests::run_side_by_side(vec![
        ("InfluxDB 1.x", Box::new(move || influx_v1(tansu, secured))),
        ("VictoriaMetrics", Box::new(move || victoria_v2(tansu, vm))),
        (
            "wrong token or bucket",
            Box::new(move || wrong_token_or_bucket(tansu, vm)),
        ),
        (
            "too late",
            Box::new(move || too_late_dead_lettered(tansu, influx)),
        ),
        (
            "refused batch",
            Box::new(move || refused_batch_stops(tansu, influx)),
        ),
        (
            "status page",
            Box::new(move || status_page_survives_restart(tansu, influx)),
        ),
        (
            "produce",
            Box::new(move || produce_then_serve(tansu, influx)),
        ),
        (
            "missing topic",
            Box::new(move || missing_topic_fails_fast(tansu, influx)),
        ),
    ]);
}
