//! JSON-RPC client for one chain's nodes, with failover (seed ¶27: "send the first transaction
//! to any node of the blockchain corresponding to the chain id"; ¶38: query the result by hash
//! from any node).
//!
//! A [`NodeClient`] holds several URLs. Each call starts at the URL that last answered; on a
//! transport failure (refused, reset, timeout, non-2xx) or a busy node it marks that URL down
//! for the cool-down and tries the next, so one dead node costs one failed attempt, not one per
//! call. Receipts and pool lookups for many hashes go out as one JSON-RPC batch.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Value, json};
use svckit::redact::SafeUrl;
use tracing::{debug, instrument, warn};

use crate::error::{NodeError, RpcErrorKind};
use crate::metrics::MethodLabels;

/// A block header as the follower needs it: number, hash, parent hash, base fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// The parent's hash.
    pub parent: B256,
    /// EIP-1559 base fee per gas, wei (`None` before London).
    pub base_fee: Option<u128>,
}

impl Header {
    /// Parses a header from a block or `newHeads` JSON object.
    pub fn parse(value: &Value) -> Option<Self> {
        Some(Self {
            number: quantity(value.get("number")?)?,
            hash: b256(value.get("hash")?)?,
            parent: b256(value.get("parentHash")?)?,
            base_fee: value
                .get("baseFeePerGas")
                .and_then(Value::as_str)
                .and_then(|t| u128::from_str_radix(t.strip_prefix("0x")?, 16).ok()),
        })
    }

    /// Its identity in the canonical window.
    pub fn block_ref(&self) -> crate::core::chain::BlockRef {
        crate::core::chain::BlockRef {
            number: self.number,
            hash: self.hash,
            parent: self.parent,
        }
    }
}

/// A transaction receipt as the relay stores and reports it (seed ¶27: "the execution result
/// is stored as a receipt, associated with the transaction hash"): every field of the node's
/// `eth_getTransactionReceipt` answer a client needs, in snake case, except the logs bloom
/// (derivable from the logs). Quantities are numbers, wei amounts decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Including block number.
    pub block_number: u64,
    /// Including block hash.
    pub block_hash: B256,
    /// Position in the block.
    pub transaction_index: u64,
    /// The sender.
    pub from: Address,
    /// The recipient (`None` for a contract creation).
    pub to: Option<Address>,
    /// The created contract's address (contract creations only).
    pub contract_address: Option<Address>,
    /// Gas used by the transaction.
    pub gas_used: u64,
    /// Gas used in the block up to and including it.
    pub cumulative_gas_used: u64,
    /// Wei paid per gas (base fee + tip), decimal.
    pub effective_gas_price: String,
    /// EIP-2718 type.
    #[serde(rename = "type")]
    pub ty: u8,
    /// `status` 1 (success) or 0 (reverted, EIP-658).
    pub success: bool,
    /// The logs it emitted.
    pub logs: Vec<Log>,
}

/// One log entry of a receipt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Log {
    /// The emitting contract.
    pub address: Address,
    /// Indexed topics.
    pub topics: Vec<B256>,
    /// Unindexed data, 0x-hex.
    pub data: String,
    /// Position among the block's logs.
    pub log_index: u64,
}

#[derive(Debug)]
struct Endpoint {
    url: SafeUrl,
    down_until: Mutex<Option<Instant>>,
}

impl Endpoint {
    fn is_down(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| until > now)
    }

    fn mark(&self, until: Option<Instant>) {
        *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = until;
    }
}

#[derive(Debug)]
struct Inner {
    chain_id: u64,
    endpoints: Vec<Endpoint>,
    http: reqwest::Client,
    timeout: Duration,
    cooldown: Duration,
    preferred: AtomicUsize,
    failovers: Counter,
    requests: Option<Family<MethodLabels, Counter>>,
    /// The node answered "method not found" to `eth_getBlockReceipts`.
    no_block_receipts: std::sync::atomic::AtomicBool,
}

/// JSON-RPC access to one chain through any of its healthy nodes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeClient {
    inner: Arc<Inner>,
}

/// One answer of a batch: the `result` value, or the node's error for that entry.
pub type BatchItem = Result<Value, NodeError>;

impl NodeClient {
    /// A client for `chain_id` over `urls` (in preference order), with a per-request `timeout`
    /// and a `cooldown` for failed URLs. `failovers` counts switches to another URL.
    ///
    /// # Panics
    /// Never; an empty `urls` makes every call fail with [`NodeError::AllFailed`] (the
    /// configuration forbids it).
    pub fn new(
        chain_id: u64,
        urls: Vec<SafeUrl>,
        timeout: Duration,
        cooldown: Duration,
        failovers: Counter,
    ) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Self {
            inner: Arc::new(Inner {
                chain_id,
                endpoints: urls
                    .into_iter()
                    .map(|url| Endpoint {
                        url,
                        down_until: Mutex::new(None),
                    })
                    .collect(),
                http,
                timeout,
                cooldown,
                preferred: AtomicUsize::new(0),
                failovers,
                requests: None,
                no_block_receipts: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The same client counting its requests per method in `requests` (one per batch entry);
    /// call it right after [`Self::new`], before the client is cloned (a clone keeps the
    /// client as it is).
    #[must_use]
    pub fn counting(mut self, requests: Family<MethodLabels, Counter>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.requests = Some(requests);
        }
        self
    }

    fn count(&self, method: &'static str, n: usize) {
        if let Some(family) = &self.inner.requests {
            family
                .get_or_create(&MethodLabels {
                    chain_id: self.inner.chain_id,
                    method: method.to_owned(),
                })
                .inc_by(n as u64);
        }
    }

    /// The chain this client serves.
    pub fn chain_id(&self) -> u64 {
        self.inner.chain_id
    }

    /// The node URLs (redacted on display).
    pub fn urls(&self) -> Vec<SafeUrl> {
        self.inner.endpoints.iter().map(|e| e.url.clone()).collect()
    }

    /// Order in which to try the endpoints: healthy ones from the preferred one on, then the
    /// ones in cool-down (better a node that may have recovered than no node).
    fn order(&self) -> Vec<usize> {
        let n = self.inner.endpoints.len();
        let start = self.inner.preferred.load(Ordering::Relaxed) % n.max(1);
        let now = Instant::now();
        let (mut healthy, mut down): (Vec<usize>, Vec<usize>) = (0..n)
            .map(|i| (start + i) % n)
            .partition(|&i| !self.inner.endpoints[i].is_down(now));
        healthy.append(&mut down);
        healthy
    }

    /// Sends `body` to each endpoint in [`Self::order`] until one answers usefully; `decode`
    /// turns the HTTP body into the caller's result and decides whether to fail over.
    async fn with_failover<T>(
        &self,
        method: &'static str,
        body: &Value,
        decode: impl Fn(&str, Value) -> Result<T, NodeError>,
    ) -> Result<T, NodeError> {
        let order = self.order();
        let mut last = None;
        for (attempt, index) in order.iter().copied().enumerate() {
            let endpoint = &self.inner.endpoints[index];
            let url = endpoint.url.to_string();
            let outcome = match self.post(endpoint, &url, body).await {
                Ok(value) => decode(&url, value),
                Err(error) => Err(error),
            };
            match outcome {
                Ok(result) => {
                    endpoint.mark(None);
                    if attempt > 0 {
                        self.inner.preferred.store(index, Ordering::Relaxed);
                    }
                    return Ok(result);
                }
                Err(error) if error.fails_over() => {
                    endpoint.mark(Some(Instant::now() + self.inner.cooldown));
                    if attempt + 1 < order.len() {
                        warn!(chain_id = self.inner.chain_id, node = %url, method, %error, "node failed; trying the next one");
                        self.inner.failovers.inc();
                    } else {
                        debug!(chain_id = self.inner.chain_id, node = %url, method, %error, "node failed");
                    }
                    last = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        let tried = order.len();
        Err(NodeError::AllFailed {
            chain_id: self.inner.chain_id,
            tried,
            last: Box::new(last.unwrap_or(NodeError::BadResponse {
                url: String::new(),
                method,
                detail: "no node URL configured".to_owned(),
            })),
        })
    }

    async fn post(&self, endpoint: &Endpoint, url: &str, body: &Value) -> Result<Value, NodeError> {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let response = self
            .inner
            .http
            .post(endpoint.url.expose().clone())
            .header("content-type", "application/json")
            .timeout(self.inner.timeout)
            .body(bytes)
            .send()
            .await
            .map_err(|source| transport_error(url, self.inner.timeout, source))?;
        let status = response.status();
        if !status.is_success() {
            return Err(NodeError::HttpStatus {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|source| transport_error(url, self.inner.timeout, source))?;
        serde_json::from_slice(&bytes).map_err(|error| NodeError::BadResponse {
            url: url.to_owned(),
            method: "",
            detail: error.to_string(),
        })
    }

    /// Calls `method` with `params` and returns its `result` (which may be `null`).
    ///
    /// # Errors
    /// [`NodeError::Rpc`] when the node answers with an error (after failover for a busy
    /// node), [`NodeError::AllFailed`] when no node answered.
    #[instrument(level = "debug", skip_all, fields(chain_id = self.inner.chain_id, method))]
    pub async fn call(&self, method: &'static str, params: Value) -> Result<Value, NodeError> {
        self.count(method, 1);
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        self.with_failover(method, &body, |url, value| {
            single_result(url, method, value)
        })
        .await
    }

    /// Calls `method` once per entry of `params` in one JSON-RPC batch; answers in input order.
    ///
    /// # Errors
    /// [`NodeError::AllFailed`] when no node answered the batch; per-entry errors are inside.
    #[instrument(level = "debug", skip_all, fields(chain_id = self.inner.chain_id, method, count = params.len()))]
    pub async fn batch(
        &self,
        method: &'static str,
        params: &[Value],
    ) -> Result<Vec<BatchItem>, NodeError> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let body = Value::Array(
            params
                .iter()
                .enumerate()
                .map(|(id, p)| json!({"jsonrpc": "2.0", "id": id, "method": method, "params": p}))
                .collect(),
        );
        let count = params.len();
        self.count(method, count);
        self.with_failover(method, &body, |url, value| {
            batch_results(url, method, count, value)
        })
        .await
    }

    /// `eth_chainId`.
    ///
    /// # Errors
    /// See [`Self::call`].
    pub async fn remote_chain_id(&self) -> Result<u64, NodeError> {
        let value = self.call("eth_chainId", json!([])).await?;
        quantity(&value).ok_or_else(|| self.bad("eth_chainId", &value))
    }

    /// `eth_sendRawTransaction(raw)`. A node that already holds the transaction ("already
    /// known") counts as success.
    ///
    /// # Errors
    /// See [`Self::call`]; [`NodeError::rpc_kind`] tells nonce-too-low and similar apart.
    pub async fn send_raw(&self, raw: &[u8]) -> Result<(), NodeError> {
        let params = json!([format!("0x{}", hex::encode(raw))]);
        match self.call("eth_sendRawTransaction", params).await {
            Ok(_) => Ok(()),
            Err(error) if error.rpc_kind() == Some(RpcErrorKind::AlreadyKnown) => {
                debug!(
                    chain_id = self.inner.chain_id,
                    "node already holds the transaction"
                );
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// The account's current nonce: `eth_getTransactionCount(account, "latest")`.
    ///
    /// # Errors
    /// See [`Self::call`].
    pub async fn nonce(&self, account: Address) -> Result<u64, NodeError> {
        let value = self
            .call("eth_getTransactionCount", json!([account, "latest"]))
            .await?;
        quantity(&value).ok_or_else(|| self.bad("eth_getTransactionCount", &value))
    }

    /// The latest block's number and hash.
    ///
    /// # Errors
    /// See [`Self::call`].
    pub async fn head(&self) -> Result<Header, NodeError> {
        let value = self
            .call("eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        Header::parse(&value).ok_or_else(|| self.bad("eth_getBlockByNumber", &value))
    }

    /// The header of the block with `hash`; `None` when the node does not have it.
    ///
    /// # Errors
    /// See [`Self::call`].
    pub async fn header_by_hash(&self, hash: B256) -> Result<Option<Header>, NodeError> {
        let value = self
            .call("eth_getBlockByHash", json!([hash, false]))
            .await?;
        if value.is_null() {
            return Ok(None);
        }
        Header::parse(&value)
            .map(Some)
            .ok_or_else(|| self.bad("eth_getBlockByHash", &value))
    }

    /// Every receipt of the block with `hash`: `eth_getBlockReceipts` (one request), or,
    /// from a node without it (answering "method not found", remembered), the block's
    /// transaction hashes and their receipts in batches of `batch`. `None` when the node does
    /// not have the block (reorged away meanwhile) or not yet every receipt of it.
    ///
    /// # Errors
    /// [`NodeError`] for a failed request or a malformed receipt.
    pub async fn block_receipts(
        &self,
        hash: B256,
        batch: usize,
    ) -> Result<Option<Vec<Receipt>>, NodeError> {
        if !self.inner.no_block_receipts.load(Ordering::Relaxed) {
            match self.call("eth_getBlockReceipts", json!([hash])).await {
                Ok(Value::Null) => return Ok(None),
                Ok(Value::Array(items)) => {
                    return items
                        .iter()
                        .map(|v| {
                            parse_receipt(v).ok_or_else(|| self.bad("eth_getBlockReceipts", v))
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map(Some);
                }
                Ok(other) => return Err(self.bad("eth_getBlockReceipts", &other)),
                Err(NodeError::Rpc { code: -32601, .. }) => {
                    warn!(
                        chain_id = self.inner.chain_id,
                        "node has no eth_getBlockReceipts; fetching receipts per transaction"
                    );
                    self.inner.no_block_receipts.store(true, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
        let block = self
            .call("eth_getBlockByHash", json!([hash, false]))
            .await?;
        if block.is_null() {
            return Ok(None);
        }
        let hashes: Vec<B256> = block
            .get("transactions")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(b256).collect())
            .unwrap_or_default();
        let mut receipts = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(batch.max(1)) {
            // A block with a receipt the node does not serve yet is not complete: `None`,
            // so the caller asks again instead of missing that transaction.
            let Some(part) = self
                .receipts(chunk)
                .await?
                .into_iter()
                .collect::<Option<Vec<_>>>()
            else {
                return Ok(None);
            };
            receipts.extend(part);
        }
        Ok(Some(receipts))
    }

    /// Receipts of `hashes` (batched `eth_getTransactionReceipt`), `None` where the node has
    /// none (pending, dropped or reorged out).
    ///
    /// # Errors
    /// [`NodeError`] for the batch, or the first entry the node failed.
    pub async fn receipts(&self, hashes: &[B256]) -> Result<Vec<Option<Receipt>>, NodeError> {
        let params: Vec<Value> = hashes.iter().map(|h| json!([h])).collect();
        let answers = self.batch("eth_getTransactionReceipt", &params).await?;
        answers
            .into_iter()
            .map(|answer| {
                let value = answer?;
                if value.is_null() {
                    return Ok(None);
                }
                parse_receipt(&value)
                    .map(Some)
                    .ok_or_else(|| self.bad("eth_getTransactionReceipt", &value))
            })
            .collect()
    }

    /// Whether the node knows each of `hashes` at all (batched `eth_getTransactionByHash`:
    /// pending in its pool or mined).
    ///
    /// # Errors
    /// [`NodeError`] for the batch or the first failed entry.
    pub async fn known(&self, hashes: &[B256]) -> Result<Vec<bool>, NodeError> {
        let params: Vec<Value> = hashes.iter().map(|h| json!([h])).collect();
        let answers = self.batch("eth_getTransactionByHash", &params).await?;
        answers
            .into_iter()
            .map(|answer| answer.map(|value| !value.is_null()))
            .collect()
    }

    /// The revert reason of a mined, reverted transaction: the revert data from
    /// `debug_traceTransaction` (call tracer), decoded as `Error(string)` or `Panic(uint256)`;
    /// raw revert data as hex when it is neither; `None` when the node does not trace.
    pub async fn revert_reason(&self, hash: B256) -> Option<String> {
        let params = json!([hash, {"tracer": "callTracer"}]);
        match self.call("debug_traceTransaction", params).await {
            Ok(trace) => {
                let output = trace
                    .get("output")
                    .and_then(Value::as_str)
                    .and_then(|text| hex::decode(text.trim_start_matches("0x")).ok())
                    .unwrap_or_default();
                decode_revert_reason(&output).or_else(|| {
                    trace
                        .get("revertReason")
                        .or_else(|| trace.get("error"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
            }
            Err(error) => {
                debug!(%error, tx_hash = %hash, "node cannot trace; no revert reason");
                None
            }
        }
    }

    fn bad(&self, method: &'static str, value: &Value) -> NodeError {
        let mut detail = value.to_string();
        detail.truncate(200);
        NodeError::BadResponse {
            url: self
                .inner
                .endpoints
                .first()
                .map(|e| e.url.to_string())
                .unwrap_or_default(),
            method,
            detail,
        }
    }
}

fn transport_error(url: &str, timeout: Duration, source: reqwest::Error) -> NodeError {
    if source.is_timeout() {
        NodeError::Timeout {
            url: url.to_owned(),
            after: timeout,
        }
    } else {
        NodeError::Unreachable {
            url: url.to_owned(),
            source,
        }
    }
}

fn rpc_error(url: &str, method: &'static str, error: &Value) -> NodeError {
    let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    NodeError::Rpc {
        url: url.to_owned(),
        method,
        code,
        kind: RpcErrorKind::classify(code, &message),
        message,
    }
}

fn single_result(url: &str, method: &'static str, mut value: Value) -> Result<Value, NodeError> {
    if let Some(error) = value.get("error") {
        return Err(rpc_error(url, method, error));
    }
    match value.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(NodeError::BadResponse {
            url: url.to_owned(),
            method,
            detail: "neither `result` nor `error`".to_owned(),
        }),
    }
}

fn batch_results(
    url: &str,
    method: &'static str,
    count: usize,
    value: Value,
) -> Result<Vec<BatchItem>, NodeError> {
    let Value::Array(entries) = value else {
        // A node that rejects the whole batch answers one error object.
        return match value.get("error") {
            Some(error) => Err(rpc_error(url, method, error)),
            None => Err(NodeError::BadResponse {
                url: url.to_owned(),
                method,
                detail: "a batch answer must be an array".to_owned(),
            }),
        };
    };
    let mut slots: Vec<Option<BatchItem>> = (0..count).map(|_| None).collect();
    for entry in entries {
        let id = entry
            .get("id")
            .and_then(Value::as_u64)
            .and_then(|id| usize::try_from(id).ok());
        if let Some(slot) = id.and_then(|id| slots.get_mut(id)) {
            *slot = Some(single_result(url, method, entry));
        }
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(id, slot)| {
            slot.ok_or_else(|| NodeError::BadResponse {
                url: url.to_owned(),
                method,
                detail: format!("batch answer lacks id {id}"),
            })
        })
        .collect()
}

/// Reads a JSON-RPC quantity (`"0x1a"`) as `u64`.
pub fn quantity(value: &Value) -> Option<u64> {
    let text = value.as_str()?.strip_prefix("0x")?;
    u64::from_str_radix(text, 16).ok()
}

fn b256(value: &Value) -> Option<B256> {
    value.as_str()?.parse().ok()
}

/// A node's receipt JSON as a [`Receipt`]; `None` when a field is missing or malformed.
pub fn parse_receipt(value: &Value) -> Option<Receipt> {
    let address = |v: &Value| -> Option<Option<Address>> {
        match v {
            Value::Null => Some(None),
            other => other.as_str()?.parse().ok().map(Some),
        }
    };
    let logs = value
        .get("logs")?
        .as_array()?
        .iter()
        .map(|log| {
            Some(Log {
                address: log.get("address")?.as_str()?.parse().ok()?,
                topics: log
                    .get("topics")?
                    .as_array()?
                    .iter()
                    .map(b256)
                    .collect::<Option<_>>()?,
                data: log.get("data")?.as_str()?.to_owned(),
                log_index: quantity(log.get("logIndex")?)?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let price = value.get("effectiveGasPrice").and_then(|v| {
        let digits = v.as_str()?.strip_prefix("0x")?;
        u128::from_str_radix(digits, 16).ok()
    });
    Some(Receipt {
        tx_hash: b256(value.get("transactionHash")?)?,
        block_number: quantity(value.get("blockNumber")?)?,
        block_hash: b256(value.get("blockHash")?)?,
        transaction_index: quantity(value.get("transactionIndex")?)?,
        from: value.get("from")?.as_str()?.parse().ok()?,
        to: address(value.get("to").unwrap_or(&Value::Null))?,
        contract_address: address(value.get("contractAddress").unwrap_or(&Value::Null))?,
        gas_used: quantity(value.get("gasUsed")?)?,
        cumulative_gas_used: quantity(value.get("cumulativeGasUsed")?)?,
        effective_gas_price: price.unwrap_or(0).to_string(),
        ty: u8::try_from(value.get("type").and_then(quantity).unwrap_or(0)).ok()?,
        success: quantity(value.get("status")?)? == 1,
        logs,
    })
}

/// Decodes EVM revert data: `Error(string)` gives the string, `Panic(uint256)` gives
/// `panic 0x..`, other non-empty data gives `0x`-hex; empty data gives `None`.
pub fn decode_revert_reason(data: &[u8]) -> Option<String> {
    const ERROR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];
    const PANIC: [u8; 4] = [0x4e, 0x48, 0x7b, 0x71];
    if data.is_empty() {
        return None;
    }
    let word = |i: usize| data.get(4 + 32 * i..4 + 32 * (i + 1));
    let as_usize = |w: &[u8]| -> Option<usize> {
        // Only the low 8 bytes may be set for a sane offset or length.
        if w[..24].iter().any(|b| *b != 0) {
            return None;
        }
        let mut low = [0_u8; 8];
        low.copy_from_slice(&w[24..]);
        usize::try_from(u64::from_be_bytes(low)).ok()
    };
    if data.starts_with(&ERROR) {
        let offset = word(0).and_then(as_usize)?;
        let len_at = 4 + offset;
        let len = data.get(len_at..len_at + 32).and_then(as_usize)?;
        let bytes = data.get(len_at + 32..len_at + 32 + len)?;
        return Some(String::from_utf8_lossy(bytes).into_owned());
    }
    if data.starts_with(&PANIC) {
        let code = word(0)?;
        let trimmed: Vec<u8> = code.iter().copied().skip_while(|b| *b == 0).collect();
        return Some(format!(
            "panic 0x{}",
            hex::encode(if trimmed.is_empty() { vec![0] } else { trimmed })
        ));
    }
    Some(format!("0x{}", hex::encode(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_answers_are_matched_by_id() {
        let answer = json!([
            {"jsonrpc": "2.0", "id": 1, "result": null},
            {"jsonrpc": "2.0", "id": 0, "result": "0x1"},
            {"jsonrpc": "2.0", "id": 2, "error": {"code": -32003, "message": "nonce too low"}},
        ]);
        let items = batch_results("u", "m", 3, answer).unwrap();
        assert_eq!(items[0].as_ref().unwrap(), &json!("0x1"));
        assert!(items[1].as_ref().unwrap().is_null());
        assert_eq!(
            items[2].as_ref().unwrap_err().rpc_kind(),
            Some(RpcErrorKind::NonceTooLow)
        );
        assert!(batch_results("u", "m", 2, json!([{"id": 0, "result": 1}])).is_err());
    }

    #[test]
    fn receipts_parse_from_node_json() {
        // As anvil 1.7.1 answered for a reverted call (bloom trimmed).
        let value = json!({
            "type": "0x2", "status": "0x0", "cumulativeGasUsed": "0x5232",
            "transactionHash": "0xe8f794e4680daa6589d3c22dbabca5838db94088fd4eeab6b2be1f56a55fc646",
            "transactionIndex": "0x0",
            "blockHash": "0x81d1bd61cf19176830e1f88193658a32be606453175d0dfa94cb85686e21a192",
            "blockNumber": "0x1", "gasUsed": "0x5232", "effectiveGasPrice": "0x3b9aca07",
            "from": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "to": "0x4242424242424242424242424242424242424242",
            "contractAddress": null, "logs": [], "logsBloom": "0x00"
        });
        let receipt = parse_receipt(&value).unwrap();
        assert_eq!(receipt.block_number, 1);
        assert_eq!(receipt.gas_used, 0x5232);
        assert_eq!(receipt.effective_gas_price, "1000000007");
        assert_eq!(receipt.ty, 2);
        assert!(!receipt.success);
        assert_eq!(receipt.contract_address, None);
        // A creation with a log.
        let mut created = value;
        created["to"] = Value::Null;
        created["contractAddress"] = json!("0x5fbdb2315678afecb367f032d93f642f64180aa3");
        created["logs"] = json!([{
            "address": "0x5fbdb2315678afecb367f032d93f642f64180aa3",
            "topics": ["0x0000000000000000000000000000000000000000000000000000000000000001"],
            "data": "0x2a", "logIndex": "0x3", "blockNumber": "0x1"
        }]);
        let receipt = parse_receipt(&created).unwrap();
        assert_eq!(receipt.to, None);
        assert!(receipt.contract_address.is_some());
        assert_eq!(receipt.logs[0].log_index, 3);
        assert_eq!(receipt.logs[0].data, "0x2a");
        let text = serde_json::to_value(&receipt).unwrap();
        assert_eq!(text["type"], 2);
        assert!(parse_receipt(&json!({"status": "0x1"})).is_none());
    }

    #[test]
    fn revert_data_decodes() {
        let data = hex::decode("08c379a0000000000000000000000000000000000000000000000000000000000000002000000000000000000000000000000000000000000000000000000000000000046e6f706500000000000000000000000000000000000000000000000000000000").unwrap();
        assert_eq!(decode_revert_reason(&data).as_deref(), Some("nope"));
        let mut panic = vec![0x4e, 0x48, 0x7b, 0x71];
        panic.extend_from_slice(&[0; 31]);
        panic.push(0x11);
        assert_eq!(decode_revert_reason(&panic).as_deref(), Some("panic 0x11"));
        assert_eq!(decode_revert_reason(&[]), None);
        assert_eq!(decode_revert_reason(&[1, 2]).as_deref(), Some("0x0102"));
        // Truncated Error(string) does not panic.
        assert_eq!(decode_revert_reason(&data[..40]), None);
    }
}
