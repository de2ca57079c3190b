//! `streamgate bench`: what the two extra hops cost, measured in one run against a direct
//! pull from the media server (the peer), every part its own process on 127.0.0.1.
//!
//! * Time to first frame of a cached stream: a stream is kept playing by one viewer, then
//!   `opens` new viewers connect one after another, alternately through the public port
//!   (proxy + forwarder) and directly to the media server; each is timed from sending the
//!   request to receiving the whole first key frame (which the GOP cache sends at once).
//! * Added latency per frame: one viewer through the proxy and one direct, watching the same
//!   stream at the same time for `seconds`; for every live video frame (matched by FLV
//!   timestamp) the difference of the two arrival instants on the monotonic clock.
//! * With `--viewers N,...`, the load comparison against nginx of [`load`].

pub mod load;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::camera::Camera;
use crate::cluster::{Launcher, free_port, loopback, wait_for_routes};
use crate::viewer::{Viewer, client};

/// The public path the benches watch (signed for each run).
const PUBLIC_PATH: &str = "/realtime-ServiceA-NameSpaceA/sub_stream/0.flv";

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The camera's clip.
    pub input: PathBuf,
    /// New viewers per path for the time to first frame.
    pub opens: usize,
    /// Seconds of frames for the latency comparison.
    pub seconds: u64,
}

/// One table row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// Through which path.
    pub path: String,
    /// Samples.
    pub n: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
}

/// The `q` quantile (0..=1) of sorted `values` (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(metric: &str, path: &str, mut values: Vec<f64>) -> Row {
    values.sort_by(f64::total_cmp);
    Row {
        metric: metric.to_owned(),
        path: path.to_owned(),
        n: values.len(),
        p50_ms: quantile(&values, 0.5),
        p99_ms: quantile(&values, 0.99),
        max_ms: values.last().copied().unwrap_or(f64::NAN),
    }
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<34} {:<30} {:>5} {:>9} {:>9} {:>9}\n",
        "metric", "path", "n", "p50 ms", "p99 ms", "max ms"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<34} {:<30} {:>5} {:>9.3} {:>9.3} {:>9.3}\n",
            r.metric, r.path, r.n, r.p50_ms, r.p99_ms, r.max_ms
        ));
    }
    out
}

async fn time_to_first_frame(url: &str) -> anyhow::Result<Duration> {
    let client = client(Duration::from_secs(20));
    let mut viewer = Viewer::open(&client, url).await?;
    if !viewer.status().is_success() {
        bail!("{url} answered {}", viewer.status());
    }
    let (_, _, at) = viewer
        .until_key_frame(Duration::from_secs(15))
        .await?
        .with_context(|| format!("{url}: no key frame"))?;
    Ok(at - viewer.requested())
}

/// Arrival instants of live video frames by FLV timestamp, read for `window` after `skip`
/// (the GOP-cache burst is left out: only frames arriving after it count).
async fn arrivals(
    url: String,
    skip: Duration,
    window: Duration,
) -> anyhow::Result<HashMap<u32, Instant>> {
    let client = client(Duration::from_secs(20));
    let mut viewer = Viewer::open(&client, &url).await?;
    if !viewer.status().is_success() {
        bail!("{url} answered {}", viewer.status());
    }
    let live_from = tokio::time::Instant::now() + skip;
    let until = live_from + window;
    let mut seen = HashMap::new();
    while let Ok(next) = tokio::time::timeout_at(until, viewer.next_tag()).await {
        let Some((tag, at)) = next? else { break };
        if tag.is_video_frame() && tokio::time::Instant::now() >= live_from {
            seen.insert(tag.timestamp_ms, at);
        }
    }
    Ok(seen)
}

/// The parts both benches run: the camera, the registry, media server `media-a` (stream
/// `sub_stream`), forwarder `ServiceA` and the proxy, each its own process; stopped on drop.
struct Chain {
    // Dropped in this order: the parts, then the camera, then the logs directory.
    proxy: crate::cluster::Part,
    forwarder: crate::cluster::Part,
    media: crate::cluster::Part,
    _registry: crate::cluster::Part,
    _camera: Camera,
    launcher: Launcher,
    logs: tempfile::TempDir,
}

impl Chain {
    /// Starts every part (the media server with `media_extra` arguments) and waits for the
    /// route.
    async fn start(
        input: &std::path::Path,
        prefix: &str,
        media_extra: &[&str],
    ) -> anyhow::Result<Self> {
        let logs = tempfile::Builder::new().prefix(prefix).tempdir()?;
        let exe = std::env::current_exe().context("locating the streamgate binary")?;
        let camera_port = free_port()?;
        let input = input.to_owned();
        let camera = tokio::task::spawn_blocking(move || {
            Camera::start(camera_port, &input, Duration::from_secs(30))
        })
        .await??;
        let registry_port = free_port()?;
        let public_port = free_port()?;
        let mut launcher = Launcher::new(
            exe,
            logs.path(),
            format!("http://{}", loopback(registry_port)),
        );
        let (registry, media, forwarder, proxy) = tokio::task::block_in_place(|| {
            let registry = launcher.registry(registry_port)?;
            let media = launcher.media(
                "media-a",
                "NameSpaceA",
                free_port()?,
                &[("sub_stream", camera.url("/sub_stream"))],
                media_extra,
            )?;
            let forwarder = launcher.forwarder("ServiceA", "NameSpaceA", "media-a")?;
            let proxy = launcher.proxy(public_port)?;
            anyhow::Ok((registry, media, forwarder, proxy))
        })?;
        wait_for_routes(&launcher.registry_client(), 1, 1, Duration::from_secs(10)).await?;
        Ok(Self {
            logs,
            launcher,
            media,
            forwarder,
            proxy,
            _registry: registry,
            _camera: camera,
        })
    }
}

/// Runs the bench and returns its rows.
///
/// # Errors
/// When a part cannot be started or a stream does not play.
pub async fn run(options: &BenchOptions) -> anyhow::Result<Vec<Row>> {
    let chain = Chain::start(&options.input, "streamgate-bench-", &[]).await?;
    let Chain {
        launcher,
        media,
        proxy,
        ..
    } = &chain;
    let via_proxy = format!(
        "http://{}{}",
        proxy.addr(),
        launcher
            .secrets()
            .sign(PUBLIC_PATH, Duration::from_secs(3600))
    );
    let direct = format!("http://{}/sub_stream/0.flv", media.addr());

    // Keep the stream pulled and its GOP cached for the whole run.
    let keeper = {
        let url = direct.clone();
        tokio::spawn(async move {
            let client = client(Duration::from_secs(20));
            if let Ok(mut viewer) = Viewer::open(&client, &url).await {
                while let Ok(Some(_)) = viewer.next_tag().await {}
            }
        })
    };
    time_to_first_frame(&direct).await?;

    let mut ttff_proxy = Vec::new();
    let mut ttff_direct = Vec::new();
    for _ in 0..options.opens {
        ttff_proxy.push(time_to_first_frame(&via_proxy).await?.as_secs_f64() * 1000.0);
        ttff_direct.push(time_to_first_frame(&direct).await?.as_secs_f64() * 1000.0);
    }

    let skip = Duration::from_millis(1500);
    let window = Duration::from_secs(options.seconds.max(1));
    let (a, b) = tokio::join!(
        arrivals(via_proxy.clone(), skip, window),
        arrivals(direct.clone(), skip, window)
    );
    let (through, straight) = (a?, b?);
    let skews: Vec<f64> = through
        .iter()
        .filter_map(|(ts, at)| {
            let other = straight.get(ts)?;
            Some(if at >= other {
                (*at - *other).as_secs_f64() * 1000.0
            } else {
                -((*other - *at).as_secs_f64() * 1000.0)
            })
        })
        .collect();
    if skews.is_empty() {
        bail!("no frame was seen on both paths");
    }
    keeper.abort();
    drop(chain);
    Ok(vec![
        row(
            "time to first frame (GOP cached)",
            "proxy + forwarder",
            ttff_proxy,
        ),
        row(
            "time to first frame (GOP cached)",
            "direct (media server)",
            ttff_direct,
        ),
        row(
            "added latency per frame",
            "proxy + forwarder vs direct",
            skews,
        ),
    ])
}

/// Runs the load comparison: for each count in `viewers`, the chain and then nginx (in front
/// of the same media server), `seconds` of load each.
///
/// # Errors
/// When a part or nginx cannot be started or the stream does not play.
pub async fn run_load(
    input: &std::path::Path,
    viewers: &[usize],
    seconds: u64,
) -> anyhow::Result<Vec<load::LoadRow>> {
    // nginx opens one upstream connection per viewer, all from 127.0.0.1: the media
    // server's per-address cap (256) would refuse them, so it is lifted for this run.
    let chain = Chain::start(
        input,
        "streamgate-load-",
        &["--set", "media.connections.max_connections_per_addr=50000"],
    )
    .await?;
    let Chain {
        logs,
        launcher,
        media,
        forwarder,
        proxy,
        ..
    } = &chain;
    let nginx = load::Nginx::start(logs.path(), media.addr())?;
    let direct = format!("http://{}/sub_stream/0.flv", media.addr());
    // Keep the stream pulled for the whole run, so every row starts from a playing stream.
    let keeper = {
        let url = direct.clone();
        tokio::spawn(async move {
            let client = client(Duration::from_secs(20));
            if let Ok(mut viewer) = Viewer::open(&client, &url).await {
                while let Ok(Some(_)) = viewer.next_tag().await {}
            }
        })
    };
    time_to_first_frame(&direct).await?;
    let chain = load::LoadPath {
        name: "streamgate",
        url: format!(
            "http://{}{}",
            proxy.addr(),
            launcher
                .secrets()
                .sign(PUBLIC_PATH, Duration::from_secs(24 * 3600))
        ),
        groups: vec![media.child.pid(), forwarder.child.pid(), proxy.child.pid()],
    };
    let front = load::LoadPath {
        name: "nginx",
        url: format!("http://{}/sub_stream/0.flv", loopback(nginx.port)),
        groups: vec![media.child.pid(), nginx.pid()],
    };
    let window = Duration::from_secs(seconds.max(2));
    let mut rows = Vec::new();
    for &n in viewers {
        for path in [&chain, &front] {
            rows.push(load::measure(path, &direct, n, window).await?);
            // Let the viewers' connections close before the next row.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    keeper.abort();
    drop(nginx);
    drop(chain);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((quantile(&values, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((quantile(&values, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((quantile(&[3.0], 0.99) - 3.0).abs() < f64::EPSILON);
        assert!(quantile(&[], 0.5).is_nan());
        let r = row("m", "p", vec![5.0, 1.0, 3.0]);
        assert_eq!(r.n, 3);
        assert!((r.p50_ms - 3.0).abs() < f64::EPSILON);
        assert!((r.max_ms - 5.0).abs() < f64::EPSILON);
    }
}
