//! Pulling one camera over RTSP with `retina` and muxing it to FLV (seed ¶50, ¶70-¶72: the
//! media server sends a stream request to the camera its address names and receives the
//! stream).
//!
//! `DESCRIBE`, `SETUP` (interleaved over the RTSP TCP connection by default) and `PLAY` must
//! finish within the RTSP timeout, and the first frame come within the first-frame timeout,
//! else the pull fails with [`PullError::Timeout`] and viewers get 502. H.264 frames come length-prefixed with the SPS and PPS in front of every key
//! frame; those become the AVC sequence header (and `onMetaData`) whenever they change, and
//! are stripped from the frames. AAC (`mpeg4-generic`) frames come raw, with the
//! `AudioSpecificConfig` from the SDP as the AAC sequence header. Both tracks are on the
//! session's common timeline (RTP-Info), so FLV timestamps are in sync.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use retina::client::{PlayOptions, SessionOptions, SetupOptions, Transport};
use retina::codec::{CodecItem, FrameFormat, ParameterSetInsertion, ParametersRef, VideoFrame};
use svckit::redact::SafeUrl;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use url::Url;

use super::metrics::MediaMetrics;
use crate::error::PullError;
use crate::fanout::{Channel, Hub, Refusal, Status};
use crate::flv::Tag;
use crate::flv::avc::{self, NAL_AUD, NAL_PPS, NAL_SPS, SpsInfo};
use crate::flv::dts::DtsRecovery;
use crate::flv::mux::{self, Metadata};

/// How a pull talks to cameras.
#[derive(Debug, Clone)]
pub struct PullSettings {
    /// Time allowed for connecting through `PLAY`, and for the first frame after it.
    pub rtsp_timeout: Duration,
    /// Longest silence between frames before the pull counts as broken.
    pub frame_timeout: Duration,
    /// Time allowed after `PLAY` for the first frame.
    pub first_frame_timeout: Duration,
    /// RTP over the RTSP connection (`tcp`, default) or over UDP (`udp`).
    pub udp: bool,
}

fn safe(url: &Url) -> String {
    SafeUrl::new(url.clone()).to_string()
}

/// The tracks a session plays.
struct Session {
    demuxed: retina::client::Demuxed,
    video: usize,
    audio: Option<(usize, Bytes)>,
}

async fn connect(url: &Url, settings: &PullSettings) -> Result<Session, PullError> {
    let rtsp = |e: retina::Error| PullError::Rtsp {
        url: safe(url),
        reason: e.to_string(),
    };
    let options =
        SessionOptions::default().user_agent(format!("streamgate/{}", env!("CARGO_PKG_VERSION")));
    let mut session = retina::client::Session::describe(url.clone(), options)
        .await
        .map_err(rtsp)?;
    let streams = session.streams();
    let video = streams
        .iter()
        .position(|s| s.media() == "video" && s.encoding_name() == "h264")
        .ok_or_else(|| PullError::NoH264 {
            url: safe(url),
            offered: streams
                .iter()
                .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let audio_index = streams
        .iter()
        .position(|s| s.media() == "audio" && s.encoding_name() == "mpeg4-generic");
    let format = FrameFormat {
        h26x_framing: retina::codec::h26x::Framing::FourByteLength,
        parameter_set_insertion: ParameterSetInsertion::EachKeyFrame,
        aac_framing: retina::codec::aac::Framing::Raw,
    };
    let transport = || {
        if settings.udp {
            Transport::Udp(retina::client::UdpTransportOptions::default())
        } else {
            Transport::Tcp(retina::client::TcpTransportOptions::default())
        }
    };
    session
        .setup(
            video,
            SetupOptions::default()
                .transport(transport())
                .frame_format(format),
        )
        .await
        .map_err(rtsp)?;
    let mut audio = None;
    if let Some(index) = audio_index {
        match session
            .setup(
                index,
                SetupOptions::default()
                    .transport(transport())
                    .frame_format(format),
            )
            .await
        {
            Ok(()) => {
                let config = match session.streams()[index].parameters() {
                    Some(ParametersRef::Audio(params)) => {
                        Some(Bytes::copy_from_slice(params.extra_data()))
                    }
                    _ => None,
                };
                match config {
                    Some(config) if !config.is_empty() => audio = Some((index, config)),
                    _ => {
                        warn!(url = %safe(url), "AAC track without AudioSpecificConfig; video only");
                    }
                }
            }
            Err(error) => warn!(url = %safe(url), %error, "audio SETUP failed; video only"),
        }
    }
    let playing = session
        .play(
            PlayOptions::default()
                .initial_timestamp(retina::client::InitialTimestampPolicy::Permissive),
        )
        .await
        .map_err(rtsp)?;
    let demuxed = playing.demuxed().map_err(rtsp)?;
    Ok(Session {
        demuxed,
        video,
        audio,
    })
}

/// Milliseconds for `ticks` of a `clock_hz` clock (negative times count as 0).
fn ticks_to_ms(ticks: i64, clock_hz: u32) -> u32 {
    let ms = ticks.max(0) as i128 * 1000 / i128::from(clock_hz.max(1));
    // FLV timestamps are 32-bit milliseconds and wrap after about 49.7 days.
    (ms % (1_i128 << 32)) as u32
}

/// The video track's muxing state.
struct VideoTrack {
    clock_hz: u32,
    sps: Option<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    has_audio: bool,
    dts: DtsRecovery<(bool, Bytes)>,
    frames: u64,
}

impl VideoTrack {
    fn new(clock_hz: u32, has_audio: bool) -> Self {
        Self {
            clock_hz,
            sps: None,
            pps: Vec::new(),
            has_audio,
            dts: DtsRecovery::new(0, None),
            frames: 0,
        }
    }

    fn emit(&self, timed: crate::flv::dts::Timed<(bool, Bytes)>) -> Tag {
        let dts = ticks_to_ms(timed.dts, self.clock_hz);
        let pts = ticks_to_ms(timed.pts, self.clock_hz);
        let composition = i32::try_from(i64::from(pts) - i64::from(dts)).unwrap_or(0);
        let (key, payload) = timed.item;
        mux::avc_frame(dts, composition, key, &payload)
    }

    /// The frames still held by the reorder buffer, for the end of the session: without
    /// this the last `reorder_frames` frames of a stream with B-frames would be lost.
    fn finish(&mut self) -> Vec<Tag> {
        self.dts.flush().into_iter().map(|t| self.emit(t)).collect()
    }

    /// Muxes one access unit; returns the tags to publish (configuration first).
    fn on_frame(&mut self, frame: &VideoFrame, url: &Url) -> Vec<Tag> {
        let units = match avc::split_avcc(frame.data()) {
            Ok(units) => units,
            Err(error) => {
                warn!(url = %safe(url), %error, "dropping a malformed frame");
                return Vec::new();
            }
        };
        let key = frame.is_random_access_point();
        let mut out = Vec::new();
        let sps = units.iter().find(|u| avc::nal_type(u) == NAL_SPS);
        let pps: Vec<&[u8]> = units
            .iter()
            .filter(|u| avc::nal_type(u) == NAL_PPS)
            .copied()
            .collect();
        if let Some(sps) = sps
            && !pps.is_empty()
            && (self.sps.as_deref() != Some(*sps)
                || self.pps.iter().map(Vec::as_slice).ne(pps.iter().copied()))
        {
            out.extend(self.new_parameters(sps, &pps, frame, url));
        }
        if self.sps.is_none() {
            // Nothing is decodable before the first parameter sets.
            return out;
        }
        let payload = avc::join_avcc(
            units
                .iter()
                .filter(|u| !matches!(avc::nal_type(u), NAL_SPS | NAL_PPS | NAL_AUD))
                .copied(),
        )
        .freeze();
        if payload.is_empty() {
            return out;
        }
        self.frames += 1;
        if let Some(timed) = self.dts.push(frame.timestamp().elapsed(), (key, payload)) {
            out.push(self.emit(timed));
        }
        out
    }

    fn new_parameters(
        &mut self,
        sps: &[u8],
        pps: &[&[u8]],
        frame: &VideoFrame,
        url: &Url,
    ) -> Vec<Tag> {
        let info = match SpsInfo::parse(sps) {
            Ok(info) => Some(info),
            Err(error) => {
                warn!(url = %safe(url), %error, "SPS does not parse; assuming 2 reorder frames");
                None
            }
        };
        let record = match avc::decoder_configuration_record(sps, pps, info.as_ref()) {
            Ok(record) => record,
            Err(error) => {
                warn!(url = %safe(url), %error, "cannot build the AVC sequence header");
                return Vec::new();
            }
        };
        // Frames held back belong to the old parameters: release them first.
        let mut out: Vec<Tag> = self.dts.flush().into_iter().map(|t| self.emit(t)).collect();
        let ts = ticks_to_ms(frame.timestamp().elapsed(), self.clock_hz);
        let reorder = info.map_or(avc::DEFAULT_REORDER_FRAMES, |i| i.reorder_frames);
        let frame_ticks = info
            .and_then(|i| i.fps)
            .map(|fps| (f64::from(self.clock_hz) / fps).round() as i64);
        self.dts = DtsRecovery::new(reorder, frame_ticks);
        if let Some(info) = info {
            info!(url = %safe(url), width = info.width, height = info.height, fps = ?info.fps, reorder, "video parameters");
            // At timestamp 0: ffmpeg's FLV reader takes an onMetaData tag with any other
            // timestamp for a data stream.
            out.push(mux::metadata(
                0,
                &Metadata {
                    width: info.width,
                    height: info.height,
                    framerate: info.fps,
                    has_audio: self.has_audio,
                },
            ));
        }
        out.push(mux::avc_sequence_header(ts, &record));
        self.sps = Some(sps.to_vec());
        self.pps = pps.iter().map(|p| p.to_vec()).collect();
        out
    }
}

/// Runs the pull of `channel` from `url` until it stops: idle for its linger time, the camera
/// fails or ends, or the channel is ended from outside. Frames still in the reorder buffer
/// are published before the end. Always leaves the channel ended.
pub async fn run(
    hub: Arc<Hub>,
    channel: Arc<Channel>,
    url: Url,
    settings: PullSettings,
    metrics: MediaMetrics,
) {
    let result = pull(&hub, &channel, &url, &settings, &metrics).await;
    match result {
        Ok(()) => {
            info!(stream = %channel.key(), url = %safe(&url), "pull stopped: no viewers");
            hub.end(&channel, Status::Ended);
        }
        Err(error) => {
            warn!(stream = %channel.key(), %error, "pull failed");
            metrics
                .rtsp_failures
                .get_or_create(channel.metric_label())
                .inc();
            hub.end(&channel, Status::Failed(Refusal::from_error(&error)));
        }
    }
}

async fn pull(
    hub: &Hub,
    channel: &Arc<Channel>,
    url: &Url,
    settings: &PullSettings,
    metrics: &MediaMetrics,
) -> Result<(), PullError> {
    let started = Instant::now();
    let session = match tokio::time::timeout(settings.rtsp_timeout, connect(url, settings)).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(PullError::Timeout {
                url: safe(url),
                after: settings.rtsp_timeout,
            });
        }
    };
    metrics
        .rtsp_sessions
        .get_or_create(channel.metric_label())
        .inc();
    let Session {
        mut demuxed,
        video,
        audio,
    } = session;
    let clock_hz = demuxed.streams()[video].clock_rate_hz();
    let audio_clock = audio
        .as_ref()
        .map(|(index, _)| demuxed.streams()[*index].clock_rate_hz());
    info!(
        stream = %channel.key(), url = %safe(url), audio = audio.is_some(),
        setup_ms = started.elapsed().as_millis(), "camera playing"
    );
    let audio_index = audio.as_ref().map(|(index, _)| *index);
    channel.set_playing(
        mux::header(audio.is_some(), true),
        audio
            .as_ref()
            .map(|(_, config)| mux::aac_sequence_header(0, config)),
    );
    let mut track = VideoTrack::new(clock_hz, audio.is_some());
    let frames = metrics.frames.get_or_create(channel.metric_label()).clone();
    let mut last_frame = Instant::now();
    let mut silence_limit = settings.first_frame_timeout;
    let outcome = loop {
        tokio::select! {
            item = tokio::time::timeout_at(last_frame + silence_limit, demuxed.next()) => {
                let item = match item {
                    Ok(Some(Ok(item))) => item,
                    Ok(Some(Err(error))) => {
                        break Err(PullError::Broken { url: safe(url), reason: error.to_string() });
                    }
                    Ok(None) => {
                        break Err(PullError::Broken { url: safe(url), reason: "the camera ended the session".to_owned() });
                    }
                    Err(_) => {
                        break Err(PullError::Timeout { url: safe(url), after: silence_limit });
                    }
                };
                match item {
                    CodecItem::VideoFrame(frame) if frame.stream_id() == video => {
                        last_frame = Instant::now();
                        silence_limit = settings.frame_timeout;
                        for tag in track.on_frame(&frame, url) {
                            if tag.kind != crate::flv::TagKind::Config {
                                frames.inc();
                            }
                            channel.publish(tag);
                        }
                    }
                    CodecItem::AudioFrame(frame) if Some(frame.stream_id()) == audio_index => {
                        let ms = ticks_to_ms(frame.timestamp().elapsed(), audio_clock.unwrap_or(48_000));
                        channel.publish(mux::aac_frame(ms, frame.data()));
                    }
                    other => debug!(item = ?std::mem::discriminant(&other), "ignored item"),
                }
            }
            () = crate::fanout::hub::idle_stop(hub, channel) => break Ok(()),
        }
        if matches!(channel.status(), Status::Ended) {
            break Ok(());
        }
    };
    // The session is over: release the frames the reorder buffer still holds.
    for tag in track.finish() {
        frames.inc();
        channel.publish(tag);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::ticks_to_ms;

    #[test]
    fn tick_conversion() {
        assert_eq!(ticks_to_ms(90_000, 90_000), 1000);
        assert_eq!(ticks_to_ms(3750, 90_000), 41);
        assert_eq!(ticks_to_ms(-5, 90_000), 0);
        assert_eq!(ticks_to_ms(44_100, 44_100), 1000);
        assert_eq!(
            ticks_to_ms((1_i64 << 32) * 90, 90_000),
            0,
            "wraps at 2^32 ms"
        );
    }
}
