//! Test harness for `paceline serve` against real services: start the services
//! ([`services`]), produce a generated data set to Kafka ([`kafka`]), run the `paceline`
//! binary, wait until it has drained, read the database back ([`readback`]) and compare with
//! `paceline replay` of the same events by the equivalence of docs/outputs.md.

pub mod gate;
pub mod kafka;
pub mod page;
pub mod readback;
pub mod services;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use paceline_model::time::{tick_after, tick_floor};
use paceline_model::{Nanos, SeriesKey, Stream};
pub use paceline_oracle::equiv::{explain, Difference};
use paceline_oracle::lp::{self, Points};
use paceline_runtime::settings::Settings;
use paceline_runtime::{ReplayOptions, ReplaySummary};

use services::{free_port, get, wait_for, Proc, TempDir};

/// The `paceline` binary built beside the test binaries (`target/<profile>/paceline`).
pub fn paceline_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let bin = dir.join("paceline");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (scripts/test does)",
        bin.display()
    );
    bin
}

/// A data set: a generated district over the whole plan period (scale 0.05), every line
/// but only each `telemetry_every`-th telemetry event, plus extra lines.
pub struct Dataset {
    /// Holds the file.
    pub dir: TempDir,
    /// The JSON Lines file replay reads.
    pub file: PathBuf,
    /// The lines, as produced to Kafka.
    pub lines: Vec<Vec<u8>>,
}

impl Dataset {
    /// Generates seed `seed`, thins telemetry, sorts by `occurred_at` when `in_order` (so
    /// that nothing arrives late), appends `extra`.
    pub fn new(seed: u64, telemetry_every: usize, in_order: bool, extra: &[&[u8]]) -> Dataset {
        let mut n = 0usize;
        let mut lines: Vec<Vec<u8>> = paceline_generate::generate(seed, 0.05)
            .into_iter()
            .filter(|l| {
                if !l.contains("\"type\":\"platform.") {
                    return true;
                }
                n += 1;
                n.is_multiple_of(telemetry_every.max(1))
            })
            .map(String::into_bytes)
            .collect();
        if in_order {
            // Stable: lines without a time (bad lines) keep their place relative to others.
            lines.sort_by_key(|l| paceline_decode::decode(l, None).map_or(Nanos::MIN, |e| e.at));
        } else {
            // Late data: every 12th filing or scenario event arrives 600 lines (weeks of
            // event time, well within their 400-day horizon) after its place.
            let mut keyed: Vec<(usize, Vec<u8>)> = Vec::with_capacity(lines.len());
            let mut k = 0usize;
            for (i, l) in lines.into_iter().enumerate() {
                let late = paceline_decode::decode(&l, None)
                    .is_ok_and(|e| e.body.stream() != Stream::Telemetry)
                    && {
                        k += 1;
                        k.is_multiple_of(12)
                    };
                keyed.push((if late { 2 * (i + 600) + 1 } else { 2 * i }, l));
            }
            keyed.sort_by_key(|(key, _)| *key);
            lines = keyed.into_iter().map(|(_, l)| l).collect();
        }
        lines.extend(extra.iter().map(|l| l.to_vec()));
        Dataset::from_lines(lines)
    }

    /// A data set of these lines, in this order.
    pub fn from_lines(lines: Vec<Vec<u8>>) -> Dataset {
        let dir = TempDir::new("data");
        let file = dir.join("events.jsonl");
        let mut text = Vec::new();
        for l in &lines {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        std::fs::write(&file, text).expect("data file");
        Dataset { dir, file, lines }
    }

    /// The greatest and least `occurred_at` of the valid events of each stream.
    pub fn span(&self) -> [Option<(Nanos, Nanos)>; 3] {
        let mut out: [Option<(Nanos, Nanos)>; 3] = [None; 3];
        for l in &self.lines {
            if let Ok(e) = paceline_decode::decode(l, None) {
                let s = &mut out[e.body.stream().index()];
                *s = Some(s.map_or((e.at, e.at), |(a, b)| (a.min(e.at), b.max(e.at))));
            }
        }
        out
    }

    /// Where each stream's watermark ends once everything is read (its greatest event time
    /// minus the allowed out-of-orderness), with the clock rule off.
    pub fn final_watermarks(&self, config: &Settings) -> [Option<Nanos>; 3] {
        let span = self.span();
        Stream::ALL
            .map(|s| span[s.index()].map(|(_, max)| max - config.streams.get(s).out_of_orderness()))
    }

    /// `paceline replay` of the data set: its points and summary.
    pub fn replay(&self, config: &Settings) -> (Points, ReplaySummary) {
        let opts = ReplayOptions {
            inputs: vec![self.file.clone()],
            output: self.dir.join("replay.lp"),
            dead_letters: self.dir.join("replay.dl.jsonl"),
        };
        let summary = paceline_runtime::replay(config, &opts).expect("replay");
        let text = std::fs::read_to_string(&opts.output).expect("replay output");
        (lp::parse(&text).expect("replay output parses"), summary)
    }
}

/// Topic names of one scenario: `<prefix>-<default topic>` and its dead-letter topic.
pub fn topics(prefix: &str) -> ([String; 3], String) {
    let d = Settings::default();
    (
        Stream::ALL.map(|s| format!("{prefix}-{}", d.streams.get(s).topic)),
        format!("{prefix}-dead-letters"),
    )
}

/// Creates a scenario's three topics with `partitions` each, and its dead-letter topic.
pub fn create_topics(tansu: &services::Tansu, prefix: &str, partitions: u32) {
    let (t, dl) = topics(prefix);
    for name in &t {
        tansu.create_topic(name, partitions);
    }
    tansu.create_topic(&dl, 1);
}

/// The environment of a serve on `tansu` writing to InfluxDB 1.x database `db`.
pub fn influx1_env(
    tansu: &services::Tansu,
    influx: &services::Influx1,
    db: &str,
) -> [(&'static str, String); 4] {
    [
        ("PACELINE_KAFKA_BROKERS", tansu.brokers()),
        ("PACELINE_INFLUX_API", "v1".to_string()),
        ("PACELINE_INFLUX_URL", influx.url()),
        ("PACELINE_INFLUX_DB", db.to_string()),
    ]
}

/// A scenario's configuration: its topics, 2 workers, 1 s idle timeout.
pub fn scenario_config(prefix: &str) -> Settings {
    let mut c = Settings::default();
    let (t, dl) = topics(prefix);
    c.streams.filings.topic = t[0].clone();
    c.streams.telemetry.topic = t[1].clone();
    c.streams.scenarios.topic = t[2].clone();
    let streams = &mut c.pipeline.streams;
    for s in [
        &mut streams.filings,
        &mut streams.telemetry,
        &mut streams.scenarios,
    ] {
        s.idle_timeout_s = 1;
    }
    c.kafka.dead_letter_topic = dl;
    c.dataflow.workers = 2;
    c.kafka.metadata_timeout_s = 30;
    c
}

/// Parsed Prometheus text.
pub struct Metrics(Vec<(String, BTreeMap<String, String>, f64)>);

impl Metrics {
    /// The samples of several processes as one scrape: sums add over them.
    pub fn merged(all: Vec<Metrics>) -> Metrics {
        Metrics(all.into_iter().flat_map(|m| m.0).collect())
    }

    /// Parses the text format (no escapes in our label values).
    pub fn parse(text: &str) -> Metrics {
        let mut out = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (head, value) = line.rsplit_once(' ').expect("metric line");
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => {
                    let body = rest.trim_end_matches('}');
                    let labels = body
                        .split("\",")
                        .filter(|kv| !kv.is_empty())
                        .filter_map(|kv| {
                            let (k, v) = kv.split_once('=')?;
                            Some((k.to_string(), v.trim_matches('"').to_string()))
                        })
                        .collect();
                    (n.to_string(), labels)
                }
                None => (head.to_string(), BTreeMap::new()),
            };
            out.push((name, labels, value.parse().unwrap_or(f64::NAN)));
        }
        Metrics(out)
    }

    /// The sum of `name` over the samples whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Each sample of `name`: its labels and value.
    pub fn samples<'m>(
        &'m self,
        name: &'m str,
    ) -> impl Iterator<Item = (&'m BTreeMap<String, String>, f64)> + 'm {
        self.0
            .iter()
            .filter(move |(n, _, _)| n == name)
            .map(|(_, l, v)| (l, *v))
    }

    /// Whether a metric of that name is present.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _, _)| n == name)
    }

    /// Whether a sample of `name` with (at least) `labels` is present.
    pub fn has_sample(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.0.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

/// A running `paceline serve`.
pub struct Serve {
    /// The process.
    pub proc: Proc,
    /// Base URL of its HTTP endpoints.
    pub http: String,
    _dir: TempDir,
}

impl Serve {
    /// Writes `config` to a file and starts `paceline serve --config FILE` with `env`
    /// (plus `PACELINE_HTTP_ADDR` on a free port); waits for `/healthz`.
    pub fn start(config: &Settings, env: &[(&str, String)]) -> Serve {
        Serve::start_in(TempDir::new("serve"), config, env)
    }

    /// Stops gracefully (exit 0 asserted) and starts again with the same state directory.
    pub fn restart(self, config: &Settings, env: &[(&str, String)]) -> Serve {
        let dir = self.stop_keeping_state();
        Serve::start_in(dir, config, env)
    }

    /// Stops gracefully (exit 0 asserted) and hands back the directory, state included.
    pub fn stop_keeping_state(self) -> TempDir {
        let Serve {
            mut proc,
            _dir: dir,
            ..
        } = self;
        proc.signal("TERM");
        let code = proc.wait(Duration::from_secs(60));
        assert_eq!(
            code,
            Some(0),
            "graceful shutdown exits 0:\n{}",
            proc.log_text()
        );
        dir
    }

    /// Waits up to `timeout` for the process to exit by itself: its exit code, its log,
    /// and the directory, state included.
    pub fn wait_exit(self, timeout: Duration) -> (Option<i32>, String, TempDir) {
        let Serve {
            mut proc,
            _dir: dir,
            ..
        } = self;
        let code = proc.wait(timeout);
        (code, proc.log_text(), dir)
    }

    /// Kills the process with SIGKILL and hands back the directory, state included.
    pub fn kill(self) -> TempDir {
        let Serve {
            mut proc,
            _dir: dir,
            ..
        } = self;
        proc.signal("KILL");
        let _ = proc.wait(Duration::from_secs(30));
        dir
    }

    /// The checkpoint files in the state directory, newest first (listed, not opened: a
    /// running process holds the directory's lock).
    pub fn checkpoints(dir: &TempDir) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("state"))
            .expect("the state directory can be listed")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("checkpoint-") && n.ends_with(".bin"))
            })
            .collect();
        // Zero-padded numbers: the names sort as the sequences do.
        files.sort();
        files.reverse();
        files
    }

    /// Waits until a checkpoint newer than `after_ms` (milliseconds since the Unix epoch)
    /// was written.
    pub fn wait_checkpoint_after(&mut self, after_ms: u128, timeout: Duration) {
        let deadline = Instant::now() + services::patient(timeout);
        loop {
            assert!(
                self.proc.running(),
                "paceline serve exited:\n{}",
                self.proc.log_text()
            );
            let m = self.metrics();
            let last = m.sum("paceline_checkpoint_last_success_timestamp_seconds", &[]) * 1e3;
            if last as u128 > after_ms {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no checkpoint within {timeout:?}:\n{}",
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `paceline serve` again in `dir` (the same state directory); each run logs to
    /// its own file.
    pub fn start_in(dir: TempDir, config: &Settings, env: &[(&str, String)]) -> Serve {
        Serve::start_in_with(dir, config, env, &[])
    }

    /// Runs `paceline serve ARGS` in `dir` as [`Serve::start_in`] would, expecting it to
    /// exit by itself; its exit code and output.
    pub fn run_to_exit(
        dir: &TempDir,
        config: &Settings,
        env: &[(&str, String)],
        args: &[&str],
    ) -> (Option<i32>, String) {
        let (mut proc, _) = Serve::spawn(dir, config, env, args, None);
        let code = proc.wait(Duration::from_secs(60));
        (code, proc.log_text())
    }

    /// Starts `paceline serve --config FILE ARGS` in `dir` (`config` written there, the
    /// state in `dir/state`, HTTP on a free loopback port unless `env` gives an address;
    /// its base URL returned), inside network namespace `netns` if given; each run logs to
    /// its own file.
    fn spawn(
        dir: &TempDir,
        config: &Settings,
        env: &[(&str, String)],
        args: &[&str],
        netns: Option<&str>,
    ) -> (Proc, String) {
        let path = dir.join("paceline.toml");
        std::fs::write(&path, toml_of(config)).expect("config file");
        // An address given (a cluster's processes know each other's) is used as it is.
        let addr = env
            .iter()
            .find(|(k, _)| *k == "PACELINE_HTTP_ADDR")
            .map_or_else(|| format!("127.0.0.1:{}", free_port()), |(_, v)| v.clone());
        let mut cmd = match netns {
            // `ip netns exec` enters the namespace and execs the program: same pid.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(paceline_bin());
                c
            }
            None => Command::new(paceline_bin()),
        };
        cmd.arg("serve")
            .arg("--config")
            .arg(&path)
            .args(args)
            .env("PACELINE_HTTP_ADDR", &addr)
            .env("PACELINE_STATE_DIR", dir.join("state"))
            .env(
                "PACELINE_LOG",
                std::env::var("PACELINE_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let runs = std::fs::read_dir(&dir.0)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("serve-"))
                })
                .count()
            })
            .unwrap_or(0);
        let proc = Proc::spawn(cmd, &dir.join(&format!("serve-{runs}.log")));
        (proc, format!("http://{addr}"))
    }

    /// [`Serve::start_in`] with extra arguments (`--rebuild`).
    pub fn start_in_with(
        dir: TempDir,
        config: &Settings,
        env: &[(&str, String)],
        args: &[&str],
    ) -> Serve {
        Serve::launch(dir, config, env, args, None)
    }

    /// [`Serve::start_in`] inside network namespace `netns` (None: this one); `env`
    /// should give `PACELINE_HTTP_ADDR` on an address of that namespace.
    pub fn start_in_netns(
        dir: TempDir,
        config: &Settings,
        env: &[(&str, String)],
        netns: Option<&str>,
    ) -> Serve {
        Serve::launch(dir, config, env, &[], netns)
    }

    /// Spawns and waits for `/healthz`.
    fn launch(
        dir: TempDir,
        config: &Settings,
        env: &[(&str, String)],
        args: &[&str],
        netns: Option<&str>,
    ) -> Serve {
        let (mut proc, http) = Serve::spawn(&dir, config, env, args, netns);
        let url = format!("{http}/healthz");
        let deadline = Instant::now() + services::patient(Duration::from_secs(60));
        while get(&url).is_none_or(|(s, _)| s != 200) {
            assert!(
                proc.running(),
                "paceline serve exited:\n{}",
                proc.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "paceline serve did not come up:\n{}",
                proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Serve {
            proc,
            http,
            _dir: dir,
        }
    }

    /// The current metrics.
    pub fn metrics(&self) -> Metrics {
        let (s, text) = get(&format!("{}/metrics", self.http)).expect("/metrics answers");
        assert_eq!(s, 200);
        Metrics::parse(&text)
    }

    /// Waits up to `secs` until `paceline_events_total` reaches `events`; panics naming
    /// `what` with the count and the service's log when it does not, or when the process
    /// exits meanwhile.
    pub fn wait_counted(&mut self, what: &str, events: usize, secs: u64) {
        let deadline = Instant::now() + services::patient(Duration::from_secs(secs));
        loop {
            assert!(
                self.proc.running(),
                "paceline serve exited waiting for {what}:\n{}",
                self.proc.log_text()
            );
            let counted = self.metrics().sum("paceline_events_total", &[]) as usize;
            if counted >= events {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {secs} s waiting for {what}: counted {counted} of {events} events\n{}\n{}",
                self.metric_lines(&["paceline_events_total", "paceline_source_lag_messages"]),
                self.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The lines of `/metrics` that start with one of `names` (for failure messages).
    pub fn metric_lines(&self, names: &[&str]) -> String {
        let text = get(&format!("{}/metrics", self.http)).map_or_else(String::new, |(_, t)| t);
        text.lines()
            .filter(|l| names.iter().any(|n| l.starts_with(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `/readyz` status code.
    pub fn ready(&self) -> u16 {
        self.readiness().0
    }

    /// `/readyz` status code and body (the reason when not ready); 0 when it does not
    /// answer.
    pub fn readiness(&self) -> (u16, String) {
        get(&format!("{}/readyz", self.http)).unwrap_or_default()
    }

    /// Waits until `events` messages were counted, every stream's watermark reached
    /// `watermarks`, nothing is pending and the points written stopped changing. Returns
    /// the final metrics.
    pub fn wait_drained(
        &mut self,
        events: usize,
        watermarks: [Option<Nanos>; 3],
        timeout: Duration,
    ) -> Metrics {
        let drained = wait_all_drained(
            std::slice::from_mut(self),
            events,
            // The watermark the dataflow closed ticks on, not the one the sources read.
            (watermarks, "paceline_cluster_watermark_timestamp_seconds"),
            timeout,
        );
        drained.into_iter().next().expect("one process")
    }

    /// Stops with SIGTERM and asserts a graceful exit (code 0) and, given a secret, that
    /// neither the log nor `/metrics` ever showed it.
    pub fn stop_cleanly(self, secret: Option<&str>) {
        let metrics_text = get(&format!("{}/metrics", self.http))
            .map(|(_, t)| t)
            .unwrap_or_default();
        let (code, log) = self.stop();
        assert_eq!(code, Some(0), "graceful shutdown exits 0:\n{log}");
        if let Some(secret) = secret {
            assert!(
                !log.contains(secret) && !metrics_text.contains(secret),
                "a secret leaked"
            );
        }
    }

    /// Waits up to `timeout` for the process to exit by itself: its exit code, its log
    /// and the directory, state included, for a restart.
    pub fn exited(mut self, timeout: Duration) -> (Option<i32>, String, TempDir) {
        let code = self.proc.wait(timeout);
        let log = self.proc.log_text();
        (code, log, self._dir)
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.proc.signal("TERM");
        let code = self.proc.wait(Duration::from_secs(60));
        (code, self.proc.log_text())
    }
}

/// The watermark a cluster's processes close ticks on.
pub const CLUSTER_MARK: &str = "paceline_cluster_watermark_timestamp_seconds";

/// Waits until each restarted process of a cluster logs where it starts, and asserts it
/// resumes from a checkpoint every process holds (not a refusal, not the beginning).
pub fn assert_cluster_resumed(procs: &[Serve]) {
    for p in procs {
        eventually("the restart logs where it resumes", 60, || {
            let log = p.proc.log_text();
            log.contains("resumes from the newest checkpoint every process holds")
                || log.contains("no checkpoint")
                || log.contains("starting from the topics' beginning")
        });
        assert!(
            p.proc
                .log_text()
                .contains("resumes from the newest checkpoint every process holds"),
            "a restart resumes from a checkpoint every process holds:\n{}",
            p.proc.log_text()
        );
    }
}

/// Waits until a cluster's `procs` drained `data`, then asserts that `actual` (read back
/// once drained) is equivalent to replay's output; `what` names the moment in the message.
pub fn assert_cluster_equals_replay(
    procs: &mut [Serve],
    config: &Settings,
    data: &Dataset,
    actual: impl FnOnce() -> Points,
    what: &str,
) {
    let m = wait_all_drained(
        procs,
        0,
        (data.final_watermarks(config), CLUSTER_MARK),
        Duration::from_secs(300),
    );
    let (expected, _) = data.replay(config);
    let actual = actual();
    let diff = compare(config, data, &expected, &actual, reach(&m[0]));
    assert!(
        diff.is_empty(),
        "{what}: the database differs from replay (left):\n{}",
        explain(&diff, &expected, &actual)
    );
}

/// Waits until `procs` together counted `events` messages, every stream's watermark
/// (`marks.1`, the metric: a process's own or the cluster's) reached `marks.0` on each,
/// nothing is pending and the points written stopped changing. Returns each one's final
/// metrics; fails with every log when a process exits or `timeout` passes.
pub fn wait_all_drained(
    procs: &mut [Serve],
    events: usize,
    marks: ([Option<Nanos>; 3], &str),
    timeout: Duration,
) -> Vec<Metrics> {
    let (watermarks, metric) = marks;
    let deadline = Instant::now() + services::patient(timeout);
    let logs = |procs: &mut [Serve]| {
        procs
            .iter()
            .map(|p| p.proc.log_text())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let mut last_written = -1.0;
    loop {
        if procs.iter_mut().any(|p| !p.proc.running()) {
            panic!("paceline serve exited:\n{}", logs(procs));
        }
        let m: Vec<Metrics> = procs.iter().map(Serve::metrics).collect();
        let total = |name: &str| m.iter().map(|m| m.sum(name, &[])).sum::<f64>();
        let counted = total("paceline_events_total") as usize;
        let marks_ok = m.iter().all(|m| {
            Stream::ALL.iter().all(|s| {
                watermarks[s.index()]
                    .is_none_or(|w| m.sum(metric, &[("stream", s.as_str())]) * 1e9 >= w as f64)
            })
        });
        let pending = total("paceline_sink_pending_points");
        let written = total("paceline_sink_points_written_total");
        // Every point the dataflow computed is in the database: the watermark alone can be
        // ahead of the ticks it closes on a loaded machine.
        let handed = total("paceline_dataflow_points_total");
        if counted >= events
            && marks_ok
            && pending == 0.0
            && written == handed
            && written == last_written
            && written > 0.0
        {
            return m;
        }
        last_written = written;
        assert!(
            Instant::now() < deadline,
            "not drained after {timeout:?}: counted {counted}/{events}, watermarks ok {marks_ok}, pending {pending}, written {written} of {handed}\n{}",
            logs(procs)
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
}

/// Nothing lost, nothing doubled: the accepted and duplicate counts of every stream equal
/// replay's summary.
pub fn assert_no_loss(m: &Metrics, summary: &ReplaySummary) {
    for s in Stream::ALL {
        let st = s.as_str();
        let count = |outcome| {
            m.sum(
                "paceline_events_total",
                &[("stream", st), ("outcome", outcome)],
            ) as u64
        };
        assert_eq!(
            count("accepted"),
            summary.accepted[s.index()],
            "{st} accepted (too_late {}, rejected {})",
            m.sum(
                "paceline_events_rejected_total",
                &[("stream", st), ("reason", "too_late")]
            ),
            count("rejected")
        );
        assert_eq!(
            count("duplicate"),
            summary.duplicates[s.index()],
            "{st} duplicates"
        );
    }
}

/// Waits until `serve` has drained `data` (the clock rule off), then asserts nothing was
/// lost or doubled and that InfluxDB 1.x database `db` holds an output equivalent to
/// `paceline replay` of the same events.
pub fn drain_and_compare_influx1(
    serve: &mut Serve,
    data: &Dataset,
    config: &Settings,
    influx: &services::Influx1,
    db: &str,
) {
    let (expected, summary) = data.replay(config);
    let m = serve.wait_drained(
        data.lines.len(),
        data.final_watermarks(config),
        Duration::from_secs(300),
    );
    assert_no_loss(&m, &summary);
    let actual = readback::influx1(influx, db, &config.indicators.measurement);
    let diff = compare(config, data, &expected, &actual, reach(&m));
    if diff.is_empty() {
        return;
    }
    // What tells a lost write from a wrong computation: the points either side holds
    // around each difference, whether a second read a little later still differs, and
    // what the service said about its writes.
    std::thread::sleep(Duration::from_secs(3));
    let again = readback::influx1(influx, db, &config.indicators.measurement);
    let still = compare(config, data, &expected, &again, reach(&m));
    panic!(
        "output differs from replay (left replay, right the database):\n{}\n\nread again 3 s later: {}\n\nthe service's warnings:\n{}",
        explain(&diff, &expected, &actual),
        if still == diff {
            "the same".to_string()
        } else {
            explain(&still, &expected, &again)
        },
        warnings(&serve.proc.log_text()),
    );
}

/// The log's warning and error lines, the last 60 of them.
fn warnings(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// The configuration as TOML.
pub fn toml_of(config: &Settings) -> String {
    // The model crate's types are serde; the tests crate has no toml dependency of its own,
    // so go through the round trip the model offers.
    paceline_runtime::settings::to_toml(config)
}

/// Compares a served output with replay's over the ticks both reached: from each series'
/// first tick to the earlier of replay's last tick and the served stream's `reach`
/// (its final watermark).
pub fn compare(
    config: &Settings,
    data: &Dataset,
    expected: &Points,
    actual: &Points,
    reach: [Nanos; 3],
) -> Vec<Difference> {
    let span = data.span();
    let global_max = span
        .iter()
        .flatten()
        .map(|(_, b)| *b)
        .max()
        .expect("events");
    paceline_oracle::equiv::differences(
        expected,
        actual,
        |k: &SeriesKey| config.cadence(k.indicator),
        |k: &SeriesKey| {
            let c = config.cadence(k.indicator);
            let s = k.indicator.stream().index();
            span[s].map(|(min, _)| {
                let end = tick_after(global_max, c).min(tick_floor(reach[s] - 1, c));
                (tick_after(min, c), end)
            })
        },
        10,
    )
}

/// Where each stream's ticks are closed (the watermark the dataflow applied, over every
/// process of a cluster), from the metrics.
pub fn reach(m: &Metrics) -> [Nanos; 3] {
    Stream::ALL.map(|s| {
        (m.sum(
            "paceline_cluster_watermark_timestamp_seconds",
            &[("stream", s.as_str())],
        ) * 1e9) as Nanos
    })
}

/// Waits for `ready` to hold, naming `what`.
pub fn eventually(what: &str, secs: u64, ready: impl FnMut() -> bool) {
    wait_for(what, Duration::from_secs(secs), ready)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A named scenario for [`run_side_by_side`].
pub type Scenario<'a> = (&'static str, Box<dyn FnOnce() + Send + 'a>);

/// Runs scenarios side by side on shared services; fails naming every scenario that
/// failed (their own messages are above). `PACELINE_TEST_SCENARIOS` (words, comma-separated)
/// keeps only the scenarios whose names contain one of them, for a developer's run.
pub fn run_side_by_side(scenarios: Vec<Scenario<'_>>) {
    let chosen = std::env::var("PACELINE_TEST_SCENARIOS").unwrap_or_default();
    let chosen: Vec<&str> = chosen.split(',').filter(|w| !w.is_empty()).collect();
    let failed: Vec<&str> = std::thread::scope(|s| {
        let running: Vec<_> = scenarios
            .into_iter()
            .filter(|(name, _)| chosen.is_empty() || chosen.iter().any(|w| name.contains(w)))
            .map(|(name, f)| (name, s.spawn(f)))
            .collect();
        running
            .into_iter()
            .filter_map(|(name, h)| h.join().is_err().then_some(name))
            .collect()
    });
    assert!(
        failed.is_empty(),
        "scenarios failed (messages above): {failed:?}"
    );
}
