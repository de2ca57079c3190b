//! The whole path for one page: render with an engine, hand the snapshots to the background
//! workers (panorama tree and recognition), then cut the asked profile's trees.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use svckit::Clock;

use crate::config::Config;
use crate::engine::{ChromiumBrowser, EmbeddedEngine};
use crate::error::{Error, Result};
use crate::input::PageInput;
use crate::layout::{EngineKind, LayoutSnapshot};
use crate::recognize::{PageResult, Recognizer, local_tree};
use crate::stat_node::{Profile, Selection, StatTree, TreeMeta, Trigger, build_tree, derive};
use crate::viewport::{ViewportEvent, ViewportTracker};
use crate::workers::{Job, Workers};

/// The profile asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ProfileArg {
    /// The whole layout tree.
    Panorama,
    /// A region: the `--selector` element, or each popup, with its subtree.
    Local,
    /// Only what intersects the viewport (first screen, then newly visible after `--scroll-y`).
    Viewport,
}

/// What to extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Engine.
    pub engine: EngineKind,
    /// Profile.
    pub profile: ProfileArg,
    /// CSS selector of the local region.
    pub selector: Option<String>,
    /// Scroll offset for the viewport profile, px.
    pub scroll_y: Option<i32>,
}

impl ExtractOptions {
    /// The embedded engine's panorama tree, no selector or scroll: what training and the
    /// held-out evaluations lay pages out with.
    pub fn embedded_panorama() -> Self {
        Self {
            engine: EngineKind::Embedded,
            profile: ProfileArg::Panorama,
            selector: None,
            scroll_y: None,
        }
    }
}

/// The outcome for one page.
#[derive(Debug, Clone)]
pub struct Extraction {
    /// Panorama tree and recognition.
    pub result: PageResult,
    /// The profile's trees in emission order (panorama: one; local: one per region; viewport:
    /// the first screen, then the after-scroll tree).
    pub trees: Vec<StatTree>,
    /// Time spent rendering (parse, style, layout, snapshot), ms.
    pub render_ms: f64,
}

/// Reads a page file into a checked [`PageInput`] with its `file://` URL as base.
///
/// # Errors
/// [`Error::Io`] and the input errors of [`PageInput::from_bytes`].
pub fn read_page(path: &Path, max_bytes: usize) -> Result<PageInput> {
    let meta = fs_err::metadata(path).map_err(|e| Error::io("reading", path, e))?;
    if meta.len() > max_bytes as u64 {
        return Err(Error::TooLarge {
            source_name: path.display().to_string(),
            size: usize::try_from(meta.len()).unwrap_or(usize::MAX),
            limit: max_bytes,
        });
    }
    let bytes = fs_err::read(path).map_err(|e| Error::io("reading", path, e))?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = url::Url::from_file_path(&absolute)
        .ok()
        .map(|u| u.to_string());
    PageInput::from_bytes(path.display().to_string(), base, &bytes, max_bytes)
}

/// Engines plus the worker pool.
#[derive(Debug)]
pub struct Pipeline {
    config: Config,
    embedded: EmbeddedEngine,
    workers: Workers,
    recognizer: Arc<Recognizer>,
    clock: Arc<dyn Clock>,
}

impl Pipeline {
    /// A pipeline with `config.workers` threads and the given recognizer and clock.
    pub fn new(config: Config, recognizer: Arc<Recognizer>, clock: Arc<dyn Clock>) -> Self {
        let workers = Workers::start(config.workers.threads, config.workers.queue, &recognizer);
        Self {
            config,
            embedded: EmbeddedEngine::new(),
            workers,
            recognizer,
            clock,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The recognizer.
    pub fn recognizer(&self) -> &Recognizer {
        &self.recognizer
    }

    /// Renders `page` with the embedded engine on a blocking thread.
    ///
    /// # Errors
    /// See [`EmbeddedEngine::layout`].
    pub async fn render_embedded(
        &self,
        page: &PageInput,
        selector: Option<&str>,
    ) -> Result<crate::engine::EmbeddedLayout> {
        let engine = self.embedded.clone();
        let page = page.clone();
        let selector = selector.map(str::to_owned);
        let viewport = self.config.viewport_size();
        tokio::task::spawn_blocking(move || engine.layout(&page, viewport, selector.as_deref()))
            .await
            .map_err(|e| Error::EnginePanic {
                source_name: "(worker)".to_owned(),
                message: e.to_string(),
            })?
    }

    /// Extracts one page. `chromium` must be given for [`EngineKind::Chromium`].
    ///
    /// # Errors
    /// Engine errors, [`Error::SelectorNoMatch`] / [`Error::BadSelector`],
    /// [`Error::WorkersGone`].
    pub async fn extract(
        &self,
        page: &PageInput,
        chromium: Option<&ChromiumBrowser>,
        options: &ExtractOptions,
    ) -> Result<Extraction> {
        let viewport = self.config.viewport_size();
        let started = std::time::Instant::now();
        let (main, parse_end, scrolled, selected) = match options.engine {
            EngineKind::Embedded => {
                let layout = self
                    .render_embedded(page, options.selector.as_deref())
                    .await?;
                (layout.snapshot, None, None, layout.selected)
            }
            EngineKind::Chromium => {
                let browser = chromium.ok_or_else(|| {
                    Error::chromium("extracting", "no browser was started for this pipeline")
                })?;
                let scroll = (options.profile == ProfileArg::Viewport)
                    .then_some(options.scroll_y)
                    .flatten();
                let capture = browser
                    .capture(page, viewport, scroll, options.selector.as_deref())
                    .await?;
                (
                    capture.settled,
                    Some(capture.parse_end),
                    capture.scrolled,
                    capture.selected,
                )
            }
        };
        let render_ms = started.elapsed().as_secs_f64() * 1000.0;
        let job = Job {
            page: page.name.clone(),
            main,
            parse_end,
            deadlink_row: self
                .recognizer
                .soft404
                .is_some()
                .then(|| crate::deadlink::row_of_html(&page.html)),
            captured: self.clock.wall(),
        };
        let result = self.workers.submit_async(job).await?.wait_async().await?;
        let trees = match options.profile {
            ProfileArg::Panorama => vec![result.tree.clone()],
            ProfileArg::Local => match (options.selector.as_deref(), selected) {
                (Some(_), Some(index)) => vec![local_tree(&result.tree, index as u32)],
                (Some(selector), None) => {
                    return Err(Error::SelectorNoMatch {
                        selector: selector.to_owned(),
                    });
                }
                (None, _) => result.popup_trees.clone(),
            },
            ProfileArg::Viewport => {
                self.viewport_trees(&result.tree, scrolled.as_ref(), options.scroll_y)
                    .await
            }
        };
        Ok(Extraction {
            result,
            trees,
            render_ms,
        })
    }

    /// Drives the viewport triggers (seed ¶89-¶91): parse end, pre-paint end and first
    /// screen at once, then the debounce wait, then a tree; with a scroll, the scroll event,
    /// the wait, and a tree of the newly visible nodes only.
    async fn viewport_trees(
        &self,
        panorama: &StatTree,
        scrolled: Option<&LayoutSnapshot>,
        scroll_y: Option<i32>,
    ) -> Vec<StatTree> {
        let mut tracker =
            ViewportTracker::new(Duration::from_millis(self.config.viewport.debounce_ms));
        let mut trees = Vec::new();
        for event in [
            ViewportEvent::ParseEnd,
            ViewportEvent::PrePaintEnd,
            ViewportEvent::FirstScreen,
        ] {
            tracker.on_event(event, self.clock.now());
        }
        if let Some(due) = self.wait_due(&mut tracker).await {
            trees.push(tracker.select(panorama, due, self.clock.wall()));
        }
        if let Some(y) = scroll_y {
            tracker.on_event(ViewportEvent::Scroll { y }, self.clock.now());
            if let Some(due) = self.wait_due(&mut tracker).await {
                let after = match scrolled {
                    Some(snapshot) => {
                        let derived = derive(snapshot);
                        let meta = TreeMeta {
                            profile: Profile::Panorama,
                            trigger: Trigger::Scroll,
                            captured: self.clock.wall(),
                        };
                        build_tree(snapshot, &derived, &Selection::All, meta)
                    }
                    None => panorama.clone(),
                };
                trees.push(tracker.select(&after, due, self.clock.wall()));
            }
        }
        trees
    }

    async fn wait_due(&self, tracker: &mut ViewportTracker) -> Option<crate::viewport::Due> {
        let deadline = tracker.deadline()?;
        let now = self.clock.now();
        if deadline > now {
            tokio::time::sleep(deadline - now).await;
        }
        tracker.poll(self.clock.now().max(deadline))
    }
}
