//! A client of the relay's API, as a user device uses it: submit signed transactions,
//! register notification rules, read a transaction, and log in over the WebSocket.
//! Used by the demo, the benchmark and the tests.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::api::SubmitResponse;
use crate::event::Event;
use crate::load::Wallet;
use crate::rules::Registration;
use crate::session::{ClientMessage, ServerMessage};

/// A client-side failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The HTTP request failed.
    #[error("request to the relay failed")]
    Http(#[from] reqwest::Error),
    /// The WebSocket failed.
    #[error("websocket failed")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// The relay answered something unexpected.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// Signing the login failed.
    #[error(transparent)]
    Sign(#[from] crate::load::SignError),
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
}

/// The answer to a submission: the status and the JSON body.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
}

impl Submitted {
    /// The accepted answer, if the status is 202.
    pub fn accepted(&self) -> Option<SubmitResponse> {
        (self.status == 202)
            .then(|| serde_json::from_value(self.body.clone()).ok())
            .flatten()
    }

    /// The `error.reason` code of a refused submission.
    pub fn reason(&self) -> Option<&str> {
        self.body.get("error")?.get("reason")?.as_str()
    }
}

/// HTTP client of one relay.
#[derive(Debug, Clone)]
pub struct RelayClient {
    base: String,
    http: reqwest::Client,
}

impl RelayClient {
    /// A client for the relay at `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), ClientError> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// `POST /v1/chains/{chain_id}/transactions`.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the relay cannot be reached.
    pub async fn submit(
        &self,
        chain_id: u64,
        raw: &[u8],
        sender: Address,
        device: &str,
        idempotent: bool,
    ) -> Result<Submitted, ClientError> {
        let body = json!({
            "raw": format!("0x{}", hex::encode(raw)),
            "sender": sender,
            "device": device,
            "idempotent": idempotent,
        });
        self.submit_json(chain_id, &body).await
    }

    /// `POST /v1/chains/{chain_id}/transactions` with an arbitrary JSON body.
    ///
    /// # Errors
    /// [`ClientError::Http`].
    pub async fn submit_json(&self, chain_id: u64, body: &Value) -> Result<Submitted, ClientError> {
        let request = self
            .http
            .post(format!("{}/v1/chains/{chain_id}/transactions", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        let (status, body) = self.json(request).await?;
        Ok(Submitted { status, body })
    }

    /// `PUT /v1/devices/{device}/notifications`.
    ///
    /// # Errors
    /// [`ClientError::Unexpected`] unless the relay answers 200.
    pub async fn register(
        &self,
        device: &str,
        registration: &Registration,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_string(registration).unwrap_or_default();
        let request = self
            .http
            .put(format!("{}/v1/devices/{device}/notifications", self.base))
            .header("content-type", "application/json")
            .body(body);
        match self.json(request).await? {
            (200, _) => Ok(()),
            (status, body) => Err(ClientError::Unexpected(format!("{status} {body}"))),
        }
    }

    /// `GET /v1/transactions/{hash}`; `None` on 404.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn transaction(&self, hash: B256) -> Result<Option<Value>, ClientError> {
        let request = self
            .http
            .get(format!("{}/v1/transactions/{hash}", self.base));
        match self.json(request).await? {
            (200, body) => Ok(Some(body)),
            (404, _) => Ok(None),
            (status, body) => Err(ClientError::Unexpected(format!("{status} {body}"))),
        }
    }

    /// `GET {path}` as JSON.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn get(&self, path: &str) -> Result<(u16, Value), ClientError> {
        self.json(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// `POST {path}` without a body, as JSON.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn post(&self, path: &str) -> Result<(u16, Value), ClientError> {
        self.json(self.http.post(format!("{}{path}", self.base)))
            .await
    }

    /// Opens `GET /v1/ws` and logs in as `wallet`'s account.
    ///
    /// # Errors
    /// [`ClientError`] when the connection or the login fails.
    pub async fn login(&self, wallet: &Wallet) -> Result<AccountSession, ClientError> {
        let url = format!("{}/v1/ws", self.base.replacen("http", "ws", 1));
        let (mut socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| ClientError::WebSocket(Box::new(e)))?;
        let nonce = match next_message(&mut socket, Duration::from_secs(10)).await? {
            ServerMessage::Challenge { nonce, .. } => nonce,
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        let login = ClientMessage::Login {
            account: wallet.address(),
            signature: crate::login::sign_challenge(wallet, &nonce)?,
        };
        socket
            .send(Message::Text(
                serde_json::to_string(&login).unwrap_or_default().into(),
            ))
            .await
            .map_err(|e| ClientError::WebSocket(Box::new(e)))?;
        match next_message(&mut socket, Duration::from_secs(10)).await? {
            ServerMessage::Welcome { account } if account == wallet.address() => {
                Ok(AccountSession { socket, account })
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn next_message(socket: &mut Socket, wait: Duration) -> Result<ServerMessage, ClientError> {
    loop {
        let frame = tokio::time::timeout(wait, socket.next())
            .await
            .map_err(|_| ClientError::Timeout)?
            .ok_or_else(|| ClientError::Unexpected("socket closed".to_owned()))?
            .map_err(|e| ClientError::WebSocket(Box::new(e)))?;
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text)
                .map_err(|_| ClientError::Unexpected(text.to_string()));
        }
    }
}

/// A logged-in WebSocket session.
#[derive(Debug)]
pub struct AccountSession {
    socket: Socket,
    account: Address,
}

impl AccountSession {
    /// The account logged in as.
    pub fn account(&self) -> Address {
        self.account
    }

    /// Waits up to `wait` for the next event.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] or a socket error.
    pub async fn next_event(&mut self, wait: Duration) -> Result<Event, ClientError> {
        match next_message(&mut self.socket, wait).await? {
            ServerMessage::Event { event } => {
                serde_json::from_value(event).map_err(|e| ClientError::Unexpected(e.to_string()))
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Acknowledges an event.
    ///
    /// # Errors
    /// A socket error.
    pub async fn ack(&mut self, event_id: &str) -> Result<(), ClientError> {
        let ack = ClientMessage::Ack {
            event_id: event_id.to_owned(),
        };
        self.socket
            .send(Message::Text(
                serde_json::to_string(&ack).unwrap_or_default().into(),
            ))
            .await
            .map_err(|e| ClientError::WebSocket(Box::new(e)))
    }

    /// Closes the session.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
