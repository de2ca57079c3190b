//! `p2plive demo`: the CDN edge, the tracker, N peers and the origin on 127.0.0.1 in one
//! process, over real sockets (HTTP and QUIC), on a real video file; then checks every peer's
//! `/live.ts` against the stream the origin cut.
//!
//! The demo is a sequence of named steps ([`run`]):
//! 1. [`prepare_input`]: an MP4 file is encoded as a live encoder would (libx264, a key frame
//!    every block, [`crate::ffmpeg::encode_live`]), so every block decodes on its own; a TS
//!    file is taken as it is.
//! 2. [`Services::start`]: the CDN edge and the tracker (`s` fixed).
//! 3. [`Services::start_viewer`] for every initial peer, each with a player reading its
//!    `/live.ts` from the start; then [`Services::wait_settled`] until every peer subscribed.
//! 4. [`stream`]: the origin cuts and publishes the clip (paced at `speed`); meanwhile
//!    [`mid_stream`] kills a share of the peers (`churn`, at 40 % of the stream, like killed
//!    processes: no goodbye) and starts late peers and late players (at 50 %).
//! 5. [`finish`]: waits for every survivor, then compares what each player read with the
//!    blocks the origin cut, decodes what late viewers got with ffmpeg and places their start
//!    against the live edge ([`viewers::Edge`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::cdn::Cdn;
use crate::metrics::{PeerSummary, ratio};
use crate::origin::{Input, OriginConfig, OriginReport, load_ts};
use crate::peer::{PeerConfig, PeerHandle, http_client};
use crate::sched::SchedConfig;
use crate::tracker::{Tracker, TrackerConfig};
use crate::ts::{Container, sniff};

mod report;
mod table;
mod viewers;

pub use report::{CDN_BUDGET, DemoReport, LatePlayer, PeerDetail};
pub use table::table;
use viewers::{Capture, Edge, play};

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

/// How the demo turns its input file into the live stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Encode {
    /// MP4 files are encoded as a live encoder would ([`Encode::Live`]); TS files are taken
    /// as they are ([`Encode::Copy`]).
    #[default]
    Auto,
    /// Re-encode with a key frame every `block_ms` ([`crate::ffmpeg::encode_live`]).
    Live,
    /// Remux MP4 losslessly (its own GOP: a VOD file's key frames may be 10 s apart, so a
    /// viewer joining mid-stream can see undecodable frames until the next one).
    Copy,
}

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Number of peers joining before the stream starts.
    pub peers: usize,
    /// Number of substreams `s` (fixed for the demo).
    pub substreams: u32,
    /// Block-set size `a`.
    pub block_set: u32,
    /// Input file (TS or MP4).
    pub input: PathBuf,
    /// How the input becomes the live stream.
    pub encode: Encode,
    /// Replay speed.
    pub speed: f64,
    /// Target block duration in ms.
    pub block_ms: u64,
    /// Urgent zone in blocks.
    pub urgent_blocks: u64,
    /// Blocks buffered behind the live edge before playing
    /// ([`SchedConfig::playout_delay_blocks`]); also sets the late viewers' lag budget.
    pub playout_delay_blocks: u64,
    /// CDN prefetchers per substream (default 1; 0 = every holder; see
    /// [`TrackerConfig::cdn_prefetchers_per_substream`]).
    pub cdn_prefetchers: u32,
    /// Media the CDN and every peer keep, in ms (see [`PeerConfig::window_ms`]).
    pub window_ms: u64,
    /// Share of the initial peers killed at 40 % of the stream, `0.0..=0.9` (rounded to a
    /// whole number of peers; at least one peer always survives).
    pub churn: f64,
    /// Peers joining at 50 % of the stream, each with a player from its first block.
    pub late_peers: usize,
    /// Players connecting at 50 % of the stream to surviving initial peers (default
    /// `/live.ts`: from the newest block played, near the live edge).
    pub late_players: usize,
    /// Bound on the demo process's peak RSS in MiB ([`DemoReport::max_rss_mib`]); `None`
    /// reports the RSS without a check.
    pub max_rss_mib: Option<u64>,
    /// Show a progress bar (stderr, terminals only).
    pub progress: bool,
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

/// Runs the demo, step by step (module docs).
///
/// # Errors
/// Bad input (not TS or MP4, or ffmpeg failing to encode it), sockets that cannot be bound,
/// peers that do not subscribe or players that do not end in time.
pub async fn run(options: &DemoOptions) -> anyhow::Result<(DemoReport, DemoExtras)> {
    let started = Instant::now();
    if options.peers == 0 {
        bail!("--peers must be at least 1");
    }
    if !(0.0..=0.9).contains(&options.churn) {
        bail!("--churn must be within 0.0..=0.9, not {}", options.churn);
    }
    let prepared = prepare_input(options).await?;
    let services = Services::start(options).await?;
    let http = http_client()?;
    let mut initial = Vec::new();
    for _ in 0..options.peers {
        initial.push(services.start_viewer(&http, false).await?);
    }
    services.wait_settled(&initial).await?;
    let prefetch_copies = services.prefetch_copies(options.substreams);

    let rss = sample_rss(options.speed, services.stop.child_token());
    let edge = Edge::default();
    let ts_len = prepared.len;
    // The mid-stream events wait for the origin's progress; an origin that fails (or ends
    // early) releases them, so the demo reports its error instead of waiting forever.
    let origin_done = CancellationToken::new();
    let (origin, events) = tokio::join!(
        async {
            let report = stream(&services, options, &prepared.input, &edge).await;
            origin_done.cancel();
            report
        },
        mid_stream(
            &services,
            options,
            &http,
            initial,
            &edge,
            (ts_len, &origin_done)
        ),
    );
    let origin = origin?;
    let events = events?;
    let (mut report, lag_blocks_max, cdn) =
        finish(&services, options, events, &origin, &edge, prefetch_copies).await?;
    services.stop();
    report.process_rss = rss.await.unwrap_or_default();
    let extras = DemoExtras {
        wall: started.elapsed(),
        origin,
        lag_blocks_max,
        cdn,
    };
    Ok((report, extras))
}

/// Media time after which [`DemoReport::process_rss`] takes its "after warm-up" sample.
const RSS_WARMUP_MEDIA: Duration = Duration::from_secs(60);
/// How often the demo samples its RSS.
const RSS_EVERY: Duration = Duration::from_millis(500);

/// Samples this process's RSS every [`RSS_EVERY`] until `stop`; the warm-up is
/// [`RSS_WARMUP_MEDIA`] of media at `speed`. A failed read ends the sampling (not on Linux).
fn sample_rss(
    speed: f64,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<crate::rss::RssFigures> {
    let warmup = RSS_WARMUP_MEDIA.div_f64(speed.max(0.01));
    tokio::spawn(async move {
        let started = Instant::now();
        let mut track = crate::rss::RssTrack::new(warmup);
        let mut tick = tokio::time::interval(RSS_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            match crate::rss::read_rss(std::process::id()) {
                Ok(bytes) => track.sample(started.elapsed(), bytes),
                Err(error) => {
                    tracing::debug!(%error, "no RSS sampling");
                    break;
                }
            }
        }
        track.figures()
    })
}

/// The live stream the origin replays: a TS file (the live encode in a temporary directory,
/// or the input itself) streamed from disk, or the lossless remux of an MP4 (`--encode copy`)
/// in memory.
struct Prepared {
    input: Input,
    /// Its length in bytes.
    len: u64,
    /// The live encode's file, deleted when this is dropped.
    _encoded: Option<crate::ffmpeg::TempTs>,
}

/// Step 1: the live stream (module docs).
async fn prepare_input(options: &DemoOptions) -> anyhow::Result<Prepared> {
    let path = &options.input;
    let mp4 = matches!(sniff(&load_head(path).await?), Container::Mp4);
    let live = match options.encode {
        Encode::Live => true,
        Encode::Copy => false,
        Encode::Auto => mp4,
    };
    if live {
        let encoded = crate::ffmpeg::encode_live(path, options.block_ms)
            .await
            .with_context(|| format!("encoding `{}` as a live stream", path.display()))?;
        let len = fs_err::metadata(encoded.path())?.len();
        Ok(Prepared {
            input: Input::File(encoded.path().to_path_buf()),
            len,
            _encoded: Some(encoded),
        })
    } else if mp4 {
        let ts = load_ts(path)
            .await
            .with_context(|| format!("loading `{}`", path.display()))?;
        Ok(Prepared {
            len: ts.len() as u64,
            input: Input::Ts(ts),
            _encoded: None,
        })
    } else {
        Ok(Prepared {
            input: Input::File(path.clone()),
            len: fs_err::metadata(path)?.len(),
            _encoded: None,
        })
    }
}

async fn load_head(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = fs_err::tokio::File::open(path).await?;
    let mut head = Vec::with_capacity(4096);
    file.take(4096).read_to_end(&mut head).await?;
    Ok(head)
}

/// Step 2: the CDN edge and the tracker, serving until [`Services::stop`].
struct Services {
    cdn: Cdn,
    cdn_url: String,
    tracker: Tracker,
    publish_token: svckit::redact::Secret,
    peer_config: PeerConfig,
    expiry: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

/// A peer with its player.
struct Viewer {
    peer: PeerHandle,
    joined: Instant,
    player: tokio::task::JoinHandle<anyhow::Result<Capture>>,
}

impl Services {
    async fn start(options: &DemoOptions) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        // Fresh secrets for this run: the tracker's join token and the CDN's publish token.
        let join_token = crate::auth::new_token()?;
        let publish_token = crate::auth::new_token()?;

        let mut cdn_registry = Registry::default();
        let cdn = Cdn::new(&mut cdn_registry, publish_token.clone())?.window(options.window_ms);
        let cdn_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let cdn_url = format!("http://{}", cdn_listener.local_addr()?);
        tokio::spawn(svckit::serve(
            cdn_listener,
            cdn.router(),
            svckit::ServeOptions::new("p2plive-cdn", cdn_registry)
                .grace_period(Duration::from_millis(200)),
            stop.clone().cancelled_owned(),
        ));

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
        tokio::spawn(svckit::serve(
            tracker_listener,
            tracker.router(),
            svckit::ServeOptions::new("p2plive-tracker", Registry::default())
                .grace_period(Duration::from_millis(200)),
            stop.clone().cancelled_owned(),
        ));

        let peer_config = PeerConfig {
            stream: "live".to_owned(),
            tracker: tracker_url,
            tracker_token: join_token,
            cdn: cdn_url.clone(),
            speed: options.speed,
            sched: SchedConfig {
                urgent_blocks: options.urgent_blocks,
                playout_delay_blocks: options.playout_delay_blocks,
                ..SchedConfig::default()
            },
            window_ms: options.window_ms,
            ..PeerConfig::default()
        };
        Ok(Self {
            cdn,
            cdn_url,
            tracker,
            publish_token,
            peer_config,
            expiry,
            stop,
        })
    }

    /// Step 3: starts a peer and a player on its `/live.ts` (keeping the bytes when `keep`).
    async fn start_viewer(&self, http: &reqwest::Client, keep: bool) -> anyhow::Result<Viewer> {
        let joined = Instant::now();
        let peer = PeerHandle::start(self.peer_config.clone())
            .await
            .context("starting a peer")?;
        let url = format!("http://{}/live.ts", peer.http_addr());
        Ok(Viewer {
            player: play(http.clone(), url, keep),
            peer,
            joined,
        })
    }

    /// Waits until every peer is subscribed with the assignment the tracker holds for it.
    async fn wait_settled(&self, viewers: &[Viewer]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let entries = self.tracker.entries("live");
            let settled = viewers.iter().all(|v| {
                let summary = v.peer.summary();
                !summary.substreams.is_empty()
                    && entries.iter().any(|e| {
                        e.id == summary.id
                            && e.substreams.iter().copied().collect::<Vec<_>>()
                                == summary.substreams
                    })
            });
            if settled {
                tracing::info!(peers = viewers.len(), "all peers joined and subscribed");
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("peers did not subscribe to their substreams within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Copies of each substream the CDN prefetches (the tracker's assignment / `s`).
    fn prefetch_copies(&self, substreams: u32) -> f64 {
        let prefetched: usize = self
            .tracker
            .entries("live")
            .iter()
            .map(|e| e.prefetch.len())
            .sum();
        prefetched as f64 / f64::from(substreams.max(1))
    }

    fn stop(self) {
        self.expiry.abort();
        self.stop.cancel();
    }
}

/// Step 4: the origin, paced at `speed`; every published block is recorded in `edge`.
async fn stream(
    services: &Services,
    options: &DemoOptions,
    input: &Input,
    edge: &Edge,
) -> anyhow::Result<OriginReport> {
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
        cdn: services.cdn_url.clone(),
        block_ms: options.block_ms,
        speed: options.speed,
        publish_token: services.publish_token.clone(),
        ..OriginConfig::default()
    };
    let report = crate::origin::run(input, &origin_config, |info| {
        edge.publish(info);
        bar.inc(1);
    })
    .await
    .context("running the origin")?;
    bar.finish_and_clear();
    Ok(report)
}

/// What happened during the stream: the survivors, the killed peers' last summaries, the late
/// peers and the late players (with the survivor index each reads from).
struct Events {
    survivors: Vec<Viewer>,
    killed: Vec<PeerSummary>,
    late_peers: Vec<Viewer>,
    late_players: Vec<(u64, tokio::task::JoinHandle<anyhow::Result<Capture>>)>,
}

/// Step 4, beside the origin: churn at 40 % of the stream's bytes, late viewers at 50 %
/// (`progress`: the input's length in bytes and a token cancelled once the origin ended; an
/// event the origin did not reach is skipped).
async fn mid_stream(
    services: &Services,
    options: &DemoOptions,
    http: &reqwest::Client,
    initial: Vec<Viewer>,
    edge: &Edge,
    progress: (u64, &CancellationToken),
) -> anyhow::Result<Events> {
    let (ts_len, origin_done) = progress;
    let reach = |share: f64| async move {
        let target = (ts_len as f64 * share) as u64;
        loop {
            if edge.bytes() >= target {
                return true;
            }
            if origin_done.is_cancelled() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let victims = ((options.peers as f64 * options.churn).round() as usize)
        .min(options.peers.saturating_sub(1));
    let mut events = Events {
        survivors: Vec::new(),
        killed: Vec::new(),
        late_peers: Vec::new(),
        late_players: Vec::new(),
    };
    let victims = if victims > 0 && reach(0.4).await {
        victims
    } else {
        0
    };
    // Spread the victims over the join order (every k-th peer).
    let stride = options.peers.checked_div(victims).unwrap_or(usize::MAX);
    for (i, viewer) in initial.into_iter().enumerate() {
        if victims > 0 && i % stride == stride - 1 && events.killed.len() < victims {
            tracing::info!(peer = viewer.peer.id(), "killing a peer mid-stream");
            events.killed.push(viewer.peer.summary());
            viewer.player.abort();
            viewer.peer.crash();
        } else {
            events.survivors.push(viewer);
        }
    }
    if options.late_peers + options.late_players == 0 {
        return Ok(events);
    }
    if !reach(0.5).await {
        return Ok(events);
    }
    for _ in 0..options.late_peers {
        events
            .late_peers
            .push(services.start_viewer(http, true).await?);
    }
    for i in 0..options.late_players {
        let viewer = &events.survivors[i % events.survivors.len()];
        let url = format!("http://{}/live.ts", viewer.peer.http_addr());
        events
            .late_players
            .push((viewer.peer.id(), play(http.clone(), url, true)));
    }
    Ok(events)
}

/// Step 5: waits for every peer, compares and decodes what the players read, and builds the
/// report (module docs).
async fn finish(
    services: &Services,
    options: &DemoOptions,
    events: Events,
    origin: &OriginReport,
    edge: &Edge,
    prefetch_copies: f64,
) -> anyhow::Result<(DemoReport, u64, crate::cdn::CdnStats)> {
    // The last block plays `playout_delay_blocks` after it was cut.
    let blocks = 10 + options.playout_delay_blocks;
    let wait =
        Duration::from_secs_f64(options.block_ms as f64 / 1000.0 / options.speed * blocks as f64)
            + Duration::from_secs(20);
    for viewer in events.survivors.iter().chain(&events.late_peers) {
        if tokio::time::timeout(wait, viewer.peer.wait_done())
            .await
            .is_err()
        {
            tracing::warn!(peer = viewer.peer.id(), "peer did not finish in time");
        }
    }
    let mut received = (0u64, 0u64);
    for s in &events.killed {
        received.0 += s.traffic.peer_bytes;
        received.1 += all_bytes(s);
    }
    let mut lag_max = 0;
    let mut done = Vec::new();
    let mut peers_detail = Vec::new();
    for viewer in events.survivors {
        let (detail, summary, peer) = settle(viewer, edge, origin, false).await?;
        lag_max = lag_max.max(summary.playback.max_lag_blocks);
        received.0 += summary.traffic.peer_bytes;
        received.1 += all_bytes(&summary);
        peers_detail.push(detail);
        done.push(peer);
    }
    let mut late_peers = Vec::new();
    for viewer in events.late_peers {
        let (detail, summary, peer) = settle(viewer, edge, origin, true).await?;
        received.0 += summary.traffic.peer_bytes;
        received.1 += all_bytes(&summary);
        late_peers.push(detail);
        done.push(peer);
    }
    let mut late_players = Vec::new();
    for (peer, player) in events.late_players {
        let capture = end_of(player, peer).await?;
        let spool = capture
            .spool
            .as_ref()
            .context("a late player keeps its bytes")?;
        let (first_block, byte_exact) = edge
            .locate_file(&spool.path)
            .await?
            .unwrap_or((u64::MAX, false));
        let lag = capture
            .first_byte_at
            .and_then(|at| edge.lag_ms(first_block, at))
            .unwrap_or(u64::MAX);
        late_players.push(LatePlayer {
            peer,
            first_block,
            lag_behind_edge_ms: lag,
            byte_exact,
            decode_errors: crate::ffmpeg::decode_errors(&spool.path).await?.len() as u64,
            bytes: capture.len,
        });
    }
    for peer in done {
        peer.shutdown().await;
    }
    let cdn = services.cdn.stats("live");
    let playout = options.playout_delay_blocks;
    let wanted_kills = ((options.peers as f64 * options.churn).round() as usize)
        .min(options.peers.saturating_sub(1));
    let mut skipped_events = Vec::new();
    for (what, done, wanted) in [
        ("peers killed", events.killed.len(), wanted_kills),
        ("late peers", late_peers.len(), options.late_peers),
        ("late players", late_players.len(), options.late_players),
    ] {
        if done < wanted {
            skipped_events.push(format!(
                "{done} of {wanted} {what} (the origin ended before the event's share of the stream)"
            ));
        }
    }
    let report = DemoReport {
        peers: options.peers,
        substreams: options.substreams,
        block_set: options.block_set,
        blocks: origin.blocks,
        stream_bytes: origin.source_bytes,
        cdn_bytes: cdn.total,
        p2p_ratio: round3(ratio(received.0, received.1)),
        ideal_p2p_ratio: round3(
            1.0 - ratio(
                (prefetch_copies * origin.source_bytes as f64) as u64,
                received.1,
            ),
        ),
        cdn_copies: round3(prefetch_copies),
        source_sha256: origin.source_sha256.clone(),
        cdn_max_held_blocks: cdn.max_held_blocks,
        lag_budget_ms: (playout + 1) * edge.mean_block_ms().max(options.block_ms),
        peers_detail,
        killed: events.killed.iter().map(|s| s.id).collect(),
        late_peers,
        late_players,
        skipped_events,
        process_rss: crate::rss::RssFigures::default(),
        max_rss_mib: options.max_rss_mib,
    };
    Ok((report, lag_max, cdn))
}

fn all_bytes(summary: &PeerSummary) -> u64 {
    let t = &summary.traffic;
    t.peer_bytes + t.cdn_prefetch_bytes + t.cdn_fetch_bytes
}

async fn end_of(
    player: tokio::task::JoinHandle<anyhow::Result<Capture>>,
    peer: u64,
) -> anyhow::Result<Capture> {
    tokio::time::timeout(Duration::from_secs(10), player)
        .await
        .map_err(|_| anyhow::anyhow!("peer {peer}: /live.ts did not end"))?
        .context("the player task failed")?
        .with_context(|| format!("peer {peer}: reading /live.ts"))
}

/// One peer's line of the report; `late` peers are placed by their bytes and decoded.
/// Returns the peer to be shut down.
async fn settle(
    viewer: Viewer,
    edge: &Edge,
    origin: &OriginReport,
    late: bool,
) -> anyhow::Result<(PeerDetail, PeerSummary, PeerHandle)> {
    let summary = viewer.peer.summary();
    let player = end_of(viewer.player, summary.id).await?;
    let (byte_exact, decode_errors) = if late {
        let spool = player
            .spool
            .as_ref()
            .context("a late peer's player keeps its bytes")?;
        let exact = edge
            .locate_file(&spool.path)
            .await?
            .is_some_and(|(first, exact)| exact && first == summary.start_block);
        let errors = crate::ffmpeg::decode_errors(&spool.path).await?.len() as u64;
        (exact, Some(errors))
    } else {
        (player.sha256 == origin.source_sha256, None)
    };
    let startup_ms = summary.playback.startup_ms.unwrap_or(0);
    let first_played = viewer.joined + Duration::from_millis(startup_ms);
    let detail = PeerDetail {
        id: summary.id,
        p2p_ratio: round3(summary.traffic.p2p_ratio),
        stalls: summary.playback.stalls,
        stall_ms: summary.playback.stall_ms,
        startup_ms,
        start_block: summary.start_block,
        lag_behind_edge_ms: edge
            .lag_ms(summary.start_block, first_played)
            .unwrap_or(u64::MAX),
        byte_exact: summary.done && byte_exact,
        output_sha256: player.sha256,
        max_held_blocks: summary.max_held_blocks,
        decode_errors,
    };
    Ok((detail, summary, viewer.peer))
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(input: PathBuf, encode: Encode) -> DemoOptions {
        DemoOptions {
            peers: 1,
            substreams: 1,
            block_set: 1,
            input,
            encode,
            speed: 1.0,
            block_ms: 1000,
            urgent_blocks: 2,
            playout_delay_blocks: 12,
            cdn_prefetchers: 1,
            window_ms: 30_000,
            churn: 0.0,
            late_peers: 0,
            late_players: 0,
            max_rss_mib: None,
            progress: false,
        }
    }

    /// A TS input is streamed from its file, not loaded: a 600 s input once cost the demo
    /// process its whole length in memory.
    #[tokio::test]
    async fn a_ts_input_stays_on_disk() {
        let dir = testkit::tempdir();
        let path = dir.path().join("in.ts");
        let mut ts = vec![0u8; 188 * 50];
        for packet in ts.chunks_mut(188) {
            packet[0] = 0x47;
        }
        fs_err::write(&path, &ts).unwrap();
        for encode in [Encode::Auto, Encode::Copy] {
            let prepared = prepare_input(&options(path.clone(), encode)).await.unwrap();
            assert_eq!(prepared.input, Input::File(path.clone()), "{encode:?}");
            assert_eq!(prepared.len, ts.len() as u64);
        }
    }

    /// The live encode of an MP4 is a file in a temporary directory, replayed from disk and
    /// deleted with the prepared input.
    #[tokio::test]
    async fn a_live_encode_is_a_temporary_file() {
        let dir = testkit::tempdir();
        let mp4 = dir.path().join("in.mp4");
        testkit::TestClip::new(2)
            .pattern("testsrc")
            .size("160x120")
            .write(&mp4);
        let prepared = prepare_input(&options(mp4, Encode::Auto)).await.unwrap();
        let Input::File(ts) = prepared.input.clone() else {
            panic!("not a file: {:?}", prepared.input);
        };
        let bytes = fs_err::read(&ts).unwrap();
        assert_eq!(bytes.len() as u64, prepared.len);
        assert_eq!(bytes.first(), Some(&0x47), "an MPEG-TS file");
        drop(prepared);
        assert!(!ts.exists(), "deleted with the prepared input");
    }
}
