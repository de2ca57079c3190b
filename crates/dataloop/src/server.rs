//! `dataloop serve` (issue item 5): the scheduler (cron, seed ¶40, ¶48) and an HTTP API for
//! manual triggers, SQL and the registry, served through `svckit::serve` (adds `/healthz` and
//! `/metrics`).
//!
//! Routes: `GET /status`, `POST /trigger` (JSON `{"rule": "...", "params": {"k": "v"}}`),
//! `POST /trigger/scheduled` (run the scheduled job now), `POST /sql` (JSON `{"sql": "..."}`,
//! read-only, see [`crate::sql_engine`]), `GET /registry`, `GET /mined/{version}?limit=N` (the
//! clips of a mined ID list with their predictions, [`crate::mined_view`]). All of them require
//! `Authorization: Bearer <token>` ([`crate::auth`]); `/healthz`, `/metrics` and the web view's
//! page and script (`/ui`, [`crate::ui`]; they hold no data) stay open.
//! Triggers run one at a time; no lock is held across a query or a trigger that `/status`,
//! `/registry` or `/sql` would wait for.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry as Metrics;
use serde::Deserialize;
use serde_json::json;
use svckit::Clock;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, BearerToken};
use crate::closed_loop::{DataLoop, TriggerKind, TriggerOutcome};
use crate::error::Error;
use crate::query;
use crate::registry::Registry;
use crate::scheduler::Scheduler;
use crate::trigger::MiningRequest;

/// Trigger outcomes kept for `/status` and [`AppState::outcomes`] (the oldest are dropped).
const KEPT_OUTCOMES: usize = 256;

/// Shared state of the API and the scheduler.
#[derive(Debug)]
pub struct AppState {
    dl: DataLoop,
    /// Serialises triggers in this process; held only by triggers.
    trigger_lock: Mutex<()>,
    clock: Arc<dyn Clock>,
    next_due: std::sync::Mutex<Option<SystemTime>>,
    outcomes: std::sync::Mutex<VecDeque<TriggerOutcome>>,
    triggers_run: AtomicUsize,
    triggers: Family<Vec<(String, String)>, Counter>,
}

impl AppState {
    /// State around an opened loop; registers the trigger counter in `metrics`.
    pub fn new(dl: DataLoop, clock: Arc<dyn Clock>, metrics: &mut Metrics) -> Arc<Self> {
        let triggers = Family::<Vec<(String, String)>, Counter>::default();
        metrics.register(
            "dataloop_triggers",
            "Triggers run, by kind and result (promoted, kept, failed)",
            triggers.clone(),
        );
        Arc::new(Self {
            dl,
            trigger_lock: Mutex::new(()),
            clock,
            next_due: std::sync::Mutex::new(None),
            outcomes: std::sync::Mutex::new(VecDeque::new()),
            triggers_run: AtomicUsize::new(0),
            triggers,
        })
    }

    /// Runs a trigger now (one at a time) and records its outcome.
    ///
    /// # Errors
    /// The trigger's error.
    pub async fn run_trigger(&self, kind: TriggerKind) -> Result<TriggerOutcome, Error> {
        let label = match kind {
            TriggerKind::Scheduled => "scheduled",
            TriggerKind::Manual(_) => "manual",
        };
        let serial = self.trigger_lock.lock().await;
        let result = self.dl.trigger(kind, self.clock.wall()).await;
        drop(serial);
        let outcome_label = match &result {
            Ok(o) if o.promoted => "promoted",
            Ok(_) => "kept",
            Err(_) => "failed",
        };
        self.triggers
            .get_or_create(&vec![
                ("kind".to_owned(), label.to_owned()),
                ("result".to_owned(), outcome_label.to_owned()),
            ])
            .inc();
        if let Ok(outcome) = &result {
            self.triggers_run.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut kept) = self.outcomes.lock() {
                if kept.len() == KEPT_OUTCOMES {
                    kept.pop_front();
                }
                kept.push_back(outcome.clone());
            }
        }
        result
    }

    /// Outcomes of the last (at most 256) triggers run since start, oldest first.
    pub async fn outcomes(&self) -> Vec<TriggerOutcome> {
        self.outcomes
            .lock()
            .map(|kept| kept.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The API routes (without `/healthz` and `/metrics`, which `svckit::serve` adds), each behind
/// the bearer `token`, and the web view ([`crate::ui`]: `/ui`, `/ui/app.js`, no data, open).
pub fn router(state: Arc<AppState>, token: BearerToken) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/trigger", post(manual))
        .route("/trigger/scheduled", post(scheduled_now))
        .route("/sql", post(sql))
        .route("/registry", get(registry))
        .route("/mined/{version}", get(mined))
        .route_layer(middleware::from_fn_with_state(
            Arc::new(token),
            auth::require_bearer,
        ))
        .merge(crate::ui::routes())
        .with_state(state)
}

/// Drives the scheduler on `state.clock` until `stop` is cancelled: waits until the next due
/// time, then runs the scheduled trigger.
pub async fn scheduler_loop(
    state: Arc<AppState>,
    mut scheduler: Scheduler,
    stop: CancellationToken,
) {
    loop {
        if let Ok(mut next) = state.next_due.lock() {
            *next = scheduler.next_due();
        }
        let wait = scheduler
            .wait(state.clock.wall())
            .min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        if let Some(due) = scheduler.poll(state.clock.wall()) {
            let due: DateTime<Utc> = due.into();
            tracing::info!(trigger = "scheduled", due = %due.to_rfc3339(), "scheduled trigger due");
            match state.run_trigger(TriggerKind::Scheduled).await {
                Ok(o) => tracing::info!(
                    model_version = o.model_version,
                    promoted = o.promoted,
                    "scheduled trigger done"
                ),
                Err(e) => tracing::error!(error = %e, "scheduled trigger failed"),
            }
        }
    }
}

/// The API's error: 4xx for bad requests, 500 (generic body, detail in the log) otherwise.
#[derive(Debug)]
struct AppError(Error);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            Error::UnknownRule(_)
            | Error::BadParam { .. }
            | Error::BadPredicate { .. }
            | Error::TooFewWindows { .. }
            | Error::Query(_) => StatusCode::BAD_REQUEST,
            Error::SqlRefused { .. } => StatusCode::FORBIDDEN,
            Error::QueryTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::QueryMemory { .. } | Error::TooManyRows { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::QueryBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::NoChampion(_) | Error::LockTimeout { .. } => StatusCode::CONFLICT,
            Error::NoIdList { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "request failed");
            "internal error (see the server log)".to_owned()
        } else {
            self.0.to_string()
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

async fn status(State(state): State<Arc<AppState>>) -> Result<Json<serde_json::Value>, AppError> {
    let dl = &state.dl;
    let warehouse = dl.current_warehouse().await.map_err(AppError)?;
    let olap_rows = dl.olap().rows().await.map_err(AppError)?;
    let registry = Registry::load(dl.data_dir()).map_err(AppError)?;
    let next_due = state
        .next_due
        .lock()
        .ok()
        .and_then(|n| *n)
        .map(|t| DateTime::<Utc>::from(t).to_rfc3339());
    Ok(Json(json!({
        "warehouse_version": warehouse.version(),
        "olap_rows": olap_rows,
        "champion": registry.champion,
        "models": registry.versions.len(),
        "next_scheduled_run": next_due,
        "triggers_run": state.triggers_run.load(Ordering::Relaxed),
    })))
}

async fn manual(
    State(state): State<Arc<AppState>>,
    Json(request): Json<MiningRequest>,
) -> Result<Json<TriggerOutcome>, AppError> {
    state
        .run_trigger(TriggerKind::Manual(request))
        .await
        .map(Json)
        .map_err(AppError)
}

async fn scheduled_now(
    State(state): State<Arc<AppState>>,
) -> Result<Json<TriggerOutcome>, AppError> {
    state
        .run_trigger(TriggerKind::Scheduled)
        .await
        .map(Json)
        .map_err(AppError)
}

#[derive(Debug, Deserialize)]
struct SqlRequest {
    sql: String,
}

async fn sql(
    State(state): State<Arc<AppState>>,
    Json(request): Json<SqlRequest>,
) -> Result<Json<serde_json::Value>, AppError> {
    let (warehouse_version, batches) = state.dl.sql(&request.sql).await.map_err(AppError)?;
    Ok(Json(json!({
        "warehouse_version": warehouse_version,
        "rows": query::to_json_rows(&batches),
    })))
}

/// `?limit=` of `GET /mined/{version}`.
#[derive(Debug, Deserialize)]
struct MinedQuery {
    /// Clips to show (default 24, at most [`crate::mined_view::MAX_CLIPS`]).
    limit: Option<usize>,
}

async fn mined(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(version): axum::extract::Path<u32>,
    axum::extract::Query(query): axum::extract::Query<MinedQuery>,
) -> Result<Json<crate::mined_view::MinedView>, AppError> {
    crate::mined_view::mined_view(&state.dl, version, query.limit.unwrap_or(24))
        .await
        .map(Json)
        .map_err(AppError)
}

async fn registry(State(state): State<Arc<AppState>>) -> Result<Json<Registry>, AppError> {
    Registry::load(state.dl.data_dir())
        .map(Json)
        .map_err(AppError)
}
