//! The HTTP endpoints against a slowloris client: 1 000 connections, twenty times the cap
//! of 50, that trickle a request header byte by byte neither stop `/metrics` from
//! answering nor outlive the header deadline, and SIGTERM with such connections open still
//! stops `serve` in time. Kafka and InfluxDB are unreachable on purpose: the endpoints
//! answer regardless.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paceline_tests::services::{free_port, patient};

const SLOW_CLIENTS: usize = 1000;
const MAX_CONNECTIONS: usize = 50;
const HEADER_TIMEOUT_S: u64 = 8;

/// Opens `n` connections that each send the start of a request header.
fn slowloris(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("slow connection {i}: {e}"));
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .expect("first bytes");
            s
        })
        .collect()
}

/// One more header byte on every connection still open; errors (closed by the server)
/// are expected later on.
fn trickle(conns: &mut [TcpStream]) {
    for c in conns.iter_mut() {
        let _ = c.write_all(b"X");
    }
}

/// Whether the server has closed the connection (end of stream or reset).
fn closed_by_server(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout set");
    let mut buf = [0u8; 512];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            // A 408-style answer before the close is fine; read on to the end.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// The server process, killed on every way out of the test.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    paceline_tests::services::get(&format!("http://127.0.0.1:{port}{path}"))
}

#[test]
fn slowloris_cannot_hold_the_endpoints() {
    let dir = std::env::temp_dir().join(format!("paceline-http-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("paceline.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nmetadata_timeout_s = 600\n\n[service]\nhttp_header_timeout_s = {HEADER_TIMEOUT_S}\nhttp_max_connections = {MAX_CONNECTIONS}\nshutdown_timeout_s = 10\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_paceline"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("PACELINE_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "PACELINE_KAFKA_BROKERS",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("PACELINE_INFLUX_URL", "http://127.0.0.1:9")
            .env("PACELINE_STATE_DIR", dir.join("state"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let log_text = || std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(port, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "no /healthz:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(100));
    }

    // 1 000 slow clients, each adding a byte every half second: never idle, never done.
    // Far more than the cap: the oldest give way to newer connections, probes included.
    let mut slow = slowloris(port, SLOW_CLIENTS);
    let opened = Instant::now();
    for _ in 0..3 {
        trickle(&mut slow);
        let asked = Instant::now();
        let (code, body) = get(port, "/metrics").expect("/metrics answers beside the slow clients");
        assert_eq!(code, 200);
        assert!(body.contains("paceline_sink_pending_points"));
        assert!(
            asked.elapsed() < patient(Duration::from_secs(2)),
            "/metrics took {:?}",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Past the header deadline (with a margin for a loaded machine) every slow client has
    // been dropped, although each kept sending.
    while opened.elapsed() < Duration::from_secs(HEADER_TIMEOUT_S + 4) {
        trickle(&mut slow);
        std::thread::sleep(Duration::from_millis(500));
    }
    let still_open = slow
        .iter_mut()
        .map(closed_by_server)
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        still_open, 0,
        "slow clients past the header deadline still open"
    );
    drop(slow);

    // SIGTERM while 1 000 fresh slow clients hold connections: stops in time, exit 0.
    let _slow = slowloris(port, SLOW_CLIENTS);
    assert_eq!(get(port, "/healthz").map(|r| r.0), Some(200));
    let term = Instant::now();
    assert!(Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap()
        .success());
    let code = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s.code();
        }
        if term.elapsed() > Duration::from_secs(10) {
            panic!("serve held open by slow clients:\n{}", log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0), "{}", log_text());
    let _ = std::fs::remove_dir_all(&dir);
}
