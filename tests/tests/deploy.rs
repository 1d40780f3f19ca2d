//! The deploy kit checked with the real tools: the Prometheus rules (`promtool check rules`,
//! `promtool test rules`: every alert fires after its `for:` and not before, and has a case
//! where it does not fire), the Alertmanager configuration (`amtool check-config`,
//! `amtool config routes test`), every alert's severity, summary, description and runbook
//! link into `docs/runbooks.md`; the Dockerfile (`hadolint`, `checkov`), the compose kit
//! (`docker-compose config` and its properties read from the file) and each Kubernetes
//! overlay as `kubectl kustomize` renders it (`kubernetes-validate --strict`, `checkov`,
//! its properties), whose PrometheusRule carries exactly the rules file.

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

/// `checkov` on one file with one framework: no failed check (skips are justified inline
/// in the file). Offline: nothing is fetched from its vendor.
fn checkov(framework: &str, file: &Path) {
    let out = run(Command::new("checkov")
        .args([
            "--quiet",
            "--compact",
            "--skip-download",
            "--framework",
            framework,
            "-f",
        ])
        .arg(file));
    assert!(out.contains("Passed checks"), "{out}");
}

#[test]
fn dockerfile_passes_hadolint_and_checkov() {
    let dockerfile = root().join("deploy/docker/Dockerfile");
    run(Command::new("hadolint").arg(&dockerfile));
    checkov("dockerfile", &dockerfile);
    let text = std::fs::read_to_string(&dockerfile).expect("Dockerfile");
    assert!(text.contains("\nUSER 10001"), "runs as a non-root user");
    assert!(
        text.lines().filter(|l| l.starts_with("FROM ")).count() >= 2,
        "multi-stage"
    );
    assert!(
        text.contains("--mount=type=cache,target=/usr/local/cargo/registry"),
        "dependencies cached between builds"
    );
    assert!(
        text.contains("cargo build --profile production")
            && text.contains("CARGO_PROFILE_PRODUCTION_DEBUG=0"),
        "the shipped profile, without debug info"
    );
    for label in ["version", "revision", "source"] {
        assert!(
            text.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label}"
        );
    }
    let health = text
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<String>();
    assert!(
        health.contains("\"healthcheck\""),
        "the health check is the binary's own: {health}"
    );
    assert!(root().join(".dockerignore").exists());
}

/// Every document of a multi-document YAML text.
fn documents_of(text: &str, origin: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| {
            let mut v = <serde_yaml::Value as serde::Deserialize>::deserialize(d)
                .unwrap_or_else(|e| panic!("{origin}: {e}"));
            v.apply_merge().expect("merge keys");
            v
        })
        .collect()
}

/// An overlay as `kubectl kustomize` renders it, written to a file for the linters, and its
/// documents.
fn render_overlay(overlay: &str) -> (PathBuf, Vec<serde_yaml::Value>) {
    let dir = root().join("deploy/kubernetes/overlays").join(overlay);
    let text = run(Command::new("kubectl").arg("kustomize").arg(&dir));
    let out = std::env::temp_dir().join(format!(
        "paceline-kustomize-{overlay}-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&out, &text).expect("rendered overlay");
    let docs = documents_of(&text, overlay);
    (out, docs)
}

#[test]
fn kubernetes_overlays_render_and_validate() {
    for (overlay, processes) in [("single", 1u64), ("cluster", 2)] {
        let (file, all) = render_overlay(overlay);
        let out = run(Command::new("kubernetes-validate")
            .arg("--strict")
            .arg(&file));
        assert!(!out.contains("ERROR") && !out.contains("failed"), "{out}");
        let kind = |k: &str| all.iter().find(|d| d["kind"].as_str() == Some(k)).cloned();
        let set = kind("StatefulSet").expect("a StatefulSet");
        assert_eq!(
            set["spec"]["replicas"].as_u64(),
            Some(processes),
            "{overlay}"
        );
        assert_pod_hardened(&set);
        assert_probes_and_secrets(&set);
        assert_cluster_of_pods(&all, &set);
        assert_network_policy(&all, &set);
        // The ConfigMap's configuration loads and validates.
        let toml = kind("ConfigMap").expect("ConfigMap")["data"]["paceline.toml"]
            .as_str()
            .expect("paceline.toml")
            .to_string();
        let config = paceline_runtime::settings::Settings::from_toml(&toml, "configmap.yaml")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(config.validate().is_empty());
        // The PrometheusRule is the rules file, and the Operator's default selectors
        // (`release`) find it and the ServiceMonitor.
        let rule = kind("PrometheusRule").expect("a PrometheusRule");
        assert_eq!(rule["spec"]["groups"], yaml(&rules_path())["groups"]);
        let monitor = kind("ServiceMonitor").expect("a ServiceMonitor");
        for m in [&rule, &monitor] {
            assert!(
                m["metadata"]["labels"]["release"].as_str().is_some(),
                "{m:?} carries a release label"
            );
        }
        std::fs::remove_file(&file).ok();
    }
}

#[test]
fn kubernetes_overlays_pass_checkov() {
    for overlay in ["single", "cluster"] {
        let (file, _) = render_overlay(overlay);
        checkov("kubernetes", &file);
        std::fs::remove_file(&file).ok();
    }
}

/// The restricted Pod Security level: non-root, no privilege escalation, every capability
/// dropped, the runtime's seccomp profile, a read-only root; no service account token; one
/// pod per node where possible.
fn assert_pod_hardened(set: &serde_yaml::Value) {
    let pod = &set["spec"]["template"]["spec"];
    assert_eq!(pod["automountServiceAccountToken"].as_bool(), Some(false));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0]["securityContext"];
    assert_eq!(c["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(c["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(c["capabilities"]["drop"][0].as_str(), Some("ALL"));
    let anti = &pod["affinity"]["podAntiAffinity"];
    let term = &anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert_eq!(
        term["labelSelector"]["matchLabels"], set["spec"]["selector"]["matchLabels"],
        "spread over the StatefulSet's own pods"
    );
}

fn assert_probes_and_secrets(set: &serde_yaml::Value) {
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
    assert!(
        env.iter()
            .any(|e| e["name"].as_str() == Some("PACELINE_CLUSTER_SECRET_FILE")),
        "the cluster secret comes from a mounted Secret file"
    );
    assert!(
        !env.iter()
            .any(|e| e["name"].as_str() == Some("PACELINE_CLUSTER_SECRET")),
        "no cluster secret in the manifest"
    );
}

/// The dataflow port admits paceline's own pods alone, the HTTP port one namespace (the
/// monitoring one), and the policy covers the StatefulSet's pods.
fn assert_network_policy(all: &[serde_yaml::Value], set: &serde_yaml::Value) {
    let policy = all
        .iter()
        .find(|d| d["kind"].as_str() == Some("NetworkPolicy"))
        .expect("a NetworkPolicy");
    let own = &set["spec"]["selector"]["matchLabels"];
    assert_eq!(&policy["spec"]["podSelector"]["matchLabels"], own);
    let rules = policy["spec"]["ingress"].as_sequence().expect("ingress");
    let ports = set["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .expect("ports");
    let port_of = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("port {name}"))
    };
    let admitting = |port: u64| -> Vec<&serde_yaml::Value> {
        rules
            .iter()
            .filter(|r| {
                r["ports"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|p| p["port"].as_u64() == Some(port))
            })
            .collect()
    };
    let peers = admitting(port_of("timely"));
    assert_eq!(peers.len(), 1, "one rule admits the dataflow port");
    let from = peers[0]["from"].as_sequence().expect("from");
    assert_eq!(from.len(), 1);
    assert_eq!(&from[0]["podSelector"]["matchLabels"], own, "own pods only");
    assert!(from[0].get("namespaceSelector").is_none());
    let http = admitting(port_of("http"));
    assert_eq!(http.len(), 1, "one rule admits the HTTP port");
    assert!(
        http[0]["from"][0]["namespaceSelector"]["matchLabels"]
            .as_mapping()
            .is_some_and(|m| !m.is_empty()),
        "from one namespace, selected by label"
    );
}

/// The StatefulSet forms one cluster: pods started together, a state volume each, the
/// peer list derived from one pattern and the replicas (naming every pod under the
/// headless Service on the timely port), and a disruption budget over the same pods.
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
    assert_eq!(env("PACELINE_PEERS"), None, "no list written by hand");
    let set_name = set["metadata"]["name"].as_str().expect("name");
    let replicas = spec["replicas"].as_u64().expect("replicas");
    assert_eq!(
        env("PACELINE_CLUSTER_SIZE"),
        Some(replicas.to_string()),
        "the size is the replicas"
    );
    let expected: Vec<String> = (0..replicas)
        .map(|i| format!("{set_name}-{i}.{headless_name}:{port}"))
        .collect();
    // Each pod's settings load, listing every pod and taking its index from its host name.
    for i in 0..replicas {
        let host = format!("{set_name}-{i}");
        let vars = |k: &str| match k {
            "HOSTNAME" => Some(host.clone()),
            "PACELINE_INFLUX_TOKEN_FILE" => None,
            k => env(k),
        };
        let s = paceline_runtime::settings::Settings::load_with_env(None, &vars)
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert_eq!(s.cluster.processes, expected, "{host}: one peer per pod");
        if replicas > 1 {
            assert_eq!(s.cluster.process_index, Some(i as usize), "{host}");
        }
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
    let service = |name: &str| {
        services
            .get(name)
            .unwrap_or_else(|| panic!("compose has {name}"))
    };
    for name in [
        "kafka",
        "kafka-topics",
        "influxdb",
        "influxdb-setup",
        "paceline",
        "feeder",
        "prometheus",
        "alertmanager",
        "grafana",
    ] {
        service(name);
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
    assert_compose_survives_restarts(&compose);
    assert_compose_exposes_loopback_only(&compose);
    assert_compose_credentials(&compose);
    assert_compose_feeds_once(&compose);
    // paceline's compose configuration loads, and the backfill does not follow the clock.
    let text = std::fs::read_to_string(dir.join("paceline.toml")).expect("paceline.toml");
    let config = paceline_runtime::settings::Settings::from_toml(&text, "paceline.toml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(config.validate().is_empty());
    assert!(!config.service.idle_watermark_follows_clock);
    let command = serde_yaml::to_string(&service("paceline")["command"]).expect("command");
    assert!(command.contains("compose.toml"), "{command}");
}

/// One-shot services never restart; every other one restarts unless stopped; everything
/// with state keeps it on a named volume.
fn assert_compose_survives_restarts(compose: &serde_yaml::Value) {
    let one_shot = ["kafka-topics", "influxdb-setup", "feeder"];
    let services = compose["services"].as_mapping().expect("services");
    for (name, svc) in services {
        let name = name.as_str().expect("name");
        let restart = svc["restart"].as_str();
        if one_shot.contains(&name) {
            assert_eq!(restart, Some("no"), "{name} runs once");
        } else {
            assert_eq!(restart, Some("unless-stopped"), "{name} restarts");
        }
    }
    let declared = compose["volumes"].as_mapping().expect("named volumes");
    for (name, path) in [
        ("kafka", "/var/lib/kafka/data"),
        ("influxdb", "/var/lib/influxdb2"),
        ("prometheus", "/prometheus"),
        ("paceline", "/var/lib/paceline"),
        ("feeder", "/var/lib/feeder"),
        ("grafana", "/var/lib/grafana"),
    ] {
        let volume = services[name]["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .find_map(|v| v.strip_suffix(&format!(":{path}")))
            .unwrap_or_else(|| panic!("{name} keeps {path} on a volume"));
        assert!(
            declared.contains_key(volume),
            "{name}: {volume} is a named volume"
        );
    }
    assert_eq!(
        services["kafka"]["environment"]["KAFKA_LOG_DIRS"].as_str(),
        Some("/var/lib/kafka/data"),
        "Kafka's log is on its volume"
    );
}

fn assert_compose_exposes_loopback_only(compose: &serde_yaml::Value) {
    for (name, svc) in compose["services"].as_mapping().expect("services") {
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            let p = p.as_str().expect("port as text");
            assert!(p.starts_with("127.0.0.1:"), "{name:?} publishes {p}");
        }
    }
}

/// The admin token is for InfluxDB and its setup alone; paceline writes with a token of
/// its own made at setup; Grafana's administrator password is a secret; the secrets
/// directory is never committed nor sent to a build, and its script makes each secret once.
fn assert_compose_credentials(compose: &serde_yaml::Value) {
    let services = compose["services"].as_mapping().expect("services");
    for (name, svc) in services {
        let name = name.as_str().expect("name");
        let text = serde_yaml::to_string(svc).expect("service");
        if !["influxdb", "influxdb-setup"].contains(&name) {
            assert!(
                !text.contains("influx-admin"),
                "{name} sees an admin secret"
            );
        }
    }
    let paceline = &services["paceline"];
    assert_eq!(
        paceline["environment"]["PACELINE_INFLUX_TOKEN_FILE"].as_str(),
        Some("/run/tokens/paceline-write")
    );
    let setup = serde_yaml::to_string(&services["influxdb-setup"]).expect("setup");
    assert!(
        setup.contains("--write-bucket") && setup.contains("/tokens/paceline-write"),
        "setup makes paceline's write-only token: {setup}"
    );
    assert!(
        paceline["read_only"].as_bool() == Some(true),
        "read-only root"
    );
    let grafana = &services["grafana"]["environment"];
    assert!(grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"]
        .as_str()
        .is_some());
    assert!(
        grafana.get("GF_SECURITY_ADMIN_PASSWORD").is_none(),
        "no password in the file"
    );

    let dir = root().join("deploy/compose");
    let ignore = std::fs::read_to_string(dir.join("secrets/.gitignore")).expect("git ignore");
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
    let docker_ignore =
        std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    assert!(docker_ignore
        .lines()
        .any(|l| l.trim() == "deploy/compose/secrets/"));
    // The script, in a directory of its own: makes every secret the file names, then keeps
    // them.
    let tmp = std::env::temp_dir().join(format!("paceline-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    std::fs::copy(dir.join("make-secrets"), tmp.join("make-secrets")).expect("copy");
    run(Command::new("sh").arg(tmp.join("make-secrets")));
    let named: Vec<String> = compose["secrets"]
        .as_mapping()
        .expect("secrets")
        .values()
        .map(|s| {
            s["file"]
                .as_str()
                .expect("file")
                .trim_start_matches("./")
                .to_string()
        })
        .collect();
    let first: Vec<String> = named
        .iter()
        .map(|f| std::fs::read_to_string(tmp.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")))
        .collect();
    assert!(
        first.iter().all(|s| s.trim().len() >= 32),
        "long random secrets"
    );
    run(Command::new("sh").arg(tmp.join("make-secrets")));
    let second: Vec<String> = named
        .iter()
        .map(|f| std::fs::read_to_string(tmp.join(f)).expect("secret"))
        .collect();
    assert_eq!(first, second, "a second run keeps them");
    std::fs::remove_dir_all(&tmp).ok();
}

/// The feeder publishes once (a marker on its volume), after paceline is healthy and then
/// ready.
fn assert_compose_feeds_once(compose: &serde_yaml::Value) {
    let feeder = &compose["services"]["feeder"];
    assert_eq!(
        feeder["depends_on"]["paceline"]["condition"].as_str(),
        Some("service_healthy")
    );
    let script = feeder["command"][0].as_str().expect("script");
    let marker = "/var/lib/feeder/published";
    let check = script
        .find(&format!("[ -e {marker} ]"))
        .expect("checks the marker");
    let produce = script.find("paceline produce").expect("publishes");
    let mark = script
        .find(&format!("> {marker}"))
        .expect("writes the marker");
    let ready = script
        .find("healthcheck --ready")
        .expect("waits for readiness");
    assert!(
        check < ready && ready < produce && produce < mark,
        "{script}"
    );
    let health = serde_yaml::to_string(&compose["services"]["paceline"]["healthcheck"]["test"])
        .expect("healthcheck");
    assert!(health.contains("healthcheck"), "{health}");
}

/// `scripts/release` agrees with itself: the version of Cargo.toml, the CHANGELOG, the
/// image's label and the kit's image tags; any other version is refused naming each place;
/// the tarball holds the binary (printing the version) and the kit, never a secret.
#[test]
fn release_checks_the_version_everywhere_and_packs_the_kit() {
    let script = root().join("scripts/release");
    let ok = run(Command::new(&script).arg("--check"));
    assert!(ok.contains("agree"), "{ok}");
    let out = Command::new(&script)
        .args(["--check", "99.0.0"])
        .output()
        .expect("release");
    assert_eq!(out.status.code(), Some(1));
    let why = String::from_utf8_lossy(&out.stderr);
    for place in [
        "Cargo.toml",
        "CHANGELOG.md",
        "deploy/docker/Dockerfile",
        "deploy/compose/compose.yaml",
        "deploy/kubernetes/base/statefulset.yaml",
    ] {
        assert!(why.contains(place), "names {place}: {why}");
    }

    let dist = std::env::temp_dir().join(format!("paceline-dist-{}", std::process::id()));
    let binary = root().join("target/release/paceline");
    run(Command::new(&script)
        .env("PACELINE_RELEASE_BINARY", &binary)
        .env("PACELINE_RELEASE_DIST", &dist));
    let tarball = std::fs::read_dir(&dist)
        .expect("dist")
        .map(|e| e.expect("entry").path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("a tarball");
    let listing = run(Command::new("tar").arg("tzf").arg(&tarball));
    for member in [
        "/bin/paceline",
        "/deploy/kubernetes/overlays/cluster/kustomization.yaml",
        "/deploy/compose/compose.yaml",
        "/config/paceline.toml",
        "/CHANGELOG.md",
    ] {
        assert!(
            listing.lines().any(|l| l.ends_with(member)),
            "{member} in:\n{listing}"
        );
    }
    assert!(
        !listing.lines().any(|l| l.contains("compose/secrets/")
            && !l.ends_with('/')
            && !l.ends_with(".gitignore")),
        "no secret shipped:\n{listing}"
    );
    let sum = run(Command::new("sha256sum")
        .arg("-c")
        .arg(format!("{}.sha256", tarball.display()))
        .current_dir(&dist));
    assert!(sum.contains("OK"), "{sum}");
    std::fs::remove_dir_all(&dist).ok();
}
