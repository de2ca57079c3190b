//! The `pagefeat` binary: parse, set up tracing, dispatch, map to an exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use pagefeat::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = svckit::init_tracing("pagefeat", cli.common.verbose) {
        let _ = writeln!(std::io::stderr(), "pagefeat: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "pagefeat: starting the async runtime: {error}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "pagefeat: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
