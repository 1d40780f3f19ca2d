//! Scale-out on real services (tansu, InfluxDB 1.x): one timely cluster of two processes
//! on loopback, each with its own state directory, as pods of a StatefulSet would be.
//!
//! - Equivalence: 2 processes × 2 workers, connected by mutual TLS, write a database
//!   equivalent (docs/outputs.md) to 1 process × 1 worker's on the same disordered events,
//!   and to `paceline replay`'s;
//!   every process reads partitions, and no series is written by both.
//! - Kill: SIGKILL one of two processes mid-run; the other exits 1 within 10 s naming it;
//!   both restarted resume from the newest checkpoint both hold, and the result is still
//!   equivalent; then SIGTERM to one: it exits 0, and the other 1, naming it.
//! - Divergence: process 1 writes to a database that freezes while input arrives, and both
//!   processes are killed, twice: each restart resumes from a checkpoint both hold (never
//!   a refusal, never a start from the topics' beginning), and the result is equivalent.
//! - A peer that never comes up: start fails within the timeout, naming it (no services).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use paceline_model::Stream;
use paceline_runtime::settings::{InfluxApi, Settings};
use paceline_tests::services::{free_port, get, wait_for, Influx1, Tansu, TempDir};
use paceline_tests::{
    assert_cluster_equals_replay, assert_cluster_resumed, assert_no_loss, compare, create_topics,
    influx1_env, kafka, readback, run_side_by_side, scenario_config, topics, wait_all_drained,
    Dataset, Metrics, Serve, CLUSTER_MARK,
};

/// Two processes' configuration: `workers` each, checkpoints every second, watermarks
/// that do not jump to the wall clock while the producer pauses.
fn cluster_config(prefix: &str, workers: usize) -> Settings {
    let mut c = scenario_config(prefix);
    c.influx.api = InfluxApi::V1;
    c.dataflow.workers = workers;
    c.service.checkpoint_interval_s = 1;
    c.service.idle_watermark_follows_clock = false;
    c.cluster.connect_timeout_s = 60;
    c
}

/// Loopback addresses for a cluster of `n`.
fn addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect()
}

/// The secret the test clusters' processes share.
const CLUSTER_SECRET: &str = "test-cluster-secret-4b1d";

/// Starts process `index` of the cluster in `dir`.
fn start_process(
    dir: TempDir,
    index: usize,
    peers: &[String],
    config: &Settings,
    env: &[(&'static str, String)],
) -> Serve {
    let mut env = env.to_vec();
    env.push(("PACELINE_PEERS", peers.join(",")));
    env.push(("PACELINE_PROCESS_INDEX", index.to_string()));
    env.push(("PACELINE_CLUSTER_SECRET", CLUSTER_SECRET.to_string()));
    Serve::start_in(dir, config, &env)
}

/// The series in `path`'s answer of a process, each with its newest numbers.
fn series_at(serve: &Serve, path: &str) -> BTreeMap<String, serde_json::Value> {
    let list: Vec<serde_json::Value> = if path.ends_with("/board") {
        // Points: charts, newest and verdicts alike; the series are what counts.
        let bytes = paceline_tests::services::http()
            .get(format!("{}{path}", serve.http))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.bytes())
            .expect("the share answers");
        paceline_runtime::serve::peers::decode_share(&bytes)
            .expect("a share")
            .iter()
            .map(|p| serde_json::json!({ "series": p.series.display() }))
            .collect()
    } else {
        let (status, body) = get(&format!("{}{path}", serve.http)).expect("answers");
        assert_eq!(status, 200, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        v["series"].as_array().cloned().expect("series")
    };
    list.into_iter()
        .map(|s| {
            let key = match s.get("series") {
                // A point of the board: its series key as JSON.
                Some(k) => k.to_string(),
                None => format!("{} {}", s["indicator"], s["tags"]),
            };
            (key, s)
        })
        .collect()
}

/// The series a process shows at `/api/v1/indicators`, with their numbers.
fn series_shown(serve: &Serve) -> BTreeMap<String, serde_json::Value> {
    series_at(serve, "/api/v1/indicators")
}

/// The numbers of a series as the API shows them.
fn numbers(v: &serde_json::Value) -> Vec<serde_json::Value> {
    [
        "tick_ns",
        "value",
        "expected",
        "target",
        "pace_ratio",
        "projected",
        "status",
        "verdict",
    ]
    .iter()
    .map(|k| v.get(*k).cloned().unwrap_or_default())
    .collect()
}

/// Every process shows the whole cluster: its API lists every series of one process's run
/// with the same numbers, and its page every planned row with data and no process missing.
/// Each process's own share (`/api/v1/board`) is its alone: disjoint, together the whole.
fn assert_every_page_shows_the_cluster(
    procs: &[Serve],
    single: &BTreeMap<String, serde_json::Value>,
    addresses: (&[String], &[String]),
) {
    let shares: Vec<BTreeSet<String>> = procs
        .iter()
        .map(|p| series_at(p, "/api/v1/board").into_keys().collect())
        .collect();
    assert!(
        shares[0].is_disjoint(&shares[1]),
        "a series written by both processes"
    );
    assert!(
        !shares[0].is_empty() && !shares[1].is_empty(),
        "both processes write series"
    );
    for (i, p) in procs.iter().enumerate() {
        let shown = series_shown(p);
        let differing: Vec<&String> = single
            .iter()
            .filter(|(k, v)| shown.get(*k).map(numbers) != Some(numbers(v)))
            .map(|(k, _)| k)
            .collect();
        assert!(
            differing.is_empty() && shown.len() == single.len(),
            "process {i} shows {} series, one process {}; differing: {differing:?}",
            shown.len(),
            single.len()
        );
        let (_, page) = get(&format!("{}/", p.http)).expect("the page answers");
        assert!(
            page.contains(&format!("Process {i} of a cluster of 2")),
            "{page}"
        );
        assert!(!page.contains("unanswered"), "process {i}: {page}");
        // Every planned row shows the tick one process's run reached for its series.
        let rows = planned_rows(&page);
        assert!(!rows.is_empty(), "process {i}: no planned row");
        for (series, tick) in rows {
            let expected = single
                .iter()
                .find(|(_, v)| display_of(v) == series)
                .map(|(_, v)| v["tick_ns"].to_string())
                .unwrap_or_default();
            assert_eq!(tick, expected, "process {i}: the row of {series}");
        }
        for (j, (h, dataflow)) in addresses.0.iter().zip(addresses.1).enumerate() {
            assert!(
                page.contains(&format!(r#"href="http://{h}/""#)),
                "process {i} links process {j}'s page"
            );
            assert!(!page.contains(dataflow.as_str()), "a dataflow port shown");
        }
    }
}

/// The status page's planned rows: each one's series and tick (empty without data).
fn planned_rows(page: &str) -> Vec<(String, String)> {
    let attr = |row: &str, name: &str| {
        let key = format!(r#"{name}=""#);
        row.find(&key)
            .map(|at| {
                let rest = &row[at + key.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_string()
            })
            .unwrap_or_default()
    };
    page.split(r#"<tr class="indicator""#)
        .skip(1)
        .map(|row| {
            let row = &row[..row.find('>').unwrap_or(row.len())];
            (attr(row, "data-series"), attr(row, "data-tick"))
        })
        .collect()
}

/// A series of the API as the page names it: `indicator` or `indicator{tag=value}`.
fn display_of(v: &serde_json::Value) -> String {
    let indicator = v["indicator"].as_str().unwrap_or_default();
    match v["tags"].as_object().and_then(|t| t.iter().next()) {
        Some((k, tag)) => format!("{indicator}{{{k}={}}}", tag.as_str().unwrap_or_default()),
        None => indicator.to_string(),
    }
}

/// Process 1 frozen (SIGSTOP: its connections stay open, it answers nothing): process 0's
/// API and page name it within the deadline and list what is missing; thawed, all is back.
fn assert_a_silent_process_is_named(procs: &[Serve], http: &[String]) {
    procs[1].proc.freeze();
    let started = std::time::Instant::now();
    let (status, body) = get(&format!("{}/api/v1/indicators", procs[0].http)).expect("answers");
    let took = started.elapsed();
    procs[1].proc.thaw();
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(10), "answered after {took:?}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let unanswered = &v["cluster"]["unanswered"];
    assert_eq!(unanswered[0]["process"], 1, "{v}");
    assert_eq!(unanswered[0]["address"], http[1].as_str());
    assert!(
        unanswered[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("within 2 s")),
        "{unanswered}"
    );
    assert!(
        v["cluster"]["missing"]
            .as_array()
            .is_some_and(|m| !m.is_empty() && m.iter().all(|e| e["process"] == 1)),
        "{v}"
    );
    // Thawed, it answers again before the page's turn: the page's check starts from a
    // whole cluster.
    wait_for(
        "process 1 answering again once thawed",
        Duration::from_secs(20),
        || whole_cluster(&procs[0].http),
    );
    procs[1].proc.freeze();
    let (_, page) = get(&format!("{}/", procs[0].http)).expect("the page answers");
    procs[1].proc.thaw();
    assert!(
        page.contains(r#"class="health bad unanswered" data-process="1""#)
            && page.contains(&http[1]),
        "{page}"
    );
    assert!(page.contains("not shown: written by process 1"), "{page}");
    wait_for(
        "process 1 on process 0's API again",
        Duration::from_secs(20),
        || whole_cluster(&procs[0].http),
    );
}

/// Whether a process's API names no process as unanswered.
fn whole_cluster(http: &str) -> bool {
    get(&format!("{http}/api/v1/indicators"))
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .is_some_and(|v| v["cluster"]["unanswered"] == serde_json::json!([]))
}

fn one_versus_two_by_two(tansu: &Tansu, influx: &Influx1) {
    let prefix = "cl-eq";
    create_topics(tansu, prefix, 4);
    let data = Dataset::new(61, 2, false, &[]);
    let (t, _) = topics(prefix);
    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let (expected, summary) = data.replay(&cluster_config(prefix, 1));

    influx.query("", "CREATE DATABASE cl_one");
    let one = cluster_config(prefix, 1);
    let mut single = Serve::start(&one, &influx1_env(tansu, influx, "cl_one"));
    let m1 = single.wait_drained(
        data.lines.len(),
        data.final_watermarks(&one),
        Duration::from_secs(300),
    );
    let single_series = series_shown(&single);
    single.stop_cleanly(None);

    influx.query("", "CREATE DATABASE cl_two");
    let two = cluster_config(prefix, 2);
    let peers = addresses(2);
    let http = addresses(2);
    let mut env = influx1_env(tansu, influx, "cl_two").to_vec();
    env.push(("PACELINE_HTTP_PEERS", http.join(",")));
    // The processes speak mutual TLS to each other, under a CA this test made.
    let pki = TempDir::new("cluster-pki");
    paceline_tests::services::make_pki(&pki.0);
    let file = |name: &str| pki.join(name).display().to_string();
    env.push(("PACELINE_CLUSTER_TLS_CA_FILE", file("ca.pem")));
    env.push(("PACELINE_CLUSTER_TLS_CERT_FILE", file("server.pem")));
    env.push(("PACELINE_CLUSTER_TLS_KEY_FILE", file("server.key")));
    let mut procs: Vec<Serve> = (0..2)
        .map(|i| {
            let mut env = env.clone();
            env.push(("PACELINE_HTTP_ADDR", http[i].clone()));
            start_process(TempDir::new("cluster-eq"), i, &peers, &two, &env)
        })
        .collect();
    let m2 = wait_all_drained(
        &mut procs,
        data.lines.len(),
        (data.final_watermarks(&two), CLUSTER_MARK),
        Duration::from_secs(300),
    );
    for p in &procs {
        let log = p.proc.log_text();
        assert!(
            log.contains("connecting to the cluster") && log.contains("tls=true"),
            "the processes connect over TLS:\n{log}"
        );
    }
    for (i, m) in m2.iter().enumerate() {
        let read = m.sum("paceline_events_total", &[]);
        assert!(read > 0.0, "process {i} reads partitions of its own");
        assert!(
            read < data.lines.len() as f64,
            "process {i} reads only its own partitions"
        );
    }
    let r2 = paceline_tests::reach(&m2[0]);
    assert_no_loss(&Metrics::merged(m2), &summary);
    assert_every_page_shows_the_cluster(&procs, &single_series, (&http, &peers));
    assert_a_silent_process_is_named(&procs, &http);

    let measurement = &two.indicators.measurement;
    let one_db = readback::influx1(influx, "cl_one", measurement);
    let two_db = readback::influx1(influx, "cl_two", measurement);
    let r1 = paceline_tests::reach(&m1);
    let reach = Stream::ALL.map(|s| r1[s.index()].min(r2[s.index()]));
    assert_eq!(r1, r2, "the cluster closes ticks as far as one process");
    let diff = compare(&two, &data, &one_db, &two_db, reach);
    assert!(
        diff.is_empty(),
        "2×2 (right) differs from 1×1 (left):\n{}",
        paceline_tests::explain(&diff, &one_db, &two_db)
    );
    let diff = compare(&two, &data, &expected, &two_db, reach);
    assert!(
        diff.is_empty(),
        "2×2 (right) differs from replay (left):\n{}",
        paceline_tests::explain(&diff, &expected, &two_db)
    );
}

fn killed_and_resumed(tansu: &Tansu, influx: &Influx1) {
    let prefix = "cl-kill";
    let db = "cl_kill";
    create_topics(tansu, prefix, 4);
    influx.query("", &format!("CREATE DATABASE {db}"));
    let data = Dataset::new(67, 2, false, &[]);
    let (t, _) = topics(prefix);
    let config = cluster_config(prefix, 2);
    let env = influx1_env(tansu, influx, db);
    let peers = addresses(2);
    let half = data.lines.len() / 2;
    kafka::produce(&tansu.brokers(), &t, &data.lines[..half]);
    let mut procs: Vec<Serve> = (0..2)
        .map(|i| start_process(TempDir::new("cluster-kill"), i, &peers, &config, &env))
        .collect();
    // Both have written a checkpoint with part of the input read.
    paceline_tests::eventually("a checkpoint on both processes", 120, || {
        procs.iter().all(|p| {
            let m = p.metrics();
            m.sum("paceline_checkpoint_last_success_timestamp_seconds", &[]) > 0.0
                && m.sum("paceline_events_total", &[]) > 0.0
        })
    });
    std::thread::sleep(Duration::from_millis(1500));
    let survivor = procs.remove(0);
    let victim = procs.remove(0);
    let killed_at = Instant::now();
    let victim_dir = victim.kill();
    let (code, log, survivor_dir) = survivor.wait_exit(Duration::from_secs(10));
    assert_eq!(
        code,
        Some(1),
        "the other process exits 1 within 10 s:\n{log}"
    );
    assert!(killed_at.elapsed() < Duration::from_secs(10));
    assert!(
        log.contains(&format!(
            "lost the connection to cluster process 1 ({})",
            peers[1]
        )),
        "the message names the lost process:\n{log}"
    );
    // State directories swapped between the processes: each refuses, naming the index
    // its directory belongs to, before reaching the other.
    let swapped: Vec<(Option<i32>, String, TempDir)> = [victim_dir, survivor_dir]
        .into_iter()
        .enumerate()
        .map(|(i, dir)| {
            let mut env = env.to_vec();
            env.push(("PACELINE_PEERS", peers.join(",")));
            env.push(("PACELINE_PROCESS_INDEX", i.to_string()));
            env.push(("PACELINE_CLUSTER_SECRET", CLUSTER_SECRET.to_string()));
            let (code, log) = Serve::run_to_exit(&dir, &config, &env, &[]);
            (code, log, dir)
        })
        .collect();
    let mut dirs = Vec::new();
    for (i, (code, log, dir)) in swapped.into_iter().enumerate() {
        assert_eq!(
            code,
            Some(2),
            "process {i} on the other's state refuses:\n{log}"
        );
        assert!(
            log.contains(
                "cluster.process_index (the process the state directory belongs to): checkpoint"
            ),
            "the refusal names the process index:\n{log}"
        );
        dirs.push(dir);
    }
    let victim_dir = dirs.remove(0);
    let survivor_dir = dirs.remove(0);
    kafka::produce(&tansu.brokers(), &t, &data.lines[half..]);
    let mut procs: Vec<Serve> = [survivor_dir, victim_dir]
        .into_iter()
        .enumerate()
        .map(|(i, dir)| start_process(dir, i, &peers, &config, &env))
        .collect();
    assert_cluster_resumed(&procs);
    assert_cluster_equals_replay(
        &mut procs,
        &config,
        &data,
        || readback::influx1(influx, db, &config.indicators.measurement),
        "after the kill",
    );
    // A process stopped on purpose stops alone, at once; the other follows, naming it.
    let other = procs.remove(1);
    let (code, log) = procs.remove(0).stop();
    assert_eq!(
        code,
        Some(0),
        "SIGTERM stops a cluster's process cleanly:\n{log}"
    );
    let (code, log, _) = other.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(1), "the other one stops within 10 s:\n{log}");
    assert!(
        log.contains("lost the connection to cluster process 0"),
        "{log}"
    );
}

/// Process 1's database freezes while input arrives (its checkpoints cannot count), the
/// other's does not; both are killed. Keeping checkpoints independently, process 0 would
/// hold only checkpoints process 1 never wrote; every process takes every boundary, so one
/// both hold is always kept.
fn checkpoints_never_diverge(tansu: &Tansu, influx: &Influx1) {
    let prefix = "cl-diverge";
    let db = "cl_diverge";
    create_topics(tansu, prefix, 4);
    let slow = Influx1::start();
    for i in [influx, &slow] {
        i.query("", &format!("CREATE DATABASE {db}"));
    }
    let data = Dataset::new(71, 2, false, &[]);
    let (t, _) = topics(prefix);
    let config = cluster_config(prefix, 1);
    let env = [
        influx1_env(tansu, influx, db),
        influx1_env(tansu, &slow, db),
    ];
    let peers = addresses(2);
    let chunks: Vec<&[Vec<u8>]> = data.lines.chunks(data.lines.len() / 3 + 1).collect();
    kafka::produce(&tansu.brokers(), &t, chunks[0]);
    let mut dirs = vec![
        TempDir::new("cluster-diverge"),
        TempDir::new("cluster-diverge"),
    ];
    for (round, chunk) in chunks[1..].iter().enumerate() {
        let procs: Vec<Serve> = dirs
            .into_iter()
            .enumerate()
            .map(|(i, dir)| start_process(dir, i, &peers, &config, &env[i]))
            .collect();
        if round > 0 {
            assert_cluster_resumed(&procs);
        }
        paceline_tests::eventually("a checkpoint on both processes", 120, || {
            procs.iter().all(|p| {
                p.metrics()
                    .sum("paceline_checkpoint_last_success_timestamp_seconds", &[])
                    * 1e3
                    > paceline_tests::now_ms() as f64 - 60_000.0
            })
        });
        slow.pause();
        kafka::produce(&tansu.brokers(), &t, chunk);
        // Several checkpoint intervals with process 1's writes hanging.
        std::thread::sleep(Duration::from_secs(6));
        dirs = procs.into_iter().map(Serve::kill).collect();
        slow.resume();
        let held: Vec<usize> = dirs.iter().map(|d| Serve::checkpoints(d).len()).collect();
        assert!(held.iter().all(|&n| n > 0), "round {round}: {held:?}");
    }
    let mut procs: Vec<Serve> = dirs
        .into_iter()
        .enumerate()
        .map(|(i, dir)| start_process(dir, i, &peers, &config, &env[i]))
        .collect();
    assert_cluster_resumed(&procs);
    // Each process writes its own series: the two databases together are the output.
    assert_cluster_equals_replay(
        &mut procs,
        &config,
        &data,
        || {
            let mut actual = readback::influx1(influx, db, &config.indicators.measurement);
            actual.extend(readback::influx1(&slow, db, &config.indicators.measurement));
            actual
        },
        "after the kills",
    );
    for p in procs {
        p.kill();
    }
}

#[test]
fn two_processes_on_tansu() {
    let tansu = Tansu::start();
    let influx = Influx1::start();
    run_side_by_side(vec![
        (
            "2×2 equals 1×1",
            Box::new(|| one_versus_two_by_two(&tansu, &influx)),
        ),
        (
            "kill one, resume both",
            Box::new(|| killed_and_resumed(&tansu, &influx)),
        ),
        (
            "checkpoints never diverge",
            Box::new(|| checkpoints_never_diverge(&tansu, &influx)),
        ),
    ]);
}

#[test]
fn a_peer_that_never_comes_up_is_named() {
    let mut config = cluster_config("cl-none", 1);
    config.cluster.connect_timeout_s = 3;
    let peers = addresses(2);
    let dir = TempDir::new("cluster-none");
    let mut env = vec![
        ("PACELINE_PEERS", peers.join(",")),
        ("PACELINE_PROCESS_INDEX", "0".to_string()),
        ("PACELINE_KAFKA_BROKERS", "127.0.0.1:1".to_string()),
        ("PACELINE_CLUSTER_SECRET", CLUSTER_SECRET.to_string()),
    ];
    env.push(("PACELINE_INFLUX_API", "v1".to_string()));
    let started = Instant::now();
    let (code, log) = Serve::run_to_exit(&dir, &config, &env, &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        log.contains(&format!(
            "process 1 ({}) did not connect within 3 s",
            peers[1]
        )),
        "the message names the peer:\n{log}"
    );
}
