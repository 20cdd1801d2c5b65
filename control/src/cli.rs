//! Command line: `aegis [--env-file PATH] [run [--replay FILE] [--speed N]]`.
//!
//! `aegis` alone means `aegis run`. Later subcommands (backtest, audit, export, preflight, keys, kill, halt,
//! resume) slot into [`Cmd`].

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Aegis: a Binance USD-M futures trading bot with a pinned hot path and a safe control plane.
#[derive(Debug, Parser)]
#[command(name = "aegis", version, about, long_about = None)]
pub struct Cli {
    /// The `.env` file to read (the process environment wins over it).
    #[arg(long, global = true, default_value = ".env", value_name = "PATH")]
    pub env_file: PathBuf,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the bot: engine, journal and HTTPS API (the default).
    Run(RunArgs),
}

/// Options of `aegis run`.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Replay a file of combined-stream JSON lines instead of the simulated market.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,
    /// Replay speed multiplier (1 = original timing).
    #[arg(long, value_name = "N", requires = "replay")]
    pub speed: Option<f64>,
}

impl Cli {
    /// The subcommand, with `run` as the default.
    pub fn command(&self) -> Cmd {
        match &self.command {
            Some(c) => Cmd::Run(match c {
                Cmd::Run(a) => a.clone(),
            }),
            None => Cmd::Run(RunArgs::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_is_the_default_and_replay_parses() {
        let c = Cli::try_parse_from(["aegis"]).unwrap();
        assert!(matches!(c.command(), Cmd::Run(a) if a.replay.is_none()));
        let c =
            Cli::try_parse_from(["aegis", "run", "--replay", "f.jsonl", "--speed", "10"]).unwrap();
        let Cmd::Run(a) = c.command();
        assert_eq!(a.replay.unwrap(), PathBuf::from("f.jsonl"));
        assert_eq!(a.speed, Some(10.0));
        assert!(Cli::try_parse_from(["aegis", "run", "--speed", "2"]).is_err());
    }
}
