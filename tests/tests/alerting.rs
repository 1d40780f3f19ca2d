//! The deploy kit's rules and dashboards on a real run: `paceline serve` (tansu → InfluxDB
//! 1.x) fed a generated district in which some planned indicators end behind plan pace, a
//! real Prometheus scraping it with `deploy/prometheus/paceline-rules.yml` (the `for:`
//! durations shortened), a real Alertmanager with `deploy/alertmanager/alertmanager.yml`
//! (receivers pointed at this test).
//!
//! - The on-call receiver gets the behind-pace alert for exactly the planned series that
//!   `paceline replay` of the same events marks `behind` at its last tick, and no other.
//! - Every PromQL expression of the rules and of the "Pipeline" dashboard returns data from
//!   this Prometheus, or is listed below as empty on a healthy run, with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use paceline_model::point::Status;
use paceline_runtime::settings::InfluxApi;
use paceline_tests::services::{Alertmanager, Influx1, Prometheus, Tansu, TempDir, Webhook};
use paceline_tests::{create_topics, influx1_env, kafka, scenario_config, topics, Dataset, Serve};

fn deploy(path: &str) -> String {
    let p = format!("{}/../deploy/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// Expressions that return nothing on a healthy, drained run, and why.
const EMPTY_ON_A_HEALTHY_RUN: [(&str, &str); 9] = [
    (
        "PacelineIndicatorTickStalled",
        "every planned series keeps up with its watermark",
    ),
    ("PacelineWatermarkStalled", "no stream is stuck"),
    ("PacelineLagGrowing", "everything produced has been read"),
    (
        "PacelineSinkWriteErrors",
        "the database accepts every write",
    ),
    ("PacelineSinkPendingNearBound", "nothing is pending"),
    (
        "PacelineDeadLettersRising",
        "the district has no bad events",
    ),
    (
        "PacelineCheckpointStale",
        "checkpoints are written every 10 s",
    ),
    ("PacelineDown", "the service is up"),
    (
        "PacelineOffsetReset",
        "the topics keep every message until it is read",
    ),
];

/// Firing alerts received, by alert name: the `indicator{tag=value}` names and receivers.
fn received(hook: &Webhook) -> BTreeMap<String, BTreeSet<(String, String)>> {
    let mut out: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for body in hook.bodies() {
        let v: serde_json::Value = serde_json::from_str(&body).expect("Alertmanager posts JSON");
        let receiver = v["receiver"].as_str().unwrap_or_default().to_string();
        for a in v["alerts"].as_array().into_iter().flatten() {
            if a["status"] != "firing" {
                continue;
            }
            let l = &a["labels"];
            let mut name = l["indicator"].as_str().unwrap_or_default().to_string();
            for tag in ["cluster", "field", "region", "platform_kind"] {
                if let Some(v) = l[tag].as_str() {
                    name = format!("{name}{{{tag}={v}}}");
                }
            }
            let alert = l["alertname"].as_str().unwrap_or_default().to_string();
            out.entry(alert)
                .or_default()
                .insert((name, receiver.clone()));
        }
    }
    out
}

/// The planned series whose newest point in `points` has `status`.
fn with_status(
    config: &paceline_model::config::Config,
    points: &paceline_oracle::lp::Points,
    status: Status,
) -> BTreeSet<String> {
    config
        .plan_specs()
        .iter()
        .filter(|p| {
            points
                .get(&p.series)
                .and_then(|m| m.values().next_back())
                .is_some_and(|f| f.status == Some(status))
        })
        .map(|p| p.series.display())
        .collect()
}

#[test]
fn alerts_and_dashboard_queries_on_a_real_run() {
    let tansu = Tansu::start();
    let influx = Influx1::start();
    let prefix = "alerting";
    create_topics(&tansu, prefix, 1);
    let (t, _) = topics(prefix);
    influx.query("", "CREATE DATABASE alerting");
    let data = Dataset::new(41, 8, true, &[]);
    let mut config = scenario_config(prefix);
    config.influx.api = InfluxApi::V1;
    // Ticks stop where the data stops, as in replay, so statuses are comparable.
    config.service.idle_watermark_follows_clock = false;

    // What replay says is behind at its last tick.
    let (replayed, _) = data.replay(&config);
    let behind = with_status(&config, &replayed, Status::Behind);
    let at_risk = with_status(&config, &replayed, Status::AtRisk);
    assert!(
        !behind.is_empty(),
        "the district has indicators behind pace"
    );
    assert!(
        behind.len() < config.plan_specs().len(),
        "and some that are not"
    );

    kafka::produce(&tansu.brokers(), &t, &data.lines);
    let env = influx1_env(&tansu, &influx, "alerting");
    let mut serve = Serve::start(&config, &env);
    serve.wait_drained(
        data.lines.len(),
        data.final_watermarks(&config),
        Duration::from_secs(300),
    );

    // The rules with their `for:` shortened; Alertmanager's receivers pointed here.
    let dir = TempDir::new("alerting");
    let rules: String = deploy("prometheus/paceline-rules.yml")
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 3s\n", &l[..l.len() - l.trim_start().len()]),
            None => format!("{l}\n"),
        })
        .collect();
    let rules_path = dir.join("rules.yml");
    std::fs::write(&rules_path, rules).expect("rules");
    let hook = Webhook::start();
    let am_config = deploy("alertmanager/alertmanager.yml")
        .replace(
            "http://paging-gateway.example:9095/paceline",
            &format!("http://127.0.0.1:{}/on-call", hook.port),
        )
        .replace(
            "http://chat-gateway.example:9096/paceline",
            &format!("http://127.0.0.1:{}/data-team", hook.port),
        )
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 2s");
    let am = Alertmanager::start(&am_config);
    let target = serve.http.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(
        &target,
        &[rules_path],
        Some(&format!("127.0.0.1:{}", am.port)),
    );

    // The behind-pace alerts reach on-call for exactly replay's behind series.
    let expected: BTreeSet<(String, String)> = behind
        .iter()
        .map(|b| (b.clone(), "on-call".to_string()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = received(&hook)
            .remove("PacelineIndicatorBehindPace")
            .unwrap_or_default();
        if got.is_superset(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "behind-pace alerts received {got:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A few more evaluation and notification rounds: nothing else arrives.
    std::thread::sleep(Duration::from_secs(8));
    let all = received(&hook);
    assert_eq!(
        all.get("PacelineIndicatorBehindPace"),
        Some(&expected),
        "exactly the behind series page on-call"
    );

    // Every expression returns data, or is known to be empty on a healthy run.
    let mut empty: BTreeMap<&str, &str> = EMPTY_ON_A_HEALTHY_RUN.into_iter().collect();
    if at_risk.is_empty() {
        empty.insert(
            "PacelineIndicatorAtRisk",
            "no planned series ends at risk in this district (replay agrees)",
        );
    }
    let mut checked = 0;
    let rules_yaml: serde_yaml::Value =
        serde_yaml::from_str(&deploy("prometheus/paceline-rules.yml")).expect("rules");
    let mut exprs: Vec<(String, String)> = Vec::new();
    for g in rules_yaml["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let name = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .expect("a name");
            exprs.push((
                name.to_string(),
                r["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&deploy("grafana/dashboards/pipeline.json")).expect("dashboard");
    for p in dashboard["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let e = t["expr"].as_str().expect("expr");
            let e = e
                .replace("$__rate_interval", "30s")
                .replace("$job", "paceline");
            exprs.push((p["title"].as_str().expect("title").to_string(), e));
        }
    }
    for (name, expr) in &exprs {
        let result = prom.query(expr);
        match empty.get(name.as_str()) {
            Some(why) => assert!(
                result.is_empty(),
                "{name} should be empty ({why}): {result:?}"
            ),
            None => assert!(!result.is_empty(), "{name} returns nothing: {expr}"),
        }
        checked += 1;
    }
    assert!(checked >= 30, "{checked} expressions");
    serve.stop_cleanly(None);
}
