//! `paceline demo`, what a newcomer runs first: no services needed. The built-in generator
//! simulates the district, the same pipeline as replay runs on it in-process as fast as it
//! can, a table of the planned indicators against pace is printed, and the status page and
//! `/metrics` are served on a local address until Ctrl-C.

use std::future::Future;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paceline_decode::Rejection;
use paceline_model::config::Config;
use paceline_model::point::Point;
use paceline_model::Stream;
use paceline_sink::batcher::SinkHealth;
use paceline_sink::metrics::SinkMetrics;
use prometheus::Registry;

use crate::board::{Board, Freshness};
use crate::replay::{run, DeadLetterSink, Input, PointSink, ReplayError, ReplaySummary};
use crate::serve::http::{router, HttpState};
use crate::serve::metrics::ServeMetrics;
use crate::serve::trouble::Trouble;

/// What to simulate and where to serve.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Generator seed.
    pub seed: u64,
    /// Generator scale (1 is about a million events).
    pub scale: f64,
    /// Where the status page and `/metrics` are served.
    pub http_addr: SocketAddr,
    /// Print the table and exit instead of serving.
    pub until_done: bool,
    /// The table's language, and the status page's when its address names none (`None`:
    /// the table in English, the page in the browser's language).
    pub lang: Option<paceline_model::names::Lang>,
}

/// The demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The address is taken or not ours.
    #[error("--http-addr {addr}: cannot listen: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pipeline failed.
    #[error(transparent)]
    Pipeline(#[from] ReplayError),
    /// The metrics could not be set up.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Standard output or the HTTP server failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads generated lines as one JSON Lines stream, a line at a time as the generator gives
/// them (chunk by chunk), so the district is never held whole.
struct GeneratedLines<I> {
    lines: I,
    current: Vec<u8>,
    pos: usize,
}

impl<I: Iterator<Item = String>> GeneratedLines<I> {
    fn new(lines: I) -> GeneratedLines<I> {
        GeneratedLines {
            lines,
            current: Vec::new(),
            pos: 0,
        }
    }
}

impl<I: Iterator<Item = String>> Read for GeneratedLines<I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<I: Iterator<Item = String>> BufRead for GeneratedLines<I> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos >= self.current.len() {
            self.current.clear();
            self.pos = 0;
            if let Some(line) = self.lines.next() {
                self.current = line.into_bytes();
                self.current.push(b'\n');
            }
        }
        Ok(&self.current[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
    }
}

/// The demo keeps no dead letters: the generator's few bad lines are counted, and shown in
/// `/metrics` by reason.
struct CountOnly;

impl DeadLetterSink for CountOnly {
    fn write(&mut self, _: &Rejection, _: &str, _: u64, _: &[u8]) -> Result<(), ReplayError> {
        Ok(())
    }
    fn write_long(
        &mut self,
        _: &Rejection,
        file: &str,
        _: u64,
        _: &[u8],
        rest: &mut dyn std::io::BufRead,
    ) -> Result<u64, ReplayError> {
        crate::replay::stream_rest_of_line(rest, |_| Ok(())).map_err(|source| ReplayError::Input {
            path: file.into(),
            source,
        })
    }
    fn finish(&mut self) -> Result<(), ReplayError> {
        Ok(())
    }
}

/// Points go to the board only; this counts them.
struct CountPoints(u64);

impl PointSink for CountPoints {
    fn write(&mut self, points: &[Point]) -> Result<(), ReplayError> {
        self.0 += points.len() as u64;
        Ok(())
    }
    fn finish(self: Box<Self>) -> Result<u64, ReplayError> {
        Ok(self.0)
    }
}

/// Generates the district and runs the pipeline on it; the board holds what it wrote.
pub fn simulate(
    config: &Config,
    seed: u64,
    scale: f64,
    board: &Arc<Board>,
) -> Result<ReplaySummary, ReplayError> {
    let terminal = std::io::stderr().is_terminal();
    if terminal {
        eprintln!("generating the district (seed {seed}, scale {scale})…");
    }
    let lines = paceline_generate::District::new(seed, scale);
    let input = Input {
        name: format!("generated district (seed {seed}, scale {scale})"),
        reader: Box::new(GeneratedLines::new(lines)),
        // Not known before the last chunk is generated.
        len: None,
    };
    run(
        config,
        vec![input],
        Box::new(CountPoints(0)),
        &mut CountOnly,
        board,
    )
}

/// The HTTP state of a finished run: the board, and metrics holding the run's counts.
fn http_state(
    config: &Config,
    summary: &ReplaySummary,
    board: Arc<Board>,
    language: Option<paceline_model::names::Lang>,
) -> Result<HttpState, DemoError> {
    let registry = Registry::new();
    let metrics = ServeMetrics::register(&registry)?;
    metrics.set_cadences(config);
    metrics.set_plan(config, "");
    let sink = SinkMetrics::register(&registry)?;
    for s in Stream::ALL {
        let st = s.as_str();
        let i = s.index();
        metrics
            .events
            .with_label_values(&[st, "accepted"])
            .inc_by(summary.accepted[i]);
        metrics
            .events
            .with_label_values(&[st, "duplicate"])
            .inc_by(summary.duplicates[i]);
        metrics
            .corrections
            .with_label_values(&[st])
            .inc_by(summary.corrections[i]);
        if let Some(w) = summary.watermarks[i] {
            metrics
                .watermark
                .with_label_values(&[st])
                .set(w as f64 / 1e9);
        }
        board.set_stream(
            s,
            Freshness {
                watermark: summary.watermarks[i],
                lag: None,
            },
        );
    }
    for ((stream, reason), n) in &summary.rejected {
        metrics
            .rejected
            .with_label_values(&[stream, reason])
            .inc_by(*n);
        metrics
            .events
            .with_label_values(&[stream, "rejected"])
            .inc_by(*n);
    }
    metrics.unrepresentable.inc_by(summary.unrepresentable);
    sink.points_written.inc_by(summary.points);
    for p in board.latest().iter().chain(&board.verdicts()) {
        metrics.set_indicator(p);
    }
    let health = SinkHealth::default();
    health
        .accepting
        .store(true, std::sync::atomic::Ordering::Relaxed);
    Ok(HttpState {
        registry,
        sink: Arc::new(health),
        sources_assigned: AtomicBool::new(true),
        // The demo has neither: nothing records trouble with them.
        kafka: Arc::new(Trouble::new("Kafka", ("none in the demo", Duration::MAX))),
        influx: Arc::new(Trouble::new(
            "InfluxDB",
            ("none in the demo", Duration::MAX),
        )),
        dataflow: Mutex::new(None),
        board,
        mode: "demo",
        cluster: None,
        language,
        ready: metrics.ready.clone(),
        // The demo serves on loopback, for the one who runs it.
        token: None,
    })
}

/// Runs the demo: simulate, print the table to `out`, then (unless `until_done`) serve the
/// status page until `shutdown` resolves.
pub async fn demo(
    config: Config,
    opts: DemoOptions,
    out: &mut (dyn Write + Send),
    color: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<ReplaySummary, DemoError> {
    // Listen first: a taken address fails before minutes of work, not after.
    let listener = match opts.until_done {
        true => None,
        false => Some(
            tokio::net::TcpListener::bind(opts.http_addr)
                .await
                .map_err(|source| DemoError::Listen {
                    addr: opts.http_addr,
                    source,
                })?,
        ),
    };
    let board = Arc::new(Board::new(config.plan_specs()));
    let run_board = board.clone();
    let (seed, scale) = (opts.seed, opts.scale);
    let run_config = config.clone();
    let summary =
        tokio::task::spawn_blocking(move || simulate(&run_config, seed, scale, &run_board))
            .await
            .map_err(|_| ReplayError::WriterPanicked)??;
    writeln!(
        out,
        "{} events simulated in {:.1} s ({:.0} events/s): {} accepted, {} duplicates, {} rejected, {} points written, {} corrections.\n",
        summary.events,
        summary.elapsed.as_secs_f64(),
        summary.events_per_s(),
        summary.accepted.iter().sum::<u64>(),
        summary.duplicates.iter().sum::<u64>(),
        summary.rejected_total(),
        summary.points,
        summary.corrections.iter().sum::<u64>(),
    )?;
    writeln!(out, "Planned indicators at their last tick:")?;
    let lang = opts.lang.unwrap_or(paceline_model::names::Lang::En);
    write!(
        out,
        "{}",
        crate::table::render(&summary.planned, &summary.verdicts, lang, color)
    )?;
    let Some(listener) = listener else {
        out.flush()?;
        return Ok(summary);
    };
    let state = Arc::new(http_state(&config, &summary, board, opts.lang)?);
    let addr = listener.local_addr()?;
    writeln!(
        out,
        "\nStatus page: http://{addr}/   metrics: http://{addr}/metrics   (Ctrl-C to stop)"
    )?;
    out.flush()?;
    let limits = crate::serve::http_server::HttpLimits::from_config(
        &crate::settings::ServiceConfig::default(),
    );
    crate::serve::http_server::run_server(listener, router(state), limits, shutdown).await;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_lines_read_as_one_stream() {
        let lines: Vec<String> = vec!["a".into(), String::new(), "bcd".into()];
        let mut r = GeneratedLines::new(lines.into_iter());
        let mut all = String::new();
        r.read_to_string(&mut all).expect("in memory");
        assert_eq!(all, "a\n\nbcd\n");
        let lines: Vec<String> = vec!["xy".into(), "z".into()];
        let mut r = GeneratedLines::new(lines.into_iter());
        let mut line = Vec::new();
        r.read_until(b'\n', &mut line).expect("in memory");
        assert_eq!(line, b"xy\n");
        line.clear();
        r.read_until(b'\n', &mut line).expect("in memory");
        assert_eq!(line, b"z\n");
        line.clear();
        assert_eq!(r.read_until(b'\n', &mut line).expect("in memory"), 0);
    }
}
