//! The media server's camera metrics (served at `/metrics` on its admin port): one RTSP
//! session per stream however many viewers watch is the fan-out property the demo checks with
//! `streamgate_rtsp_sessions_total{stream=...}`. Viewer counts and skips are the fan-out's
//! ([`crate::fanout::FanoutMetrics`], prefix `streamgate`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use crate::fanout::StreamLabel;

/// Per-stream camera counters.
#[derive(Debug, Clone, Default)]
pub struct MediaMetrics {
    /// RTSP sessions that reached `PLAY` (one per upstream pull).
    pub rtsp_sessions: Family<StreamLabel, Counter>,
    /// Pulls that failed (camera unreachable, timed out, broke, unsupported codec).
    pub rtsp_failures: Family<StreamLabel, Counter>,
    /// Video frames muxed.
    pub frames: Family<StreamLabel, Counter>,
}

impl MediaMetrics {
    /// Registers the families (`streamgate_rtsp_sessions_total`,
    /// `streamgate_rtsp_failures_total`, `streamgate_frames_total`).
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
            "streamgate_frames",
            "Video frames muxed to FLV",
            metrics.frames.clone(),
        );
        metrics
    }

    /// The label for `stream`.
    pub fn label(stream: &str) -> StreamLabel {
        StreamLabel::new(stream)
    }
}
