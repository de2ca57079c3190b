//! Configuration of every part, loaded in layers by `svckit::config` (defaults, `--config`
//! file, `STREAMGATE_*` environment variables, `--set key=value`), then overridden by the
//! subcommands' own flags, then validated (style.md 2.4).
//!
//! ```toml
//! [discovery]
//! registry_url = "http://127.0.0.1:7400"   # empty: use the static lists below
//!
//! [media]
//! label = "media-a"
//! namespace = "NameSpaceA"
//! listen = "127.0.0.1:7411"
//! [media.cameras]
//! main_stream = "rtsp://127.0.0.1:8554/main_stream"
//!
//! [forwarder]
//! service = "ServiceA"
//! namespace = "NameSpaceA"
//! label = "media-a"
//! listen = "127.0.0.1:7421"
//!
//! [proxy]
//! listen = "127.0.0.1:8080"
//! ```

use serde::{Deserialize, Serialize};
use svckit::redact::Secret;

use crate::discovery::{AnyDiscovery, StaticDiscovery};
use crate::forwarder::ForwarderConfig;
use crate::media::MediaConfig;
use crate::proxy::ProxyConfig;
use crate::registry::{ForwarderRecord, MediaRecord, RegistryClient, RegistryConfig};

/// Prefix of the environment variables read as configuration, e.g.
/// `STREAMGATE_MEDIA__RTSP_TIMEOUT_MS=3000` sets `media.rtsp_timeout_ms`.
pub const ENV_PREFIX: &str = "STREAMGATE_";

/// The whole configuration; each subcommand reads its sections.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How proxy, forwarders and media servers find each other.
    pub discovery: DiscoveryConfig,
    /// The registry service.
    pub registry: RegistryConfig,
    /// The reverse proxy.
    pub proxy: ProxyConfig,
    /// A forwarder.
    pub forwarder: ForwarderConfig,
    /// A media server.
    pub media: MediaConfig,
}

/// Discovery settings (`[discovery]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The registry's base URL (default `http://127.0.0.1:7400`); empty to use the static
    /// lists instead (and not register anywhere).
    pub registry_url: String,
    /// Media servers used when `registry_url` is empty.
    pub media: Vec<MediaRecord>,
    /// Forwarders used when `registry_url` is empty.
    pub forwarders: Vec<ForwarderRecord>,
    /// The bearer credential sent to the registry (set it through
    /// `STREAMGATE_DISCOVERY__TOKEN` rather than a file or the command line).
    pub token: Secret,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            registry_url: "http://127.0.0.1:7400".to_owned(),
            media: Vec::new(),
            forwarders: Vec::new(),
            token: Secret::default(),
        }
    }
}

impl DiscoveryConfig {
    /// The registry client, when a registry is configured.
    pub fn registry(&self) -> Option<RegistryClient> {
        (!self.registry_url.trim().is_empty())
            .then(|| RegistryClient::new(&self.registry_url).with_token(&self.token))
    }

    /// The discovery source: the registry if configured, else the static lists.
    pub fn source(&self) -> AnyDiscovery {
        match self.registry() {
            Some(client) => AnyDiscovery::Registry(client),
            None => AnyDiscovery::Static(StaticDiscovery {
                media: self.media.clone(),
                forwarders: self.forwarders.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_and_typos_are_errors() {
        let config: Config = svckit::config::load(&svckit::config::Sources::new().overrides(&[
            "media.rtsp_timeout_ms=3000".to_owned(),
            "media.cameras.main_stream=\"rtsp://127.0.0.1:8554/main_stream\"".to_owned(),
            "discovery.registry_url=\"\"".to_owned(),
        ]))
        .unwrap();
        assert_eq!(config.media.rtsp_timeout_ms, 3000);
        assert_eq!(config.media.cameras.len(), 1);
        assert!(matches!(config.discovery.source(), AnyDiscovery::Static(_)));
        let error = svckit::config::load::<Config>(
            &svckit::config::Sources::new().overrides(&["media.rtsp_timeout=12".to_owned()]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("rtsp_timeout"), "{error}");
    }

    #[test]
    fn example_in_the_module_docs_parses() {
        const TEXT: &str = r#"
[discovery]
registry_url = ""
[[discovery.media]]
label = "media-a"
namespace = "NameSpaceA"
addr = "127.0.0.1:7411"
streams = ["main_stream"]
[[discovery.forwarders]]
service = "Service-A"
namespace = "Name-Space-A"
addr = "127.0.0.1:7421"
label = "media-a"
[media]
label = "media-a"
namespace = "NameSpaceA"
[media.cameras]
main_stream = "rtsp://127.0.0.1:8554/main_stream"
"#;
        let config: Config =
            svckit::config::load(&svckit::config::Sources::new().embedded(TEXT)).unwrap();
        assert_eq!(config.discovery.forwarders[0].service, "Service-A");
        assert_eq!(config.discovery.media[0].instance, "static");
        assert!(config.media.validate().is_ok());
    }
}
