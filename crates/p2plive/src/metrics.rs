//! Per-peer delivery figures: bytes from the CDN and from peers, the P2P ratio (peer bytes /
//! all bytes received, Peer5's "peer efficiency"), startup delay, stalls, lag behind the live
//! edge. Exported as Prometheus metrics (through `svckit::serve`'s `/metrics`) and as the JSON
//! [`PeerSummary`] at `/summary`.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::sched::{PlaybackStats, Source};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// Live counters of one peer.
#[derive(Debug)]
pub struct PeerMetrics {
    received: Family<SourceLabels, Counter>,
    uploaded: Counter,
    stalls: Gauge,
    stall_ms: Gauge,
    startup_ms: Gauge,
    lag_blocks: Gauge,
    corrupt: Gauge,
    p2p_ratio: Gauge<f64, AtomicU64>,
    prefetch_bytes: AtomicU64,
    cdn_fetch_bytes: AtomicU64,
    peer_bytes: AtomicU64,
    uploaded_bytes: AtomicU64,
}

impl PeerMetrics {
    /// Counters at zero, registered in `registry` under `peer_*` names.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self {
            received: Family::default(),
            uploaded: Counter::default(),
            stalls: Gauge::default(),
            stall_ms: Gauge::default(),
            startup_ms: Gauge::default(),
            lag_blocks: Gauge::default(),
            corrupt: Gauge::default(),
            p2p_ratio: Gauge::default(),
            prefetch_bytes: AtomicU64::new(0),
            cdn_fetch_bytes: AtomicU64::new(0),
            peer_bytes: AtomicU64::new(0),
            uploaded_bytes: AtomicU64::new(0),
        };
        registry.register(
            "peer_received_bytes",
            "Block bytes received, by source (cdn_prefetch, cdn_fetch, peer)",
            m.received.clone(),
        );
        registry.register(
            "peer_uploaded_bytes",
            "Block bytes sent to other peers",
            m.uploaded.clone(),
        );
        registry.register("peer_stalls", "Times playback stalled", m.stalls.clone());
        registry.register(
            "peer_stall_ms",
            "Total stall time in ms",
            m.stall_ms.clone(),
        );
        registry.register(
            "peer_startup_ms",
            "Time from join to first block played, ms",
            m.startup_ms.clone(),
        );
        registry.register(
            "peer_lag_blocks",
            "Blocks between the playhead and the live edge",
            m.lag_blocks.clone(),
        );
        registry.register(
            "peer_corrupt_blocks",
            "Blocks dropped for a SHA-256 mismatch",
            m.corrupt.clone(),
        );
        registry.register(
            "peer_p2p_ratio",
            "Peer bytes / all bytes received",
            m.p2p_ratio.clone(),
        );
        m
    }

    /// `bytes` of block data arrived from `source`.
    pub fn received(&self, source: Source, bytes: u64) {
        let (label, counter) = match source {
            Source::Prefetch => ("cdn_prefetch", &self.prefetch_bytes),
            Source::Cdn => ("cdn_fetch", &self.cdn_fetch_bytes),
            Source::Peer(_) => ("peer", &self.peer_bytes),
        };
        counter.fetch_add(bytes, Ordering::Relaxed);
        self.received
            .get_or_create(&SourceLabels { source: label })
            .inc_by(bytes);
        self.p2p_ratio.set(self.p2p_ratio_now());
    }

    /// `bytes` of block data were sent to another peer.
    pub fn uploaded(&self, bytes: u64) {
        self.uploaded_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.uploaded.inc_by(bytes);
    }

    /// Copies the playback figures into the gauges.
    pub fn playback(&self, stats: &PlaybackStats) {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.stalls.set(g(stats.stalls));
        self.stall_ms.set(g(stats.stall_ms));
        self.startup_ms.set(g(stats.startup_ms.unwrap_or(0)));
        self.lag_blocks.set(g(stats.lag_blocks));
        self.corrupt.set(g(stats.corrupt_blocks));
    }

    fn p2p_ratio_now(&self) -> f64 {
        let (cdn, peers) = self.bytes();
        ratio(peers, cdn + peers)
    }

    /// (CDN bytes, peer bytes) received so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.prefetch_bytes.load(Ordering::Relaxed)
                + self.cdn_fetch_bytes.load(Ordering::Relaxed),
            self.peer_bytes.load(Ordering::Relaxed),
        )
    }

    /// The byte counters for a summary.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            cdn_prefetch_bytes: self.prefetch_bytes.load(Ordering::Relaxed),
            cdn_fetch_bytes: self.cdn_fetch_bytes.load(Ordering::Relaxed),
            peer_bytes: self.peer_bytes.load(Ordering::Relaxed),
            uploaded_bytes: self.uploaded_bytes.load(Ordering::Relaxed),
            p2p_ratio: self.p2p_ratio_now(),
        }
    }
}

/// `part / whole`, 0 for an empty whole.
pub fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Byte counters of one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// Bytes of its own substreams from the CDN subscription.
    pub cdn_prefetch_bytes: u64,
    /// Bytes of urgent single-block CDN fetches.
    pub cdn_fetch_bytes: u64,
    /// Bytes received from other peers.
    pub peer_bytes: u64,
    /// Bytes sent to other peers.
    pub uploaded_bytes: u64,
    /// `peer_bytes / (cdn_prefetch_bytes + cdn_fetch_bytes + peer_bytes)`.
    pub p2p_ratio: f64,
}

/// The JSON summary of one peer (`GET /summary`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerSummary {
    /// Tracker-assigned id.
    pub id: u64,
    /// Substreams held now.
    pub substreams: Vec<u32>,
    /// First block played.
    pub start_block: u64,
    /// Whether the stream ended and the last block was played.
    pub done: bool,
    /// Byte counters.
    pub traffic: Traffic,
    /// Playback figures.
    pub playback: PlaybackStats,
    /// Bytes played (served at `/live.ts`).
    pub output_bytes: u64,
    /// SHA-256 (hex) of the bytes played, set when done.
    pub output_sha256: Option<String>,
    /// Blocks held now (the window behind the playhead and what arrived ahead of it).
    pub held_blocks: u64,
    /// Most blocks held at once so far.
    pub max_held_blocks: u64,
}
