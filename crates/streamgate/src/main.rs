//! The `streamgate` binary: parse the command line, then [`svckit::cli::main`] sets up tracing and
//! the runtime, runs the subcommand and maps its outcome to the exit code.

use std::process::ExitCode;

use clap::Parser as _;
use streamgate::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    svckit::cli::main("streamgate", cli.common.verbose, || run(cli))
}
