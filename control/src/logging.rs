//! Logging setup from `LOG_LEVEL`, `LOG_JSON`, `LOG_INCLUDE_FILE`, `LOG_OUTPUT`.
//!
//! Our crates log at `LOG_LEVEL`; dependencies at most at `info` (their debug/trace output is protocol chatter,
//! and keeping it out also keeps anything they might print about connections out of the log). Secrets never
//! reach a log call: they live in `Secret`, which prints `***`.

use aegis_shared::config::{LogConfig, LogLevel, LogOutput};
use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Keeps the background log writer alive; dropping it flushes the file.
#[must_use = "dropping the guard stops file logging"]
#[derive(Debug)]
pub struct LogGuard(#[allow(dead_code)] Option<tracing_appender::non_blocking::WorkerGuard>);

/// Logging setup failures.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file cannot be opened.
    #[error("LOG_OUTPUT={path}: cannot open for appending: {source}; use stdout, stderr or a writable file path")]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A global subscriber was already installed.
    #[error("logging was already initialised")]
    AlreadySet,
}

fn level(l: LogLevel) -> LevelFilter {
    match l {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

fn layer<W>(cfg: &LogConfig, writer: W, ansi: bool) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_file(cfg.include_file)
        .with_line_number(cfg.include_file)
        .with_target(cfg.include_file);
    if cfg.json {
        base.json().with_current_span(false).boxed()
    } else {
        base.with_ansi(ansi).boxed()
    }
}

/// Installs the global subscriber.
pub fn init(cfg: &LogConfig) -> Result<LogGuard, LogError> {
    let ours = level(cfg.level);
    let filter = Targets::new()
        .with_default(ours.min(LevelFilter::INFO))
        .with_target("aegis", ours)
        .with_target("aegis_control", ours)
        .with_target("aegis_engine", ours)
        .with_target("aegis_shared", ours);
    let (layer, guard) = match &cfg.output {
        LogOutput::Stdout => (
            layer(cfg, std::io::stdout, std::io::stdout().is_terminal()),
            None,
        ),
        LogOutput::Stderr => (
            layer(cfg, std::io::stderr, std::io::stderr().is_terminal()),
            None,
        ),
        LogOutput::File(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(parent);
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| LogError::Open {
                    path: path.clone(),
                    source,
                })?;
            let (nb, guard) = tracing_appender::non_blocking(file);
            (layer(cfg, nb, false), Some(guard))
        }
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .map_err(|_| LogError::AlreadySet)?;
    Ok(LogGuard(guard))
}
