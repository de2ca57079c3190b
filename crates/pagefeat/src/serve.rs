//! `pagefeat serve`: `POST /extract` with an HTML body (optionally `?url=` for the page URL
//! and `?profile=panorama|viewport|local&selector=..&scroll_y=..`) answers
//! `{"stat_tree": {...}, "trees": [...], "detections": {...}, "models": {"ad": bool,
//! "soft404": bool}}` (`models` says which classifiers are loaded, so "no model" is not read as
//! a negative), through `svckit::serve` (which adds `/healthz` and `/metrics`). Bad input
//! answers 400 with the reason. At most `serve.max_concurrent` requests are extracted at once
//! (more get 503 with `Retry-After: 1`), each within `serve.request_deadline_ms` (else 503); a
//! request whose client went away stops waiting, and its permit is held until the work it
//! started ends, so the cap counts real work.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use serde_json::json;

use crate::cli::DetectLine;
use crate::error::Error;
use crate::extract::{ExtractOptions, Pipeline, ProfileArg};
use crate::input::PageInput;
use crate::layout::EngineKind;
use crate::stat_node::to_json;

/// Query parameters of `POST /extract`.
#[derive(Debug, Deserialize)]
pub struct ExtractQuery {
    /// The page's URL (base for relative links and third-party checks).
    pub url: Option<String>,
    /// Profile (default panorama).
    pub profile: Option<ProfileArg>,
    /// Local-profile selector.
    pub selector: Option<String>,
    /// Viewport-profile scroll offset, px.
    pub scroll_y: Option<i32>,
}

#[derive(Debug, Clone)]
struct AppState {
    pipeline: Arc<Pipeline>,
    pages: Counter,
    rejected: Counter,
    overloaded: Counter,
    permits: Arc<tokio::sync::Semaphore>,
}

/// An error answer.
#[derive(Debug)]
enum AppError {
    /// From the pipeline.
    Page(Error),
    /// All permits taken.
    Busy { limit: usize },
    /// The extraction outlived its deadline.
    Deadline { deadline_ms: u64 },
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let error = match self {
            Self::Page(error) => error,
            Self::Busy { limit } => {
                let body = json!({"error": "busy", "limit": limit});
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, "1")],
                    axum::Json(body),
                )
                    .into_response();
            }
            Self::Deadline { deadline_ms } => {
                let body = json!({"error": "deadline", "deadline_ms": deadline_ms});
                return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
            }
        };
        if error.is_bad_input() {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": error.to_string()})),
            )
                .into_response()
        } else {
            tracing::error!(error = %error, "extract failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": "internal error"})),
            )
                .into_response()
        }
    }
}

/// The router (without `/healthz` and `/metrics`, which `svckit::serve` adds); registers its
/// counters in `registry`.
pub fn router(pipeline: Arc<Pipeline>, registry: &mut Registry) -> Router {
    let pages = Counter::default();
    let rejected = Counter::default();
    registry.register("pagefeat_pages", "Pages extracted", pages.clone());
    registry.register(
        "pagefeat_rejected",
        "Requests rejected as bad input",
        rejected.clone(),
    );
    let overloaded = Counter::default();
    registry.register(
        "pagefeat_overloaded",
        "Requests answered 503 (all permits taken, or past the deadline)",
        overloaded.clone(),
    );
    let limit = pipeline.config().input.max_bytes + 1;
    let permits = Arc::new(tokio::sync::Semaphore::new(
        pipeline.config().serve.max_concurrent,
    ));
    Router::new()
        .route("/extract", post(extract))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(AppState {
            pipeline,
            pages,
            rejected,
            overloaded,
            permits,
        })
}

async fn extract(
    State(state): State<AppState>,
    Query(query): Query<ExtractQuery>,
    body: Bytes,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    let serve = &state.pipeline.config().serve;
    let Ok(permit) = Arc::clone(&state.permits).try_acquire_owned() else {
        state.overloaded.inc();
        return Err(AppError::Busy {
            limit: serve.max_concurrent,
        });
    };
    let deadline_ms = serve.request_deadline_ms;
    let max = state.pipeline.config().input.max_bytes;
    let page =
        PageInput::from_bytes("request body", query.url.clone(), &body, max).map_err(|e| {
            state.rejected.inc();
            AppError::Page(e)
        })?;
    let options = ExtractOptions {
        engine: EngineKind::Embedded,
        profile: query.profile.unwrap_or(ProfileArg::Panorama),
        selector: query.selector.clone(),
        scroll_y: query.scroll_y,
    };
    // The work runs in its own task holding the permit: a client that goes away (this future
    // dropped) or a missed deadline stops the waiting, not the count.
    let pipeline = Arc::clone(&state.pipeline);
    let work = tokio::spawn(async move {
        let _permit = permit;
        pipeline.extract(&page, None, &options).await
    });
    let extraction = match tokio::time::timeout(Duration::from_millis(deadline_ms), work).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panicked)) => Err(Error::WorkersGone),
        Err(_) => {
            state.overloaded.inc();
            return Err(AppError::Deadline { deadline_ms });
        }
    }
    .map_err(|e| {
        if e.is_bad_input() {
            state.rejected.inc();
        }
        AppError::Page(e)
    })?;
    state.pages.inc();
    let detections = DetectLine::of(
        query.url.as_deref().unwrap_or("request body"),
        &extraction.result,
    );
    Ok(axum::Json(json!({
        "stat_tree": to_json(&extraction.result.tree),
        "trees": extraction.trees.iter().map(to_json).collect::<Vec<_>>(),
        "detections": detections,
        "models": {
            "ad": state.pipeline.recognizer().ad.is_some(),
            "soft404": state.pipeline.recognizer().soft404.is_some(),
        },
    })))
}

/// Serves until `shutdown` completes.
///
/// # Errors
/// [`svckit::ServeError`] when the listener fails.
pub async fn run(
    listener: tokio::net::TcpListener,
    pipeline: Arc<Pipeline>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), svckit::ServeError> {
    let mut registry = Registry::default();
    let app = router(pipeline, &mut registry);
    svckit::serve(
        listener,
        app,
        svckit::ServeOptions::new("pagefeat", registry),
        shutdown,
    )
    .await
}
