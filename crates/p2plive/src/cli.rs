//! Command line: `p2plive origin | cdn | tracker | peer | demo | bench | sim`.
//!
//! Exit codes: 0 success; 1 an error (printed with its causes); 2 the demo ran but failed its
//! own checks (a peer not byte-exact, a stall, a P2P ratio below the floor); clap's usage
//! errors exit 2 as well.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use prometheus_client::registry::Registry;
use svckit::cli::{stderr_text, stdout_line};

use crate::cdn::Cdn;
use crate::config::{Config, ENV_PREFIX};
use crate::origin::Input;
use crate::peer::PeerHandle;
use crate::tracker::Tracker;

/// `p2plive`'s command line: the global flags ([`svckit::cli::CommonArgs`]) and [`Command`];
/// name, version and description come from the crate (`svckit::about!`).
pub type Cli = svckit::cli::Cli<Command>;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cut a live MPEG-TS stream into blocks and publish them to the CDN.
    Origin(OriginArgs),
    /// Run the CDN edge (HTTP).
    Cdn(CdnArgs),
    /// Run the tracker (HTTP).
    Tracker(TrackerArgs),
    /// Run one viewer: prefetch, P2P over QUIC, serve /live.ts.
    Peer(PeerArgs),
    /// Run origin, CDN, tracker and N peers on 127.0.0.1 and check the result.
    Demo(DemoArgs),
    /// Time the cutter, SHA-256 and scheduler against ffmpeg and sha256sum.
    Bench(BenchArgs),
    /// Simulate a swarm on a virtual clock and compare the prefetch policies.
    Sim(SimArgs),
}

/// `p2plive origin`.
#[derive(Debug, Args)]
pub struct OriginArgs {
    /// TS or MP4 file, `-` for stdin, `udp://127.0.0.1:PORT` to receive, or
    /// `http://127.0.0.1:PORT/ingest` to accept an HTTP push.
    #[arg(long)]
    pub input: String,
    /// CDN base URL.
    #[arg(long)]
    pub cdn: Option<String>,
    /// Stream id.
    #[arg(long)]
    pub stream: Option<String>,
    /// Replay speed for files (1 = real time).
    #[arg(long)]
    pub speed: Option<f64>,
    /// Target block duration in ms.
    #[arg(long)]
    pub block_ms: Option<u64>,
    /// Print the final report as one JSON line on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `p2plive cdn`.
#[derive(Debug, Args)]
pub struct CdnArgs {
    /// Listen address.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
}

/// `p2plive tracker`.
#[derive(Debug, Args)]
pub struct TrackerArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub listen: SocketAddr,
    /// A stream id to serve (repeatable; replaces the configured list).
    #[arg(long = "stream")]
    pub streams: Vec<String>,
    /// Lower bound of the number of substreams.
    #[arg(long)]
    pub min_substreams: Option<u32>,
    /// Upper bound of the number of substreams.
    #[arg(long)]
    pub max_substreams: Option<u32>,
    /// Block-set size a.
    #[arg(long)]
    pub block_set: Option<u32>,
    /// Remove a peer silent for this long (ms).
    #[arg(long)]
    pub peer_timeout_ms: Option<u64>,
    /// CDN prefetchers per substream (default 1; 0 = every holder).
    #[arg(long)]
    pub cdn_prefetchers: Option<u32>,
}

/// `p2plive peer`.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// Tracker base URL.
    #[arg(long)]
    pub tracker: Option<String>,
    /// CDN base URL.
    #[arg(long)]
    pub cdn: Option<String>,
    /// Stream id.
    #[arg(long)]
    pub stream: Option<String>,
    /// HTTP listen address for /live.ts.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// QUIC listen address.
    #[arg(long)]
    pub quic: Option<SocketAddr>,
    /// Playback speed (the origin's --speed).
    #[arg(long)]
    pub speed: Option<f64>,
    /// Urgent zone in blocks.
    #[arg(long)]
    pub urgent_blocks: Option<u64>,
    /// Blocks buffered behind the live edge before playing (scheduler default 12).
    #[arg(long)]
    pub playout_delay_blocks: Option<u64>,
    /// Upload cap per P2P link, bytes/s.
    #[arg(long)]
    pub upload_limit: Option<u64>,
    /// Download cap per P2P link, bytes/s.
    #[arg(long)]
    pub download_limit: Option<u64>,
    /// Flip a byte in every uploaded block (to test the receivers' checks).
    #[arg(long)]
    pub corrupt_uploads: bool,
}

/// `p2plive demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of peers.
    #[arg(long, default_value_t = 10)]
    pub peers: usize,
    /// Number of substreams s.
    #[arg(long, default_value_t = 10)]
    pub substreams: u32,
    /// Block-set size a.
    #[arg(long, default_value_t = 1)]
    pub block_set: u32,
    /// Input TS or MP4 file (default: the bundled Big Buck Bunny clip).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// How the input becomes the live stream: `auto` encodes MP4 as a live encoder would (a
    /// key frame every block, libx264) and takes TS as it is.
    #[arg(long, value_enum, default_value_t = crate::demo::Encode::Auto)]
    pub encode: crate::demo::Encode,
    /// Share of the peers killed at 40 % of the stream (0.0 to 0.9).
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Peers joining at 50 % of the stream.
    #[arg(long, default_value_t = 1)]
    pub late_peers: usize,
    /// Players connecting at 50 % of the stream to running peers (near the live edge).
    #[arg(long, default_value_t = 1)]
    pub late_players: usize,
    /// Replay speed.
    #[arg(long, default_value_t = 4.0)]
    pub speed: f64,
    /// Target block duration in ms.
    #[arg(long, default_value_t = 1000)]
    pub block_ms: u64,
    /// Urgent zone in blocks.
    #[arg(long, default_value_t = 2)]
    pub urgent_blocks: u64,
    /// Blocks buffered behind the live edge before playing (default: the scheduler's).
    #[arg(long)]
    pub playout_delay_blocks: Option<u64>,
    /// CDN prefetchers per substream: k (default 1) = only the k longest-standing holders
    /// prefetch it from the CDN, the others replicate it from peers (seed 55); 0 = every holder
    /// prefetches its substream from the CDN.
    #[arg(long, default_value_t = 1)]
    pub cdn_prefetchers: u32,
    /// Media the CDN and every peer keep (behind the live edge / the playhead), in ms.
    #[arg(long, default_value_t = 30_000)]
    pub window_ms: u64,
    /// Fail when the demo process's peak RSS exceeds this many MiB (the demo runs every part
    /// in one process; its RSS is reported either way).
    #[arg(long)]
    pub max_rss_mb: Option<u64>,
    /// Print the report as one JSON line on stdout (last line).
    #[arg(long)]
    pub json: bool,
}

/// `p2plive sim`: a deterministic discrete-event simulation of the tracker and the peers'
/// schedulers ([`crate::sim`]); prints one table, a row per peer count and policy.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Peer counts to simulate, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "50,200")]
    pub peers: Vec<usize>,
    /// Seconds of stream the origin cuts.
    #[arg(long, default_value_t = 120)]
    pub seconds: u64,
    /// Seed of every random draw (same seed, same table).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Mean peer upload as a multiple of the bitrate (log-normal).
    #[arg(long, default_value_t = 1.5)]
    pub upload_x: f64,
    /// Stream bitrate in bits/s.
    #[arg(long, default_value_t = 2_000_000)]
    pub bitrate: u64,
    /// Blocks buffered behind the live edge before playing (scheduler default 4).
    #[arg(long)]
    pub playout_delay_blocks: Option<u64>,
    /// Share of the peers leaving at half time (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    pub leave_share: f64,
    /// Share of the peers replaced per minute (a random peer leaves, a new one joins).
    #[arg(long, default_value_t = 0.1)]
    pub replace_per_min: f64,
    /// A peer uploads at most this multiple of the bitrate (0 = its whole capacity).
    #[arg(long, default_value_t = 3.0)]
    pub upload_limit_x: f64,
    /// CDN prefetchers per substream under `least-covered` (default: the tracker's, 1).
    #[arg(long)]
    pub prefetchers: Option<u32>,
    /// Under `least-covered`, one more CDN prefetcher per this many holders of a substream
    /// (tracker `cdn_prefetch_per_holders`; default: the tracker's, 4; 0 = off).
    #[arg(long)]
    pub prefetch_per_holders: Option<u32>,
    /// Policies to compare, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub policies: Vec<crate::sim::Policy>,
    /// Print the reports as one JSON line on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// `p2plive bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Input TS or MP4 file (default: the bundled clip).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Rounds per measurement (best is kept).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

async fn serve_until_signal(
    listen: SocketAddr,
    router: axum::Router,
    name: &str,
    registry: Registry,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    svckit::serve(
        listener,
        router,
        svckit::ServeOptions::new(name, registry).grace_period(Duration::from_secs(2)),
        svckit::shutdown_signal()?,
    )
    .await?;
    Ok(())
}

/// Runs the parsed command.
///
/// # Errors
/// Any failure, with context, for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let mut config: Config =
        svckit::cli::load_config(&cli.common, ENV_PREFIX).context("loading configuration")?;
    match cli.command {
        Command::Origin(args) => {
            let o = &mut config.origin;
            if let Some(v) = args.cdn {
                o.cdn = v;
            }
            if let Some(v) = args.stream {
                o.stream = v;
            }
            if let Some(v) = args.speed {
                o.speed = v;
            }
            if let Some(v) = args.block_ms {
                o.block_ms = v;
            }
            let input: Input = args.input.parse()?;
            let report = crate::origin::run(&input, o, |info| {
                tracing::debug!(
                    block = info.number,
                    size = info.size,
                    duration_ms = info.duration_ms,
                    "published"
                );
            })
            .await?;
            if args.json {
                stdout_line(&serde_json::to_string(&report)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Cdn(args) => {
            let listen = args.listen.unwrap_or(config.cdn.listen);
            let mut registry = Registry::default();
            let cdn = Cdn::new(&mut registry, config.cdn.publish_token.clone())?
                .window(config.cdn.window_ms)
                .hls_window(config.cdn.hls_window_blocks);
            serve_until_signal(listen, cdn.router(), "p2plive-cdn", registry).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tracker(args) => {
            let t = &mut config.tracker;
            if !args.streams.is_empty() {
                t.streams = args.streams;
            }
            if let Some(v) = args.min_substreams {
                t.min_substreams = v;
            }
            if let Some(v) = args.max_substreams {
                t.max_substreams = v;
            }
            if let Some(v) = args.block_set {
                t.block_set = v;
            }
            if let Some(v) = args.peer_timeout_ms {
                t.peer_timeout_ms = v;
            }
            if let Some(v) = args.cdn_prefetchers {
                t.cdn_prefetchers_per_substream = v;
            }
            let tracker = Tracker::new(t)?;
            let expiry = tracker.spawn_expiry();
            let result = serve_until_signal(
                args.listen,
                tracker.router(),
                "p2plive-tracker",
                Registry::default(),
            )
            .await;
            expiry.abort();
            result?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Peer(args) => {
            let p = &mut config.peer;
            if let Some(v) = args.tracker {
                p.tracker = v;
            }
            if let Some(v) = args.cdn {
                p.cdn = v;
            }
            if let Some(v) = args.stream {
                p.stream = v;
            }
            if let Some(v) = args.http {
                p.http_listen = v;
            }
            if let Some(v) = args.quic {
                p.quic_listen = v;
            }
            if let Some(v) = args.speed {
                p.speed = v;
            }
            if let Some(v) = args.playout_delay_blocks {
                p.sched.playout_delay_blocks = v;
            }
            if let Some(v) = args.urgent_blocks {
                p.sched.urgent_blocks = v;
            }
            if let Some(v) = args.upload_limit {
                p.upload_limit_bytes_per_s = v;
            }
            if let Some(v) = args.download_limit {
                p.download_limit_bytes_per_s = v;
            }
            p.corrupt_uploads |= args.corrupt_uploads;
            let signal = svckit::shutdown_signal()?;
            let peer = PeerHandle::start(p.clone()).await?;
            tracing::info!(http = %peer.http_addr(), quic = %peer.quic_addr(), "peer running; player URL http://{}/live.ts", peer.http_addr());
            signal.await;
            peer.shutdown().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            let options = crate::demo::DemoOptions {
                peers: args.peers,
                substreams: args.substreams,
                block_set: args.block_set,
                input: args.input.unwrap_or_else(crate::demo::bundled_clip),
                encode: args.encode,
                churn: args.churn,
                late_peers: args.late_peers,
                late_players: args.late_players,
                speed: args.speed,
                block_ms: args.block_ms,
                urgent_blocks: args.urgent_blocks,
                playout_delay_blocks: args
                    .playout_delay_blocks
                    .unwrap_or(crate::sched::SchedConfig::default().playout_delay_blocks),
                cdn_prefetchers: args.cdn_prefetchers,
                window_ms: args.window_ms,
                max_rss_mib: args.max_rss_mb,
                progress: svckit::cli::progress_wanted(args.json),
            };
            let (report, extras) = crate::demo::run(&options).await?;
            stderr_text(&crate::demo::table(&report, &extras));
            Ok(svckit::cli::finish_demo(
                &report,
                &report.failures(),
                args.json,
            )?)
        }
        Command::Bench(args) => {
            let path = args.input.unwrap_or_else(crate::demo::bundled_clip);
            let ts = crate::origin::load_ts(&path).await?;
            // The peers read a TS file: write the (possibly remuxed) stream to one.
            let dir = tempfile::tempdir()?;
            let ts_path = dir.path().join("bench.ts");
            fs_err::write(&ts_path, &ts)?;
            let rows =
                tokio::task::spawn_blocking(move || crate::bench::run(&ts, &ts_path, args.rounds))
                    .await??;
            svckit::cli::print_report(&rows, args.json, || crate::bench::table(&rows))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(args) => {
            let mut base = crate::sim::SimConfig {
                seconds: args.seconds,
                seed: args.seed,
                upload_mean_x: args.upload_x,
                bitrate_bps: args.bitrate,
                leave_share: args.leave_share,
                replace_per_min: args.replace_per_min,
                upload_limit_x: args.upload_limit_x,
                tracker: config.tracker.clone(),
                ..crate::sim::SimConfig::default()
            };
            if let Some(k) = args.prefetchers {
                base.tracker.cdn_prefetchers_per_substream = k;
            }
            if let Some(n) = args.prefetch_per_holders {
                base.tracker.cdn_prefetch_per_holders = n;
            }
            let policies = if args.policies.is_empty() {
                crate::sim::Policy::ALL.to_vec()
            } else {
                args.policies.clone()
            };
            if let Some(delay) = args.playout_delay_blocks {
                base.sched.playout_delay_blocks = delay;
            }
            let peers = args.peers;
            let reports =
                tokio::task::spawn_blocking(move || crate::sim::compare(&base, &peers, &policies))
                    .await??;
            svckit::cli::print_report(&reports, args.json, || crate::sim::table(&reports))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
