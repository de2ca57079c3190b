//! Following a chain's head: `eth_subscribe("newHeads")` over WebSocket (pushed as soon as a
//! node has a block), with polling `eth_getBlockByNumber("latest")` as the fallback while no
//! subscription is up, and as a slow safety net while one is (a missed notification costs at
//! most ten poll intervals).
//!
//! The newest header is published on a `watch` channel: the follower always works on the
//! latest head and fills in skipped blocks by their parent hashes, so a burst of heads never
//! queues up (bounded by construction).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use svckit::redact::SafeUrl;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::node::{Header, NodeClient};

/// The newest header and when the relay first saw it (Unix ms).
pub(crate) type Latest = Option<(Header, u64)>;

/// Time allowed to connect and subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// A subscription silent for this long is dropped and made again (blocks may be slow, so
/// generous; the safety poll covers the gap meanwhile).
const SILENCE: Duration = Duration::from_secs(120);
/// Longest wait between reconnection attempts.
const MAX_RECONNECT: Duration = Duration::from_secs(10);

/// How heads are followed.
#[derive(Debug, Clone)]
pub(crate) struct HeadSource {
    /// The chain's RPC client (polling).
    pub(crate) node: NodeClient,
    /// WebSocket URLs to subscribe at, in order (empty: poll only).
    pub(crate) ws_urls: Vec<SafeUrl>,
    /// Subscribe at all.
    pub(crate) subscribe: bool,
    /// Poll interval without a subscription.
    pub(crate) poll_interval: Duration,
}

fn publish(tx: &watch::Sender<Latest>, header: Header, now_ms: u64) {
    tx.send_if_modified(|latest| {
        let newer = latest
            .as_ref()
            .is_none_or(|(known, _)| known.hash != header.hash);
        if newer {
            *latest = Some((header, now_ms));
        }
        newer
    });
}

/// Runs the head source until `cancel`, publishing on `tx`; `now_ms` reads the clock.
pub(crate) async fn run(
    source: HeadSource,
    tx: watch::Sender<Latest>,
    cancel: CancellationToken,
    now_ms: impl Fn() -> u64 + Send + Sync + Clone + 'static,
) {
    let chain_id = source.node.chain_id();
    let (subscribed_tx, subscribed) = watch::channel(false);
    let subscriber = if source.subscribe && !source.ws_urls.is_empty() {
        let (source, tx, cancel, now_ms) =
            (source.clone(), tx.clone(), cancel.clone(), now_ms.clone());
        Some(tokio::spawn(async move {
            subscribe_forever(&source, &tx, &subscribed_tx, &cancel, now_ms).await;
        }))
    } else {
        None
    };
    loop {
        let interval = if *subscribed.borrow() {
            source.poll_interval * 10
        } else {
            source.poll_interval
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        match source.node.head().await {
            Ok(header) => publish(&tx, header, now_ms()),
            Err(error) => debug!(chain_id, %error, "head poll failed"),
        }
    }
    if let Some(subscriber) = subscriber {
        subscriber.abort();
    }
}

async fn subscribe_forever(
    source: &HeadSource,
    tx: &watch::Sender<Latest>,
    subscribed: &watch::Sender<bool>,
    cancel: &CancellationToken,
    now_ms: impl Fn() -> u64,
) {
    let chain_id = source.node.chain_id();
    let mut wait = Duration::from_millis(200);
    let mut index = 0;
    loop {
        let url = &source.ws_urls[index % source.ws_urls.len()];
        index += 1;
        let outcome = tokio::select! {
            () = cancel.cancelled() => return,
            outcome = subscription(url, tx, subscribed, &now_ms) => outcome,
        };
        subscribed.send_replace(false);
        match outcome {
            Ok(()) => debug!(chain_id, node = %url, "head subscription ended"),
            Err(error) => {
                debug!(chain_id, node = %url, %error, "head subscription failed; polling meanwhile");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(MAX_RECONNECT);
    }
}

/// One subscription: connect, `eth_subscribe`, then publish every header until the socket
/// ends or stays silent too long.
async fn subscription(
    url: &SafeUrl,
    tx: &watch::Sender<Latest>,
    subscribed: &watch::Sender<bool>,
    now_ms: &impl Fn() -> u64,
) -> Result<(), String> {
    let (mut socket, _) = tokio::time::timeout(
        SUBSCRIBE_TIMEOUT,
        tokio_tungstenite::connect_async(url.expose().as_str()),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]});
    socket
        .send(Message::Text(request.to_string().into()))
        .await
        .map_err(|e| e.to_string())?;
    let mut confirmed = false;
    loop {
        let frame = tokio::time::timeout(SILENCE, socket.next())
            .await
            .map_err(|_| "silent too long".to_owned())?;
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Ping(payload))) => {
                socket
                    .send(Message::Pong(payload))
                    .await
                    .map_err(|e| e.to_string())?;
                continue;
            }
            Some(Ok(Message::Close(_))) | None => return Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.to_string()),
        };
        let value: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if value.get("id").is_some() {
            if value.get("error").is_some() {
                return Err(format!("eth_subscribe refused: {}", value["error"]));
            }
            if !confirmed {
                confirmed = true;
                subscribed.send_replace(true);
                info!(node = %url, "following heads by subscription");
            }
            continue;
        }
        match value
            .get("params")
            .and_then(|p| p.get("result"))
            .and_then(Header::parse)
        {
            Some(header) => publish(tx, header, now_ms()),
            None => warn!(node = %url, "a newHeads notification without a header"),
        }
    }
}
