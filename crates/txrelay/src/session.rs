//! WebSocket sessions: delivery "to the recipient account" (seed ¶43) to whoever signed in as
//! that account.
//!
//! `GET /v1/ws` needs an API key (and takes one of the key's `limits.max_sockets_per_key`
//! slots); the account is then proven with an EIP-4361 message ([`crate::auth::siwe`]).
//! Protocol (JSON text frames, `type` tagged):
//!
//! 1. server: `{"type":"challenge","nonce":N,"domain":D,"uri":U}`;
//! 2. client: `{"type":"login","message":M,"signature":S}`, where `M` is an EIP-4361 message
//!    for the account with domain `D`, nonce `N` and an expiration time, and `S` its EIP-191
//!    signature by the account's key; server: `{"type":"welcome","account":..}`, or
//!    `{"type":"error",..}` and close;
//! 3. server: `{"type":"event","event":{..}}` for each result addressed to the account,
//!    including those recorded while nobody was signed in;
//! 4. client: `{"type":"ack","event_id":..}` marks it delivered. An event not acknowledged
//!    within `delivery.ack_timeout_ms` is offered again (to this or another session).
//!
//! The server pings every third of `limits.ws_idle_timeout_ms` and closes a session from
//! which nothing (not even a pong) arrived for that long; frames are at most 64 KiB.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy::primitives::Address;
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::auth::SocketSlot;
use crate::auth::siwe::{Expect, verify};
use crate::core::now_ms;
use crate::state::Shared;
use crate::store::millis_of;

/// How long a client has to sign in after connecting.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sign an EIP-4361 message with this nonce for this domain and URI.
    Challenge {
        /// The nonce the message must carry.
        nonce: String,
        /// The domain it must name.
        domain: String,
        /// The URI it should carry.
        uri: String,
    },
    /// Signed in as `account`.
    Welcome {
        /// The account.
        account: Address,
    },
    /// A result for the account ([`crate::event::Event`] JSON).
    Event {
        /// The event.
        event: serde_json::Value,
    },
    /// A protocol error; the server closes after it.
    Error {
        /// Machine-readable reason: `login_failed`, `login_timeout`, `bad_frame`.
        reason: String,
        /// Details.
        message: String,
    },
}

/// Frames the client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Answer to the challenge.
    Login {
        /// The EIP-4361 message text.
        message: String,
        /// Its EIP-191 signature, 0x-hex of 65 bytes.
        signature: String,
    },
    /// Acknowledges an event.
    Ack {
        /// Its id.
        event_id: String,
    },
}

fn frame(message: &ServerMessage) -> Message {
    Message::Text(serde_json::to_string(message).unwrap_or_default().into())
}

/// Runs one session until the client leaves, goes idle or the relay stops; `slot` is the
/// key's socket slot, released when the session ends.
pub(crate) async fn run(socket: WebSocket, shared: Arc<Shared>, slot: SocketSlot) {
    let (mut tx, mut rx) = socket.split();
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let sign_in = &shared.settings.sign_in;
    let challenge = ServerMessage::Challenge {
        nonce: nonce.clone(),
        domain: sign_in.domain.clone(),
        uri: sign_in.uri.clone(),
    };
    if tx.send(frame(&challenge)).await.is_err() {
        return;
    }
    let login = tokio::time::timeout(LOGIN_TIMEOUT, async {
        while let Some(Ok(message)) = rx.next().await {
            if let Message::Text(text) = message {
                return serde_json::from_str::<ClientMessage>(&text).ok();
            }
        }
        None
    })
    .await;
    let refuse = |reason: &str, message: String| ServerMessage::Error {
        reason: reason.to_owned(),
        message,
    };
    let account = match login {
        Ok(Some(ClientMessage::Login { message, signature })) => {
            let chain_ids: Vec<u64> = shared.nodes.keys().copied().collect();
            let expect = Expect {
                domain: &sign_in.domain,
                nonce: Some(&nonce),
                chain_ids: &chain_ids,
                now_ms: now_ms(shared.clock.as_ref()),
                skew_ms: millis_of(sign_in.skew),
                max_validity_ms: millis_of(sign_in.max_validity),
            };
            match verify(&message, &signature, &expect) {
                Ok(message) => message.address,
                Err(error) => {
                    let _ = tx
                        .send(frame(&refuse("login_failed", error.to_string())))
                        .await;
                    let _ = tx.close().await;
                    return;
                }
            }
        }
        Ok(_) | Err(_) => {
            let (reason, message) = if login.is_err() {
                ("login_timeout", "no login within 30 s")
            } else {
                ("bad_frame", "expected a login frame")
            };
            let _ = tx.send(frame(&refuse(reason, message.to_owned()))).await;
            let _ = tx.close().await;
            return;
        }
    };
    if tx
        .send(frame(&ServerMessage::Welcome { account }))
        .await
        .is_err()
    {
        return;
    }
    let session = format!(
        "{}/ws/{}",
        shared.settings.instance_id,
        shared.session_seq.fetch_add(1, Ordering::Relaxed)
    );
    info!(%account, %session, "websocket session signed in");
    serve(&shared, &mut tx, &mut rx, account, &session).await;
    // On shutdown the restart releases this instance's sessions (`release_claims`).
    if !shared.cancel.is_cancelled()
        && let Err(error) = shared.store.release_session(&session).await
    {
        warn!(%error, "releasing a closed session's events failed; they return after the ack timeout");
    }
    drop(slot);
    debug!(%account, %session, "websocket session closed");
}

/// The signed-in part of a session: pushes events, records acks, pings, and ends on close,
/// idleness or shutdown.
async fn serve<S, R>(shared: &Shared, tx: &mut S, rx: &mut R, account: Address, session: &str)
where
    S: futures::Sink<Message> + Unpin,
    R: futures::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let settings = &shared.settings;
    let idle = settings.ws_idle_timeout;
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval(idle / 3);
    ping.tick().await;
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            incoming = rx.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ClientMessage>(&text) {
                        Ok(ClientMessage::Ack { event_id }) => {
                            let now = now_ms(shared.clock.as_ref());
                            match shared.store.account_event_acked(account, &event_id, now).await {
                                Ok(true) => shared.metrics.delivery("account", "delivered"),
                                Ok(false) => debug!(%event_id, "ack for an event not pending"),
                                Err(error) => warn!(%error, "recording an ack failed"),
                            }
                        }
                        Ok(ClientMessage::Login { .. }) | Err(_) => {
                            debug!(%session, "ignoring an unexpected frame");
                        }
                    },
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= idle {
                    debug!(%session, "websocket idle; closing");
                    break;
                }
                if tx.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
            () = shared.wake_sessions.notified() => {
                if push(shared, tx, account, session).await.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep(settings.delivery_poll_interval) => {
                if push(shared, tx, account, session).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.close().await;
}

/// Sends the account's due events; an error means the socket is gone.
async fn push<S>(shared: &Shared, tx: &mut S, account: Address, session: &str) -> Result<(), ()>
where
    S: futures::Sink<Message> + Unpin,
{
    let now = now_ms(shared.clock.as_ref());
    let events = match shared
        .store
        .claim_account_events(account, session, now, shared.settings.ack_timeout, 64)
        .await
    {
        Ok(events) => events,
        Err(error) => {
            warn!(%error, "claiming account events failed");
            return Ok(());
        }
    };
    for event in events {
        let value = serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
        tx.send(frame(&ServerMessage::Event { event: value }))
            .await
            .map_err(|_| ())?;
        debug!(event_id = %event.event_id, %account, "event pushed");
    }
    Ok(())
}
