//! The `paceline` binary: parses the command line, loads configuration and calls the
//! runtime. Everything else lives in the crates under `crates/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use paceline_model::config::{Config, LoadError};
use paceline_runtime::settings::{Secrets, Settings};

// Events are allocated on the thread that decodes them and freed on the dataflow worker
// that applies them: glibc's per-arena locks made that hand-over a contention point (seen
// in the replay profile); mimalloc frees across threads without a shared lock. Built
// without its transparent huge pages (Cargo.toml, `no_thp`): a fresh 2 MiB page zeroed on
// first touch cost up to a third of a short replay's CPU, varying run to run, and doubled
// the resident memory; with 4 KiB pages the median is the same or better and the slowest
// run much faster (README, "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--version`: the version and the git revision it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PACELINE_REVISION"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "paceline",
    version = VERSION,
    about = "Tracks a district's digital economy against its plan, live."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start here: simulates the district, runs the pipeline on it in-process, prints the
    /// planned indicators against the plan's pace and serves the status page and /metrics
    /// on a local address until Ctrl-C. Needs no services.
    Demo {
        /// Generator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Generator scale: 1 is about a million events.
        #[arg(long, default_value_t = DEMO_SCALE)]
        scale: f64,
        /// Where to serve the status page and /metrics.
        #[arg(long = "http-addr", default_value = "127.0.0.1:9898")]
        http_addr: String,
        /// Print the table and exit (for scripts).
        #[arg(long = "until-done")]
        until_done: bool,
        /// Configuration file (default: the shipped defaults; the plan comes from it).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Timely worker threads (default: `dataflow.workers` of the configuration).
        #[arg(long)]
        workers: Option<usize>,
        /// The table's language, and the status page's unless its address names one
        /// (default: the table in English, the page in the browser's language).
        #[arg(long, value_enum)]
        lang: Option<LangArg>,
    },
    /// Replays JSON Lines event files into a line-protocol file and a dead-letter file.
    Replay {
        /// Input files (any mix of streams), read as one sequence in the order given.
        #[arg(long = "input", required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// The line-protocol output file.
        #[arg(long)]
        output: PathBuf,
        /// The dead-letter file (JSON Lines).
        #[arg(long = "dead-letters")]
        dead_letters: PathBuf,
        /// Configuration file (default: the shipped defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Timely worker threads (default: `dataflow.workers` of the configuration).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Writes a deterministic simulated district as JSON Lines.
    Generate {
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Scale: 1 is about a million events.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Runs the service: Kafka in, InfluxDB out, metrics and HTTP endpoints, until SIGTERM
    /// or SIGINT. Environment overrides (PACELINE_KAFKA_BROKERS, PACELINE_INFLUX_*, ...)
    /// apply on top of the file; without a file, on top of the defaults.
    Serve {
        /// Configuration file (default: the shipped defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Discard the checkpoints in `service.state_dir` and rebuild the state from the
        /// topics' beginning (after changing cadences, horizons, the worker count, ...).
        #[arg(long)]
        rebuild: bool,
    },
    /// Publishes JSON Lines events to the three topics (each to its stream's topic, keyed
    /// by its entity), to feed `serve`. Kafka settings and secrets as for `serve`.
    Produce {
        /// Input files, published in the order given.
        #[arg(long = "input", required = true, num_args = 1..)]
        inputs: Vec<PathBuf>,
        /// Configuration file (default: the shipped defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Events per second at most (default: as fast as the brokers take them).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Checks a configuration file as `serve` would load it (with the `PACELINE_*`
    /// environment overrides and the secret rules) and reports every error with its key.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
    /// Prints the effective configuration (file or defaults, then the environment) as TOML;
    /// secrets are never printed, only whether each is set.
    PrintConfig {
        /// Configuration file (default: the shipped defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Writes the plan's briefing for leadership: a printable HTML page (A4, one or two
    /// pages) of every planned goal as the database holds it at `--as-of`, compared with
    /// `--since`, read with the `[influx]` settings and secrets `serve` uses.
    Report {
        /// The briefing's date: `YYYY-MM-DD` (midnight, +08:00) or an RFC 3339 instant.
        #[arg(long = "as-of")]
        as_of: String,
        /// The earlier date compared with (default: 30 days before `--as-of`).
        #[arg(long)]
        since: Option<String>,
        /// Its language (default English).
        #[arg(long, value_enum)]
        lang: Option<LangArg>,
        /// The HTML file to write.
        #[arg(long)]
        out: PathBuf,
        /// Configuration file (default: the shipped defaults, then the environment).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Asks a running service's /healthz (for a container's HEALTHCHECK): exit 0 when it
    /// answers 200, 1 with the reason otherwise. The address is `--addr`, else
    /// `service.http_addr` of the configuration (and `PACELINE_HTTP_ADDR`), a wildcard
    /// address asked on loopback.
    Healthcheck {
        /// The service's HTTP address.
        #[arg(long)]
        addr: Option<String>,
        /// Configuration file (default: the shipped defaults, then the environment).
        #[arg(long)]
        config: Option<PathBuf>,
        /// How long to wait for the answer, in seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
        /// Ask /readyz instead: ready to take events (for a feeder that waits for it).
        #[arg(long)]
        ready: bool,
    },
    /// Writes the "Plan pace" Grafana dashboard of the configuration's plan, with titles,
    /// units and value mappings from the catalogue of names: `plan-pace-en.json` and
    /// `plan-pace-zh.json` (or the one `--lang` names) in `--out`.
    Dashboards {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// One language only (default: both).
        #[arg(long, value_enum)]
        lang: Option<LangArg>,
        /// Configuration file (default: the shipped defaults; the plan comes from it).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// The demo's default scale: the district as designed (about a million events, some
/// planned indicators met and some behind), simulated in seconds.
const DEMO_SCALE: f64 = 1.0;

fn load(path: Option<&PathBuf>) -> Result<Config, LoadError> {
    match path {
        Some(p) => Config::load(&p.display().to_string()),
        None => Ok(Config::default()),
    }
}

/// A panic on any thread (a source, the coordinator, a dataflow worker, the sink, HTTP)
/// stops the process with exit code 1 and the panic's message: a half-dead service behind
/// green probes is worse than a restart from the last checkpoint.
fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        // timely's connection threads panic when a peer process goes away.
        if let Some(peer) = paceline_runtime::serve::peer_of_thread(name) {
            tracing::error!(peer = %peer, panic = %info, "lost the connection to a cluster process; stopping");
            exit_saying(&format!("paceline: lost the connection to cluster {peer}; stopping with exit code 1 (restarted, the cluster resumes from its last complete checkpoint)"));
        }
        tracing::error!(thread = name, panic = %info, "a thread panicked; stopping");
        exit_saying(&format!(
            "paceline: a thread ({name}) panicked; stopping with exit code 1"
        ));
    }));
}

/// Exits with code 1 after `line`, written whole by the first panicking thread only.
/// Several threads panic at once when a peer goes (its send and receive threads): each
/// prints its panic and backtrace in pieces, and an `eprintln!` of the last words would
/// be cut by theirs. One `write` of the whole line to the unbuffered stderr is not.
fn exit_saying(line: &str) -> ! {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    static SAID: AtomicBool = AtomicBool::new(false);
    if SAID.swap(true, Ordering::SeqCst) {
        // Another thread is saying it and exiting: this one waits for the exit.
        loop {
            std::thread::park();
        }
    }
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    std::process::exit(1);
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PACELINE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only on a terminal: a log file or a container's log collector would keep
    // the escape codes (and a search for `key=value` would miss them).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("PACELINE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A future that resolves on SIGTERM or SIGINT. The handlers are installed now (inside the
/// runtime), so a signal that arrives before the future is first polled is not lost.
fn shutdown_signal(
    runtime: &tokio::runtime::Runtime,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let _entered = runtime.enter();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// The configuration (file or defaults, then `PACELINE_*` overrides) and the secrets from
/// the environment, as `serve` and `produce` take them; errors are reported, exit 2.
fn load_deployment(config: Option<PathBuf>) -> Result<(Settings, Secrets), ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let path = config.map(|p| p.display().to_string());
    let config = Settings::load_with_env(path.as_deref(), &env).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    let secrets = Secrets::from_env(&env).map_err(|errors| {
        for e in errors {
            eprintln!("{e}");
        }
        ExitCode::from(2)
    })?;
    Ok((config, secrets))
}

/// `paceline healthcheck`: configuration errors exit 2, an unhealthy or absent service 1.
fn healthcheck(
    addr: Option<String>,
    config: Option<PathBuf>,
    timeout: u64,
    ready: bool,
) -> ExitCode {
    use paceline_runtime::healthcheck::{check, target_of, Probe};
    let probe = if ready { Probe::Ready } else { Probe::Alive };
    let listen = match addr {
        Some(a) => a,
        None => {
            let env = |k: &str| std::env::var(k).ok();
            let path = config.map(|p| p.display().to_string());
            match Settings::load_with_env(path.as_deref(), &env) {
                Ok(c) => c.service.http_addr,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let result =
        target_of(&listen).and_then(|a| check(a, probe, std::time::Duration::from_secs(timeout)));
    match result {
        Ok(body) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paceline healthcheck: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

/// Neither a configuration file that sets a key nor any `PACELINE_*` variable: the
/// service runs on its defaults alone, which a newcomer should be told.
fn names_nothing(config: Option<&std::path::Path>) -> bool {
    let file_sets_nothing = config.is_none_or(|p| {
        std::fs::read_to_string(p).is_ok_and(|text| {
            text.parse::<toml::Table>()
                .is_ok_and(|table| table.is_empty())
        })
    });
    // PACELINE_LOG sets the log's level, not the service.
    let settings_var = |k: &std::ffi::OsStr| {
        let k = k.to_string_lossy();
        k.starts_with("PACELINE_") && k != "PACELINE_LOG"
    };
    file_sets_nothing && !std::env::vars_os().any(|(k, _)| settings_var(&k))
}

/// `check-config`: the file with the environment's overrides, and the secrets' rules; every
/// error of both is listed before the exit code 2.
fn check_config(file: &std::path::Path) -> ExitCode {
    let env = |k: &str| std::env::var(k).ok();
    let path = file.display().to_string();
    let config = Settings::load_with_env(Some(&path), &env);
    let secrets = Secrets::from_env(&env);
    if let Err(e) = &config {
        eprintln!("{e}");
    }
    if let Err(errors) = &secrets {
        for e in errors {
            eprintln!("{e}");
        }
    }
    if config.is_ok() && secrets.is_ok() {
        println!("{path}: ok (with the environment's overrides and secrets)");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

fn serve(config: Option<PathBuf>, rebuild: bool) -> anyhow::Result<ExitCode> {
    let nothing_set = names_nothing(config.as_deref());
    let (config, secrets) = match load_deployment(config) {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    init_logging();
    if nothing_set {
        tracing::info!(
            brokers = %config.kafka.brokers,
            database = %config.influx.url,
            state_dir = %config.service.state_dir,
            http_addr = %config.service.http_addr,
            "no configuration file and no PACELINE_* variable: serving with the defaults \
             (Kafka at {}, InfluxDB at {}, state in {}, HTTP on {}); `paceline demo` runs \
             without any service",
            config.kafka.brokers,
            config.influx.url,
            config.service.state_dir,
            config.service.http_addr,
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shutdown = shutdown_signal(&runtime)?;
    let options = paceline_runtime::serve::ServeOptions { rebuild };
    let result = runtime.block_on(paceline_runtime::serve::serve(
        config, secrets, options, shutdown,
    ));
    // A blocking Kafka metadata request may still wait for its timeout: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(report) => {
            tracing::info!(points_written = report.points_written, "stopped cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            tracing::error!(error = %e, "paceline serve failed");
            eprintln!("paceline serve: {e}");
            // A checkpoint this configuration cannot continue from is a configuration error.
            let code = match e {
                paceline_runtime::serve::ServeError::Incompatible(_)
                | paceline_runtime::serve::ServeError::StateDir(_)
                | paceline_runtime::serve::ServeError::Config(_) => 2,
                _ => 1,
            };
            Ok(ExitCode::from(code))
        }
    }
}

/// Loads the configuration and applies `--workers`; a bad one is reported, exit 2.
fn load_for_run(config: Option<&PathBuf>, workers: Option<usize>) -> Result<Config, ExitCode> {
    let mut config = load(config).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    if let Some(w) = workers {
        if w == 0 || w > 256 {
            eprintln!("--workers: must be 1 to 256");
            return Err(ExitCode::from(2));
        }
        config.dataflow.workers = w;
    }
    Ok(config)
}

fn check_scale(scale: f64) -> Result<(), ExitCode> {
    if scale.is_finite() && scale > 0.0 && scale <= 100.0 {
        Ok(())
    } else {
        eprintln!("--scale: must be in (0, 100]");
        Err(ExitCode::from(2))
    }
}

/// Colour on a terminal, unless NO_COLOR asks otherwise.
fn stdout_color() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn demo(config: Config, opts: paceline_runtime::demo::DemoOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shutdown = shutdown_signal(&runtime)?;
    let mut out = std::io::stdout();
    let color = stdout_color();
    match runtime.block_on(paceline_runtime::demo::demo(
        config, opts, &mut out, color, shutdown,
    )) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("paceline demo: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn produce(config: Option<PathBuf>, opts: paceline_runtime::produce::ProduceOptions) -> ExitCode {
    let (config, secrets) = match load_deployment(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if opts.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        eprintln!("--rate: must be a positive number of events per second");
        return ExitCode::from(2);
    }
    match paceline_runtime::produce::produce(&config, &secrets, &opts) {
        Ok(s) => {
            println!(
                "published {} events in {:.1} s: filings={} telemetry={} scenarios={} (of which {} not valid events)",
                s.by_stream.iter().sum::<u64>(),
                s.elapsed.as_secs_f64(),
                s.by_stream[0],
                s.by_stream[1],
                s.by_stream[2],
                s.unroutable
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paceline produce: {e}");
            ExitCode::from(1)
        }
    }
}

/// `paceline report`: exit 0 written, 1 the database failed or holds nothing for the date,
/// 2 a bad argument or configuration.
fn report(
    as_of: String,
    since: Option<String>,
    lang: Option<LangArg>,
    out: PathBuf,
    config: Option<PathBuf>,
) -> ExitCode {
    use paceline_runtime::report::{parse_date, ReportOptions};
    let Some(as_of_t) = parse_date(&as_of) else {
        eprintln!("--as-of: `{as_of}` is not a date like 2025-06-30 or an RFC 3339 instant");
        return ExitCode::from(2);
    };
    let since_t = match since.as_deref() {
        None => as_of_t - 30 * paceline_model::time::DAY,
        Some(s) => match parse_date(s) {
            Some(t) if t < as_of_t => t,
            Some(_) => {
                eprintln!("--since: `{s}` must be before --as-of");
                return ExitCode::from(2);
            }
            None => {
                eprintln!("--since: `{s}` is not a date like 2025-05-31 or an RFC 3339 instant");
                return ExitCode::from(2);
            }
        },
    };
    let (settings, secrets) = match load_deployment(config) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let opts = ReportOptions {
        as_of: as_of_t,
        since: since_t,
        lang: lang.map_or(paceline_model::names::Lang::En, Into::into),
        out,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("paceline report: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(paceline_runtime::report::report(
        &settings,
        &secrets.influx,
        &opts,
    )) {
        Ok(b) => {
            println!(
                "{}: {} goals as of {}",
                opts.out.display(),
                b.entries.len(),
                paceline_runtime::present::day(opts.as_of)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("paceline report: {e}");
            ExitCode::from(1)
        }
    }
}

/// A language people read, as the command line names it.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LangArg {
    /// English.
    En,
    /// Chinese (简体中文).
    Zh,
}

impl From<LangArg> for paceline_model::names::Lang {
    fn from(l: LangArg) -> Self {
        match l {
            LangArg::En => paceline_model::names::Lang::En,
            LangArg::Zh => paceline_model::names::Lang::Zh,
        }
    }
}

fn main() -> ExitCode {
    exit_on_panic();
    paceline_runtime::build::set_revision(env!("PACELINE_REVISION"));
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            seed,
            scale,
            http_addr,
            until_done,
            config,
            workers,
            lang,
        } => {
            let config = match load_for_run(config.as_ref(), workers) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Err(code) = check_scale(scale) {
                return code;
            }
            let Ok(http_addr) = http_addr.parse() else {
                eprintln!("--http-addr: `{http_addr}` is not an address like 127.0.0.1:9898");
                return ExitCode::from(2);
            };
            let opts = paceline_runtime::demo::DemoOptions {
                seed,
                scale,
                http_addr,
                until_done,
                lang: lang.map(Into::into),
            };
            demo(config, opts).unwrap_or_else(|e| {
                eprintln!("paceline demo: {e:#}");
                ExitCode::from(1)
            })
        }
        Command::Produce {
            inputs,
            config,
            rate,
        } => produce(
            config,
            paceline_runtime::produce::ProduceOptions { inputs, rate },
        ),
        Command::Serve { config, rebuild } => match serve(config, rebuild) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("paceline serve: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::CheckConfig { file } => check_config(&file),
        Command::Healthcheck {
            addr,
            config,
            timeout,
            ready,
        } => healthcheck(addr, config, timeout, ready),
        Command::PrintConfig { config } => match load_deployment(config) {
            Ok((config, secrets)) => {
                print!("{}", paceline_runtime::settings::to_toml(&config));
                println!("\n# secrets (from the environment or files, never printed):");
                for (name, set) in secrets.presence() {
                    println!("#   {name}: {}", if set { "set" } else { "not set" });
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Report {
            as_of,
            since,
            lang,
            out,
            config,
        } => report(as_of, since, lang, out, config),
        Command::Dashboards { out, lang, config } => {
            let config = match load_for_run(config.as_ref(), None) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let langs: Vec<paceline_model::names::Lang> = match lang {
                Some(l) => vec![l.into()],
                None => paceline_model::names::Lang::ALL.to_vec(),
            };
            match paceline_runtime::dashboards::write(&config, &langs, &out) {
                Ok(paths) => {
                    for p in paths {
                        println!("{}", p.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("paceline dashboards: {}: {e}", out.display());
                    ExitCode::from(1)
                }
            }
        }
        Command::Replay {
            inputs,
            output,
            dead_letters,
            config,
            workers,
        } => {
            let config = match load_for_run(config.as_ref(), workers) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let opts = paceline_runtime::ReplayOptions {
                inputs,
                output,
                dead_letters,
            };
            match paceline_runtime::replay(&config, &opts) {
                Ok(summary) => {
                    print!("{}", summary.render(stdout_color()));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("paceline replay: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Generate { seed, scale, out } => {
            if let Err(code) = check_scale(scale) {
                return code;
            }
            match paceline_generate::generate_to_file(seed, scale, &out) {
                Ok(n) => {
                    println!("wrote {n} events to {}", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("paceline generate: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
