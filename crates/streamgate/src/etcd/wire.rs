//! The JSON shapes of etcd 3.4's gRPC gateway (`etcdserverpb` messages through
//! grpc-gateway's `jsonpb`): keys and values are base64, 64-bit integers are JSON strings,
//! fields at their default value (0, `false`, empty) are left out, and streaming answers
//! (`/v3/watch`, `/v3/lease/keepalive`) are one `{"result": …}` object per line.
//!
//! Source: etcd's `api/etcdserverpb/rpc.proto` (field names as in the proto) and
//! `Documentation/dev-guide/api_grpc_gateway.md` of etcd 3.4.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer};

/// `bytes` as the gateway wants them.
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// The end of the key range holding every key that starts with `prefix` (the prefix with
/// its last byte incremented; `"\0"`, i.e. all keys, for a prefix of only `0xff` bytes).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An int64 or uint64 that jsonpb writes as a string (and accepts as a number).
fn num<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        Text(String),
        Int(i64),
        Uint(u64),
    }
    match Num::deserialize(d)? {
        Num::Text(text) => text
            .parse::<i64>()
            .or_else(|_| text.parse::<u64>().map(|u| u as i64))
            .map_err(serde::de::Error::custom),
        Num::Int(i) => Ok(i),
        #[allow(
            clippy::cast_possible_wrap,
            reason = "member ids are opaque 64-bit values"
        )]
        Num::Uint(u) => Ok(u as i64),
    }
}

/// Base64 text decoded to bytes.
fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

/// `ResponseHeader`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Header {
    /// The store's revision when the request was served.
    #[serde(deserialize_with = "num")]
    pub revision: i64,
    /// The member that served it (compared with `leader` of a status answer).
    #[serde(deserialize_with = "num")]
    pub member_id: i64,
}

/// `mvccpb.KeyValue`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct KeyValue {
    /// The key.
    #[serde(deserialize_with = "bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(deserialize_with = "bytes")]
    pub value: Vec<u8>,
    /// Revision of the key's creation (0: absent).
    #[serde(deserialize_with = "num")]
    pub create_revision: i64,
    /// Revision of its last change.
    #[serde(deserialize_with = "num")]
    pub mod_revision: i64,
    /// The lease it is attached to (0: none).
    #[serde(deserialize_with = "num")]
    pub lease: i64,
}

/// `RangeResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RangeResponse {
    /// The header.
    pub header: Header,
    /// The keys found.
    pub kvs: Vec<KeyValue>,
}

/// One `ResponseOp` of a transaction (only ranges are read back).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResponseOp {
    /// The answer of a `request_range`.
    pub response_range: Option<RangeResponse>,
}

/// `TxnResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TxnResponse {
    /// The header.
    pub header: Header,
    /// Whether the compares held (the `success` branch ran).
    pub succeeded: bool,
    /// The answers of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// `LeaseGrantResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LeaseGrant {
    /// The lease id.
    #[serde(rename = "ID", deserialize_with = "num")]
    pub id: i64,
    /// Its TTL, seconds (the server may raise it to its minimum).
    #[serde(rename = "TTL", deserialize_with = "num")]
    pub ttl: i64,
    /// Set when the grant failed.
    pub error: String,
}

/// `LeaseKeepAliveResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LeaseKeepAlive {
    /// The renewed TTL, seconds; 0 when the lease no longer exists.
    #[serde(rename = "TTL", deserialize_with = "num")]
    pub ttl: i64,
}

/// `AuthenticateResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Authenticated {
    /// The token sent as `Authorization` on later calls.
    pub token: String,
}

/// `StatusResponse` (what the leader hunt needs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Status {
    /// The header (its `member_id` is the answering member).
    pub header: Header,
    /// The leader's member id.
    #[serde(deserialize_with = "num")]
    pub leader: i64,
    /// The server version.
    pub version: String,
}

/// `mvccpb.Event`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    /// `PUT` (left out, being the default) or `DELETE`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The key after the event (only the key for a delete).
    pub kv: KeyValue,
}

impl Event {
    /// Whether the event removed its key.
    pub fn is_delete(&self) -> bool {
        self.kind.as_deref() == Some("DELETE")
    }
}

/// `WatchResponse`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WatchResponse {
    /// The header.
    pub header: Header,
    /// The answer to the create request.
    pub created: bool,
    /// The watch was cancelled by the server.
    pub canceled: bool,
    /// Set when the start revision was compacted away (a re-list is needed).
    #[serde(deserialize_with = "num")]
    pub compact_revision: i64,
    /// Why it was cancelled.
    pub cancel_reason: String,
    /// The changes.
    pub events: Vec<Event>,
}

/// One line of a streaming answer: `{"result": …}` or `{"error": …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct StreamLine<T> {
    /// The message.
    pub result: Option<T>,
    /// A gateway error ending the stream.
    pub error: Option<GatewayError>,
}

/// The gateway's error body (`google.rpc.Status` as JSON).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct GatewayError {
    /// The gRPC code (14 unavailable, 16 unauthenticated, 7 permission denied, …).
    pub code: i32,
    /// The message, e.g. `etcdserver: invalid auth token`.
    pub message: String,
    /// The same message under its older name.
    pub error: String,
}

impl GatewayError {
    /// The message under either name.
    pub fn text(&self) -> &str {
        if self.message.is_empty() {
            &self.error
        } else {
            &self.message
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_gateways_answers() {
        // As etcd 3.4.23 answered in a manual run.
        let txn: TxnResponse = serde_json::from_str(
            r#"{"header":{"cluster_id":"15118495548433857066","member_id":"13668033151171901709","revision":"2","raft_term":"2"},"responses":[{"response_range":{"header":{"revision":"2"},"kvs":[{"key":"L3NnL21lZGlhL2E=","create_revision":"2","mod_revision":"2","version":"1","value":"aGVsbG8="}],"count":"1"}}]}"#,
        )
        .unwrap();
        assert!(!txn.succeeded);
        let held = &txn.responses[0].response_range.as_ref().unwrap().kvs[0];
        assert_eq!(held.key, b"/sg/media/a");
        assert_eq!(held.value, b"hello");
        assert_eq!(held.create_revision, 2);
        assert_eq!(txn.header.member_id as u64, 13_668_033_151_171_901_709);
        let line: StreamLine<LeaseKeepAlive> =
            serde_json::from_str(r#"{"result":{"header":{"revision":"2"},"ID":"12345"}}"#).unwrap();
        assert_eq!(line.result.unwrap().ttl, 0, "an unknown lease has no TTL");
        let watch: StreamLine<WatchResponse> = serde_json::from_str(
            r#"{"result":{"header":{"revision":"3"},"events":[{"type":"DELETE","kv":{"key":"L3NnL21lZGlhL2E=","mod_revision":"3"}}]}}"#,
        )
        .unwrap();
        let watch = watch.result.unwrap();
        assert!(watch.events[0].is_delete());
        assert_eq!(watch.header.revision, 3);
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/sg/"), b"/sg0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
