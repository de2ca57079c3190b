//! Command-line flags every service binary shares (style.md 2.6), flattened into each crate's
//! clap `Cli` with `#[command(flatten)]`.

use std::fmt::Display;
use std::future::Future;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// `-v`, `--config FILE` and `--set key=value`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// More log output: -v for debug, -vv for trace (`RUST_LOG` overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// A TOML configuration file, applied over the embedded defaults.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one configuration key, applied last, e.g. `--set tracker.max_substreams=12`
    /// (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl CommonArgs {
    /// The configuration [`Sources`](crate::config::Sources) these flags name, reading the
    /// environment variables that start with `env_prefix`.
    pub fn config_sources(&self, env_prefix: &str) -> crate::config::Sources {
        crate::config::Sources::new()
            .file(self.config.as_deref())
            .env_prefix(env_prefix)
            .overrides(&self.overrides)
    }
}

/// The body of every service binary's `main` (style.md 2.6): sets up tracing for `binary` at
/// `verbose` (`-v` count), builds a multi-threaded Tokio runtime, runs `run` on it and maps the
/// outcome to the process exit code. `run`'s own exit code is returned as is; a tracing set-up
/// failure, a runtime that cannot start or an error from `run` prints `BINARY: error: ...`
/// (with the error's `{:#}` chain) to stderr and gives [`ExitCode::FAILURE`].
pub fn main<F, E>(binary: &str, verbose: u8, run: impl FnOnce() -> F) -> ExitCode
where
    F: Future<Output = Result<ExitCode, E>>,
    E: Display,
{
    let fail = |what: &dyn Display| {
        let _ = writeln!(std::io::stderr(), "{binary}: error: {what:#}");
        ExitCode::FAILURE
    };
    if let Err(error) = crate::init_tracing(binary, verbose) {
        return fail(&error);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("starting the async runtime: {error}")),
    };
    match runtime.block_on(run()) {
        Ok(code) => code,
        Err(error) => fail(&error),
    }
}
