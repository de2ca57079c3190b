//! Command line: `pagefeat extract | dump | train | detect | serve | bench | demo`.
//!
//! Exit codes: 0 success; 1 an error (printed with its causes); 2 usage errors (clap) and a
//! demo that ran but failed one of its checks; 3 `detect` when at least one page failed
//! (the others are still reported).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use svckit::cli::{CommonArgs, stdout_line};
use svckit::{Clock, SystemClock};

use crate::adfilter::AdFilter;
use crate::config::{Config, ENV_PREFIX, resolve_path};
use crate::engine::ChromiumBrowser;
use crate::extract::{ExtractOptions, Pipeline, ProfileArg, read_page};
use crate::layout::EngineKind;
use crate::recognize::{PageResult, Recognizer};
use crate::stat_node::{self, Trigger};
use crate::training;

/// `pagefeat`'s command line: the global flags ([`svckit::cli::CommonArgs`]) and [`Command`];
/// name, version and description come from the crate (`svckit::about!`).
pub type Cli = svckit::cli::Cli<Command>;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Lay a page out and write its StatTree (protobuf).
    Extract(ExtractArgs),
    /// Print a StatTree file as JSON.
    Dump(DumpArgs),
    /// Train the ad model from serialised StatTrees and the soft-404 model from the dead-link
    /// feature cache (`paths.deadlinks_dir`).
    Train(TrainArgs),
    /// Dead-link data: rebuild the feature cache from the corpus, evaluate held out by site.
    Deadlinks(DeadlinksArgs),
    /// Ad-node recognition held out by site: layout-only and token-feature models against
    /// the filter-list labels of the bundled pages and, with `--corpus`, the shared corpus.
    Adnodes(AdnodesArgs),
    /// Recognise soft-404s, ad nodes and popups on pages (one JSON object per page).
    Detect(DetectArgs),
    /// HTTP service: POST HTML to /extract, get the StatTree and detections.
    Serve(ServeArgs),
    /// Pages per second of both engines on the bundled pages, in the same run.
    Bench(BenchArgs),
    /// Popup recognition on the labelled popup set: precision and recall per kind, by split
    /// and rendering, with bootstrap intervals over families.
    Popups(PopupsArgs),
    /// Layout agreement between the embedded engine and Chromium, page by page: rendering
    /// mode, matched boxes, share with IoU > 0.5, document heights, first box that parts.
    Agreement(AgreementArgs),
    /// Run everything on the bundled pages and check the results.
    Demo(DemoArgs),
}

/// `pagefeat extract`.
#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The HTML file.
    pub page: PathBuf,
    /// Layout engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Embedded)]
    pub engine: EngineKind,
    /// Profile.
    #[arg(long, value_enum, default_value_t = ProfileArg::Panorama)]
    pub profile: ProfileArg,
    /// CSS selector of the region (local profile).
    #[arg(long)]
    pub selector: Option<String>,
    /// Scroll to this offset, px, and emit the newly visible objects (viewport profile).
    #[arg(long, allow_hyphen_values = true)]
    pub scroll_y: Option<i32>,
    /// Output file (protobuf StatTree; the last tree of the profile).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also apply the trained models in this directory (ad scores in the tree).
    #[arg(long)]
    pub models: Option<PathBuf>,
}

/// `pagefeat popups`.
#[derive(Debug, Args)]
pub struct PopupsArgs {
    /// The labelled set (a directory with `LABELS.tsv`; default `paths.pages_dir/popup-set`).
    #[arg(long = "labels", value_name = "DIR")]
    pub set: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `pagefeat dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// A protobuf StatTree file.
    pub file: PathBuf,
}

/// `pagefeat train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Directory of `<category>__<page>.pb` trees (see `corpus`); made from the bundled pages
    /// (all of them, held-out ones too) when absent.
    #[arg(long)]
    pub trees: Option<PathBuf>,
    /// Where to write `ad.json` and `soft404.json` (default `paths.models_dir`).
    #[arg(long)]
    pub models: Option<PathBuf>,
}

/// `pagefeat deadlinks`.
#[derive(Debug, Args)]
pub struct DeadlinksArgs {
    /// The shared page corpus (`pages-corpus`, with `pages/*.gz`): rebuild the rows from it and
    /// the bundled pages instead of reading the cache.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Write the rebuilt rows to the cache (`paths.deadlinks_dir/features.tsv`).
    #[arg(long, requires = "corpus")]
    pub write: bool,
    /// Folds by site.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
}

/// `pagefeat adnodes`.
#[derive(Debug, Args)]
pub struct AdnodesArgs {
    /// The shared page corpus (`pages-corpus`, with `pages/*.gz`), added to the bundled pages.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// Folds by site.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Token columns of the token model.
    #[arg(long, default_value_t = crate::ad_tokens::DEFAULT_TOKENS)]
    pub tokens: usize,
    /// Sample cache (gzipped JSON): read instead of laying out when it exists, else written
    /// after laying out (layout and labels are deterministic).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Write the linear model's held-out errors (TSV) to this file.
    #[arg(long)]
    pub errors: Option<PathBuf>,
    /// Skip the two forests (minutes per fold) and evaluate the linear model only.
    #[arg(long)]
    pub no_forest: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `pagefeat detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// HTML files.
    #[arg(required = true)]
    pub pages: Vec<PathBuf>,
    /// One JSON object per page on stdout (default: a short line per page).
    #[arg(long)]
    pub json: bool,
    /// Layout engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Embedded)]
    pub engine: EngineKind,
    /// Models directory (default `paths.models_dir`).
    #[arg(long)]
    pub models: Option<PathBuf>,
    /// Append one JSON line per page with the result and its StatTree to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

/// `pagefeat serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen address (default `serve.listen`, 127.0.0.1:7600).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Models directory (default `paths.models_dir`); without models only filter labels.
    #[arg(long)]
    pub models: Option<PathBuf>,
}

/// `pagefeat bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// At most this many bundled pages (0 = all).
    #[arg(long, default_value_t = 0)]
    pub pages: usize,
    /// Print the rows as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// `pagefeat agreement`.
#[derive(Debug, Args)]
pub struct AgreementArgs {
    /// HTML files (default: every bundled page, `paths.pages_dir`).
    pub pages: Vec<PathBuf>,
    /// Only bundled pages whose key (`<category>__<stem>`) contains this.
    #[arg(long)]
    pub only: Option<String>,
    /// Write both engines' trees of each page here (`<key>.embedded.pb`, `<key>.chromium.pb`).
    #[arg(long)]
    pub trees: Option<PathBuf>,
    /// Print the report as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// `pagefeat demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the report as one JSON line (the last line on stdout).
    #[arg(long)]
    pub json: bool,
    /// Keep the trees, models and logs here (default: a temporary directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Loads and validates the configuration named by the common flags.
///
/// # Errors
/// Unreadable files, bad values.
pub fn load_config(common: &CommonArgs) -> anyhow::Result<Config> {
    let config: Config =
        svckit::cli::load_config(common, ENV_PREFIX).context("loading the configuration")?;
    config.validate()?;
    Ok(config)
}

/// A pipeline that labels with the filter list only (no models): what training and the
/// held-out ad-node evaluation lay pages out with.
///
/// # Errors
/// An unreadable filter list.
fn labelling_pipeline(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Pipeline> {
    let recognizer = Recognizer {
        ad: None,
        soft404: None,
        ..load_recognizer(config, None, false)?
    };
    Ok(Pipeline::new(config.clone(), Arc::new(recognizer), clock))
}

/// The recognizer: the filter list from the configuration, the models from `models` (or
/// `paths.models_dir`) when `need_models`, else whatever is there.
///
/// # Errors
/// An unreadable filter list; missing models when `need_models`.
pub fn load_recognizer(
    config: &Config,
    models: Option<&Path>,
    need_models: bool,
) -> anyhow::Result<Recognizer> {
    let list = resolve_path(&config.paths.filter_list);
    let filter = AdFilter::from_file(&list)?;
    let dir = models.map_or_else(|| config.paths.models_dir.clone(), Path::to_path_buf);
    let (ad, soft404) = match training::load_models(&dir) {
        Ok((ad, soft)) => (Some(ad), Some(soft)),
        Err(e) if need_models => return Err(e.into()),
        Err(_) => (None, None),
    };
    Ok(Recognizer {
        filter: Some(Arc::new(filter)),
        ad,
        soft404,
    })
}

/// The JSON object `detect --json` prints per page (issue 6).
#[derive(Debug, Clone, Serialize)]
pub struct DetectLine {
    /// The page path.
    pub page: String,
    /// Soft-404 verdict.
    pub soft404: bool,
    /// Soft-404 score in [0, 1].
    pub soft404_score: f64,
    /// Nodes the ad classifier called ads.
    pub ad_nodes: usize,
    /// Popups: kind and root node id.
    pub popups: Vec<PopupLine>,
}

/// One popup in [`DetectLine`].
#[derive(Debug, Clone, Serialize)]
pub struct PopupLine {
    /// `consent`, `ad`, `newsletter` or `other` ([`crate::popup::classify`]).
    pub kind: crate::popup::PopupKind,
    /// Root node id in the panorama tree.
    pub node: u32,
}

impl DetectLine {
    /// The line for `result`.
    pub fn of(page: &str, result: &PageResult) -> Self {
        let (soft404, score) = result.soft404.unwrap_or((false, 0.0));
        Self {
            page: page.to_owned(),
            soft404,
            soft404_score: (score * 1000.0).round() / 1000.0,
            ad_nodes: result.ad_nodes,
            popups: result
                .popups
                .iter()
                .map(|p| PopupLine {
                    kind: p.kind,
                    node: p.node,
                })
                .collect(),
        }
    }
}

async fn maybe_browser(
    engine: EngineKind,
    config: &Config,
) -> anyhow::Result<Option<ChromiumBrowser>> {
    Ok(match engine {
        EngineKind::Chromium => Some(
            ChromiumBrowser::launch(&config.chromium, config.viewport_size())
                .await
                .context("starting chromium (run scripts/setup if it is missing)")?,
        ),
        EngineKind::Embedded => None,
    })
}

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command hit; printed by `main` with its causes.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = load_config(&cli.common)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command {
        Command::Extract(args) => {
            let recognizer =
                load_recognizer(&config, args.models.as_deref(), args.models.is_some())?;
            let max = config.input.max_bytes;
            let pipeline = Pipeline::new(config.clone(), Arc::new(recognizer), clock);
            let page = read_page(&args.page, max)?;
            let browser = maybe_browser(args.engine, &config).await?;
            let options = ExtractOptions {
                engine: args.engine,
                profile: args.profile,
                selector: args.selector.clone(),
                scroll_y: args.scroll_y,
            };
            let extraction = pipeline.extract(&page, browser.as_ref(), &options).await?;
            let last = extraction.trees.last().cloned().unwrap_or_else(|| {
                let mut empty = extraction.result.tree.clone_header();
                empty.profile = stat_node::Profile::Local as i32;
                empty
            });
            stat_node::write_file(&args.output, &last)?;
            let trees: Vec<serde_json::Value> = extraction
                .trees
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "trigger": Trigger::try_from(t.trigger).unwrap_or(Trigger::Unspecified).as_str_name(),
                        "nodes": t.nodes.len(),
                        "scroll_y": t.scroll_y,
                    })
                })
                .collect();
            let summary = serde_json::json!({
                "page": args.page.display().to_string(),
                "engine": args.engine.as_str(),
                "profile": args.profile,
                "trees": trees,
                "panorama_nodes": extraction.result.tree.nodes.len(),
                "filter_matches": extraction.result.labels.cosmetic + extraction.result.labels.network,
                "popups": extraction.result.popups.len(),
                "output": args.output.display().to_string(),
                "bytes": stat_node::encode(&last).len(),
            });
            stdout_line(&summary.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dump(args) => {
            let tree = stat_node::read_file(&args.file)?;
            stdout_line(&serde_json::to_string_pretty(&stat_node::to_json(&tree))?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(args) => {
            let models = args
                .models
                .unwrap_or_else(|| config.paths.models_dir.clone());
            let trees = match &args.trees {
                Some(dir) => training::load_trees(dir)?,
                None => {
                    let pipeline = labelling_pipeline(&config, clock)?;
                    let pages = crate::corpus::bundled(&resolve_path(&config.paths.pages_dir))?;
                    crate::demo::corpus_trees(&pipeline, &pages, None, false)
                        .await?
                        .0
                }
            };
            let deadlinks = crate::deadlink_data::read_features(
                &resolve_path(&config.paths.deadlinks_dir)
                    .join(crate::deadlink_data::FEATURES_FILE),
            )?;
            let (ad, soft404, summary) =
                training::train(&trees, &deadlinks, crate::model::ForestParams::default())?;
            training::save_models(&models, &ad, &soft404)?;
            tracing::info!(dir = %models.display(), "models saved");
            stdout_line(&serde_json::to_string(&summary)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Adnodes(args) => {
            let pipeline = labelling_pipeline(&config, clock)?;
            let pages = crate::deadlink_data::sources(
                &resolve_path(&config.paths.pages_dir),
                args.corpus.as_deref(),
            )?;
            let started = std::time::Instant::now();
            let cached = match &args.cache {
                Some(path) if path.exists() => Some(crate::ad_eval::read_cache(path)?),
                _ => None,
            };
            let (samples, skipped) = match cached {
                Some(samples) => (samples, Vec::new()),
                None => {
                    let bar = crate::demo::progress_bar(!args.json, pages.len() as u64, "layout");
                    let out = crate::ad_eval::label_pages(&pipeline, &pages, Some(&bar)).await?;
                    bar.finish_and_clear();
                    if let Some(path) = &args.cache {
                        crate::ad_eval::write_cache(path, &out.0)?;
                    }
                    out
                }
            };
            let layout_seconds = started.elapsed().as_secs_f64();
            let mut evaluation = crate::ad_eval::evaluate(
                &samples,
                args.folds,
                args.tokens,
                crate::model::ForestParams::default(),
                !args.no_forest,
            )?;
            evaluation.skipped = skipped;
            evaluation.layout_seconds = layout_seconds;
            if let Some(path) = &args.errors {
                fs_err::write(path, evaluation.linear_errors.join("\n"))
                    .map_err(|e| crate::error::Error::io("writing", path, e))?;
            }
            if args.json {
                stdout_line(&serde_json::to_string(&evaluation)?)?;
            } else {
                for line in crate::ad_eval::table(&evaluation) {
                    stdout_line(&line)?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Deadlinks(args) => {
            let dir = resolve_path(&config.paths.deadlinks_dir);
            let hand = crate::deadlink_data::read_hand_checked(
                &dir.join(crate::deadlink_data::HAND_CHECKED_FILE),
            )?;
            let samples = match &args.corpus {
                Some(corpus) => {
                    let sources = crate::deadlink_data::sources(
                        &resolve_path(&config.paths.pages_dir),
                        Some(corpus),
                    )?;
                    let (samples, skipped) =
                        crate::deadlink_data::build(&sources, &hand, config.input.max_bytes);
                    for s in &skipped {
                        tracing::warn!(page = %s, "skipped");
                    }
                    if args.write {
                        crate::deadlink_data::write_features(
                            &dir.join(crate::deadlink_data::FEATURES_FILE),
                            &samples,
                        )?;
                    }
                    samples
                }
                None => crate::deadlink_data::read_features(
                    &dir.join(crate::deadlink_data::FEATURES_FILE),
                )?,
            };
            let evaluation = crate::deadlink_data::evaluate(
                &samples,
                &hand,
                args.folds,
                crate::deadlink_data::forest_params(7),
            )?;
            stdout_line(&serde_json::to_string(&evaluation)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Detect(args) => {
            let recognizer = load_recognizer(&config, args.models.as_deref(), true)?;
            let max = config.input.max_bytes;
            let pipeline = Pipeline::new(config.clone(), Arc::new(recognizer), clock);
            let browser = maybe_browser(args.engine, &config).await?;
            let options = ExtractOptions {
                engine: args.engine,
                profile: ProfileArg::Panorama,
                selector: None,
                scroll_y: None,
            };
            let mut log = match &args.log {
                Some(path) => Some(
                    fs_err::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                ),
                None => None,
            };
            let mut failed = 0;
            for path in &args.pages {
                let name = path.display().to_string();
                let outcome = match read_page(path, max) {
                    Ok(page) => pipeline.extract(&page, browser.as_ref(), &options).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(extraction) => {
                        let line = DetectLine::of(&name, &extraction.result);
                        tracing::info!(page = %name, soft404 = line.soft404, ad_nodes = line.ad_nodes, popups = line.popups.len(), "detected");
                        if let Some(log) = log.as_mut() {
                            let record = serde_json::json!({
                                "result": &line,
                                "stat_tree": stat_node::to_json(&extraction.result.tree),
                            });
                            writeln!(log, "{record}")?;
                        }
                        if args.json {
                            stdout_line(&serde_json::to_string(&line)?)?;
                        } else {
                            stdout_line(&format!(
                                "{name}: soft404={} ({:.3}) ad_nodes={} popups={}",
                                line.soft404,
                                line.soft404_score,
                                line.ad_nodes,
                                line.popups.len()
                            ))?;
                        }
                    }
                    Err(error) => {
                        failed += 1;
                        tracing::error!(page = %name, error = %error, "page failed");
                        if args.json {
                            let line =
                                serde_json::json!({"page": name, "error": error.to_string()});
                            stdout_line(&line.to_string())?;
                        }
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Serve(args) => {
            let recognizer = load_recognizer(&config, args.models.as_deref(), false)?;
            let listen = args.listen.unwrap_or(config.serve.listen);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            tracing::info!(addr = %listener.local_addr()?, "pagefeat serving");
            let pipeline = Arc::new(Pipeline::new(config, Arc::new(recognizer), clock));
            crate::serve::run(listener, pipeline, svckit::shutdown_signal()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => {
            let rows =
                crate::bench::run(&config, args.pages, svckit::cli::progress_wanted(args.json))
                    .await?;
            let dead = crate::deadlink_report::run(
                &resolve_path(&config.paths.deadlinks_dir),
                &resolve_path(&config.paths.pages_dir),
                config.input.max_bytes,
                crate::model::ForestParams::default().seed,
            )?;
            let report = serde_json::json!({
                "engines": &rows,
                "soft404": crate::deadlink_report::summary_json(&dead.evaluation.held_out),
                "soft404_real_pages_only":
                    crate::deadlink_report::summary_json(&dead.evaluation.held_out_real),
                "soft404_feature_pages_per_s": (dead.feature_pages_per_s * 10.0).round() / 10.0,
                "soft404_evaluation_seconds": (dead.seconds * 1000.0).round() / 1000.0,
            });
            svckit::cli::print_report(&report, args.json, || {
                let mut lines = crate::bench::table(&rows);
                lines.extend(crate::deadlink_report::table(&dead));
                lines.join("\n")
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Popups(args) => {
            let set = args.set.unwrap_or_else(|| {
                resolve_path(&config.paths.pages_dir).join(crate::popup_eval::SET_DIR)
            });
            let recognizer = load_recognizer(&config, None, false)?;
            let pipeline = Pipeline::new(config.clone(), Arc::new(recognizer), clock);
            let browser = maybe_browser(EngineKind::Chromium, &config).await?;
            let evaluation =
                crate::popup_eval::evaluate(&pipeline, browser.as_ref(), &set, &config).await?;
            svckit::cli::print_report(&serde_json::to_value(&evaluation)?, args.json, || {
                evaluation.table().join("\n")
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agreement(args) => {
            let pipeline = labelling_pipeline(&config, clock)?;
            let keyed: Vec<(String, PathBuf)> = if args.pages.is_empty() {
                crate::corpus::bundled(&resolve_path(&config.paths.pages_dir))?
                    .into_iter()
                    .map(|p| (p.key(), p.path))
                    .filter(|(k, _)| args.only.as_deref().is_none_or(|o| k.contains(o)))
                    .collect()
            } else {
                args.pages
                    .iter()
                    .map(|p| (p.display().to_string(), p.clone()))
                    .collect()
            };
            let pages: Vec<(String, &Path)> = keyed
                .iter()
                .map(|(k, p)| (k.clone(), p.as_path()))
                .collect();
            let quick = crate::engine::ChromiumConfig {
                settle_ms: 0,
                ..config.chromium.clone()
            };
            if let Some(dir) = &args.trees {
                fs_err::create_dir_all(dir)?;
            }
            let browser = ChromiumBrowser::launch(&quick, config.viewport_size()).await?;
            let report =
                crate::agreement::run(&pipeline, &browser, &pages, args.trees.as_deref()).await?;
            drop(browser);
            svckit::cli::print_report(&serde_json::to_value(&report)?, args.json, || {
                crate::agreement::table(&report).join("\n")
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let outcome = crate::demo::run(
                &config,
                args.out.as_deref(),
                svckit::cli::progress_wanted(args.json),
            )
            .await?;
            Ok(svckit::cli::finish_demo(
                &outcome.report,
                &outcome.failures,
                args.json,
            )?)
        }
    }
}
