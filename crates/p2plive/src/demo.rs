//! `p2plive demo`: the CDN edge, the tracker, N peers and the origin on 127.0.0.1 in one
//! process, over real sockets (HTTP and QUIC), on a real video file; then checks every peer's
//! `/live.ts` against the stream the origin cut. A player per peer reads `/live.ts` from the
//! peer's start, while it plays (the peers keep only a window of blocks).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::cdn::Cdn;
use crate::metrics::ratio;
use crate::origin::{Input, OriginConfig, OriginReport, load_ts};
use crate::peer::{PeerConfig, PeerHandle, http_client};
use crate::sched::SchedConfig;
use crate::tracker::{Tracker, TrackerConfig};

/// The bundled clip, relative to the workspace root.
pub const BUNDLED_CLIP: &str = "data/video/big_buck_bunny_640x360_60s.mp4";

/// Finds the bundled clip from the current directory or the crate's source location.
pub fn bundled_clip() -> PathBuf {
    let here = PathBuf::from(BUNDLED_CLIP);
    if here.is_file() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(BUNDLED_CLIP)
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of peers.
    pub peers: usize,
    /// Number of substreams `s` (fixed for the demo).
    pub substreams: u32,
    /// Block-set size `a`.
    pub block_set: u32,
    /// Input file (TS or MP4).
    pub input: PathBuf,
    /// Replay speed.
    pub speed: f64,
    /// Target block duration in ms.
    pub block_ms: u64,
    /// Urgent zone in blocks.
    pub urgent_blocks: u64,
    /// CDN prefetchers per substream (default 1; 0 = every holder; see
    /// [`TrackerConfig::cdn_prefetchers_per_substream`]).
    pub cdn_prefetchers: u32,
    /// Media the CDN and every peer keep, in ms (see [`PeerConfig::window_ms`]).
    pub window_ms: u64,
    /// Show a progress bar (stderr, terminals only).
    pub progress: bool,
}

/// One peer in the demo report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerDetail {
    /// Tracker id.
    pub id: u64,
    /// Peer bytes / all bytes it received.
    pub p2p_ratio: f64,
    /// Stalls.
    pub stalls: u64,
    /// Stall time in ms.
    pub stall_ms: u64,
    /// Join to first block played, ms.
    pub startup_ms: u64,
    /// SHA-256 of the peer's `/live.ts`.
    pub output_sha256: String,
    /// Whether `/live.ts` equals the stream the origin cut.
    pub byte_exact: bool,
    /// Most blocks the peer held at once.
    pub max_held_blocks: u64,
}

/// The demo's JSON report (the shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoReport {
    /// Number of peers.
    pub peers: usize,
    /// Number of substreams.
    pub substreams: u32,
    /// Block-set size.
    pub block_set: u32,
    /// Blocks cut.
    pub blocks: u64,
    /// Bytes of the stream.
    pub stream_bytes: u64,
    /// Every block byte the CDN served (prefetch and urgent fetches).
    pub cdn_bytes: u64,
    /// Peer bytes / all bytes received, over all peers.
    pub p2p_ratio: f64,
    /// SHA-256 of the stream the origin cut.
    pub source_sha256: String,
    /// Most blocks the CDN held at once.
    pub cdn_max_held_blocks: u64,
    /// Per peer.
    pub peers_detail: Vec<PeerDetail>,
    /// The ideal P2P ratio of this set-up, `1 - (substream copies the CDN prefetches) /
    /// (s * peers)`: `1 - 1/s` when every holder prefetches, `1 - 1/peers` with one CDN
    /// prefetcher per substream. Not part of the JSON.
    #[serde(skip)]
    pub ideal_p2p_ratio: f64,
}

/// Figures printed next to the report (stderr).
#[derive(Debug, Clone)]
pub struct DemoExtras {
    /// Wall time of the whole demo.
    pub wall: Duration,
    /// Origin's figures.
    pub origin: OriginReport,
    /// Per peer: max lag in blocks, corrupt blocks, duplicates.
    pub lag_blocks_max: u64,
    /// Bytes the CDN served, per peer id.
    pub cdn: crate::cdn::CdnStats,
}

impl DemoReport {
    /// The demo's checks: every peer byte-exact, no stalls, and a P2P ratio within 0.05 of the
    /// ideal (0.85 for the seed's 10 peers on 10 substreams, ideal 0.90).
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.peers_detail {
            if !p.byte_exact {
                out.push(format!("peer {} output is not byte-exact", p.id));
            }
            if p.stalls > 0 {
                out.push(format!(
                    "peer {} stalled {} times ({} ms)",
                    p.id, p.stalls, p.stall_ms
                ));
            }
        }
        let ideal = self.ideal_p2p_ratio;
        let floor = ideal - 0.05;
        if self.p2p_ratio < floor {
            out.push(format!(
                "P2P ratio {:.3} below {floor:.2} (ideal {ideal:.2})",
                self.p2p_ratio
            ));
        }
        out
    }
}

/// Runs the demo.
///
/// # Errors
/// Bad input (not TS or MP4), sockets that cannot be bound, peers that do not finish in time.
pub async fn run(options: &DemoOptions) -> anyhow::Result<(DemoReport, DemoExtras)> {
    let started = Instant::now();
    if options.peers == 0 {
        bail!("--peers must be at least 1");
    }
    let ts = load_ts(&options.input)
        .await
        .with_context(|| format!("loading `{}`", options.input.display()))?;
    let stop = CancellationToken::new();
    // Fresh secrets for this run: the tracker's join token and the CDN's publish token.
    let join_token = crate::auth::new_token()?;
    let publish_token = crate::auth::new_token()?;

    // CDN edge.
    let mut cdn_registry = Registry::default();
    let cdn = Cdn::new(&mut cdn_registry, publish_token.clone())?.window(options.window_ms);
    let cdn_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cdn_url = format!("http://{}", cdn_listener.local_addr()?);
    let (router, token) = (cdn.router(), stop.clone());
    tokio::spawn(svckit::serve(
        cdn_listener,
        router,
        svckit::ServeOptions::new("p2plive-cdn", cdn_registry)
            .grace_period(Duration::from_millis(200)),
        token.cancelled_owned(),
    ));

    // Tracker with s fixed to the requested value.
    let tracker_config = TrackerConfig {
        streams: vec!["live".to_owned()],
        min_substreams: options.substreams,
        max_substreams: options.substreams,
        block_set: options.block_set,
        cdn_prefetchers_per_substream: options.cdn_prefetchers,
        join_token: join_token.clone(),
        ..TrackerConfig::default()
    };
    let tracker = Tracker::new(&tracker_config)?;
    let expiry = tracker.spawn_expiry();
    let tracker_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let tracker_url = format!("http://{}", tracker_listener.local_addr()?);
    let (router, token) = (tracker.router(), stop.clone());
    tokio::spawn(svckit::serve(
        tracker_listener,
        router,
        svckit::ServeOptions::new("p2plive-tracker", Registry::default())
            .grace_period(Duration::from_millis(200)),
        token.cancelled_owned(),
    ));

    // Peers.
    let peer_config = PeerConfig {
        stream: "live".to_owned(),
        tracker: tracker_url.clone(),
        tracker_token: join_token,
        cdn: cdn_url.clone(),
        speed: options.speed,
        sched: SchedConfig {
            urgent_blocks: options.urgent_blocks,
            ..SchedConfig::default()
        },
        window_ms: options.window_ms,
        ..PeerConfig::default()
    };
    let http = http_client()?;
    let mut peers = Vec::new();
    let mut players = Vec::new();
    for _ in 0..options.peers {
        let peer = PeerHandle::start(peer_config.clone())
            .await
            .context("starting a peer")?;
        players.push(play(
            http.clone(),
            format!("http://{}/live.ts", peer.http_addr()),
        ));
        peers.push(peer);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    // Start the origin once every peer subscribed with its final assignment.
    let settled = |peers: &[PeerHandle]| {
        let entries = tracker.entries("live");
        peers.iter().all(|p| {
            let summary = p.summary();
            entries.iter().any(|e| {
                e.id == summary.id
                    && e.substreams.iter().copied().collect::<Vec<_>>() == summary.substreams
            }) && !summary.substreams.is_empty()
        })
    };
    while !settled(&peers) {
        if Instant::now() > deadline {
            bail!("peers did not subscribe to their substreams within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!(
        peers = peers.len(),
        "all peers joined and subscribed; starting the origin"
    );
    let prefetched: usize = tracker
        .entries("live")
        .iter()
        .map(|e| e.prefetch.len())
        .sum();
    let ideal_p2p_ratio =
        1.0 - prefetched as f64 / (f64::from(options.substreams) * options.peers as f64);

    // Origin, paced at `speed`.
    let bar = if options.progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} origin {pos} blocks cut {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let origin_config = OriginConfig {
        stream: "live".to_owned(),
        cdn: cdn_url.clone(),
        block_ms: options.block_ms,
        speed: options.speed,
        publish_token,
        ..OriginConfig::default()
    };
    let origin = crate::origin::run(&Input::Ts(ts), &origin_config, |_| bar.inc(1))
        .await
        .context("running the origin")?;
    bar.finish_and_clear();

    // Wait for every peer to play the last block.
    let wait = Duration::from_secs_f64(options.block_ms as f64 / 1000.0 / options.speed * 10.0)
        + Duration::from_secs(20);
    for peer in &peers {
        if tokio::time::timeout(wait, peer.wait_done()).await.is_err() {
            tracing::warn!(peer = peer.id(), "peer did not finish in time");
        }
    }

    // Compare what every peer's player read from /live.ts with the stream the origin cut.
    let mut details = Vec::new();
    let (mut peer_bytes, mut all_bytes, mut lag_max) = (0u64, 0u64, 0u64);
    for (peer, player) in peers.iter().zip(players) {
        let summary = peer.summary();
        let output_sha256 = tokio::time::timeout(Duration::from_secs(10), player)
            .await
            .map_err(|_| anyhow::anyhow!("peer {}: /live.ts did not end", summary.id))?
            .context("the player task failed")?
            .with_context(|| format!("peer {}: reading /live.ts", summary.id))?;
        let t = summary.traffic;
        peer_bytes += t.peer_bytes;
        all_bytes += t.peer_bytes + t.cdn_prefetch_bytes + t.cdn_fetch_bytes;
        lag_max = lag_max.max(summary.playback.max_lag_blocks);
        details.push(PeerDetail {
            id: summary.id,
            p2p_ratio: round3(t.p2p_ratio),
            stalls: summary.playback.stalls,
            stall_ms: summary.playback.stall_ms,
            startup_ms: summary.playback.startup_ms.unwrap_or(0),
            byte_exact: summary.done && output_sha256 == origin.source_sha256,
            output_sha256,
            max_held_blocks: summary.max_held_blocks,
        });
    }
    let cdn_stats = cdn.stats("live");
    let cdn_bytes = cdn_stats.total;
    for peer in peers {
        peer.shutdown().await;
    }
    expiry.abort();
    stop.cancel();
    let report = DemoReport {
        peers: options.peers,
        substreams: options.substreams,
        block_set: options.block_set,
        blocks: origin.blocks,
        stream_bytes: origin.source_bytes,
        cdn_bytes,
        p2p_ratio: round3(ratio(peer_bytes, all_bytes)),
        source_sha256: origin.source_sha256.clone(),
        cdn_max_held_blocks: cdn_stats.max_held_blocks,
        peers_detail: details,
        ideal_p2p_ratio,
    };
    let extras = DemoExtras {
        wall: started.elapsed(),
        origin,
        lag_blocks_max: lag_max,
        cdn: cdn_stats,
    };
    Ok((report, extras))
}

/// A player: reads `url` (a peer's `/live.ts`) to its end; returns the SHA-256 (hex) of
/// what it read.
fn play(http: reqwest::Client, url: String) -> tokio::task::JoinHandle<anyhow::Result<String>> {
    tokio::spawn(async move {
        let response = http.get(&url).send().await?.error_for_status()?;
        let mut body = response.bytes_stream();
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            hasher.update(&chunk?);
        }
        Ok(hex::encode(hasher.finalize()))
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A human-readable table of the report (for stderr).
pub fn table(report: &DemoReport, extras: &DemoExtras) -> String {
    let mut out = String::new();
    let startup: Vec<u64> = report.peers_detail.iter().map(|p| p.startup_ms).collect();
    let max_startup = startup.iter().max().copied().unwrap_or(0);
    let mean_startup = startup.iter().sum::<u64>() / (startup.len().max(1) as u64);
    out.push_str(&format!(
        "p2plive demo: {} peers, s={}, a={}, {} blocks, {} bytes ({:.1} s of media cut in {:.1} s)\n",
        report.peers,
        report.substreams,
        report.block_set,
        report.blocks,
        report.stream_bytes,
        extras.origin.media_seconds,
        extras.origin.wall_ms as f64 / 1000.0,
    ));
    out.push_str(&format!(
        "  P2P ratio {:.3} (ideal {:.3})   CDN bytes / stream bytes {:.3}   startup mean {} ms max {} ms   max lag {} blocks   wall {:.1} s\n",
        report.p2p_ratio,
        report.ideal_p2p_ratio,
        report.cdn_bytes as f64 / report.stream_bytes.max(1) as f64,
        mean_startup,
        max_startup,
        extras.lag_blocks_max,
        extras.wall.as_secs_f64()
    ));
    out.push_str(
        "  peer  p2p_ratio  stalls  stall_ms  startup_ms  byte_exact  cdn_prefetch  cdn_urgent\n",
    );
    for p in &report.peers_detail {
        let cdn = extras
            .cdn
            .peers
            .get(&p.id.to_string())
            .copied()
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:>4}  {:>9.3}  {:>6}  {:>8}  {:>10}  {:>10}  {:>12}  {:>10}\n",
            p.id,
            p.p2p_ratio,
            p.stalls,
            p.stall_ms,
            p.startup_ms,
            p.byte_exact,
            cdn.prefetch,
            cdn.fetch
        ));
    }
    out
}
