//! [`NodeClient::block_receipts`] against a fake node on loopback whose
//! `eth_getBlockReceipts` answers later than the client's timeout (a 10,000-transaction
//! block from a busy node).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::B256;
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::NodeClient;

const TX: B256 = B256::repeat_byte(0x11);
const BLOCK: B256 = B256::repeat_byte(0x22);

type Calls = Arc<Mutex<HashMap<String, u32>>>;

fn receipt() -> Value {
    json!({
        "transactionHash": TX, "blockNumber": "0x5", "blockHash": BLOCK,
        "transactionIndex": "0x0", "from": "0x00000000000000000000000000000000000000aa",
        "to": null, "contractAddress": null, "gasUsed": "0x5208",
        "cumulativeGasUsed": "0x5208", "status": "0x1", "logs": []
    })
}

async fn answer(calls: &Calls, request: &Value) -> Value {
    let method = request["method"].as_str().unwrap_or_default().to_owned();
    *calls.lock().unwrap().entry(method.clone()).or_default() += 1;
    let result = match method.as_str() {
        "eth_getBlockReceipts" => {
            tokio::time::sleep(Duration::from_millis(600)).await;
            json!([receipt()])
        }
        "eth_getBlockByHash" => json!({"hash": BLOCK, "transactions": [TX]}),
        "eth_getTransactionReceipt" => receipt(),
        _ => Value::Null,
    };
    json!({"jsonrpc": "2.0", "id": request["id"], "result": result})
}

async fn rpc(State(calls): State<Calls>, Json(body): Json<Value>) -> Json<Value> {
    match body {
        Value::Array(requests) => {
            let mut out = Vec::new();
            for request in &requests {
                out.push(answer(&calls, request).await);
            }
            Json(Value::Array(out))
        }
        request => Json(answer(&calls, &request).await),
    }
}

#[tokio::test]
async fn block_receipts_fall_back_to_batches_when_the_block_call_times_out() {
    let calls = Calls::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/", post(rpc))
        .with_state(calls.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let node = NodeClient::new(
        31337,
        vec![format!("http://{addr}/").parse().unwrap()],
        Duration::from_millis(200),
        Duration::from_millis(10),
        prometheus_client::metrics::counter::Counter::default(),
    );
    for _ in 0..2 {
        let receipts = node
            .block_receipts(BLOCK, 100)
            .await
            .expect("the block's receipts despite the timeout")
            .expect("the block is known");
        assert_eq!(receipts.len(), 1);
        assert_eq!(receipts[0].tx_hash, TX);
    }
    let calls = calls.lock().unwrap().clone();
    // Each read tries the one-request form first (only a timeout, not a missing method),
    // then the batches: no error on any tick.
    assert_eq!(calls.get("eth_getBlockReceipts"), Some(&2));
    assert_eq!(calls.get("eth_getBlockByHash"), Some(&2));
    assert_eq!(calls.get("eth_getTransactionReceipt"), Some(&2));
    server.abort();
}
