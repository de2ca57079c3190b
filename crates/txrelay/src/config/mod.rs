//! Configuration: loaded in layers by `svckit::config` (defaults, `--config` file, `TXRELAY_*`
//! environment variables, `--set key=value`), then validated once into [`Settings`]
//! (style.md 2.4: raw values, then a validated runtime object; see [`settings`]).
//!
//! ```toml
//! listen = "0.0.0.0:8645"                 # the public API (authenticated)
//! ops_listen = "127.0.0.1:8646"           # /healthz, /readyz, /metrics (keep it private)
//! instance_id = "relay-a"
//!
//! [database]
//! url = "sqlite://txrelay.db"            # or postgres://relay@127.0.0.1:5432/postgres
//!
//! [secrets]
//! key = "..."                             # 64 hex digits; better: TXRELAY_SECRETS__KEY
//!
//! [auth]
//! domain = "relay.example.com"           # the EIP-4361 domain signed messages must name
//!
//! [outbound]
//! allow = []                              # e.g. ["10.1.0.0/16"] for receivers on a private net
//!
//! [accounts]
//! mode = "registered"                    # open | allow_list | registered
//!
//! [[chains]]
//! chain_id = 31337
//! rpc_urls = ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
//! confirmations = 1
//! ```

pub mod settings;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use settings::{BackoffSettings, ChainSettings, Settings};

/// Prefix of the environment variables read as configuration, e.g.
/// `TXRELAY_DATABASE__URL=postgres://relay@127.0.0.1:5432/postgres` sets `database.url` and
/// `TXRELAY_SECRETS__KEY=<64 hex digits>` sets `secrets.key`.
pub const ENV_PREFIX: &str = "TXRELAY_";

/// The configuration as read from its layers (every field has a default, except that
/// `secrets.key` and at least one `[[chains]]` entry must be given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the public HTTP API listens on (default `127.0.0.1:8645`).
    pub listen: SocketAddr,
    /// Address of the operations listener with `/healthz`, `/readyz` and `/metrics`, which
    /// are not authenticated: keep it on loopback or a private network (default
    /// `127.0.0.1:8646`; port 0 picks a free port).
    pub ops_listen: SocketAddr,
    /// Name of this relay instance, recorded on the jobs it claims. Give every instance that
    /// shares one PostgreSQL database its own id; a restarted instance releases the claims of
    /// its previous life at once (others wait for the lease to run out).
    pub instance_id: String,
    /// Where the relay keeps its state and outbox.
    pub database: DatabaseConfig,
    /// Encryption of webhook secrets at rest.
    pub secrets: SecretsConfig,
    /// API keys and EIP-4361 sign-in.
    pub auth: AuthConfig,
    /// Rate limits, caps and listener limits.
    pub limits: LimitsConfig,
    /// Which webhook destinations the relay may contact.
    pub outbound: OutboundConfig,
    /// Which accounts may submit transactions (seed ¶29).
    pub accounts: AccountsConfig,
    /// Idempotency control (seed ¶30-36) and `Idempotency-Key` headers.
    pub idempotency: IdempotencyConfig,
    /// Submission to the nodes (seed ¶27).
    pub broadcast: BroadcastConfig,
    /// Following heads and receipts (seed ¶37-38).
    pub tracking: TrackingConfig,
    /// Webhook and WebSocket delivery of results (seed ¶39-47).
    pub delivery: DeliveryConfig,
    /// How long finished rows are kept.
    pub retention: RetentionConfig,
    /// The chains the relay serves, each with its node URLs (seed ¶25, ¶27).
    pub chains: Vec<ChainConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8645)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 8646)),
            instance_id: "relay".to_owned(),
            database: DatabaseConfig::default(),
            secrets: SecretsConfig::default(),
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            outbound: OutboundConfig::default(),
            accounts: AccountsConfig::default(),
            idempotency: IdempotencyConfig::default(),
            broadcast: BroadcastConfig::default(),
            tracking: TrackingConfig::default(),
            delivery: DeliveryConfig::default(),
            retention: RetentionConfig::default(),
            chains: Vec::new(),
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created with mode 0600 when missing; the default,
    /// `sqlite://txrelay.db`) or `postgres://USER@HOST:PORT/DB` (several instances may share
    /// it).
    pub url: String,
    /// Pool size for PostgreSQL, 1..=64 (SQLite always uses one connection: one writer).
    pub max_connections: u32,
    /// Most submissions group-committed in one database transaction, 1..=4096 (default 256).
    pub commit_batch: u32,
    /// How long the submission writer waits for more submissions after the first of a
    /// batch, in milliseconds, 0..=1000 (default 2).
    pub commit_linger_ms: u64,
    /// Submissions waiting for the writer before the API answers 503 with `Retry-After`,
    /// 1..=1 000 000 (default 8192).
    pub submit_queue: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://txrelay.db".to_owned(),
            max_connections: 8,
            commit_batch: 256,
            commit_linger_ms: 2,
            submit_queue: 8192,
        }
    }
}

/// `[secrets]`: the key webhook secrets are encrypted with (XChaCha20-Poly1305).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// 32 bytes as 64 hex digits (required; generate one with `openssl rand -hex 32` and pass
    /// it as `TXRELAY_SECRETS__KEY` rather than writing it into a file).
    pub key: String,
    /// Earlier keys, still accepted for decryption while secrets are re-encrypted with `key`
    /// (rotation: move the old key here, restart, re-register).
    pub previous_keys: Vec<String>,
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The domain EIP-4361 messages must name (default `localhost`); set it to the host name
    /// clients reach the relay at.
    pub domain: String,
    /// The URI clients are told to put in EIP-4361 messages (default: `https://` + domain).
    pub uri: String,
    /// How long a sign-in nonce from `POST /v1/auth/nonce` stays usable, seconds (default 300).
    pub nonce_ttl_seconds: u64,
    /// Longest validity (`Expiration Time` - now) of an accepted message, seconds
    /// (default 3600).
    pub max_message_validity_seconds: u64,
    /// Clock difference tolerated for `Issued At` and `Not Before`, seconds (default 60).
    pub clock_skew_seconds: u64,
    /// How long a looked-up API key is trusted before it is read again (a revocation on
    /// another instance takes effect within this), seconds (default 10).
    pub key_cache_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            domain: "localhost".to_owned(),
            uri: String::new(),
            nonce_ttl_seconds: 300,
            max_message_validity_seconds: 3_600,
            clock_skew_seconds: 60,
            key_cache_seconds: 10,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Requests per second per API key (default 100; a key may carry its own).
    pub requests_per_second: u32,
    /// Requests a key may make at once above its rate (default 200).
    pub burst: u32,
    /// Database lookups per second of keys not in the cache, across all callers (default 50):
    /// bounds what a flood of made-up keys costs.
    pub key_lookups_per_second: u32,
    /// Webhook receivers a device may register, fixed and per recipient together
    /// (default 10).
    pub max_receivers_per_device: usize,
    /// Devices a tenant may register (default 1000).
    pub max_devices_per_tenant: u64,
    /// WebSocket sessions open at once per API key (default 16).
    pub max_sockets_per_key: usize,
    /// Connections the public listener holds open at once (default 1024); more wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Time for a request's headers to arrive, counted from when the connection starts
    /// waiting for it (so also the keep-alive idle limit), milliseconds (default 10 000).
    pub header_timeout_ms: u64,
    /// Time for a request (body and handler) until its response headers, milliseconds
    /// (default 30 000).
    pub request_timeout_ms: u64,
    /// Largest request body, bytes (default 2 MiB: a blob transaction gets its clear
    /// `unsupported_type` rather than 413).
    pub max_body_bytes: usize,
    /// A WebSocket session with no frame from the client (pongs count) for this long is
    /// closed, milliseconds (default 120 000; the server pings every third of it).
    pub ws_idle_timeout_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 100,
            burst: 200,
            key_lookups_per_second: 50,
            max_receivers_per_device: 10,
            max_devices_per_tenant: 1_000,
            max_sockets_per_key: 16,
            max_connections: 1_024,
            header_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_body_bytes: 2 * 1024 * 1024,
            ws_idle_timeout_ms: 120_000,
        }
    }
}

/// `[outbound]`: where webhooks may go. Destinations are checked after DNS resolution, at
/// registration and again at every delivery (connections go only to the checked addresses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// Networks (CIDR, e.g. `"127.0.0.1/32"`, `"10.1.0.0/16"`) allowed although the deny list
    /// covers them (loopback, private, link-local, shared, metadata, multicast, reserved).
    /// The relay's own listeners, its nodes and its database stay refused regardless.
    pub allow: Vec<String>,
    /// Further networks to refuse (CIDR).
    pub deny: Vec<String>,
}

/// How the legitimacy of the sending account is decided (seed ¶29).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountMode {
    /// Any account not on the deny list.
    Open,
    /// Only accounts on the allow list (and not on the deny list).
    AllowList,
    /// Accounts on the allow list or registered to the submitting device with an EIP-4361
    /// proof (`POST /v1/devices/{device}/accounts`), and not on the deny list.
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
    /// How long an `Idempotency-Key` header's first answer is kept, seconds (default 86 400).
    pub key_ttl_seconds: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        Self {
            window_seconds: 600,
            key_ttl_seconds: 86_400,
        }
    }
}

/// `[broadcast]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BroadcastConfig {
    /// First retry delay after a transient failure, in milliseconds (default 200).
    pub initial_backoff_ms: u64,
    /// Longest retry delay, in milliseconds (default 10 000). Transient failures (no node
    /// answers) are retried until the transaction expires (`tracking.lifetime_seconds`).
    pub max_backoff_ms: u64,
    /// Timeout of one JSON-RPC request to a node, in milliseconds (default 5 000).
    pub rpc_timeout_ms: u64,
    /// How long a node URL that failed is skipped while others are healthy, in milliseconds
    /// (default 2 000).
    pub node_cooldown_ms: u64,
    /// Transactions sent in one JSON-RPC batch (default 100).
    pub batch: u32,
    /// How long a claimed job stays reserved for its worker, in milliseconds (default 30 000);
    /// after that another worker may take it over.
    pub lease_ms: u64,
}

impl Default for BroadcastConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            rpc_timeout_ms: 5_000,
            node_cooldown_ms: 2_000,
            batch: 100,
            lease_ms: 30_000,
        }
    }
}

/// `[tracking]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrackingConfig {
    /// Follow heads by `eth_subscribe("newHeads")` over WebSocket (default true); polling at
    /// `poll_interval_ms` takes over while no subscription is up.
    pub subscribe_heads: bool,
    /// How often the head is polled without a subscription, in milliseconds (default 100);
    /// with one, a safety poll runs every 10 intervals.
    pub poll_interval_ms: u64,
    /// How often the follower reads the pending transactions whose rebroadcast timer ran
    /// out, in milliseconds (default 1 000); every unfinished transaction is read at start,
    /// after a reorg or a gap in the followed chain, and every 60 of these intervals as a
    /// safety net. Otherwise a new block only reads the rows of the transactions in it and in
    /// the blocks it confirms, a sent transaction only its own, and the blocks a head takes
    /// past the reorg watch are finalized by block hash.
    pub full_scan_interval_ms: u64,
    /// A broadcast transaction with no receipt after this long is looked up in the node's
    /// pool and sent again with the same bytes when the pool does not hold it, in
    /// milliseconds (default 15 000).
    pub rebroadcast_after_ms: u64,
    /// Blocks after the confirming one during which a delivered result is still watched for
    /// reorgs (default 12).
    pub reorg_watch_blocks: u64,
    /// Receipts asked for in one JSON-RPC batch when a node has no `eth_getBlockReceipts`
    /// (default 100).
    pub receipt_batch_size: usize,
    /// A pending transaction not mined this many blocks after it was sent, while the node
    /// reports a nonce gap or its fee cap is below the base fee, gets one `stuck` notice
    /// (default 20).
    pub stuck_after_blocks: u64,
    /// A sender's lowest pending transaction with no receipt this long after its last
    /// broadcast is checked against the node (its account nonce and whether it still holds
    /// the transaction), in milliseconds (default 3 000): sent again at once when the node
    /// lost it, reported `replaced` when another transaction used its nonce, `stuck` after
    /// `stuck_after_blocks` blocks of a nonce gap or a fee cap below the base fee.
    pub nonce_watch_after_ms: u64,
    /// A transaction not in a block this long after it was accepted gets an `expired` notice
    /// and is no longer sent again, seconds (default 3600).
    pub lifetime_seconds: u64,
    /// Unfinished transactions the relay accepts before it answers 503 (backpressure instead
    /// of a silent cliff; default 1 000 000).
    pub max_tracked: u64,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        Self {
            subscribe_heads: true,
            poll_interval_ms: 100,
            full_scan_interval_ms: 1_000,
            rebroadcast_after_ms: 15_000,
            reorg_watch_blocks: 12,
            receipt_batch_size: 100,
            stuck_after_blocks: 20,
            nonce_watch_after_ms: 3_000,
            lifetime_seconds: 3_600,
            max_tracked: 1_000_000,
        }
    }
}

/// `[delivery]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// How long a webhook notification is retried before it is dead-lettered, seconds
    /// (default 86 400: 24 h).
    pub retry_for_seconds: u64,
    /// Attempts per notification before it is dead-lettered, whatever the time (default 100;
    /// attempts skipped while a receiver's circuit is open do not count).
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds (default 1 000); doubled per attempt.
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts of one notification, in milliseconds (default
    /// 3 600 000).
    pub max_backoff_ms: u64,
    /// Consecutive failures of a receiver that open its circuit (default 5): no deliveries
    /// to it then, only one probe at a time.
    pub breaker_failures: u32,
    /// First wait before probing an open receiver, in milliseconds (default 1 000); doubled
    /// per failed probe.
    pub probe_initial_ms: u64,
    /// Longest wait between probes, in milliseconds (default 45 000: a receiver back up is
    /// found within 45 s, and an hour down costs about 90 probes).
    pub probe_max_ms: u64,
    /// Timeout of one webhook POST, in milliseconds (default 5 000).
    pub timeout_ms: u64,
    /// Webhook POSTs in flight at once (default 128).
    pub max_in_flight: u32,
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
            retry_for_seconds: 86_400,
            max_attempts: 100,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 3_600_000,
            breaker_failures: 5,
            probe_initial_ms: 1_000,
            probe_max_ms: 45_000,
            timeout_ms: 5_000,
            max_in_flight: 128,
            batch: 128,
            lease_ms: 30_000,
            poll_interval_ms: 200,
            ack_timeout_ms: 10_000,
        }
    }
}

/// `[retention]`: finished rows are deleted after these times so the database does not grow
/// forever.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished transactions (final and past the reorg watch, or expired) with their
    /// submissions, jobs and delivered notifications, after this many seconds (default
    /// 604 800: 7 days).
    pub finished_seconds: u64,
    /// Dead letters, after this many seconds (default 2 592 000: 30 days).
    pub dead_letter_seconds: u64,
    /// How often the clean-up runs, seconds (default 60).
    pub interval_seconds: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            finished_seconds: 7 * 86_400,
            dead_letter_seconds: 30 * 86_400,
            interval_seconds: 60,
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
    /// WebSocket URLs for `eth_subscribe("newHeads")` (default: each RPC URL with `ws://`
    /// for `http://`, as anvil and reth serve both on one port).
    pub ws_urls: Vec<String>,
    /// Blocks (counting the including one) before a result is delivered, 1..=64 (default 1).
    pub confirmations: u64,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            chain_id: 0,
            rpc_urls: Vec::new(),
            ws_urls: Vec::new(),
            confirmations: 1,
        }
    }
}
