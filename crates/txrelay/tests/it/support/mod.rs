//! Shared set-up of the integration tests: databases, anvil nodes, a counting JSON-RPC proxy,
//! the relay as its own process, webhook receivers.

pub(crate) mod pg;
pub(crate) mod proxy;
pub(crate) mod rig;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256};
use testkit::{Peer, Ready, RunningPeer};
use txrelay::Config;
use txrelay::anvil::Anvil;
use txrelay::client::RelayClient;
use txrelay::config::{AccountMode, ChainConfig};
use txrelay::event::Event;
use txrelay::load::Wallet;
use txrelay::receiver::ReceiverServer;
use txrelay::rules::{Receiver, Registration, SignatureScheme};

/// Which database the relay runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test: a SQLite file in a temp dir, or a private PostgreSQL server.
pub(crate) struct Db {
    pub(crate) url: String,
    _dir: tempfile::TempDir,
    _pg: Option<pg::Postgres>,
}

impl Db {
    pub(crate) fn new(backend: Backend) -> Self {
        let dir = testkit::tempdir();
        match backend {
            Backend::Sqlite => Self {
                url: format!("sqlite://{}", dir.path().join("relay.db").display()),
                _dir: dir,
                _pg: None,
            },
            Backend::Postgres => {
                let pg = pg::Postgres::start();
                Self {
                    url: pg.url(),
                    _dir: dir,
                    _pg: Some(pg),
                }
            }
        }
    }
}

/// An anvil node on a free port.
pub(crate) fn anvil(chain_id: u64, extra: &[&str]) -> (RunningPeer, Anvil) {
    testkit::require("anvil");
    let mut args: Vec<String> = ["--host", "127.0.0.1", "--port", "{port}", "--chain-id"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push(chain_id.to_string());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let peer = Peer::new("anvil").args(args).ready(Ready::Tcp).start();
    let client = Anvil::at(chain_id, &peer.url("")).unwrap();
    (peer, client)
}

/// The EIP-4361 domain of the test relays.
pub(crate) const DOMAIN: &str = "relay.test";

/// A relay configuration for tests: fast polling, short backoffs, receivers on 127.0.0.1
/// allowed, a random secrets key.
pub(crate) fn config(db: &Db, chains: &[(u64, Vec<String>)]) -> Config {
    let mut config = Config {
        chains: chains
            .iter()
            .map(|(chain_id, urls)| ChainConfig {
                chain_id: *chain_id,
                rpc_urls: urls.clone(),
                ..ChainConfig::default()
            })
            .collect(),
        ..Config::default()
    };
    config.database.url.clone_from(&db.url);
    config.secrets.key = hex::encode(rand::random::<[u8; 32]>());
    config.outbound.allow = vec!["127.0.0.1/32".to_owned()];
    config.auth.domain = DOMAIN.to_owned();
    config.accounts.mode = AccountMode::Registered;
    config.tracking.poll_interval_ms = 50;
    config.broadcast.initial_backoff_ms = 100;
    config.broadcast.max_backoff_ms = 1_000;
    config.broadcast.rpc_timeout_ms = 2_000;
    config.delivery.poll_interval_ms = 50;
    config.delivery.initial_backoff_ms = 100;
    config.delivery.max_backoff_ms = 1_000;
    config.delivery.max_attempts = 40;
    config
}

/// The relay binary running as its own process, on fixed ports so a restart keeps its URLs,
/// with an admin key made by `txrelay keys create --admin` and a tenant key (`tenant-a`) made
/// with it through `POST /v1/keys`.
pub(crate) struct RelayProc {
    pub(crate) peer: RunningPeer,
    /// The tenant `tenant-a`'s client.
    pub(crate) client: RelayClient,
    /// The admin's client.
    pub(crate) admin: RelayClient,
    /// No key at all.
    pub(crate) anonymous: RelayClient,
    config_path: PathBuf,
    port: u16,
    ops_port: u16,
}

impl RelayProc {
    /// Writes `config` (with a free operations port) to `dir/relay-{name}.toml`, starts
    /// `txrelay serve` with it and makes the keys.
    pub(crate) async fn start(config: &Config, dir: &Path, name: &str) -> Self {
        let config_path = dir.join(format!("relay-{name}.toml"));
        let mut config = config.clone();
        let ops_port = testkit::free_port();
        config.ops_listen = format!("127.0.0.1:{ops_port}").parse().unwrap();
        std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
        let mut relay = Self::start_with(&config_path, testkit::free_port(), ops_port);
        let admin_token = keys_create(&config_path, "admin", true);
        relay.admin = relay.anonymous.with_token(&admin_token);
        let token = relay
            .admin
            .create_key("tenant-a", false, Some(100_000))
            .await
            .unwrap();
        relay.client = relay.anonymous.with_token(&token);
        relay
    }

    fn start_with(config_path: &Path, port: u16, ops_port: u16) -> Self {
        let peer = Peer::new(env!("CARGO_BIN_EXE_txrelay"))
            .args([
                "serve".to_owned(),
                "--config".to_owned(),
                config_path.display().to_string(),
                "--listen".to_owned(),
                format!("127.0.0.1:{port}"),
            ])
            .env("RUST_LOG", "txrelay=debug,svckit=info")
            .ready(Ready::Log("relay started".to_owned()))
            .deadline(Duration::from_secs(30))
            .start();
        let anonymous = RelayClient::new(&format!("http://127.0.0.1:{port}"));
        Self {
            peer,
            client: anonymous.clone(),
            admin: anonymous.clone(),
            anonymous,
            config_path: config_path.to_path_buf(),
            port,
            ops_port,
        }
    }

    /// A new key for `tenant`.
    pub(crate) async fn tenant(&self, tenant: &str) -> RelayClient {
        let token = self
            .admin
            .create_key(tenant, false, Some(100_000))
            .await
            .unwrap();
        self.anonymous.with_token(&token)
    }

    /// The API port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The operations port (`/healthz`, `/readyz`, `/metrics`).
    pub(crate) fn ops_port(&self) -> u16 {
        self.ops_port
    }

    /// `/metrics` of the operations listener.
    pub(crate) async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.ops_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `kill -9`, then start again with the same configuration, database and ports (the
    /// keys are in the database and keep working).
    pub(crate) fn crash_and_restart(&mut self) {
        self.peer.child().kill();
        let mut restarted = Self::start_with(&self.config_path.clone(), self.port, self.ops_port);
        restarted.client = self.client.clone();
        restarted.admin = self.admin.clone();
        *self = restarted;
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = self.peer.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// `txrelay keys create --config CONFIG --tenant TENANT [--admin] --json`: the token.
pub(crate) fn keys_create(config_path: &Path, tenant: &str, admin: bool) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_txrelay"));
    command
        .args(["keys", "create", "--json", "--tenant", tenant, "--config"])
        .arg(config_path);
    if admin {
        command.arg("--admin");
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    answer["token"].as_str().unwrap().to_owned()
}

/// Webhook receivers named `names`, each with its own Standard Webhooks secret (names
/// starting with `v1-` get a txrelay v1 secret instead).
pub(crate) async fn receivers(
    names: &[&str],
    flaky: &[&str],
) -> (ReceiverServer, BTreeMap<String, String>) {
    let secrets: BTreeMap<String, String> = names
        .iter()
        .map(|n| {
            let secret = if n.starts_with("v1-") {
                format!("secret-of-{n}-0123456789")
            } else {
                txrelay::rules::generate_standard_secret()
            };
            ((*n).to_owned(), secret)
        })
        .collect();
    let server = ReceiverServer::start(
        0,
        secrets.clone(),
        flaky
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<HashSet<_>>(),
    )
    .await
    .unwrap();
    (server, secrets)
}

pub(crate) fn receiver(
    server: &ReceiverServer,
    secrets: &BTreeMap<String, String>,
    name: &str,
) -> Receiver {
    let secret = secrets[name].clone();
    Receiver {
        url: server.url(name).parse().unwrap(),
        scheme: if secret.starts_with(txrelay::rules::WHSEC_PREFIX) {
            SignatureScheme::Standard
        } else {
            SignatureScheme::TxrelayV1
        },
        secret: Some(svckit::redact::Secret::new(secret)),
    }
}

/// Funds `wallets` with 1000 ether each.
pub(crate) async fn fund(anvil: &Anvil, wallets: &[&Wallet]) {
    for wallet in wallets {
        anvil
            .set_balance(wallet.address(), U256::from(10_u64).pow(U256::from(21)))
            .await
            .unwrap();
    }
}

/// Registers `device` with `registration`'s rules and `wallet`'s account (an EIP-4361 proof
/// for chain 31337).
pub(crate) async fn register(
    client: &RelayClient,
    device: &str,
    wallet: &Wallet,
    registration: Registration,
) {
    client.register(device, &registration).await.unwrap();
    client
        .register_account(device, wallet, 31337)
        .await
        .unwrap();
}

/// Polls `check` every 50 ms until it returns `Some` or `limit` passes.
pub(crate) async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The transaction's status as the API reports it.
pub(crate) async fn status(client: &RelayClient, hash: B256) -> Option<String> {
    client
        .transaction(hash)
        .await
        .ok()
        .flatten()
        .and_then(|v| v["status"].as_str().map(str::to_owned))
}

/// Events received for `hash` by `server`'s receiver `name`.
pub(crate) fn events_for(server: &ReceiverServer, name: &str, hash: B256) -> Vec<Event> {
    server
        .deliveries()
        .into_iter()
        .filter(|d| d.receiver == name && d.event.tx_hash == hash)
        .map(|d| d.event)
        .collect()
}

/// A recipient address that is nobody's account.
pub(crate) fn somebody() -> Address {
    Wallet::random().address()
}

/// A fresh wallet with 1000 ether, registered on `relay` as device `phone` whose only
/// receiver is `hooks`' webhook `hook` (the set-up the follower tests share).
pub(crate) async fn hook_account(
    relay: &RelayProc,
    anvil: &Anvil,
    hooks: &ReceiverServer,
    secrets: &BTreeMap<String, String>,
) -> Wallet {
    let wallet = Wallet::random();
    fund(anvil, &[&wallet]).await;
    register(
        &relay.client,
        "phone",
        &wallet,
        Registration {
            fixed: vec![receiver(hooks, secrets, "hook")],
            ..Registration::default()
        },
    )
    .await;
    wallet
}

/// Submits `wallet`'s 1-wei transfer with `nonce` on chain 31337 as device `phone`, asserts
/// it was accepted and answers its hash.
pub(crate) async fn submit_transfer(client: &RelayClient, wallet: &Wallet, nonce: u64) -> B256 {
    let raw =
        txrelay::load::transfer(wallet, 31337, nonce, somebody(), U256::from(1), 21_000).unwrap();
    let answer = client
        .submit(31337, &raw, wallet.address(), "phone", false)
        .await
        .unwrap();
    assert!(answer.accepted().is_some(), "{}", answer.body);
    alloy::primitives::keccak256(&raw)
}

/// Waits (at most 20 s) for the `mined` notification of `hash` at `hooks`' receiver `hook`.
pub(crate) async fn until_mined(hooks: &ReceiverServer, hash: B256) {
    eventually(
        "its mined notification",
        Duration::from_secs(20),
        || async {
            events_for(hooks, "hook", hash)
                .iter()
                .any(|e| e.status == txrelay::event::EventStatus::Mined)
                .then_some(())
        },
    )
    .await;
}
