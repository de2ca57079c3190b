//! Configuration of every part, loaded in layers by `svckit::config` (defaults, `--config`
//! file, `STREAMGATE_*` environment variables, `--set key=value`), then overridden by the
//! subcommands' own flags, then validated (style.md 2.4).
//!
//! ```toml
//! [discovery]
//! registry_url = "http://127.0.0.1:7400"   # empty: use the static lists below
//! # or etcd (a 3-member cluster; see crate::etcd):
//! # backend = "etcd"
//! # endpoints = ["127.0.0.1:2379", "127.0.0.1:22379", "127.0.0.1:32379"]
//! # prefix = "/streamgate"
//! # lease_ttl_s = 5
//! # user = "streamgate"   # password through STREAMGATE_DISCOVERY__PASSWORD
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

use crate::discovery::{AnyDiscovery, Registrar, StaticDiscovery};
use crate::error::ConfigError;
use crate::etcd::{EtcdClient, EtcdDiscovery, EtcdSettings};
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

/// Which discovery backend (`discovery.backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The embedded HTTP registry at `registry_url` (the static lists when it is empty).
    #[default]
    Registry,
    /// The static lists only.
    Static,
    /// etcd v3 at `endpoints` ([`crate::etcd`]).
    Etcd,
}

/// Discovery settings (`[discovery]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// `registry` (default), `static` or `etcd`.
    pub backend: Backend,
    /// The registry's base URL (default `http://127.0.0.1:7400`); empty to use the static
    /// lists instead (and not register anywhere).
    pub registry_url: String,
    /// Media servers used by the `static` backend (or an empty `registry_url`).
    pub media: Vec<MediaRecord>,
    /// Forwarders used by the `static` backend (or an empty `registry_url`).
    pub forwarders: Vec<ForwarderRecord>,
    /// The bearer credential sent to the registry (set it through
    /// `STREAMGATE_DISCOVERY__TOKEN` rather than a file or the command line).
    pub token: Secret,
    /// etcd: the members' client URLs, `host:port` or `http://host:port` (default
    /// `["127.0.0.1:2379"]`); calls fail over between them.
    pub endpoints: Vec<String>,
    /// etcd: key prefix (default `/streamgate`).
    pub prefix: String,
    /// etcd: lease TTL of registrations, seconds (default 5; kept alive every third).
    pub lease_ttl_s: u64,
    /// etcd: deadline of one call across all endpoints, ms (default 3000).
    pub request_timeout_ms: u64,
    /// etcd: user for authentication (empty, the default: none).
    pub user: String,
    /// etcd: the user's password (set it through `STREAMGATE_DISCOVERY__PASSWORD`).
    pub password: Secret,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Registry,
            registry_url: "http://127.0.0.1:7400".to_owned(),
            media: Vec::new(),
            forwarders: Vec::new(),
            token: Secret::default(),
            endpoints: vec!["127.0.0.1:2379".to_owned()],
            prefix: crate::etcd::DEFAULT_PREFIX.to_owned(),
            lease_ttl_s: 5,
            request_timeout_ms: 3000,
            user: String::new(),
            password: Secret::default(),
        }
    }
}

impl DiscoveryConfig {
    /// The registry client, when the HTTP registry is configured.
    pub fn registry(&self) -> Option<RegistryClient> {
        (self.backend == Backend::Registry && !self.registry_url.trim().is_empty())
            .then(|| RegistryClient::new(&self.registry_url).with_token(&self.token))
    }

    /// The etcd client, when etcd is configured.
    ///
    /// # Errors
    /// [`ConfigError`] for unusable etcd settings.
    pub fn etcd(&self) -> Result<Option<EtcdClient>, ConfigError> {
        if self.backend != Backend::Etcd {
            return Ok(None);
        }
        let settings = EtcdSettings::new(
            &self.endpoints,
            &self.prefix,
            self.lease_ttl_s,
            self.request_timeout_ms,
            &self.user,
            &self.password,
        )?;
        Ok(Some(EtcdClient::new(settings)))
    }

    /// Where media servers and forwarders register: the HTTP registry or etcd, `None` for
    /// the static lists.
    ///
    /// # Errors
    /// [`ConfigError`] for unusable etcd settings.
    pub fn registrar(&self) -> Result<Option<Registrar>, ConfigError> {
        if let Some(client) = self.etcd()? {
            return Ok(Some(Registrar::Etcd(client)));
        }
        Ok(self.registry().map(Registrar::Registry))
    }

    /// The discovery source: the registry if configured, etcd, or the static lists.
    ///
    /// # Errors
    /// [`ConfigError`] for unusable etcd settings.
    pub fn source(&self) -> Result<AnyDiscovery, ConfigError> {
        if let Some(client) = self.etcd()? {
            return Ok(AnyDiscovery::Etcd(EtcdDiscovery::new(client)));
        }
        Ok(match self.registry() {
            Some(client) => AnyDiscovery::Registry(client),
            None => AnyDiscovery::Static(StaticDiscovery {
                media: self.media.clone(),
                forwarders: self.forwarders.clone(),
            }),
        })
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
        assert!(matches!(
            config.discovery.source().unwrap(),
            AnyDiscovery::Static(_)
        ));
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

    #[tokio::test]
    async fn the_etcd_backend_is_selected_and_checked() {
        let config: Config = svckit::config::load(&svckit::config::Sources::new().overrides(&[
            "discovery.backend=\"etcd\"".to_owned(),
            "discovery.endpoints=[\"127.0.0.1:1\", \"127.0.0.1:2\"]".to_owned(),
            "discovery.lease_ttl_s=2".to_owned(),
        ]))
        .unwrap();
        assert!(matches!(
            config.discovery.source().unwrap(),
            AnyDiscovery::Etcd(_)
        ));
        assert!(matches!(
            config.discovery.registrar().unwrap(),
            Some(Registrar::Etcd(_))
        ));
        assert!(config.discovery.registry().is_none());
        let mut bad = config.discovery;
        bad.endpoints.clear();
        assert!(
            bad.source()
                .unwrap_err()
                .to_string()
                .contains("discovery.endpoints")
        );
    }
}
