//! Command line (style.md 2.6): `dataloop <command>`; the dispatch lives here, at the edge
//! (anyhow allowed).
//!
//! Exit codes: 0 success; 1 error; 2 `ingest` committed the batch but rejected some files or
//! rows, or `demo` checks failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::auth::BearerToken;
use crate::closed_loop::{DataLoop, TriggerKind};
use crate::config::{Config, ENV_PREFIX};
use crate::query;
use crate::registry::Registry;
use crate::report::{self, out};
use crate::service::serve;
use crate::trigger::MiningRequest;
use crate::warehouse::BeforeCommit;

/// `dataloop`'s command line: the global flags ([`svckit::cli::CommonArgs`]), [`Globals`] and
/// [`Command`]; name, version and description come from the crate (`svckit::about!`).
pub type Cli = svckit::cli::Cli<Command, Globals>;

/// `dataloop`'s own global flags.
#[derive(Debug, Clone, Default, Args)]
pub struct Globals {
    /// Data directory (overrides `data_dir` in the config).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest logs (AV2 sensor log dirs, AV2 scenario Parquet, comma2k19 segments, or dirs
    /// holding them) as one batch.
    Ingest(IngestArgs),
    /// Run SQL over `warehouse` (Delta) and `olap` (Parquet).
    Sql(SqlArgs),
    /// Run a manual (rule/predicate) or the scheduled trigger now.
    Trigger(TriggerArgs),
    /// Run the scheduler and the HTTP API.
    Serve(ServeArgs),
    /// Evaluate the champion and constant velocity on a log without ingesting it.
    Eval(EvalArgs),
    /// Print the history of triggers, training and evaluation; write a plot.
    Report(ReportArgs),
    /// Ingest the bundled logs, run a scheduled and a manual trigger, check the results.
    Demo(crate::demo::DemoArgs),
    /// Measure ingest throughput and OLAP filter latency beside DuckDB.
    Bench(crate::bench::BenchArgs),
}

/// `dataloop ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Log path(s); repeatable.
    #[arg(long = "input", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Fault injection for crash tests: write the data files, then hang before the commit.
    #[arg(long, hide = true)]
    pub pause_before_commit: bool,
}

/// `dataloop sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// The query, e.g. `SELECT object_type, count(*) FROM olap GROUP BY 1`.
    pub sql: String,
    /// Print rows as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `dataloop trigger`.
#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// A rule name from the config, or a SQL predicate over the `olap` columns.
    #[arg(
        long,
        conflicts_with = "scheduled",
        required_unless_present = "scheduled"
    )]
    pub rule: Option<String>,
    /// `name=value` for a `{name}` placeholder; repeatable.
    #[arg(long = "param", value_name = "K=V")]
    pub params: Vec<String>,
    /// Run the scheduled job (full export, full training) now.
    #[arg(long)]
    pub scheduled: bool,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `dataloop serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (overrides `listen`).
    #[arg(long)]
    pub listen: Option<String>,
}

/// `dataloop eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Log path.
    #[arg(long)]
    pub input: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `dataloop report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// SVG output (default `<data_dir>/metrics.svg`).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Print the registry as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Loads the configuration the flags name.
///
/// # Errors
/// Config errors.
pub fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut config =
        Config::load(cli.common.config_sources(ENV_PREFIX)).context("loading configuration")?;
    if let Some(dir) = &cli.globals.data_dir {
        config.data_dir.clone_from(dir);
    }
    Ok(config)
}

/// Parses `k=v` parameters.
///
/// # Errors
/// When an item has no `=`.
pub fn parse_params(
    items: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    items
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                .with_context(|| format!("--param `{p}` is not of the form name=value"))
        })
        .collect()
}

/// Runs the command.
///
/// # Errors
/// Any failure, with context.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Ingest(args) => {
            let mut dl = DataLoop::open(config, svckit::cli::progress_wanted(args.json)).await?;
            let hook = if args.pause_before_commit {
                BeforeCommit::HangBeforeCommit
            } else {
                BeforeCommit::Proceed
            };
            let report = dl.ingest(&args.inputs, hook, SystemTime::now()).await?;
            if args.json {
                out(&format!("{}\n", serde_json::to_string(&report)?))?;
            } else {
                let mut text = format!(
                    "batch {} ({}): {} files, {} new clips ({} already stored), {} rejected; read warehouse version {}, now {}, olap rows {}\n",
                    report.batch_id,
                    report.ingest_date,
                    report.files,
                    report.clips,
                    report.duplicates,
                    report.rejected,
                    report.read_version,
                    report.warehouse_version,
                    report.olap_rows
                );
                for r in &report.rejections {
                    let row = r
                        .row
                        .map_or_else(|| "whole file".to_owned(), |n| format!("row {n}"));
                    text.push_str(&format!(
                        "rejected {} ({row}): {}\n",
                        r.file.display(),
                        r.reason
                    ));
                }
                out(&text)?;
            }
            Ok(if report.rejected == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
        Command::Sql(args) => {
            let dl = DataLoop::open(config, false).await?;
            let (warehouse_version, batches) = dl.sql(&args.sql).await?;
            if args.json {
                out(&format!(
                    "{}\n",
                    serde_json::Value::Array(query::to_json_rows(&batches))
                ))?;
            } else {
                out(&format!(
                    "{}read at warehouse version {warehouse_version}\n",
                    query::to_table(&batches)
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Trigger(args) => {
            let dl = DataLoop::open(config, svckit::cli::progress_wanted(args.json)).await?;
            let kind = match args.rule {
                Some(rule) if !args.scheduled => TriggerKind::Manual(MiningRequest {
                    rule,
                    params: parse_params(&args.params)?,
                }),
                _ => TriggerKind::Scheduled,
            };
            let outcome = dl.trigger(kind, SystemTime::now()).await?;
            if args.json {
                out(&format!("{}\n", serde_json::to_string(&outcome)?))?;
            } else {
                out(&format!(
                    "{} trigger{}: {} clips ({} training windows) -> model v{} ({}); on {} eval windows ADE {:.3} m FDE {:.3} m (constant velocity {:.3} / {:.3} m); {}\nID list: {}\n",
                    outcome.kind,
                    outcome
                        .rule
                        .as_ref()
                        .map(|r| format!(" `{r}`"))
                        .unwrap_or_default(),
                    outcome.clips,
                    outcome.train_windows,
                    outcome.model_version,
                    outcome.mode.as_str(),
                    outcome.eval_windows,
                    outcome.ade_m,
                    outcome.fde_m,
                    outcome.cv_ade_m,
                    outcome.cv_fde_m,
                    if outcome.promoted {
                        "promoted to champion"
                    } else {
                        "not better than the champion: kept as artefact only"
                    },
                    outcome.id_list
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let listen = args.listen.unwrap_or_else(|| config.listen.clone());
            let cron = config.schedule.cron.clone();
            let enabled = config.schedule.enabled;
            let token =
                BearerToken::from_config(&config.serve).context("starting `dataloop serve`")?;
            let dl = DataLoop::open(config, false).await?;
            serve(
                dl,
                token,
                &listen,
                &cron,
                enabled,
                Arc::new(svckit::SystemClock),
                svckit::shutdown_signal()?,
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(args) => {
            let dl = DataLoop::open(config, false).await?;
            let (m, rejections) = dl.eval_log(&args.input)?;
            if args.json {
                out(&format!(
                    "{}\n",
                    serde_json::json!({
                        "windows": m.windows, "ade_m": m.ade_m, "fde_m": m.fde_m, "miss_rate": m.miss_rate,
                        "cv_ade_m": m.cv_ade_m, "cv_fde_m": m.cv_fde_m, "cv_miss_rate": m.cv_miss_rate,
                        "rejected": rejections.len()
                    })
                ))?;
            } else {
                out(&format!(
                    "{} windows: champion ADE {:.3} m FDE {:.3} m miss {:.3}; constant velocity ADE {:.3} m FDE {:.3} m miss {:.3}\n",
                    m.windows,
                    m.ade_m,
                    m.fde_m,
                    m.miss_rate,
                    m.cv_ade_m,
                    m.cv_fde_m,
                    m.cv_miss_rate
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            let dl = DataLoop::open(config, false).await?;
            let registry = Registry::load(dl.data_dir())?;
            let plot = args
                .plot
                .unwrap_or_else(|| dl.data_dir().join("metrics.svg"));
            report::plot(&registry, &plot)?;
            if args.json {
                out(&format!("{}\n", serde_json::to_string(&registry)?))?;
            } else {
                out(&format!(
                    "{}plot: {}\n",
                    report::history_table(&registry),
                    plot.display()
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => crate::demo::run(config, args).await,
        Command::Bench(args) => crate::bench::run(config, args).await,
    }
}
