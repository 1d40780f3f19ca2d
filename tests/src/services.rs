//! Real services for the integration tests, each on 127.0.0.1 with free ports, in a
//! temporary directory, waited for with a deadline and killed on drop (every exit path,
//! panics included): the tansu Kafka broker (SQLite storage), InfluxDB 1.x and
//! VictoriaMetrics. Each can be stopped and started again on the same port and storage,
//! for the outage tests.

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use paceline_testkit::{free_port, patient};

/// Waits for `ready` up to `timeout`, polling; panics naming `what` on timeout.
/// The timeout is scaled by `PACELINE_TEST_PATIENCE` ([`patient`]).
pub fn wait_for(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let timeout = patient(timeout);
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A fresh temporary directory under the system's, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `paceline-test-<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("paceline-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    /// A path inside.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PACELINE_TEST_KEEP").is_some() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed on drop, its output in a log file.
pub struct Proc {
    child: Child,
    /// The log file (stdout and stderr).
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `KILL`, ...).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Freezes the process (SIGSTOP) and returns once every one of its threads is stopped.
    /// `kill` returns before that: the stop is taken by one thread, and on a loaded machine
    /// another (an HTTP worker woken by a request) may still answer in between.
    pub fn freeze(&self) {
        self.signal("STOP");
        let deadline = Instant::now() + patient(Duration::from_secs(10));
        while !self.all_threads_stopped() {
            assert!(
                Instant::now() < deadline,
                "process {} not stopped 10 s after SIGSTOP",
                self.pid()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// Whether each thread's state in `/proc/<pid>/task/*/stat` is `T` (stopped).
    fn all_threads_stopped(&self) -> bool {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return false;
        };
        tasks.flatten().all(|task| {
            std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
                // The state follows the command name's closing parenthesis, which may
                // itself hold spaces or parentheses.
                stat.rfind(')')
                    .and_then(|at| stat[at + 1..].split_whitespace().next())
                    .is_some_and(|state| state == "T" || state == "t")
            })
        })
    }

    /// Waits for the process to exit, up to `timeout`; its exit code (None: killed by a
    /// signal or still running, then killed).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + patient(timeout);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for `ready`; fails at once, with the log, if the process
    /// exits meanwhile, and with the log on timeout.
    pub fn wait_ready(&mut self, what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + patient(timeout);
        while !ready() {
            assert!(
                self.running(),
                "{what}: the process exited:\n{}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "{what}: not after {timeout:?}:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_open(host: &str, port: u16) -> bool {
    let Ok(ip) = host.parse::<std::net::IpAddr>() else {
        return false;
    };
    TcpStream::connect_timeout(
        &std::net::SocketAddr::new(ip, port),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A blocking HTTP client with a short timeout.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// GET `url`: status and body, or None when unreachable.
pub fn get(url: &str) -> Option<(u16, String)> {
    let r = http().get(url).send().ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().unwrap_or_default()))
}

/// The tansu broker with SQLite storage.
pub struct Tansu {
    dir: TempDir,
    /// The address it listens on (loopback unless a test needs another network).
    host: String,
    /// The port.
    pub port: u16,
    proc: Option<Proc>,
}

impl Tansu {
    /// Starts a broker on loopback and waits until it answers metadata requests.
    pub fn start() -> Tansu {
        Tansu::start_on("127.0.0.1")
    }

    /// Starts a broker listening on (and advertising) `host`.
    pub fn start_on(host: &str) -> Tansu {
        let mut t = Tansu {
            dir: TempDir::new("tansu"),
            host: host.to_string(),
            port: free_port(),
            proc: None,
        };
        t.up();
        t
    }

    /// `host:port` for clients.
    pub fn brokers(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Starts the broker process on the same port and storage.
    pub fn up(&mut self) {
        let url = format!("tcp://{}:{}", self.host, self.port);
        let mut cmd = Command::new("tansu");
        cmd.arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            // tansu resolves the SQLite path against its working directory.
            .arg("sqlite://tansu.db")
            .current_dir(&self.dir.0)
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn(cmd, &self.dir.join("tansu.log"));
        let (host, port) = (self.host.clone(), self.port);
        proc.wait_ready("tansu to listen", Duration::from_secs(90), || {
            port_open(&host, port)
        });
        let brokers = self.brokers();
        proc.wait_ready("tansu to answer metadata", Duration::from_secs(90), || {
            crate::kafka::metadata_ok(&brokers)
        });
        self.proc = Some(proc);
    }

    /// Stops the broker (SIGKILL, as a crash would).
    pub fn down(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("KILL");
            p.wait(Duration::from_secs(10));
        }
    }

    /// Adds partitions to `topic` until it has `count`. tansu 0.6 does not implement
    /// Kafka's CreatePartitions request, so this does in its SQLite storage what the
    /// request would: the topic's partition count, a row per new partition and its
    /// watermark (python3's sqlite3, while the broker runs; the broker reads the storage
    /// on every metadata request).
    pub fn add_partitions(&self, topic: &str, count: u32) {
        let script = r#"
import sqlite3, sys
db, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(db, timeout=30)
(tid, have) = c.execute("select id, partitions from topic where name = ?", (topic,)).fetchone()
c.execute("update topic set partitions = ? where id = ?", (count, tid))
for p in range(have, count):
    row = c.execute("insert into topition (topic, partition) values (?, ?)", (tid, p)).lastrowid
    c.execute("insert into watermark (topition) values (?)", (row,))
c.commit()
"#;
        self.edit_storage(script, &[topic, &count.to_string()], "adding partitions");
    }

    /// Deletes the messages of `topic`'s `partition` below `offset`, as retention would
    /// (tansu 0.6 applies no retention of its own): the records go and the partition's
    /// first offset moves up to `offset`.
    pub fn expire(&self, topic: &str, partition: i32, offset: i64) {
        let script = r#"
import sqlite3, sys
db, topic, partition, offset = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = sqlite3.connect(db, timeout=30)
(tp,) = c.execute("select tp.id from topition tp join topic t on tp.topic = t.id where t.name = ? and tp.partition = ?", (topic, partition)).fetchone()
c.execute("delete from header where topition = ? and offset_id < ?", (tp, offset))
c.execute("delete from record where topition = ? and offset_id < ?", (tp, offset))
c.execute("update watermark set low = ? where topition = ?", (offset, tp))
c.commit()
"#;
        let args = [topic, &partition.to_string(), &offset.to_string()];
        self.edit_storage(script, &args, "expiring records");
    }

    /// Runs a python3 `script` on the broker's SQLite storage, its path then `args` as
    /// arguments.
    fn edit_storage(&self, script: &str, args: &[&str], what: &str) {
        let status = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(self.dir.join("tansu.db"))
            .args(args)
            .status()
            .expect("python3");
        assert!(
            status.success(),
            "{what} in tansu's storage failed ({args:?})"
        );
    }

    /// Creates a topic with the CLI.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = Command::new("tansu")
            .arg("topic")
            .arg("create")
            .arg("--broker")
            .arg(format!("tcp://{}:{}", self.host, self.port))
            .arg("--partitions")
            .arg(partitions.to_string())
            .arg(name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("tansu topic create");
        assert!(status.success(), "creating topic {name} failed");
    }

    /// Whether the broker still runs, and the last lines of its log: what a failed test
    /// needs to tell a broker that died or refused from a fault of the service.
    fn state(&mut self) -> String {
        let Some(proc) = self.proc.as_mut() else {
            return "tansu: stopped by the test".to_string();
        };
        let running = if proc.running() { "running" } else { "exited" };
        let log = proc.log_text();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "tansu on port {}: {running}; the end of its log:\n{tail}",
            self.port
        )
    }
}

impl Drop for Tansu {
    /// On a failing test, says whether the broker still ran and what it logged last
    /// (its log is in a temporary directory removed with it).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.state());
        }
    }
}

/// InfluxDB 1.x (Debian's `influxd`).
pub struct Influx1 {
    dir: TempDir,
    /// The address its HTTP API listens on.
    host: String,
    /// HTTP port.
    pub port: u16,
    proc: Option<Proc>,
    /// The administrator's user and password, when authentication is on.
    admin: Option<(String, String)>,
}

/// The administrator of an [`Influx1`] with authentication on (the tests' own queries).
const INFLUX_ADMIN: (&str, &str) = ("admin", "admin-pw-3b9e");

impl Influx1 {
    /// Starts it on loopback and waits for `/ping`.
    pub fn start() -> Influx1 {
        Influx1::start_on("127.0.0.1")
    }

    /// Starts it with its HTTP API on `host`.
    pub fn start_on(host: &str) -> Influx1 {
        Influx1::start_with(host, false)
    }

    /// Starts it on loopback with authentication on: every request needs a user; the
    /// tests' own queries go as an administrator, created first.
    pub fn start_with_auth() -> Influx1 {
        let mut i = Influx1::start_with("127.0.0.1", true);
        // With authentication on and no user yet, InfluxDB 1.x takes exactly this query
        // unauthenticated.
        let (user, password) = INFLUX_ADMIN;
        i.query(
            "",
            &format!("CREATE USER {user} WITH PASSWORD '{password}' WITH ALL PRIVILEGES"),
        );
        i.admin = Some((user.to_string(), password.to_string()));
        i
    }

    fn start_with(host: &str, auth: bool) -> Influx1 {
        let dir = TempDir::new("influx1");
        let port = free_port();
        let rpc = free_port();
        let d = dir.0.display();
        let conf = format!(
            "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n[meta]\n  dir = \"{d}/meta\"\n[data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n[http]\n  bind-address = \"{host}:{port}\"\n  auth-enabled = {auth}\n  log-enabled = false\n  max-row-limit = 0\n[monitor]\n  store-enabled = false\n"
        );
        std::fs::write(dir.join("influxdb.conf"), conf).expect("influx config");
        let mut i = Influx1 {
            dir,
            host: host.to_string(),
            port,
            proc: None,
            admin: None,
        };
        i.up();
        i
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }

    /// Starts the process (same port and storage).
    pub fn up(&mut self) {
        let mut cmd = Command::new("influxd");
        cmd.arg("run")
            .arg("-config")
            .arg(self.dir.join("influxdb.conf"));
        let mut proc = Proc::spawn(cmd, &self.dir.join("influxd.log"));
        let url = format!("{}/ping", self.url());
        proc.wait_ready("influxd /ping", Duration::from_secs(90), || {
            get(&url).is_some_and(|(s, _)| s == 204)
        });
        self.proc = Some(proc);
    }

    /// Stops the process.
    pub fn down(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal("TERM");
            if p.wait(Duration::from_secs(20)).is_none() {
                p.signal("KILL");
            }
        }
    }

    /// Freezes the process (SIGSTOP): connections are accepted, writes hang unanswered.
    pub fn pause(&self) {
        if let Some(p) = &self.proc {
            p.freeze();
        }
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) {
        if let Some(p) = &self.proc {
            p.thaw();
        }
    }

    /// Runs an InfluxQL statement; the JSON answer.
    pub fn query(&self, db: &str, q: &str) -> serde_json::Value {
        let mut r = http().post(format!("{}/query", self.url())).query(&[
            ("db", db),
            ("q", q),
            ("epoch", "ns"),
        ]);
        if let Some((user, password)) = &self.admin {
            r = r.basic_auth(user, Some(password));
        }
        let answer: serde_json::Value = r
            .send()
            .expect("influx query")
            .json()
            .expect("influx answer is JSON");
        assert!(answer.get("error").is_none(), "{q}: {answer}");
        answer
    }
}

/// VictoriaMetrics (Debian's `victoria-metrics`), with a retention long enough for
/// historical data.
pub struct Victoria {
    dir: TempDir,
    /// HTTP port.
    pub port: u16,
    proc: Option<Proc>,
}

impl Victoria {
    /// Starts it and waits for `/health`.
    pub fn start() -> Victoria {
        let mut v = Victoria {
            dir: TempDir::new("victoria"),
            port: free_port(),
            proc: None,
        };
        v.up();
        v
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process.
    pub fn up(&mut self) {
        let mut cmd = Command::new("victoria-metrics");
        cmd.arg(format!(
            "-storageDataPath={}",
            self.dir.join("data").display()
        ))
        .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
        .arg("-retentionPeriod=100y")
        .arg("-loggerLevel=ERROR");
        let mut proc = Proc::spawn(cmd, &self.dir.join("vm.log"));
        let url = format!("{}/health", self.url());
        proc.wait_ready("victoria-metrics /health", Duration::from_secs(90), || {
            get(&url).is_some_and(|(s, _)| s == 200)
        });
        self.proc = Some(proc);
    }
}

/// Prometheus (Debian's `prometheus`) scraping one target every second, evaluating
/// `rule_files` every second and sending alerts to `alertmanager` (an address), if any.
pub struct Prometheus {
    _dir: TempDir,
    /// HTTP port.
    pub port: u16,
    _proc: Proc,
}

impl Prometheus {
    /// Starts it and waits for `/-/ready`.
    pub fn start(target: &str, rule_files: &[PathBuf], alertmanager: Option<&str>) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let port = free_port();
        let rules: Vec<String> = rule_files
            .iter()
            .map(|p| format!("  - {}\n", p.display()))
            .collect();
        let alerting = alertmanager.map_or(String::new(), |am| {
            format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am}']\n"
            )
        });
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{}{alerting}scrape_configs:\n  - job_name: paceline\n    static_configs:\n      - targets: ['{target}']\n",
            rules.concat()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus config");
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-lifecycle");
        let mut proc = Proc::spawn(cmd, &dir.join("prometheus.log"));
        let url = format!("http://127.0.0.1:{port}/-/ready");
        proc.wait_ready("prometheus /-/ready", Duration::from_secs(90), || {
            get(&url).is_some_and(|(s, _)| s == 200)
        });
        Prometheus {
            _dir: dir,
            port,
            _proc: proc,
        }
    }

    /// Runs an instant PromQL query; the `data.result` array.
    pub fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let r = http()
            .get(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .query(&[("query", q)])
            .send()
            .expect("prometheus query");
        let v: serde_json::Value = r.json().expect("prometheus answers JSON");
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// Alertmanager (Debian's `prometheus-alertmanager`) with the given configuration file,
/// clustering off.
pub struct Alertmanager {
    _dir: TempDir,
    /// HTTP port.
    pub port: u16,
    _proc: Proc,
}

impl Influx1 {
    /// Writes line protocol (nanosecond timestamps) into database `db`, in batches.
    pub fn write_lines(&self, db: &str, text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        for chunk in lines.chunks(5000) {
            let r = http()
                .post(format!("{}/write", self.url()))
                .query(&[("db", db), ("precision", "ns")])
                .body(chunk.join("\n"))
                .send()
                .expect("write");
            assert_eq!(r.status().as_u16(), 204, "{}", r.text().unwrap_or_default());
        }
    }
}

/// Headless Chromium (`PACELINE_CHROMIUM`, else Debian's `chromium`) with the flags a
/// closed machine needs, its profile in `profile`; add the action and the address.
pub fn chromium(profile: &Path) -> Command {
    let mut cmd =
        Command::new(std::env::var("PACELINE_CHROMIUM").unwrap_or_else(|_| "chromium".into()));
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

impl Prometheus {
    /// Reloads its configuration and rule files (after a test rewrote a rule file).
    pub fn reload(&self) {
        let r = http()
            .post(format!("http://127.0.0.1:{}/-/reload", self.port))
            .send()
            .expect("prometheus reload");
        assert!(r.status().is_success(), "reload: {}", r.status());
    }

    /// How many times each rule group has been evaluated, from its own `/metrics`.
    fn rule_group_iterations(&self) -> BTreeMap<String, f64> {
        let text = get(&format!("http://127.0.0.1:{}/metrics", self.port))
            .map(|(_, t)| t)
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix("prometheus_rule_group_iterations_total{"))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(labels, n)| Some((labels.to_string(), n.parse().ok()?)))
            .collect()
    }

    /// Waits until every rule group has been evaluated `rounds` more times: what could
    /// fire on the data as it is has fired by then.
    pub fn wait_rule_rounds(&self, rounds: u32) {
        let start = self.rule_group_iterations();
        assert!(!start.is_empty(), "Prometheus evaluates rule groups");
        wait_for(
            &format!("{rounds} more evaluations of every rule group"),
            Duration::from_secs(60 + 5 * u64::from(rounds)),
            || {
                let now = self.rule_group_iterations();
                start
                    .iter()
                    .all(|(g, n)| now.get(g).is_some_and(|m| *m >= n + f64::from(rounds)))
            },
        );
    }
}

impl Alertmanager {
    /// Every alert it holds, as `/api/v2/alerts` answers (each with its `status.state`:
    /// `active`, `suppressed`, ...).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let r = http()
            .get(format!("http://127.0.0.1:{}/api/v2/alerts", self.port))
            .send()
            .expect("alertmanager alerts");
        r.json().expect("alertmanager answers JSON")
    }

    /// Starts it with `config` (YAML text) and waits for `/-/ready`.
    pub fn start(config: &str) -> Alertmanager {
        let dir = TempDir::new("alertmanager");
        let port = free_port();
        std::fs::write(dir.join("alertmanager.yml"), config).expect("alertmanager config");
        let mut cmd = Command::new("prometheus-alertmanager");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=");
        let mut proc = Proc::spawn(cmd, &dir.join("alertmanager.log"));
        let url = format!("http://127.0.0.1:{port}/-/ready");
        proc.wait_ready("alertmanager /-/ready", Duration::from_secs(90), || {
            get(&url).is_some_and(|(s, _)| s == 200)
        });
        Alertmanager {
            _dir: dir,
            port,
            _proc: proc,
        }
    }
}

/// An HTTP endpoint that keeps every request body posted to it (an Alertmanager webhook
/// receiver) and answers 200. Its thread ends with the test process.
pub struct Webhook {
    /// Its port.
    pub port: u16,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Webhook {
    /// Listens on a free port.
    pub fn start() -> Webhook {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").expect("webhook listener");
        let port = listener.local_addr().expect("address").port();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(&stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(mut b) = kept.lock() {
                        b.push(String::from_utf8_lossy(&body).into_owned());
                    }
                }
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Webhook { port, bodies }
    }

    /// Every body received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

/// Makes, in `dir`, a private CA (`ca.pem`, `ca.key`) and a certificate it signs for
/// `localhost` and 127.0.0.1 (`server.pem`, `server.key`), with the `openssl` command.
pub fn make_pki(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=paceline test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

/// A TLS-terminating proxy (Debian's `stunnel`) in front of a loopback port, with a
/// certificate for `localhost` signed by a CA this test made: a database behind a private
/// CA, as districts run them.
pub struct TlsProxy {
    dir: TempDir,
    /// The TLS port.
    pub port: u16,
    _proc: Proc,
}

impl TlsProxy {
    /// Makes the CA and the server's certificate, starts the proxy to `target` and waits
    /// until it accepts connections.
    pub fn start(target: u16) -> TlsProxy {
        let dir = TempDir::new("tls-proxy");
        make_pki(&dir.0);
        let port = free_port();
        let d = dir.0.display();
        std::fs::write(
            dir.join("stunnel.conf"),
            format!(
                "foreground = yes\npid =\n[db]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{target}\ncert = {d}/server.pem\nkey = {d}/server.key\n"
            ),
        )
        .expect("stunnel config");
        let mut cmd = Command::new("stunnel");
        cmd.arg(dir.join("stunnel.conf"));
        let mut proc = Proc::spawn(cmd, &dir.join("stunnel.log"));
        proc.wait_ready("stunnel to listen", Duration::from_secs(30), || {
            port_open("127.0.0.1", port)
        });
        TlsProxy {
            dir,
            port,
            _proc: proc,
        }
    }

    /// The CA's certificate (PEM), what a client must trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}
