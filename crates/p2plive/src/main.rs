//! The `p2plive` binary: parse the command line (its `--set` help shows one of its own keys),
//! then [`svckit::cli::main`] sets up tracing and the runtime, runs the subcommand and maps its
//! outcome to the exit code.

use std::process::ExitCode;

use p2plive::cli::{Cli, run};

fn main() -> ExitCode {
    let cli: Cli = svckit::cli::parse("tracker.max_substreams=12");
    svckit::cli::main("p2plive", cli.common.verbose, || run(cli))
}
