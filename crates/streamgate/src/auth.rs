//! Play authorization at the proxy (issue 12 item 1): signed URLs, an optional HTTP
//! `on_play` hook (as SRS's `http_hooks` and ZLMediaKit's `on_play`), and CORS.
//!
//! **Signed URLs.** A play URL carries `expires` (Unix seconds), `kid` (the key id, so keys
//! can be rotated: old and new keys are both configured while links signed with the old one
//! run out) and `sig`, the lowercase hex HMAC-SHA256 under that key of
//! `"{resource}\n{expires}"`. The resource is the public path without its file name's
//! format: `/realtime-{service}-{namespace}/{stream}/{n}` signs `{n}.flv` (HTTP-FLV and
//! WebSocket-FLV), `{n}.m3u8` and its segments `{n}-{seq}.ts`. With keys configured, a
//! request without a signature is answered 401 (`"reason":"unsigned"`); an expired,
//! malformed, unknown-key or wrong signature 403 (`expired`, `malformed`, `unknown_key`,
//! `bad_signature`, `validity_too_long`).
//!
//! **`on_play` hook.** When configured, the proxy POSTs a JSON description of each play
//! request (`action`, `service`, `namespace`, `stream`, `channel`, `format`, `client`,
//! `query`) to the hook URL and plays only on a 2xx answer; any other answer is 403
//! (`hook_denied`, with the hook's own `reason` if it gives one), no answer within the
//! deadline 503 (`hook_unavailable`).
//!
//! **CORS.** Answers carry `Access-Control-Allow-Origin` for allowed origins (`*` allows any);
//! an `OPTIONS` preflight is answered 204 with the allowed methods and headers, or 403 for an
//! origin that is not allowed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use svckit::redact::Secret;

use crate::error::{Classify, ConfigError, Origin, Retry, error_body};
use crate::hop::{HopBody, HopClient, json_response};

type HmacSha256 = Hmac<Sha256>;

/// Play-authorization settings (`[proxy.auth]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Signing keys by key id, e.g. `keys = { k2026a = "…" }`. With any key set, every play
    /// request must carry a valid signature.
    pub keys: BTreeMap<String, Secret>,
    /// Longest validity a signature may claim from now, s (default 86400).
    pub max_validity_s: u64,
    /// URL of the `on_play` hook (`http://host:port/path`); empty for none.
    pub on_play: String,
    /// Deadline of one hook call, ms (default 2000).
    pub on_play_timeout_ms: u64,
    /// Origins allowed by CORS (default `["*"]`, any origin).
    pub cors_origins: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            keys: BTreeMap::new(),
            max_validity_s: 86_400,
            on_play: String::new(),
            on_play_timeout_ms: 2000,
            cors_origins: vec!["*".to_owned()],
        }
    }
}

impl AuthConfig {
    /// Checks the hook URL and the keys.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.on_play.is_empty() {
            let ok = url::Url::parse(&self.on_play)
                .is_ok_and(|u| u.scheme() == "http" && u.host().is_some());
            if !ok {
                return Err(ConfigError::Invalid {
                    key: "proxy.auth.on_play".to_owned(),
                    value: self.on_play.clone(),
                    reason: "must be an http:// URL with a host",
                });
            }
        }
        for (kid, key) in &self.keys {
            if kid.is_empty() || kid.len() > 64 || key.expose().len() < 16 {
                return Err(ConfigError::Invalid {
                    key: format!("proxy.auth.keys.{kid}"),
                    value: "***".to_owned(),
                    reason: "key ids must be 1-64 characters and keys at least 16 bytes",
                });
            }
        }
        Ok(())
    }

    /// Whether any check is configured (signatures or the hook).
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty() || !self.on_play.is_empty()
    }
}

/// Why a play request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No signature although keys are configured.
    #[error("a signed URL is required (expires, kid and sig query parameters)")]
    Unsigned,
    /// The signature ran out.
    #[error("the signed URL expired at {expires}")]
    Expired {
        /// Its `expires`, Unix seconds.
        expires: u64,
    },
    /// `expires`, `kid` or `sig` does not parse.
    #[error("malformed signature parameters: {reason}")]
    Malformed {
        /// Which part.
        reason: &'static str,
    },
    /// The key id is not configured (revoked, or never issued).
    #[error("unknown key id `{kid}`")]
    UnknownKey {
        /// The key id.
        kid: String,
    },
    /// The signature does not match the resource and expiry.
    #[error("the signature does not match this stream and expiry")]
    BadSignature,
    /// `expires` is further in the future than allowed.
    #[error("the signature claims a validity beyond {max_s} s")]
    TooLong {
        /// The longest validity allowed.
        max_s: u64,
    },
    /// The `on_play` hook refused.
    #[error("play refused by the on_play hook: {reason}")]
    HookDenied {
        /// The hook's reason (or its status).
        reason: String,
    },
    /// The `on_play` hook did not answer in time or is unreachable.
    #[error("the on_play hook did not answer")]
    HookUnavailable,
    /// The CORS origin is not allowed.
    #[error("origin `{origin}` is not allowed")]
    Origin {
        /// The request's `Origin`.
        origin: String,
    },
}

impl AuthError {
    /// The machine-readable reason of the JSON answer.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::Expired { .. } => "expired",
            Self::Malformed { .. } => "malformed",
            Self::UnknownKey { .. } => "unknown_key",
            Self::BadSignature => "bad_signature",
            Self::TooLong { .. } => "validity_too_long",
            Self::HookDenied { .. } => "hook_denied",
            Self::HookUnavailable => "hook_unavailable",
            Self::Origin { .. } => "origin_not_allowed",
        }
    }
}

impl Classify for AuthError {
    fn origin(&self) -> Origin {
        Origin::Downstream
    }
    fn retry(&self) -> Retry {
        match self {
            Self::HookUnavailable => Retry::Later,
            _ => Retry::Never,
        }
    }
    fn status(&self) -> StatusCode {
        match self {
            Self::Unsigned => StatusCode::UNAUTHORIZED,
            Self::HookUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        }
    }
    fn public_reason(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// The JSON answer for `error`: [`error_body`] plus `reason`; 401 carries
/// `WWW-Authenticate`.
pub fn auth_response(error: &AuthError) -> Response<HopBody> {
    let mut body = error_body(error);
    body["reason"] = serde_json::Value::from(error.reason());
    let mut response = json_response(error.status(), &body);
    if error.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Signature realm=\"streamgate\""),
        );
    }
    response
}

fn mac(key: &Secret, resource: &str, expires: u64) -> HmacSha256 {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail; the fallback (a zero
    // block key) is never taken.
    let mut mac = HmacSha256::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()));
    mac.update(resource.as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    mac
}

/// The signed resource of a public path: the path without its file's format suffix, e.g.
/// `/realtime-ServiceA-NameSpaceA/main_stream/0` for `…/main_stream/0.flv`, `…/0.m3u8` and
/// `…/0-17.ts`.
pub fn resource(segment: &str, stream: &str, channel: u32) -> String {
    format!("/realtime-{segment}/{stream}/{channel}")
}

/// The query string (`expires=…&kid=…&sig=…`) signing `resource` under `key` (id `kid`)
/// until `expires` (Unix seconds).
pub fn sign(resource: &str, kid: &str, key: &Secret, expires: u64) -> String {
    let sig = hex::encode(mac(key, resource, expires).finalize().into_bytes());
    format!("expires={expires}&kid={kid}&sig={sig}")
}

/// Unix seconds of `time`.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The signature parameters of a query string.
fn params(query: &str) -> (Option<&str>, Option<&str>, Option<&str>) {
    let (mut expires, mut kid, mut sig) = (None, None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) => expires = Some(v),
            Some(("kid", v)) => kid = Some(v),
            Some(("sig", v)) => sig = Some(v),
            _ => {}
        }
    }
    (expires, kid, sig)
}

/// Checks the signature in `query` for `resource` at wall time `now`.
///
/// # Errors
/// The [`AuthError`] that refuses it.
pub fn verify(
    config: &AuthConfig,
    resource: &str,
    query: Option<&str>,
    now: SystemTime,
) -> Result<(), AuthError> {
    if config.keys.is_empty() {
        return Ok(());
    }
    let (expires, kid, sig) = params(query.unwrap_or_default());
    let (Some(expires), Some(kid), Some(sig)) = (expires, kid, sig) else {
        return Err(AuthError::Unsigned);
    };
    let expires: u64 = expires
        .parse()
        .map_err(|_| AuthError::Malformed { reason: "expires" })?;
    let sig = hex::decode(sig).map_err(|_| AuthError::Malformed { reason: "sig" })?;
    let key = config.keys.get(kid).ok_or_else(|| AuthError::UnknownKey {
        kid: kid.chars().take(64).collect(),
    })?;
    // The MAC is checked first (in constant time), so timing says nothing about the key.
    mac(key, resource, expires)
        .verify_slice(&sig)
        .map_err(|_| AuthError::BadSignature)?;
    let now = unix_seconds(now);
    if expires <= now {
        return Err(AuthError::Expired { expires });
    }
    if expires - now > config.max_validity_s {
        return Err(AuthError::TooLong {
            max_s: config.max_validity_s,
        });
    }
    Ok(())
}

/// What the `on_play` hook is told about a play request.
#[derive(Debug, Clone, Serialize)]
pub struct PlayRequest<'a> {
    /// Always `on_play`.
    pub action: &'static str,
    /// The forwarding service.
    pub service: &'a str,
    /// The namespace.
    pub namespace: &'a str,
    /// The stream's address information.
    pub stream: &'a str,
    /// The channel number.
    pub channel: u32,
    /// `flv`, `ws-flv` or `hls`.
    pub format: &'a str,
    /// The client's IP address.
    pub client: IpAddr,
    /// The request's query string (tokens the hook may check).
    pub query: &'a str,
}

/// The `on_play` hook client.
#[derive(Debug, Clone)]
pub struct Hook {
    url: String,
    client: HopClient,
    timeout: Duration,
}

impl Hook {
    /// The hook of `config`, `None` when none is configured.
    pub fn new(config: &AuthConfig) -> Option<Self> {
        if config.on_play.is_empty() {
            return None;
        }
        let timeout = Duration::from_millis(config.on_play_timeout_ms.max(1));
        Some(Self {
            url: config.on_play.clone(),
            client: HopClient::new(timeout, timeout),
            timeout,
        })
    }

    /// Asks the hook about `play`.
    ///
    /// # Errors
    /// [`AuthError::HookDenied`] for a non-2xx answer, [`AuthError::HookUnavailable`] when it
    /// does not answer within the deadline.
    pub async fn check(&self, play: &PlayRequest<'_>) -> Result<(), AuthError> {
        let body = serde_json::to_vec(play).map_err(|_| AuthError::HookUnavailable)?;
        let request = Request::post(self.url.as_str())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| AuthError::HookUnavailable)?;
        let answer = tokio::time::timeout(self.timeout, async {
            let response = self.client.send(request).await.ok()?;
            let status = response.status();
            let body = http_body_util::Limited::new(response.into_body(), 16 * 1024)
                .collect()
                .await
                .ok()?
                .to_bytes();
            Some((status, body))
        })
        .await;
        let Ok(Some((status, body))) = answer else {
            return Err(AuthError::HookUnavailable);
        };
        if status.is_success() {
            return Ok(());
        }
        let reason = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v["reason"]
                    .as_str()
                    .or_else(|| v["error"].as_str())
                    .map(|s| s.chars().take(200).collect::<String>())
            })
            .unwrap_or_else(|| format!("the hook answered {status}"));
        Err(AuthError::HookDenied { reason })
    }
}

/// CORS decisions for the configured origins.
#[derive(Debug, Clone)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// The policy of `config`.
    pub fn new(config: &AuthConfig) -> Self {
        Self {
            any: config.cors_origins.iter().any(|o| o == "*"),
            origins: config.cors_origins.clone(),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, `None` when the
    /// origin is not allowed (or there is none).
    pub fn allow(&self, origin: Option<&str>) -> Option<HeaderValue> {
        let origin = origin?;
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        self.origins
            .iter()
            .any(|o| o == origin)
            .then(|| HeaderValue::from_str(origin).ok())
            .flatten()
    }

    /// Adds the CORS headers for `request_headers`' origin to an answer.
    pub fn decorate(&self, request_headers: &HeaderMap, response: &mut Response<HopBody>) {
        let origin = request_headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if let Some(value) = self.allow(origin) {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// The answer to an `OPTIONS` preflight.
    pub fn preflight(&self, request_headers: &HeaderMap) -> Response<HopBody> {
        let origin = request_headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        let Some(allow) = self.allow(origin) else {
            return auth_response(&AuthError::Origin {
                origin: origin.unwrap_or_default().chars().take(200).collect(),
            });
        };
        let mut response = Response::new(
            Full::new(Bytes::new())
                .map_err(|never: std::convert::Infallible| match never {})
                .boxed(),
        );
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        let requested = request_headers
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("range"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AuthConfig {
        AuthConfig {
            keys: [
                ("old".to_owned(), Secret::new("0123456789abcdef-old")),
                ("new".to_owned(), Secret::new("0123456789abcdef-new")),
            ]
            .into_iter()
            .collect(),
            max_validity_s: 3600,
            ..AuthConfig::default()
        }
    }

    #[test]
    fn signatures_verify_only_for_their_resource_key_and_time() {
        let config = config();
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let res = resource("ServiceA-NameSpaceA", "main_stream", 0);
        let key = &config.keys["new"];
        let good = sign(&res, "new", key, 1_800_000_600);
        assert_eq!(verify(&config, &res, Some(&good), now), Ok(()));
        // The old key still verifies its own links (rotation).
        let old = sign(&res, "old", &config.keys["old"], 1_800_000_600);
        assert_eq!(verify(&config, &res, Some(&old), now), Ok(()));
        let other = resource("ServiceA-NameSpaceA", "sub_stream", 0);
        // (query, expected)
        let cases: Vec<(Option<String>, &str, AuthError)> = vec![
            (None, &res, AuthError::Unsigned),
            (Some("kid=new".to_owned()), &res, AuthError::Unsigned),
            (Some(good.clone()), &other, AuthError::BadSignature),
            (
                Some(good.replace("kid=new", "kid=old")),
                &res,
                AuthError::BadSignature,
            ),
            (
                Some(good.replace("kid=new", "kid=gone")),
                &res,
                AuthError::UnknownKey {
                    kid: "gone".to_owned(),
                },
            ),
            (
                Some(sign(&res, "new", key, 1_799_999_999)),
                &res,
                AuthError::Expired {
                    expires: 1_799_999_999,
                },
            ),
            (
                Some(sign(&res, "new", key, 1_800_003_601)),
                &res,
                AuthError::TooLong { max_s: 3600 },
            ),
            (
                Some("expires=soon&kid=new&sig=00".to_owned()),
                &res,
                AuthError::Malformed { reason: "expires" },
            ),
            (
                Some("expires=1&kid=new&sig=zz".to_owned()),
                &res,
                AuthError::Malformed { reason: "sig" },
            ),
        ];
        for (query, resource, expected) in cases {
            assert_eq!(
                verify(&config, resource, query.as_deref(), now),
                Err(expected.clone()),
                "{query:?}"
            );
        }
        assert_eq!(AuthError::Unsigned.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthError::Expired { expires: 1 }.status(),
            StatusCode::FORBIDDEN
        );
        // Without keys nothing is required.
        assert_eq!(
            verify(&AuthConfig::default(), &res, None, now),
            Ok(()),
            "open when no key is configured"
        );
    }

    #[test]
    fn cors_allows_listed_origins_only() {
        let any = Cors::new(&AuthConfig::default());
        assert_eq!(
            any.allow(Some("https://a.example")),
            Some(HeaderValue::from_static("*"))
        );
        let listed = Cors::new(&AuthConfig {
            cors_origins: vec!["https://a.example".to_owned()],
            ..AuthConfig::default()
        });
        assert_eq!(
            listed.allow(Some("https://a.example")),
            Some(HeaderValue::from_static("https://a.example"))
        );
        assert_eq!(listed.allow(Some("https://b.example")), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://b.example"),
        );
        assert_eq!(listed.preflight(&headers).status(), StatusCode::FORBIDDEN);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        let ok = listed.preflight(&headers);
        assert_eq!(ok.status(), StatusCode::NO_CONTENT);
        assert!(
            ok.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_METHODS)
        );
    }
}
