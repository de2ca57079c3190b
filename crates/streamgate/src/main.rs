//! The `streamgate` binary: parse the command line (its `--set` help shows one of its own keys),
//! then [`svckit::cli::main`] sets up tracing and the runtime, runs the subcommand and maps its
//! outcome to the exit code.

use std::process::ExitCode;

use streamgate::cli::{Cli, run};

fn main() -> ExitCode {
    let cli: Cli = svckit::cli::parse("media.idle_stop_ms=10000");
    svckit::cli::main("streamgate", cli.common.verbose, || run(cli))
}
