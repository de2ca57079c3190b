//! `streamgate demo`: the whole system on 127.0.0.1, each part its own process, checked end
//! to end with real clients.
//!
//! Parts: the gst-rtsp-server camera; the registry; namespace `NameSpaceA` with media server
//! `media-a` (cameras `main_stream`, `sub_stream` and `dead_stream`, whose camera port is
//! closed) behind forwarder `ServiceA`; namespace `NameSpace-B` with media server `media-b`
//! (`aux_stream`, `sub_stream`) behind forwarder `Service-B` (hyphenated names on purpose);
//! and the proxy, the one public port.
//!
//! Checks (any failure makes the exit code 2):
//! 1. four streams in two namespaces through the public port: a viewer gets the FLV header,
//!    the sequence header and a key frame, and `ffprobe` decodes H.264 with its size;
//! 2. fan-out: N (50) concurrent viewers of one idle stream cause exactly one RTSP session,
//!    counted at the camera and by the media server's `streamgate_rtsp_sessions_total`;
//! 3. restart: `media-b` is killed (`SIGKILL`) and started again on a new port; the same URL
//!    plays again (200 and a key frame) within 1 s of its re-registration;
//! 4. errors: a malformed path answers 400, an unknown service 404 with a JSON reason within
//!    2 s, a camera that is down 502 within the RTSP timeout.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::camera::Camera;
use crate::cluster::{
    Launcher, Part, free_port, get_text, loopback, metric_value, wait_for_new_address,
    wait_for_routes,
};
use crate::viewer::{Viewer, client};

/// RTSP timeout given to the media servers in the demo, ms.
const RTSP_TIMEOUT_MS: u64 = 3000;
/// Longest a viewer waits for its first key frame.
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(15);

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The clip the camera serves at `/main_stream`.
    pub input: PathBuf,
    /// Concurrent viewers in the fan-out check.
    pub viewers: usize,
    /// Keep the logs directory.
    pub keep_logs: bool,
    /// Show a spinner on stderr.
    pub progress: bool,
}

/// One stream as checked through the public port.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// The public path.
    pub url: String,
    /// `ffprobe` decoded an H.264 video stream with a size.
    pub ffprobe_ok: bool,
    /// The video codec `ffprobe` reported.
    pub codec: String,
    /// Picture width `ffprobe` reported.
    pub width: u32,
    /// Picture height `ffprobe` reported.
    pub height: u32,
    /// Request to first key frame received, ms (the pull starts cold: RTSP set-up included).
    pub first_frame_ms: u64,
}

/// The fan-out check.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// Concurrent viewers.
    pub viewers: usize,
    /// RTSP sessions they caused, counted at the camera.
    pub upstream_pulls: usize,
}

/// The restart check.
#[derive(Debug, Clone, Serialize)]
pub struct RestartReport {
    /// The media server's address before.
    pub old_addr: String,
    /// Its address after the restart.
    pub new_addr: String,
    /// Re-registration to the first key frame through the same public URL, ms.
    pub ok_after_ms: u64,
}

/// The statuses of the error cases.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorsReport {
    /// A malformed path.
    pub malformed: u16,
    /// An unknown service.
    pub unknown: u16,
    /// A camera that is down.
    pub camera_down: u16,
}

/// The JSON report (the last stdout line with `--json`), in the shape.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    /// The proxy's port.
    pub public_port: u16,
    /// Streams checked.
    pub streams: Vec<StreamReport>,
    /// Fan-out.
    pub fanout: FanoutReport,
    /// Restart.
    pub restart: RestartReport,
    /// Error statuses.
    pub errors: ErrorsReport,
}

/// The report, the failed checks and extra figures for the stderr table.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    /// The report.
    pub report: DemoReport,
    /// Failed checks, empty when all hold.
    pub failures: Vec<String>,
    /// Extra figures: (what, value).
    pub notes: Vec<(String, String)>,
}

impl DemoOutcome {
    /// The human-readable summary.
    pub fn table(&self) -> String {
        let r = &self.report;
        let mut out = format!("\nstreamgate demo: public port {}\n", r.public_port);
        out.push_str(&format!(
            "{:<52} {:>7} {:>6} {:>9} {:>11}\n",
            "stream", "ffprobe", "codec", "size", "1st frame"
        ));
        for s in &r.streams {
            out.push_str(&format!(
                "{:<52} {:>7} {:>6} {:>9} {:>8} ms\n",
                s.url,
                if s.ffprobe_ok { "ok" } else { "FAIL" },
                s.codec,
                format!("{}x{}", s.width, s.height),
                s.first_frame_ms
            ));
        }
        out.push_str(&format!(
            "fan-out: {} viewers -> {} RTSP session(s) at the camera\n",
            r.fanout.viewers, r.fanout.upstream_pulls
        ));
        out.push_str(&format!(
            "restart: {} -> {}, playing {} ms after re-registration\n",
            r.restart.old_addr, r.restart.new_addr, r.restart.ok_after_ms
        ));
        out.push_str(&format!(
            "errors: malformed {}, unknown {}, camera down {}\n",
            r.errors.malformed, r.errors.unknown, r.errors.camera_down
        ));
        for (what, value) in &self.notes {
            out.push_str(&format!("  {what}: {value}\n"));
        }
        out
    }
}

struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(enabled: bool) -> Self {
        Self(enabled.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        }))
    }
    fn step(&self, message: &str) {
        match &self.0 {
            Some(bar) => bar.set_message(message.to_owned()),
            None => tracing::info!("{message}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// What ffprobe said about a URL's video stream.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// Exit status was 0 and a video stream was found.
    pub ok: bool,
    /// `codec_name`.
    pub codec: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Codecs of all streams, e.g. `h264,aac`.
    pub all_codecs: String,
}

/// Runs `ffprobe` on an FLV URL (with the probe limits that keep it from waiting for data
/// that never comes) and reads its JSON.
///
/// # Errors
/// When ffprobe is missing or cannot be run.
pub fn ffprobe(url: &str) -> anyhow::Result<Probe> {
    let program =
        svckit::process::find_program("ffprobe").context("ffprobe not found; run scripts/setup")?;
    let output = Command::new(program)
        .args([
            "-v",
            "error",
            "-analyzeduration",
            "500000",
            "-probesize",
            "65536",
            "-rw_timeout",
            "15000000",
        ])
        .args([
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
            "-of",
            "json",
            url,
        ])
        .output()
        .context("running ffprobe")?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    let mut probe = Probe {
        all_codecs: streams
            .iter()
            .filter_map(|s| s["codec_name"].as_str())
            .collect::<Vec<_>>()
            .join(","),
        ..Probe::default()
    };
    if let Some(video) = video {
        probe.codec = video["codec_name"].as_str().unwrap_or_default().to_owned();
        probe.width = u32::try_from(video["width"].as_u64().unwrap_or(0)).unwrap_or(0);
        probe.height = u32::try_from(video["height"].as_u64().unwrap_or(0)).unwrap_or(0);
        probe.ok =
            output.status.success() && probe.codec == "h264" && probe.width > 0 && probe.height > 0;
    }
    Ok(probe)
}

/// Opens `url` and waits for the first key frame; returns request-to-key-frame time and
/// whether the FLV header, a sequence header and then the key frame came in that order.
async fn first_frame(url: &str) -> anyhow::Result<(Duration, bool)> {
    let client = client(Duration::from_secs(20));
    let mut viewer = Viewer::open(&client, url).await?;
    if !viewer.status().is_success() {
        let status = viewer.status();
        bail!(
            "{url} answered {status}: {}",
            viewer.text().await.unwrap_or_default()
        );
    }
    let Some((before, _key, at)) = viewer.until_key_frame(FIRST_FRAME_WITHIN).await? else {
        bail!("{url}: no key frame within {FIRST_FRAME_WITHIN:?}");
    };
    let ordered = viewer.header().is_some_and(|h| h.has_video)
        && before
            .iter()
            .any(crate::flv::ReadTag::is_avc_sequence_header);
    Ok((at - viewer.requested(), ordered))
}

async fn metric(part: &Part, stream: &str) -> f64 {
    match get_text(part.metrics_addr(), "/metrics").await {
        Ok((_, page)) => {
            metric_value(&page, "streamgate_rtsp_sessions_total", stream).unwrap_or(0.0)
        }
        Err(_) => f64::NAN,
    }
}

/// Runs the demo.
///
/// # Errors
/// When a part cannot be started at all (check failures are reported in the outcome).
pub async fn run(options: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let progress = Progress::new(options.progress);
    let logs = tempfile::Builder::new()
        .prefix("streamgate-demo-")
        .tempdir()?;
    let exe = std::env::current_exe().context("locating the streamgate binary")?;
    let mut failures = Vec::new();
    let mut notes = Vec::new();

    progress.step("starting the camera");
    let camera_port = free_port()?;
    let input = options.input.clone();
    let camera = tokio::task::spawn_blocking(move || {
        Camera::start(camera_port, &input, Duration::from_secs(30))
    })
    .await??;
    let cam = |path: &str| camera.url(path);

    progress.step("starting registry, media servers, forwarders and proxy");
    let registry_port = free_port()?;
    let dead_port = free_port()?;
    let public_port = free_port()?;
    let media_b_port = free_port()?;
    let mut launcher = Launcher::new(
        exe,
        logs.path(),
        format!("http://{}", loopback(registry_port)),
    );
    let rtsp_timeout = RTSP_TIMEOUT_MS.to_string();
    let media_b_cameras = vec![
        ("aux_stream", cam("/aux_stream")),
        ("sub_stream", cam("/sub_stream")),
    ];
    let (registry_part, media_a, mut media_b, forwarder_a, forwarder_b, proxy) =
        tokio::task::block_in_place(|| {
            let registry_part = launcher.registry(registry_port)?;
            let media_a = launcher.media(
                "media-a",
                "NameSpaceA",
                free_port()?,
                &[
                    ("main_stream", cam("/main_stream")),
                    ("sub_stream", cam("/sub_stream")),
                    (
                        "dead_stream",
                        format!("rtsp://127.0.0.1:{dead_port}/dead_stream"),
                    ),
                ],
                &["--rtsp-timeout-ms", &rtsp_timeout],
            )?;
            let media_b = launcher.media(
                "media-b",
                "NameSpace-B",
                media_b_port,
                &media_b_cameras,
                &["--rtsp-timeout-ms", &rtsp_timeout],
            )?;
            let forwarder_a = launcher.forwarder("ServiceA", "NameSpaceA", "media-a")?;
            let forwarder_b = launcher.forwarder("Service-B", "NameSpace-B", "media-b")?;
            let proxy = launcher.proxy(public_port)?;
            anyhow::Ok((
                registry_part,
                media_a,
                media_b,
                forwarder_a,
                forwarder_b,
                proxy,
            ))
        })?;
    let registry = launcher.registry_client();
    wait_for_routes(&registry, 2, 2, Duration::from_secs(10)).await?;
    let public = |path: &str| format!("http://{}{path}", proxy.addr());

    // 1. Streams through the one public port.
    let paths = [
        "/realtime-ServiceA-NameSpaceA/main_stream/0.flv",
        "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv",
        "/realtime-Service-B-NameSpace-B/aux_stream/0.flv",
        "/realtime-Service-B-NameSpace-B/sub_stream/0.flv",
    ];
    let mut streams = Vec::new();
    let mut main_left = Instant::now();
    for path in paths {
        progress.step(&format!("viewing and probing {path}"));
        let (first_ms, ordered) = match first_frame(&public(path)).await {
            Ok((elapsed, ordered)) => (
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                ordered,
            ),
            Err(error) => {
                failures.push(format!("{path}: {error:#}"));
                (0, false)
            }
        };
        if !ordered {
            failures.push(format!(
                "{path}: the first key frame did not follow the FLV header and sequence header"
            ));
        }
        let url = public(path);
        let probe = tokio::task::spawn_blocking(move || ffprobe(&url)).await??;
        if path == paths[0] {
            // ffprobe was main_stream's last viewer.
            main_left = Instant::now();
        }
        if !probe.ok {
            failures.push(format!("{path}: ffprobe did not decode H.264 ({probe:?})"));
        }
        notes.push((
            format!("ffprobe streams of {path}"),
            probe.all_codecs.clone(),
        ));
        streams.push(StreamReport {
            url: path.to_owned(),
            ffprobe_ok: probe.ok,
            codec: probe.codec,
            width: probe.width,
            height: probe.height,
            first_frame_ms: first_ms,
        });
    }
    let namespaces: std::collections::BTreeSet<&str> = streams
        .iter()
        .filter(|s| s.ffprobe_ok)
        .filter_map(|s| s.url.split('/').nth(1))
        .collect();
    if streams.iter().filter(|s| s.ffprobe_ok).count() < 3 || namespaces.len() < 2 {
        failures.push("fewer than three streams in two namespaces decoded".to_owned());
    }

    // 2. Fan-out on main_stream, once its earlier pull has stopped for lack of viewers.
    progress.step("waiting for the idle pull of main_stream to stop");
    let mut idle_stopped = None;
    while main_left.elapsed() < Duration::from_secs(20) {
        if let Ok((_, body)) = get_text(media_a.metrics_addr(), "/v1/streams").await
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(&body)
            && !json["running"]
                .as_array()
                .is_some_and(|r| r.iter().any(|s| s["stream"] == "main_stream"))
        {
            idle_stopped = Some(main_left.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match idle_stopped {
        Some(after) => notes.push((
            "idle pull stop".to_owned(),
            format!(
                "{} ms after its last viewer left (configured 5000)",
                after.as_millis()
            ),
        )),
        None => failures.push("the idle pull of main_stream did not stop".to_owned()),
    }
    progress.step(&format!("fan-out: {} concurrent viewers", options.viewers));
    let sessions_before = camera.sessions("/main_stream");
    let metric_before = metric(&media_a, "main_stream").await;
    let fan_url = public(paths[0]);
    let mut viewers = tokio::task::JoinSet::new();
    for _ in 0..options.viewers {
        let url = fan_url.clone();
        viewers.spawn(async move {
            let client = client(Duration::from_secs(20));
            let mut viewer = Viewer::open(&client, &url).await.ok()?;
            if !viewer.status().is_success() {
                return None;
            }
            let (_, _, at) = viewer.until_key_frame(FIRST_FRAME_WITHIN).await.ok()??;
            let ttff = at - viewer.requested();
            // Keep watching a little so all viewers overlap.
            let mut frames = 0_u32;
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(Ok(Some((tag, _)))) =
                tokio::time::timeout_at(until, viewer.next_tag()).await
            {
                frames += u32::from(tag.is_video_frame());
            }
            Some((ttff, frames))
        });
    }
    let mut ok_viewers = 0;
    let mut ttffs = Vec::new();
    while let Some(joined) = viewers.join_next().await {
        if let Ok(Some((ttff, frames))) = joined
            && frames > 0
        {
            ok_viewers += 1;
            ttffs.push(ttff);
        }
    }
    let upstream_pulls = camera
        .sessions("/main_stream")
        .saturating_sub(sessions_before);
    let metric_delta = metric(&media_a, "main_stream").await - metric_before;
    ttffs.sort();
    if let (Some(first), Some(last)) = (ttffs.first(), ttffs.last()) {
        notes.push((
            "fan-out time to first frame".to_owned(),
            format!(
                "{} to {} ms across {} viewers",
                first.as_millis(),
                last.as_millis(),
                ttffs.len()
            ),
        ));
    }
    notes.push((
        "fan-out media server metric".to_owned(),
        format!("streamgate_rtsp_sessions_total +{metric_delta}"),
    ));
    if ok_viewers != options.viewers {
        failures.push(format!(
            "fan-out: only {ok_viewers} of {} viewers received frames",
            options.viewers
        ));
    }
    if upstream_pulls != 1 || (metric_delta - 1.0).abs() > f64::EPSILON {
        failures.push(format!(
            "fan-out: {upstream_pulls} RTSP sessions at the camera and {metric_delta} by the metric, expected exactly 1"
        ));
    }

    // 3. Restart media-b on a new port.
    progress.step("restarting media-b on a new port");
    let restart_path = paths[2];
    let restart_url = public(restart_path);
    if let Err(error) = first_frame(&restart_url).await {
        failures.push(format!(
            "restart: {restart_path} did not play before the restart: {error:#}"
        ));
    }
    let old_addr = media_b.addr();
    media_b.child.kill();
    let (outage_status, _) = get_text(proxy.addr(), restart_path)
        .await
        .unwrap_or((0, String::new()));
    notes.push((
        "answer while media-b is gone but still registered".to_owned(),
        outage_status.to_string(),
    ));
    if outage_status != 503 {
        failures.push(format!(
            "restart: expected 503 while media-b was gone, got {outage_status}"
        ));
    }
    let new_port = free_port()?;
    let poll = {
        let registry = registry.clone();
        tokio::spawn(async move {
            wait_for_new_address(
                &registry,
                "media-b",
                old_addr,
                Duration::from_millis(2),
                Duration::from_secs(30),
            )
            .await
        })
    };
    let media_b2 = tokio::task::block_in_place(|| {
        launcher.media(
            "media-b",
            "NameSpace-B",
            new_port,
            &media_b_cameras,
            &["--rtsp-timeout-ms", &rtsp_timeout],
        )
    })?;
    let (record, registered_at) = poll.await??;
    let mut ok_after = None;
    let mut attempts = 0;
    while registered_at.elapsed() < Duration::from_secs(10) {
        attempts += 1;
        let client = client(Duration::from_secs(10));
        if let Ok(mut viewer) = Viewer::open(&client, &restart_url).await
            && viewer.status().is_success()
        {
            if let Ok(Some((_, _, at))) = viewer.until_key_frame(Duration::from_secs(5)).await {
                ok_after = Some(at - registered_at);
                notes.push((
                    "restart: response headers after re-registration".to_owned(),
                    format!(
                        "{} ms ({attempts} attempt(s))",
                        (viewer.opened() - registered_at).as_millis()
                    ),
                ));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ok_after_ms = ok_after.map_or(u64::MAX, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    });
    if ok_after.is_none_or(|d| d > Duration::from_secs(1)) {
        failures.push(format!(
            "restart: the URL played again {ok_after_ms} ms after re-registration (limit 1000)"
        ));
    }
    let restart = RestartReport {
        old_addr: old_addr.to_string(),
        new_addr: record.addr.to_string(),
        ok_after_ms,
    };

    // 4. Error answers.
    progress.step("checking error answers");
    let (malformed, _) = get_text(
        proxy.addr(),
        "/realtime-ServiceA-NameSpaceA/main_stream/zero.flv",
    )
    .await?;
    let started = Instant::now();
    let (unknown, body) = get_text(
        proxy.addr(),
        "/realtime-ServiceZ-NameSpaceA/main_stream/0.flv",
    )
    .await?;
    let unknown_after = started.elapsed();
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|j| j["error"].as_str().map(str::to_owned));
    notes.push((
        "unknown service".to_owned(),
        format!("{unknown} in {} ms: {reason:?}", unknown_after.as_millis()),
    ));
    let started = Instant::now();
    let (camera_down, _) = get_text(
        proxy.addr(),
        "/realtime-ServiceA-NameSpaceA/dead_stream/0.flv",
    )
    .await?;
    let down_after = started.elapsed();
    notes.push((
        "camera down".to_owned(),
        format!("{camera_down} in {} ms", down_after.as_millis()),
    ));
    if malformed != 400 {
        failures.push(format!("malformed path answered {malformed}, expected 400"));
    }
    if unknown != 404 || reason.is_none() || unknown_after > Duration::from_secs(2) {
        failures.push(format!(
            "unknown service answered {unknown} in {unknown_after:?} with reason {reason:?}"
        ));
    }
    if camera_down != 502 || down_after > Duration::from_millis(RTSP_TIMEOUT_MS + 1000) {
        failures.push(format!(
            "camera down answered {camera_down} in {down_after:?}"
        ));
    }

    drop(progress);
    if !failures.is_empty() || options.keep_logs {
        let kept = logs.keep();
        notes.push(("logs".to_owned(), kept.display().to_string()));
    }
    drop((
        proxy,
        forwarder_a,
        forwarder_b,
        media_a,
        media_b,
        media_b2,
        registry_part,
    ));
    drop(camera);
    Ok(DemoOutcome {
        report: DemoReport {
            public_port,
            streams,
            fanout: FanoutReport {
                viewers: options.viewers,
                upstream_pulls,
            },
            restart,
            errors: ErrorsReport {
                malformed,
                unknown,
                camera_down,
            },
        },
        failures,
        notes,
    })
}
