//! Fan-out of one FLV source to many viewers, used by every hop: the media server (the
//! source is its RTSP pull) and the two relays, forwarder and proxy (the source is one
//! upstream session to the next hop, [`crate::relay`]). Each tag is muxed or read once and
//! shared, reference-counted, by every viewer: no hop copies a frame per viewer, and one
//! upstream connection per stream serves any number of viewers.
//!
//! * [`ring::Ring`]: the shared send queue, bounded in seconds ([`FanoutConfig::max_behind_ms`])
//!   and bytes; a viewer's backlog is the age of the next tag it would send.
//! * [`gop::GopCache`]: the current group of pictures only, for joining viewers.
//! * [`channel::Channel`]: one stream's state; [`hub::Hub`]: the running channels by key.
//! * [`viewer::ViewerStream`]: one viewer's cursor: where it joins ([`JoinPoint`]), and the skip
//!   to the next key frame once it is more than `max_behind_ms` behind.

pub mod channel;
pub mod gop;
pub mod hub;
pub mod metrics;
pub mod ring;
pub mod viewer;

use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

pub use channel::{Channel, Status};
pub use hub::{Hub, Joined, ViewerGuard};
pub use metrics::{FanoutMetrics, StreamLabel};
pub use viewer::{Join, JoinError, ViewerStream, subscribe};

use crate::error::{Classify, ConfigError, error_body};

/// Header a relay sends upstream to ask for the cached group of pictures as it is (no
/// catch-up retiming): its own viewers are retimed where they join.
pub const JOIN_HEADER: &str = "x-streamgate-join";

/// Where a new viewer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinPoint {
    /// At the latest key frame, from the GOP cache: the first picture at once. With
    /// [`FanoutConfig::catch_up_ms`] the cached frames are retimed so the player reaches the
    /// live edge within that time.
    KeyFrame,
    /// At the live edge: the first frame sent is the next key frame the source publishes
    /// (no old frames, at the price of waiting up to one GOP).
    LiveEdge,
}

/// Fan-out settings of a hop (`[media.fanout]`, `[forwarder.fanout]`, `[proxy.fanout]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FanoutConfig {
    /// A viewer whose next tag is older than this is skipped to the next key frame, ms
    /// (default 2000). It is also how long the send queue keeps tags.
    pub max_behind_ms: u64,
    /// Where new viewers start (default `key_frame`).
    pub join: JoinPoint,
    /// With `join = "key_frame"`: a cached group older than this is retimed so it plays out
    /// within this time and the viewer is at the live edge after it, ms (default 1000; 0 sends
    /// the cached group with its own timestamps, so a viewer of a long-GOP camera stays up
    /// to a GOP behind).
    pub catch_up_ms: u64,
    /// Largest group of pictures cached, bytes (default 16 MiB); a larger group is not cached
    /// and new viewers wait for the next key frame.
    pub gop_cache_max_bytes: usize,
    /// Largest send queue, bytes (default 32 MiB).
    pub queue_max_bytes: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            max_behind_ms: 2000,
            join: JoinPoint::KeyFrame,
            catch_up_ms: 1000,
            gop_cache_max_bytes: 16 << 20,
            queue_max_bytes: 32 << 20,
        }
    }
}

impl FanoutConfig {
    /// Checks the ranges and returns the runtime settings; `section` names the section in
    /// errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn settings(&self, section: &str) -> Result<FanoutSettings, ConfigError> {
        if self.max_behind_ms < 100 {
            return Err(ConfigError::Invalid {
                key: format!("{section}.max_behind_ms"),
                value: self.max_behind_ms.to_string(),
                reason: "must be at least 100 ms",
            });
        }
        if self.queue_max_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid {
                key: format!("{section}.queue_max_bytes"),
                value: self.queue_max_bytes.to_string(),
                reason: "must be at least 65536",
            });
        }
        Ok(FanoutSettings {
            max_behind: Duration::from_millis(self.max_behind_ms),
            join: self.join,
            catch_up: Duration::from_millis(self.catch_up_ms),
            gop_cache_max_bytes: self.gop_cache_max_bytes,
            queue_max_bytes: self.queue_max_bytes,
        })
    }
}

/// Validated fan-out settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutSettings {
    /// See [`FanoutConfig::max_behind_ms`].
    pub max_behind: Duration,
    /// See [`FanoutConfig::join`].
    pub join: JoinPoint,
    /// See [`FanoutConfig::catch_up_ms`].
    pub catch_up: Duration,
    /// See [`FanoutConfig::gop_cache_max_bytes`].
    pub gop_cache_max_bytes: usize,
    /// See [`FanoutConfig::queue_max_bytes`].
    pub queue_max_bytes: usize,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        let config = FanoutConfig::default();
        Self {
            max_behind: Duration::from_millis(config.max_behind_ms),
            join: config.join,
            catch_up: Duration::from_millis(config.catch_up_ms),
            gop_cache_max_bytes: config.gop_cache_max_bytes,
            queue_max_bytes: config.queue_max_bytes,
        }
    }
}

/// A refusal a channel's source ended with, answered to every viewer waiting for it: the
/// status and the JSON error body (the media server's own error, or the upstream hop's
/// answer passed through).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The JSON body (`error`, `origin`, `retry`, `status` and details).
    pub body: serde_json::Value,
}

impl Refusal {
    /// The refusal for one of this crate's errors (its status and [`error_body`]).
    pub fn from_error(error: &(impl Classify + std::fmt::Display)) -> Self {
        Self {
            status: error.status(),
            body: error_body(error),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            self.body["error"].as_str().unwrap_or("refused"),
            self.status
        )
    }
}
