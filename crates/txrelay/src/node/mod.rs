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

mod receipt;
#[cfg(test)]
mod tests;
mod wire;

use receipt::b256;
pub use receipt::{Header, Log, Receipt, decode_revert_reason, parse_receipt, quantity};
use wire::{batch_results, single_result, transport_error};

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

    /// `eth_sendRawTransaction` for each of `raws` in one JSON-RPC batch; answers in input
    /// order, "already known" counting as success as in [`Self::send_raw`].
    ///
    /// # Errors
    /// The outer error when no node answered the batch (each entry failed alike); the
    /// entries carry the node's answer to each transaction.
    pub async fn send_raw_many(
        &self,
        raws: &[&[u8]],
    ) -> Result<Vec<Result<(), NodeError>>, NodeError> {
        let params: Vec<Value> = raws
            .iter()
            .map(|raw| json!([format!("0x{}", hex::encode(raw))]))
            .collect();
        let answers = self.batch("eth_sendRawTransaction", &params).await?;
        Ok(answers
            .into_iter()
            .map(|answer| match answer {
                Ok(_) => Ok(()),
                Err(error) if error.rpc_kind() == Some(RpcErrorKind::AlreadyKnown) => Ok(()),
                Err(error) => Err(error),
            })
            .collect())
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

    /// [`Self::nonce`] of several accounts in one JSON-RPC batch, in input order.
    ///
    /// # Errors
    /// See [`Self::batch`]; [`NodeError::BadResponse`] for an answer that is no quantity.
    pub async fn nonces(&self, accounts: &[Address]) -> Result<Vec<u64>, NodeError> {
        let params: Vec<Value> = accounts.iter().map(|a| json!([a, "latest"])).collect();
        let answers = self.batch("eth_getTransactionCount", &params).await?;
        answers
            .into_iter()
            .map(|answer| {
                let value = answer?;
                quantity(&value).ok_or_else(|| self.bad("eth_getTransactionCount", &value))
            })
            .collect()
    }

    /// The nonces of transactions by hash (`eth_getTransactionByHash`, one batch), in input
    /// order; `None` for a hash the node does not know.
    ///
    /// # Errors
    /// See [`Self::batch`].
    pub async fn nonces_of(&self, hashes: &[B256]) -> Result<Vec<Option<u64>>, NodeError> {
        let params: Vec<Value> = hashes.iter().map(|h| json!([h])).collect();
        let answers = self.batch("eth_getTransactionByHash", &params).await?;
        answers
            .into_iter()
            .map(|answer| answer.map(|value| value.get("nonce").and_then(quantity)))
            .collect()
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
    /// from a node without it (answering "method not found", remembered) or when that one
    /// request timed out (this block only), the block's transaction hashes and their
    /// receipts in batches of `batch`. `None` when the node does
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
                // A whole block's receipts in one answer can take longer than the request
                // timeout (10,000 transactions from a busy node): asking again would time
                // out again on every tick. Smaller batches of this block's receipts each
                // fit the timeout; the next block tries `eth_getBlockReceipts` again.
                Err(error) if error.timed_out() => {
                    warn!(
                        chain_id = self.inner.chain_id,
                        block = %hash,
                        %error,
                        "eth_getBlockReceipts timed out; fetching this block's receipts in batches"
                    );
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
