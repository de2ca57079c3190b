//! Discovery on etcd v3 (issue 12 item 7): a registry that is not a single point of failure.
//! The embedded HTTP registry ([`crate::registry`]) stays the default; `[discovery] backend =
//! "etcd"` selects this one.
//!
//! **Keys.** A media server holds `{prefix}/media/{label}`, a forwarder
//! `{prefix}/forwarders/{service}/{namespace}`; the value is the
//! [`MediaRecord`](crate::registry::MediaRecord) or
//! [`ForwarderRecord`](crate::registry::ForwarderRecord) as JSON. Each key is attached to a
//! lease of `lease_ttl_s` seconds that its holder keeps alive every third of the TTL
//! ([`register`]). A key is claimed with a transaction `CreateRevision(key) == 0 ? put :
//! range`, so a second claim of a live label is refused (the claimant keeps trying until the
//! key is free), never a takeover; a holder whose lease ran out (etcd unreachable longer than
//! the TTL, or the process stalled) grants a new lease and claims again instead of stopping.
//! Stopping revokes the lease, which deletes the key at once; a killed process's key goes
//! when its lease expires.
//!
//! **Watching.** Forwarders and the proxy list the prefix, then watch it from the listed
//! revision + 1, and answer [`Discovery`](crate::discovery::Discovery) from that cache
//! ([`cache`]): `media(label)` without a round trip, `routes(since, wait)` as a long-poll on
//! the version, which is the etcd revision. A watch that breaks (its member died), is
//! cancelled or compacted, or has run for [`cache::RESYNC`], is replaced by a fresh list and
//! watch; the cache keeps answering meanwhile, so open viewers are never affected.
//!
//! **Endpoints.** Every call has a deadline (`request_timeout_ms`), tries the endpoint that
//! answered last and fails over to the next one on a transport error, a timeout, or an
//! "unavailable" answer (a member without a leader during an election); a member that hangs
//! gets at most half of the deadline. With `user` set, the client authenticates
//! (`/v3/auth/authenticate`), sends the token, and authenticates again when the token is
//! refused (simple tokens expire).
//!
//! **Why the JSON gateway and not `etcd-client`.** Debian 12's `etcd-server` is etcd 3.4.23,
//! whose gRPC gateway serves `/v3/kv/range`, `/v3/kv/txn`, `/v3/lease/grant`,
//! `/v3/lease/keepalive`, `/v3/lease/revoke`, `/v3/watch` (newline-delimited JSON) and
//! `/v3/maintenance/status` with base64 keys and values ([`wire`]). The calls go through the
//! hyper client every hop already uses ([`crate::hop::HopClient`]), so the backend adds no
//! crate to the build (`base64` was already in the tree); `etcd-client` would bring tonic,
//! prost and a protobuf build step for the same six calls. What the gateway costs: one HTTP/1.1
//! request per unary call (no multiplexing), keep-alive as one request per renewal rather than
//! a stream, and no TLS (streamgate has no TLS stack; endpoints must be `http://`, so run etcd
//! on a private network or loopback).

pub mod cache;
pub mod client;
pub mod register;
pub mod wire;

use std::time::Duration;

use svckit::redact::Secret;

pub use cache::EtcdDiscovery;
pub use client::{Claim, EtcdClient, WatchStream};

use crate::error::{ConfigError, HopError};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "/streamgate";

/// What the etcd backend needs, validated (from [`crate::config::DiscoveryConfig`]).
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// Base URLs of the members' client ports, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Key prefix without a trailing `/`, e.g. `/streamgate`.
    pub prefix: String,
    /// Lease TTL of registrations, whole seconds (at least 1; etcd raises TTLs below its
    /// minimum, 1.5 election timeouts, to that minimum).
    pub lease_ttl_s: u64,
    /// Deadline of one call across all endpoints.
    pub request_timeout: Duration,
    /// etcd user (empty: no authentication).
    pub user: String,
    /// Its password.
    pub password: Secret,
}

impl EtcdSettings {
    /// Settings for `endpoints` (`host:port` or `http://host:port`), `prefix`, a lease of
    /// `lease_ttl_s` s, a call deadline of `request_timeout_ms` ms, and `user`/`password`
    /// (no authentication when `user` is empty).
    ///
    /// # Errors
    /// [`ConfigError`] naming the `discovery.*` key: no endpoints, an endpoint that is not an
    /// `http://` URL with a host and port, a TTL of 0, a deadline under 100 ms.
    pub fn new(
        endpoints: &[String],
        prefix: &str,
        lease_ttl_s: u64,
        request_timeout_ms: u64,
        user: &str,
        password: &Secret,
    ) -> Result<Self, ConfigError> {
        if endpoints.is_empty() {
            return Err(ConfigError::Missing {
                key: "discovery.endpoints",
            });
        }
        let mut bases = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let text = endpoint.trim().trim_end_matches('/');
            let with_scheme = if text.contains("://") {
                text.to_owned()
            } else {
                format!("http://{text}")
            };
            let invalid = |reason| ConfigError::Invalid {
                key: "discovery.endpoints".to_owned(),
                value: endpoint.clone(),
                reason,
            };
            let url = url::Url::parse(&with_scheme).map_err(|_| invalid("not a URL"))?;
            if url.scheme() != "http" {
                return Err(invalid("must be http:// (streamgate has no TLS stack)"));
            }
            if url.host_str().is_none()
                || url.port_or_known_default().is_none()
                || url.path() != "/"
            {
                return Err(invalid("must be http://host:port without a path"));
            }
            bases.push(with_scheme);
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.starts_with('/') {
            return Err(ConfigError::Invalid {
                key: "discovery.prefix".to_owned(),
                value: prefix.to_owned(),
                reason: "must start with `/`",
            });
        }
        if lease_ttl_s == 0 {
            return Err(ConfigError::Invalid {
                key: "discovery.lease_ttl_s".to_owned(),
                value: lease_ttl_s.to_string(),
                reason: "must be at least 1 s",
            });
        }
        if request_timeout_ms < 100 {
            return Err(ConfigError::Invalid {
                key: "discovery.request_timeout_ms".to_owned(),
                value: request_timeout_ms.to_string(),
                reason: "must be at least 100 ms",
            });
        }
        Ok(Self {
            endpoints: bases,
            prefix: prefix.to_owned(),
            lease_ttl_s,
            request_timeout: Duration::from_millis(request_timeout_ms),
            user: user.to_owned(),
            password: password.clone(),
        })
    }

    /// The prefix watched by discovery: `{prefix}/`.
    pub fn watched(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The key of a media server: `{prefix}/media/{label}`.
    pub fn media_key(&self, label: &str) -> String {
        format!("{}/media/{label}", self.prefix)
    }

    /// The key of a forwarder: `{prefix}/forwarders/{service}/{namespace}`.
    pub fn forwarder_key(&self, service: &str, namespace: &str) -> String {
        format!("{}/forwarders/{service}/{namespace}", self.prefix)
    }
}

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// No member answered within the call's deadline.
    #[error("etcd {what}: no member answered in time (last: {reason})")]
    Unavailable {
        /// The call (gateway path).
        what: String,
        /// The last member's failure.
        reason: String,
    },
    /// A member refused the call (bad credentials, permission denied, invalid request).
    #[error("etcd refused the call ({status}): {reason}")]
    Refused {
        /// The gateway's HTTP status.
        status: u16,
        /// Its message.
        reason: String,
    },
    /// An answer that is not what the gateway sends, or a request that cannot be built.
    #[error("etcd answer unusable: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
}

impl From<EtcdError> for HopError {
    fn from(error: EtcdError) -> Self {
        Self::Registry {
            reason: error.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let ok = EtcdSettings::new(
            &[
                "127.0.0.1:2379".to_owned(),
                "http://127.0.0.1:2380/".to_owned(),
            ],
            "/sg/",
            3,
            2000,
            "",
            &Secret::default(),
        )
        .unwrap();
        assert_eq!(
            ok.endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.1:2380"]
        );
        assert_eq!(ok.media_key("media-a"), "/sg/media/media-a");
        assert_eq!(ok.forwarder_key("S", "N"), "/sg/forwarders/S/N");
        for (endpoints, prefix, ttl, key) in [
            (vec![], "/sg", 3, "discovery.endpoints"),
            (
                vec!["https://h:1".to_owned()],
                "/sg",
                3,
                "discovery.endpoints",
            ),
            (vec!["h:1/x".to_owned()], "/sg", 3, "discovery.endpoints"),
            (vec!["h:1".to_owned()], "sg", 3, "discovery.prefix"),
            (vec!["h:1".to_owned()], "/sg", 0, "discovery.lease_ttl_s"),
        ] {
            let error = EtcdSettings::new(&endpoints, prefix, ttl, 2000, "", &Secret::default())
                .unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }
}
