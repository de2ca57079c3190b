//! An HTTP-FLV viewer for the demo, the bench and the tests: opens a stream URL, and reads
//! FLV tags as they arrive, stamping each with its arrival time on the monotonic clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use crate::error::FlvError;
use crate::flv::reader::FlvHeader;
use crate::flv::{FlvReader, ReadTag};
use crate::hop::HopClient;

/// Why viewing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ViewerError {
    /// The URL does not form a request.
    #[error("bad URL `{0}`")]
    Url(String),
    /// Connecting failed.
    #[error("connecting to `{url}` failed")]
    Connect {
        /// The URL.
        url: String,
        /// The client's error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No response headers in time.
    #[error("`{url}` sent no response within {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// How long was waited.
        after: Duration,
    },
    /// The body broke off with an error.
    #[error("reading the body failed")]
    Body(#[source] hyper::Error),
    /// The bytes are not FLV.
    #[error(transparent)]
    Flv(#[from] FlvError),
}

/// One open stream.
#[derive(Debug)]
pub struct Viewer {
    status: StatusCode,
    body: Incoming,
    reader: FlvReader,
    opened: Instant,
    requested: Instant,
    bytes: u64,
    ended: bool,
}

/// A client for viewers (pooled, `TCP_NODELAY`).
pub fn client(header_timeout: Duration) -> HopClient {
    HopClient::new(Duration::from_secs(2), header_timeout)
}

/// A client for viewers whose connections come from the local address `from` (any
/// `127.0.0.0/8` address is loopback on Linux: load tests look like many clients).
pub fn client_from(from: std::net::IpAddr, header_timeout: Duration) -> HopClient {
    HopClient::with_socket(Duration::from_secs(2), header_timeout, Some(from), None)
}

/// A client for viewers whose sockets have a kernel receive buffer of `bytes` (a viewer
/// whose network link is its bottleneck holds little; its backlog waits at the sender).
pub fn client_with_recv_buffer(bytes: usize, header_timeout: Duration) -> HopClient {
    HopClient::with_socket(Duration::from_secs(2), header_timeout, None, Some(bytes))
}

impl Viewer {
    /// Sends `GET url` and waits for the response headers (up to the client's header
    /// timeout).
    ///
    /// # Errors
    /// [`ViewerError::Url`], [`ViewerError::Connect`] or [`ViewerError::Timeout`].
    pub async fn open(client: &HopClient, url: &str) -> Result<Self, ViewerError> {
        let requested = Instant::now();
        let request = Request::get(url)
            .body(Full::new(Bytes::new()))
            .map_err(|_| ViewerError::Url(url.to_owned()))?;
        let response = client.send(request).await.map_err(|e| match e {
            Some(source) => ViewerError::Connect {
                url: url.to_owned(),
                source,
            },
            None => ViewerError::Timeout {
                url: url.to_owned(),
                after: client.header_timeout(),
            },
        })?;
        Ok(Self {
            status: response.status(),
            body: response.into_body(),
            reader: FlvReader::new(),
            opened: Instant::now(),
            requested,
            bytes: 0,
            ended: false,
        })
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// When the request was sent.
    pub fn requested(&self) -> Instant {
        self.requested
    }

    /// When the response headers arrived.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Body bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The FLV header, once read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.reader.header()
    }

    /// The whole body as text (for error answers; reads to the end).
    ///
    /// # Errors
    /// [`ViewerError::Body`].
    pub async fn text(self) -> Result<String, ViewerError> {
        let bytes = self
            .body
            .collect()
            .await
            .map_err(ViewerError::Body)?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The next tag with the instant its last byte arrived; `None` at the end of the stream.
    ///
    /// # Errors
    /// [`ViewerError::Body`] or [`ViewerError::Flv`].
    pub async fn next_tag(&mut self) -> Result<Option<(ReadTag, Instant)>, ViewerError> {
        loop {
            if let Some(tag) = self.reader.next_tag()? {
                return Ok(Some((tag, Instant::now())));
            }
            if self.ended {
                return Ok(None);
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        self.bytes += data.len() as u64;
                        self.reader.push(data);
                    }
                }
                Some(Err(error)) => return Err(ViewerError::Body(error)),
                None => self.ended = true,
            }
        }
    }

    /// Reads until the first video key frame (the NAL-unit tag, not the sequence header);
    /// returns the tags before it and the instant it arrived, or `None` if the stream ended
    /// or `within` passed first.
    ///
    /// # Errors
    /// As [`Viewer::next_tag`].
    pub async fn until_key_frame(
        &mut self,
        within: Duration,
    ) -> Result<Option<(Vec<ReadTag>, ReadTag, Instant)>, ViewerError> {
        let mut before = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.next_tag()).await;
            match next {
                Err(_) | Ok(Ok(None)) => return Ok(None),
                Ok(Err(error)) => return Err(error),
                Ok(Ok(Some((tag, at)))) => {
                    if tag.is_key_frame() {
                        return Ok(Some((before, tag, at)));
                    }
                    before.push(tag);
                }
            }
        }
    }
}

/// What one viewer saw while watching a stream for a while (see [`watch_stream`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watched {
    /// The response status.
    pub status: u16,
    /// Video frames received.
    pub frames: usize,
    /// Video frames received after `mark` was set.
    pub frames_after_mark: usize,
    /// Largest time between two video frames.
    pub max_gap: Duration,
    /// Whether a video frame's decoding timestamp was below the one before it.
    pub dts_went_back: bool,
    /// AVC sequence headers received (1 unless the stream's parameters changed).
    pub sequence_headers: usize,
    /// Whether the stream ended (or broke) before `until`.
    pub ended: bool,
    /// Request to the first video key frame.
    pub first_frame: Option<Duration>,
}

/// Watches `url` with `client` until `until`, checking every video frame: gaps, decoding
/// timestamps, sequence headers, and whether the stream ended early. Frames received while
/// `mark` holds `true` are also counted apart (e.g. after a media server moved).
///
/// # Errors
/// [`ViewerError`] when the request fails before any answer.
pub async fn watch_stream(
    client: &HopClient,
    url: &str,
    until: tokio::time::Instant,
    mark: &tokio::sync::watch::Receiver<bool>,
) -> Result<Watched, ViewerError> {
    let mut viewer = Viewer::open(client, url).await?;
    let mut seen = Watched {
        status: viewer.status().as_u16(),
        ..Watched::default()
    };
    if !viewer.status().is_success() {
        return Ok(seen);
    }
    let mut last: Option<(u32, Instant)> = None;
    loop {
        match tokio::time::timeout_at(until, viewer.next_tag()).await {
            Err(_) => break,
            Ok(Ok(Some((tag, at)))) => {
                seen.sequence_headers += usize::from(tag.is_avc_sequence_header());
                if !tag.is_video_frame() {
                    continue;
                }
                if seen.first_frame.is_none() && tag.is_key_frame() {
                    seen.first_frame = Some(at - viewer.requested());
                }
                if let Some((ts, when)) = last {
                    seen.dts_went_back |= tag.timestamp_ms < ts;
                    seen.max_gap = seen.max_gap.max(at - when);
                }
                last = Some((tag.timestamp_ms, at));
                seen.frames += 1;
                if *mark.borrow() {
                    seen.frames_after_mark += 1;
                }
            }
            Ok(Ok(None) | Err(_)) => {
                seen.ended = true;
                break;
            }
        }
    }
    Ok(seen)
}
