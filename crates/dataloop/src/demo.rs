//! `dataloop demo`: the whole loop on the bundled logs (issue "Done when"): ingest all of
//! `data/driving` as one batch, start the service (scheduler + HTTP API) on 127.0.0.1, let a
//! one-shot cron expression fire the scheduled trigger (full export, full training), send a
//! manual trigger over HTTP (mining rule -> ID list -> take -> incremental training), check that
//! the ID list equals the rule's SQL through `/sql`, write the report and plot, and run the
//! Argoverse 2 protocol on the bundled motion-forecasting scenario(s) (`av2_protocol`). Both
//! triggers are scored on the pinned evaluation set (`pinned`: held-out logs, all and moving
//! windows, per category). Prints one JSON line last with `--json`; exits 2 when a check fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use clap::Args;
use serde_json::{Value, json};

use crate::auth::BearerToken;
use crate::av2_protocol::{self, ProtocolReport};
use crate::closed_loop::{DataLoop, TriggerOutcome};
use crate::config::Config;
use crate::model::AgentWindow;
use crate::registry::Registry;
use crate::report;
use crate::report::out;
use crate::service::start_service;
use crate::warehouse::BeforeCommit;
use crate::warehouse::{self, Warehouse};

/// `dataloop demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the report as one JSON line (last line of stdout).
    #[arg(long)]
    pub json: bool,
    /// Logs to ingest (default: the bundled `data/driving`).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Mining rule for the manual trigger.
    #[arg(long, default_value = "hard_braking")]
    pub rule: String,
    /// Keep the data directory here (must not exist yet) instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

fn bundled_data() -> PathBuf {
    let here = PathBuf::from("data/driving");
    if here.is_dir() {
        here
    } else {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/driving"))
    }
}

/// A cron expression (with seconds and year) that is due exactly once, at `at`.
fn one_shot_cron(at: DateTime<Utc>) -> String {
    format!(
        "{} {} {} {} {} * {}",
        at.second(),
        at.minute(),
        at.hour(),
        at.day(),
        at.month(),
        at.year()
    )
}

/// Runs the demo.
///
/// # Errors
/// Any step failing outright (checks that fail give exit code 2 instead).
pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let _temp;
    config.data_dir = match &args.keep {
        Some(dir) => {
            if dir.exists() {
                bail!(
                    "`{}` already exists; the demo needs a fresh directory",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("dataloop-demo-")
                .tempdir()
                .context("creating a temporary directory")?;
            let path = t.path().to_path_buf();
            _temp = t;
            path
        }
    };
    config.file_store_dir = None;
    let progress = !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut dl = DataLoop::open(config.clone(), progress).await?;
    let input = args.input.clone().unwrap_or_else(bundled_data);
    let ingest = dl
        .ingest(
            std::slice::from_ref(&input),
            BeforeCommit::Proceed,
            SystemTime::now(),
        )
        .await?;
    let mut notes = vec![format!(
        "ingested {}: {} files, {} clips, {} rejected -> warehouse v{}, {} OLAP rows",
        input.display(),
        ingest.files,
        ingest.clips,
        ingest.rejected,
        ingest.warehouse_version,
        ingest.olap_rows
    )];
    for r in &ingest.rejections {
        let row = r
            .row
            .map_or_else(|| "whole file".to_owned(), |n| format!("row {n}"));
        notes.push(format!(
            "  rejected {} ({row}): {}",
            r.file.display(),
            r.reason
        ));
    }

    // The service: scheduler with a cron expression due once, 2 s from now, and the HTTP API.
    let due = Utc::now() + chrono::Duration::seconds(2);
    let cron = one_shot_cron(due);
    let token = random_token()?;
    let service = start_service(
        dl,
        BearerToken::new(&token)?,
        "127.0.0.1:0",
        &cron,
        true,
        Arc::new(svckit::SystemClock),
    )
    .await?;
    let addr = service.listener.local_addr()?;
    let state = service.state.clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(service.run(shutdown.clone().cancelled_owned()));
    notes.push(format!(
        "service on http://{addr}; scheduled trigger cron `{cron}`"
    ));

    let scheduled = wait_for_scheduled(&state, Duration::from_secs(120)).await?;
    let client = reqwest::Client::new();
    let manual: TriggerOutcome = {
        let response = client
            .post(format!("http://{addr}/trigger"))
            .bearer_auth(&token)
            .json(&json!({ "rule": args.rule, "params": {} }))
            .send()
            .await
            .context("POST /trigger")?;
        let status = response.status();
        let body: Value = response.json().await.context("reading /trigger answer")?;
        if !status.is_success() {
            bail!("manual trigger failed ({status}): {body}");
        }
        serde_json::from_value(body.clone())
            .with_context(|| format!("unexpected /trigger answer {body}"))?
    };
    // The same predicate through the SQL path.
    let predicate = manual.predicate.clone().unwrap_or_default();
    let sql = format!("SELECT clip_id FROM olap WHERE {predicate} ORDER BY clip_id");
    let rows: Value = client
        .post(format!("http://{addr}/sql"))
        .bearer_auth(&token)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .context("POST /sql")?
        .json()
        .await?;
    let sql_ids: Vec<String> = rows["rows"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["clip_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let list_path = manual.id_list.trim_start_matches("file://").to_owned();
    let listed: Vec<String> = fs_err::read_to_string(&list_path)
        .with_context(|| format!("reading the ID list `{list_path}`"))?
        .lines()
        .map(str::to_owned)
        .collect();
    let status: Value = client
        .get(format!("http://{addr}/status"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    shutdown.cancel();
    serving.await.context("joining the service")??;

    let registry = Registry::load(&config.data_dir.canonicalize()?)?;
    let plot = config.data_dir.join("metrics.svg");
    report::plot(&registry, &plot)?;
    notes.push(report::history_table(&registry));
    notes.push(format!("plot: {}", plot.display()));

    let protocol = av2_protocol_runs(&config.data_dir.canonicalize()?, &registry, &input).await?;
    for run in &protocol {
        notes.push(run.note());
    }

    let checks = [
        (
            "no_rejected_bundled_file",
            ingest.rejected == 0 && ingest.files > 0,
        ),
        (
            "scheduled_beats_cv",
            scheduled.ade_m < scheduled.cv_ade_m && scheduled.fde_m < scheduled.cv_fde_m,
        ),
        ("scheduled_promoted", scheduled.promoted),
        (
            "manual_incremental",
            manual.mode == crate::model::TrainMode::Incremental,
        ),
        (
            "id_list_equals_sql",
            !listed.is_empty() && listed == sql_ids,
        ),
        ("eval_windows", scheduled.eval_windows > 0),
        (
            "same_pinned_set",
            scheduled.pinned.as_ref().map(|p| &p.fingerprint)
                == manual.pinned.as_ref().map(|p| &p.fingerprint),
        ),
        (
            "no_eval_log_trained",
            scheduled.pinned.as_ref().is_some_and(|p| {
                p.log_ids
                    .iter()
                    .all(|l| !scheduled.train_logs.contains(l) && !manual.train_logs.contains(l))
            }),
        ),
    ];
    let failed: Vec<&str> = checks
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    let wall_s = started.elapsed().as_secs_f64();
    let margin_ade = 100.0 * (1.0 - scheduled.ade_m / scheduled.cv_ade_m);
    let margin_fde = 100.0 * (1.0 - scheduled.fde_m / scheduled.cv_fde_m);
    notes.push(format!(
        "closing note: on the pinned evaluation set of {} windows (held-out logs) the scheduled (full) model has ADE {:.3} m / FDE {:.3} m vs constant velocity {:.3} / {:.3} m on the same windows ({margin_ade:.1}% / {margin_fde:.1}% lower), miss rate {:.3} vs {:.3}; the manual `{}` trigger mined {} clips ({} training windows), incremental model ADE {:.3} m, {}; id list == SQL: {}; {:.1} s wall",
        scheduled.eval_windows,
        scheduled.ade_m,
        scheduled.fde_m,
        scheduled.cv_ade_m,
        scheduled.cv_fde_m,
        scheduled.miss_rate,
        scheduled.cv_miss_rate,
        args.rule,
        manual.clips,
        manual.train_windows,
        manual.ade_m,
        if manual.promoted { "promoted" } else { "not promoted (not better than the champion)" },
        listed == sql_ids,
        wall_s
    ));
    if let Some(p) = &scheduled.pinned {
        notes.push(format!(
            "pinned evaluation set: logs {} (never trained on; trained on {}) read at warehouse v{}, fingerprint {}: all {} windows ADE {:.3} m vs constant velocity {:.3} m; moving (>= {} m/s observed) {} windows ADE {:.3} m vs {:.3} m ({:.1}% lower; issue goal >= 30%), FDE {:.3} vs {:.3} m",
            p.log_ids.join(", "),
            scheduled.train_logs.join(", "),
            p.warehouse_version,
            &p.fingerprint[..p.fingerprint.len().min(16)],
            p.all.windows,
            p.all.ade_m,
            p.all.cv_ade_m,
            crate::pinned::MOVING_MIN_SPEED_MPS,
            p.moving.windows,
            p.moving.ade_m,
            p.moving.cv_ade_m,
            p.moving_ade_gain_pct,
            p.moving.fde_m,
            p.moving.cv_fde_m,
        ));
        for (category, c) in &p.moving.per_category {
            notes.push(format!(
                "  moving {category}: {} windows, ADE {:.3} vs CV {:.3} m, FDE {:.3} vs {:.3} m",
                c.windows, c.ade_m, c.cv_ade_m, c.fde_m, c.cv_fde_m
            ));
        }
    }
    if !failed.is_empty() {
        notes.push(format!("FAILED checks: {}", failed.join(", ")));
    }
    let line = json!({
        "ingested": { "files": ingest.files, "clips": ingest.clips, "rejected": ingest.rejected },
        "warehouse_version": ingest.warehouse_version,
        "olap_rows": status["olap_rows"],
        "triggers": [trigger_json(&scheduled), trigger_json(&manual)],
        "eval_windows": scheduled.eval_windows,
        "ade_margin_pct": (margin_ade * 10.0).round() / 10.0,
        "fde_margin_pct": (margin_fde * 10.0).round() / 10.0,
        "av2_protocol": protocol.iter().map(ProtocolRun::json).collect::<Vec<_>>(),
        "checks_failed": failed,
        "wall_s": (wall_s * 10.0).round() / 10.0,
    });
    let mut text = notes.join("\n");
    text.push('\n');
    if args.json {
        text.push_str(&format!("{line}\n"));
    }
    out(&text)?;
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// The AV2 protocol on one scenario, with the champion and with the same ridge refitted on every
/// training log except the scenario (the champion may have trained on the scenario's 2 s -> 3 s
/// windows: a single AV2 scenario is never held out by the pinned set's rule).
struct ProtocolRun {
    champion_trained_on_it: bool,
    champion: ProtocolReport,
    held_out: ProtocolReport,
    held_out_train_windows: usize,
}

impl ProtocolRun {
    fn note(&self) -> String {
        let row = |name: &str, r: &ProtocolReport| {
            format!(
                "  {name}: focal K=1 minADE {:.2} / minFDE {:.2} m (CV {:.2} / {:.2}), K=6 {:.2} / {:.2} m (CV {:.2} / {:.2}); {} scored tracks K=1 {:.2} / {:.2} m MR {:.2} (CV {:.2} / {:.2} MR {:.2}), K=6 {:.2} / {:.2} m MR {:.2} (CV {:.2} / {:.2} MR {:.2})",
                r.focal_model.min_ade_k1_m,
                r.focal_model.min_fde_k1_m,
                r.focal_cv.min_ade_k1_m,
                r.focal_cv.min_fde_k1_m,
                r.focal_model.min_ade_k6_m,
                r.focal_model.min_fde_k6_m,
                r.focal_cv.min_ade_k6_m,
                r.focal_cv.min_fde_k6_m,
                r.scored_model.agents,
                r.scored_model.min_ade_k1_m,
                r.scored_model.min_fde_k1_m,
                r.scored_model.miss_rate_k1,
                r.scored_cv.min_ade_k1_m,
                r.scored_cv.min_fde_k1_m,
                r.scored_cv.miss_rate_k1,
                r.scored_model.min_ade_k6_m,
                r.scored_model.min_fde_k6_m,
                r.scored_model.miss_rate_k6,
                r.scored_cv.min_ade_k6_m,
                r.scored_cv.min_fde_k6_m,
                r.scored_cv.miss_rate_k6,
            )
        };
        format!(
            "AV2 protocol (5 s observed -> 6 s, K=6: {}) on scenario {} (map: {}):\n{}\n{}",
            self.champion.hypotheses,
            self.champion.scenario_id,
            self.champion.map,
            row(
                &format!(
                    "champion (trained on this scenario's windows: {})",
                    self.champion_trained_on_it
                ),
                &self.champion
            ),
            row(
                &format!(
                    "ridge refitted without this scenario ({} windows)",
                    self.held_out_train_windows
                ),
                &self.held_out
            ),
        )
    }

    fn json(&self) -> Value {
        json!({
            "scenario_id": self.champion.scenario_id,
            "champion_trained_on_it": self.champion_trained_on_it,
            "champion": self.champion,
            "held_out_model": self.held_out,
            "held_out_train_windows": self.held_out_train_windows,
        })
    }
}

/// Runs the AV2 protocol on every motion-forecasting scenario under `input`.
async fn av2_protocol_runs(
    data_dir: &Path,
    registry: &Registry,
    input: &Path,
) -> anyhow::Result<Vec<ProtocolRun>> {
    let scenarios: Vec<PathBuf> = crate::reader::discover(input)?
        .into_iter()
        .filter(|l| l.source == crate::reader::Source::Av2Motion)
        .map(|l| l.path)
        .collect();
    if scenarios.is_empty() {
        return Ok(Vec::new());
    }
    let (_, champion) = registry.champion_model(data_dir)?;
    let trained_on = registry
        .champion_record()
        .map(|r| r.train_logs.clone())
        .unwrap_or_default();
    let warehouse = Warehouse::open(&data_dir.join("warehouse")).await?;
    let clips = warehouse::decode_rows(&warehouse.export_all().await?)?;
    let mut runs = Vec::new();
    for scenario in scenarios {
        let id = scenario
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("scenario_"))
            .unwrap_or_default()
            .to_owned();
        let windows: Vec<(String, AgentWindow)> = clips
            .iter()
            .filter(|c| {
                registry
                    .eval_pin
                    .as_ref()
                    .is_none_or(|p| !p.holds(&c.clip_id))
                    && crate::pinned::log_of_clip(&c.clip_id) != Some(id.as_str())
            })
            .map(|c| {
                (
                    c.clip_id.clone(),
                    AgentWindow::from_trajectory(&c.trajectory),
                )
            })
            .collect();
        let (held_out, summary) = crate::fit::train(&windows, None, |_, _| {})?;
        runs.push(ProtocolRun {
            champion_trained_on_it: trained_on.contains(&id),
            champion: av2_protocol::evaluate(&scenario, Some(&champion))?,
            held_out: av2_protocol::evaluate(&scenario, Some(&held_out))?,
            held_out_train_windows: summary.windows,
        });
    }
    Ok(runs)
}

fn trigger_json(o: &TriggerOutcome) -> Value {
    let mut v = json!({
        "kind": o.kind,
        "clips": o.clips,
        "train_windows": o.train_windows,
        "model_version": o.model_version,
        "mode": o.mode.as_str(),
        "ade_m": round3(o.ade_m),
        "fde_m": round3(o.fde_m),
        "cv_ade_m": round3(o.cv_ade_m),
        "cv_fde_m": round3(o.cv_fde_m),
        "miss_rate": round3(o.miss_rate),
        "cv_miss_rate": round3(o.cv_miss_rate),
        "promoted": o.promoted,
        "train_logs": o.train_logs,
        "pinned": o.pinned,
    });
    if let (Some(rule), Value::Object(map)) = (&o.rule, &mut v) {
        map.insert("rule".to_owned(), json!(rule));
        map.insert("id_list".to_owned(), json!(o.id_list));
    }
    v
}

/// A fresh 256-bit bearer token (hex) for the demo's service, from the kernel's CSPRNG.
fn random_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    fs_err::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the demo's bearer token")?;
    Ok(hex::encode(bytes))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

async fn wait_for_scheduled(
    state: &Arc<crate::server::AppState>,
    limit: Duration,
) -> anyhow::Result<TriggerOutcome> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(o) = state
            .outcomes()
            .await
            .into_iter()
            .find(|o| o.kind == "scheduled")
        {
            return Ok(o);
        }
        if Instant::now() > deadline {
            bail!("the scheduled trigger did not complete within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
