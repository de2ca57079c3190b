//! The demo's steps, in the order [`super::run`] takes them; each checks one property and
//! records failures and notes in the [`Demo`] it runs on.

mod outputs;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::{
    DemoOptions, ErrorsReport, FanoutReport, Progress, RestartReport, StreamReport, ffprobe, ms,
};
use crate::camera::Camera;
use crate::cluster::{
    Launcher, Part, free_port, get_text, loopback, metric_value, wait_for_new_address,
    wait_for_routes,
};
use crate::registry::RegistryClient;
use crate::viewer::{Viewer, client, watch_stream};

/// RTSP timeout given to the media servers in the demo, ms.
const RTSP_TIMEOUT_MS: u64 = 3000;
/// Longest a viewer waits for its first key frame.
const FIRST_FRAME_WITHIN: Duration = Duration::from_secs(15);
/// Validity of the demo's signed URLs.
const SIGNED_FOR: Duration = Duration::from_secs(600);

/// The running deployment and what the checks found so far.
#[derive(Debug)]
pub struct Demo {
    logs: tempfile::TempDir,
    camera: Camera,
    launcher: Launcher,
    registry: RegistryClient,
    registry_part: Part,
    media_a: Part,
    media_b: Part,
    media_b_cameras: Vec<(&'static str, String)>,
    forwarders: Vec<Part>,
    proxy: Part,
    failures: Vec<String>,
    notes: Vec<(String, String)>,
}

/// The public paths checked in the `streams` step; the first is the fan-out's stream, the
/// fourth the restart's.
pub const PATHS: [&str; 5] = [
    "/realtime-ServiceA-NameSpaceA/main_stream/0.flv",
    "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv",
    "/realtime-ServiceA-NameSpaceA/file_stream/0.flv",
    "/realtime-Service-B-NameSpace-B/aux_stream/0.flv",
    "/realtime-Service-B-NameSpace-B/sub_stream/0.flv",
];

impl Demo {
    /// Step `start`: the camera, the registry, both namespaces' media servers and forwarders,
    /// and the proxy, each its own process.
    ///
    /// # Errors
    /// When a part does not start.
    pub(super) async fn start(options: &DemoOptions, progress: &Progress) -> anyhow::Result<Self> {
        let logs = tempfile::Builder::new()
            .prefix("streamgate-demo-")
            .tempdir()?;
        let exe = std::env::current_exe().context("locating the streamgate binary")?;
        progress.step("starting the camera");
        let camera_port = free_port()?;
        let input = options.input.clone();
        let camera = tokio::task::spawn_blocking(move || {
            Camera::start_with_files(
                camera_port,
                &input,
                &[("clip", input.clone())],
                Duration::from_secs(30),
            )
        })
        .await??;
        let cam = |path: &str| camera.url(path);

        progress.step("starting registry, media servers, forwarders and proxy");
        let registry_port = free_port()?;
        let dead_port = free_port()?;
        let public_port = free_port()?;
        let mut launcher = Launcher::new(
            exe,
            logs.path(),
            format!("http://{}", loopback(registry_port)),
        );
        let rtsp_timeout = RTSP_TIMEOUT_MS.to_string();
        let extra = ["--rtsp-timeout-ms", rtsp_timeout.as_str()];
        let media_b_cameras = vec![
            ("aux_stream", cam("/aux_stream")),
            ("sub_stream", cam("/sub_stream")),
        ];
        let (registry_part, media_a, media_b, forwarders, proxy) =
            tokio::task::block_in_place(|| {
                let registry_part = launcher.registry(registry_port)?;
                let media_a = launcher.media(
                    "media-a",
                    "NameSpaceA",
                    free_port()?,
                    &[
                        ("main_stream", cam("/main_stream")),
                        ("sub_stream", cam("/sub_stream")),
                        ("file_stream", cam("/file/clip")),
                        (
                            "dead_stream",
                            format!("rtsp://127.0.0.1:{dead_port}/dead_stream"),
                        ),
                    ],
                    &extra,
                )?;
                let media_b = launcher.media(
                    "media-b",
                    "NameSpace-B",
                    free_port()?,
                    &media_b_cameras,
                    &extra,
                )?;
                let forwarders = vec![
                    launcher.forwarder("ServiceA", "NameSpaceA", "media-a")?,
                    launcher.forwarder("Service-B", "NameSpace-B", "media-b")?,
                ];
                let proxy = launcher.proxy(public_port)?;
                anyhow::Ok((registry_part, media_a, media_b, forwarders, proxy))
            })?;
        let registry = launcher.registry_client();
        wait_for_routes(&registry, 2, 2, Duration::from_secs(10)).await?;
        Ok(Self {
            logs,
            camera,
            launcher,
            registry,
            registry_part,
            media_a,
            media_b,
            media_b_cameras,
            forwarders,
            proxy,
            failures: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// The proxy's port.
    pub fn public_port(&self) -> u16 {
        self.proxy.port
    }

    /// The signed public URL of `path`.
    fn public(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.proxy.addr(),
            self.launcher.secrets().sign(path, SIGNED_FOR)
        )
    }

    fn fail(&mut self, failure: String) {
        self.failures.push(failure);
    }

    fn note(&mut self, what: &str, value: String) {
        self.notes.push((what.to_owned(), value));
    }

    /// Step `streams`: every path of [`PATHS`] plays through the public port (header,
    /// sequence header, key frame, in order) and `ffprobe` decodes it.
    ///
    /// # Errors
    /// When ffprobe cannot be run.
    pub(super) async fn check_streams(
        &mut self,
        progress: &Progress,
    ) -> anyhow::Result<Vec<StreamReport>> {
        let mut streams = Vec::new();
        for path in PATHS {
            progress.step(&format!("viewing and probing {path}"));
            let (first_ms, ordered) = match first_frame(&self.public(path)).await {
                Ok((elapsed, ordered)) => (ms(elapsed), ordered),
                Err(error) => {
                    self.fail(format!("{path}: {error:#}"));
                    (0, false)
                }
            };
            if !ordered {
                self.fail(format!(
                    "{path}: the first key frame did not follow the FLV header and sequence header"
                ));
            }
            let url = self.public(path);
            let probe = tokio::task::spawn_blocking(move || ffprobe(&url)).await??;
            if !probe.ok {
                self.fail(format!("{path}: ffprobe did not decode H.264 ({probe:?})"));
            }
            self.note(
                &format!("ffprobe streams of {path}"),
                probe.all_codecs.clone(),
            );
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
        if streams.iter().filter(|s| s.ffprobe_ok).count() < 4 || namespaces.len() < 2 {
            self.fail("fewer than four streams in two namespaces decoded".to_owned());
        }
        Ok(streams)
    }

    /// Step `fanout`: once `main_stream`'s earlier pull stopped for lack of viewers,
    /// `viewers` concurrent viewers cause exactly one RTSP session.
    ///
    /// # Errors
    /// Never for a failed check (it is recorded); only when the deployment cannot be asked.
    pub(super) async fn check_fanout(
        &mut self,
        viewers: usize,
        progress: &Progress,
    ) -> anyhow::Result<FanoutReport> {
        progress.step("waiting for the idle pull of main_stream to stop");
        let left = Instant::now();
        let mut idle_stopped = None;
        while left.elapsed() < Duration::from_secs(20) {
            if let Ok((_, body)) = get_text(self.media_a.metrics_addr(), "/v1/streams").await
                && let Ok(json) = serde_json::from_str::<serde_json::Value>(&body)
                && !json["running"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|s| s["stream"] == "main_stream"))
            {
                idle_stopped = Some(left.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        match idle_stopped {
            Some(after) => self.note(
                "idle pull stop",
                format!(
                    "{} ms after the streams step (media idle stop 5000 ms after relays' 1000 ms)",
                    after.as_millis()
                ),
            ),
            None => self.fail("the idle pull of main_stream did not stop".to_owned()),
        }
        progress.step(&format!("fan-out: {viewers} concurrent viewers"));
        let sessions_before = self.camera.sessions("/main_stream");
        let metric_before = rtsp_sessions(&self.media_a, "main_stream").await;
        let url = self.public(PATHS[0]);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..viewers {
            let url = url.clone();
            tasks.spawn(async move {
                let client = client(Duration::from_secs(20));
                let until = tokio::time::Instant::now() + Duration::from_secs(4);
                let (_, mark) = tokio::sync::watch::channel(false);
                watch_stream(&client, &url, until, &mark).await.ok()
            });
        }
        let mut ok_viewers = 0;
        let mut first_frames = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Some(seen)) = joined
                && seen.status == 200
                && seen.frames > 0
            {
                ok_viewers += 1;
                first_frames.extend(seen.first_frame);
            }
        }
        let upstream_pulls = self
            .camera
            .sessions("/main_stream")
            .saturating_sub(sessions_before);
        let metric_delta = rtsp_sessions(&self.media_a, "main_stream").await - metric_before;
        first_frames.sort();
        if let (Some(first), Some(last)) = (first_frames.first(), first_frames.last()) {
            self.note(
                "fan-out time to first frame",
                format!(
                    "{} to {} ms across {} viewers",
                    first.as_millis(),
                    last.as_millis(),
                    first_frames.len()
                ),
            );
        }
        self.note(
            "fan-out media server metric",
            format!("streamgate_rtsp_sessions_total +{metric_delta}"),
        );
        if ok_viewers != viewers {
            self.fail(format!(
                "fan-out: only {ok_viewers} of {viewers} viewers received frames"
            ));
        }
        if upstream_pulls != 1 || (metric_delta - 1.0).abs() > f64::EPSILON {
            self.fail(format!(
                "fan-out: {upstream_pulls} RTSP sessions at the camera and {metric_delta} by the metric, expected exactly 1"
            ));
        }
        Ok(FanoutReport {
            viewers,
            upstream_pulls,
        })
    }

    /// Step `restart`: `media-b` is killed under `open` viewers of `aux_stream` and started
    /// on a new port; the open viewers must stay connected with a gap of at most one GOP +
    /// 1 s and monotonic timestamps, and a new request must play within 1 s of the
    /// re-registration.
    ///
    /// # Errors
    /// When the new media server does not start.
    pub(super) async fn check_restart(
        &mut self,
        open: usize,
        progress: &Progress,
    ) -> anyhow::Result<RestartReport> {
        progress.step("restarting media-b on a new port under open viewers");
        let url = self.public(PATHS[3]);
        let (moved_tx, moved) = tokio::sync::watch::channel(false);
        let until = tokio::time::Instant::now() + Duration::from_secs(8);
        let mut viewers = tokio::task::JoinSet::new();
        for _ in 0..open {
            let url = url.clone();
            let moved = moved.clone();
            viewers.spawn(async move {
                let client = client(Duration::from_secs(20));
                watch_stream(&client, &url, until, &moved).await.ok()
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let old_addr = self.media_b.addr();
        self.media_b.child.kill();
        let killed = Instant::now();
        let new_port = free_port()?;
        let poll = {
            let registry = self.registry.clone();
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
        let cameras = self.media_b_cameras.clone();
        let rtsp_timeout = RTSP_TIMEOUT_MS.to_string();
        let launcher = &mut self.launcher;
        let media_b = tokio::task::block_in_place(|| {
            launcher.media(
                "media-b",
                "NameSpace-B",
                new_port,
                &cameras,
                &["--rtsp-timeout-ms", &rtsp_timeout],
            )
        })?;
        self.media_b = media_b;
        let (record, registered_at) = poll.await??;
        moved_tx.send_replace(true);
        self.note(
            "restart: re-registered after the kill",
            format!("{} ms", (registered_at - killed).as_millis()),
        );
        let ok_after = new_request_plays(&self.public(PATHS[3]), registered_at).await;
        let ok_after_ms = ok_after.map_or(u64::MAX, ms);
        if ok_after.is_none_or(|d| d > Duration::from_secs(1)) {
            self.fail(format!(
                "restart: a new request played {ok_after_ms} ms after re-registration (limit 1000)"
            ));
        }
        let mut kept = 0;
        let mut max_gap = Duration::ZERO;
        while let Some(joined) = viewers.join_next().await {
            let Ok(Some(seen)) = joined else { continue };
            max_gap = max_gap.max(seen.max_gap);
            if seen.dts_went_back {
                self.fail("restart: a viewer's decoding timestamps went back".to_owned());
            }
            if seen.status == 200 && !seen.ended && seen.frames_after_mark > 0 {
                kept += 1;
            }
        }
        if kept != open {
            self.fail(format!("restart: {kept} of {open} open viewers kept"));
        }
        // aux_stream's GOP is 1 s.
        if max_gap > Duration::from_secs(2) {
            self.fail(format!(
                "restart: an open viewer waited {} ms (limit one GOP + 1 s = 2000)",
                max_gap.as_millis()
            ));
        }
        Ok(RestartReport {
            old_addr: old_addr.to_string(),
            new_addr: record.addr.to_string(),
            ok_after_ms,
            open_viewers: open,
            open_viewers_kept: kept,
            max_gap_ms: ms(max_gap),
        })
    }

    /// Step `errors`: malformed 400, unknown service 404 with a reason within 2 s, camera
    /// down 502 within the RTSP timeout, unsigned 401 and expired 403.
    ///
    /// # Errors
    /// When the proxy cannot be asked at all.
    pub(super) async fn check_errors(
        &mut self,
        progress: &Progress,
    ) -> anyhow::Result<ErrorsReport> {
        progress.step("checking error answers");
        let secrets = self.launcher.secrets().clone();
        let signed = |path: &str| secrets.sign(path, SIGNED_FOR);
        let (malformed, _) = get_text(
            self.proxy.addr(),
            "/realtime-ServiceA-NameSpaceA/main_stream/zero.flv",
        )
        .await?;
        let started = Instant::now();
        let (unknown, body) = get_text(
            self.proxy.addr(),
            &signed("/realtime-ServiceZ-NameSpaceA/main_stream/0.flv"),
        )
        .await?;
        let unknown_after = started.elapsed();
        let reason = reason_of(&body);
        self.note(
            "unknown service",
            format!("{unknown} in {} ms: {reason:?}", unknown_after.as_millis()),
        );
        let started = Instant::now();
        let (camera_down, _) = get_text(
            self.proxy.addr(),
            &signed("/realtime-ServiceA-NameSpaceA/dead_stream/0.flv"),
        )
        .await?;
        let down_after = started.elapsed();
        self.note(
            "camera down",
            format!("{camera_down} in {} ms", down_after.as_millis()),
        );
        let (unsigned, body) = get_text(self.proxy.addr(), PATHS[0]).await?;
        self.note("unsigned", format!("{unsigned}: {:?}", reason_of(&body)));
        let past = crate::auth::unix_seconds(std::time::SystemTime::now()) - 60;
        let (expired, body) = get_text(
            self.proxy.addr(),
            &self.launcher.secrets().sign_until(PATHS[0], past),
        )
        .await?;
        self.note("expired", format!("{expired}: {:?}", reason_of(&body)));
        if malformed != 400 {
            self.fail(format!("malformed path answered {malformed}, expected 400"));
        }
        if unknown != 404 || reason.is_none() || unknown_after > Duration::from_secs(2) {
            self.fail(format!(
                "unknown service answered {unknown} in {unknown_after:?} with reason {reason:?}"
            ));
        }
        if camera_down != 502 || down_after > Duration::from_millis(RTSP_TIMEOUT_MS + 1000) {
            self.fail(format!(
                "camera down answered {camera_down} in {down_after:?}"
            ));
        }
        if unsigned != 401 {
            self.fail(format!("an unsigned URL answered {unsigned}, expected 401"));
        }
        if expired != 403 {
            self.fail(format!("an expired URL answered {expired}, expected 403"));
        }
        Ok(ErrorsReport {
            malformed,
            unknown,
            camera_down,
            unsigned,
            expired,
        })
    }

    /// Stops every part; keeps the logs when a check failed or `keep_logs`. Returns the
    /// failures and notes.
    pub(super) fn finish(mut self, keep_logs: bool) -> (Vec<String>, Vec<(String, String)>) {
        let Self {
            logs,
            camera,
            registry_part,
            media_a,
            media_b,
            forwarders,
            proxy,
            ..
        } = self;
        drop((proxy, forwarders, media_a, media_b, registry_part, camera));
        if !self.failures.is_empty() || keep_logs {
            let kept = logs.keep();
            self.notes
                .push(("logs".to_owned(), kept.display().to_string()));
        }
        (self.failures, self.notes)
    }
}

/// The JSON `error` of an answer's body.
fn reason_of(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|j| j["error"].as_str().map(str::to_owned))
}

async fn rtsp_sessions(part: &Part, stream: &str) -> f64 {
    match get_text(part.metrics_addr(), "/metrics").await {
        Ok((_, page)) => {
            metric_value(&page, "streamgate_rtsp_sessions_total", stream).unwrap_or(0.0)
        }
        Err(_) => f64::NAN,
    }
}

/// Opens `url` and waits for the first key frame; returns request-to-key-frame time and
/// whether the FLV header, a sequence header and then the key frame came in that order.
async fn first_frame(url: &str) -> anyhow::Result<(Duration, bool)> {
    let client = client(Duration::from_secs(20));
    let mut viewer = Viewer::open(&client, url).await?;
    if !viewer.status().is_success() {
        let status = viewer.status();
        bail!(
            "{} answered {status}: {}",
            url.split('?').next().unwrap_or_default(),
            viewer.text().await.unwrap_or_default()
        );
    }
    let Some((before, _key, at)) = viewer.until_key_frame(FIRST_FRAME_WITHIN).await? else {
        bail!("no key frame within {FIRST_FRAME_WITHIN:?}");
    };
    let ordered = viewer.header().is_some_and(|h| h.has_video)
        && before
            .iter()
            .any(crate::flv::ReadTag::is_avc_sequence_header);
    Ok((at - viewer.requested(), ordered))
}

/// Time from `since` until a new request of `url` receives a key frame, trying for 10 s.
async fn new_request_plays(url: &str, since: Instant) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(10) {
        let client = client(Duration::from_secs(10));
        if let Ok(mut viewer) = Viewer::open(&client, url).await
            && viewer.status().is_success()
        {
            return viewer
                .until_key_frame(Duration::from_secs(5))
                .await
                .ok()
                .flatten()
                .map(|(_, _, at)| at - since);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
