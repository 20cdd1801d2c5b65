//! The `aegis` binary: the thin edge that turns typed errors into messages and exit codes.

use aegis_control::cli::{AuditCmd, Cli, Cmd, DbCmd, ExportCmd, FleetCmd, KeysCmd};
use aegis_control::ops::{commands, dbcmd};
use aegis_control::{config, logging, runtime};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let f = &cli.env_file;
    let code = match cli.command() {
        Cmd::Run(args) => return run(&cli, &args),
        Cmd::Preflight(a) => commands::preflight_cmd(f, &a),
        Cmd::Keys(KeysCmd::Audit(a)) => commands::keys_audit(f, &a),
        Cmd::Keys(KeysCmd::Rotate(a)) => commands::keys_rotate(f, &a),
        Cmd::Halt(a) => commands::halt(f, &a),
        Cmd::Resume(a) => commands::resume(f, &a),
        Cmd::Kill(a) => commands::kill(f, &a),
        Cmd::IncidentReport(a) => commands::incident_report(f, &a),
        Cmd::Backtest(a) => backtest(&cli, &a),
        Cmd::Audit(AuditCmd::Verify) => dbcmd::audit_verify(f),
        Cmd::Export(ExportCmd::Trades(a)) => dbcmd::export_trades(f, &a),
        Cmd::Db(DbCmd::Prune) => dbcmd::db_prune(f),
        Cmd::Fleet(FleetCmd::Status(a)) => dbcmd::fleet_status(f, &a),
        Cmd::Reconcile(a) => commands::reconcile_pnl(f, &a),
    };
    ExitCode::from(code)
}

fn backtest(cli: &Cli, args: &aegis_control::cli::BacktestArgs) -> u8 {
    let loaded = match config::load(
        &cli.env_file,
        &aegis_control::cli::RunArgs::default(),
        check_dashboard,
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("aegis: {e}");
            return 2;
        }
    };
    aegis_control::backtest_cmd::run(&loaded.config, args)
}

fn run(cli: &Cli, args: &aegis_control::cli::RunArgs) -> ExitCode {
    // Validate everything before anything starts; one message, exit code 2.
    let mut loaded = match config::load(&cli.env_file, args, check_dashboard) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("aegis: {e}");
            return ExitCode::from(2);
        }
    };
    // Live refuses to start while the preflight checklist has a FAIL; key-age warnings in every mode.
    match commands::run_gate(&cli.env_file, &loaded.config) {
        Ok(w) => loaded.warnings.extend(w),
        Err(code) => return ExitCode::from(code),
    }
    let extras = match commands::run_extras(&cli.env_file, &loaded.config) {
        Ok(x) => x,
        Err(code) => return ExitCode::from(code),
    };
    for w in &loaded.warnings {
        // Loud on the terminal even when the log goes to a file.
        eprintln!("aegis: {w}");
    }
    let guard = match logging::init(&loaded.config.log) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("aegis: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime::run_with(
        loaded.config,
        loaded.warnings,
        extras,
        runtime::start_engine,
    );
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("aegis: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    };
    // Flush the log file before the process ends.
    drop(guard);
    code
}

/// The dashboard's settings, checked while the configuration loads (one message, exit code 2).
fn check_dashboard(
    cfg: &aegis_shared::config::Config,
) -> Result<(), aegis_shared::config::ConfigError> {
    aegis_control::dashboard::web_config(cfg).map(drop)
}
