//! Step `outputs`: one HLS playlist and one WebSocket-FLV viewer through the public port.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use tokio_tungstenite::tungstenite::Message;

use super::{Demo, PATHS};
use crate::demo::{HlsReport, Progress, WsFlvReport, ffprobe, ms};
use crate::flv::FlvReader;
use crate::viewer::client;

/// How long the WebSocket-FLV viewer reads.
const WS_READ_FOR: Duration = Duration::from_secs(3);

/// `public` (a signed `….flv?query` URL) as the HLS playlist URL of the same stream and
/// signature (the signature covers the stream, not the file).
fn playlist_url(public: &str) -> String {
    public.replacen(".flv?", "/index.m3u8?", 1)
}

impl Demo {
    /// Step `outputs`: the playlist of [`PATHS`]`[1]` through the proxy (time to the first
    /// playlist, cold; segments listed; ffprobe decodes it) and a WebSocket-FLV viewer of
    /// [`PATHS`]`[0]` for 3 s (status 101, the header then one FLV tag per message, first
    /// key frame time).
    ///
    /// # Errors
    /// When ffprobe cannot be run.
    pub(in crate::demo) async fn check_outputs(
        &mut self,
        progress: &Progress,
    ) -> anyhow::Result<(HlsReport, WsFlvReport)> {
        progress.step("HLS playlist through the public port");
        let hls = self.check_hls().await?;
        progress.step("WebSocket-FLV viewer through the public port");
        let ws = match ws_viewer(&self.public(PATHS[0]).replacen("http://", "ws://", 1)).await {
            Ok(report) => report,
            Err(error) => {
                self.fail(format!("WebSocket-FLV: {error:#}"));
                WsFlvReport::default()
            }
        };
        if ws.status != 101 || !ws.one_tag_per_message || ws.video_frames == 0 {
            self.fail(format!("WebSocket-FLV: {ws:?}"));
        }
        Ok((hls, ws))
    }

    async fn check_hls(&mut self) -> anyhow::Result<HlsReport> {
        let path = PATHS[1];
        let url = playlist_url(&self.public(path));
        let started = Instant::now();
        let request = http::Request::get(url.as_str())
            .body(Full::new(Bytes::new()))
            .context("building the playlist request")?;
        let mut report = HlsReport {
            url: path.replacen(".flv", "/index.m3u8", 1),
            ..HlsReport::default()
        };
        match client(Duration::from_secs(20)).send(request).await {
            Ok(response) => {
                report.status = response.status().as_u16();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                report.playlist_ms = ms(started.elapsed());
                let text = String::from_utf8_lossy(&body);
                report.segments = text.lines().filter(|l| l.starts_with("#EXTINF:")).count();
                report.target_duration_s = text
                    .lines()
                    .find_map(|l| l.strip_prefix("#EXT-X-TARGETDURATION:"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
            Err(error) => self.fail(format!("HLS playlist: {error:?}")),
        }
        let probe = tokio::task::spawn_blocking(move || ffprobe(&url)).await??;
        report.ffprobe_ok = probe.ok;
        report.width = probe.width;
        report.height = probe.height;
        if report.status != 200 || report.segments == 0 || !probe.ok {
            self.fail(format!("HLS: {report:?}"));
        }
        Ok(report)
    }
}

/// Reads `url` over WebSocket for [`WS_READ_FOR`] after its first message.
async fn ws_viewer(url: &str) -> anyhow::Result<WsFlvReport> {
    let started = Instant::now();
    let authority = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let (mut socket, response) = tokio_tungstenite::client_async(url, stream)
        .await
        .context("WebSocket handshake")?;
    let mut report = WsFlvReport {
        url: url
            .trim_start_matches("ws://")
            .split_once('/')
            .map(|(_, p)| format!("/{}", p.split('?').next().unwrap_or_default()))
            .unwrap_or_default(),
        status: response.status().as_u16(),
        one_tag_per_message: true,
        ..WsFlvReport::default()
    };
    let mut reader = FlvReader::new();
    let until = tokio::time::Instant::now() + WS_READ_FOR + Duration::from_secs(2);
    let mut read_until = None;
    while let Ok(Some(message)) = tokio::time::timeout_at(until, socket.next()).await {
        let Ok(Message::Binary(data)) = message else {
            continue;
        };
        reader.push(&data);
        let tag = reader.next_tag().context("reading FLV from the messages")?;
        if report.messages > 0 && (tag.is_none() || reader.buffered() > 0) {
            report.one_tag_per_message = false;
        }
        report.messages += 1;
        if let Some(tag) = tag
            && tag.is_video_frame()
        {
            if report.video_frames == 0 {
                report.first_frame_ms = ms(started.elapsed());
            }
            report.video_frames += 1;
        }
        let end = *read_until.get_or_insert_with(|| Instant::now() + WS_READ_FOR);
        if Instant::now() >= end {
            break;
        }
    }
    let _ = socket.close(None).await;
    Ok(report)
}
