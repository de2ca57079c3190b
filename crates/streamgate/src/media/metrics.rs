//! The media server's metrics (served at `/metrics`): one RTSP session per stream however
//! many viewers watch is the fan-out property the demo checks with
//! `streamgate_rtsp_sessions_total{stream=...}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set of every per-stream metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// The camera-map key (the stream's address information).
    pub stream: String,
}

/// Per-stream counters and gauges.
#[derive(Debug, Clone, Default)]
pub struct MediaMetrics {
    /// RTSP sessions that reached `PLAY` (one per upstream pull).
    pub rtsp_sessions: Family<StreamLabel, Counter>,
    /// Pulls that failed (camera unreachable, timed out, broke).
    pub rtsp_failures: Family<StreamLabel, Counter>,
    /// Viewers connected now.
    pub viewers: Family<StreamLabel, Gauge>,
    /// Times a slow viewer was skipped ahead to the next key frame.
    pub viewer_skips: Family<StreamLabel, Counter>,
    /// Video frames muxed.
    pub frames: Family<StreamLabel, Counter>,
}

impl MediaMetrics {
    /// Registers the families (`streamgate_rtsp_sessions_total`, `streamgate_rtsp_failures_total`,
    /// `streamgate_viewers`, `streamgate_viewer_skips_total`, `streamgate_frames_total`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "streamgate_rtsp_sessions",
            "RTSP sessions opened to cameras (one per upstream pull)",
            metrics.rtsp_sessions.clone(),
        );
        registry.register(
            "streamgate_rtsp_failures",
            "Camera pulls that failed",
            metrics.rtsp_failures.clone(),
        );
        registry.register(
            "streamgate_viewers",
            "HTTP-FLV viewers connected",
            metrics.viewers.clone(),
        );
        registry.register(
            "streamgate_viewer_skips",
            "Slow viewers skipped ahead to the next key frame",
            metrics.viewer_skips.clone(),
        );
        registry.register(
            "streamgate_frames",
            "Video frames muxed to FLV",
            metrics.frames.clone(),
        );
        metrics
    }

    /// The label for `stream`.
    pub fn label(stream: &str) -> StreamLabel {
        StreamLabel {
            stream: stream.to_owned(),
        }
    }
}
