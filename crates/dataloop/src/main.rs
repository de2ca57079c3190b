//! The `dataloop` binary: parse the command line (its `--set` help shows one of its own keys),
//! then [`svckit::cli::main`] sets up tracing and the runtime, runs the subcommand and maps its
//! outcome to the exit code.

use std::process::ExitCode;

use dataloop::cli::{Cli, run};

fn main() -> ExitCode {
    let cli: Cli = svckit::cli::parse("schedule.enabled=false");
    svckit::cli::main("dataloop", cli.common.verbose, || run(cli))
}
