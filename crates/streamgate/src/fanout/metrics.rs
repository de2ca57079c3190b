//! Fan-out metrics of one hop, labelled by stream: viewers connected now and slow viewers
//! skipped ahead to the next key frame.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label set of every per-stream metric.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// The stream's key (the camera-map key at the media server, the upstream path at a
    /// relay).
    pub stream: String,
}

impl StreamLabel {
    /// The label for `stream`.
    pub fn new(stream: &str) -> Self {
        Self {
            stream: stream.to_owned(),
        }
    }
}

/// Per-stream viewer metrics of a fan-out.
#[derive(Debug, Clone, Default)]
pub struct FanoutMetrics {
    /// Viewers connected now.
    pub viewers: Family<StreamLabel, Gauge>,
    /// Times a viewer more than the allowed delay behind was skipped to the next key frame.
    pub viewer_skips: Family<StreamLabel, Counter>,
}

impl FanoutMetrics {
    /// Registers `{prefix}_viewers` and `{prefix}_viewer_skips_total` (the media server uses
    /// the prefix `streamgate`, relays `streamgate_proxy` and `streamgate_forwarder`).
    pub fn register(prefix: &str, registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            format!("{prefix}_viewers"),
            "Viewers connected",
            metrics.viewers.clone(),
        );
        registry.register(
            format!("{prefix}_viewer_skips"),
            "Slow viewers skipped ahead to the next key frame",
            metrics.viewer_skips.clone(),
        );
        metrics
    }
}
