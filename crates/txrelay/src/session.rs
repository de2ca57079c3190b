//! WebSocket sessions: delivery "to the recipient account" (seed ¶43) to whoever logged in
//! as that account (see [`crate::login`]).
//!
//! Protocol on `GET /v1/ws` (JSON text frames, `type` tagged):
//!
//! 1. server: `{"type":"challenge","nonce":N,"message":M}`;
//! 2. client: `{"type":"login","account":"0x..","signature":"0x.."}` (EIP-191 signature of
//!    `M`); server: `{"type":"welcome","account":..}` or `{"type":"error",..}` and close;
//! 3. server: `{"type":"event","event":{..}}` for each result addressed to the account,
//!    including those recorded while nobody was logged in;
//! 4. client: `{"type":"ack","event_id":..}` marks it delivered. An event not acknowledged
//!    within `delivery.ack_timeout_ms` is offered again (to this or another session).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy::primitives::Address;
use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::core::now_ms;
use crate::login::{challenge_message, new_nonce, verify_login};
use crate::state::Shared;

/// How long a client has to log in after connecting.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Frames the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Sign `message` to log in.
    Challenge {
        /// The random nonce.
        nonce: String,
        /// The exact text to sign (EIP-191).
        message: String,
    },
    /// Logged in as `account`.
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
        /// The claimed account.
        account: Address,
        /// 0x-hex 65-byte EIP-191 signature of the challenge message.
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

/// Runs one session until the client leaves or the relay stops.
pub(crate) async fn run(socket: WebSocket, shared: Arc<Shared>) {
    let (mut tx, mut rx) = socket.split();
    let nonce = new_nonce();
    let challenge = ServerMessage::Challenge {
        message: challenge_message(&nonce),
        nonce: nonce.clone(),
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
    let account = match login {
        Ok(Some(ClientMessage::Login { account, signature })) => {
            match verify_login(&nonce, account, &signature) {
                Ok(()) => account,
                Err(error) => {
                    let _ = tx
                        .send(frame(&ServerMessage::Error {
                            reason: "login_failed".to_owned(),
                            message: error.to_string(),
                        }))
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
            let _ = tx
                .send(frame(&ServerMessage::Error {
                    reason: reason.to_owned(),
                    message: message.to_owned(),
                }))
                .await;
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
    info!(%account, %session, "websocket session logged in");
    let settings = &shared.settings;
    loop {
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            incoming = rx.next() => match incoming {
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
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            () = shared.wake_sessions.notified() => {
                if push(&shared, &mut tx, account, &session).await.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep(settings.delivery_poll_interval) => {
                if push(&shared, &mut tx, account, &session).await.is_err() {
                    break;
                }
            }
        }
    }
    // On shutdown the restart releases this instance's sessions (`release_claims`).
    if !shared.cancel.is_cancelled()
        && let Err(error) = shared.store.release_session(&session).await
    {
        warn!(%error, "releasing a closed session's events failed; they return after the ack timeout");
    }
    debug!(%account, %session, "websocket session closed");
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
