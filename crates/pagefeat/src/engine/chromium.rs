//! The reference engine: Debian's headless Chromium driven over the DevTools protocol with
//! `chromiumoxide`, sealed (issue 15 item 6):
//!
//! - the page is navigated to at its own base URL and its document is answered from memory
//!   through `Fetch` interception; every other request is refused in the browser: a further
//!   navigation of the tab or a frame gets "204 No Content" (the document stays; the tab's
//!   first refused URL is reported in [`ChromiumCapture::refused_navigation`]), any other
//!   request fails (`BlockedByClient`). So nothing leaves the browser, a script cannot take the
//!   tab away, and `file://` is out of reach (an `http(s)` page may not load local resources;
//!   a refused `file:` frame that never finishes loading does not hold the page past half its
//!   deadline);
//! - as further walls, every host name resolves to nothing, HTTP(S) goes to a dead proxy on
//!   127.0.0.1:9, and WebRTC may not use UDP outside a proxy (no STUN, no mDNS candidates);
//! - JavaScript dialogs (`alert`, `confirm`, `prompt`, `beforeunload`) are dismissed at once;
//! - each page has a deadline (`chromium.page_deadline_ms`, default 5 s,
//!   [`Error::PageDeadline`]);
//! - a browser that died (crash, kill) is started again before the next page;
//! - around the process ([`crate::engine::isolation`], `chromium.isolation`, default
//!   `"netns"`): a network namespace of its own holding only `lo`, an unprivileged user
//!   (`chromium.sandbox_uid`, default 65534) when pagefeat is root, Chromium's sandbox on,
//!   DevTools connected from a thread that entered the namespace. Where that cannot work
//!   (not root, tools or namespaces missing) launching fails with
//!   [`Error::IsolationUnavailable`]; `"none"` keeps the old way (pagefeat's namespace and
//!   user, `--no-sandbox`).
//!
//! `DOMSnapshot.captureSnapshot` (layout bounds, computed styles, paint orders) is read into
//! the same [`LayoutSnapshot`] as the embedded engine. Snapshots per page: at the end of
//! parsing (`DOMContentLoaded`), after the load event plus a settle time (the pre-paint-end
//! trigger, used for popups: objects invisible at parse end and visible now, seed ¶74), and
//! optionally after scrolling.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chromiumoxide::Browser;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::dom_snapshot::CaptureSnapshotParams;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::fetch::{
    EnableParams as FetchEnableParams, EventRequestPaused, FailRequestParams, FulfillRequestParams,
    HeaderEntry, RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::network::{ErrorReason, ResourceType};
use chromiumoxide::cdp::browser_protocol::page::{
    EventDomContentEventFired, EventJavascriptDialogOpening, EventLoadEventFired, FontFamilies,
    HandleJavaScriptDialogParams, NavigateParams, SetFontFamiliesParams,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use svckit::process::{ChildGuard, ProcessSpec, Readiness};
use tokio::task::JoinHandle;

use crate::engine::fonts;
use crate::engine::isolation::{self, DEFAULT_SANDBOX_ID, Isolation, Tools};
pub use crate::engine::snapshot::read_snapshot;
use crate::error::{Error, Result};
use crate::input::PageInput;
use crate::layout::{LayoutSnapshot, STYLE_PROPERTIES};

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
    /// Longest time for one whole page (tab, load, settle, snapshots), ms.
    pub page_deadline_ms: u64,
    /// The walls around the process: `"netns"` (default; a network namespace of its own, an
    /// unprivileged user, Chromium's sandbox on; needs root) or `"none"` (see
    /// [`crate::engine::isolation`]).
    pub isolation: Isolation,
    /// With `isolation = "netns"`: the user id Chromium runs as (default 65534, `nobody`; 0 is
    /// refused by [`crate::config::Config::validate`]).
    pub sandbox_uid: u32,
    /// With `isolation = "netns"`: the group id Chromium runs as (default 65534).
    pub sandbox_gid: u32,
}

impl Default for ChromiumConfig {
    fn default() -> Self {
        Self {
            program: "chromium".to_owned(),
            timeout_ms: 20_000,
            settle_ms: 700,
            page_deadline_ms: 5_000,
            isolation: Isolation::Netns,
            sandbox_uid: DEFAULT_SANDBOX_ID,
            sandbox_gid: DEFAULT_SANDBOX_ID,
        }
    }
}

/// Where a page without an `http(s)` base URL is served from (never resolved: the document
/// comes from memory).
const SEALED_FALLBACK_URL: &str = "http://page.invalid/";

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
    /// The first URL the page's scripts tried to take the tab to (refused: the page stayed).
    pub refused_navigation: Option<String>,
}

/// One running Chromium process with its DevTools connection; stopped (with its whole
/// process group) on drop.
struct Session {
    browser: Browser,
    handler: JoinHandle<()>,
    child: std::sync::Mutex<ChildGuard>,
    pid: u32,
    /// The port DevTools listens on (inside the browser's namespace with netns isolation).
    devtools_port: u16,
}

impl Session {
    /// The process has not exited and the DevTools connection is open.
    fn alive(&self) -> bool {
        let running = self
            .child
            .lock()
            .map(|mut child| child.try_exit_status().is_none())
            .unwrap_or(false);
        running && !self.handler.is_finished()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.handler.abort();
    }
}

/// A headless Chromium that loads one page per tab, sealed as the module docs describe, and
/// started again when it dies.
pub struct ChromiumBrowser {
    session: tokio::sync::RwLock<Arc<Session>>,
    dir: tempfile::TempDir,
    config: ChromiumConfig,
    tools: Option<Tools>,
    viewport: (u32, u32),
    launches: AtomicU64,
}

impl std::fmt::Debug for ChromiumBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromiumBrowser")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
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
    /// Starts Chromium headless, sealed and isolated as `config.isolation` says, and connects
    /// to it.
    ///
    /// # Errors
    /// [`Error::IsolationUnavailable`] when `isolation = "netns"` cannot work here (not root,
    /// tools missing, no namespaces); [`Error::Chromium`] when the program is missing (run
    /// `scripts/setup`) or does not start; [`Error::ChromiumTimeout`].
    pub async fn launch(config: &ChromiumConfig, viewport: (u32, u32)) -> Result<Self> {
        let isolation = config.isolation;
        let tools = tokio::task::spawn_blocking(move || {
            // Asks fontconfig for the generic faces once, off the async threads.
            fonts::generic_faces();
            isolation::check(isolation)
        })
        .await
        .map_err(|e| Error::chromium("checking the isolation", e))??;
        let dir = tempfile::tempdir().map_err(|e| Error::io("creating", "temp dir", e))?;
        if tools.is_some() {
            isolation::hand_over(dir.path(), config.sandbox_uid, config.sandbox_gid)?;
        }
        let session = start(config, tools.as_ref(), viewport, dir.path(), 0).await?;
        Ok(Self {
            session: tokio::sync::RwLock::new(Arc::new(session)),
            dir,
            config: config.clone(),
            tools,
            viewport,
            launches: AtomicU64::new(1),
        })
    }

    /// The port DevTools listens on in the browser's network namespace (the only traffic
    /// there, on `lo`, with netns isolation); 0 while it is being started again.
    pub fn devtools_port(&self) -> u16 {
        self.session
            .try_read()
            .map_or(0, |session| session.devtools_port)
    }

    /// Process id of the current browser (also its process group: renderers and helpers
    /// included); 0 while it is being started again.
    pub fn pid(&self) -> u32 {
        self.session.try_read().map_or(0, |session| session.pid)
    }

    /// How many times a browser was started (1 + restarts after it died).
    pub fn launches(&self) -> u64 {
        self.launches.load(Ordering::Relaxed)
    }

    /// The running session, or a new one when the current browser died.
    async fn live_session(&self) -> Result<Arc<Session>> {
        let current = Arc::clone(&*self.session.read().await);
        if current.alive() {
            return Ok(current);
        }
        let mut slot = self.session.write().await;
        if Arc::ptr_eq(&slot, &current) {
            let n = self.launches.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(launch = n + 1, "chromium died; starting it again");
            let session = start(
                &self.config,
                self.tools.as_ref(),
                self.viewport,
                self.dir.path(),
                n,
            )
            .await?;
            *slot = Arc::new(session);
        }
        Ok(Arc::clone(&slot))
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
        let session = self.live_session().await?;
        let config = &self.config;
        let tab: Page = within(
            config,
            "opening a tab",
            session.browser.new_page("about:blank"),
        )
        .await?;
        let page_url = sealed_url(&page.base_url);
        let (guard, navigated) = match seal(&tab, config, &page_url, page.html.as_bytes()).await {
            Ok(sealed) => sealed,
            Err(error) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), tab.close()).await;
                return Err(error);
            }
        };
        let deadline = Duration::from_millis(config.page_deadline_ms);
        let result = match tokio::time::timeout(
            deadline,
            self.capture_in(&tab, page, &page_url, viewport, scroll_y, selector),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::PageDeadline {
                deadline_ms: config.page_deadline_ms,
            }),
        };
        guard.abort();
        let _ = tokio::time::timeout(Duration::from_secs(5), tab.close()).await;
        let refused = navigated.lock().ok().and_then(|to| to.clone());
        result.map(|capture| ChromiumCapture {
            refused_navigation: refused,
            ..capture
        })
    }

    async fn capture_in(
        &self,
        tab: &Page,
        page: &PageInput,
        page_url: &str,
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
        // Generic families as fontconfig matches them, by the matched family's name
        // (`engine::fonts`): a generic keyword is looked up as a family name here, and
        // `sans-serif` found nothing and fell back to the serif standard font. The standard
        // font (what text without a usable family takes) is the serif face.
        let faces = fonts::generic_faces();
        let families = FontFamilies {
            standard: Some(faces.serif.clone()),
            serif: Some(faces.serif.clone()),
            sans_serif: Some(faces.sans_serif.clone()),
            fixed: Some(faces.monospace.clone()),
            cursive: Some(faces.cursive.clone()),
            fantasy: Some(faces.fantasy.clone()),
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
        // A load event that never comes (a frame Chromium refuses to load, such as a
        // `file:` iframe, stays pending) does not sink the page: after half its deadline the
        // page is taken as it is. (The navigation command itself answers only at load.)
        let load_wait = Duration::from_millis(config.timeout_ms.min(config.page_deadline_ms / 2));
        match tokio::time::timeout(load_wait, tab.execute(NavigateParams::new(page_url))).await {
            Ok(answer) => {
                answer.map_err(|e| Error::chromium("navigating", e))?;
            }
            Err(_) => tracing::debug!(?load_wait, "navigation not finished; going on"),
        }
        wait_event(config, "DOMContentLoaded", dom_ready.next()).await?;
        let parse_end = snapshot(tab, config, page, viewport).await?;
        if tokio::time::timeout(load_wait, loaded.next())
            .await
            .is_err()
        {
            tracing::debug!(?load_wait, "no load event; taking the page as it is");
        }
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
            refused_navigation: None,
        })
    }
}

/// Starts one Chromium process (profile `profile-{n}` under `dir`) and connects to it: in a
/// network namespace of its own as the sandbox user when `tools` is given (netns isolation),
/// else in pagefeat's namespace with `--no-sandbox`.
async fn start(
    config: &ChromiumConfig,
    tools: Option<&Tools>,
    viewport: (u32, u32),
    dir: &std::path::Path,
    n: u64,
) -> Result<Session> {
    let profile = dir.join(format!("profile-{n}"));
    let log = dir.join(format!("chromium-{n}.log"));
    let mut args = vec![
        "--headless".to_owned(),
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
        // WebRTC: no UDP outside the (dead) proxy, so no STUN and no mDNS candidates.
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp".to_owned(),
        "--webrtc-ip-handling-policy=disable_non_proxied_udp".to_owned(),
        // One renderer for all frames (no out-of-process iframes), so every frame's
        // requests reach the page's own interception.
        "--disable-site-isolation-trials".to_owned(),
        "--disable-features=WebRtcHideLocalIpsWithMdns,MediaRouter,DialMediaRouteProvider,\
         IsolateOrigins,site-per-process"
            .to_owned(),
        "--remote-debugging-address=127.0.0.1".to_owned(),
        "--remote-debugging-port=0".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={},{}", viewport.0, viewport.1),
        "about:blank".to_owned(),
    ];
    let spec = match tools {
        Some(tools) => {
            fs_err::create_dir_all(&profile)
                .map_err(|e| Error::io("creating", profile.clone(), e))?;
            isolation::hand_over(&profile, config.sandbox_uid, config.sandbox_gid)?;
            let program = svckit::process::find_program(&config.program).ok_or_else(|| {
                Error::chromium(
                    format!("starting `{}`", config.program),
                    "program not found (run scripts/setup)",
                )
            })?;
            isolation::namespaced_spec(
                tools,
                &program,
                &args,
                config.sandbox_uid,
                config.sandbox_gid,
            )
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir)
            .env("XDG_CACHE_HOME", dir)
        }
        None => {
            args.insert(1, "--no-sandbox".to_owned());
            ProcessSpec::new(&config.program).args(args)
        }
    }
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
    let pid = child.pid();
    let devtools_port = isolation::ws_addr(&ws)?.port();
    let (browser, mut handler) = if tools.is_some() {
        // The DevTools socket is opened from inside the browser's network namespace.
        let config = config.clone();
        isolation::in_namespace(pid, async move {
            within(&config, "connecting", Browser::connect(ws)).await
        })
        .await??
    } else {
        within(config, "connecting", Browser::connect(ws)).await?
    };
    let handler = tokio::spawn(async move {
        while let Some(event) = handler.next().await {
            if event.is_err() {
                tracing::debug!("chromium handler event error");
            }
        }
    });
    tracing::debug!(
        pid,
        devtools_port,
        isolated = tools.is_some(),
        "chromium started"
    );
    Ok(Session {
        browser,
        handler,
        child: std::sync::Mutex::new(child),
        pid,
        devtools_port,
    })
}

/// The URL a page is loaded at: its base URL when that is `http(s)` (so relative URLs
/// resolve as on the web), without fragment; else [`SEALED_FALLBACK_URL`].
fn sealed_url(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(mut url) if matches!(url.scheme(), "http" | "https") => {
            url.set_fragment(None);
            url.to_string()
        }
        _ => SEALED_FALLBACK_URL.to_owned(),
    }
}

/// Where a page's scripts tried to take its tab (the first refused navigation of the main
/// frame), shared with the sealing task.
type Navigated = Arc<std::sync::Mutex<Option<String>>>;

/// Seals `tab` before its navigation: the first document request for `page_url` is answered
/// with `html`, every other request fails (a refused navigation of the main frame is
/// recorded); dialogs are dismissed. The returned task does this until aborted.
async fn seal(
    tab: &Page,
    config: &ChromiumConfig,
    page_url: &str,
    html: &[u8],
) -> Result<(JoinHandle<()>, Navigated)> {
    use base64::Engine as _;
    let mut paused = within(
        config,
        "listening for requests",
        tab.event_listener::<EventRequestPaused>(),
    )
    .await?;
    let mut dialogs = within(
        config,
        "listening for dialogs",
        tab.event_listener::<EventJavascriptDialogOpening>(),
    )
    .await?;
    let every_request = RequestPattern::builder().url_pattern("*").build();
    let enable = FetchEnableParams::builder().pattern(every_request).build();
    within(config, "intercepting requests", tab.execute(enable)).await?;
    let main_frame = within(config, "finding the main frame", tab.mainframe()).await?;
    let body = base64::engine::general_purpose::STANDARD.encode(html);
    let page_url = page_url.to_owned();
    let tab = tab.clone();
    let navigated = Navigated::default();
    let record = Arc::clone(&navigated);
    let task = tokio::spawn(async move {
        let mut served = false;
        loop {
            tokio::select! {
                event = paused.next() => {
                    let Some(event) = event else { break };
                    let is_page = !served
                        && event.resource_type == ResourceType::Document
                        && event.request.url == page_url;
                    if is_page {
                        served = true;
                        let mut answer = FulfillRequestParams::new(event.request_id.clone(), 200);
                        answer.response_headers = Some(vec![HeaderEntry::new(
                            "Content-Type",
                            "text/html; charset=utf-8",
                        )]);
                        answer.body = Some(body.clone().into());
                        let _ = tab.execute(answer).await;
                    } else if event.resource_type == ResourceType::Document {
                        // A navigation (of the tab or of a frame) answered "204 No Content":
                        // browsers then stay on the current document, so the page is judged
                        // as given, not as an error page.
                        tracing::debug!(url = %event.request.url, "chromium navigation refused");
                        let leaves = main_frame.as_ref() == Some(&event.frame_id);
                        if leaves && let Ok(mut to) = record.lock() {
                            to.get_or_insert_with(|| event.request.url.clone());
                        }
                        let stay = FulfillRequestParams::new(event.request_id.clone(), 204);
                        let _ = tab.execute(stay).await;
                    } else {
                        tracing::debug!(url = %event.request.url, "chromium request refused");
                        let refuse =
                            FailRequestParams::new(event.request_id.clone(), ErrorReason::BlockedByClient);
                        let _ = tab.execute(refuse).await;
                    }
                }
                dialog = dialogs.next() => {
                    if dialog.is_none() { break }
                    let _ = tab.execute(HandleJavaScriptDialogParams::new(false)).await;
                }
            }
        }
    });
    Ok((task, navigated))
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
