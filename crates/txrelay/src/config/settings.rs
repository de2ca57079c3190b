//! The validated runtime configuration ([`Settings`]) and [`Config::validate`], which builds
//! it: every value checked against its documented range once, right after loading, so code
//! after start-up never re-checks configuration (style.md 2.4).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use alloy::primitives::Address;
use ipnet::IpNet;
use svckit::redact::SafeUrl;
use url::Url;

use super::{AccountMode, Config};
use crate::core::ratelimit::Quota;
use crate::error::ConfigError;
use crate::secrets::SecretBox;

/// Validated settings of one chain.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// The chain id.
    pub chain_id: u64,
    /// Node URLs, in preference order (credentials redacted in logs).
    pub rpc_urls: Vec<SafeUrl>,
    /// WebSocket URLs for the head subscription, in preference order.
    pub ws_urls: Vec<SafeUrl>,
    /// Confirmations before delivery (>= 1).
    pub confirmations: u64,
}

/// Exponential backoff parameters (see [`crate::core::backoff`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffSettings {
    /// Delay before the second attempt.
    pub initial: Duration,
    /// Cap on any delay.
    pub max: Duration,
    /// Attempts before giving up (>= 1).
    pub max_attempts: u32,
}

/// Limits of the public listener (see [`crate::server`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections held open at once.
    pub max_connections: usize,
    /// Time for request headers (and keep-alive idle time).
    pub header_timeout: Duration,
    /// Time until response headers.
    pub request_timeout: Duration,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
}

/// EIP-4361 sign-in settings.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// The domain messages must name.
    pub domain: String,
    /// The URI clients are told to use.
    pub uri: String,
    /// Nonce lifetime.
    pub nonce_ttl: Duration,
    /// Longest message validity.
    pub max_validity: Duration,
    /// Tolerated clock difference.
    pub skew: Duration,
}

/// Circuit breaker parameters of webhook receivers (see [`crate::core::breaker`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open a receiver's circuit (>= 1).
    pub failures: u32,
    /// First wait before a probe.
    pub probe_initial: Duration,
    /// Longest wait between probes.
    pub probe_max: Duration,
}

/// The validated configuration the relay runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// API listen address.
    pub listen: SocketAddr,
    /// Operations listen address.
    pub ops_listen: SocketAddr,
    /// This instance's name.
    pub instance_id: String,
    /// Database URL (password redacted in logs).
    pub database_url: SafeUrl,
    /// PostgreSQL pool size.
    pub max_connections: u32,
    /// Group commit of submissions (batch, linger, queue bound).
    pub group_commit: crate::store::GroupSettings,
    /// Encrypts webhook secrets at rest.
    pub secrets: SecretBox,
    /// Sign-in settings.
    pub sign_in: SignInSettings,
    /// The default per-key request quota.
    pub key_quota: Quota,
    /// Database lookups of uncached keys, across callers.
    pub key_lookup_quota: Quota,
    /// How long a looked-up key is trusted.
    pub key_cache: Duration,
    /// Receivers per device.
    pub max_receivers_per_device: usize,
    /// Devices per tenant.
    pub max_devices_per_tenant: u64,
    /// WebSocket sessions per key.
    pub max_sockets_per_key: usize,
    /// Public listener limits.
    pub listener: ListenerLimits,
    /// WebSocket idle limit.
    pub ws_idle_timeout: Duration,
    /// Networks allowed for webhooks despite the deny list.
    pub outbound_allow: Vec<IpNet>,
    /// Further networks denied for webhooks.
    pub outbound_deny: Vec<IpNet>,
    /// Account rule.
    pub account_mode: AccountMode,
    /// Allowed accounts.
    pub allow: BTreeSet<Address>,
    /// Denied accounts.
    pub deny: BTreeSet<Address>,
    /// Idempotency window.
    pub idempotency_window: Duration,
    /// Lifetime of an `Idempotency-Key` answer.
    pub idempotency_key_ttl: Duration,
    /// Broadcast retry schedule.
    pub broadcast_backoff: BackoffSettings,
    /// Per-request node timeout.
    pub rpc_timeout: Duration,
    /// Cool-down of a failed node URL.
    pub node_cooldown: Duration,
    /// Transactions per broadcast batch.
    pub broadcast_batch: u32,
    /// Broadcast job lease.
    pub broadcast_lease: Duration,
    /// Subscribe to new heads.
    pub subscribe_heads: bool,
    /// Head poll interval.
    pub poll_interval: Duration,
    /// Interval of the follower's scans of every unfinished transaction.
    pub full_scan_interval: Duration,
    /// Rebroadcast timeout.
    pub rebroadcast_after: Duration,
    /// Reorg watch depth in blocks.
    pub reorg_watch_blocks: u64,
    /// Receipts per batch (>= 1).
    pub receipt_batch_size: usize,
    /// Blocks before a `stuck` notice.
    pub stuck_after_blocks: u64,
    /// Quiet time before a sender's lowest pending transaction is checked with the node.
    pub nonce_watch_after: Duration,
    /// A transaction's lifetime.
    pub lifetime: Duration,
    /// Unfinished transactions accepted at most.
    pub max_tracked: u64,
    /// Webhook retry schedule.
    pub delivery_backoff: BackoffSettings,
    /// How long a notification is retried.
    pub delivery_retry_for: Duration,
    /// Receiver circuit breaker.
    pub breaker: BreakerSettings,
    /// Webhook POST timeout.
    pub delivery_timeout: Duration,
    /// Webhook POSTs in flight.
    pub delivery_in_flight: u32,
    /// Notifications claimed at once.
    pub delivery_batch: u32,
    /// Notification lease.
    pub delivery_lease: Duration,
    /// Delivery poll interval.
    pub delivery_poll_interval: Duration,
    /// WebSocket acknowledgement timeout.
    pub ack_timeout: Duration,
    /// Retention of finished rows.
    pub retain_finished: Duration,
    /// Retention of dead letters.
    pub retain_dead: Duration,
    /// Clean-up interval.
    pub retention_interval: Duration,
    /// Chains by id.
    pub chains: BTreeMap<u64, ChainSettings>,
}

fn range(key: &'static str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange {
            key,
            value,
            min,
            max,
        })
    }
}

fn ms(key: &'static str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    range(key, value, min, max).map(Duration::from_millis)
}

fn secs(key: &'static str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    range(key, value, min, max).map(Duration::from_secs)
}

fn count(key: &'static str, value: u64, min: u64, max: u64) -> Result<u32, ConfigError> {
    range(key, value, min, max).map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

fn size(key: &'static str, value: usize, min: u64, max: u64) -> Result<usize, ConfigError> {
    range(key, value as u64, min, max).map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

fn accounts(list: &'static str, values: &[String]) -> Result<BTreeSet<Address>, ConfigError> {
    values
        .iter()
        .map(|value| {
            value
                .trim()
                .parse::<Address>()
                .map_err(|_| ConfigError::BadAccount {
                    list,
                    value: value.clone(),
                })
        })
        .collect()
}

fn networks(list: &'static str, values: &[String]) -> Result<Vec<IpNet>, ConfigError> {
    values
        .iter()
        .map(|value| {
            let text = value.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::BadNetwork {
                    list,
                    value: value.clone(),
                })
        })
        .collect()
}

fn node_url(chain_id: u64, text: &str, schemes: [&str; 2]) -> Result<SafeUrl, ConfigError> {
    let url = Url::parse(text.trim()).map_err(|source| ConfigError::BadRpcUrl {
        chain_id,
        url: text.to_owned(),
        reason: source.to_string(),
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::BadRpcUrl {
            chain_id,
            url: SafeUrl::new(url).to_string(),
            reason: format!("the scheme must be {} or {}", schemes[0], schemes[1]),
        });
    }
    Ok(SafeUrl::new(url))
}

/// The WebSocket URL of an RPC URL: `ws://` for `http://`, `wss://` for `https://`.
fn ws_of(rpc: &SafeUrl) -> Option<SafeUrl> {
    let mut url = rpc.expose().clone();
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme).ok()?;
    Some(SafeUrl::new(url))
}

fn chains(config: &Config) -> Result<BTreeMap<u64, ChainSettings>, ConfigError> {
    if config.chains.is_empty() {
        return Err(ConfigError::NoChains);
    }
    let mut chains = BTreeMap::new();
    for chain in &config.chains {
        if chain.chain_id == 0 {
            return Err(ConfigError::ZeroChainId);
        }
        if chain.rpc_urls.is_empty() {
            return Err(ConfigError::NoRpcUrl {
                chain_id: chain.chain_id,
            });
        }
        let rpc_urls = chain
            .rpc_urls
            .iter()
            .map(|url| node_url(chain.chain_id, url, ["http", "https"]))
            .collect::<Result<Vec<_>, _>>()?;
        let ws_urls = if chain.ws_urls.is_empty() {
            rpc_urls.iter().filter_map(ws_of).collect()
        } else {
            chain
                .ws_urls
                .iter()
                .map(|url| node_url(chain.chain_id, url, ["ws", "wss"]))
                .collect::<Result<Vec<_>, _>>()?
        };
        let settings = ChainSettings {
            chain_id: chain.chain_id,
            rpc_urls,
            ws_urls,
            confirmations: range("chains.confirmations", chain.confirmations, 1, 64)?,
        };
        if chains.insert(chain.chain_id, settings).is_some() {
            return Err(ConfigError::DuplicateChain {
                chain_id: chain.chain_id,
            });
        }
    }
    Ok(chains)
}

fn database_url(config: &Config) -> Result<SafeUrl, ConfigError> {
    let url =
        Url::parse(config.database.url.trim()).map_err(|source| ConfigError::BadDatabaseUrl {
            url: config.database.url.clone(),
            reason: source.to_string(),
        })?;
    if !matches!(url.scheme(), "sqlite" | "postgres" | "postgresql") {
        return Err(ConfigError::BadDatabaseUrl {
            url: SafeUrl::new(url).to_string(),
            reason: "the scheme must be sqlite, postgres or postgresql".to_owned(),
        });
    }
    Ok(SafeUrl::new(url))
}

fn quota(rate: u32, burst: u32) -> Quota {
    Quota {
        rate: f64::from(rate),
        burst: f64::from(burst.max(1)),
    }
}

impl Config {
    /// Checks every value and converts it into [`Settings`].
    ///
    /// # Errors
    /// The first [`ConfigError`] found: no chains, a duplicate chain id, a chain without node
    /// URLs, a malformed URL, account or network, a missing or malformed `secrets.key`, an
    /// unsupported database scheme or a value out of its documented range.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let database_url = database_url(self)?;
        if self.instance_id.trim().is_empty() {
            return Err(ConfigError::EmptyInstanceId);
        }
        let chains = chains(self)?;
        let secrets = SecretBox::from_config(&self.secrets)?;
        let (a, l, b, t, d, r) = (
            &self.auth,
            &self.limits,
            &self.broadcast,
            &self.tracking,
            &self.delivery,
            &self.retention,
        );
        if a.domain.trim().is_empty() || a.domain.contains(char::is_whitespace) {
            return Err(ConfigError::BadDomain(a.domain.clone()));
        }
        let uri = if a.uri.trim().is_empty() {
            format!("https://{}", a.domain.trim())
        } else {
            a.uri.trim().to_owned()
        };
        Ok(Settings {
            listen: self.listen,
            ops_listen: self.ops_listen,
            instance_id: self.instance_id.trim().to_owned(),
            database_url,
            max_connections: count(
                "database.max_connections",
                u64::from(self.database.max_connections),
                1,
                64,
            )?,
            group_commit: crate::store::GroupSettings {
                max_batch: count(
                    "database.commit_batch",
                    u64::from(self.database.commit_batch),
                    1,
                    4096,
                )? as usize,
                linger: ms(
                    "database.commit_linger_ms",
                    self.database.commit_linger_ms,
                    0,
                    1_000,
                )?,
                queue: count(
                    "database.submit_queue",
                    u64::from(self.database.submit_queue),
                    1,
                    1_000_000,
                )? as usize,
            },
            secrets,
            sign_in: SignInSettings {
                domain: a.domain.trim().to_owned(),
                uri,
                nonce_ttl: secs("auth.nonce_ttl_seconds", a.nonce_ttl_seconds, 10, 86_400)?,
                max_validity: secs(
                    "auth.max_message_validity_seconds",
                    a.max_message_validity_seconds,
                    10,
                    7 * 86_400,
                )?,
                skew: secs("auth.clock_skew_seconds", a.clock_skew_seconds, 0, 3_600)?,
            },
            key_quota: quota(
                count(
                    "limits.requests_per_second",
                    u64::from(l.requests_per_second),
                    1,
                    1_000_000,
                )?,
                count("limits.burst", u64::from(l.burst), 1, 1_000_000)?,
            ),
            key_lookup_quota: quota(
                count(
                    "limits.key_lookups_per_second",
                    u64::from(l.key_lookups_per_second),
                    1,
                    100_000,
                )?,
                l.key_lookups_per_second,
            ),
            key_cache: secs("auth.key_cache_seconds", a.key_cache_seconds, 0, 3_600)?,
            max_receivers_per_device: size(
                "limits.max_receivers_per_device",
                l.max_receivers_per_device,
                1,
                1_000,
            )?,
            max_devices_per_tenant: range(
                "limits.max_devices_per_tenant",
                l.max_devices_per_tenant,
                1,
                10_000_000,
            )?,
            max_sockets_per_key: size(
                "limits.max_sockets_per_key",
                l.max_sockets_per_key,
                1,
                100_000,
            )?,
            listener: ListenerLimits {
                max_connections: size("limits.max_connections", l.max_connections, 1, 1_000_000)?,
                header_timeout: ms(
                    "limits.header_timeout_ms",
                    l.header_timeout_ms,
                    100,
                    600_000,
                )?,
                request_timeout: ms(
                    "limits.request_timeout_ms",
                    l.request_timeout_ms,
                    100,
                    3_600_000,
                )?,
                max_body_bytes: size("limits.max_body_bytes", l.max_body_bytes, 1_024, 64 << 20)?,
            },
            ws_idle_timeout: ms(
                "limits.ws_idle_timeout_ms",
                l.ws_idle_timeout_ms,
                1_000,
                86_400_000,
            )?,
            outbound_allow: networks("outbound.allow", &self.outbound.allow)?,
            outbound_deny: networks("outbound.deny", &self.outbound.deny)?,
            account_mode: self.accounts.mode,
            allow: accounts("accounts.allow", &self.accounts.allow)?,
            deny: accounts("accounts.deny", &self.accounts.deny)?,
            idempotency_window: secs(
                "idempotency.window_seconds",
                self.idempotency.window_seconds,
                1,
                30 * 86_400,
            )?,
            idempotency_key_ttl: secs(
                "idempotency.key_ttl_seconds",
                self.idempotency.key_ttl_seconds,
                1,
                30 * 86_400,
            )?,
            broadcast_backoff: BackoffSettings {
                initial: ms(
                    "broadcast.initial_backoff_ms",
                    b.initial_backoff_ms,
                    1,
                    3_600_000,
                )?,
                max: ms("broadcast.max_backoff_ms", b.max_backoff_ms, 1, 86_400_000)?,
                max_attempts: u32::MAX,
            },
            rpc_timeout: ms("broadcast.rpc_timeout_ms", b.rpc_timeout_ms, 10, 600_000)?,
            node_cooldown: ms(
                "broadcast.node_cooldown_ms",
                b.node_cooldown_ms,
                0,
                3_600_000,
            )?,
            broadcast_batch: count("broadcast.batch", u64::from(b.batch), 1, 1_000)?,
            broadcast_lease: ms("broadcast.lease_ms", b.lease_ms, 100, 86_400_000)?,
            subscribe_heads: t.subscribe_heads,
            poll_interval: ms("tracking.poll_interval_ms", t.poll_interval_ms, 5, 600_000)?,
            full_scan_interval: ms(
                "tracking.full_scan_interval_ms",
                t.full_scan_interval_ms,
                10,
                600_000,
            )?,
            rebroadcast_after: ms(
                "tracking.rebroadcast_after_ms",
                t.rebroadcast_after_ms,
                10,
                86_400_000,
            )?,
            reorg_watch_blocks: range(
                "tracking.reorg_watch_blocks",
                t.reorg_watch_blocks,
                0,
                10_000,
            )?,
            receipt_batch_size: size(
                "tracking.receipt_batch_size",
                t.receipt_batch_size,
                1,
                1_000,
            )?,
            stuck_after_blocks: range(
                "tracking.stuck_after_blocks",
                t.stuck_after_blocks,
                1,
                1_000_000,
            )?,
            nonce_watch_after: ms(
                "tracking.nonce_watch_after_ms",
                t.nonce_watch_after_ms,
                10,
                86_400_000,
            )?,
            lifetime: secs(
                "tracking.lifetime_seconds",
                t.lifetime_seconds,
                1,
                365 * 86_400,
            )?,
            max_tracked: range("tracking.max_tracked", t.max_tracked, 1, 1_000_000_000)?,
            delivery_backoff: BackoffSettings {
                initial: ms(
                    "delivery.initial_backoff_ms",
                    d.initial_backoff_ms,
                    1,
                    3_600_000,
                )?,
                max: ms("delivery.max_backoff_ms", d.max_backoff_ms, 1, 86_400_000)?,
                max_attempts: count(
                    "delivery.max_attempts",
                    u64::from(d.max_attempts),
                    1,
                    10_000,
                )?,
            },
            delivery_retry_for: secs(
                "delivery.retry_for_seconds",
                d.retry_for_seconds,
                1,
                30 * 86_400,
            )?,
            breaker: BreakerSettings {
                failures: count(
                    "delivery.breaker_failures",
                    u64::from(d.breaker_failures),
                    1,
                    1_000,
                )?,
                probe_initial: ms(
                    "delivery.probe_initial_ms",
                    d.probe_initial_ms,
                    1,
                    3_600_000,
                )?,
                probe_max: ms("delivery.probe_max_ms", d.probe_max_ms, 1, 86_400_000)?,
            },
            delivery_timeout: ms("delivery.timeout_ms", d.timeout_ms, 10, 600_000)?,
            delivery_in_flight: count(
                "delivery.max_in_flight",
                u64::from(d.max_in_flight),
                1,
                10_000,
            )?,
            delivery_batch: count("delivery.batch", u64::from(d.batch), 1, 10_000)?,
            delivery_lease: ms("delivery.lease_ms", d.lease_ms, 100, 86_400_000)?,
            delivery_poll_interval: ms(
                "delivery.poll_interval_ms",
                d.poll_interval_ms,
                5,
                600_000,
            )?,
            ack_timeout: ms("delivery.ack_timeout_ms", d.ack_timeout_ms, 10, 3_600_000)?,
            retain_finished: secs(
                "retention.finished_seconds",
                r.finished_seconds,
                1,
                3_650 * 86_400,
            )?,
            retain_dead: secs(
                "retention.dead_letter_seconds",
                r.dead_letter_seconds,
                1,
                3_650 * 86_400,
            )?,
            retention_interval: secs("retention.interval_seconds", r.interval_seconds, 1, 86_400)?,
            chains,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChainConfig;

    /// A valid secrets key for tests.
    pub(crate) const TEST_KEY: &str =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn one_chain() -> Config {
        let mut config = Config {
            chains: vec![ChainConfig {
                chain_id: 31337,
                rpc_urls: vec!["http://127.0.0.1:8545".to_owned()],
                ..ChainConfig::default()
            }],
            ..Config::default()
        };
        config.secrets.key = TEST_KEY.to_owned();
        config
    }

    #[test]
    fn defaults_with_one_chain_validate() {
        let settings = one_chain().validate().unwrap();
        assert_eq!(settings.chains.len(), 1);
        assert_eq!(settings.idempotency_window, Duration::from_secs(600));
        assert_eq!(settings.account_mode, AccountMode::Registered);
        assert_eq!(settings.sign_in.uri, "https://localhost");
        assert_eq!(
            settings.chains[&31337].ws_urls[0].expose().as_str(),
            "ws://127.0.0.1:8545/"
        );
        assert_eq!(settings.delivery_retry_for, Duration::from_secs(86_400));
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut config = one_chain();
        config.chains[0].confirmations = 0;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::OutOfRange {
                key: "chains.confirmations",
                ..
            })
        ));
        let mut config = one_chain();
        config.accounts.deny = vec!["0xnothex".to_owned()];
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BadAccount {
                list: "accounts.deny",
                ..
            })
        ));
        let mut config = one_chain();
        config.chains.push(config.chains[0].clone());
        assert!(matches!(
            config.validate(),
            Err(ConfigError::DuplicateChain { chain_id: 31337 })
        ));
        let mut config = Config::default();
        config.secrets.key = TEST_KEY.to_owned();
        assert!(matches!(config.validate(), Err(ConfigError::NoChains)));
        let mut config = one_chain();
        config.database.url = "mysql://x".to_owned();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BadDatabaseUrl { .. })
        ));
        let mut config = one_chain();
        config.chains[0].rpc_urls = vec!["ws://127.0.0.1:8545".to_owned()];
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BadRpcUrl { .. })
        ));
        let mut config = one_chain();
        config.outbound.allow = vec!["127.0.0.1/33".to_owned()];
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BadNetwork { .. })
        ));
        let mut config = one_chain();
        config.secrets.key = String::new();
        assert!(matches!(config.validate(), Err(ConfigError::SecretsKey(_))));
        config.secrets.key = "abcd".to_owned();
        assert!(matches!(config.validate(), Err(ConfigError::SecretsKey(_))));
    }
}
