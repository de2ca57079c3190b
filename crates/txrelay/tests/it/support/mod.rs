//! Shared set-up of the integration tests: databases, anvil nodes, a counting JSON-RPC proxy,
//! the relay as its own process, webhook receivers.

pub(crate) mod pg;
pub(crate) mod proxy;

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
use txrelay::rules::{Receiver, Registration};

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

/// A relay configuration for tests: fast polling, short backoffs.
pub(crate) fn config(db: &Db, chains: &[(u64, Vec<String>)]) -> Config {
    let mut config = Config {
        chains: chains
            .iter()
            .map(|(chain_id, urls)| ChainConfig {
                chain_id: *chain_id,
                rpc_urls: urls.clone(),
                confirmations: 1,
            })
            .collect(),
        ..Config::default()
    };
    config.database.url.clone_from(&db.url);
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

/// The relay binary running as its own process, on a fixed port so a restart keeps its URL.
pub(crate) struct RelayProc {
    pub(crate) peer: RunningPeer,
    pub(crate) client: RelayClient,
    config_path: PathBuf,
    port: u16,
}

impl RelayProc {
    /// Writes `config` to `dir/relay-{name}.toml` and starts `txrelay serve` with it.
    pub(crate) fn start(config: &Config, dir: &Path, name: &str) -> Self {
        let config_path = dir.join(format!("relay-{name}.toml"));
        std::fs::write(&config_path, toml::to_string(config).unwrap()).unwrap();
        Self::start_with(&config_path, testkit::free_port())
    }

    fn start_with(config_path: &Path, port: u16) -> Self {
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
        let client = RelayClient::new(&format!("http://127.0.0.1:{port}"));
        Self {
            peer,
            client,
            config_path: config_path.to_path_buf(),
            port,
        }
    }

    /// `kill -9`, then start again with the same configuration, database and port.
    pub(crate) fn crash_and_restart(&mut self) {
        self.peer.child().kill();
        let restarted = Self::start_with(&self.config_path.clone(), self.port);
        *self = restarted;
    }

    pub(crate) fn log_tail(&self) -> String {
        let log = self.peer.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// Webhook receivers named `names`, each with its own secret.
pub(crate) async fn receivers(
    names: &[&str],
    flaky: &[&str],
) -> (ReceiverServer, BTreeMap<String, String>) {
    let secrets: BTreeMap<String, String> = names
        .iter()
        .map(|n| ((*n).to_owned(), format!("secret-of-{n}-0123456789")))
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
    Receiver {
        url: server.url(name).parse().unwrap(),
        secret: svckit::redact::Secret::new(secrets[name].clone()),
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

/// Registers `device` sending from `wallet` with `registration`'s rules.
pub(crate) async fn register(
    client: &RelayClient,
    device: &str,
    wallet: &Wallet,
    mut registration: Registration,
) {
    registration.accounts = vec![wallet.address()];
    client.register(device, &registration).await.unwrap();
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
