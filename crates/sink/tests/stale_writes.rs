//! A write the database applies late cannot leave an older value over a correction: a
//! stand-in for InfluxDB 1.x holds the first write request past the client's timeout and
//! applies it after the retry and a correction have been written; the sink writes the
//! points of the failed write again, with their newest values, once no write has failed
//! for `doubt_rewrite`. The database's final value is the correction.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paceline_model::point::{Fields, Point};
use paceline_model::{Indicator, SeriesKey};
use paceline_sink::batcher::{run, BatchSettings, SinkHealth};
use paceline_sink::config::{InfluxApi, InfluxConfig, InfluxCredentials};
use paceline_sink::influx::InfluxWriter;
use paceline_sink::metrics::SinkMetrics;
use paceline_sink::Measurements;

/// What the stand-in holds: each line's series and time → the line, and every line
/// applied, in the order applied.
#[derive(Default)]
struct Db {
    rows: BTreeMap<String, String>,
    applied: Vec<String>,
}

impl Db {
    fn apply(&mut self, body: &str) {
        for line in body.lines().filter(|l| !l.is_empty()) {
            // `measurement,tags fields timestamp`: the series and time are the key.
            let parts: Vec<&str> = line.split(' ').collect();
            let key = format!("{} {}", parts[0], parts[parts.len() - 1]);
            self.rows.insert(key, line.to_string());
            self.applied.push(line.to_string());
        }
    }
}

/// One HTTP request: its request line and body.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String)> {
    let mut first = String::new();
    if reader.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let h = header.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some((first, String::from_utf8_lossy(&body).into_owned()))
}

/// Serves `/ping` and `/write`; the first write is applied only after `late`, and never
/// answered (the client has given up on it by then).
fn stand_in(late: Duration) -> (u16, Arc<Mutex<Db>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let db = Arc::new(Mutex::new(Db::default()));
    let writes = Arc::new(AtomicUsize::new(0));
    let shared = db.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (db, writes) = (shared.clone(), writes.clone());
            std::thread::spawn(move || {
                let mut out = conn.try_clone().expect("clone");
                let mut reader = BufReader::new(conn);
                while let Some((line, body)) = read_request(&mut reader) {
                    if line.contains("/write") {
                        if writes.fetch_add(1, Ordering::SeqCst) == 0 {
                            std::thread::sleep(late);
                            db.lock().expect("database lock").apply(&body);
                            return;
                        }
                        db.lock().expect("database lock").apply(&body);
                    }
                    let _ = out.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, db)
}

fn point(tick: i64, value: f64) -> Point {
    Point::indicator(
        SeriesKey::plain(Indicator::QuasiUnicorns),
        tick,
        Fields::value(value),
        false,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_write_cannot_undo_a_correction() {
    let (port, db) = stand_in(Duration::from_millis(2500));
    let config = InfluxConfig {
        api: InfluxApi::V1,
        url: format!("http://127.0.0.1:{port}"),
        database: "db".into(),
        request_timeout_ms: 1000,
        retry_initial_ms: 50,
        retry_max_ms: 100,
        linger_ms: 10,
        batch_points: 1,
        ..InfluxConfig::default()
    };
    let writer = InfluxWriter::new(&config, &InfluxCredentials::default()).expect("writer");
    let measurements = Measurements {
        points: "indicator".into(),
        verdicts: "plan_verdict".into(),
    };
    let mut settings = BatchSettings::from_config(measurements, &config);
    settings.doubt_rewrite = Duration::from_secs(4);
    let metrics = SinkMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let tick = 86_400_000_000_000;
    let sink = {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            run(
                &writer,
                &settings,
                rx,
                &metrics,
                Arc::new(SinkHealth::default()),
                |_| {},
            )
            .await
        })
    };
    // The first write times out (held), is retried and written; then the correction.
    tx.send((1, vec![point(tick, 1.0)])).await.expect("send");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.points_written.get() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the retry is written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send((2, vec![point(tick, 2.0)])).await.expect("send");
    while metrics.points_written.get() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the correction is written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The held original lands after the correction...
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let stale = db
        .lock()
        .unwrap()
        .rows
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    assert!(
        stale.contains("value=1"),
        "the late original landed over the correction: {stale}"
    );
    // ...and the rewrite puts the correction back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.points_rewritten.get() < 1 {
        assert!(tokio::time::Instant::now() < deadline, "rewritten");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(tx);
    let written = sink.await.expect("no panic").expect("no refusal");
    assert_eq!(written, 2, "the rewrite is not counted as written");
    let db = db.lock().unwrap();
    let last = db.rows.values().next().cloned().unwrap_or_default();
    assert!(
        last.contains("value=2"),
        "the correction stands: {last}\napplied: {:?}",
        db.applied
    );
    let values: Vec<&str> = db
        .applied
        .iter()
        .map(|l| if l.contains("value=2") { "2" } else { "1" })
        .collect();
    assert_eq!(
        values,
        ["1", "2", "1", "2"],
        "retry, correction, late original, rewrite"
    );
}
