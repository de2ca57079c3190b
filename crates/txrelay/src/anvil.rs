//! A local development chain (Foundry's `anvil`) for the demo and the benchmark, and the
//! anvil-specific RPCs the demo, the benchmark and the tests use to set up accounts and inject
//! faults (drops, reorgs, mining control).

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use prometheus_client::metrics::counter::Counter;
use serde_json::{Value, json};
use svckit::process::{ChildGuard, ProcessError, ProcessSpec, Readiness, find_program};
use svckit::redact::SafeUrl;

use crate::error::NodeError;
use crate::node::NodeClient;

/// Anvil's JSON-RPC with its test-only methods.
#[derive(Debug, Clone)]
pub struct Anvil {
    node: NodeClient,
    url: String,
}

impl Anvil {
    /// A client for the anvil serving `chain_id` at `url`.
    ///
    /// # Errors
    /// [`url::ParseError`] for a malformed URL.
    pub fn at(chain_id: u64, url: &str) -> Result<Self, url::ParseError> {
        let parsed: SafeUrl = url.parse()?;
        Ok(Self {
            node: NodeClient::new(
                chain_id,
                vec![parsed],
                Duration::from_secs(10),
                Duration::ZERO,
                Counter::default(),
            ),
            url: url.to_owned(),
        })
    }

    /// The RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The plain JSON-RPC client.
    pub fn node(&self) -> &NodeClient {
        &self.node
    }

    /// `anvil_setBalance(account, wei)`.
    ///
    /// # Errors
    /// [`NodeError`].
    pub async fn set_balance(&self, account: Address, wei: U256) -> Result<(), NodeError> {
        self.node
            .call("anvil_setBalance", json!([account, wei]))
            .await
            .map(drop)
    }

    /// `anvil_setCode(account, code)`.
    ///
    /// # Errors
    /// [`NodeError`].
    pub async fn set_code(&self, account: Address, code: &[u8]) -> Result<(), NodeError> {
        let code = format!("0x{}", hex::encode(code));
        self.node
            .call("anvil_setCode", json!([account, code]))
            .await
            .map(drop)
    }

    /// `evm_mine`: mines one block now.
    ///
    /// # Errors
    /// [`NodeError`].
    pub async fn mine(&self) -> Result<(), NodeError> {
        self.node.call("evm_mine", json!([])).await.map(drop)
    }

    /// `evm_setAutomine(enabled)`.
    ///
    /// # Errors
    /// [`NodeError`].
    pub async fn set_automine(&self, enabled: bool) -> Result<(), NodeError> {
        self.node
            .call("evm_setAutomine", json!([enabled]))
            .await
            .map(drop)
    }

    /// `anvil_dropTransaction(hash)`: removes a pending transaction from the pool.
    ///
    /// # Errors
    /// [`NodeError`].
    pub async fn drop_transaction(&self, hash: B256) -> Result<(), NodeError> {
        self.node
            .call("anvil_dropTransaction", json!([hash]))
            .await
            .map(drop)
    }

    /// `anvil_reorg(depth, [])`: replaces the last `depth` blocks with empty ones; their
    /// transactions are not returned to the pool.
    ///
    /// # Errors
    /// [`NodeError`].
    pub async fn reorg(&self, depth: u64) -> Result<(), NodeError> {
        self.node
            .call("anvil_reorg", json!([depth, []]))
            .await
            .map(drop)
    }

    /// `eth_blockNumber`.
    ///
    /// # Errors
    /// [`NodeError`].
    pub async fn block_number(&self) -> Result<u64, NodeError> {
        let value: Value = self.node.call("eth_blockNumber", json!([])).await?;
        crate::node::quantity(&value).ok_or(NodeError::BadResponse {
            url: self.url.clone(),
            method: "eth_blockNumber",
            detail: value.to_string(),
        })
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
///
/// # Errors
/// The bind error.
pub fn free_port() -> std::io::Result<u16> {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?
        .local_addr()
        .map(|addr| addr.port())
}

/// An anvil process on 127.0.0.1, stopped with its process group on drop.
#[derive(Debug)]
pub struct DevChain {
    // Stopped on drop.
    guard: ChildGuard,
    anvil: Anvil,
    port: u16,
    chain_id: u64,
}

impl DevChain {
    /// Starts `anvil --chain-id chain_id` on a free port, logging to a file in `dir`, with
    /// `--block-time` of `block_time` when given (fractions of a second allowed; else anvil
    /// mines one block per transaction)
    /// and `extra` arguments; waits until it accepts connections.
    ///
    /// # Errors
    /// [`ProcessError::NotFound`] when anvil is not installed (run `scripts/setup`), or the
    /// failure of the last of three attempts.
    pub fn start(
        chain_id: u64,
        block_time: Option<Duration>,
        extra: &[&str],
        dir: &Path,
    ) -> Result<Self, ProcessError> {
        let program = find_program("anvil").ok_or_else(|| ProcessError::NotFound {
            program: "anvil".to_owned(),
        })?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port().map_err(|source| ProcessError::Spawn {
                program: "anvil".to_owned(),
                source,
            })?;
            let mut spec = ProcessSpec::new(program.display().to_string())
                .args(["--host", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(["--chain-id", &chain_id.to_string()])
                .args(extra.iter().copied())
                .log_file(dir.join(format!("anvil-{chain_id}-{port}.log")));
            if let Some(every) = block_time {
                spec = spec.args(["--block-time", &every.as_secs_f64().to_string()]);
            }
            let mut guard = spec.spawn()?;
            let ready = guard.wait_ready(
                &Readiness::Tcp(std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
                Duration::from_secs(20),
            );
            match ready {
                Ok(()) => {
                    let url = format!("http://127.0.0.1:{port}");
                    let anvil = Anvil::at(chain_id, &url).map_err(|_| ProcessError::NotFound {
                        program: url.clone(),
                    })?;
                    return Ok(Self {
                        guard,
                        anvil,
                        port,
                        chain_id,
                    });
                }
                Err(error @ ProcessError::Exited { .. }) => last = Some(error),
                Err(error) => return Err(error),
            }
        }
        Err(last.unwrap_or(ProcessError::NotFound {
            program: "anvil".to_owned(),
        }))
    }

    /// Its RPC client.
    pub fn anvil(&self) -> &Anvil {
        &self.anvil
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> &str {
        self.anvil.url()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }
}

/// Records when each block of a chain is first seen, by polling `eth_blockNumber` every
/// 10 ms from its own task: the reference point of "latency after inclusion". Blocks that
/// appear between two polls share the later poll's time. Stops when dropped.
#[derive(Debug)]
pub struct BlockObserver {
    seen: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<u64, std::time::Instant>>>,
    cancel: tokio_util::sync::CancellationToken,
}

impl BlockObserver {
    /// Starts observing the chain behind `anvil`.
    pub fn start(anvil: &Anvil) -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
        let cancel = tokio_util::sync::CancellationToken::new();
        let (anvil, map, stop) = (anvil.clone(), std::sync::Arc::clone(&seen), cancel.clone());
        tokio::spawn(async move {
            let mut last: Option<u64> = None;
            while !stop.is_cancelled() {
                if let Ok(number) = anvil.block_number().await {
                    let now = std::time::Instant::now();
                    let from = last.map_or(number, |l| l + 1);
                    if last.is_none_or(|l| number > l) {
                        let mut map = map
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        for block in from..=number {
                            map.entry(block).or_insert(now);
                        }
                        last = Some(number);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Self { seen, cancel }
    }

    /// When `block` was first seen.
    pub fn first_seen(&self, block: u64) -> Option<std::time::Instant> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&block)
            .copied()
    }
}

impl Drop for BlockObserver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of `values` in milliseconds; 0 when empty.
pub fn percentile_ms(values: &[Duration], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    (sorted[index].as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}
