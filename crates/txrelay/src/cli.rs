//! Command line: `txrelay serve | keys | demo | bench`.
//!
//! Exit codes: 0 success; 1 an error (printed with its causes); 2 the demo ran but failed one
//! of its checks (clap's usage errors exit 2 as well).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use svckit::cli::CommonArgs;

use crate::config::{ChainConfig, Config, ENV_PREFIX};

/// `txrelay`'s command line: the global flags ([`svckit::cli::CommonArgs`]) and [`Command`];
/// name, version and description come from the crate (`svckit::about!`).
pub type Cli = svckit::cli::Cli<Command>;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay (API, broadcast, head followers, delivery) until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Create, list or revoke API keys in the configured database (the operator's way to
    /// the first admin key; admins can then use `POST /v1/keys`).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Start two anvil chains and a relay on 127.0.0.1, send about 200 transactions from 5
    /// accounts (with duplicates, invalid ones and a reverting call) and check every
    /// notification arrives with a valid signature.
    Demo(DemoArgs),
    /// Transactions per second through the relay against direct submission to anvil, and
    /// notification latency after inclusion, in one run.
    Bench(BenchArgs),
}

/// `txrelay serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (overrides `listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Database URL (overrides `database.url`): `sqlite://FILE` or `postgres://...`.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// A chain and its node URLs, `CHAIN_ID=URL[,URL...]` (repeatable; replaces a
    /// `[[chains]]` entry with the same id).
    #[arg(long = "chain", value_name = "ID=URLS")]
    pub chains: Vec<String>,
    /// Instance name (overrides `instance_id`).
    #[arg(long)]
    pub instance: Option<String>,
}

/// `txrelay keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its token (shown this once).
    Create(CreateKeyArgs),
    /// List the keys (no secrets).
    List(DatabaseArgs),
    /// Revoke a key by its id.
    Revoke {
        /// The key id (the middle part of `txr_{key_id}_...`).
        key_id: String,
        /// Where the keys are.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// The database of `txrelay keys`.
#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// Database URL (overrides `database.url`).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

/// `txrelay keys create`.
#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// The tenant the key acts for (devices belong to tenants).
    #[arg(long)]
    pub tenant: String,
    /// An admin key (dead letters, replay, keys, read everything).
    #[arg(long)]
    pub admin: bool,
    /// Its own requests per second (default: `limits.requests_per_second`).
    #[arg(long)]
    pub rate: Option<u32>,
    /// Its own burst (default: `limits.burst`).
    #[arg(long)]
    pub burst: Option<u32>,
    /// A free-text label.
    #[arg(long)]
    pub label: Option<String>,
    /// Print `{"key_id":..,"token":..}` as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the keys are.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `txrelay demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the report as one JSON line on stdout (no progress bars).
    #[arg(long)]
    pub json: bool,
}

/// `txrelay bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Transactions per side (relay and direct); several counts separated by commas run one
    /// after another (e.g. `1000,20000`), `0` skips these rows.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub txs: Vec<usize>,
    /// Seconds of the sustained row (0: none): transactions offered at `--rate` for this long,
    /// with the backlog at the start and the end (at most 1,000,000 transactions in all).
    #[arg(long, default_value_t = 0)]
    pub sustain_seconds: u64,
    /// Offered transactions per second of the sustained row.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// anvil's block interval in seconds (fractions allowed, e.g. `0.25` as on a fast L2;
    /// every row's latency counts from the including block, so shorter blocks mean fewer
    /// receipts per block).
    #[arg(long, default_value_t = 1.0, value_parser = block_time_flag)]
    pub block_time: f64,
    /// Block sizes (transactions) of the node probe: one block of each is mined on a
    /// fresh anvil and its `eth_getBlockReceipts` timed, the floor under the latency rows;
    /// `0` skips it.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000")]
    pub node_receipts: Vec<usize>,
    /// Print the rows as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--block-time`: seconds from 0.05 to 60.
fn block_time_flag(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if (0.05..=60.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{seconds} s is outside 0.05..=60 s"))
    }
}

fn chain_flag(text: &str) -> anyhow::Result<ChainConfig> {
    let (id, urls) = text
        .split_once('=')
        .with_context(|| format!("--chain `{text}` is not ID=URL[,URL...]"))?;
    Ok(ChainConfig {
        chain_id: id
            .trim()
            .parse()
            .with_context(|| format!("--chain `{text}`: `{id}` is not a chain id"))?,
        rpc_urls: urls.split(',').map(|u| u.trim().to_owned()).collect(),
        ..ChainConfig::default()
    })
}

/// Loads the configuration from its layers and applies `serve`'s flags.
///
/// # Errors
/// Loading or flag errors.
pub fn serve_config(common: &CommonArgs, args: &ServeArgs) -> anyhow::Result<Config> {
    let mut config: Config = svckit::cli::load_config(common, ENV_PREFIX)
        .map_err(crate::error::ConfigError::from)
        .context("loading the configuration")?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(url) = &args.database {
        config.database.url.clone_from(url);
    }
    if let Some(instance) = &args.instance {
        config.instance_id.clone_from(instance);
    }
    for text in &args.chains {
        let chain = chain_flag(text)?;
        config.chains.retain(|c| c.chain_id != chain.chain_id);
        config.chains.push(chain);
    }
    Ok(config)
}

/// Opens the database of `txrelay keys` (configuration layers, then `--database`).
async fn key_store(
    common: &CommonArgs,
    args: &DatabaseArgs,
) -> anyhow::Result<crate::store::Store> {
    let mut config: Config = svckit::cli::load_config(common, ENV_PREFIX)
        .map_err(crate::error::ConfigError::from)
        .context("loading the configuration")?;
    if let Some(url) = &args.database {
        config.database.url.clone_from(url);
    }
    let url: svckit::redact::SafeUrl = config
        .database
        .url
        .parse()
        .with_context(|| format!("`database.url` `{}` is not a URL", config.database.url))?;
    crate::store::prepare_sqlite_file(&url)?;
    Ok(crate::store::Store::open(&url, 2).await?)
}

async fn keys(common: &CommonArgs, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let now = crate::core::now_ms(&svckit::SystemClock);
    match command {
        KeysCommand::Create(args) => {
            let request = crate::api::NewKeyRequest {
                tenant: args.tenant.clone(),
                admin: args.admin,
                rate_per_second: args.rate,
                burst: args.burst,
                label: args.label.clone(),
            };
            anyhow::ensure!(
                crate::api::valid_tenant(&request.tenant),
                "--tenant must be 1..=64 characters of A-Z a-z 0-9 . _ -"
            );
            let store = key_store(common, &args.database).await?;
            let (key, token) = crate::api::new_key(&request, now);
            store.create_key(&key).await?;
            store.close().await;
            let text = if args.json {
                serde_json::json!({"key_id": key.key_id, "tenant": key.tenant, "admin": key.admin, "token": token}).to_string()
            } else {
                format!(
                    "created key {} for tenant {}{}; its token (shown once):\n{token}",
                    key.key_id,
                    key.tenant,
                    if key.admin { " (admin)" } else { "" }
                )
            };
            svckit::cli::stdout_line(&text)?;
        }
        KeysCommand::List(args) => {
            let store = key_store(common, &args).await?;
            let keys = store.api_keys().await?;
            store.close().await;
            for key in keys {
                svckit::cli::stdout_line(&serde_json::to_string(&key)?)?;
            }
        }
        KeysCommand::Revoke { key_id, database } => {
            let store = key_store(common, &database).await?;
            let revoked = store.revoke_key(&key_id, now).await?;
            store.close().await;
            anyhow::ensure!(revoked, "no valid key `{key_id}`");
            svckit::cli::stdout_line(&format!("revoked {key_id}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs the parsed command.
///
/// # Errors
/// Whatever stopped the command; `main` prints it with its causes.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let config = serve_config(&cli.common, &args)?;
            let settings = config.validate().context("invalid configuration")?;
            let running = crate::relay::start(settings, Arc::new(svckit::SystemClock))
                .await
                .context("starting the relay")?;
            let signal = svckit::shutdown_signal().context("installing signal handlers")?;
            running.run_until(signal).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(command) => keys(&cli.common, command).await,
        Command::Demo(args) => {
            let options = crate::demo::DemoOptions {
                progress: svckit::cli::progress_wanted(args.json),
            };
            let outcome = crate::demo::run(&options).await?;
            Ok(svckit::cli::finish_demo(
                &outcome.report,
                &outcome.failures,
                args.json,
            )?)
        }
        Command::Bench(args) => {
            let progress = svckit::cli::progress_wanted(args.json);
            let mut runs: Vec<crate::bench::BenchOptions> = args
                .txs
                .iter()
                .filter(|txs| **txs > 0)
                .map(|txs| crate::bench::BenchOptions {
                    txs: *txs,
                    concurrency: args.concurrency.max(1),
                    block_time: Duration::from_secs_f64(args.block_time),
                    progress,
                    sustain: None,
                })
                .collect();
            if args.sustain_seconds > 0 {
                runs.push(crate::bench::BenchOptions {
                    txs: 0,
                    concurrency: args.concurrency.max(1),
                    block_time: Duration::from_secs_f64(args.block_time),
                    progress,
                    sustain: Some(crate::bench::sustain::Sustain {
                        rate: args.rate.max(1),
                        seconds: args.sustain_seconds,
                    }),
                });
            }
            let sizes: Vec<usize> = args
                .node_receipts
                .iter()
                .copied()
                .filter(|n| *n > 0)
                .collect();
            if runs.is_empty() && sizes.is_empty() {
                anyhow::bail!(
                    "nothing to measure: give --txs above 0, --sustain-seconds or --node-receipts"
                );
            }
            let node_receipts = if sizes.is_empty() {
                Vec::new()
            } else {
                let dir = tempfile::Builder::new()
                    .prefix("txrelay-probe-")
                    .tempdir()
                    .context("creating a work directory")?;
                crate::bench::node_receipts::probe(crate::bench::CHAIN_ID, &sizes, dir.path())
                    .await?
            };
            let mut reports = Vec::new();
            for options in &runs {
                reports.push(crate::bench::run(options).await?);
            }
            let output = crate::bench::BenchOutput {
                runs: reports,
                node_receipts,
            };
            svckit::cli::print_report(&output, args.json, || output.table())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_flags_parse() {
        let chain = chain_flag("31337=http://127.0.0.1:1,http://127.0.0.1:2").unwrap();
        assert_eq!(chain.chain_id, 31337);
        assert_eq!(chain.rpc_urls.len(), 2);
        assert!(chain_flag("http://x").is_err());
        assert!(chain_flag("x=http://x").is_err());
    }

    #[test]
    fn block_times_take_fractions_within_bounds() {
        assert_eq!(block_time_flag("0.25"), Ok(0.25));
        assert_eq!(block_time_flag("2"), Ok(2.0));
        assert!(block_time_flag("0").is_err());
        assert!(block_time_flag("61").is_err());
        assert!(block_time_flag("fast").is_err());
    }

    #[test]
    fn serve_flags_override_the_config() {
        let args = ServeArgs {
            listen: Some("127.0.0.1:9999".parse().unwrap()),
            database: Some("sqlite://x.db".to_owned()),
            chains: vec!["5=http://127.0.0.1:1".to_owned()],
            instance: Some("b".to_owned()),
        };
        let mut config = serve_config(&CommonArgs::default(), &args).unwrap();
        config.secrets.key = "00".repeat(32);
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.instance_id, "b");
        assert_eq!(config.chains[0].chain_id, 5);
        assert!(config.validate().is_ok());
    }
}
