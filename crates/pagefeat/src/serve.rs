//! `pagefeat serve`: `POST /extract` with an HTML body (optionally `?url=` for the page URL
//! and `?profile=panorama|viewport|local&selector=..&scroll_y=..`) answers
//! `{"stat_tree": {...}, "trees": [...], "detections": {...}}`, through `svckit::serve` (which
//! adds `/healthz` and `/metrics`). Bad input answers 400 with the reason.

use std::future::Future;
use std::sync::Arc;

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
}

/// An error answer.
#[derive(Debug)]
struct AppError(Error);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.0.is_bad_input() {
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": self.0.to_string()})),
            )
                .into_response()
        } else {
            tracing::error!(error = %self.0, "extract failed");
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
    let limit = pipeline.config().input.max_bytes + 1;
    Router::new()
        .route("/extract", post(extract))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(AppState {
            pipeline,
            pages,
            rejected,
        })
}

async fn extract(
    State(state): State<AppState>,
    Query(query): Query<ExtractQuery>,
    body: Bytes,
) -> Result<axum::Json<serde_json::Value>, AppError> {
    let max = state.pipeline.config().input.max_bytes;
    let page =
        PageInput::from_bytes("request body", query.url.clone(), &body, max).map_err(|e| {
            state.rejected.inc();
            AppError(e)
        })?;
    let options = ExtractOptions {
        engine: EngineKind::Embedded,
        profile: query.profile.unwrap_or(ProfileArg::Panorama),
        selector: query.selector.clone(),
        scroll_y: query.scroll_y,
    };
    let extraction = state
        .pipeline
        .extract(&page, None, &options)
        .await
        .map_err(|e| {
            if e.is_bad_input() {
                state.rejected.inc();
            }
            AppError(e)
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
