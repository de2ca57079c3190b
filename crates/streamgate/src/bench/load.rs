//! `streamgate bench --viewers N,...`: N concurrent viewers of one camera stream through the
//! whole chain (proxy -> forwarder -> media server) beside nginx (`proxy_buffering off`, one
//! worker) in front of the same media server, measured in the same run (issue 12 item 10).
//!
//! For each N and each path: the viewers join within about a second (spread over 200 source
//! addresses on 127.0.1.x, so the per-address cap is not what is measured), watch for the
//! load window, and each checks every video frame (gaps, DTS order). Reported per row: the
//! answers that were not 200, time to first key frame p50/p99, frames received against a
//! direct reference viewer's count over the same window, viewers more than 2 s behind that
//! viewer at the end, and the CPU (% of one core) and RSS of each path's processes over the
//! window, read from `/proc` ([`svckit::procstat`]). The media server is shared by both paths
//! and counted in both.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use svckit::procstat::{GroupUsage, group_usage};
use tokio::task::JoinSet;

use crate::viewer::{Watched, client_from, watch_stream};

/// One path at one viewer count.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    /// `streamgate` (proxy + forwarder + media) or `nginx` (nginx + media).
    pub path: String,
    /// Concurrent viewers.
    pub viewers: usize,
    /// Answers other than 200.
    pub non_200: usize,
    /// Request to first key frame, median, ms.
    pub first_frame_p50_ms: f64,
    /// Request to first key frame, 99th percentile, ms.
    pub first_frame_p99_ms: f64,
    /// Video frames received in the window over what the reference viewer received times
    /// the viewers (1.0 = nothing lost).
    pub frames_ratio: f64,
    /// Viewers whose last frame was more than 2 s behind the reference viewer's.
    pub behind_2s: usize,
    /// CPU of the path's processes over the window, % of one core.
    pub cpu_percent: f64,
    /// The same per 1,000 viewers.
    pub cpu_percent_per_1000: f64,
    /// RSS of the path's processes other than the media server at the end, MB (proxy +
    /// forwarder, or nginx).
    pub front_rss_mb: f64,
    /// RSS of the media server at the end, MB.
    pub media_rss_mb: f64,
}

/// One path under test: its URL and the process groups that serve it (the first is the
/// media server).
#[derive(Debug)]
pub struct LoadPath<'a> {
    /// Row label.
    pub name: &'a str,
    /// The stream's URL on this path.
    pub url: String,
    /// Process groups (leaders' pids): media server first, then the front.
    pub groups: Vec<u32>,
}

/// A running nginx in front of `upstream`, stopped on drop.
#[derive(Debug)]
pub struct Nginx {
    child: svckit::process::ChildGuard,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Nginx {
    /// Starts nginx (`/usr/sbin/nginx` or on PATH; Debian package `nginx`) on a free port
    /// with `proxy_buffering off` to `upstream`, one worker, logs and temp files in `dir`.
    ///
    /// # Errors
    /// When nginx is missing or does not listen within 10 s.
    pub fn start(dir: &Path, upstream: std::net::SocketAddr) -> anyhow::Result<Self> {
        let program = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| svckit::process::find_program(p).is_some())
            .context("nginx is not installed (Debian package nginx; scripts/setup)")?;
        let port = crate::cluster::free_port()?;
        let prefix = dir.join("nginx");
        fs_err::create_dir_all(prefix.join("logs"))?;
        let conf = prefix.join("nginx.conf");
        fs_err::write(
            &conf,
            format!(
                "worker_processes 1;\ndaemon off;\nerror_log {log} warn;\npid {pid};\n\
                 worker_rlimit_nofile 65536;\nevents {{ worker_connections 20000; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  \
                 proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n  \
                 uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  \
                 server {{\n    listen 127.0.0.1:{port} backlog=4096;\n    location / {{\n      \
                 proxy_pass http://{upstream};\n      proxy_http_version 1.1;\n      \
                 proxy_buffering off;\n      proxy_read_timeout 60s;\n    }}\n  }}\n}}\n",
                log = prefix.join("logs/error.log").display(),
                pid = prefix.join("nginx.pid").display(),
                tmp = prefix.display(),
            ),
        )?;
        let mut child = svckit::process::ProcessSpec::new(program)
            .args(["-p".to_owned(), prefix.display().to_string()])
            .args(["-c".to_owned(), conf.display().to_string()])
            .log_file(prefix.join("logs/stderr.log"))
            .spawn()?;
        let ready = svckit::process::Readiness::Tcp(crate::cluster::loopback(port));
        child.wait_ready(&ready, Duration::from_secs(10))?;
        Ok(Self { child, port })
    }

    /// The master's pid (also the process group of its worker).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// The newest DTS of a direct reference viewer and its frame count over the same window.
struct Reference {
    frames: usize,
    last_dts_ms: u32,
}

/// Runs `viewers` concurrent viewers on `path` for `window` (after a join phase), with a
/// direct reference viewer of `reference_url` over the same window.
///
/// # Errors
/// When the reference viewer receives nothing.
pub async fn measure(
    path: &LoadPath<'_>,
    reference_url: &str,
    viewers: usize,
    window: Duration,
) -> anyhow::Result<LoadRow> {
    let join_phase = Duration::from_millis(1500);
    let start = tokio::time::Instant::now();
    let until = start + join_phase + window;
    let (mark_tx, mark) = tokio::sync::watch::channel(false);
    let mut tasks = JoinSet::new();
    for n in 0..viewers {
        let url = path.url.clone();
        let mark = mark.clone();
        let from = std::net::IpAddr::from([127, 0, 1, 1 + u8::try_from(n % 200).unwrap_or(0)]);
        // Spread the joins over about a second.
        let delay = Duration::from_micros(1_000_000 * n as u64 / viewers.max(1) as u64);
        tasks.spawn(async move {
            tokio::time::sleep(delay).await;
            let client = client_from(from, Duration::from_secs(20));
            watch_stream(&client, &url, until, &mark).await.ok()
        });
    }
    let reference = {
        let url = reference_url.to_owned();
        let mark = mark.clone();
        tokio::spawn(async move {
            let client = crate::viewer::client(Duration::from_secs(20));
            watch_stream(&client, &url, until, &mark).await.ok()
        })
    };
    tokio::time::sleep_until(start + join_phase).await;
    let before: Vec<GroupUsage> = path.groups.iter().map(|g| group_usage(*g)).collect();
    let _ = mark_tx.send(true);
    tokio::time::sleep_until(until).await;
    let after: Vec<GroupUsage> = path.groups.iter().map(|g| group_usage(*g)).collect();
    let mut seen: Vec<Option<Watched>> = Vec::with_capacity(viewers);
    while let Some(done) = tasks.join_next().await {
        seen.push(done.ok().flatten());
    }
    let reference = reference
        .await
        .ok()
        .flatten()
        .and_then(|w| {
            Some(Reference {
                frames: w.frames_after_mark,
                last_dts_ms: w.last_dts_ms?,
            })
        })
        .context("the reference viewer received no frame")?;
    if reference.frames == 0 {
        bail!("the reference viewer received no frame in the window");
    }
    let cpu: f64 = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.cpu_seconds - b.cpu_seconds).max(0.0))
        .sum::<f64>()
        / window.as_secs_f64()
        * 100.0;
    let rss_mb = |usage: &[GroupUsage]| usage.iter().map(|u| u.rss_bytes as f64).sum::<f64>() / 1e6;
    let mut first_frames: Vec<f64> = Vec::new();
    let (mut non_200, mut frames, mut behind) = (0usize, 0usize, 0usize);
    for watched in &seen {
        let Some(w) = watched else {
            non_200 += 1;
            continue;
        };
        if w.status != 200 {
            non_200 += 1;
            continue;
        }
        if let Some(first) = w.first_frame {
            first_frames.push(first.as_secs_f64() * 1000.0);
        }
        frames += w.frames_after_mark;
        let last = w.last_dts_ms.unwrap_or(0);
        if reference.last_dts_ms.saturating_sub(last) > 2000 {
            behind += 1;
        }
    }
    first_frames.sort_by(f64::total_cmp);
    let expected = (reference.frames * viewers) as f64;
    Ok(LoadRow {
        path: path.name.to_owned(),
        viewers,
        non_200,
        first_frame_p50_ms: super::quantile(&first_frames, 0.5),
        first_frame_p99_ms: super::quantile(&first_frames, 0.99),
        frames_ratio: frames as f64 / expected,
        behind_2s: behind,
        cpu_percent: cpu,
        cpu_percent_per_1000: cpu * 1000.0 / viewers.max(1) as f64,
        front_rss_mb: rss_mb(&after[1..]),
        media_rss_mb: rss_mb(&after[..1]),
    })
}

/// The rows as an aligned text table.
pub fn table(rows: &[LoadRow]) -> String {
    let mut out = format!(
        "{:<12} {:>7} {:>7} {:>9} {:>9} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}\n",
        "path",
        "viewers",
        "non200",
        "1st p50",
        "1st p99",
        "frames",
        "behind",
        "cpu %",
        "cpu/1000",
        "front MB",
        "media MB"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<12} {:>7} {:>7} {:>9.1} {:>9.1} {:>7.3} {:>7} {:>7.1} {:>9.1} {:>9.1} {:>9.1}\n",
            r.path,
            r.viewers,
            r.non_200,
            r.first_frame_p50_ms,
            r.first_frame_p99_ms,
            r.frames_ratio,
            r.behind_2s,
            r.cpu_percent,
            r.cpu_percent_per_1000,
            r.front_rss_mb,
            r.media_rss_mb
        ));
    }
    out
}
