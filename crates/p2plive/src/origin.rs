//! The origin: ingests a live MPEG-TS stream, cuts it into blocks (seed 10, 49) and publishes
//! each block with its number, size, duration and SHA-256 to the CDN edge.
//!
//! Inputs ([`Input`]): a file replayed at its real-time rate from its PCR/PTS timing (times
//! `speed`; streamed from disk, never held whole in memory), standard input, UDP datagrams (`udp://127.0.0.1:PORT`, e.g. from
//! `ffmpeg -re ... -f mpegts udp://127.0.0.1:PORT`), or an HTTP push
//! (`http://127.0.0.1:PORT/ingest`, e.g. `ffmpeg -re ... -f mpegts -method PUT URL`). An MP4
//! file is first remuxed losslessly to TS with
//! `ffmpeg -c copy -bsf:v h264_mp4toannexb -f mpegts`; anything that is neither TS nor MP4 is
//! refused with [`Error::NotVideo`].
//!
//! The HTTP push requires `Authorization: Bearer INGEST_TOKEN` (`origin.ingest_token`; with
//! ffmpeg: `-headers "Authorization: Bearer TOKEN"`). Blocks are published with the CDN's
//! publish token (`origin.publish_token`). While the CDN is down or answers 5xx, the origin
//! keeps cutting into a bounded queue (`publish_buffer_blocks`; when it is full the input is
//! not read, so a live source is throttled by its socket) and retries each `PUT` with
//! exponential back-off (100 ms doubling to 5 s), giving up only after
//! `cdn_retry_give_up_ms` without success.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use svckit::redact::Secret;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::block::{BlockInfo, CutBlock, Cutter};
use crate::cdn::EndOfStream;
use crate::error::Error;
use crate::peer::{http_client, send};
use crate::ts::{Container, PacketReader, sniff};

/// Where the origin reads the live stream from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A TS or MP4 file, replayed at its real-time rate.
    File(PathBuf),
    /// MPEG-TS on standard input (`-`), taken as it comes.
    Stdin,
    /// MPEG-TS in UDP datagrams received on this address (`udp://ADDR`).
    Udp(SocketAddr),
    /// MPEG-TS pushed by HTTP `PUT`/`POST` to `http://ADDR/ingest`, on which the origin listens.
    HttpPush(SocketAddr),
    /// MPEG-TS already in memory (from [`load_ts`]), replayed like a file.
    Ts(Bytes),
}

impl FromStr for Input {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let addr = |rest: &str| {
            let host = rest.split('/').next().unwrap_or(rest);
            host.parse::<SocketAddr>()
                .map_err(|_| Error::Config(format!("`{s}`: expected a 127.0.0.1:PORT address")))
        };
        if s == "-" {
            Ok(Self::Stdin)
        } else if let Some(rest) = s.strip_prefix("udp://") {
            Ok(Self::Udp(addr(rest)?))
        } else if let Some(rest) = s.strip_prefix("http://") {
            Ok(Self::HttpPush(addr(rest)?))
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Stdin => f.write_str("-"),
            Self::Udp(a) => write!(f, "udp://{a}"),
            Self::HttpPush(a) => write!(f, "http://{a}/ingest"),
            Self::Ts(data) => write!(f, "<{} bytes of MPEG-TS>", data.len()),
        }
    }
}

/// Origin settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginConfig {
    /// Stream id (default `live`).
    pub stream: String,
    /// CDN base URL to publish to.
    pub cdn: String,
    /// Target block duration in ms of media time (default 1000).
    pub block_ms: u64,
    /// Replay speed for file input: 1.0 is real time, 4.0 four times faster (default 1.0).
    pub speed: f64,
    /// End a UDP input after this long without datagrams, in ms (default 3000).
    pub udp_idle_ms: u64,
    /// The CDN's publish token (its `cdn.publish_token`; env `P2PLIVE_ORIGIN__PUBLISH_TOKEN`).
    pub publish_token: Secret,
    /// The token an HTTP push must present (env `P2PLIVE_ORIGIN__INGEST_TOKEN`); required
    /// for `http://ADDR/ingest` input only.
    pub ingest_token: Secret,
    /// Most blocks cut but not yet published (default 64); when full, input is not read.
    pub publish_buffer_blocks: usize,
    /// Give up when one block could not be published for this long, in ms (default 60000).
    pub cdn_retry_give_up_ms: u64,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            stream: "live".to_owned(),
            cdn: "http://127.0.0.1:7000".to_owned(),
            block_ms: 1000,
            speed: 1.0,
            udp_idle_ms: 3000,
            publish_token: Secret::default(),
            ingest_token: Secret::default(),
            publish_buffer_blocks: 64,
            cdn_retry_give_up_ms: 60_000,
        }
    }
}

/// What the origin cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginReport {
    /// Blocks cut.
    pub blocks: u64,
    /// Bytes cut (the stream).
    pub source_bytes: u64,
    /// SHA-256 (hex) over the bytes cut: what every peer must reproduce.
    pub source_sha256: String,
    /// Media duration in seconds.
    pub media_seconds: f64,
    /// Wall time from the first block to the end, in ms.
    pub wall_ms: u64,
}

/// Bytes to look at when sniffing a file.
const SNIFF_BYTES: usize = 4096;
/// Live input that yields no TS packet within this many bytes is refused.
const SYNC_SEARCH_BYTES: usize = 64 * 1024;

/// Reads a TS file, or remuxes an MP4 file to TS with ffmpeg (`-c copy`, lossless).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::NotVideo`] when it is neither TS nor
/// MP4, [`Error::FfmpegMissing`]/[`Error::Remux`] when the remux fails.
pub async fn load_ts(path: &Path) -> Result<Bytes, Error> {
    let mut ts = open_ts(path).await?;
    let mut data = std::mem::take(&mut ts.head);
    ts.file
        .read_to_end(&mut data)
        .await
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(Bytes::from(data))
}

/// A TS file opened for streaming: the bytes already read to sniff it, the rest of the file,
/// and the directory of a remuxed copy (deleted when this is dropped).
#[derive(Debug)]
struct OpenTs {
    head: Vec<u8>,
    file: fs_err::tokio::File,
    _remuxed: Option<tempfile::TempDir>,
}

/// Opens a TS file (or remuxes an MP4 file to a temporary TS file and opens that), reading
/// only the first bytes to recognise it, so the file is then streamed, not held in memory.
async fn open_ts(path: &Path) -> Result<OpenTs, Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = fs_err::tokio::File::open(path).await.map_err(io)?;
    let mut head = vec![0u8; SNIFF_BYTES];
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read(&mut head[filled..]).await.map_err(io)?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    match sniff(&head) {
        Container::MpegTs => Ok(OpenTs {
            head,
            file,
            _remuxed: None,
        }),
        Container::Mp4 => {
            drop(file);
            let (dir, out) = crate::ffmpeg::remux_mp4(path).await?;
            let file = fs_err::tokio::File::open(&out)
                .await
                .map_err(|source| Error::Io { path: out, source })?;
            Ok(OpenTs {
                head: Vec::new(),
                file,
                _remuxed: Some(dir),
            })
        }
        Container::Unknown => Err(Error::NotVideo {
            path: path.display().to_string(),
            head: describe_head(&head),
        }),
    }
}

fn describe_head(head: &[u8]) -> String {
    if head.is_empty() {
        return "nothing (empty input)".to_owned();
    }
    let shown: String = head
        .iter()
        .take(16)
        .flat_map(|b| std::ascii::escape_default(*b))
        .map(char::from)
        .collect();
    format!("\"{shown}\"")
}

/// First wait before retrying a failed publish.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Timeout of one publish request.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes blocks to the CDN over HTTP.
#[derive(Debug, Clone)]
pub struct Publisher {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

/// Whether a failed publish is worth retrying: the CDN was unreachable, timed out or answered
/// 408, 429 or 5xx. Other refusals (401/403 a wrong token, 409 a conflict) are final.
pub fn retryable(error: &Error) -> bool {
    match error {
        Error::Http { .. } => true,
        Error::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
        _ => false,
    }
}

/// Runs `attempt` until it succeeds, retrying [`retryable`] errors with exponential back-off
/// for up to `give_up`.
///
/// # Errors
/// The first error that is not retryable, or the last one once `give_up` has passed.
pub async fn with_retry<F, Fut>(what: &str, give_up: Duration, mut attempt: F) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let started = Instant::now();
    let mut delay = BACKOFF_MIN;
    let mut failures = 0u64;
    loop {
        match attempt().await {
            Ok(()) => {
                if failures > 0 {
                    info!(what, failures, "published after retrying");
                }
                return Ok(());
            }
            Err(error) if retryable(&error) && started.elapsed() < give_up => {
                failures += 1;
                if failures == 1 {
                    warn!(what, %error, "publishing to the CDN failed; buffering and retrying");
                } else {
                    debug!(what, %error, failures, "publishing to the CDN failed again");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(BACKOFF_MAX);
            }
            Err(error) => return Err(error),
        }
    }
}

impl Publisher {
    /// A publisher to `cdn` (base URL) for stream `stream`, authenticating with `token`.
    ///
    /// # Errors
    /// [`Error::Http`] when the HTTP client cannot be built.
    pub fn new(cdn: &str, stream: &str, token: Secret) -> Result<Self, Error> {
        Ok(Self {
            http: http_client()?,
            base: format!("{cdn}/streams/{stream}"),
            token,
        })
    }

    /// `PUT`s one block.
    ///
    /// # Errors
    /// [`Error::Http`]/[`Error::Status`] when the CDN is unreachable or refuses.
    pub async fn block(&self, cut: &CutBlock) -> Result<(), Error> {
        let info = &cut.block.info;
        let url = format!("{}/blocks/{}", self.base, info.number);
        let request = self
            .http
            .put(&url)
            .timeout(PUBLISH_TIMEOUT)
            .bearer_auth(self.token.expose())
            .header("x-duration-ms", info.duration_ms.to_string())
            .header("x-sha256", hex::encode(info.sha256))
            .body(cut.block.data.clone());
        send(&url, request).await.map(|_| ())
    }

    /// Ends the stream.
    ///
    /// # Errors
    /// [`Error::Http`]/[`Error::Status`] when the CDN is unreachable or refuses.
    pub async fn end(&self, end: &EndOfStream) -> Result<(), Error> {
        let url = format!("{}/end", self.base);
        let request = self
            .http
            .post(&url)
            .timeout(PUBLISH_TIMEOUT)
            .bearer_auth(self.token.expose())
            .json(end);
        send(&url, request).await.map(|_| ())
    }
}

/// Sends the first `n` bytes of `buf` for a successful read of `n` bytes, or the read error
/// (described by `what`); returns whether the reader should go on (the read succeeded and the
/// receiver is still there).
async fn forward(
    tx: &mpsc::Sender<Result<Bytes, Error>>,
    read: std::io::Result<usize>,
    buf: &[u8],
    what: &str,
) -> bool {
    match read {
        Ok(n) => tx.send(Ok(Bytes::copy_from_slice(&buf[..n]))).await.is_ok(),
        Err(source) => {
            let _ = tx
                .send(Err(Error::Net {
                    what: what.to_owned(),
                    source,
                }))
                .await;
            false
        }
    }
}

/// Spawns the task that reads `input` and sends its raw bytes in chunks; the channel closing or
/// an empty chunk ends the input. Returns whether the input is paced by the origin (a file) or
/// arrives live.
async fn open(
    input: &Input,
    config: &OriginConfig,
) -> Result<(mpsc::Receiver<Result<Bytes, Error>>, bool), Error> {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Error>>(64);
    match input {
        Input::File(path) => {
            // Streamed from disk in 64 KiB reads: the origin never holds the whole file.
            let mut ts = open_ts(path).await?;
            let what = format!("reading {}", path.display());
            tokio::spawn(async move {
                if !ts.head.is_empty() && tx.send(Ok(Bytes::from(ts.head.clone()))).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let read = ts.file.read(&mut buf).await;
                    if matches!(read, Ok(0)) || !forward(&tx, read, &buf, &what).await {
                        return;
                    }
                }
            });
            Ok((rx, true))
        }
        Input::Ts(data) => {
            let data = data.clone();
            tokio::spawn(async move {
                let mut at = 0;
                while at < data.len() {
                    let end = (at + 64 * 1024).min(data.len());
                    if tx.send(Ok(data.slice(at..end))).await.is_err() {
                        return;
                    }
                    at = end;
                }
            });
            Ok((rx, true))
        }
        Input::Stdin => {
            tokio::spawn(async move {
                let mut stdin = tokio::io::stdin();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let read = stdin.read(&mut buf).await;
                    if matches!(read, Ok(0))
                        || !forward(&tx, read, &buf, "reading standard input").await
                    {
                        return;
                    }
                }
            });
            Ok((rx, false))
        }
        Input::Udp(addr) => {
            let socket = tokio::net::UdpSocket::bind(addr)
                .await
                .map_err(|source| Error::Net {
                    what: format!("binding UDP {addr}"),
                    source,
                })?;
            info!(%addr, "waiting for MPEG-TS over UDP");
            let idle = Duration::from_millis(config.udp_idle_ms);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                let mut started = false;
                loop {
                    // Before the first datagram wait without limit; after it, end when idle.
                    let received = if started {
                        match tokio::time::timeout(idle, socket.recv(&mut buf)).await {
                            Ok(r) => r,
                            Err(_) => return,
                        }
                    } else {
                        socket.recv(&mut buf).await
                    };
                    started = true;
                    if !forward(&tx, received, &buf, "receiving UDP").await {
                        return;
                    }
                }
            });
            Ok((rx, false))
        }
        Input::HttpPush(addr) => {
            crate::auth::require_token(
                &config.ingest_token,
                "origin.ingest_token (env P2PLIVE_ORIGIN__INGEST_TOKEN)",
            )?;
            let token = config.ingest_token.clone();
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Net {
                    what: format!("binding HTTP ingest {addr}"),
                    source,
                })?;
            info!(%addr, "waiting for MPEG-TS pushed to http://{addr}/ingest");
            let done = tokio_util::sync::CancellationToken::new();
            let stop = done.clone();
            let handler = move |headers: axum::http::HeaderMap, body: axum::body::Body| {
                use axum::response::IntoResponse;
                let tx = tx.clone();
                let done = done.clone();
                let authorized = crate::auth::check_bearer(&headers, &token);
                if let Err(error) = &authorized {
                    warn!(status = %error.0, "refused an ingest push without the right token");
                }
                // Read the body in its own task: hyper drops the handler when the pushing
                // client half-closes its socket after the last chunk (as ffmpeg does), and
                // the end of input must still be signalled.
                let reader = authorized.is_ok().then(|| {
                    tokio::spawn(async move {
                        let mut stream = body.into_data_stream();
                        while let Some(chunk) = stream.next().await {
                            match chunk {
                                Ok(chunk) if chunk.is_empty() => {}
                                Ok(chunk) => {
                                    if tx.send(Ok(chunk)).await.is_err() {
                                        break;
                                    }
                                }
                                Err(error) => {
                                    debug!(%error, "ingest body ended with an error");
                                    break;
                                }
                            }
                        }
                        // An empty chunk marks the end of the input.
                        let _ = tx.send(Ok(Bytes::new())).await;
                        done.cancel();
                    })
                });
                async move {
                    if let Err(error) = authorized {
                        return error.into_response();
                    }
                    if let Some(reader) = reader {
                        let _ = reader.await;
                    }
                    axum::http::StatusCode::NO_CONTENT.into_response()
                }
            };
            let app = axum::Router::new().route("/ingest", axum::routing::any(handler));
            tokio::spawn(async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            });
            Ok((rx, false))
        }
    }
}

/// Runs the origin: reads `input`, cuts blocks of `config.block_ms`, publishes them to the CDN
/// (paced at `config.speed` for file input), then ends the stream. `on_block` sees every block
/// as it is published. Publishing runs beside the cutting, through a queue of at most
/// `publish_buffer_blocks` blocks, and retries while the CDN is down (module docs).
///
/// # Errors
/// The errors of [`load_ts`] for file input; [`Error::NotVideo`] when a live input carries no
/// TS packets; [`Error::Empty`] when no packet was cut; [`Error::Config`] for a missing
/// token or bad settings; [`Error::Http`]/[`Error::Status`] when publishing is refused
/// (401/403/409) or the CDN stayed unreachable for `cdn_retry_give_up_ms`; [`Error::Net`]
/// for socket errors.
pub async fn run(
    input: &Input,
    config: &OriginConfig,
    mut on_block: impl FnMut(&BlockInfo),
) -> Result<OriginReport, Error> {
    if config.speed.is_nan() || config.speed <= 0.0 || config.block_ms == 0 {
        return Err(Error::Config(format!(
            "speed ({}) and block_ms ({}) must be positive",
            config.speed, config.block_ms
        )));
    }
    crate::auth::require_token(
        &config.publish_token,
        "origin.publish_token (env P2PLIVE_ORIGIN__PUBLISH_TOKEN)",
    )?;
    let publisher = Publisher::new(&config.cdn, &config.stream, config.publish_token.clone())?;
    let give_up = Duration::from_millis(config.cdn_retry_give_up_ms);
    let (mut chunks, paced) = open(input, config).await?;
    let (queue, mut queued) = mpsc::channel::<CutBlock>(config.publish_buffer_blocks.max(1));
    let mut wall_start: Option<Instant> = None;

    // Cuts blocks (paced for files) into the bounded queue.
    let cutting = async {
        let queue = queue;
        let mut reader = PacketReader::new();
        let mut cutter = Cutter::new(Duration::from_millis(config.block_ms));
        let (mut seen, mut packets_seen, mut media_end) = (0usize, 0usize, 0.0);
        let mut enqueue = async |cut: CutBlock| -> Result<(), Error> {
            let start = *wall_start.get_or_insert_with(Instant::now);
            if paced {
                let due = start + Duration::from_secs_f64(cut.media_end / config.speed);
                tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            }
            // Fails only when the publishing side stopped; its error is the one reported.
            let _ = queue.send(cut).await;
            Ok(())
        };
        while let Some(chunk) = chunks.recv().await {
            let chunk = chunk?;
            if chunk.is_empty() {
                break;
            }
            seen += chunk.len();
            let packets = reader.push(&chunk);
            packets_seen += packets.len();
            if packets_seen == 0 && seen >= SYNC_SEARCH_BYTES {
                return Err(Error::NotVideo {
                    path: input.to_string(),
                    head: describe_head(&chunk),
                });
            }
            for cut in cutter.push(&packets) {
                media_end = cut.media_end;
                enqueue(cut).await?;
            }
        }
        if let Some(cut) = cutter.finish() {
            media_end = cut.media_end;
            enqueue(cut).await?;
        }
        debug!(
            skipped = reader.skipped(),
            leftover = reader.leftover(),
            "input read"
        );
        Ok::<_, Error>((cutter, seen, media_end))
    };
    // Publishes what was cut, in order, retrying while the CDN is down.
    let publishing = async {
        while let Some(cut) = queued.recv().await {
            let what = format!("block {}", cut.block.info.number);
            with_retry(&what, give_up, || publisher.block(&cut)).await?;
            on_block(&cut.block.info);
        }
        Ok::<_, Error>(())
    };
    let ((cutter, seen, media_end), ()) = tokio::try_join!(cutting, publishing)?;
    let (source_bytes, digest) = cutter.source();
    if cutter.blocks() == 0 {
        return Err(if seen > 0 {
            Error::NotVideo {
                path: input.to_string(),
                head: format!("{seen} bytes without one MPEG-TS packet"),
            }
        } else {
            Error::Empty(input.to_string())
        });
    }
    let end = EndOfStream {
        blocks: cutter.blocks(),
        source_bytes,
        source_sha256: digest,
    };
    with_retry("the end of stream", give_up, || publisher.end(&end)).await?;
    let report = OriginReport {
        blocks: end.blocks,
        source_bytes,
        source_sha256: hex::encode(digest),
        media_seconds: media_end,
        wall_ms: wall_start.map_or(0, |s| s.elapsed().as_millis() as u64),
    };
    info!(blocks = report.blocks, bytes = source_bytes, sha256 = %report.source_sha256, "stream ended");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inputs() {
        assert_eq!("-".parse::<Input>().unwrap(), Input::Stdin);
        assert_eq!(
            "udp://127.0.0.1:5000".parse::<Input>().unwrap(),
            Input::Udp("127.0.0.1:5000".parse().unwrap())
        );
        assert_eq!(
            "http://127.0.0.1:5001/ingest".parse::<Input>().unwrap(),
            Input::HttpPush("127.0.0.1:5001".parse().unwrap())
        );
        assert_eq!("a.ts".parse::<Input>().unwrap(), Input::File("a.ts".into()));
        assert!("udp://nowhere".parse::<Input>().is_err());
    }

    #[tokio::test]
    async fn refuses_files_that_are_not_video() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        fs_err::write(&path, "this is a text file, not a video\n".repeat(20)).unwrap();
        let error = load_ts(&path).await.unwrap_err();
        assert!(matches!(error, Error::NotVideo { .. }), "{error}");
        assert!(error.to_string().contains("not a video stream"), "{error}");
        let missing = load_ts(&dir.path().join("missing.ts")).await.unwrap_err();
        assert!(matches!(missing, Error::Io { .. }), "{missing}");
    }

    #[tokio::test]
    async fn a_broken_mp4_names_ffmpegs_complaint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.mp4");
        let mut data = b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2".to_vec();
        data.extend(std::iter::repeat_n(0x5a, 4000));
        fs_err::write(&path, data).unwrap();
        let error = load_ts(&path).await.unwrap_err();
        assert!(matches!(error, Error::Remux { .. }), "{error}");
        assert!(error.to_string().contains("broken.mp4"), "{error}");
    }
}
