//! Configuration of every part, loaded in layers by `svckit::config` (defaults, `--config`
//! file, `P2PLIVE_*` environment variables, `--set key=value`), then overridden by the
//! subcommands' own flags.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use svckit::redact::Secret;

use crate::origin::OriginConfig;
use crate::peer::PeerConfig;
use crate::tracker::TrackerConfig;

/// Prefix of the environment variables read as configuration, e.g.
/// `P2PLIVE_TRACKER__MAX_SUBSTREAMS=12` sets `tracker.max_substreams`.
pub const ENV_PREFIX: &str = "P2PLIVE_";

/// The whole configuration; each subcommand reads its section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The block cutter.
    pub origin: OriginConfig,
    /// The CDN edge.
    pub cdn: CdnConfig,
    /// The tracker.
    pub tracker: TrackerConfig,
    /// A peer.
    pub peer: PeerConfig,
}

/// CDN edge settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdnConfig {
    /// HTTP listen address (default `127.0.0.1:7000`).
    pub listen: SocketAddr,
    /// The token the origin must present to publish (required, at least 16 characters;
    /// env `P2PLIVE_CDN__PUBLISH_TOKEN`).
    pub publish_token: Secret,
    /// Media kept per stream, in ms (default 30000); older blocks are evicted (410 Gone).
    pub window_ms: u64,
    /// Blocks listed in each `/live.m3u8` HLS playlist (default 6; [`crate::hls`]).
    pub hls_window_blocks: usize,
}

impl Default for CdnConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            publish_token: Secret::default(),
            window_ms: crate::cdn::DEFAULT_WINDOW_MS,
            hls_window_blocks: crate::hls::DEFAULT_WINDOW_BLOCKS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_and_typos_are_errors() {
        let config: Config = svckit::config::load(&svckit::config::Sources::new().overrides(&[
            "tracker.max_substreams=12".to_owned(),
            "peer.speed=4.0".to_owned(),
        ]))
        .unwrap();
        assert_eq!(config.tracker.max_substreams, 12);
        assert!((config.peer.speed - 4.0).abs() < f64::EPSILON);
        let error = svckit::config::load::<Config>(
            &svckit::config::Sources::new().overrides(&["tracker.max_substream=12".to_owned()]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("max_substream"), "{error}");
    }
}
