//! The binary end to end: replay of the spec's examples and of hostile lines, exit codes,
//! check-config, and the generator's mix of plan statuses.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_paceline"))
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("paceline-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

fn replay(dir: &Path, inputs: &[&Path], extra: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.arg("replay");
    for i in inputs {
        c.arg("--input").arg(i);
    }
    c.arg("--output")
        .arg(dir.join("out.lp"))
        .arg("--dead-letters")
        .arg(dir.join("dl.jsonl"))
        .args(extra);
    c.output().expect("paceline runs")
}

/// [`replay`] without extra arguments, which must succeed.
fn replay_ok(dir: &Path, inputs: &[&Path]) -> std::process::Output {
    let out = replay(dir, inputs, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The current year (near enough: it only has to be well in the past of `+ 2`).
fn this_year() -> u64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    1970 + secs / 31_556_952
}

/// Everything an exited child wrote to its piped stderr.
fn stderr_of(child: &mut std::process::Child) -> String {
    use std::io::Read;
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut err)
        .expect("stderr readable");
    err
}

fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("dl.jsonl"))
        .expect("dead letters readable")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a dead letter is JSON"))
        .collect()
}

#[test]
fn spec_examples() {
    let dir = tmp("examples");
    let examples =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/spec-examples.jsonl");
    let out = replay(&dir, &[&examples], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("duplicates:    1"), "{summary}");
    let dl = dead_letters(&dir);
    let reasons: Vec<(u64, &str)> = dl
        .iter()
        .map(|d| (d["line"].as_u64().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (14, "out_of_range"),
            (15, "bad_timestamp"),
            (16, "wrong_type"),
            (17, "unknown_value"),
            (18, "unknown_type"),
            (19, "missing_field"),
            (20, "invalid_json"),
            (21, "unknown_value"),
        ]
    );
    let lp = std::fs::read_to_string(dir.join("out.lp")).unwrap();
    // E1001 registered 2022-03-14T09:30+08:00 counts from the tick 2022-03-15T00:00+08:00
    // (1647273600 s) and is deregistered at the 2025-01-01 tick (1735660800 s).
    let cyber = |ts: &str| {
        lp.lines()
            .rfind(|l| {
                l.starts_with("indicator,indicator=cluster_enterprises,cluster=cybersecurity ")
                    && l.ends_with(ts)
            })
            .map(|l| l.split(' ').nth(1).unwrap().to_string())
    };
    assert_eq!(cyber("1647273600000000000").as_deref(), Some("value=1"));
    assert_eq!(cyber("1735660800000000000").as_deref(), Some("value=0"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Both outputs may be devices: the points to `/dev/null`, the dead letters to standard
/// output (a pipe here), neither of which can be synced as the files are. The run
/// succeeds and every rejected line of the examples reaches the pipe.
#[test]
fn outputs_to_devices_finish() {
    let examples =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/spec-examples.jsonl");
    let out = bin()
        .arg("replay")
        .arg("--input")
        .arg(&examples)
        .args(["--output", "/dev/null", "--dead-letters", "/dev/stdout"])
        .output()
        .expect("paceline runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reasons: Vec<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|d| d["reason"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        reasons.len(),
        8,
        "dead letters on standard output: {stdout}"
    );
    assert!(stdout.contains("points:"), "the summary follows: {stdout}");
}

/// Several inputs are one sequence: the spec's examples cut in two files give the output,
/// summary and dead letters of the whole file (the duplicate and the rejections counted
/// across the cut), each dead letter naming the file and line it came from.
#[test]
fn several_inputs_are_one_sequence() {
    let examples =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/spec-examples.jsonl");
    let whole_dir = tmp("whole");
    let whole = replay(&whole_dir, &[&examples], &[]);
    assert!(whole.status.success());
    let text = std::fs::read_to_string(&examples).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = 15;
    let dir = tmp("cut");
    let (first, second) = (dir.join("first.jsonl"), dir.join("second.jsonl"));
    std::fs::write(&first, lines[..cut].join("\n") + "\n").unwrap();
    std::fs::write(&second, lines[cut..].join("\n") + "\n").unwrap();
    let parts = replay(&dir, &[&first, &second], &[]);
    assert!(
        parts.status.success(),
        "{}",
        String::from_utf8_lossy(&parts.stderr)
    );
    let read = |d: &Path| std::fs::read_to_string(d.join("out.lp")).unwrap();
    assert_eq!(
        read(&dir),
        read(&whole_dir),
        "the same points in the same order"
    );
    let summary = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.contains("events/s") && !l.contains("elapsed"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(summary(&parts), summary(&whole));
    let reasons = |d: &Path| -> Vec<String> {
        dead_letters(d)
            .iter()
            .map(|l| l["reason"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(reasons(&dir), reasons(&whole_dir));
    // Lines 14 and 15 of the whole file stay in the first input, the rest move on.
    let places: Vec<(String, u64)> = dead_letters(&dir)
        .iter()
        .map(|l| {
            let input = l["file"].as_str().unwrap_or_default();
            let name = Path::new(input).file_name().unwrap().to_string_lossy();
            (name.into_owned(), l["line"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(places[0], ("first.jsonl".to_string(), 14));
    assert_eq!(places[2], ("second.jsonl".to_string(), 16 - cut as u64));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&whole_dir).unwrap();
}

/// An event older than its stream's watermark minus the correction horizon (filings: 400
/// days) is rejected `too_late` and dead-lettered; one just inside the horizon is taken.
#[test]
fn events_beyond_the_correction_horizon_are_too_late() {
    let dir = tmp("too-late");
    let event = |id: &str, at: &str, e: &str| {
        format!(
            r#"{{"event_id":"{id}","type":"enterprise.registered","occurred_at":"{at}","enterprise_id":"{e}","name":"n","cluster":"blockchain","region":"other","sme":false}}"#
        )
    };
    let input = dir.join("in.jsonl");
    let lines = [
        event("a", "2024-06-01T00:00:00Z", "E1"),
        // 2024-06-01 - 5 min - 400 days = 2023-04-28T23:55Z: inside, a correction.
        event("b", "2023-05-01T00:00:00Z", "E2"),
        // Beyond it.
        event("c", "2023-04-20T00:00:00Z", "E3"),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = replay_ok(&dir, &[&input]);
    let dl = dead_letters(&dir);
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0]["reason"], "too_late");
    assert_eq!(dl[0]["stream"], "filings");
    assert_eq!(dl[0]["line"], 3);
    assert!(dl[0]["raw"]
        .as_str()
        .unwrap()
        .contains("\"event_id\":\"c\""));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("too_late"), "{summary}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hostile_lines_land_in_dead_letters() {
    let dir = tmp("hostile");
    let input = dir.join("hostile.jsonl");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"\xff\xfe\xfd not utf-8\n");
    bytes.extend_from_slice(format!("{{\"x\":\"{}\"}}\n", "a".repeat(10 * 1024 * 1024)).as_bytes());
    bytes.extend_from_slice(format!("{}{}\n", "[".repeat(10_000), "]".repeat(10_000)).as_bytes());
    bytes.extend_from_slice(b"{\"event_id\":\"h1\",\"type\":\"enterprise.valuation\",\"occurred_at\":\"2023-01-01T00:00:00Z\",\"enterprise_id\":\"E\",\"valuation_cny\":1e400}\n");
    bytes.extend_from_slice(b"{}\n");
    // Events that would move time or sums past what the pipeline holds (docs/events.md, "Limits").
    let fin = |id: &str, at: &str, period: &str, revenue: &str| {
        format!("{{\"event_id\":\"{id}\",\"type\":\"enterprise.financials\",\"occurred_at\":\"{at}\",\"enterprise_id\":\"E\",\"period\":\"{period}\",\"revenue_cny\":{revenue},\"added_value_cny\":0,\"revision\":0}}\n")
    };
    for line in [
        fin("future", "2199-06-01T00:00:00Z", "2023-Q1", "1"),
        fin(
            "next-year",
            &format!("{}-01-01T00:00:00Z", this_year() + 2),
            "2023-Q1",
            "1",
        ),
        fin("past", "1969-12-31T23:59:59Z", "2023-Q1", "1"),
        fin("huge-1", "2023-05-01T00:00:00Z", "2023-Q1", "1e308"),
        fin("huge-2", "2023-05-01T00:00:00Z", "2023-Q2", "1e308"),
        fin("quarter", "2023-05-01T00:00:00Z", "9999-Q4", "1"),
    ] {
        bytes.extend_from_slice(line.as_bytes());
    }
    bytes.extend_from_slice(b"\r\n\n");
    bytes.extend_from_slice(b"{\"event_id\":\"ok\",\"type\":\"enterprise.deregistered\",\"occurred_at\":\"2023-01-01T00:00:00Z\",\"enterprise_id\":\"E\"}\r\n");
    std::fs::write(&input, bytes).unwrap();
    let out = replay_ok(&dir, &[&input]);
    let dl = dead_letters(&dir);
    let reasons: Vec<&str> = dl.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        vec![
            "invalid_json",
            "too_large",
            "too_deep",
            "out_of_range",
            "unknown_type",
            "out_of_range",
            "out_of_range",
            "out_of_range",
            "out_of_range",
            "out_of_range",
            "out_of_range",
        ]
    );
    assert!(dl[0]["raw_base64"].is_string() && dl[0].get("raw").is_none());
    // The long line was streamed through: its bytes in base64, its length counted.
    assert_eq!(dl[1]["bytes"], 10 * 1024 * 1024 + 8);
    use base64::Engine as _;
    let long = base64::engine::general_purpose::STANDARD
        .decode(dl[1]["raw_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        long,
        format!("{{\"x\":\"{}\"}}", "a".repeat(10 * 1024 * 1024)).as_bytes()
    );
    assert_eq!(dl[4]["line"], 5);
    assert!(dl[5]["raw"].as_str().unwrap().contains("2199-06-01"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("accepted:      1"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A 256 MB line without a newline, fed through a pipe as it is generated: replay rejects
/// it `too_large` as it streams past, with memory far below its size.
#[test]
fn a_huge_line_streams_to_the_dead_letters() {
    use std::io::Write as _;
    let dir = tmp("huge");
    let mut child = bin()
        .arg("replay")
        .arg("--input")
        .arg("/dev/stdin")
        .arg("--output")
        .arg(dir.join("out.lp"))
        .arg("--dead-letters")
        .arg(dir.join("dl.jsonl"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let chunk = vec![b'7'; 1 << 20];
    stdin.write_all(b"{\"event_id\":").unwrap();
    for _ in 0..256 {
        stdin.write_all(&chunk).unwrap();
    }
    // The whole line has gone through the pipe: the process's peak so far covers it.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        peak_kb < 128 * 1024,
        "peak {peak_kb} kB while a 256 MB line went by"
    );
    let dl = dead_letters(&dir);
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["reason"], "too_large");
    assert_eq!(dl[0]["bytes"], 256 * (1 << 20) + 12);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exit_codes() {
    let dir = tmp("exit");
    let out = replay(&dir, &[&dir.join("missing.jsonl")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.jsonl"));
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[plan]\ndefault_tolerance = 3\n[streams.telemetry]\ncorrection_horizon_days = 0\n",
    )
    .unwrap();
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plan.default_tolerance")
            && err.contains("streams.telemetry.correction_horizon_days"),
        "{err}"
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/paceline.toml");
    assert_eq!(
        bin()
            .arg("check-config")
            .arg(&shipped)
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generated_district_has_a_mix_of_statuses() {
    let dir = tmp("generate");
    let input = dir.join("district.jsonl");
    let g = bin()
        .args(["generate", "--seed", "1", "--scale", "0.25", "--out"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(g.status.success());
    let out = replay(&dir, &[&input], &["--workers", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    let corrections: u64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("corrections:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    assert!(
        corrections > 0,
        "late filings must cause corrections: {summary}"
    );
    let lp = std::fs::read_to_string(dir.join("out.lp")).unwrap();
    // Statuses at the 2025-01-01 tick, last line per series.
    let mut last = std::collections::BTreeMap::new();
    for l in lp
        .lines()
        .filter(|l| l.ends_with(" 1735660800000000000") && l.contains("status="))
    {
        let series = l.split(' ').next().unwrap().to_string();
        let status = l
            .split("status=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        last.insert(series, status);
    }
    let statuses: std::collections::BTreeSet<&str> = last.values().map(String::as_str).collect();
    assert!(last.len() >= 8, "{last:?}");
    assert!(
        statuses.contains("met") || statuses.contains("on_track"),
        "some ahead: {last:?}"
    );
    assert!(
        statuses.contains("behind") || statuses.contains("at_risk"),
        "some behind: {last:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `paceline serve` with environment only: errors in the overrides and secrets are refused
/// with their names, exit 2, before connecting anywhere.
#[test]
fn serve_refuses_bad_environment() {
    let dir = tmp("serve-env");
    let token_file = dir.join("token");
    std::fs::write(&token_file, "from-file\n").unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("PACELINE_INFLUX_API", "v3")], "PACELINE_INFLUX_API"),
        // Several processes and no secret for them to prove.
        (
            &[
                ("PACELINE_PEERS", "127.0.0.1:1,127.0.0.1:2"),
                ("PACELINE_PROCESS_INDEX", "0"),
            ],
            "PACELINE_CLUSTER_SECRET",
        ),
        (&[("PACELINE_HTTP_ADDR", "localhost")], "service.http_addr"),
        (
            &[
                ("PACELINE_INFLUX_TOKEN", "s3cr3t-value"),
                ("PACELINE_INFLUX_TOKEN_FILE", token_file.to_str().unwrap()),
            ],
            "PACELINE_INFLUX_TOKEN",
        ),
    ];
    for (env, key) in cases {
        let mut cmd = bin();
        cmd.arg("serve");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains("s3cr3t-value"), "a secret leaked: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A panic on any thread stops the process with exit code 1 and the panic's message
/// (here the HTTP server's, through a failpoint), instead of a service that goes on with a
/// dead part.
#[test]
fn a_panic_anywhere_stops_serve_with_exit_1() {
    let port = paceline_tests::services::free_port();
    let state = tmp("panic-state");
    let mut child = bin()
        .arg("serve")
        .env("PACELINE_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("PACELINE_KAFKA_BROKERS", "127.0.0.1:9")
        .env("PACELINE_INFLUX_URL", "http://127.0.0.1:9")
        .env("PACELINE_STATE_DIR", &state)
        .env("PACELINE_FAILPOINT", "http")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Ask /healthz until the server is up: that request panics its handler.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.try_wait().expect("child waitable") {
            break s.code();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve goes on after a panic"
        );
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            let _ = write!(s, "GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let err = stderr_of(&mut child);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("failpoint `http` reached"),
        "the panic's message: {err}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// Environment alone (no configuration file) starts the service on the defaults: the
/// endpoints answer, `/readyz` says why it is not ready while Kafka cannot be reached, and
/// SIGTERM stops it with exit 0.
#[test]
fn serve_runs_on_environment_alone_and_stops_on_sigterm() {
    let port = paceline_tests::services::free_port();
    // A port nothing listens on: Kafka is unreachable.
    let kafka_port = paceline_tests::services::free_port();
    let state = tmp("serve-env-state");
    let mut child = bin()
        .arg("serve")
        .env("PACELINE_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("PACELINE_KAFKA_BROKERS", format!("127.0.0.1:{kafka_port}"))
        .env("PACELINE_INFLUX_URL", "http://127.0.0.1:9")
        .env("PACELINE_INFLUX_TOKEN", "tok-never-shown")
        .env("PACELINE_STATE_DIR", &state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let get = |path: &str| paceline_tests::services::get(&format!("http://127.0.0.1:{port}{path}"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get("/healthz").is_none() {
        assert!(std::time::Instant::now() < deadline, "no /healthz");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(get("/healthz").unwrap().0, 200);
    // What it waits for, named within seconds: the broker's address and why.
    let brokers = format!("127.0.0.1:{kafka_port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (code, body) = get("/readyz").unwrap();
        assert_eq!(code, 503);
        assert!(!body.contains("tok-never-shown"));
        if body.starts_with("Kafka:") && body.contains(&brokers) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // `paceline healthcheck`, as the image's HEALTHCHECK runs it: the address from the
    // environment; alive, but not ready, with the reason.
    let health = |args: &[&str]| {
        bin()
            .arg("healthcheck")
            .args(args)
            .env("PACELINE_HTTP_ADDR", format!("0.0.0.0:{port}"))
            .output()
            .unwrap()
    };
    let alive = health(&[]);
    assert_eq!(alive.status.code(), Some(0), "{alive:?}");
    let ready = health(&["--ready"]);
    assert_eq!(ready.status.code(), Some(1), "{ready:?}");
    let why = String::from_utf8_lossy(&ready.stderr);
    assert!(why.contains("503") && why.contains(&brokers), "{why}");
    let elsewhere = health(&["--addr", &format!("127.0.0.1:{kafka_port}")]);
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("cannot reach"),
        "{elsewhere:?}"
    );
    let (code, metrics) = get("/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("paceline_sink_pending_points"));
    assert!(metrics.contains("paceline_dataflow_points_total"));
    assert!(!metrics.contains("tok-never-shown"));
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.try_wait().expect("child waitable") {
            break s.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not stop on SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = stderr_of(&mut child);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("tok-never-shown"), "the token leaked: {err}");
}

/// A serve on `state` with unreachable services; its child.
fn serve_on(state: &std::path::Path, port: u16, kafka_port: u16) -> std::process::Child {
    bin()
        .arg("serve")
        .env("PACELINE_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("PACELINE_KAFKA_BROKERS", format!("127.0.0.1:{kafka_port}"))
        .env("PACELINE_INFLUX_URL", "http://127.0.0.1:9")
        .env("PACELINE_STATE_DIR", state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("paceline starts")
}

/// Waits up to `secs` for the child's exit; its code and stderr.
fn exit_of(mut child: std::process::Child, secs: u64) -> (Option<i32>, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().expect("child waitable") {
            return (s.code(), stderr_of(&mut child));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running after {secs} s: {}", stderr_of(&mut child));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The state directory is checked at start, before anything is read: a second process on
/// it, a checkpoint of another format, a directory that cannot be written each stop the
/// start with exit 2, named.
#[test]
fn the_state_directory_is_checked_at_start() {
    use paceline_tests::services::free_port;
    let dir = tmp("state-checks");
    let state = dir.join("state");
    let first = serve_on(&state, free_port(), free_port());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !state.join("paceline.lock").exists() {
        assert!(std::time::Instant::now() < deadline, "no lock taken");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, err) = exit_of(serve_on(&state, free_port(), free_port()), 30);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("in use by another paceline process")
            && err.contains(&format!("pid {}", first.id())),
        "{err}"
    );
    Command::new("kill")
        .arg("-TERM")
        .arg(first.id().to_string())
        .status()
        .unwrap();
    let (code, err) = exit_of(first, 30);
    assert_eq!(code, Some(0), "{err}");

    // A checkpoint an older build wrote (format 4): refused, never skipped.
    let payload = b"an older build's state";
    let mut file = b"PCLNCKPT".to_vec();
    file.extend_from_slice(&4u32.to_le_bytes());
    file.extend_from_slice(&[0; 4]);
    file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    file.extend_from_slice(payload);
    std::fs::write(state.join("checkpoint-00000000000000000009.bin"), &file).unwrap();
    let (code, err) = exit_of(serve_on(&state, free_port(), free_port()), 30);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("checkpoint format 4, and this build reads format 6")
            && err.contains("--rebuild"),
        "{err}"
    );

    // Nowhere to write: named before anything is read.
    let (code, err) = exit_of(
        serve_on(
            std::path::Path::new("/proc/paceline-state"),
            free_port(),
            free_port(),
        ),
        30,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("service.state_dir") && err.contains("/proc/paceline-state"),
        "{err}"
    );
}

#[test]
fn an_http_token_guards_everything_but_the_probes() {
    let port = paceline_tests::services::free_port();
    let kafka_port = paceline_tests::services::free_port();
    let dir = tmp("serve-token");
    let token = "tok-3f1e9a-never-shown";
    let token_file = dir.join("http-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut child = bin()
        .arg("serve")
        .env("PACELINE_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("PACELINE_KAFKA_BROKERS", format!("127.0.0.1:{kafka_port}"))
        .env("PACELINE_INFLUX_URL", "http://127.0.0.1:9")
        .env("PACELINE_HTTP_TOKEN_FILE", &token_file)
        .env("PACELINE_STATE_DIR", dir.join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ask = |path: &str, bearer: Option<&str>| -> u16 {
        let mut r = paceline_tests::services::http().get(format!("http://127.0.0.1:{port}{path}"));
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        r.send().map(|a| a.status().as_u16()).unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ask("/healthz", None) != 200 {
        assert!(std::time::Instant::now() < deadline, "no /healthz");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(ask("/readyz", None), 503, "the probes need no token");
    for path in ["/", "/metrics", "/api/v1/indicators", "/api/v1/board"] {
        assert_eq!(ask(path, None), 401, "{path} without a token");
        assert_eq!(ask(path, Some("wrong")), 401, "{path} with a wrong token");
        assert_eq!(ask(path, Some(token)), 200, "{path} with the token");
    }
    let metrics = paceline_tests::services::http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth(token)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!metrics.contains(token));
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("child waitable").is_none() {
        assert!(std::time::Instant::now() < deadline, "did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let err = stderr_of(&mut child);
    assert!(!err.contains(token), "the token leaked: {err}");
}

#[test]
fn check_config_applies_the_environment_and_lists_every_error() {
    let dir = tmp("check-config-env");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "[kafka.options]\n\"sasl.password\" = \"hunter2-never-echoed\"\n[dataflow]\nworkers = 0\n",
    )
    .unwrap();
    let out = bin()
        .arg("check-config")
        .arg(&file)
        .env("PACELINE_INFLUX_API", "v3")
        .env("PACELINE_INFLUX_TOKEN", "tok-never-echoed")
        .env("PACELINE_INFLUX_TOKEN_FILE", dir.join("token"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "PACELINE_INFLUX_API",
        "dataflow.workers",
        "kafka.options.sasl.password",
        "PACELINE_INFLUX_TOKEN",
    ] {
        assert!(err.contains(key), "{key} is named:\n{err}");
    }
    assert!(
        !err.contains("hunter2") && !err.contains("tok-never"),
        "{err}"
    );
    // The same file without the problems, and an override that is fine: ok.
    std::fs::write(&file, "[dataflow]\nworkers = 2\n").unwrap();
    let ok = bin()
        .arg("check-config")
        .arg(&file)
        .env("PACELINE_INFLUX_API", "v1")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn print_config_shows_the_effective_configuration_without_secrets() {
    let out = bin()
        .arg("print-config")
        .env("PACELINE_KAFKA_BROKERS", "k1:9092,k2:9092")
        .env("PACELINE_INFLUX_TOKEN", "tok-51c2-never-printed")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("brokers = \"k1:9092,k2:9092\""), "{text}");
    assert!(text.contains("PACELINE_INFLUX_TOKEN: set"), "{text}");
    assert!(text.contains("PACELINE_INFLUX_PASSWORD: not set"), "{text}");
    assert!(!text.contains("tok-51c2"), "a secret was printed");
    // What it prints is a configuration the service loads.
    let dir = tmp("print-config");
    let file = dir.join("effective.toml");
    std::fs::write(&file, text.as_bytes()).unwrap();
    let check = bin().arg("check-config").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn a_two_line_stream_file_changes_one_key() {
    let dir = tmp("two-lines");
    let file = dir.join("telemetry.toml");
    std::fs::write(&file, "[streams.telemetry]\ncorrection_horizon_days = 3\n").unwrap();
    let check = bin().arg("check-config").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let out = bin()
        .arg("print-config")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let telemetry = &printed["streams"]["telemetry"];
    // Hand-written from config/paceline.toml: only the horizon differs.
    assert_eq!(telemetry["correction_horizon_days"].as_integer(), Some(3));
    assert_eq!(telemetry["topic"].as_str(), Some("platform-telemetry"));
    assert_eq!(telemetry["idle_timeout_s"].as_integer(), Some(30));
    assert_eq!(telemetry["max_out_of_orderness_s"].as_integer(), Some(300));
    assert_eq!(
        printed["streams"]["filings"]["correction_horizon_days"].as_integer(),
        Some(400)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The dashboards checked in under `deploy/grafana/dashboards/` are exactly what
/// `paceline dashboards` writes from the shipped configuration: the names in them cannot
/// drift from the catalogue. `--lang` writes one language only.
#[test]
fn checked_in_dashboards_are_what_the_command_writes() {
    let dir = tmp("dashboards");
    let out = bin()
        .args(["dashboards", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/dashboards");
    for name in ["plan-pace-en.json", "plan-pace-zh.json"] {
        let generated = std::fs::read_to_string(dir.join(name)).unwrap();
        let checked_in = std::fs::read_to_string(shipped.join(name)).unwrap();
        assert!(
            generated == checked_in,
            "deploy/grafana/dashboards/{name} differs from `paceline dashboards`: run `paceline dashboards --out deploy/grafana/dashboards`"
        );
    }
    let one = tmp("dashboards-zh");
    let out = bin()
        .args(["dashboards", "--lang", "zh", "--out"])
        .arg(&one)
        .output()
        .unwrap();
    assert!(out.status.success());
    let files: Vec<String> = std::fs::read_dir(&one)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["plan-pace-zh.json"]);
}

/// `--version` names the version and the git revision the binary was built from (the
/// checkout's HEAD, read here independently with git; `unknown` without git).
#[test]
fn version_names_the_revision() {
    let out = bin().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let revision = std::env::var("PACELINE_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or(head)
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        text,
        format!("paceline {} ({revision})", env!("CARGO_PKG_VERSION"))
    );
}
