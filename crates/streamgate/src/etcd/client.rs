//! The etcd v3 client over the JSON gateway: endpoint fail-over, a deadline on every call,
//! optional user/password authentication, and the handful of RPCs discovery needs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::debug;

use super::wire::{
    Authenticated, GatewayError, KeyValue, LeaseGrant, LeaseKeepAlive, RangeResponse, Status,
    StreamLine, TxnResponse, WatchResponse, b64, prefix_end,
};
use super::{EtcdError, EtcdSettings};
use crate::hop::HopClient;

/// Longest answer (or one streamed line) read from etcd.
const MAX_ANSWER_BYTES: usize = 8 << 20;
/// Pause before trying the next endpoint after a member answered "unavailable".
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A client of one etcd cluster (cheap to clone; clones share the endpoint choice and the
/// auth token).
#[derive(Debug, Clone)]
pub struct EtcdClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: EtcdSettings,
    http: HopClient,
    /// Index of the endpoint tried first (the last one that answered).
    current: AtomicUsize,
    token: Mutex<Option<String>>,
}

/// What one attempt on one endpoint gave.
enum Attempt<T> {
    Done(T),
    /// Transport failure, timeout or an "unavailable" answer: try the next endpoint.
    Next(String),
    /// The token was refused: authenticate again, then retry.
    Reauth,
}

/// The outcome of a create-if-absent transaction.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The key was absent and is now ours.
    Created,
    /// The key exists; its current holder.
    Held(KeyValue),
}

impl EtcdClient {
    /// A client for `settings` (endpoints already validated by
    /// [`EtcdSettings::new`](super::EtcdSettings::new)).
    pub fn new(settings: EtcdSettings) -> Self {
        let connect = settings.request_timeout.min(Duration::from_secs(1));
        Self {
            inner: Arc::new(Inner {
                http: HopClient::new(connect, settings.request_timeout),
                settings,
                current: AtomicUsize::new(0),
                token: Mutex::new(None),
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &EtcdSettings {
        &self.inner.settings
    }

    fn endpoints(&self) -> &[String] {
        &self.inner.settings.endpoints
    }

    fn token(&self) -> Option<String> {
        self.inner
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_token(&self, token: Option<String>) {
        *self
            .inner
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// Marks endpoint `index` as failed: the next call starts with the one after it.
    fn failed(&self, index: usize) {
        let next = (index + 1) % self.endpoints().len().max(1);
        let _ =
            self.inner
                .current
                .compare_exchange(index, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn request(
        &self,
        endpoint: &str,
        path: &str,
        body: &Bytes,
    ) -> Result<Request<Full<Bytes>>, EtcdError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(format!("{endpoint}{path}"))
            .header(http::header::CONTENT_TYPE, "application/json");
        if path != "/v3/auth/authenticate"
            && let Some(token) = self.token()
        {
            builder = builder.header(http::header::AUTHORIZATION, token);
        }
        builder
            .body(Full::new(body.clone()))
            .map_err(|e| EtcdError::Invalid {
                reason: format!("request to `{endpoint}{path}`: {e}"),
            })
    }

    /// Sends `path` to endpoint `index` and waits for the headers until `deadline`.
    async fn open(
        &self,
        index: usize,
        path: &str,
        body: &Bytes,
        deadline: Instant,
    ) -> Result<Attempt<http::Response<Incoming>>, EtcdError> {
        let endpoint = &self.endpoints()[index];
        let request = self.request(endpoint, path, body)?;
        let response = match tokio::time::timeout_at(deadline, self.inner.http.send(request)).await
        {
            Err(_) | Ok(Err(None)) => {
                return Ok(Attempt::Next(format!("{endpoint} did not answer in time")));
            }
            Ok(Err(Some(e))) => return Ok(Attempt::Next(format!("{endpoint} unreachable: {e}"))),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Attempt::Done(response));
        }
        let body = read_limited(response.into_body(), deadline)
            .await
            .unwrap_or_default();
        let error: GatewayError = serde_json::from_slice(&body).unwrap_or_default();
        let text = error.text().to_owned();
        match (status, error.code) {
            (StatusCode::UNAUTHORIZED, _) | (_, 16) if self.has_auth() => Ok(Attempt::Reauth),
            // unavailable, deadline exceeded, aborted, internal: another member may answer.
            (_, 14 | 4 | 10 | 13) | (StatusCode::SERVICE_UNAVAILABLE, _) => Ok(Attempt::Next(
                format!("{endpoint} answered {status}: {text}"),
            )),
            _ => Err(EtcdError::Refused {
                status: status.as_u16(),
                reason: text,
            }),
        }
    }

    fn has_auth(&self) -> bool {
        !self.inner.settings.user.is_empty()
    }

    /// Runs `attempt` on the endpoints in turn, starting with the current one, until one
    /// succeeds or the call's deadline (`request_timeout`) passes.
    async fn each_endpoint<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, EtcdError>
    where
        F: FnMut(usize, Instant) -> Fut,
        Fut: Future<Output = Result<Attempt<T>, EtcdError>>,
    {
        let deadline = Instant::now() + self.inner.settings.request_timeout;
        let count = self.endpoints().len();
        // One member's share of the deadline: a member that hangs (no leader) must leave
        // time for the others.
        let share = (self.inner.settings.request_timeout / 2).max(Duration::from_millis(300));
        let mut last = String::from("no endpoint");
        let mut reauthed = false;
        let mut tries = 0usize;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(EtcdError::Unavailable {
                    what: what.to_owned(),
                    reason: last,
                });
            }
            let index = self.inner.current.load(Ordering::Relaxed) % count;
            if self.has_auth() && self.token().is_none() {
                match self.authenticate(index, deadline).await {
                    Ok(Attempt::Done(())) => {}
                    Ok(Attempt::Next(reason)) => {
                        last = reason;
                        self.failed(index);
                        tries += 1;
                        pause_after(tries, count, deadline).await;
                        continue;
                    }
                    Ok(Attempt::Reauth) => {
                        return Err(EtcdError::Refused {
                            status: 401,
                            reason: "the user or password was refused".to_owned(),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            match attempt(index, (now + share).min(deadline)).await? {
                Attempt::Done(value) => return Ok(value),
                Attempt::Next(reason) => {
                    debug!(%reason, what, "etcd endpoint failed; trying the next");
                    last = reason;
                    self.failed(index);
                    tries += 1;
                    pause_after(tries, count, deadline).await;
                }
                Attempt::Reauth if !reauthed => {
                    reauthed = true;
                    self.set_token(None);
                }
                Attempt::Reauth => {
                    return Err(EtcdError::Refused {
                        status: 401,
                        reason: "the credentials were refused".to_owned(),
                    });
                }
            }
        }
    }

    async fn authenticate(
        &self,
        index: usize,
        deadline: Instant,
    ) -> Result<Attempt<()>, EtcdError> {
        let body = Bytes::from(
            json!({
                "name": self.inner.settings.user,
                "password": self.inner.settings.password.expose(),
            })
            .to_string(),
        );
        let response = match self
            .open(index, "/v3/auth/authenticate", &body, deadline)
            .await?
        {
            Attempt::Done(response) => response,
            Attempt::Next(reason) => return Ok(Attempt::Next(reason)),
            Attempt::Reauth => {
                return Err(EtcdError::Refused {
                    status: 401,
                    reason: "the user or password was refused".to_owned(),
                });
            }
        };
        let body = read_limited(response.into_body(), deadline).await?;
        let answer: Authenticated = parse(&body)?;
        self.set_token(Some(answer.token));
        Ok(Attempt::Done(()))
    }

    /// One unary call: `POST path` with `body`, answer parsed as `T`.
    async fn call<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, EtcdError> {
        let body = Bytes::from(body.to_string());
        self.each_endpoint(path, |index, deadline| {
            let body = body.clone();
            async move {
                let response = match self.open(index, path, &body, deadline).await? {
                    Attempt::Done(response) => response,
                    Attempt::Next(reason) => return Ok(Attempt::Next(reason)),
                    Attempt::Reauth => return Ok(Attempt::Reauth),
                };
                match read_limited(response.into_body(), deadline).await {
                    Ok(bytes) => Ok(Attempt::Done(parse(&bytes)?)),
                    Err(e) => Ok(Attempt::Next(e.to_string())),
                }
            }
        })
        .await
    }

    /// Every key under `prefix` (a serializable read: answered by any member, even without
    /// a leader; a watch from its revision catches up).
    ///
    /// # Errors
    /// [`EtcdError`] when no member answers within the deadline.
    pub async fn list(&self, prefix: &[u8]) -> Result<RangeResponse, EtcdError> {
        self.call(
            "/v3/kv/range",
            &json!({
                "key": b64(prefix),
                "range_end": b64(&prefix_end(prefix)),
                "serializable": true,
            }),
        )
        .await
    }

    /// The key `key`, `None` when absent (a linearizable read).
    ///
    /// # Errors
    /// [`EtcdError`] when no member answers within the deadline.
    pub async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        let answer: RangeResponse = self
            .call("/v3/kv/range", &json!({ "key": b64(key) }))
            .await?;
        Ok(answer.kvs.into_iter().next())
    }

    /// Creates `key` = `value` under `lease` if the key does not exist (compare
    /// `CreateRevision == 0`); otherwise reads its holder. Never overwrites.
    ///
    /// # Errors
    /// [`EtcdError`] when no member answers within the deadline.
    pub async fn create(&self, key: &[u8], value: &[u8], lease: i64) -> Result<Claim, EtcdError> {
        let answer: TxnResponse = self
            .call(
                "/v3/kv/txn",
                &json!({
                    "compare": [{
                        "result": "EQUAL",
                        "target": "CREATE",
                        "key": b64(key),
                        "create_revision": "0",
                    }],
                    "success": [{ "request_put": {
                        "key": b64(key), "value": b64(value), "lease": lease.to_string(),
                    }}],
                    "failure": [{ "request_range": { "key": b64(key) } }],
                }),
            )
            .await?;
        if answer.succeeded {
            return Ok(Claim::Created);
        }
        let held = answer
            .responses
            .into_iter()
            .find_map(|r| r.response_range)
            .and_then(|r| r.kvs.into_iter().next());
        // Deleted between the compare and the read: the caller simply claims again.
        Ok(held.map_or(Claim::Held(KeyValue::default()), Claim::Held))
    }

    /// Re-attaches `key` to `lease` with `value` if it is still at `mod_revision` (our own
    /// earlier registration, e.g. one whose answer was lost); true when it was.
    ///
    /// # Errors
    /// [`EtcdError`] when no member answers within the deadline.
    pub async fn replace(
        &self,
        key: &[u8],
        mod_revision: i64,
        value: &[u8],
        lease: i64,
    ) -> Result<bool, EtcdError> {
        let answer: TxnResponse = self
            .call(
                "/v3/kv/txn",
                &json!({
                    "compare": [{
                        "result": "EQUAL",
                        "target": "MOD",
                        "key": b64(key),
                        "mod_revision": mod_revision.to_string(),
                    }],
                    "success": [{ "request_put": {
                        "key": b64(key), "value": b64(value), "lease": lease.to_string(),
                    }}],
                }),
            )
            .await?;
        Ok(answer.succeeded)
    }

    /// A new lease of `ttl_s` seconds.
    ///
    /// # Errors
    /// [`EtcdError`] when no member answers within the deadline or the grant fails.
    pub async fn grant(&self, ttl_s: u64) -> Result<LeaseGrant, EtcdError> {
        let grant: LeaseGrant = self
            .call("/v3/lease/grant", &json!({ "TTL": ttl_s.to_string() }))
            .await?;
        if !grant.error.is_empty() || grant.id == 0 {
            return Err(EtcdError::Refused {
                status: 200,
                reason: format!("lease grant failed: {}", grant.error),
            });
        }
        Ok(grant)
    }

    /// Renews `lease`; returns its new TTL in seconds, 0 when the lease no longer exists.
    ///
    /// # Errors
    /// [`EtcdError`] when no member answers within the deadline.
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let line: StreamLine<LeaseKeepAlive> = self
            .call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))
            .await?;
        match (line.result, line.error) {
            (Some(answer), _) => Ok(answer.ttl),
            (None, Some(error)) => Err(EtcdError::Refused {
                status: 200,
                reason: error.text().to_owned(),
            }),
            (None, None) => Ok(0),
        }
    }

    /// Revokes `lease` (its keys are deleted at once).
    ///
    /// # Errors
    /// [`EtcdError`] when no member answers within the deadline.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        let _: Value = self
            .call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .await?;
        Ok(())
    }

    /// The status of the member at endpoint `endpoint` (index into the endpoints), asked of
    /// that member only (to find the leader: its `leader` equals its `header.member_id`).
    ///
    /// # Errors
    /// [`EtcdError`] when that member does not answer within the deadline.
    pub async fn status_of(&self, endpoint: usize) -> Result<Status, EtcdError> {
        let deadline = Instant::now() + self.inner.settings.request_timeout;
        let body = Bytes::from_static(b"{}");
        match self
            .open(endpoint, "/v3/maintenance/status", &body, deadline)
            .await?
        {
            Attempt::Done(response) => parse(&read_limited(response.into_body(), deadline).await?),
            Attempt::Next(reason) => Err(EtcdError::Unavailable {
                what: "status".to_owned(),
                reason,
            }),
            Attempt::Reauth => Err(EtcdError::Refused {
                status: 401,
                reason: "token refused".to_owned(),
            }),
        }
    }

    /// Opens a watch of every key under `prefix` from `start_revision`; the stream's first
    /// message (`created`) has been read when this returns.
    ///
    /// # Errors
    /// [`EtcdError`] when no member accepts the watch within the deadline.
    pub async fn watch(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, EtcdError> {
        let body = Bytes::from(
            json!({ "create_request": {
                "key": b64(prefix),
                "range_end": b64(&prefix_end(prefix)),
                "start_revision": start_revision.to_string(),
            }})
            .to_string(),
        );
        self.each_endpoint("/v3/watch", |index, deadline| {
            let body = body.clone();
            async move {
                let response = match self.open(index, "/v3/watch", &body, deadline).await? {
                    Attempt::Done(response) => response,
                    Attempt::Next(reason) => return Ok(Attempt::Next(reason)),
                    Attempt::Reauth => return Ok(Attempt::Reauth),
                };
                let mut stream = WatchStream {
                    body: response.into_body(),
                    buffer: BytesMut::new(),
                    client: self.clone(),
                    endpoint: index,
                };
                match stream.next(deadline).await {
                    Ok(Some(first)) if first.created && !first.canceled => {
                        Ok(Attempt::Done(stream))
                    }
                    Ok(Some(first)) => Err(EtcdError::Refused {
                        status: 200,
                        reason: format!("watch not created: {}", first.cancel_reason),
                    }),
                    Ok(None) => Ok(Attempt::Next("watch stream ended at once".to_owned())),
                    Err(e) => Ok(Attempt::Next(e.to_string())),
                }
            }
        })
        .await
    }
}

/// After a failed try: once every endpoint failed in a row, pause before the next round.
async fn pause_after(tries: usize, count: usize, deadline: Instant) {
    if tries.is_multiple_of(count.max(1)) {
        tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(deadline)).await;
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EtcdError> {
    serde_json::from_slice(bytes).map_err(|e| EtcdError::Invalid {
        reason: format!("answer is not the expected JSON: {e}"),
    })
}

async fn read_limited(body: Incoming, deadline: Instant) -> Result<Bytes, EtcdError> {
    let collect = http_body_util::Limited::new(body, MAX_ANSWER_BYTES).collect();
    match tokio::time::timeout_at(deadline, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(EtcdError::Invalid {
            reason: format!("reading the answer: {e}"),
        }),
        Err(_) => Err(EtcdError::Unavailable {
            what: "answer".to_owned(),
            reason: "the answer did not arrive in time".to_owned(),
        }),
    }
}

/// An open `/v3/watch` stream: one [`WatchResponse`] per line.
#[derive(Debug)]
pub struct WatchStream {
    body: Incoming,
    buffer: BytesMut,
    client: EtcdClient,
    endpoint: usize,
}

impl WatchStream {
    /// The next message, waiting until `deadline`; `None` when the stream ended or the
    /// deadline passed without a message.
    ///
    /// # Errors
    /// [`EtcdError`] when the connection broke (the endpoint is then marked failed, so the
    /// next watch goes to another member) or a line is not JSON.
    pub async fn next(&mut self, deadline: Instant) -> Result<Option<WatchResponse>, EtcdError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let text = &line[..end];
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let parsed: StreamLine<WatchResponse> = parse(text)?;
                return match (parsed.result, parsed.error) {
                    (Some(message), _) => Ok(Some(message)),
                    (None, error) => Err(EtcdError::Unavailable {
                        what: "watch".to_owned(),
                        reason: error.map_or_else(String::new, |e| e.text().to_owned()),
                    }),
                };
            }
            if self.buffer.len() > MAX_ANSWER_BYTES {
                return Err(EtcdError::Invalid {
                    reason: "a watch message over 8 MiB".to_owned(),
                });
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Ok(None),
                Ok(None) => {
                    self.client.failed(self.endpoint);
                    return Ok(None);
                }
                Ok(Some(Err(e))) => {
                    self.client.failed(self.endpoint);
                    return Err(EtcdError::Unavailable {
                        what: "watch".to_owned(),
                        reason: format!("stream broke: {e}"),
                    });
                }
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
