//! The `aegis` binary: the thin edge that turns typed errors into messages and exit codes.

use aegis_control::cli::{Cli, Cmd};
use aegis_control::{config, engine_link, logging, runtime};
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command() {
        Cmd::Run(args) => run(&cli, &args),
    }
}

fn run(cli: &Cli, args: &aegis_control::cli::RunArgs) -> ExitCode {
    // Validate everything before anything starts; one message, exit code 2.
    let loaded = match config::load(&cli.env_file, args) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("aegis: {e}");
            return ExitCode::from(2);
        }
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
    let result = runtime::run(loaded.config, loaded.warnings, engine_link::start);
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
