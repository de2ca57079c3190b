//! The reference engine: Debian's headless Chromium driven over the DevTools protocol with
//! `chromiumoxide`. Each page is loaded from a file in a private directory with the network
//! blocked (every host name resolves to nothing and every HTTP(S) request goes to a dead
//! proxy on 127.0.0.1:9), so only the page file and its inline resources load, and scripts run
//! without network. `DOMSnapshot.captureSnapshot` (layout bounds, computed styles, paint
//! orders) is read into the same [`LayoutSnapshot`] as the embedded engine.
//!
//! Snapshots per page: at the end of parsing (`DOMContentLoaded`), after the load event plus
//! a settle time (the pre-paint-end trigger, used for popups: objects invisible at parse end
//! and visible now, seed ¶74), and optionally after scrolling.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chromiumoxide::Browser;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::dom_snapshot::{
    CaptureSnapshotParams, CaptureSnapshotReturns,
};
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::page::{
    EventDomContentEventFired, EventLoadEventFired, FontFamilies, NavigateParams,
    SetFontFamiliesParams,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use svckit::process::{ChildGuard, ProcessSpec, Readiness};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::input::PageInput;
use crate::layout::{
    ComputedStyle, EngineKind, LayoutObject, LayoutSnapshot, NodeKind, Rect, STYLE_PROPERTIES,
    collapse_text, object_type,
};

/// Attribute set on the element a local-profile selector picked (removed from the output).
const SELECTED_MARK: &str = "data-pagefeat-selected";

/// Chromium settings (`[chromium]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChromiumConfig {
    /// The program (a name on PATH or a path).
    pub program: String,
    /// Longest wait for any one browser step (launch, load, snapshot), ms.
    pub timeout_ms: u64,
    /// Time after the load event before the settled snapshot, ms (scripts that reveal popups
    /// run in this window).
    pub settle_ms: u64,
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        Self {
            program: "chromium".to_owned(),
            timeout_ms: 20_000,
            settle_ms: 700,
        }
    }
}

/// The snapshots of one page load.
#[derive(Debug, Clone)]
pub struct ChromiumCapture {
    /// At `DOMContentLoaded`.
    pub parse_end: LayoutSnapshot,
    /// After the load event and the settle time.
    pub settled: LayoutSnapshot,
    /// After scrolling, when a scroll offset was asked for.
    pub scrolled: Option<LayoutSnapshot>,
    /// Index in `settled.objects` of the element the selector picked.
    pub selected: Option<usize>,
}

/// A running headless Chromium with a DevTools connection; stopped (with its whole process
/// group) on drop.
pub struct ChromiumBrowser {
    browser: Browser,
    handler: JoinHandle<()>,
    child: ChildGuard,
    dir: tempfile::TempDir,
    config: ChromiumConfig,
    pages: AtomicU64,
}

impl std::fmt::Debug for ChromiumBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromiumBrowser")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Drop for ChromiumBrowser {
    fn drop(&mut self) {
        self.handler.abort();
    }
}

async fn within<T, E>(
    config: &ChromiumConfig,
    context: &str,
    future: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(Duration::from_millis(config.timeout_ms), future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(Error::chromium(context, error)),
        Err(_) => Err(Error::ChromiumTimeout {
            context: context.to_owned(),
            timeout_ms: config.timeout_ms,
        }),
    }
}

impl ChromiumBrowser {
    /// Starts Chromium headless on 127.0.0.1 with the network blocked and connects to it.
    ///
    /// # Errors
    /// [`Error::Chromium`] when the program is missing (run `scripts/setup`) or does not start;
    /// [`Error::ChromiumTimeout`].
    pub async fn launch(config: &ChromiumConfig, viewport: (u32, u32)) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating", "temp dir", e))?;
        let profile = dir.path().join("profile");
        let log = dir.path().join("chromium.log");
        let spec = ProcessSpec::new(&config.program)
            .args([
                "--headless".to_owned(),
                "--no-sandbox".to_owned(),
                "--disable-gpu".to_owned(),
                "--no-first-run".to_owned(),
                "--no-default-browser-check".to_owned(),
                "--disable-background-networking".to_owned(),
                "--disable-component-update".to_owned(),
                "--disable-sync".to_owned(),
                "--disable-extensions".to_owned(),
                "--disable-default-apps".to_owned(),
                "--mute-audio".to_owned(),
                // Overlay scrollbars take no layout width, as in the embedded engine.
                "--hide-scrollbars".to_owned(),
                "--host-resolver-rules=MAP * ~NOTFOUND".to_owned(),
                "--proxy-server=http://127.0.0.1:9".to_owned(),
                "--remote-debugging-address=127.0.0.1".to_owned(),
                "--remote-debugging-port=0".to_owned(),
                format!("--user-data-dir={}", profile.display()),
                format!("--window-size={},{}", viewport.0, viewport.1),
                "about:blank".to_owned(),
            ])
            .log_file(&log);
        let mut child = spec
            .spawn()
            .map_err(|e| Error::chromium(format!("starting `{}`", config.program), e))?;
        let ready = Readiness::LogContains("DevTools listening on ".to_owned());
        let wait = Duration::from_millis(config.timeout_ms);
        let (child, ws) = tokio::task::spawn_blocking(move || {
            let result = child.wait_ready(&ready, wait);
            let ws = child.log().lines().find_map(|l| {
                l.split_once("DevTools listening on ")
                    .map(|(_, u)| u.trim().to_owned())
            });
            (child, result.map(|()| ws))
        })
        .await
        .map_err(|e| Error::chromium("waiting for the DevTools port", e))?;
        let ws = ws
            .map_err(|e| Error::chromium("waiting for the DevTools port", e))?
            .ok_or_else(|| Error::chromium("reading the DevTools URL", "no URL in the log"))?;
        let (browser, mut handler) = within(config, "connecting", Browser::connect(ws)).await?;
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if event.is_err() {
                    tracing::debug!("chromium handler event error");
                }
            }
        });
        Ok(Self {
            browser,
            handler,
            child,
            dir,
            config: config.clone(),
            pages: AtomicU64::new(0),
        })
    }

    /// Process id of the browser (also its process group: renderers and helpers included).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Loads `page` and takes its snapshots (see the module docs). With `scroll_y`, also
    /// scrolls there and snapshots again; with `selector`, finds the first matching element.
    ///
    /// # Errors
    /// [`Error::Chromium`], [`Error::ChromiumTimeout`], [`Error::SnapshotShape`],
    /// [`Error::BadSelector`], [`Error::SelectorNoMatch`].
    pub async fn capture(
        &self,
        page: &PageInput,
        viewport: (u32, u32),
        scroll_y: Option<i32>,
        selector: Option<&str>,
    ) -> Result<ChromiumCapture> {
        let n = self.pages.fetch_add(1, Ordering::Relaxed);
        let file: PathBuf = self.dir.path().join(format!("page-{n}.html"));
        fs_err::write(&file, page.html.as_bytes()).map_err(|e| Error::io("writing", &file, e))?;
        let file_url = url::Url::from_file_path(&file)
            .map_err(|()| Error::chromium("making a file URL", "not an absolute path"))?;
        let config = &self.config;
        let tab: Page = within(
            config,
            "opening a tab",
            self.browser.new_page("about:blank"),
        )
        .await?;
        let result = self
            .capture_in(&tab, page, file_url.as_str(), viewport, scroll_y, selector)
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(5), tab.close()).await;
        let _ = fs_err::remove_file(&file);
        result
    }

    async fn capture_in(
        &self,
        tab: &Page,
        page: &PageInput,
        file_url: &str,
        viewport: (u32, u32),
        scroll_y: Option<i32>,
        selector: Option<&str>,
    ) -> Result<ChromiumCapture> {
        let config = &self.config;
        let metrics = SetDeviceMetricsOverrideParams::new(
            i64::from(viewport.0),
            i64::from(viewport.1),
            1.0,
            false,
        );
        within(config, "setting the viewport", tab.execute(metrics)).await?;
        // Generic families through fontconfig, as the embedded engine (parley) resolves them;
        // Chromium's own default ("Times New Roman" -> Liberation Serif) would make every line
        // of default-font text a different height in the two engines.
        let families = FontFamilies {
            standard: Some("serif".to_owned()),
            serif: Some("serif".to_owned()),
            sans_serif: Some("sans-serif".to_owned()),
            fixed: Some("monospace".to_owned()),
            ..FontFamilies::default()
        };
        within(
            config,
            "setting the font families",
            tab.execute(SetFontFamiliesParams::new(families)),
        )
        .await?;
        let mut dom_ready = within(
            config,
            "listening for DOMContentLoaded",
            tab.event_listener::<EventDomContentEventFired>(),
        )
        .await?;
        let mut loaded = within(
            config,
            "listening for load",
            tab.event_listener::<EventLoadEventFired>(),
        )
        .await?;
        within(
            config,
            "navigating",
            tab.execute(NavigateParams::new(file_url)),
        )
        .await?;
        wait_event(config, "DOMContentLoaded", dom_ready.next()).await?;
        let parse_end = snapshot(tab, config, page, viewport).await?;
        wait_event(config, "load", loaded.next()).await?;
        tokio::time::sleep(Duration::from_millis(config.settle_ms)).await;
        if let Some(selector) = selector {
            let quoted = serde_json::to_string(selector).unwrap_or_default();
            let script = format!(
                "(() => {{ try {{ const e = document.querySelector({quoted}); if (!e) return 'none'; \
                 e.setAttribute('{SELECTED_MARK}', '1'); return 'ok'; }} catch (x) {{ return 'bad'; }} }})()"
            );
            let answer: String = within(config, "evaluating the selector", tab.evaluate(script))
                .await?
                .into_value()
                .unwrap_or_default();
            match answer.as_str() {
                "ok" => {}
                "none" => {
                    return Err(Error::SelectorNoMatch {
                        selector: selector.to_owned(),
                    });
                }
                _ => {
                    return Err(Error::BadSelector {
                        selector: selector.to_owned(),
                    });
                }
            }
        }
        let mut settled = snapshot(tab, config, page, viewport).await?;
        let selected = settled
            .objects
            .iter()
            .position(|o| o.attr(SELECTED_MARK).is_some());
        for object in &mut settled.objects {
            object.attributes.retain(|(k, _)| k != SELECTED_MARK);
        }
        let scrolled = match scroll_y {
            Some(y) => {
                let script = format!("window.scrollTo(0, {y}); window.scrollY");
                within(config, "scrolling", tab.evaluate(script)).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                Some(snapshot(tab, config, page, viewport).await?)
            }
            None => None,
        };
        Ok(ChromiumCapture {
            parse_end,
            settled,
            scrolled,
            selected,
        })
    }
}

async fn wait_event<T>(
    config: &ChromiumConfig,
    what: &str,
    next: impl Future<Output = Option<T>>,
) -> Result<()> {
    match tokio::time::timeout(Duration::from_millis(config.timeout_ms), next).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::chromium(
            format!("waiting for {what}"),
            "event stream ended",
        )),
        Err(_) => Err(Error::ChromiumTimeout {
            context: format!("waiting for {what}"),
            timeout_ms: config.timeout_ms,
        }),
    }
}

async fn snapshot(
    tab: &Page,
    config: &ChromiumConfig,
    page: &PageInput,
    viewport: (u32, u32),
) -> Result<LayoutSnapshot> {
    let mut params =
        CaptureSnapshotParams::new(STYLE_PROPERTIES.iter().map(|s| (*s).to_owned()).collect());
    params.include_paint_order = Some(true);
    let answer = within(config, "capturing the DOM snapshot", tab.execute(params)).await?;
    read_snapshot(&answer.result, &page.base_url, viewport)
}

/// Converts a DOMSnapshot answer into layout objects: one per DOM node that has a layout
/// tree entry (the first entry, when Blink made several), parented to the nearest ancestor
/// that has one.
///
/// # Errors
/// [`Error::SnapshotShape`] when the arrays are missing or inconsistent.
pub fn read_snapshot(
    answer: &CaptureSnapshotReturns,
    url: &str,
    viewport: (u32, u32),
) -> Result<LayoutSnapshot> {
    let shape = |what: &str| Error::SnapshotShape {
        what: what.to_owned(),
    };
    let document = answer
        .documents
        .first()
        .ok_or_else(|| shape("no document"))?;
    let strings = &answer.strings;
    let text_of = |index: i64| -> &str {
        usize::try_from(index)
            .ok()
            .and_then(|i| strings.get(i))
            .map_or("", String::as_str)
    };
    let nodes = &document.nodes;
    let parents = nodes
        .parent_index
        .as_ref()
        .ok_or_else(|| shape("parentIndex"))?;
    let types = nodes.node_type.as_ref().ok_or_else(|| shape("nodeType"))?;
    let names = nodes.node_name.as_ref().ok_or_else(|| shape("nodeName"))?;
    let values = nodes.node_value.as_ref();
    let backend = nodes.backend_node_id.as_ref();
    let attributes = nodes.attributes.as_ref();
    let layout = &document.layout;
    let mut layout_of: HashMap<usize, usize> = HashMap::new();
    for (entry, node) in layout.node_index.iter().enumerate() {
        if let Ok(node) = usize::try_from(*node) {
            layout_of.entry(node).or_insert(entry);
        }
    }
    let count = parents.len();
    let mut object_of: Vec<Option<usize>> = vec![None; count];
    let mut objects: Vec<LayoutObject> = Vec::new();
    for node in 0..count {
        let Some(&entry) = layout_of.get(&node) else {
            continue;
        };
        let name = names.get(node).map_or("", |s| text_of(*s.inner()));
        if name.starts_with("::") {
            continue; // pseudo-elements
        }
        let kind = match types.get(node) {
            Some(9) => NodeKind::Document,
            Some(1) => NodeKind::Element,
            Some(3) => NodeKind::Text,
            _ => continue,
        };
        // Nearest ancestor with an object.
        let mut p = parents.get(node).copied().unwrap_or(-1);
        let mut parent = None;
        while let Ok(pi) = usize::try_from(p) {
            if pi >= node {
                break;
            }
            if let Some(o) = object_of[pi] {
                parent = Some(o);
                break;
            }
            p = parents.get(pi).copied().unwrap_or(-1);
        }
        if kind != NodeKind::Document && parent.is_none() {
            continue;
        }
        let style_values: Vec<String> = layout
            .styles
            .get(entry)
            .map(|a| {
                a.inner()
                    .iter()
                    .map(|s| text_of(*s.inner()).to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let style = ComputedStyle::from_values(&style_values);
        let tag = match kind {
            NodeKind::Document => "#document".to_owned(),
            NodeKind::Text => "#text".to_owned(),
            NodeKind::Element => name.to_ascii_lowercase(),
        };
        let Some(class) = object_type(kind, &tag, &style.display) else {
            continue;
        };
        let bounds = layout
            .bounds
            .get(entry)
            .map(|r| r.inner().clone())
            .unwrap_or_default();
        let rect = if bounds.len() >= 4 {
            Rect {
                x: bounds[0] as f32,
                y: bounds[1] as f32,
                width: bounds[2].max(0.0) as f32,
                height: bounds[3].max(0.0) as f32,
            }
        } else {
            Rect::default()
        };
        let text = if kind == NodeKind::Text {
            let from_layout = layout.text.get(entry).map_or("", |s| text_of(*s.inner()));
            let raw = if from_layout.is_empty() {
                values
                    .and_then(|v| v.get(node))
                    .map_or("", |s| text_of(*s.inner()))
            } else {
                from_layout
            };
            let collapsed = collapse_text(raw, crate::engine::embedded::MAX_TEXT_CHARS);
            if collapsed.is_empty() {
                continue;
            }
            collapsed
        } else {
            String::new()
        };
        let attrs: Vec<(String, String)> = attributes
            .and_then(|a| a.get(node))
            .map(|list| {
                list.inner()
                    .chunks(2)
                    .filter(|pair| pair.len() == 2)
                    .map(|pair| {
                        (
                            text_of(*pair[0].inner()).to_owned(),
                            text_of(*pair[1].inner()).to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        // A text node takes its parent's style (Blink reports the inherited values too).
        let style = if kind == NodeKind::Text {
            parent.map_or(style.clone(), |p| {
                let mut inherited = objects[p].style.clone();
                inherited.display = style.display.clone();
                inherited
            })
        } else {
            style
        };
        object_of[node] = Some(objects.len());
        objects.push(LayoutObject {
            engine_node: backend
                .and_then(|b| b.get(node))
                .map_or(node as u64, |b| u64::try_from(*b.inner()).unwrap_or(0)),
            parent,
            kind,
            tag,
            object_type: class,
            rect,
            attributes: attrs,
            text,
            style,
            paint_order: layout
                .paint_orders
                .as_ref()
                .and_then(|p| p.get(entry))
                .and_then(|v| i32::try_from(*v).ok()),
        });
    }
    if objects.first().is_none_or(|o| o.kind != NodeKind::Document) {
        return Err(shape("the document has no LayoutView"));
    }
    Ok(LayoutSnapshot {
        url: url.to_owned(),
        engine: EngineKind::Chromium,
        viewport_width: viewport.0,
        viewport_height: viewport.1,
        scroll_y: document.scroll_offset_y.unwrap_or(0.0).round() as i32,
        document_width: document.content_width.unwrap_or(0.0).round().max(0.0) as u32,
        document_height: document.content_height.unwrap_or(0.0).round().max(0.0) as u32,
        objects,
    })
}
