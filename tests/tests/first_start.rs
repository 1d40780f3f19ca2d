//! A first start that says what it waits for, as a newcomer meets it: brokers on a closed
//! port, a TLS setting pointed at a plaintext listener, InfluxDB on a closed port, and an
//! InfluxDB that refuses the credentials. Each reason is on `/readyz` (503) and in a WARN
//! line within seconds, naming the address and librdkafka's or the HTTP client's own
//! error; past the bound (`kafka.unavailable_timeout_s`, `influx.start_timeout_s`) the
//! process exits 1 with the reason. And InfluxDB behind a TLS proxy whose certificate a
//! private CA signed: refused without `influx.ca_file`, the certificate named; with it,
//! ready and writing.
//!
//! The brokers that answer are librdkafka's mock cluster, in this test process.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use paceline_runtime::settings::{InfluxApi, Settings};
use paceline_tests::services::{free_port, patient, Influx1, TlsProxy};
use paceline_tests::{eventually, kafka, scenario_config, topics, Dataset, Serve};
use rdkafka::mocking::MockCluster;

/// Deadline for a reason to show on `/readyz`, counted from the start of the process (times
/// `PACELINE_TEST_PATIENCE`).
const WITHIN: Duration = Duration::from_secs(10);

/// Waits until `/readyz` answers 503 with every one of `words` in its body, at most
/// [`WITHIN`] after `started`; the body.
fn red_within(serve: &Serve, started: Instant, words: &[&str]) -> String {
    let mut last = (0, String::new());
    while started.elapsed() < patient(WITHIN) {
        last = serve.readiness();
        if last.0 == 503 && words.iter().all(|w| last.1.contains(w)) {
            return last.1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "/readyz did not name {words:?} within {:?}; last answer {} {:?}\nlog:\n{}",
        patient(WITHIN),
        last.0,
        last.1,
        serve.proc.log_text()
    );
}

/// Waits for a WARN line of the log holding every one of `words`.
fn warned(serve: &Serve, words: &[&str]) {
    let deadline = Instant::now() + patient(WITHIN);
    loop {
        let log = serve.proc.log_text();
        if log
            .lines()
            .any(|l| l.contains("WARN") && words.iter().all(|w| l.contains(w)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no WARN line with {words:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for the process to stop by itself past `bound_s`: exit 1, the log naming every
/// one of `words`.
fn stops_past(serve: Serve, started: Instant, bound_s: u64, words: &[&str]) {
    let (code, log, _) = serve.wait_exit(Duration::from_secs(bound_s + 60));
    assert_eq!(code, Some(1), "exit 1 past the bound:\n{log}");
    assert!(
        started.elapsed() >= Duration::from_secs(bound_s),
        "stopped after {:?}, before its bound of {bound_s} s:\n{log}",
        started.elapsed()
    );
    let last = log
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    for w in words {
        assert!(log.contains(w), "the log names `{w}`:\n{log}");
    }
    assert!(
        last.contains("paceline serve:"),
        "the last line gives the reason: {last}"
    );
}

/// A listener on loopback that accepts connections and never speaks.
fn plaintext_listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// The environment of a start against `brokers`, with InfluxDB on a closed port (the
/// reason Kafka gives comes first on `/readyz`).
fn nothing_but_brokers(brokers: &str) -> [(&'static str, String); 2] {
    [
        ("PACELINE_KAFKA_BROKERS", brokers.to_string()),
        (
            "PACELINE_INFLUX_URL",
            format!("http://127.0.0.1:{}", free_port()),
        ),
    ]
}

fn mock_with_topics(
    prefix: &str,
) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mock = MockCluster::new(1).expect("mock cluster");
    let (t, dl) = topics(prefix);
    for name in t.iter().chain([&dl]) {
        mock.create_topic(name, 1, 1).expect("topic");
    }
    mock
}

fn v1(config: &mut Settings) {
    config.influx.api = InfluxApi::V1;
}

#[test]
fn brokers_on_a_closed_port_are_named_then_the_start_stops() {
    let mut config = scenario_config("first-closed");
    v1(&mut config);
    config.kafka.unavailable_timeout_s = 15;
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let env = nothing_but_brokers(&brokers);
    let started = Instant::now();
    let serve = Serve::start(&config, &env);
    let why = red_within(&serve, started, &["Kafka:", &brokers, "Connection refused"]);
    assert!(!why.contains("sources not assigned"), "{why}");
    warned(
        &serve,
        &[
            "Kafka unavailable",
            &brokers,
            "Connection refused",
            "kafka.unavailable_timeout_s",
        ],
    );
    stops_past(
        serve,
        started,
        15,
        &[
            "kafka.unavailable_timeout_s",
            "Connection refused",
            &brokers,
        ],
    );
}

#[test]
fn tls_to_a_plaintext_listener_names_the_handshake() {
    let (listener, port) = plaintext_listener();
    // Accept and read what the client sends, answering nothing a TLS client accepts.
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = [0u8; 512];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nnot TLS\n");
            });
        }
    });
    let mut config = scenario_config("first-tls");
    v1(&mut config);
    config
        .kafka
        .options
        .insert("security.protocol".into(), "ssl".into());
    let brokers = format!("127.0.0.1:{port}");
    let env = nothing_but_brokers(&brokers);
    let started = Instant::now();
    let serve = Serve::start(&config, &env);
    let why = red_within(&serve, started, &["Kafka:", &brokers, "SSL"]);
    let lower = why.to_lowercase();
    assert!(lower.contains("handshake"), "the handshake is named: {why}");
    warned(&serve, &["Kafka unavailable", "SSL"]);
    let _ = serve.stop();
}

#[test]
fn influxdb_on_a_closed_port_is_named_then_the_start_stops() {
    let prefix = "first-influx";
    let mock = mock_with_topics(prefix);
    let mut config = scenario_config(prefix);
    v1(&mut config);
    config.influx.start_timeout_s = 12;
    let url = format!("http://127.0.0.1:{}", free_port());
    let env = [
        ("PACELINE_KAFKA_BROKERS", mock.bootstrap_servers()),
        ("PACELINE_INFLUX_URL", url.clone()),
    ];
    let started = Instant::now();
    let serve = Serve::start(&config, &env);
    red_within(&serve, started, &["InfluxDB:", &url, "Connection refused"]);
    warned(
        &serve,
        &["InfluxDB unavailable", &url, "influx.start_timeout_s"],
    );
    stops_past(serve, started, 12, &["influx.start_timeout_s", &url]);
}

/// An HTTP server that answers every request with `status` and a JSON error, as InfluxDB
/// does for a bad token; the requests' first lines are counted.
fn refusing_database(status: u16) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = vec![0u8; 64 * 1024];
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                if conn.read(&mut buf).unwrap_or(0) > 0 {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                let body = "{\"error\":\"authorization failed\"}";
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (url, seen)
}

#[test]
fn influxdb_refusing_the_credentials_is_named() {
    let prefix = "first-auth";
    let mock = mock_with_topics(prefix);
    let (url, seen) = refusing_database(401);
    let mut config = scenario_config(prefix);
    v1(&mut config);
    let env = [
        ("PACELINE_KAFKA_BROKERS", mock.bootstrap_servers()),
        ("PACELINE_INFLUX_URL", url.clone()),
        ("PACELINE_INFLUX_USER", "writer".to_string()),
        (
            "PACELINE_INFLUX_PASSWORD",
            "wrong-password-7f3a".to_string(),
        ),
    ];
    let started = Instant::now();
    let serve = Serve::start(&config, &env);
    let why = red_within(
        &serve,
        started,
        &["InfluxDB:", &url, "HTTP 401", "PACELINE_INFLUX_PASSWORD"],
    );
    assert!(
        !why.contains("wrong-password-7f3a"),
        "a secret on /readyz: {why}"
    );
    warned(&serve, &["InfluxDB unavailable", "HTTP 401"]);
    let (_, log) = serve.stop();
    assert!(!log.contains("wrong-password-7f3a"), "a secret in the log");
    assert!(
        seen.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the database was asked"
    );
}

#[test]
fn influxdb_behind_a_private_ca_needs_the_ca_file() {
    let influx = Influx1::start();
    influx.query("", "CREATE DATABASE tls");
    let proxy = TlsProxy::start(influx.port);
    let prefix = "first-private-ca";
    let mock = mock_with_topics(prefix);
    let mut config = scenario_config(prefix);
    v1(&mut config);
    config.service.idle_watermark_follows_clock = false;
    let url = format!("https://localhost:{}", proxy.port);
    let mut env = vec![
        ("PACELINE_KAFKA_BROKERS", mock.bootstrap_servers()),
        ("PACELINE_INFLUX_URL", url.clone()),
        ("PACELINE_INFLUX_DB", "tls".to_string()),
    ];
    // The system's roots alone: the certificate is refused, and said so.
    let started = Instant::now();
    let serve = Serve::start(&config, &env);
    let why = red_within(&serve, started, &["InfluxDB:", &url]);
    assert!(
        why.to_lowercase().contains("certificate"),
        "the certificate is named: {why}"
    );
    let _ = serve.stop();

    // Trusting the CA: ready, and the points arrive through the proxy.
    env.push((
        "PACELINE_INFLUX_CA_FILE",
        proxy.ca_file().display().to_string(),
    ));
    let serve = Serve::start(&config, &env);
    eventually("ready through TLS", 60, || serve.ready() == 200);
    let (t, _) = topics(prefix);
    let data = Dataset::new(23, 8, true, &[]);
    kafka::produce(&mock.bootstrap_servers(), &t, &data.lines[..200]);
    eventually("points written through TLS", 120, || {
        serve
            .metrics()
            .sum("paceline_sink_points_written_total", &[])
            > 0.0
    });
    let answer = influx.query(
        "tls",
        &format!("SELECT count(value) FROM {}", config.indicators.measurement),
    );
    let count = answer["results"][0]["series"][0]["values"][0][1]
        .as_f64()
        .unwrap_or(0.0);
    assert!(count > 0.0, "InfluxDB holds the points: {answer}");
    let _ = serve.stop();
}

#[test]
fn a_missing_dead_letter_topic_stops_the_start_named() {
    let prefix = "first-no-dead";
    let mock = MockCluster::new(1).expect("mock cluster");
    let (t, dl) = topics(prefix);
    for name in &t {
        mock.create_topic(name, 1, 1).expect("topic");
    }
    let mut config = scenario_config(prefix);
    v1(&mut config);
    let env = nothing_but_brokers(&mock.bootstrap_servers());
    let dir = paceline_tests::services::TempDir::new("no-dead-letters");
    let (code, log) = Serve::run_to_exit(&dir, &config, &env, &[]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&dl) && log.contains("create it first"),
        "{log}"
    );
}
