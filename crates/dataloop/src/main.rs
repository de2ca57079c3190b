//! `dataloop` binary: parse, init tracing, dispatch, map to an exit code (see `cli` for codes).

use std::process::ExitCode;

use clap::Parser as _;
use dataloop::cli::{Cli, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = svckit::init_tracing("dataloop", cli.common.verbose) {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("dataloop: {error}\n").as_bytes(),
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("dataloop: {error:#}\n").as_bytes(),
            );
            ExitCode::FAILURE
        }
    }
}
