//! The `dataloop` binary: [`svckit::cli::run_binary`] parses the command line with this crate's
//! name, description and a `--set` example of its own keys, sets up tracing and the runtime,
//! runs the subcommand and maps its outcome to the exit code.

use std::process::ExitCode;

use dataloop::cli::run;

fn main() -> ExitCode {
    svckit::cli::run_binary(&svckit::about!("schedule.enabled=false"), run)
}
