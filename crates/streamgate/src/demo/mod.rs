//! `streamgate demo`: the whole system on 127.0.0.1, each part its own process, checked end
//! to end with real clients, as a sequence of named steps ([`steps`]).
//!
//! Parts: the gst-rtsp-server camera (live patterns, a re-encoded clip, and the bundled clip
//! served without re-encoding so its real GOPs reach the media server); the registry with a
//! credential per role; namespace `NameSpaceA` with media server `media-a` (cameras
//! `main_stream`, `sub_stream`, `file_stream` and `dead_stream`, whose camera port is closed)
//! behind forwarder `ServiceA`; namespace `NameSpace-B` with media server `media-b`
//! (`aux_stream`, `sub_stream`) behind forwarder `Service-B` (hyphenated names on purpose); and
//! the proxy, the one public port, which requires signed URLs.
//!
//! Steps (any failed check makes the exit code 2):
//! 1. `start`: camera, registry, media servers, forwarders, proxy;
//! 2. `streams`: five streams in two namespaces through the public port with signed URLs: a
//!    viewer gets the FLV header, the sequence header and a key frame, and `ffprobe` decodes
//!    H.264 with its size;
//! 3. `fanout`: N (50) concurrent viewers of one idle stream cause exactly one RTSP session,
//!    counted at the camera and by the media server's `streamgate_rtsp_sessions_total`;
//! 4. `restart`: `media-b` is killed (`SIGKILL`) under open viewers and started again on a new
//!    port; every open viewer stays connected with a gap of at most one GOP + 1 s and
//!    monotonic timestamps, and a new request plays within 1 s of the re-registration;
//! 5. `errors`: a malformed path answers 400, an unknown service 404 with a JSON reason
//!    within 2 s, a camera that is down 502 within the RTSP timeout, an unsigned URL 401 and an
//!    expired one 403;
//! 6. `outputs`: the HLS playlist of a stream through the public port (ffprobe decodes it)
//!    and a WebSocket-FLV viewer (status 101, one FLV tag per message).

pub mod steps;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The clip the camera serves at `/main_stream` (re-encoded) and `/file/clip` (as is).
    pub input: PathBuf,
    /// Concurrent viewers in the fan-out check.
    pub viewers: usize,
    /// Open viewers kept across the media server's restart.
    pub restart_viewers: usize,
    /// Keep the logs directory.
    pub keep_logs: bool,
    /// Show a spinner on stderr.
    pub progress: bool,
}

/// One stream as checked through the public port.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// The public path (without its signature).
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
    /// Re-registration to the first key frame of a new request through the same public URL,
    /// ms.
    pub ok_after_ms: u64,
    /// Viewers open through the public port when the media server was killed.
    pub open_viewers: usize,
    /// Of them, those still connected and receiving frames after the restart.
    pub open_viewers_kept: usize,
    /// Largest gap between two video frames any open viewer saw, ms.
    pub max_gap_ms: u64,
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
    /// A URL without a signature.
    pub unsigned: u16,
    /// A URL whose signature expired.
    pub expired: u16,
}

/// The HLS check: one playlist through the public port.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HlsReport {
    /// The public path (without its signature).
    pub url: String,
    /// Its status.
    pub status: u16,
    /// Request to the whole first playlist, ms (the stream was not segmented before: the
    /// first segment, about 2 s, is waited for).
    pub playlist_ms: u64,
    /// Segments it listed.
    pub segments: usize,
    /// Its `EXT-X-TARGETDURATION`, s.
    pub target_duration_s: u64,
    /// `ffprobe` decoded H.264 with a size from the playlist.
    pub ffprobe_ok: bool,
    /// Picture width `ffprobe` reported.
    pub width: u32,
    /// Picture height `ffprobe` reported.
    pub height: u32,
}

/// The WebSocket-FLV check: one viewer through the public port for 3 s.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WsFlvReport {
    /// The public path (without its signature).
    pub url: String,
    /// The handshake's status (101).
    pub status: u16,
    /// Handshake start to the first video frame, ms.
    pub first_frame_ms: u64,
    /// Binary messages received.
    pub messages: u64,
    /// Video frames among them.
    pub video_frames: u64,
    /// Every message after the header held exactly one FLV tag.
    pub one_tag_per_message: bool,
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
    /// HLS.
    pub hls: HlsReport,
    /// WebSocket-FLV.
    pub ws_flv: WsFlvReport,
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
            "restart: {} -> {}, {}/{} open viewers kept (largest gap {} ms), a new request plays {} ms after re-registration\n",
            r.restart.old_addr,
            r.restart.new_addr,
            r.restart.open_viewers_kept,
            r.restart.open_viewers,
            r.restart.max_gap_ms,
            r.restart.ok_after_ms
        ));
        out.push_str(&format!(
            "errors: malformed {}, unknown {}, camera down {}, unsigned {}, expired {}\n",
            r.errors.malformed,
            r.errors.unknown,
            r.errors.camera_down,
            r.errors.unsigned,
            r.errors.expired
        ));
        out.push_str(&format!(
            "hls: {} {} in {} ms, {} segments (target {} s), ffprobe {} {}x{}\n",
            r.hls.url,
            r.hls.status,
            r.hls.playlist_ms,
            r.hls.segments,
            r.hls.target_duration_s,
            if r.hls.ffprobe_ok { "ok" } else { "FAIL" },
            r.hls.width,
            r.hls.height
        ));
        out.push_str(&format!(
            "ws-flv: {} {}, first frame {} ms, {} messages ({} video frames), one tag per message: {}\n",
            r.ws_flv.url,
            r.ws_flv.status,
            r.ws_flv.first_frame_ms,
            r.ws_flv.messages,
            r.ws_flv.video_frames,
            r.ws_flv.one_tag_per_message
        ));
        for (what, value) in &self.notes {
            out.push_str(&format!("  {what}: {value}\n"));
        }
        out
    }
}

/// A spinner on stderr, or `info` log lines.
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

/// Milliseconds of `d`, saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs the demo: its steps in order; a step that cannot run at all stops it.
///
/// # Errors
/// When a part cannot be started at all (check failures are reported in the outcome).
pub async fn run(options: &DemoOptions) -> anyhow::Result<DemoOutcome> {
    let progress = Progress::new(options.progress);
    let mut demo = steps::Demo::start(options, &progress).await?;
    let streams = demo.check_streams(&progress).await?;
    let fanout = demo.check_fanout(options.viewers, &progress).await?;
    let restart = demo
        .check_restart(options.restart_viewers, &progress)
        .await?;
    let errors = demo.check_errors(&progress).await?;
    let (hls, ws_flv) = demo.check_outputs(&progress).await?;
    drop(progress);
    let public_port = demo.public_port();
    let (failures, notes) = demo.finish(options.keep_logs);
    Ok(DemoOutcome {
        report: DemoReport {
            public_port,
            streams,
            fanout,
            restart,
            errors,
            hls,
            ws_flv,
        },
        failures,
        notes,
    })
}
