//! A client of the relay's API, as a user device uses it: authenticate with an API key,
//! submit signed transactions, register notification rules and accounts (EIP-4361 proofs),
//! read a transaction, and sign in over the WebSocket. Used by the demo, the benchmark and the
//! tests.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
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
    /// The answer of an accepted or already known transaction (status 202, or 200 for one
    /// already in a block).
    pub fn accepted(&self) -> Option<SubmitResponse> {
        (self.status == 202 || self.status == 200)
            .then(|| serde_json::from_value(self.body.clone()).ok())
            .flatten()
    }

    /// The `error.reason` code of a refused submission.
    pub fn reason(&self) -> Option<&str> {
        self.body.get("error")?.get("reason")?.as_str()
    }
}

/// HTTP client of one relay, with an API key (or none, to test refusals).
#[derive(Debug, Clone)]
pub struct RelayClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
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
            token: None,
        }
    }

    /// The same client sending `token` as `Authorization: Bearer`.
    #[must_use]
    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The API key it sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> Result<(u16, Value), ClientError> {
        let response = self.authed(request).send().await?;
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
        self.submit_with_key(chain_id, body, None).await
    }

    /// `POST /v1/chains/{chain_id}/transactions` with an `Idempotency-Key` header when given.
    ///
    /// # Errors
    /// [`ClientError::Http`].
    pub async fn submit_with_key(
        &self,
        chain_id: u64,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Submitted, ClientError> {
        let mut request = self
            .http
            .post(format!("{}/v1/chains/{chain_id}/transactions", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        let (status, body) = self.json(request).await?;
        Ok(Submitted { status, body })
    }

    /// `PUT /v1/devices/{device}/notifications`: the answer (with generated secrets).
    ///
    /// # Errors
    /// [`ClientError::Unexpected`] unless the relay answers 200.
    pub async fn register(
        &self,
        device: &str,
        registration: &Registration,
    ) -> Result<Value, ClientError> {
        match self.put_rules(device, registration).await? {
            (200, body) => Ok(body),
            (status, body) => Err(ClientError::Unexpected(format!("{status} {body}"))),
        }
    }

    /// `PUT /v1/devices/{device}/notifications`: status and body, whatever they are.
    ///
    /// # Errors
    /// [`ClientError::Http`].
    pub async fn put_rules(
        &self,
        device: &str,
        registration: &Registration,
    ) -> Result<(u16, Value), ClientError> {
        let body = serde_json::to_string(registration).unwrap_or_default();
        let request = self
            .http
            .put(format!("{}/v1/devices/{device}/notifications", self.base))
            .header("content-type", "application/json")
            .body(body);
        self.json(request).await
    }

    /// The EIP-4361 message and signature registering `wallet`'s account to a device on
    /// `chain_id`: asks `POST /v1/auth/nonce`, builds the message with the relay's domain,
    /// URI and nonce, valid for 5 minutes, and signs it.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn account_proof(
        &self,
        wallet: &Wallet,
        chain_id: u64,
    ) -> Result<Value, ClientError> {
        let (status, nonce) = self.post("/v1/auth/nonce").await?;
        if status != 201 {
            return Err(ClientError::Unexpected(format!("{status} {nonce}")));
        }
        let field = |name: &str| nonce[name].as_str().unwrap_or_default().to_owned();
        let message = crate::auth::siwe::message_for(
            &field("domain"),
            &field("uri"),
            wallet.address(),
            Some("Register this account to a device on txrelay."),
            (chain_id, &field("nonce")),
            crate::core::now_ms(&svckit::SystemClock),
            300_000,
        );
        let signature = crate::auth::siwe::sign(wallet, &message)?;
        Ok(json!({"message": message.to_string(), "signature": signature}))
    }

    /// Registers `wallet`'s account to `device` (`POST /v1/devices/{device}/accounts` with a
    /// fresh proof).
    ///
    /// # Errors
    /// [`ClientError::Unexpected`] unless the relay answers 201.
    pub async fn register_account(
        &self,
        device: &str,
        wallet: &Wallet,
        chain_id: u64,
    ) -> Result<(), ClientError> {
        let proof = self.account_proof(wallet, chain_id).await?;
        match self.add_account(device, &proof).await? {
            (201, _) => Ok(()),
            (status, body) => Err(ClientError::Unexpected(format!("{status} {body}"))),
        }
    }

    /// `POST /v1/devices/{device}/accounts` with an arbitrary proof body.
    ///
    /// # Errors
    /// [`ClientError::Http`].
    pub async fn add_account(
        &self,
        device: &str,
        proof: &Value,
    ) -> Result<(u16, Value), ClientError> {
        let request = self
            .http
            .post(format!("{}/v1/devices/{device}/accounts", self.base))
            .header("content-type", "application/json")
            .body(proof.to_string());
        self.json(request).await
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

    /// `POST {path}` with a JSON body, as JSON.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn post_json(&self, path: &str, body: &Value) -> Result<(u16, Value), ClientError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.json(request).await
    }

    /// `DELETE {path}`: the status.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn delete(&self, path: &str) -> Result<u16, ClientError> {
        let request = self.authed(self.http.delete(format!("{}{path}", self.base)));
        Ok(request.send().await?.status().as_u16())
    }

    /// `POST /v1/keys` (admin): a new key's token for `tenant`, with its own requests per
    /// second (and as many as burst) when `rate` is given.
    ///
    /// # Errors
    /// [`ClientError::Unexpected`] unless the relay answers 201.
    pub async fn create_key(
        &self,
        tenant: &str,
        admin: bool,
        rate: Option<u32>,
    ) -> Result<String, ClientError> {
        let body =
            json!({"tenant": tenant, "admin": admin, "rate_per_second": rate, "burst": rate});
        let (status, body) = self.post_json("/v1/keys", &body).await?;
        match body["token"].as_str() {
            Some(token) if status == 201 => Ok(token.to_owned()),
            _ => Err(ClientError::Unexpected(format!("{status} {body}"))),
        }
    }

    /// Opens `GET /v1/ws` with the key: the socket and the relay's first frame (the
    /// challenge, or an HTTP refusal as an error).
    ///
    /// # Errors
    /// [`ClientError`] when the connection fails.
    pub async fn open_socket(&self) -> Result<(Socket, ServerMessage), ClientError> {
        let url = format!("{}/v1/ws", self.base.replacen("http", "ws", 1));
        let mut request = url
            .into_client_request()
            .map_err(|e| ClientError::WebSocket(Box::new(e)))?;
        if let Some(token) = &self.token
            && let Ok(value) = format!("Bearer {token}").parse()
        {
            request.headers_mut().insert("authorization", value);
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| ClientError::WebSocket(Box::new(e)))?;
        let first = next_message(&mut socket, Duration::from_secs(10)).await?;
        Ok((socket, first))
    }

    /// Opens `GET /v1/ws` and signs in as `wallet`'s account with an EIP-4361 message for
    /// the challenge, naming `chain_id` (a chain the relay serves).
    ///
    /// # Errors
    /// [`ClientError`] when the connection or the sign-in fails.
    pub async fn login(
        &self,
        wallet: &Wallet,
        chain_id: u64,
    ) -> Result<AccountSession, ClientError> {
        let (mut socket, first) = self.open_socket().await?;
        let ServerMessage::Challenge { nonce, domain, uri } = first else {
            return Err(ClientError::Unexpected(format!("{first:?}")));
        };
        let message = crate::auth::siwe::message_for(
            &domain,
            &uri,
            wallet.address(),
            Some("Sign in to receive results for this account."),
            (chain_id, &nonce),
            crate::core::now_ms(&svckit::SystemClock),
            300_000,
        );
        let login = ClientMessage::Login {
            message: message.to_string(),
            signature: crate::auth::siwe::sign(wallet, &message)?,
        };
        send(&mut socket, &login).await?;
        match next_message(&mut socket, Duration::from_secs(10)).await? {
            ServerMessage::Welcome { account } if account == wallet.address() => {
                Ok(AccountSession { socket, account })
            }
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}

/// Sends one client frame.
///
/// # Errors
/// [`ClientError::WebSocket`].
pub async fn send(socket: &mut Socket, message: &ClientMessage) -> Result<(), ClientError> {
    socket
        .send(Message::Text(
            serde_json::to_string(message).unwrap_or_default().into(),
        ))
        .await
        .map_err(|e| ClientError::WebSocket(Box::new(e)))
}

/// A client WebSocket to the relay.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The next text frame from the relay, within `wait`.
///
/// # Errors
/// [`ClientError::Timeout`], a socket error, or a frame that is not a server message.
pub async fn next_message(
    socket: &mut Socket,
    wait: Duration,
) -> Result<ServerMessage, ClientError> {
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
        send(&mut self.socket, &ack).await
    }

    /// Closes the session.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
