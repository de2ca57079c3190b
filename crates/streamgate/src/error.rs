//! Error types. Every error says where it came from ([`Origin`]) and whether trying again can
//! help ([`Retry`]), so the HTTP edge maps it to a status with a `match` and callers decide
//! about retries without reading messages (style.md 2.3 item 4; pingora's `ErrorSource` and
//! `RetryType` are the model).
//!
//! Status mapping used by all three hops (seed ¶46-¶50 name the hops):
//!
//! | error | status |
//! |---|---|
//! | malformed path ([`RouteError::Malformed`]) | 400 |
//! | unknown service or namespace ([`RouteError::UnknownService`], [`RouteError::UnknownNamespace`]), unknown stream ([`MediaError::UnknownStream`]) | 404 |
//! | camera unreachable or silent ([`PullError`]) | 502 |
//! | media server or forwarder registered but gone, label not registered ([`HopError`]) | 503 |
//! | upstream did not answer in time ([`HopError::HeaderTimeout`]) | 504 |

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;

/// `Result` with this crate's top-level [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which party an error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Origin {
    /// The viewer's request itself is wrong (bad path, unknown names).
    Downstream,
    /// The registry (service discovery) failed or holds no entry.
    Registry,
    /// The next hop (forwarder or media server) is gone or failed.
    Upstream,
    /// The camera (RTSP source) failed.
    Camera,
    /// A fault inside this process (configuration, I/O on local resources).
    Internal,
}

/// Whether repeating the same request can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Retry {
    /// The request is wrong; repeating it gives the same answer.
    Never,
    /// A transient condition (a server restarting, a lease about to be renewed, a camera
    /// rebooting): try again after a short back-off.
    Later,
}

/// What every error of this crate can tell about itself.
pub trait Classify {
    /// Which party caused it.
    fn origin(&self) -> Origin;
    /// Whether a retry can help.
    fn retry(&self) -> Retry;
    /// The HTTP status the edge answers with.
    fn status(&self) -> StatusCode;
    /// For a server error whose reason is safe to show a client (it names no address, URL or
    /// credential), that reason; `None` for the generic text of its origin.
    fn public_reason(&self) -> Option<String> {
        None
    }
}

/// Why a request path could not be routed by the proxy (seed ¶47, ¶51-¶52).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// The path is not `/realtime-{service}-{namespace}/{stream}/{n}.flv`; fix the URL.
    #[error("malformed path `{path}`: {reason}")]
    Malformed {
        /// The request path as received.
        path: String,
        /// Which part is wrong.
        reason: &'static str,
    },
    /// No registered forwarder's service name starts the `{service}-{namespace}` segment.
    #[error("unknown service in `{segment}`")]
    UnknownService {
        /// The `{service}-{namespace}` part of the path.
        segment: String,
    },
    /// A forwarder received a request routed for another (service, namespace) than the one
    /// it serves (a routing table out of date, or a client talking to it directly).
    #[error("`{segment}` is not served here (this forwarder serves `{served}`)")]
    Misdirected {
        /// The `{service}-{namespace}` the request was routed for.
        segment: String,
        /// The pair this forwarder serves.
        served: String,
    },
    /// The service exists but not in this namespace.
    #[error("unknown namespace `{namespace}` for service `{service}`")]
    UnknownNamespace {
        /// The longest registered service name that prefixes the segment.
        service: String,
        /// The rest of the segment.
        namespace: String,
    },
}

impl Classify for RouteError {
    fn origin(&self) -> Origin {
        Origin::Downstream
    }
    fn retry(&self) -> Retry {
        Retry::Never
    }
    fn status(&self) -> StatusCode {
        match self {
            Self::Malformed { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownService { .. } | Self::UnknownNamespace { .. } => StatusCode::NOT_FOUND,
            Self::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
        }
    }
}

/// Why a forwarding hop (proxy -> forwarder, forwarder -> media server) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HopError {
    /// The forwarder's label has no live registration: the media server is down or its lease
    /// expired. Retry after it re-registers (seed ¶53-¶54).
    #[error("label `{label}` is not registered")]
    LabelNotRegistered {
        /// The media server's unique label.
        label: String,
    },
    /// The registry could not be asked (down, or answered garbage).
    #[error("registry lookup failed: {reason}")]
    Registry {
        /// What went wrong.
        reason: String,
    },
    /// The next hop is registered at `addr` but refuses or drops connections (it restarted
    /// or died); retry after it re-registers.
    #[error("`{target}` at {addr} is registered but unreachable")]
    Gone {
        /// The media server's label or the forwarder's service name.
        target: String,
        /// The address the registry gave.
        addr: SocketAddr,
        /// The connect error.
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The request to the next hop cannot be formed (the path does not make a valid URI);
    /// a bug or a path that slipped past validation.
    #[error("cannot form the request `{uri}`")]
    BadUri {
        /// The URI that was attempted.
        uri: String,
    },
    /// The next hop answered but its stream broke before the first tag.
    #[error("`{target}`: the upstream stream broke before playing: {reason}")]
    Broke {
        /// The stream.
        target: String,
        /// What happened.
        reason: String,
    },
    /// The forwarder's label is registered in another namespace than the forwarder serves
    /// (seed ¶44: a media server belongs to one namespace); a configuration error.
    #[error("label `{label}` belongs to namespace `{found}`, not `{expected}`")]
    NamespaceMismatch {
        /// The media server's label.
        label: String,
        /// The forwarder's namespace.
        expected: String,
        /// The namespace the label is registered in.
        found: String,
    },
    /// The next hop accepted the connection but sent no response headers in time.
    #[error("`{target}` at {addr} sent no response within {after:?}")]
    HeaderTimeout {
        /// The media server's label or the forwarder's service name.
        target: String,
        /// The address used.
        addr: SocketAddr,
        /// The configured header timeout.
        after: Duration,
    },
}

impl Classify for HopError {
    fn origin(&self) -> Origin {
        match self {
            Self::LabelNotRegistered { .. } | Self::Registry { .. } => Origin::Registry,
            Self::Gone { .. } | Self::HeaderTimeout { .. } | Self::Broke { .. } => Origin::Upstream,
            Self::NamespaceMismatch { .. } => Origin::Registry,
            Self::BadUri { .. } => Origin::Internal,
        }
    }
    fn retry(&self) -> Retry {
        match self {
            Self::BadUri { .. } | Self::NamespaceMismatch { .. } => Retry::Never,
            _ => Retry::Later,
        }
    }
    fn status(&self) -> StatusCode {
        match self {
            Self::HeaderTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BadUri { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Broke { .. } | Self::NamespaceMismatch { .. } => StatusCode::BAD_GATEWAY,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
    fn public_reason(&self) -> Option<String> {
        match self {
            Self::NamespaceMismatch { .. } => Some(self.to_string()),
            _ => None,
        }
    }
}

/// Why pulling a camera over RTSP failed (seed ¶50: the media server asks the camera named by
/// the stream's address information).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PullError {
    /// Connecting, `DESCRIBE`, `SETUP` or `PLAY` failed (camera down, wrong path, refused).
    #[error("camera `{url}` failed: {reason}")]
    Rtsp {
        /// The camera URL (credentials removed).
        url: String,
        /// retina's description, or the RTSP status.
        reason: String,
    },
    /// The camera did not reach `PLAY` or sent no frame within the RTSP timeout.
    #[error("camera `{url}` timed out after {after:?}")]
    Timeout {
        /// The camera URL (credentials removed).
        url: String,
        /// The configured RTSP timeout.
        after: Duration,
    },
    /// The camera offers no H.264 video track.
    #[error("camera `{url}` has no H.264 video track (offers: {offered})")]
    NoH264 {
        /// The camera URL (credentials removed).
        url: String,
        /// The media/encoding pairs in the SDP.
        offered: String,
    },
    /// The stream ended (camera closed the session) or delivered undecodable data.
    #[error("camera `{url}` stream broke: {reason}")]
    Broken {
        /// The camera URL (credentials removed).
        url: String,
        /// What happened.
        reason: String,
    },
}

impl Classify for PullError {
    fn origin(&self) -> Origin {
        Origin::Camera
    }
    fn retry(&self) -> Retry {
        match self {
            Self::NoH264 { .. } => Retry::Never,
            _ => Retry::Later,
        }
    }
    fn status(&self) -> StatusCode {
        StatusCode::BAD_GATEWAY
    }
    fn public_reason(&self) -> Option<String> {
        match self {
            Self::NoH264 { offered, .. } => Some(format!(
                "camera offers no H.264 video (offers {offered}); streamgate relays H.264 only"
            )),
            _ => None,
        }
    }
}

/// Why the media server refused a viewer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The path is not `/{stream}/{n}.flv`.
    #[error("malformed path `{path}`: {reason}")]
    Malformed {
        /// The request path.
        path: String,
        /// Which part is wrong.
        reason: &'static str,
    },
    /// No camera is configured for this stream address.
    #[error("unknown stream `{stream}`")]
    UnknownStream {
        /// The `{stream}` (and `/{n}` when not 0) part of the path.
        stream: String,
    },
    /// The camera pull failed.
    #[error(transparent)]
    Pull(#[from] PullError),
}

impl Classify for MediaError {
    fn origin(&self) -> Origin {
        match self {
            Self::Malformed { .. } | Self::UnknownStream { .. } => Origin::Downstream,
            Self::Pull(error) => error.origin(),
        }
    }
    fn retry(&self) -> Retry {
        match self {
            Self::Malformed { .. } | Self::UnknownStream { .. } => Retry::Never,
            Self::Pull(error) => error.retry(),
        }
    }
    fn status(&self) -> StatusCode {
        match self {
            Self::Malformed { .. } => StatusCode::BAD_REQUEST,
            Self::UnknownStream { .. } => StatusCode::NOT_FOUND,
            Self::Pull(error) => error.status(),
        }
    }
    fn public_reason(&self) -> Option<String> {
        match self {
            Self::Pull(error) => error.public_reason(),
            _ => None,
        }
    }
}

/// H.264 parameter sets that cannot be turned into an `AVCDecoderConfigurationRecord`
/// (ISO/IEC 14496-15 §5.3.3.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AvcError {
    /// The SPS is shorter than its 4 fixed bytes (NAL header, profile, constraints, level).
    #[error("SPS of {len} bytes is too short")]
    ShortSps {
        /// Its length in bytes.
        len: usize,
    },
    /// A NAL unit is not of the expected type (7 for SPS, 8 for PPS).
    #[error("NAL unit type {found} where {expected} was expected")]
    WrongNalType {
        /// The type wanted.
        expected: u8,
        /// The type found.
        found: u8,
    },
    /// A parameter set is longer than the record's 16-bit length field allows.
    #[error("parameter set of {len} bytes exceeds 65535")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// Length-prefixed (AVCC) data is cut short or its length fields are inconsistent.
    #[error("length-prefixed NAL data is truncated at byte {offset}")]
    Truncated {
        /// Offset of the broken length field.
        offset: usize,
    },
    /// The SPS bit stream does not parse.
    #[error("SPS does not parse: {reason}")]
    BadSps {
        /// The parser's complaint.
        reason: String,
    },
}

/// A malformed FLV byte stream (read by viewers, tests and the bench).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    /// The first three bytes are not `FLV`.
    #[error("not an FLV stream (signature {found:02x?})")]
    Signature {
        /// The bytes found.
        found: [u8; 3],
    },
    /// A `PreviousTagSize` field does not match the tag before it.
    #[error("previous tag size {found} at byte {offset}, expected {expected}")]
    PreviousTagSize {
        /// Stream offset of the field.
        offset: u64,
        /// The size of the tag before it.
        expected: u32,
        /// The value read.
        found: u32,
    },
    /// A tag declares more data than the reader accepts.
    #[error("tag of {len} bytes at byte {offset} exceeds the limit of {max}")]
    TooLarge {
        /// Stream offset of the tag.
        offset: u64,
        /// Its declared data size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A tag of a type other than 8 (audio), 9 (video) or 18 (script data).
    #[error("unknown tag type {tag_type} at byte {offset}")]
    TagType {
        /// Stream offset of the tag.
        offset: u64,
        /// The type byte.
        tag_type: u8,
    },
}

/// Why a configuration is unusable (checked right after loading, style.md 2.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is empty.
    #[error("`{key}` must be set")]
    Missing {
        /// The dotted key.
        key: &'static str,
    },
    /// A setting has an unusable value.
    #[error("`{key}` = `{value}` is invalid: {reason}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// The value as given.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

impl Classify for ConfigError {
    fn origin(&self) -> Origin {
        Origin::Internal
    }
    fn retry(&self) -> Retry {
        Retry::Never
    }
    fn status(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// The crate's top-level error, for APIs that can fail in several of the ways above.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ConfigError`].
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// See [`RouteError`].
    #[error(transparent)]
    Route(#[from] RouteError),
    /// See [`HopError`].
    #[error(transparent)]
    Hop(#[from] HopError),
    /// See [`MediaError`].
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Binding or serving a socket failed.
    #[error("{what} on {addr} failed")]
    Io {
        /// What was being done (`binding`, `serving`).
        what: &'static str,
        /// The address involved.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Serving the admin or API port failed.
    #[error(transparent)]
    Serve(#[from] svckit::ServeError),
}

impl Classify for Error {
    fn origin(&self) -> Origin {
        match self {
            Self::Config(e) => e.origin(),
            Self::Route(e) => e.origin(),
            Self::Hop(e) => e.origin(),
            Self::Media(e) => e.origin(),
            Self::Io { .. } | Self::Serve(_) => Origin::Internal,
        }
    }
    fn retry(&self) -> Retry {
        match self {
            Self::Config(e) => e.retry(),
            Self::Route(e) => e.retry(),
            Self::Hop(e) => e.retry(),
            Self::Media(e) => e.retry(),
            Self::Io { .. } | Self::Serve(_) => Retry::Never,
        }
    }
    fn status(&self) -> StatusCode {
        match self {
            Self::Config(e) => e.status(),
            Self::Route(e) => e.status(),
            Self::Hop(e) => e.status(),
            Self::Media(e) => e.status(),
            Self::Io { .. } | Self::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The JSON body of every error answer: `{"error": MESSAGE, "origin": ..., "retry": ...,
/// "status": CODE}` plus optional detail fields.
///
/// 5xx answers carry a generic message for the origin; the detailed error goes to the log
/// (style.md 2.3 item 7). 4xx answers carry the full message, which names the offending value.
pub fn error_body(error: &(impl Classify + std::fmt::Display)) -> serde_json::Value {
    let status = error.status();
    let message = if status.is_server_error() {
        if let Some(reason) = error.public_reason() {
            reason
        } else {
            match error.origin() {
                Origin::Camera => "camera unreachable".to_owned(),
                Origin::Registry => "media server not registered".to_owned(),
                Origin::Upstream => "upstream unavailable".to_owned(),
                _ => "internal error".to_owned(),
            }
        }
    } else {
        error.to_string()
    };
    serde_json::json!({
        "error": message,
        "origin": error.origin(),
        "retry": error.retry(),
        "status": status.as_u16(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        let malformed = RouteError::Malformed {
            path: "/x".to_owned(),
            reason: "no prefix",
        };
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
        assert_eq!(malformed.retry(), Retry::Never);
        let unknown = RouteError::UnknownService {
            segment: "a-b".to_owned(),
        };
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let pull = PullError::Timeout {
            url: "rtsp://127.0.0.1:1/x".to_owned(),
            after: Duration::from_secs(1),
        };
        assert_eq!(pull.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(pull.origin(), Origin::Camera);
        assert_eq!(pull.retry(), Retry::Later);
        let gone = HopError::LabelNotRegistered {
            label: "m".to_owned(),
        };
        assert_eq!(gone.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Error::from(gone).origin(), Origin::Registry);
    }

    #[test]
    fn server_errors_hide_details_client_errors_name_the_value() {
        let body = error_body(&PullError::Rtsp {
            url: "rtsp://127.0.0.1:1/secret-path".to_owned(),
            reason: "refused".to_owned(),
        });
        assert_eq!(body["error"], "camera unreachable");
        assert_eq!(body["status"], 502);
        assert_eq!(body["origin"], "camera");
        let body = error_body(&MediaError::Pull(PullError::NoH264 {
            url: "rtsp://127.0.0.1:1/secret-path".to_owned(),
            offered: "video/h265".to_owned(),
        }));
        let text = body["error"].as_str().unwrap_or_default();
        assert!(
            text.contains("video/h265") && !text.contains("secret"),
            "{text}"
        );
        assert_eq!(body["retry"], "never");
        let body = error_body(&RouteError::UnknownNamespace {
            service: "ServiceA".to_owned(),
            namespace: "Nope".to_owned(),
        });
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("`Nope`")
        );
        assert_eq!(body["retry"], "never");
    }
}
