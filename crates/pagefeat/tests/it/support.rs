//! Shared helpers: bundled pages, a shared EasyList engine, one-page extraction.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use pagefeat::adfilter::AdFilter;
use pagefeat::config::Config;
use pagefeat::extract::{ExtractOptions, Pipeline, ProfileArg};
use pagefeat::{EngineKind, PageInput, Recognizer};
use svckit::{Clock, SystemClock};

/// The bundled EasyList engine, built once per test binary.
pub(crate) fn filter() -> Arc<AdFilter> {
    static FILTER: OnceLock<Arc<AdFilter>> = OnceLock::new();
    Arc::clone(FILTER.get_or_init(|| {
        Arc::new(AdFilter::from_file(&testkit::data_path("pages/filters/easylist.txt")).unwrap())
    }))
}

/// Every bundled HTML page, sorted.
pub(crate) fn bundled_pages() -> Vec<PathBuf> {
    pagefeat::corpus::bundled(&testkit::data_path("pages"))
        .unwrap()
        .into_iter()
        .map(|p| p.path)
        .collect()
}

/// A pipeline with the filter list and the given models.
pub(crate) fn pipeline(recognizer: Recognizer) -> Pipeline {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Pipeline::new(Config::default(), Arc::new(recognizer), clock)
}

/// A recognizer with the filter list only.
pub(crate) fn labels_only() -> Recognizer {
    Recognizer {
        filter: Some(filter()),
        ad: None,
        soft404: None,
    }
}

/// Options for one engine and profile.
pub(crate) fn options(engine: EngineKind, profile: ProfileArg) -> ExtractOptions {
    ExtractOptions {
        engine,
        profile,
        selector: None,
        scroll_y: None,
    }
}

/// A page from HTML text.
pub(crate) fn page(name: &str, html: &str) -> PageInput {
    PageInput::from_bytes(name, None, html.as_bytes(), 1 << 24).unwrap()
}

/// Headless Chromium launched with the default configuration (sealed as in production).
pub(crate) fn chromium(rt: &tokio::runtime::Runtime) -> pagefeat::engine::ChromiumBrowser {
    let config = Config::default();
    rt.block_on(pagefeat::engine::ChromiumBrowser::launch(
        &config.chromium,
        config.viewport_size(),
    ))
    .unwrap()
}

/// A runtime for async library calls in tests.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
