//! The closed loop (seed ¶5-¶6, ¶26-¶27, Fig. 2): ingest batches into both stores,
//! run scheduled and manual triggers, train, evaluate, promote, record.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use deltalake::arrow::array::RecordBatch;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::clip::{self, WindowSpec};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::eval::{self, Metrics};
use crate::feed::{self, Fed};
use crate::hd_map;
use crate::ingest_cut::{CUT_AHEAD, batch_id_of, cut_log, id_key, map_of};
use crate::lock::DirLock;
use crate::model::{AgentWindow, TrainMode, TrajectoryModel};
use crate::olap::Olap;
use crate::pinned::{self, EvalSet, PinnedReport};
use crate::reader::{self, Rejection};
use crate::registry::{self, ModelVersion, Registry, TriggerRecord};
use crate::sql_engine::{QueryEngine, QueryLimits};
use crate::trigger::{self, FileStore, MiningRequest};
use crate::warehouse::{self, BeforeCommit, StoredClip, Warehouse};

/// What one ingest batch did (seed ¶30: one batch per day).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestReport {
    /// Batch id (also the `batch_id` column).
    pub batch_id: String,
    /// Partition written.
    pub ingest_date: String,
    /// Files read successfully.
    pub files: usize,
    /// Clips written (new clips only).
    pub clips: usize,
    /// Clips cut but not written because a clip with the same `clip_id` is already stored or
    /// came earlier in this batch (re-ingesting a log adds nothing).
    pub duplicates: usize,
    /// Warehouse version the duplicate check read (the newest when the ingest started).
    pub read_version: i64,
    /// Number of rejected files and rows.
    pub rejected: usize,
    /// The rejections: file, row (absent for a whole file), reason.
    pub rejections: Vec<Rejection>,
    /// Warehouse version after the commit.
    pub warehouse_version: i64,
    /// Rows in the OLAP store after the batch.
    pub olap_rows: i64,
    /// Clips per log.
    pub logs: Vec<LogSummary>,
}

/// Clips from one log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogSummary {
    /// Reader used.
    pub source: String,
    /// Log id.
    pub log_id: String,
    /// Clips cut.
    pub clips: usize,
}

/// Which trigger fired.
#[derive(Debug, Clone, PartialEq)]
pub enum TriggerKind {
    /// Cron due: export all complex data, full training (seed ¶40).
    Scheduled,
    /// User request: mine, write ID list, take, train incrementally (seed ¶42-¶46).
    Manual(MiningRequest),
}

/// The outcome of one trigger: the demo's per-trigger JSON.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TriggerOutcome {
    /// `scheduled` or `manual`.
    pub kind: String,
    /// Rule name (manual only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Predicate that ran on the OLAP store (manual only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
    /// `file://` URL of the ID list (manual) or full export (scheduled).
    pub id_list: String,
    /// Clips the trigger selected.
    pub clips: usize,
    /// Of those, windows of the training split used for training.
    pub train_windows: usize,
    /// New model version.
    pub model_version: u32,
    /// `full` or `incremental`.
    pub mode: TrainMode,
    /// Model ADE on the evaluation split \[m\].
    pub ade_m: f64,
    /// Model FDE \[m\].
    pub fde_m: f64,
    /// Constant velocity ADE on the same windows \[m\].
    pub cv_ade_m: f64,
    /// Constant velocity FDE \[m\].
    pub cv_fde_m: f64,
    /// Model miss rate (FDE > 2 m).
    pub miss_rate: f64,
    /// Constant velocity miss rate.
    pub cv_miss_rate: f64,
    /// Evaluation windows.
    pub eval_windows: usize,
    /// Champion before this run (`None`: constant velocity was the bar).
    pub champion_before: Option<u32>,
    /// The bar's ADE on the same windows \[m\].
    pub baseline_ade_m: f64,
    /// Whether the new model became champion.
    pub promoted: bool,
    /// Warehouse version the data was read at.
    pub warehouse_version: i64,
    /// Scores on the pinned evaluation set (held-out logs read at their pinned version): all
    /// and moving windows, per category, model vs constant velocity.
    #[serde(default)]
    pub pinned: Option<PinnedReport>,
    /// Logs whose clips went into training (never a pinned log).
    #[serde(default)]
    pub train_logs: Vec<String>,
}

/// The system: stores, file store, registry.
#[derive(Debug)]
pub struct DataLoop {
    config: Config,
    data_dir: PathBuf,
    warehouse: Warehouse,
    olap: Olap,
    files: FileStore,
    engine: QueryEngine,
    progress: bool,
}

impl DataLoop {
    /// Opens (creating when missing) the warehouse, OLAP store and file store under
    /// [`Config::stores`] (`store_url`, a local path or `s3://` prefix, else `data_dir`) and the
    /// local `data_dir` (registry, models, locks). `progress` enables progress bars on a
    /// terminal.
    ///
    /// # Errors
    /// Store errors.
    pub async fn open(config: Config, progress: bool) -> Result<Self> {
        let data_dir = config.data_dir.clone();
        fs_err::create_dir_all(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| Error::io(&data_dir, e))?;
        let stores = match config.stores()? {
            crate::store::Location::Local(dir) if dir == config.data_dir => {
                crate::store::Location::Local(data_dir.clone())
            }
            other => other,
        };
        let warehouse = Warehouse::open_or_create_at(&stores.join("warehouse")).await?;
        let olap = Olap::open_at(&stores.join("olap"))?;
        let files = FileStore::open(&config.file_store()?)?;
        let engine = QueryEngine::new(QueryLimits::from_config(&config.serve))?;
        Ok(Self {
            config,
            data_dir,
            warehouse,
            olap,
            files,
            engine,
            progress,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The canonical data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The warehouse.
    pub fn warehouse(&self) -> &Warehouse {
        &self.warehouse
    }

    /// The OLAP store.
    pub fn olap(&self) -> &Olap {
        &self.olap
    }

    /// The file store.
    pub fn file_store(&self) -> &FileStore {
        &self.files
    }

    fn bar(&self, len: u64, message: &'static str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message);
        bar
    }

    /// Ingests every log found under `inputs` as ONE batch: one Delta commit, one OLAP file per
    /// source. Malformed files and rows are rejected and reported; the rest is kept. Clips whose
    /// `clip_id` is already stored are skipped, so re-ingesting a log adds nothing; the
    /// `ingest.lock` of the data directory keeps concurrent ingests from both adding a log.
    ///
    /// # Errors
    /// [`Error::UnknownInput`] when an input holds no log; [`Error::LockTimeout`]; store
    /// errors. Nothing is committed on error.
    pub async fn ingest(
        &mut self,
        inputs: &[PathBuf],
        hook: BeforeCommit,
        now: SystemTime,
    ) -> Result<IngestReport> {
        let _lock = DirLock::acquire(&self.data_dir, "ingest.lock", LOCK_WAIT).await?;
        let read_version = self.warehouse.refresh().await?;
        self.sync_olap().await?;
        let mut locations = Vec::new();
        for input in inputs {
            locations.extend(reader::discover(input)?);
        }
        let bar = self.bar(locations.len() as u64, "ingest");
        let spec = WindowSpec {
            stride_steps: self.config.window.stride_steps.clamp(1, 50),
        };
        let stamp: DateTime<Utc> = now.into();
        let ingest_date = stamp.format("%Y-%m-%d").to_string();
        let batch_id = batch_id_of(&locations, &stamp);
        // Log by log: each log's new clips are written as data files at once and dropped, so
        // memory is one log's clips plus the simple fields of the batch (for the OLAP file),
        // whatever the number of logs.
        let stored_logs: HashSet<String> = self
            .warehouse
            .logs()
            .await?
            .into_iter()
            .map(|(_, log)| log)
            .collect();
        let mut appender = self.warehouse.begin_append()?;
        let mut simple_batches = Vec::new();
        let mut batch_clips: HashMap<String, HashSet<u64>> = HashMap::new();
        let (mut cut_total, mut written) = (0, 0);
        let mut rejections = Vec::new();
        let mut files = 0;
        let mut logs = Vec::new();
        let mut maps = Vec::new();
        // Logs are read and cut on the blocking pool, up to CUT_AHEAD of them ahead of the one
        // being written (so reading overlaps writing on another core, and memory stays at a
        // few logs' rows); their results are taken in input order, so the rows, the
        // duplicate check and the report are those of a log-by-log loop.
        let simple_columns = warehouse::simple_schema().fields().len();
        let mut ahead = std::collections::VecDeque::new();
        let mut queue = locations.iter().cloned();
        loop {
            while ahead.len() < CUT_AHEAD {
                let Some(location) = queue.next() else { break };
                let (batch_id, ingest_date) = (batch_id.clone(), ingest_date.clone());
                ahead.push_back(tokio::task::spawn_blocking(move || {
                    cut_log(&location, spec, &batch_id, &ingest_date)
                }));
            }
            let Some(next) = ahead.pop_front() else { break };
            let cut = next
                .await
                .map_err(|e| Error::QueryRuntime(e.to_string()))??;
            files += cut.files;
            rejections.extend(cut.rejections);
            if let Some(path) = cut.map {
                maps.push((cut.log_id.clone(), path));
            }
            logs.push(LogSummary {
                source: cut.source.to_owned(),
                log_id: cut.log_id.clone(),
                clips: cut.clips,
            });
            cut_total += cut.clips;
            let Some(rows) = cut.rows else {
                bar.inc(1);
                continue;
            };
            let stored = if stored_logs.contains(&cut.log_id) {
                self.warehouse
                    .clip_ids_of_logs(std::slice::from_ref(&cut.log_id))
                    .await?
            } else {
                HashSet::new()
            };
            let earlier = batch_clips.entry(cut.log_id.clone()).or_default();
            let ids = rows.column(rows.schema().index_of("clip_id")?);
            let ids = deltalake::arrow::array::AsArray::as_string::<i32>(ids);
            let keep: Vec<bool> = ids
                .iter()
                .map(|id| {
                    let id = id.unwrap_or_default();
                    !stored.contains(id) && earlier.insert(id_key(id))
                })
                .collect();
            let kept = keep.iter().filter(|&&k| k).count();
            let rows = if kept == rows.num_rows() {
                rows
            } else {
                deltalake::arrow::compute::filter_record_batch(
                    &rows,
                    &deltalake::arrow::array::BooleanArray::from(keep),
                )?
            };
            if kept > 0 {
                // The warehouse rows start with the simple fields (`warehouse_schema`): the
                // OLAP rows are those columns, shared, not rebuilt.
                simple_batches.push(RecordBatch::try_new(
                    warehouse::simple_schema(),
                    rows.columns()
                        .get(..simple_columns)
                        .unwrap_or_default()
                        .to_vec(),
                )?);
                appender.write(rows).await?;
                written += kept;
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let duplicates = cut_total - written;
        if duplicates > 0 {
            tracing::info!(
                duplicates,
                read_version,
                "skipped clips already in the warehouse"
            );
        }
        let version = self.warehouse.commit_append(appender, hook).await?;
        if written > 0 {
            self.olap.write_batch(&batch_id, simple_batches).await?;
        }
        // The web view draws lanes from these copies (`hd_map::map_location`).
        for (log_id, path) in &maps {
            let bytes = fs_err::read(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            self.files.put(&hd_map::map_location(log_id), bytes).await?;
        }
        let olap_rows = self.olap.rows().await?;
        Ok(IngestReport {
            batch_id,
            ingest_date,
            files,
            clips: written,
            duplicates,
            read_version,
            rejected: rejections.len(),
            rejections,
            warehouse_version: version,
            olap_rows,
            logs,
        })
    }

    /// Writes OLAP files for committed warehouse batches that have none (a crash between the
    /// Delta commit and the OLAP write). Returns the rows restored.
    ///
    /// # Errors
    /// Store errors.
    pub async fn sync_olap(&self) -> Result<usize> {
        let mut restored = 0;
        for batch_id in self.warehouse.batch_ids().await? {
            if !self.olap.has_batch(&batch_id).await? {
                let rows = self.warehouse.simple_rows_of_batch(&batch_id).await?;
                restored += self.olap.write_batch(&batch_id, rows).await?;
                tracing::warn!(
                    batch_id,
                    restored,
                    "OLAP store was missing a committed batch; rebuilt"
                );
            }
        }
        Ok(restored)
    }

    /// The warehouse at its newest version (including other processes' commits).
    ///
    /// # Errors
    /// [`Error::Delta`] when the table cannot be opened.
    pub async fn current_warehouse(&self) -> Result<Warehouse> {
        Ok(Warehouse::open_location(self.warehouse.location())
            .await?
            .sharing_take_cache(&self.warehouse))
    }

    /// Runs the read-only query `sql` over `warehouse` (at its newest version, returned first)
    /// and `olap` under the `serve.query_*` limits ([`QueryEngine::run`]).
    ///
    /// # Errors
    /// [`Error::SqlRefused`], [`Error::Query`], [`Error::QueryTimeout`], [`Error::QueryMemory`],
    /// [`Error::TooManyRows`], [`Error::QueryBusy`].
    pub async fn sql(&self, sql: &str) -> Result<(i64, Vec<RecordBatch>)> {
        let warehouse = self.current_warehouse().await?;
        let batches = self.engine.run(&warehouse, &self.olap, sql).await?;
        tracing::info!(
            warehouse_version = warehouse.version(),
            rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>(),
            "query done"
        );
        Ok((warehouse.version(), batches))
    }

    /// Runs one trigger: select data, train, evaluate on the pinned evaluation set, promote if
    /// better, record in the registry. It reads the newest warehouse version (reported as
    /// `warehouse_version`) and holds the data directory's `registry.lock` throughout, so
    /// concurrent triggers, in this process or others, get distinct versions. The first trigger
    /// chooses and pins the evaluation set ([`pinned`]); every later one reads it at the pinned
    /// version. Clips of the pinned logs are never trained on.
    ///
    /// # Errors
    /// [`Error::UnknownRule`], [`Error::BadParam`], [`Error::BadPredicate`],
    /// [`Error::TooFewWindows`], [`Error::CorruptChampion`], [`Error::LockTimeout`],
    /// [`Error::NoEvalLogs`], [`Error::PinnedVersion`], [`Error::PinMismatch`], store and
    /// registry errors.
    pub async fn trigger(&self, kind: TriggerKind, now: SystemTime) -> Result<TriggerOutcome> {
        let _lock = DirLock::acquire(&self.data_dir, "registry.lock", LOCK_WAIT).await?;
        let warehouse = self.current_warehouse().await?;
        let mut registry = Registry::load(&self.data_dir)?;
        let version = registry.next_version();
        let fired_at: DateTime<Utc> = now.into();
        let eval_set = match &registry.eval_pin {
            Some(pin) => pinned::load(warehouse.location(), pin).await?,
            None => pinned::choose(&warehouse, &fired_at.to_rfc3339()).await?,
        };
        let mined = self.mine(&kind, &warehouse, version, &fired_at).await?;
        let mut record = mined.record;
        let champion = champion(&registry, &self.data_dir)?;
        let mode = match (&kind, &champion) {
            (TriggerKind::Manual(_), Some(_)) => TrainMode::Incremental,
            _ => TrainMode::Full,
        };
        let warm = match mode {
            TrainMode::Incremental => champion.as_ref().map(|(_, m)| m.clone()),
            TrainMode::Full => None,
        };
        let fed = self
            .train(&warehouse, mined.location.as_deref(), &eval_set, warm)
            .await?;
        if mined.location.is_none() {
            record.clips = fed.rows;
        }
        let (candidate, summary, train_logs) = (fed.model, fed.summary, fed.train_logs);
        let judged = evaluate(&eval_set, &candidate, champion.as_ref());
        let champion_before = champion.as_ref().map(|(v, _)| *v);
        let entry = ModelVersion {
            version,
            trigger: record.clone(),
            warehouse_version: warehouse.version(),
            mode,
            parent_version: match mode {
                TrainMode::Incremental => champion_before,
                TrainMode::Full => None,
            },
            train_windows: summary.windows,
            alpha: summary.alpha,
            metrics: judged.metrics.clone(),
            pinned: Some(judged.pinned.clone()),
            train_logs: train_logs.clone(),
            baseline_ade_fde_m: judged.baseline,
            promoted: judged.promoted,
            artefact: registry::save_model(&self.data_dir, version, &candidate)?,
        };
        registry.eval_pin = Some(eval_set.pin.clone());
        self.promote(&mut registry, entry)?;
        let metrics = judged.metrics;
        Ok(TriggerOutcome {
            kind: record.kind,
            rule: record.rule,
            predicate: record.predicate,
            id_list: record.id_list.unwrap_or_default(),
            clips: record.clips,
            train_windows: summary.windows,
            model_version: version,
            mode,
            ade_m: metrics.ade_m,
            fde_m: metrics.fde_m,
            cv_ade_m: metrics.cv_ade_m,
            cv_fde_m: metrics.cv_fde_m,
            miss_rate: metrics.miss_rate,
            cv_miss_rate: metrics.cv_miss_rate,
            eval_windows: metrics.windows,
            champion_before,
            baseline_ade_m: judged.baseline.0,
            promoted: judged.promoted,
            warehouse_version: warehouse.version(),
            pinned: Some(judged.pinned),
            train_logs,
        })
    }

    /// Trigger step 1, mine (seed ¶40-¶45): a scheduled trigger selects every clip of the
    /// warehouse version it read (streamed into training by [`DataLoop::train`]; no copy is
    /// written, the version in the registry reproduces the export by time travel); a manual one
    /// runs its rule's predicate on the OLAP store and stores the mined ID list
    /// (`id_lists/vNNNN-RULE.txt`). Returns the trigger's record and, for a manual trigger, the
    /// ID list's file-store location.
    async fn mine(
        &self,
        kind: &TriggerKind,
        warehouse: &Warehouse,
        version: u32,
        fired_at: &DateTime<Utc>,
    ) -> Result<Mined> {
        match kind {
            TriggerKind::Scheduled => {
                tracing::info!(
                    warehouse_version = warehouse.version(),
                    "scheduled trigger: full export streamed into training"
                );
                Ok(Mined {
                    record: TriggerRecord {
                        kind: "scheduled".to_owned(),
                        rule: None,
                        predicate: None,
                        params: Default::default(),
                        id_list: None,
                        clips: 0,
                        fired_at: fired_at.to_rfc3339(),
                    },
                    location: None,
                })
            }
            TriggerKind::Manual(request) => {
                let resolved = trigger::resolve(request, &self.config.rules)?;
                let ctx = crate::olap::session();
                self.olap.register(&ctx).await?;
                let ids = trigger::mine(&ctx, &resolved.predicate).await?;
                let location = format!("id_lists/v{version:04}-{}.txt", resolved.name);
                let url = self.files.put_id_list(&location, &ids).await?;
                tracing::info!(rule = %resolved.name, ids = ids.len(), id_list = %url, "manual trigger: mined");
                Ok(Mined {
                    record: TriggerRecord {
                        kind: "manual".to_owned(),
                        rule: Some(resolved.name),
                        predicate: Some(resolved.predicate),
                        params: resolved.params,
                        id_list: Some(url),
                        clips: ids.len(),
                        fired_at: fired_at.to_rfc3339(),
                    },
                    location: Some(location),
                })
            }
        }
    }

    /// Trigger steps 2-3, take and train (seed ¶46, ¶49-¶50): streams the selection into a
    /// trainer ([`feed::train_streamed`]), so memory stays bounded whatever the selection's
    /// size. The selection is every row of
    /// `warehouse` ([`Warehouse::export_stream`]) when `id_list` is `None`, else the ID list at
    /// that file-store location taken by id ([`Warehouse::take_raw`]). Clips of the pinned logs
    /// are skipped; the fit starts from `warm` when the trigger is incremental (progress bar
    /// "train", in rows).
    async fn train(
        &self,
        warehouse: &Warehouse,
        id_list: Option<&str>,
        eval_set: &EvalSet,
        warm: Option<TrajectoryModel>,
    ) -> Result<Fed> {
        let bar = self.bar(0, "train");
        match id_list {
            None => {
                let batches = warehouse
                    .export_stream()
                    .await?
                    .map(|b| b.map_err(Error::from));
                feed::train_streamed(batches, &eval_set.pin, warm, bar).await
            }
            Some(location) => {
                let ids = self.files.get_id_list(location).await?;
                bar.set_length(ids.len() as u64);
                let taken = warehouse.take_raw(&ids).await?;
                let batches = futures::stream::iter(taken.batch.into_iter().map(Ok));
                feed::train_streamed(batches, &eval_set.pin, warm, bar).await
            }
        }
    }

    /// Trigger step 5, promote: records the version in the registry, champion when it beat
    /// the baseline (seed ¶55, ¶65), and saves the registry.
    fn promote(&self, registry: &mut Registry, entry: ModelVersion) -> Result<()> {
        let (version, promoted) = (entry.version, entry.promoted);
        tracing::info!(
            version,
            mode = entry.mode.as_str(),
            ade_m = entry.metrics.ade_m,
            fde_m = entry.metrics.fde_m,
            cv_ade_m = entry.metrics.cv_ade_m,
            promoted,
            "trained and evaluated"
        );
        registry.versions.push(entry);
        if promoted {
            registry.champion = Some(version);
        }
        registry.save(&self.data_dir)
    }

    /// Evaluates the champion and constant velocity on every window of the logs under `path`
    /// without ingesting them.
    ///
    /// # Errors
    /// [`Error::NoChampion`], [`Error::CorruptChampion`], [`Error::UnknownInput`],
    /// [`Error::NoWindows`].
    pub fn eval_log(&self, path: &Path) -> Result<(Metrics, Vec<Rejection>)> {
        let registry = Registry::load(&self.data_dir)?;
        let (_, champion) = champion(&registry, &self.data_dir)?
            .ok_or_else(|| Error::NoChampion(self.data_dir.join("registry.json")))?;
        let spec = WindowSpec {
            stride_steps: self.config.window.stride_steps.clamp(1, 50),
        };
        let mut windows = Vec::new();
        let mut rejections = Vec::new();
        for location in reader::discover(path)? {
            let log = reader::read_log(&location);
            rejections.extend(log.rejections.iter().cloned());
            let (map, _) = map_of(&location, &mut rejections);
            for c in clip::extract(&log, spec, map.as_ref()) {
                windows.push((
                    c.simple.category.clone(),
                    AgentWindow::from_trajectory(&c.trajectory),
                ));
            }
        }
        if windows.is_empty() {
            return Err(Error::NoWindows(path.to_path_buf()));
        }
        Ok((eval::evaluate(Some(&champion), &windows), rejections))
    }
}

/// Longest wait for another process's `ingest.lock` or `registry.lock`.
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// What [`DataLoop::mine`] stored: the trigger's record and, for a manual trigger, the ID
/// list's file-store location.
struct Mined {
    record: TriggerRecord,
    location: Option<String>,
}

/// What [`DataLoop::evaluate`] found: the candidate's metrics, the baseline's (ADE, FDE) in
/// metres, and whether the candidate beat it.
struct Judged {
    metrics: Metrics,
    pinned: PinnedReport,
    baseline: (f64, f64),
    promoted: bool,
}

/// Trigger step 4, evaluate: scores the candidate on the pinned evaluation set, against the
/// champion when there is one and against constant velocity otherwise (seed ¶54-¶55). The
/// promotion bar is ADE and FDE over all pinned windows.
fn evaluate(
    eval_set: &EvalSet,
    candidate: &TrajectoryModel,
    champion: Option<&(u32, TrajectoryModel)>,
) -> Judged {
    let pinned = pinned::report(Some(candidate), eval_set);
    let metrics = pinned.all.clone();
    let baseline = match champion {
        Some((_, m)) => {
            let b = eval::evaluate(Some(m), &eval_set.windows);
            (b.ade_m, b.fde_m)
        }
        None => (metrics.cv_ade_m, metrics.cv_fde_m),
    };
    let promoted = eval::beats(&metrics, baseline.0, baseline.1);
    Judged {
        metrics,
        pinned,
        baseline,
        promoted,
    }
}

/// The champion of `registry` with its model, `None` when there is none.
///
/// # Errors
/// [`Error::CorruptChampion`] when the champion's artefact is missing or malformed.
fn champion(registry: &Registry, data_dir: &Path) -> Result<Option<(u32, TrajectoryModel)>> {
    let Some(record) = registry.champion_record() else {
        if let Some(version) = registry.champion {
            return Err(Error::CorruptChampion {
                version,
                path: data_dir.join("registry.json"),
                reason: "the registry has no record of that version".to_owned(),
            });
        }
        return Ok(None);
    };
    let path = data_dir.join(&record.artefact);
    match registry::load_model(&path) {
        Ok(model) => Ok(Some((record.version, model))),
        Err(e) => Err(Error::CorruptChampion {
            version: record.version,
            path,
            reason: e.chain(),
        }),
    }
}

/// `(category, agent window)` pairs of stored clips.
pub fn agent_windows(clips: &[StoredClip]) -> Vec<(String, AgentWindow)> {
    clips
        .iter()
        .map(|c| {
            (
                c.category.clone(),
                AgentWindow::from_trajectory(&c.trajectory),
            )
        })
        .collect()
}
