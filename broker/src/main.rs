//! The `fleetmq` binary: parses the command line and runs it. Everything else lives in
//! `fleetmq::cli`; this file only turns a failure into one line on stderr and an exit code.

use std::io::Write;
use std::process::ExitCode;

use fleetmq::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse_or_exit();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = writeln!(std::io::stderr(), "fleetmq: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
