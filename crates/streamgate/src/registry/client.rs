//! The registry's HTTP client: lookups for forwarders and the proxy (it implements
//! [`Discovery`](crate::discovery::Discovery)), and the register-and-heartbeat loop media
//! servers and forwarders run ([`keep_registered`]).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde::de::DeserializeOwned;
use svckit::redact::Secret;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    ForwarderRecord, ForwarderRegistration, MediaRecord, MediaRegistration, RouteSnapshot,
};
use crate::error::HopError;
use crate::hop::HopClient;

/// Longest answer the client reads from the registry.
const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Talks to a registry at a base URL such as `http://127.0.0.1:7400`, with a bearer
/// credential.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: String,
    http: HopClient,
    token: Option<Secret>,
}

impl RegistryClient {
    /// A client for the registry at `base` (scheme, host and port; a trailing `/` is
    /// ignored).
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            // Long-polls wait up to 30 s for headers; plain lookups answer at once.
            http: HopClient::new(
                Duration::from_secs(1),
                super::MAX_WAIT + Duration::from_secs(5),
            ),
            token: None,
        }
    }

    /// This client sending `token` as its bearer credential (none when empty).
    #[must_use]
    pub fn with_token(mut self, token: &Secret) -> Self {
        self.token = (!token.expose().is_empty()).then(|| token.clone());
        self
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Option<T>), HopError> {
        let registry_error = |reason: String| HopError::Registry { reason };
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            builder = builder.header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", token.expose()),
            );
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| registry_error(format!("bad registry URL `{}`: {e}", self.base)))?;
        let response = self.http.send(request).await.map_err(|e| match e {
            Some(e) => registry_error(format!("{} unreachable: {e}", self.base)),
            None => registry_error(format!("{} did not answer in time", self.base)),
        })?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| registry_error(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Ok((status, None));
        }
        if body.is_empty() {
            return Ok((status, None));
        }
        let value = serde_json::from_slice(&body)
            .map_err(|e| registry_error(format!("answer is not the expected JSON: {e}")))?;
        Ok((status, Some(value)))
    }

    fn encode(value: &impl Serialize) -> Result<Vec<u8>, HopError> {
        serde_json::to_vec(value).map_err(|e| HopError::Registry {
            reason: format!("encoding: {e}"),
        })
    }

    /// The live media server under `label`, `None` if not registered.
    ///
    /// # Errors
    /// [`HopError::Registry`] when the registry cannot be asked.
    pub async fn media(&self, label: &str) -> Result<Option<MediaRecord>, HopError> {
        let (status, record) = self
            .call::<MediaRecord>(Method::GET, &format!("/v1/media/{label}"), None)
            .await?;
        match status {
            StatusCode::OK => Ok(record),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(HopError::Registry {
                reason: format!("lookup of `{label}` answered {other}"),
            }),
        }
    }

    /// The routing snapshot; with `since`, waits up to `wait` for a version other than it.
    ///
    /// # Errors
    /// [`HopError::Registry`] when the registry cannot be asked.
    pub async fn routes(
        &self,
        since: Option<u64>,
        wait: Duration,
    ) -> Result<RouteSnapshot, HopError> {
        let path = match since {
            Some(version) => format!("/v1/routes?since={version}&wait_ms={}", wait.as_millis()),
            None => "/v1/routes".to_owned(),
        };
        match self.call::<RouteSnapshot>(Method::GET, &path, None).await? {
            (StatusCode::OK, Some(snapshot)) => Ok(snapshot),
            (status, _) => Err(HopError::Registry {
                reason: format!("routes answered {status}"),
            }),
        }
    }

    /// Registers or renews a media server; returns the registry's status (200 done, 404
    /// unknown lease, 409 superseded).
    ///
    /// # Errors
    /// [`HopError::Registry`] when the registry cannot be asked.
    pub async fn put_media(
        &self,
        label: &str,
        body: &MediaRegistration,
    ) -> Result<StatusCode, HopError> {
        let (status, _) = self
            .call::<serde_json::Value>(
                Method::PUT,
                &format!("/v1/media/{label}"),
                Some(Self::encode(body)?),
            )
            .await?;
        Ok(status)
    }

    /// Registers or renews a forwarder; statuses as for [`RegistryClient::put_media`].
    ///
    /// # Errors
    /// [`HopError::Registry`] when the registry cannot be asked.
    pub async fn put_forwarder(
        &self,
        service: &str,
        namespace: &str,
        body: &ForwarderRegistration,
    ) -> Result<StatusCode, HopError> {
        let (status, _) = self
            .call::<serde_json::Value>(
                Method::PUT,
                &format!("/v1/forwarders/{service}/{namespace}"),
                Some(Self::encode(body)?),
            )
            .await?;
        Ok(status)
    }

    /// Removes a registration held by `instance` (`kind_path` is `media/{label}` or
    /// `forwarders/{service}/{namespace}`).
    ///
    /// # Errors
    /// [`HopError::Registry`] when the registry cannot be asked.
    pub async fn delete(&self, kind_path: &str, instance: &str) -> Result<StatusCode, HopError> {
        let (status, _) = self
            .call::<serde_json::Value>(
                Method::DELETE,
                &format!("/v1/{kind_path}?instance={instance}"),
                None,
            )
            .await?;
        Ok(status)
    }
}

/// What a process keeps registered.
#[derive(Debug, Clone)]
pub enum Registrant {
    /// A media server.
    Media(MediaRecord),
    /// A forwarder.
    Forwarder(ForwarderRecord),
}

impl Registrant {
    fn key_path(&self) -> String {
        match self {
            Self::Media(r) => format!("media/{}", r.label),
            Self::Forwarder(r) => format!("forwarders/{}/{}", r.service, r.namespace),
        }
    }

    fn instance(&self) -> &str {
        match self {
            Self::Media(r) => &r.instance,
            Self::Forwarder(r) => &r.instance,
        }
    }

    async fn put(
        &self,
        client: &RegistryClient,
        ttl: Duration,
        heartbeat: bool,
    ) -> Result<StatusCode, HopError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        match self {
            Self::Media(r) => {
                client
                    .put_media(
                        &r.label,
                        &MediaRegistration {
                            namespace: r.namespace.clone(),
                            addr: r.addr,
                            streams: r.streams.clone(),
                            instance: r.instance.clone(),
                            ttl_ms,
                            heartbeat,
                        },
                    )
                    .await
            }
            Self::Forwarder(r) => {
                client
                    .put_forwarder(
                        &r.service,
                        &r.namespace,
                        &ForwarderRegistration {
                            addr: r.addr,
                            label: r.label.clone(),
                            instance: r.instance.clone(),
                            ttl_ms,
                            heartbeat,
                        },
                    )
                    .await
            }
        }
    }
}

/// A process-unique instance id: `{pid}-{nanoseconds since the epoch}`.
pub fn instance_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
}

/// Registers `who` and renews its lease every `ttl / 3` until `stop` is cancelled, then
/// deregisters. Registers again whenever the registry lost the lease (it restarted, or the
/// lease ran out during a stall) or another instance holds the key (it is answered 409
/// while that instance lives, and granted once the registry finds it gone): it never stops
/// trying on its own. A refused credential is retried every 2 s.
pub async fn keep_registered(
    client: RegistryClient,
    who: Registrant,
    ttl: Duration,
    registered: tokio::sync::watch::Sender<bool>,
    stop: CancellationToken,
) {
    let key = who.key_path();
    let renew_every = (ttl / 3).max(Duration::from_millis(30));
    let retry_every = Duration::from_millis(100);
    let mut is_registered = false;
    let mut warned = false;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
        match who.put(&client, ttl, is_registered).await {
            Ok(StatusCode::OK) => {
                if !is_registered {
                    info!(key = %key, registry = %client.base(), "registered");
                    registered.send_replace(true);
                }
                is_registered = true;
                warned = false;
                wait = renew_every;
            }
            Ok(StatusCode::NOT_FOUND) if is_registered => {
                warn!(key = %key, "lease lost; registering again");
                is_registered = false;
                registered.send_replace(false);
                wait = Duration::ZERO;
            }
            Ok(StatusCode::CONFLICT) => {
                if is_registered || !warned {
                    warn!(key = %key, "another live instance holds this key; registering again until it is free");
                    warned = true;
                }
                is_registered = false;
                registered.send_replace(false);
                wait = renew_every.min(Duration::from_secs(1));
            }
            Ok(status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => {
                if !warned {
                    warn!(key = %key, %status, "the registry refused the credential");
                    warned = true;
                }
                wait = Duration::from_secs(2);
            }
            Ok(status) => {
                warn!(key = %key, %status, "registry refused the registration");
                wait = retry_every.max(wait);
            }
            Err(error) => {
                if warned {
                    debug!(key = %key, %error, "registry still unreachable");
                } else {
                    warn!(key = %key, %error, "registry unreachable; retrying");
                    warned = true;
                }
                wait = if is_registered {
                    renew_every
                } else {
                    retry_every
                };
            }
        }
    }
    if is_registered {
        match client.delete(&key, who.instance()).await {
            Ok(status) => debug!(key = %key, %status, "deregistered"),
            Err(error) => debug!(key = %key, %error, "deregistering failed"),
        }
    }
}
