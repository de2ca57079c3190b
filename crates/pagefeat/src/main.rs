//! The `pagefeat` binary: parse the command line (its `--set` help shows one of its own keys),
//! then [`svckit::cli::main`] sets up tracing and the runtime, runs the subcommand and maps its
//! outcome to the exit code.

use std::process::ExitCode;

use pagefeat::cli::{Cli, run};

fn main() -> ExitCode {
    let cli: Cli = svckit::cli::parse("viewport.debounce_ms=300");
    svckit::cli::main("pagefeat", cli.common.verbose, || run(cli))
}
