//! Typed errors of the crate (style.md 2.3).

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An invalid substream layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// `s` or `a` is 0; both must be at least 1 (seed 14, 18).
    #[error("substreams ({substreams}) and block set ({block_set}) must both be at least 1")]
    Zero {
        /// The `s` given.
        substreams: u32,
        /// The `a` given.
        block_set: u32,
    },
    /// The epochs do not start at block 0 or are not in increasing order.
    #[error("layout epochs must start at block 0 and increase")]
    Epochs,
    /// The text form `from:s:a,...` does not parse.
    #[error("layout `{0}` is not of the form `from:s:a,from:s:a,...`")]
    Parse(String),
}

/// Everything that can go wrong in the origin, CDN, tracker and peer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is neither MPEG-TS nor MP4; give a `.ts` file, an MP4 or a TS stream.
    #[error(
        "input `{path}` is not a video stream: neither MPEG-TS (0x47 sync every 188 bytes) nor MP4 (`ftyp` box); it starts with {head}"
    )]
    NotVideo {
        /// The input as given.
        path: String,
        /// The first bytes, escaped.
        head: String,
    },
    /// The input holds no whole TS packet.
    #[error("input `{0}` holds no MPEG-TS packets")]
    Empty(String),
    /// Reading a file failed.
    #[error("reading `{path}` failed")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A socket or stream operation failed.
    #[error("{what} failed")]
    Net {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `ffmpeg` is needed to remux MP4 to MPEG-TS but is not installed; run `scripts/setup`.
    #[error(
        "`ffmpeg` is needed to remux MP4 input to MPEG-TS; install it (scripts/setup installs Debian's ffmpeg)"
    )]
    FfmpegMissing,
    /// `ffmpeg` failed to remux the MP4 input.
    #[error("ffmpeg could not remux `{path}` to MPEG-TS: {stderr_tail}")]
    Remux {
        /// The input.
        path: PathBuf,
        /// The end of ffmpeg's error output.
        stderr_tail: String,
    },
    /// `ffmpeg` failed to re-encode a file as a live encoder (or to decode a check input).
    #[error("ffmpeg could not encode or decode `{path}`: {stderr_tail}")]
    Encode {
        /// The input.
        path: PathBuf,
        /// The end of ffmpeg's error output.
        stderr_tail: String,
    },
    /// An HTTP request to the CDN or tracker failed (connection refused, reset, bad body).
    #[error("HTTP request to `{url}` failed")]
    Http {
        /// The URL.
        url: String,
        /// The client error.
        #[source]
        source: reqwest::Error,
    },
    /// The CDN or tracker answered with an error status.
    #[error("`{url}` answered {status}: {message}")]
    Status {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error message in the body.
        message: String,
    },
    /// The tracker does not know this stream id; check `--stream` against the tracker's
    /// configured streams.
    #[error("unknown stream id `{0}` at the tracker")]
    UnknownStream(String),
    /// The tracker does not know this peer (it expired); the peer joins again.
    #[error("unknown peer {0} at the tracker")]
    UnknownPeer(u64),
    /// Setting up TLS or the QUIC endpoint failed.
    #[error("QUIC/TLS set-up failed: {0}")]
    Quic(String),
    /// A substream layout is invalid.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The system's random source failed (tokens and peer ids cannot be made).
    #[error("the system random source failed")]
    Random,
    /// A request to the tracker carried no session token for this peer.
    #[error("peer {0}: missing session token (`Authorization: Bearer TOKEN`)")]
    Unauthorized(u64),
    /// A request to the tracker carried a session token that is not this peer's.
    #[error("peer {0}: wrong session token")]
    Forbidden(u64),
    /// A value a peer reported is out of range (it would overflow the tracker's arithmetic).
    #[error("`{field}` = {value} is out of range: {reason}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value reported.
        value: u64,
        /// The bound it breaks.
        reason: String,
    },
    /// The swarm has as many peers as the tracker admits (`tracker.max_peers`).
    #[error("the swarm is full ({0} peers)")]
    SwarmFull(usize),
    /// A joining peer's contact is malformed or too long.
    #[error("bad contact: {0}")]
    BadContact(String),
    /// The tracker drew a peer id that is already in use (about 2^-64 per join; it draws again).
    #[error("peer id {0} is already in use")]
    IdTaken(u64),
    /// The CDN's subscription stream carried a malformed frame.
    #[error("malformed frame on the subscription stream: {0}")]
    Frame(String),
}
