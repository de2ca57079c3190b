//! Command-line flags every service binary shares (style.md 2.6), flattened into each crate's
//! clap `Cli` with `#[command(flatten)]`.

use std::path::PathBuf;

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
