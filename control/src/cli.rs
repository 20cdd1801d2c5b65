//! Command line: `aegis [--env-file PATH] [COMMAND]`; `aegis` alone means `aegis run`.
//!
//! Commands: `run`, `preflight`, `keys audit`, `keys rotate`, `halt`, `resume`, `kill`, `incident-report`.
//! `backtest`, `audit verify`, `export trades`, `db prune`, `fleet status`, `reconcile --pnl`.

use aegis_shared::quote::QuoteUsd;
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
#[derive(Debug, Clone, Subcommand)]
pub enum Cmd {
    /// Run the bot: engine, journal and HTTPS API (the default). In live mode it refuses to start while
    /// `aegis preflight` has a FAIL.
    Run(RunArgs),
    /// Run the security guide's checklist (before going live): PASS/WARN/FAIL with a fix each; exit 1 on a FAIL.
    Preflight(PreflightArgs),
    /// API key hygiene: the monthly audit and key rotation.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Stop opening positions (exits keep working) on the running bot.
    Halt(ControlArgs),
    /// Undo `halt` on the running bot (does not override a tripped breaker or the kill switch).
    Resume(ControlArgs),
    /// Kill switch on the running bot: halt and cancel every open order; with --flatten also close every position.
    Kill(KillArgs),
    /// Write one file with the orders, fills, errors, commands, API access and key events of a recent window.
    IncidentReport(IncidentArgs),
    /// Run the engine's strategies, gate and paper venue over recorded combined-stream JSON lines and report.
    Backtest(BacktestArgs),
    /// The hash-chained audit trail in Postgres.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Export records from Postgres (tax records).
    #[command(subcommand)]
    Export(ExportCmd),
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCmd),
    /// The bots sharing this database (one per API key, guide §1.1).
    #[command(subcommand)]
    Fleet(FleetCmd),
    /// Compare the bot's records with the exchange's: with --pnl, fills, fees, funding and realized PnL
    /// (journal vs `userTrades` and `income`). Exit 0 equal, 1 any difference, 2 an error.
    Reconcile(ReconcileArgs),
}

/// Options of `aegis reconcile`.
#[derive(Debug, Clone, Default, Args)]
pub struct ReconcileArgs {
    /// Compare fills, fees, funding and realized PnL (the only comparison so far; required).
    #[arg(long, required = true)]
    pub pnl: bool,
    /// Window start: a UTC date (2026-01-31), RFC 3339 with a zone, epoch ms, or a duration back from now
    /// (30m, 24h, 7d). Default: the first run in the journal.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Print JSON instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// `aegis fleet ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum FleetCmd {
    /// Every instance in the lease table side by side: instance, host, pid, key fingerprint, environment,
    /// heartbeat age, state. Exit 0, or 2 on a configuration or database error.
    Status(FleetStatusArgs),
}

/// Options of `aegis fleet status`.
#[derive(Debug, Clone, Default, Args)]
pub struct FleetStatusArgs {
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `aegis audit ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCmd {
    /// Recompute every audit row's hash and link: exit 0 when the chain holds, 1 naming the first broken row,
    /// 2 on a configuration or database error.
    Verify,
}

/// `aegis export ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum ExportCmd {
    /// One row per fill with fee, fee asset and realized PnL, exact decimals.
    Trades(ExportTradesArgs),
}

/// Export file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header line.
    Csv,
}

/// Options of `aegis export trades`.
#[derive(Debug, Clone, Args)]
pub struct ExportTradesArgs {
    /// Start (inclusive): RFC 3339 with a zone (2026-01-01T00:00:00Z) or a UTC date (2026-01-01).
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// End (exclusive); a date alone includes that whole day.
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: ExportFormat,
    /// Write to this file (mode 600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `aegis db ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum DbCmd {
    /// Delete API access logs older than 400 days and expired revoked tokens (daily from cron).
    Prune,
}

/// Options of `aegis backtest`.
#[derive(Debug, Clone, Args)]
pub struct BacktestArgs {
    /// Recorded combined-stream JSON lines (`{"stream":..,"data":..}` per line), comma-separated; merged by
    /// event time.
    #[arg(
        long,
        value_name = "FILE[,FILE…]",
        value_delimiter = ',',
        required = true
    )]
    pub data: Vec<PathBuf>,
    /// Also write the report as JSON (byte-identical for the same input and settings).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also write an SVG plot of equity and drawdown per mode.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Close every open position at the end of the data (through the kill switch's reduce-only flatten).
    #[arg(long)]
    pub flatten_at_end: bool,
    /// USD price of the data's quote asset when it is not a dollar (`ETH=180.5` for XRPETH): the USD settings
    /// are converted into it; without it such data is refused. Repeat for several (adds to `QUOTE_USD`).
    #[arg(long, value_name = "ASSET=PRICE", value_parser = parse_quote_usd)]
    pub quote_usd: Vec<QuoteUsd>,
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
    /// USD price of a non-dollar quote asset (`ETH=180.5`), so a paper run or replay of e.g. XRPETH holds the
    /// USD limits in ETH; repeat for several (adds to `QUOTE_USD`).
    #[arg(long, value_name = "ASSET=PRICE", value_parser = parse_quote_usd)]
    pub quote_usd: Vec<QuoteUsd>,
}

/// clap's parser for `--quote-usd`.
fn parse_quote_usd(s: &str) -> Result<QuoteUsd, String> {
    QuoteUsd::parse(s).map_err(|e| e.to_string())
}

/// Options of `aegis preflight`.
#[derive(Debug, Clone, Default, Args)]
pub struct PreflightArgs {
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `aegis keys ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCmd {
    /// The guide's monthly key audit (§1.5) as one command; exit 1 on a FAIL.
    Audit(PreflightArgs),
    /// Install a new key pair: read it from a file or stdin (never the command line, which lands in the shell
    /// history), verify it against the exchange, update .env atomically, record and audit the change.
    Rotate(RotateArgs),
}

/// Options of `aegis keys rotate`.
#[derive(Debug, Clone, Default, Args)]
pub struct RotateArgs {
    /// Rotate the testnet pair instead of the production pair.
    #[arg(long)]
    pub testnet: bool,
    /// Read the new pair from this file (`BINANCE_API_KEY=`/`BINANCE_SECRET_KEY=` lines, or two bare lines);
    /// without it the pair is read from stdin.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,
    /// Do not ask the exchange (offline emergency); recorded as unverified.
    #[arg(long)]
    pub no_verify: bool,
}

/// Options of `aegis halt` / `aegis resume`.
#[derive(Debug, Clone, Default, Args)]
pub struct ControlArgs {
    /// Why (kept in the audit trail).
    #[arg(long, default_value = "aegis CLI")]
    pub reason: String,
}

/// Options of `aegis kill`.
#[derive(Debug, Clone, Default, Args)]
pub struct KillArgs {
    /// Also close every position with reduce-only market orders.
    #[arg(long)]
    pub flatten: bool,
    /// Why (kept in the audit trail).
    #[arg(long, default_value = "aegis CLI")]
    pub reason: String,
}

/// Options of `aegis incident-report`.
#[derive(Debug, Clone, Args)]
pub struct IncidentArgs {
    /// The window: the last 30m, 1h (default), 24h, 7d, or seconds.
    #[arg(long, default_value = "1h", value_name = "DURATION")]
    pub since: String,
    /// Output file (default `incident-<UTC time>.md`, or `.json` with --json).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write JSON instead of markdown.
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    /// The subcommand, with `run` as the default.
    pub fn command(&self) -> Cmd {
        self.command
            .clone()
            .unwrap_or_else(|| Cmd::Run(RunArgs::default()))
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
        let Cmd::Run(a) = c.command() else {
            panic!("not run")
        };
        assert_eq!(a.replay.unwrap(), PathBuf::from("f.jsonl"));
        assert_eq!(a.speed, Some(10.0));
        assert!(Cli::try_parse_from(["aegis", "run", "--speed", "2"]).is_err());
    }

    #[test]
    fn operating_commands_parse() {
        let c =
            Cli::try_parse_from(["aegis", "--env-file", "x.env", "preflight", "--json"]).unwrap();
        assert!(matches!(c.command(), Cmd::Preflight(a) if a.json));
        assert_eq!(c.env_file, PathBuf::from("x.env"));
        let c = Cli::try_parse_from(["aegis", "keys", "rotate", "--testnet", "--from-file", "k"])
            .unwrap();
        assert!(
            matches!(c.command(), Cmd::Keys(KeysCmd::Rotate(a)) if a.testnet && a.from_file.is_some())
        );
        // No way to pass a key on the command line.
        assert!(Cli::try_parse_from(["aegis", "keys", "rotate", "--key", "abc"]).is_err());
        assert!(Cli::try_parse_from(["aegis", "keys", "rotate", "abc"]).is_err());
        let c = Cli::try_parse_from(["aegis", "kill", "--flatten"]).unwrap();
        assert!(matches!(c.command(), Cmd::Kill(a) if a.flatten));
        let c =
            Cli::try_parse_from(["aegis", "incident-report", "--since", "2h", "--json"]).unwrap();
        assert!(matches!(c.command(), Cmd::IncidentReport(a) if a.since == "2h" && a.json));
        assert!(matches!(
            Cli::try_parse_from(["aegis", "halt"]).unwrap().command(),
            Cmd::Halt(_)
        ));
        let c = Cli::try_parse_from([
            "aegis",
            "backtest",
            "--data",
            "a.jsonl,b.jsonl",
            "--report",
            "r.json",
        ])
        .unwrap();
        assert!(matches!(c.command(), Cmd::Backtest(a) if a.data.len() == 2 && a.report.is_some()));
        assert!(
            Cli::try_parse_from(["aegis", "backtest"]).is_err(),
            "--data is required"
        );
        assert!(matches!(
            Cli::try_parse_from(["aegis", "audit", "verify"])
                .unwrap()
                .command(),
            Cmd::Audit(AuditCmd::Verify)
        ));
        let c = Cli::try_parse_from([
            "aegis",
            "export",
            "trades",
            "--from",
            "2026-01-01",
            "--to",
            "2026-02-01",
            "--format",
            "csv",
        ])
        .unwrap();
        assert!(
            matches!(c.command(), Cmd::Export(ExportCmd::Trades(a)) if a.from == "2026-01-01" && a.out.is_none())
        );
        assert!(Cli::try_parse_from([
            "aegis", "export", "trades", "--from", "x", "--to", "y", "--format", "xlsx"
        ])
        .is_err());
        assert!(matches!(
            Cli::try_parse_from(["aegis", "db", "prune"])
                .unwrap()
                .command(),
            Cmd::Db(DbCmd::Prune)
        ));
        let c = Cli::try_parse_from(["aegis", "reconcile", "--pnl", "--since", "24h", "--json"])
            .unwrap();
        assert!(
            matches!(c.command(), Cmd::Reconcile(a) if a.pnl && a.json && a.since.as_deref() == Some("24h"))
        );
        assert!(
            Cli::try_parse_from(["aegis", "reconcile"]).is_err(),
            "--pnl is required"
        );
        let c = Cli::try_parse_from(["aegis", "fleet", "status", "--json"]).unwrap();
        assert!(matches!(c.command(), Cmd::Fleet(FleetCmd::Status(a)) if a.json));
    }
}
