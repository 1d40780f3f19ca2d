//! The deploy kit's rules and dashboards on a real run: `paceline serve` (tansu → InfluxDB
//! 1.x) fed a generated district in which some planned indicators end behind plan pace, a
//! real Prometheus scraping it with `deploy/prometheus/paceline-rules.yml` (the `for:`
//! durations shortened), a real Alertmanager with `deploy/alertmanager/alertmanager.yml`
//! (receivers pointed at this test).
//!
//! - Plan alerts reach the goals' owners, never on-call: the owners' receivers (two owners)
//!   get the behind alert for exactly the planned series that `paceline replay` of the
//!   same events marks `behind` over its last 3 days of ticks, each at its owner's, with
//!   their titles; on-call gets none of them.
//! - Then the filings stream's expected silence is shortened (rules reloaded): on-call gets
//!   `PacelineStreamSilent` for filings, and Alertmanager holds back (suppresses) the plan
//!   alerts of the indicators filings feed while the others stay active.
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
const EMPTY_ON_A_HEALTHY_RUN: [(&str, &str); 11] = [
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
    (
        "PacelineStreamSilent",
        "every stream had an event within its expected silence",
    ),
    ("PacelineNotReady", "the service is ready"),
];

/// Each plan item's owner in this test: the cluster goals belong to a second office.
fn owner_of(series: &str) -> &'static str {
    if series.starts_with("cluster_revenue_cny") {
        "industry-bureau"
    } else {
        "plan-office"
    }
}

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

/// The planned series whose newest points in `points` have had `status` over at least
/// `held` seconds of ticks (from the first tick of that final run to the newest).
fn with_status(
    config: &paceline_model::config::Config,
    points: &paceline_oracle::lp::Points,
    status: Status,
    held: i64,
) -> BTreeSet<String> {
    config
        .plan_specs()
        .iter()
        .filter(|p| {
            let Some(ticks) = points.get(&p.series) else {
                return false;
            };
            let mut run = ticks
                .iter()
                .rev()
                .take_while(|(_, f)| f.status == Some(status));
            let Some((newest, _)) = run.next() else {
                return false;
            };
            let first = run.last().map_or(*newest, |(t, _)| *t);
            newest - first >= held * 1_000_000_000
        })
        .map(|p| p.series.display())
        .collect()
}

/// Three days: how long a goal must hold a status before its owner is told.
const SUSTAINED_S: i64 = 3 * 86_400;

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
    for item in &mut config.pipeline.plan.items {
        if owner_of(&item.series) != "plan-office" {
            item.owner = Some(owner_of(&item.series).to_string());
        }
    }
    // Ticks stop where the data stops, as in replay, so statuses are comparable.
    config.service.idle_watermark_follows_clock = false;

    // What replay says is behind at its last tick.
    let (replayed, summary) = data.replay(&config);
    let behind = with_status(&config, &replayed, Status::Behind, SUSTAINED_S);
    let at_risk = with_status(&config, &replayed, Status::AtRisk, SUSTAINED_S);
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
        .replace(
            "http://mail-gateway.example:9097/",
            &format!("http://127.0.0.1:{}/", hook.port),
        )
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_wait: 5m", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 2s")
        .replace("group_interval: 24h", "group_interval: 2s");
    let am = Alertmanager::start(&am_config);
    let target = serve.http.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(
        &target,
        std::slice::from_ref(&rules_path),
        Some(&format!("127.0.0.1:{}", am.port)),
    );

    // The behind alerts reach each goal's owner for exactly replay's series behind for
    // three days of ticks; nothing of the plan reaches on-call.
    let expected: BTreeSet<(String, String)> = behind
        .iter()
        .map(|b| (b.clone(), format!("owner-{}", owner_of(b))))
        .collect();
    assert!(
        expected.iter().any(|(_, r)| r == "owner-industry-bureau")
            && expected.iter().any(|(_, r)| r == "owner-plan-office"),
        "both owners have a goal behind: {expected:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = received(&hook)
            .remove("PacelineGoalBehind")
            .unwrap_or_default();
        if got.is_superset(&expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "behind alerts received {got:?}, expected {expected:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Five more evaluation rounds of every rule group (each firing alert is sent on at
    // once, each group flushed within 2 s): nothing else arrives.
    prom.wait_rule_rounds(5);
    let all = received(&hook);
    assert_eq!(
        all.get("PacelineGoalBehind"),
        Some(&expected),
        "exactly the series behind for three days, each to its owner"
    );
    for (alert, got) in &all {
        assert!(
            got.iter().all(|(_, r)| r != "on-call") || !alert.starts_with("PacelineGoal"),
            "{alert} reached on-call: {got:?}"
        );
    }
    // The owner's text carries the titles in both languages.
    let bodies = hook.bodies().concat();
    assert!(
        bodies.contains("Quasi-unicorn enterprises") || !behind.contains("quasi_unicorns"),
        "titles in the notification"
    );
    assert!(
        bodies.contains("title_zh"),
        "Chinese titles in the notification"
    );

    // Every expression returns data, or is known to be empty on a healthy run.
    let mut empty: BTreeMap<&str, &str> = EMPTY_ON_A_HEALTHY_RUN.into_iter().collect();
    if at_risk.is_empty() {
        empty.insert(
            "PacelineGoalAtRisk",
            "no planned series ends at risk for three days in this district (replay agrees)",
        );
    }
    let projected_short = config.plan_specs().iter().any(|p| {
        replayed
            .get(&p.series)
            .and_then(|m| m.iter().next_back())
            .is_some_and(|(t, f)| *t < p.deadline && f.projected.is_some_and(|v| v < p.target))
    });
    if !projected_short {
        empty.insert(
            "PacelineGoalProjectedShort",
            "no goal before its deadline is projected short (replay agrees)",
        );
    }
    if !summary.verdicts.iter().any(|v| {
        v.verdict
            .is_some_and(|f| f.verdict == paceline_model::point::Verdict::Missed)
    }) {
        empty.insert(
            "PacelineGoalMissed",
            "no goal judged missed in this district (replay agrees)",
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

    // Filings fall silent: with its expected silence shortened to 5 s, on-call gets the
    // silent-stream alert and the plan alerts of the indicators filings feed are held back.
    let rules = std::fs::read_to_string(&rules_path)
        .expect("rules")
        .replace(
            r#"label_replace(vector(259200), "stream", "filings", "", "")"#,
            r#"label_replace(vector(5), "stream", "filings", "", "")"#,
        );
    std::fs::write(&rules_path, rules).expect("rules");
    prom.reload();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let silent = received(&hook)
            .remove("PacelineStreamSilent")
            .unwrap_or_default();
        if silent.iter().any(|(_, r)| r == "on-call") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no silent-stream page: {:?}",
            received(&hook)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let held_back = |state: &str| -> BTreeSet<String> {
        am.alerts()
            .iter()
            .filter(|a| a["labels"]["alertname"] == "PacelineGoalBehind")
            .filter(|a| a["status"]["state"] == state)
            .map(|a| {
                a["labels"]["indicator"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let fed_by_filings: BTreeSet<String> = behind
        .iter()
        .map(|b| b.split('{').next().unwrap_or_default().to_string())
        .filter(|ind| {
            paceline_model::Indicator::parse(ind)
                .is_some_and(|i| i.stream() == paceline_model::Stream::Filings)
        })
        .collect();
    assert!(
        !fed_by_filings.is_empty(),
        "some goal behind is fed by filings"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while held_back("suppressed") != fed_by_filings {
        assert!(
            Instant::now() < deadline,
            "suppressed {:?}, expected {fed_by_filings:?}",
            held_back("suppressed")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        held_back("active").is_disjoint(&fed_by_filings),
        "the other goals stay active"
    );
    serve.stop_cleanly(None);
}
