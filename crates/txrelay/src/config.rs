//! Configuration: loaded in layers by `svckit::config` (defaults, `--config` file, `TXRELAY_*`
//! environment variables, `--set key=value`), then validated once into [`Settings`]
//! (style.md 2.4: raw values, then a validated runtime object).
//!
//! ```toml
//! listen = "127.0.0.1:8645"
//! instance_id = "relay-a"
//!
//! [database]
//! url = "sqlite://txrelay.db"            # or postgres://relay@127.0.0.1:5432/postgres
//!
//! [accounts]
//! mode = "registered"                    # open | allow_list | registered
//! deny = ["0x000000000000000000000000000000000000dead"]
//!
//! [[chains]]
//! chain_id = 31337
//! rpc_urls = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
//! confirmations = 1
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use alloy::primitives::Address;
use serde::{Deserialize, Serialize};
use svckit::redact::SafeUrl;
use url::Url;

use crate::error::ConfigError;

/// Prefix of the environment variables read as configuration, e.g.
/// `TXRELAY_DATABASE__URL=postgres://relay@127.0.0.1:5432/postgres` sets `database.url` and
/// `TXRELAY_IDEMPOTENCY__WINDOW_SECONDS=60` sets `idempotency.window_seconds`.
pub const ENV_PREFIX: &str = "TXRELAY_";

/// The configuration as read from its layers (every field has a default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on (default `127.0.0.1:8645`; loopback only in tests).
    pub listen: SocketAddr,
    /// Name of this relay instance, recorded on the jobs it claims. Give every instance that
    /// shares one PostgreSQL database its own id; a restarted instance releases the claims of
    /// its previous life at once (others wait for the lease to run out).
    pub instance_id: String,
    /// Where the relay keeps its state and outbox.
    pub database: DatabaseConfig,
    /// Which accounts may submit transactions (seed ¶29).
    pub accounts: AccountsConfig,
    /// Idempotency control (seed ¶30-36).
    pub idempotency: IdempotencyConfig,
    /// Submission to the nodes (seed ¶27).
    pub broadcast: BroadcastConfig,
    /// Following heads and receipts (seed ¶37-38).
    pub tracking: TrackingConfig,
    /// Webhook and WebSocket delivery of results (seed ¶39-47).
    pub delivery: DeliveryConfig,
    /// The chains the relay serves, each with its node URLs (seed ¶25, ¶27).
    pub chains: Vec<ChainConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8645)),
            instance_id: "relay".to_owned(),
            database: DatabaseConfig::default(),
            accounts: AccountsConfig::default(),
            idempotency: IdempotencyConfig::default(),
            broadcast: BroadcastConfig::default(),
            tracking: TrackingConfig::default(),
            delivery: DeliveryConfig::default(),
            chains: Vec::new(),
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created when missing; the default, `sqlite://txrelay.db`) or
    /// `postgres://USER@HOST:PORT/DB` (several instances may share it).
    pub url: String,
    /// Pool size for PostgreSQL, 1..=64 (SQLite always uses one connection: one writer).
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://txrelay.db".to_owned(),
            max_connections: 8,
        }
    }
}

/// How the legitimacy of the sending account is decided (seed ¶29).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountMode {
    /// Any account not on the deny list.
    Open,
    /// Only accounts on the allow list (and not on the deny list).
    AllowList,
    /// Accounts on the allow list or registered by a device with
    /// `PUT /v1/devices/{device}/notifications` (and not on the deny list).
    Registered,
}

/// `[accounts]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    /// The rule applied (default `registered`).
    pub mode: AccountMode,
    /// Accounts always allowed (0x-hex addresses), unless denied.
    pub allow: Vec<String>,
    /// Accounts always refused (0x-hex addresses).
    pub deny: Vec<String>,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            mode: AccountMode::Registered,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// `[idempotency]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdempotencyConfig {
    /// The preset period of seed ¶33, in seconds (default 600): an identical transaction
    /// submitted with `idempotent: true` within it is not sent again.
    pub window_seconds: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            window_seconds: 600,
        }
    }
}

/// `[broadcast]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BroadcastConfig {
    /// Attempts before a transaction no node accepts is given up as `rejected` (default 30).
    pub max_attempts: u32,
    /// First retry delay after a transient failure, in milliseconds (default 200).
    pub initial_backoff_ms: u64,
    /// Longest retry delay, in milliseconds (default 10 000).
    pub max_backoff_ms: u64,
    /// Timeout of one JSON-RPC request to a node, in milliseconds (default 5 000).
    pub rpc_timeout_ms: u64,
    /// How long a node URL that failed is skipped while others are healthy, in milliseconds
    /// (default 2 000).
    pub node_cooldown_ms: u64,
    /// Jobs one worker claims at a time (default 64).
    pub batch: u32,
    /// How long a claimed job stays reserved for its worker, in milliseconds (default 30 000);
    /// after that another worker may take it over.
    pub lease_ms: u64,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            max_attempts: 30,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            rpc_timeout_ms: 5_000,
            node_cooldown_ms: 2_000,
            batch: 64,
            lease_ms: 30_000,
        }
    }
}

/// `[tracking]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingConfig {
    /// How often each chain's head is polled, in milliseconds (default 100).
    pub poll_interval_ms: u64,
    /// A broadcast transaction with no receipt after this long is looked up in the node's
    /// pool and sent again with the same bytes when the pool does not hold it, in
    /// milliseconds (default 15 000).
    pub rebroadcast_after_ms: u64,
    /// Blocks after the confirming one during which a delivered result is still watched for
    /// reorgs (default 12).
    pub reorg_watch_blocks: u64,
    /// Receipts asked for in one JSON-RPC batch (default 100).
    pub receipt_batch_size: usize,
    /// "nonce too low" answers to rebroadcasts of a transaction without a receipt before it
    /// is declared replaced and given up (default 3).
    pub nonce_conflict_limit: u32,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 100,
            rebroadcast_after_ms: 15_000,
            reorg_watch_blocks: 12,
            receipt_batch_size: 100,
            nonce_conflict_limit: 3,
        }
    }
}

/// `[delivery]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts per webhook notification before it is dead-lettered (default 8).
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds (default 500); doubled per attempt.
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts, in milliseconds (default 60 000).
    pub max_backoff_ms: u64,
    /// Timeout of one webhook POST, in milliseconds (default 5 000).
    pub timeout_ms: u64,
    /// Notifications one worker claims at a time (default 128).
    pub batch: u32,
    /// How long a claimed notification stays reserved for its worker, in milliseconds
    /// (default 30 000).
    pub lease_ms: u64,
    /// How often workers look for due notifications besides being woken, in milliseconds
    /// (default 200).
    pub poll_interval_ms: u64,
    /// How long a WebSocket client has to acknowledge an event before it is offered again, in
    /// milliseconds (default 10 000).
    pub ack_timeout_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff_ms: 500,
            max_backoff_ms: 60_000,
            timeout_ms: 5_000,
            batch: 128,
            lease_ms: 30_000,
            poll_interval_ms: 200,
            ack_timeout_ms: 10_000,
        }
    }
}

/// One `[[chains]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// The EIP-155 chain id; requests name it in the path and transactions must carry it.
    pub chain_id: u64,
    /// JSON-RPC URLs of the chain's nodes (at least one); any healthy one is used.
    pub rpc_urls: Vec<String>,
    /// Blocks (counting the including one) before a result is delivered, 1..=64 (default 1).
    pub confirmations: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            chain_id: 0,
            rpc_urls: Vec::new(),
            confirmations: 1,
        }
    }
}

/// Validated settings of one chain.
#[derive(Debug, Clone)]
pub struct ChainSettings {
    /// The chain id.
    pub chain_id: u64,
    /// Node URLs, in preference order (credentials redacted in logs).
    pub rpc_urls: Vec<SafeUrl>,
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

/// The validated configuration the relay runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// API listen address.
    pub listen: SocketAddr,
    /// This instance's name.
    pub instance_id: String,
    /// Database URL (password redacted in logs).
    pub database_url: SafeUrl,
    /// PostgreSQL pool size.
    pub max_connections: u32,
    /// Account rule.
    pub account_mode: AccountMode,
    /// Allowed accounts.
    pub allow: BTreeSet<Address>,
    /// Denied accounts.
    pub deny: BTreeSet<Address>,
    /// Idempotency window.
    pub idempotency_window: Duration,
    /// Broadcast retry schedule.
    pub broadcast_backoff: BackoffSettings,
    /// Per-request node timeout.
    pub rpc_timeout: Duration,
    /// Cool-down of a failed node URL.
    pub node_cooldown: Duration,
    /// Broadcast jobs claimed at once.
    pub broadcast_batch: u32,
    /// Broadcast job lease.
    pub broadcast_lease: Duration,
    /// Head poll interval.
    pub poll_interval: Duration,
    /// Rebroadcast timeout.
    pub rebroadcast_after: Duration,
    /// Reorg watch depth in blocks.
    pub reorg_watch_blocks: u64,
    /// Receipts per batch (>= 1).
    pub receipt_batch_size: usize,
    /// Nonce conflicts before giving up.
    pub nonce_conflict_limit: u32,
    /// Webhook retry schedule.
    pub delivery_backoff: BackoffSettings,
    /// Webhook POST timeout.
    pub delivery_timeout: Duration,
    /// Notifications claimed at once.
    pub delivery_batch: u32,
    /// Notification lease.
    pub delivery_lease: Duration,
    /// Delivery poll interval.
    pub delivery_poll_interval: Duration,
    /// WebSocket acknowledgement timeout.
    pub ack_timeout: Duration,
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

fn rpc_url(chain_id: u64, text: &str) -> Result<SafeUrl, ConfigError> {
    let url = Url::parse(text.trim()).map_err(|source| ConfigError::BadRpcUrl {
        chain_id,
        url: text.to_owned(),
        reason: source.to_string(),
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(ConfigError::BadRpcUrl {
            chain_id,
            url: SafeUrl::new(url).to_string(),
            reason: "the scheme must be http or https".to_owned(),
        });
    }
    Ok(SafeUrl::new(url))
}

impl Config {
    /// Checks every value and converts it into [`Settings`].
    ///
    /// # Errors
    /// The first [`ConfigError`] found: no chains, a duplicate chain id, a chain without node
    /// URLs, a malformed URL or account, an unsupported database scheme or a value out of its
    /// documented range.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let database_url =
            Url::parse(self.database.url.trim()).map_err(|source| ConfigError::BadDatabaseUrl {
                url: self.database.url.clone(),
                reason: source.to_string(),
            })?;
        if !matches!(database_url.scheme(), "sqlite" | "postgres" | "postgresql") {
            return Err(ConfigError::BadDatabaseUrl {
                url: SafeUrl::new(database_url).to_string(),
                reason: "the scheme must be sqlite, postgres or postgresql".to_owned(),
            });
        }
        if self.instance_id.trim().is_empty() {
            return Err(ConfigError::EmptyInstanceId);
        }
        if self.chains.is_empty() {
            return Err(ConfigError::NoChains);
        }
        let mut chains = BTreeMap::new();
        for chain in &self.chains {
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
                .map(|url| rpc_url(chain.chain_id, url))
                .collect::<Result<Vec<_>, _>>()?;
            let settings = ChainSettings {
                chain_id: chain.chain_id,
                rpc_urls,
                confirmations: range("chains.confirmations", chain.confirmations, 1, 64)?,
            };
            if chains.insert(chain.chain_id, settings).is_some() {
                return Err(ConfigError::DuplicateChain {
                    chain_id: chain.chain_id,
                });
            }
        }
        let b = &self.broadcast;
        let t = &self.tracking;
        let d = &self.delivery;
        Ok(Settings {
            listen: self.listen,
            instance_id: self.instance_id.trim().to_owned(),
            database_url: SafeUrl::new(database_url),
            max_connections: u32::try_from(range(
                "database.max_connections",
                u64::from(self.database.max_connections),
                1,
                64,
            )?)
            .unwrap_or(8),
            account_mode: self.accounts.mode,
            allow: accounts("accounts.allow", &self.accounts.allow)?,
            deny: accounts("accounts.deny", &self.accounts.deny)?,
            idempotency_window: Duration::from_secs(range(
                "idempotency.window_seconds",
                self.idempotency.window_seconds,
                1,
                30 * 24 * 3600,
            )?),
            broadcast_backoff: BackoffSettings {
                initial: ms(
                    "broadcast.initial_backoff_ms",
                    b.initial_backoff_ms,
                    1,
                    3_600_000,
                )?,
                max: ms("broadcast.max_backoff_ms", b.max_backoff_ms, 1, 86_400_000)?,
                max_attempts: attempts("broadcast.max_attempts", b.max_attempts)?,
            },
            rpc_timeout: ms("broadcast.rpc_timeout_ms", b.rpc_timeout_ms, 10, 600_000)?,
            node_cooldown: ms(
                "broadcast.node_cooldown_ms",
                b.node_cooldown_ms,
                0,
                3_600_000,
            )?,
            broadcast_batch: batch("broadcast.batch", b.batch)?,
            broadcast_lease: ms("broadcast.lease_ms", b.lease_ms, 100, 86_400_000)?,
            poll_interval: ms("tracking.poll_interval_ms", t.poll_interval_ms, 5, 600_000)?,
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
            receipt_batch_size: usize::try_from(range(
                "tracking.receipt_batch_size",
                t.receipt_batch_size as u64,
                1,
                1_000,
            )?)
            .unwrap_or(100),
            nonce_conflict_limit: attempts(
                "tracking.nonce_conflict_limit",
                t.nonce_conflict_limit,
            )?,
            delivery_backoff: BackoffSettings {
                initial: ms(
                    "delivery.initial_backoff_ms",
                    d.initial_backoff_ms,
                    1,
                    3_600_000,
                )?,
                max: ms("delivery.max_backoff_ms", d.max_backoff_ms, 1, 86_400_000)?,
                max_attempts: attempts("delivery.max_attempts", d.max_attempts)?,
            },
            delivery_timeout: ms("delivery.timeout_ms", d.timeout_ms, 10, 600_000)?,
            delivery_batch: batch("delivery.batch", d.batch)?,
            delivery_lease: ms("delivery.lease_ms", d.lease_ms, 100, 86_400_000)?,
            delivery_poll_interval: ms(
                "delivery.poll_interval_ms",
                d.poll_interval_ms,
                5,
                600_000,
            )?,
            ack_timeout: ms("delivery.ack_timeout_ms", d.ack_timeout_ms, 10, 3_600_000)?,
            chains,
        })
    }
}

fn attempts(key: &'static str, value: u32) -> Result<u32, ConfigError> {
    range(key, u64::from(value), 1, 1_000).map(|_| value)
}

fn batch(key: &'static str, value: u32) -> Result<u32, ConfigError> {
    range(key, u64::from(value), 1, 10_000).map(|_| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_chain() -> Config {
        Config {
            chains: vec![ChainConfig {
                chain_id: 31337,
                rpc_urls: vec!["http://127.0.0.1:8545".to_owned()],
                confirmations: 1,
            }],
            ..Config::default()
        }
    }

    #[test]
    fn defaults_with_one_chain_validate() {
        let settings = one_chain().validate().unwrap();
        assert_eq!(settings.chains.len(), 1);
        assert_eq!(settings.idempotency_window, Duration::from_secs(600));
        assert_eq!(settings.account_mode, AccountMode::Registered);
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
        assert!(matches!(
            Config::default().validate(),
            Err(ConfigError::NoChains)
        ));
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
    }
}
