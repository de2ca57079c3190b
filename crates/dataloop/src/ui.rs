//! The web view of `dataloop serve` (issue 13 item 8; seed ¶33 "visual display" of the data,
//! ¶64 statistics of training and evaluation): `GET /ui` is one page that shows
//!
//! * clips per source, per category and per split (the split is by log: `eval` for the logs of
//!   the pinned evaluation set in the registry, `train` for the others), from the OLAP store;
//! * ADE of every model version against constant velocity on the pinned set, all and moving
//!   windows, per category;
//! * the trigger and training history (one row per version).
//!
//! The page and its script (`GET /ui/app.js`) hold no data and need no token: the script reads
//! the bearer token from the URL fragment (`/ui#token=...`, never sent to a server), keeps it in
//! `sessionStorage`, removes it from the address bar and calls the authenticated JSON routes
//! (`/registry`, `POST /sql`) with `Authorization: Bearer`. Charts are inline SVG; every bar
//! carries `data-key` and `data-count` so a test can read what is drawn. The responses forbid
//! framing, inline script and other origins (`Content-Security-Policy`), sniffing and caching.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The page shell (no data).
const INDEX_HTML: &str = include_str!("ui/index.html");
/// The script that fetches and draws the data.
const APP_JS: &str = include_str!("ui/app.js");

/// Headers of both responses: no inline script, nothing from other origins, no framing.
const SECURITY_HEADERS: [(header::HeaderName, &str); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// `GET /ui` and `GET /ui/app.js`, without authentication (they hold no data; the script sends
/// the bearer token on every data request). Generic over the router state so it merges into the
/// API router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(index))
        .route("/ui/app.js", get(app_js))
}

async fn index() -> impl IntoResponse {
    (
        SECURITY_HEADERS,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
}

async fn app_js() -> impl IntoResponse {
    (
        SECURITY_HEADERS,
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
}
