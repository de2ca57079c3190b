//! A JSON-RPC proxy in front of a node: forwards every request and counts
//! `eth_sendRawTransaction` per transaction hash, so tests see exactly how often the relay
//! broadcast each transaction, every JSON-RPC call by method, and requests that are not
//! JSON-RPC at all (a webhook POST sent to the node would be one). Stopping it makes its URL
//! refuse connections (a node down).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{B256, keccak256};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    sends: Mutex<HashMap<B256, u32>>,
    methods: Mutex<HashMap<String, u64>>,
    /// HTTP requests that reached the node, by each method they carried (a batch counts
    /// once per method in it).
    requests: Mutex<HashMap<String, u64>>,
    foreign: Mutex<u64>,
    refused: Mutex<HashSet<String>>,
    /// Calls of a method still to answer with a server error (a node timing out under load).
    failing: Mutex<HashMap<String, u32>>,
    /// Methods whose answers are held this long after the node answered (a slow network
    /// back from the node; what was sent has reached it).
    held: Mutex<HashMap<String, Duration>>,
}

pub(crate) struct RpcProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl Drop for RpcProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl RpcProxy {
    pub(crate) async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            sends: Mutex::new(HashMap::new()),
            methods: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            foreign: Mutex::new(0),
            refused: Mutex::new(HashSet::new()),
            failing: Mutex::new(HashMap::new()),
            held: Mutex::new(HashMap::new()),
        });
        let (addr, cancel) = serve(0, Arc::clone(&shared)).await;
        Self {
            addr,
            shared,
            cancel,
        }
    }

    /// Answers single requests for `method` with JSON-RPC -32601 "method not found" from
    /// now on, as a node without it would (still counted).
    pub(crate) fn refuse(&self, method: &str) {
        self.shared
            .refused
            .lock()
            .unwrap()
            .insert(method.to_owned());
    }

    /// Answers the next `times` single requests for `method` with JSON-RPC -32603 (an
    /// internal error, as a node past its deadline gives), then forwards again (counted).
    pub(crate) fn fail_next(&self, method: &str, times: u32) {
        self.shared
            .failing
            .lock()
            .unwrap()
            .insert(method.to_owned(), times);
    }

    /// Holds every answer to a request carrying `method` (single or in a batch) for `delay`
    /// after the node answered it, from now on.
    pub(crate) fn hold_answers(&self, method: &str, delay: Duration) {
        self.shared
            .held
            .lock()
            .unwrap()
            .insert(method.to_owned(), delay);
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How often each hash was sent through this proxy.
    pub(crate) fn sends(&self) -> HashMap<B256, u32> {
        self.shared.sends.lock().unwrap().clone()
    }

    pub(crate) fn sends_of(&self, hash: B256) -> u32 {
        self.sends().get(&hash).copied().unwrap_or(0)
    }

    /// JSON-RPC calls seen, by method (batch entries one by one).
    pub(crate) fn calls(&self, method: &str) -> u64 {
        self.shared
            .methods
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// HTTP requests forwarded that carried `method` (a JSON-RPC batch is one request).
    pub(crate) fn requests_with(&self, method: &str) -> u64 {
        self.shared
            .requests
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or(0)
    }

    /// JSON-RPC calls seen in all.
    pub(crate) fn total_calls(&self) -> u64 {
        self.shared.methods.lock().unwrap().values().sum()
    }

    /// Requests whose body was not JSON-RPC.
    pub(crate) fn foreign(&self) -> u64 {
        *self.shared.foreign.lock().unwrap()
    }

    pub(crate) fn stop(&mut self) {
        self.cancel.cancel();
    }

    pub(crate) async fn restart(&mut self) {
        let (_, cancel) = serve(self.addr.port(), Arc::clone(&self.shared)).await;
        self.cancel = cancel;
    }
}

async fn serve(port: u16, shared: Arc<Shared>) -> (SocketAddr, CancellationToken) {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let app = axum::Router::new()
        .route("/", post(forward))
        .fallback(foreign)
        .with_state(shared);
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    (addr, cancel)
}

async fn foreign(State(shared): State<Arc<Shared>>) -> StatusCode {
    *shared.foreign.lock().unwrap() += 1;
    StatusCode::NOT_FOUND
}

fn count(shared: &Shared, request: &Value) {
    if let Some(method) = request["method"].as_str() {
        *shared
            .methods
            .lock()
            .unwrap()
            .entry(method.to_owned())
            .or_default() += 1;
    } else {
        *shared.foreign.lock().unwrap() += 1;
    }
    if request["method"] == "eth_sendRawTransaction"
        && let Some(raw) = request["params"][0].as_str()
        && let Ok(bytes) = hex::decode(raw.trim_start_matches("0x"))
    {
        *shared
            .sends
            .lock()
            .unwrap()
            .entry(keccak256(&bytes))
            .or_default() += 1;
    }
}

async fn forward(State(shared): State<Arc<Shared>>, body: Bytes) -> (StatusCode, Bytes) {
    // Forward in a task of its own: if the relay dies mid-request the node still gets what
    // was sent, as it would from a real connection, and the count stays exact.
    let task = tokio::spawn(async move {
        if let Ok(request) = serde_json::from_slice::<Value>(&body)
            && let Some(method) = request["method"].as_str()
            && shared.refused.lock().unwrap().contains(method)
        {
            count(&shared, &request);
            let error = serde_json::json!({
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": -32601, "message": format!("the method {method} does not exist/is not available")},
            });
            return (StatusCode::OK, Bytes::from(error.to_string()));
        }
        if let Ok(request) = serde_json::from_slice::<Value>(&body)
            && let Some(method) = request["method"].as_str()
            && let Some(left) = shared.failing.lock().unwrap().get_mut(method)
            && *left > 0
        {
            *left -= 1;
            count(&shared, &request);
            let error = serde_json::json!({
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {"code": -32603, "message": "internal error: request timed out"},
            });
            return (StatusCode::OK, Bytes::from(error.to_string()));
        }
        let answer = shared
            .http
            .post(&shared.upstream)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let answer = match answer {
            Ok(response) => {
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                (status, response.bytes().await.unwrap_or_default())
            }
            Err(_) => return (StatusCode::BAD_GATEWAY, Bytes::new()),
        };
        // Count what reached the node.
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Array(items)) => {
                let methods: HashSet<&str> =
                    items.iter().filter_map(|i| i["method"].as_str()).collect();
                let mut requests = shared.requests.lock().unwrap();
                for method in methods {
                    *requests.entry(method.to_owned()).or_default() += 1;
                }
                drop(requests);
                items.iter().for_each(|item| count(&shared, item));
            }
            Ok(Value::Object(item)) => {
                if let Some(method) = item.get("method").and_then(Value::as_str) {
                    *shared
                        .requests
                        .lock()
                        .unwrap()
                        .entry(method.to_owned())
                        .or_default() += 1;
                }
                count(&shared, &Value::Object(item));
            }
            Ok(item) => count(&shared, &item),
            Err(_) => *shared.foreign.lock().unwrap() += 1,
        }
        let hold = {
            let held = shared.held.lock().unwrap();
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Array(items)) => items
                    .iter()
                    .filter_map(|i| held.get(i["method"].as_str()?).copied())
                    .max(),
                Ok(item) => item["method"].as_str().and_then(|m| held.get(m).copied()),
                Err(_) => None,
            }
        };
        if let Some(delay) = hold {
            tokio::time::sleep(delay).await;
        }
        answer
    });
    task.await
        .unwrap_or((StatusCode::BAD_GATEWAY, Bytes::new()))
}
