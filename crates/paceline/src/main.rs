//! The `paceline` binary: parses the command line, loads configuration and calls the
//! runtime. Everything else lives in the crates under `crates/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use paceline_model::config::{Config, LoadError};

#[derive(Parser)]
#[command(
    name = "paceline",
    version,
    about = "Tracks a district's digital economy against its plan, live."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    },
    /// Checks a configuration file and reports every error with its key.
    CheckConfig {
        /// The file.
        file: PathBuf,
    },
}

fn load(path: Option<&PathBuf>) -> Result<Config, LoadError> {
    match path {
        Some(p) => Config::load(&p.display().to_string()),
        None => Ok(Config::default()),
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PACELINE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

fn serve(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok();
    let path = config.map(|p| p.display().to_string());
    let config = match Config::load_with_env(path.as_deref(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let secrets = match paceline_model::service::Secrets::from_env(&env) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("{e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let shutdown = shutdown_signal(&runtime)?;
    let result = runtime.block_on(paceline_runtime::serve::serve(config, secrets, shutdown));
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
            Ok(ExitCode::from(1))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => match serve(config) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("paceline serve: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::CheckConfig { file } => match load(Some(&file)) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Replay {
            inputs,
            output,
            dead_letters,
            config,
            workers,
        } => {
            let mut config = match load(config.as_ref()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            if let Some(w) = workers {
                if w == 0 || w > 256 {
                    eprintln!("--workers: must be 1 to 256");
                    return ExitCode::from(2);
                }
                config.dataflow.workers = w;
            }
            let opts = paceline_runtime::ReplayOptions {
                inputs,
                output,
                dead_letters,
            };
            match paceline_runtime::replay(&config, &opts) {
                Ok(summary) => {
                    print!("{}", summary.render());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("paceline replay: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Generate { seed, scale, out } => {
            if !(scale.is_finite() && scale > 0.0 && scale <= 100.0) {
                eprintln!("--scale: must be in (0, 100]");
                return ExitCode::from(2);
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
