//! The deploy kit checked with the real tools: the Prometheus rules (`promtool check rules`,
//! `promtool test rules`: every alert fires after its `for:` and not before, and has a case
//! where it does not fire), the Alertmanager configuration (`amtool check-config`,
//! `amtool config routes test`), every alert's severity, summary, description and runbook
//! link into `docs/runbooks.md`; the Dockerfile (`hadolint`) and the Kubernetes manifests
//! (`kubernetes-validate --strict`), whose PrometheusRule carries exactly the rules file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rules_path() -> PathBuf {
    root().join("deploy/prometheus/paceline-rules.yml")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn yaml(path: &Path) -> serde_yaml::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut v: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // The rules share annotations through YAML merge keys (`<<:`), as Prometheus reads them.
    v.apply_merge()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v
}

/// Every alerting rule of the rules file.
fn alerts() -> Vec<serde_yaml::Value> {
    let rules = yaml(&rules_path());
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn rules_pass_promtool() {
    let check = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(rules_path()));
    assert!(check.contains("SUCCESS"), "{check}");
    let test = run(Command::new("promtool")
        .args(["test", "rules", "paceline-rules.test.yml"])
        .current_dir(root().join("deploy/prometheus")));
    assert!(test.contains("SUCCESS"), "{test}");
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_case() {
    let tests = yaml(&root().join("deploy/prometheus/paceline-rules.test.yml"));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests["tests"].as_sequence().expect("tests") {
        for case in t["alert_rule_test"]
            .as_sequence()
            .cloned()
            .unwrap_or_default()
        {
            let name = case["alertname"].as_str().expect("alertname").to_string();
            let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    let names: BTreeSet<String> = alerts()
        .iter()
        .map(|a| a["alert"].as_str().expect("name").to_string())
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    for n in &names {
        assert!(fires.contains(n), "{n} has no case where it fires");
        assert!(quiet.contains(n), "{n} has no case where it stays quiet");
    }
}

#[test]
fn every_alert_is_labelled_and_links_its_runbook() {
    let runbooks = std::fs::read_to_string(root().join("docs/runbooks.md")).expect("runbooks");
    let anchors: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for a in alerts() {
        let name = a["alert"].as_str().expect("name");
        let severity = a["labels"]["severity"].as_str().unwrap_or_default();
        let audience = a["labels"]["audience"].as_str().unwrap_or_default();
        // Two audiences, never mixed: the plan's owners are told ("info", never paged);
        // on-call is paged for "critical" and the data team told of "warning".
        match audience {
            "plan" => assert_eq!(severity, "info", "{name}: plan alerts never page"),
            "pipeline" => assert!(
                severity == "critical" || severity == "warning",
                "{name}: severity {severity:?}"
            ),
            other => panic!("{name}: audience {other:?}"),
        }
        if audience == "plan" {
            let text = serde_yaml::to_string(&a["annotations"]).unwrap_or_default();
            for label in ["title_en", "title_zh", "deadline", "status_page"] {
                assert!(text.contains(label), "{name}: its text names {label}");
            }
        }
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                a["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        let url = a["annotations"]["runbook_url"].as_str().unwrap_or_default();
        let anchor = url
            .strip_prefix("docs/runbooks.md#")
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} is not into docs/runbooks.md"));
        assert!(
            anchors.contains(anchor),
            "{name}: no runbook section #{anchor}"
        );
        assert_eq!(anchor, name.to_lowercase(), "{name}: its own section");
    }
}

#[test]
fn alertmanager_routes_plan_alerts_to_owners_and_pipeline_alerts_to_on_call() {
    let config = root().join("deploy/alertmanager/alertmanager.yml");
    let check = run(Command::new("amtool").arg("check-config").arg(&config));
    assert!(check.contains("SUCCESS"), "{check}");
    let route = |labels: &[&str]| -> String {
        let out = run(Command::new("amtool")
            .args(["config", "routes", "test"])
            .arg(format!("--config.file={}", config.display()))
            .args(labels));
        out.lines()
            .find(|l| !l.starts_with("Warning"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    // Two owners, two receivers; a plan alert never reaches on-call, even if someone
    // labels it critical.
    for (owner, receiver) in [
        ("plan-office", "owner-plan-office"),
        ("industry-bureau", "owner-industry-bureau"),
    ] {
        for severity in ["info", "critical"] {
            assert_eq!(
                route(&[
                    "audience=plan",
                    &format!("severity={severity}"),
                    "alertname=PacelineGoalBehind",
                    "indicator=quasi_unicorns",
                    &format!("owner={owner}"),
                ]),
                receiver
            );
        }
    }
    assert_ne!(
        route(&[
            "audience=plan",
            "alertname=PacelineGoalMissed",
            "owner=someone-else"
        ]),
        "on-call"
    );
    assert_eq!(
        route(&[
            "audience=pipeline",
            "severity=critical",
            "alertname=PacelineStreamSilent",
            "stream=filings"
        ]),
        "on-call"
    );
    assert_eq!(
        route(&[
            "audience=pipeline",
            "severity=warning",
            "alertname=PacelineLagGrowing"
        ]),
        "data-team"
    );
    // Plan alerts: one notification a day per owner at most, repeated weekly.
    let am = yaml(&config);
    let plan = am["route"]["routes"]
        .as_sequence()
        .expect("routes")
        .iter()
        .find(|r| {
            serde_yaml::to_string(&r["matchers"])
                .unwrap_or_default()
                .contains(r#"audience = "plan""#)
        })
        .expect("a plan route");
    assert_eq!(plan["group_by"][0].as_str(), Some("owner"));
    assert_eq!(plan["group_interval"].as_str(), Some("24h"));
    assert_eq!(plan["repeat_interval"].as_str(), Some("168h"));
    // A silent or stalled stream holds back the plan alerts of its indicators.
    let inhibits = serde_yaml::to_string(&am["inhibit_rules"]).unwrap_or_default();
    assert!(inhibits.contains("PacelineStreamSilent") && inhibits.contains(r#"audience = "plan""#));
}

#[test]
fn dockerfile_passes_hadolint() {
    let dockerfile = root().join("deploy/docker/Dockerfile");
    run(Command::new("hadolint").arg(&dockerfile));
    let text = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
    assert!(text.contains("\nUSER "), "runs as a non-root user");
    assert!(
        text.lines().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    assert!(root().join(".dockerignore").exists());
}

/// Every document of a multi-document YAML file.
fn documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let mut v = <serde_yaml::Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            v.apply_merge().expect("merge keys");
            v
        })
        .collect()
}

#[test]
fn kubernetes_manifests_validate() {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let out = run(Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files));
    assert!(!out.contains("ERROR") && !out.contains("failed"), "{out}");

    let all: Vec<serde_yaml::Value> = files.iter().flat_map(|f| documents(f)).collect();
    let kind = |k: &str| all.iter().find(|d| d["kind"].as_str() == Some(k)).cloned();
    let set = kind("StatefulSet").expect("a StatefulSet");
    let container = &set["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert!(container["resources"]["limits"]["memory"]
        .as_str()
        .is_some());
    let env = container["env"].as_sequence().expect("env");
    assert!(
        env.iter()
            .any(|e| e["name"].as_str() == Some("PACELINE_INFLUX_TOKEN_FILE")),
        "the token comes from a mounted Secret file"
    );
    assert!(
        !env.iter()
            .any(|e| e["name"].as_str() == Some("PACELINE_INFLUX_TOKEN")),
        "no token in the manifest"
    );
    assert_cluster_of_pods(&all, &set);
    assert!(kind("ConfigMap").is_some());
    // The ConfigMap's configuration loads and validates.
    let toml = kind("ConfigMap").expect("ConfigMap")["data"]["paceline.toml"]
        .as_str()
        .expect("paceline.toml")
        .to_string();
    let config = paceline_runtime::settings::Settings::from_toml(&toml, "configmap.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.validate().is_empty());
    // The PrometheusRule is the rules file.
    let rule = kind("PrometheusRule").expect("a PrometheusRule");
    assert_eq!(rule["spec"]["groups"], yaml(&rules_path())["groups"]);
    assert!(kind("ServiceMonitor").is_some());
}

/// The StatefulSet forms one cluster: pods started together, a state volume each, the
/// peer list naming every pod under the headless Service on the timely port, and a
/// disruption budget over the same pods.
fn assert_cluster_of_pods(all: &[serde_yaml::Value], set: &serde_yaml::Value) {
    let spec = &set["spec"];
    assert_eq!(spec["podManagementPolicy"].as_str(), Some("Parallel"));
    let claims = spec["volumeClaimTemplates"]
        .as_sequence()
        .expect("a volume per pod");
    let mounts = spec["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_sequence()
        .expect("mounts");
    let claim = claims[0]["metadata"]["name"].as_str().expect("claim name");
    assert!(mounts.iter().any(|m| m["name"].as_str() == Some(claim)));
    let headless_name = spec["serviceName"].as_str().expect("serviceName");
    let headless = all
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("Service")
                && d["metadata"]["name"].as_str() == Some(headless_name)
        })
        .expect("the headless Service the StatefulSet names");
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        headless["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let port = headless["spec"]["ports"][0]["port"]
        .as_u64()
        .expect("timely port");
    let container = &spec["template"]["spec"]["containers"][0];
    let env = |name: &str| {
        container["env"]
            .as_sequence()
            .and_then(|e| e.iter().find(|v| v["name"].as_str() == Some(name)))
            .and_then(|v| v["value"].as_str())
            .map(String::from)
    };
    let set_name = set["metadata"]["name"].as_str().expect("name");
    let replicas = spec["replicas"].as_u64().expect("replicas");
    let expected: Vec<String> = (0..replicas)
        .map(|i| format!("{set_name}-{i}.{headless_name}:{port}"))
        .collect();
    assert_eq!(
        env("PACELINE_PEERS"),
        Some(expected.join(",")),
        "one peer per pod"
    );
    // Each pod's settings load, taking its index from its host name.
    for i in 0..replicas {
        let host = format!("{set_name}-{i}");
        let vars = |k: &str| match k {
            "HOSTNAME" => Some(host.clone()),
            "PACELINE_INFLUX_TOKEN_FILE" => None,
            k => env(k),
        };
        let s = paceline_runtime::settings::Settings::load_with_env(None, &vars)
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(s.cluster.process_index, Some(i as usize), "{host}");
    }
    let ports = container["ports"].as_sequence().expect("ports");
    assert!(ports
        .iter()
        .any(|p| p["containerPort"].as_u64() == Some(port)));
    let pdb = all
        .iter()
        .find(|d| d["kind"].as_str() == Some("PodDisruptionBudget"))
        .expect("a PodDisruptionBudget");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"], spec["selector"]["matchLabels"],
        "the budget covers the StatefulSet's pods"
    );
}

#[test]
fn compose_kit_is_valid_and_complete() {
    let dir = root().join("deploy/compose");
    run(Command::new("docker-compose")
        .args(["-f", "compose.yaml", "config", "-q"])
        .current_dir(&dir));
    let compose = yaml(&dir.join("compose.yaml"));
    let services = compose["services"].as_mapping().expect("services");
    for name in [
        "kafka",
        "kafka-topics",
        "influxdb",
        "paceline",
        "feeder",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        assert!(services.contains_key(name), "compose has {name}");
    }
    // Every file it mounts from the repository exists.
    for (name, svc) in services {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let spec = v.as_str().unwrap_or_default();
            let host = spec.split(':').next().unwrap_or_default();
            if host.starts_with('.') {
                assert!(
                    dir.join(host).exists(),
                    "{name:?} mounts {host}, which is missing"
                );
            }
        }
    }
    // The feeder publishes the generated district with `paceline produce`.
    let feeder = serde_yaml::to_string(&services["feeder"]).expect("feeder");
    assert!(feeder.contains("paceline produce"), "{feeder}");
}
