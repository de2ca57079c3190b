//! P2P links over QUIC (quinn, rustls with ring): each peer has one endpoint that serves its
//! blocks and fetches from the others.
//!
//! TLS: every peer makes a self-signed certificate (rcgen) at start and registers its DER with
//! the tracker; a peer connecting to another trusts exactly that certificate (pinning), never
//! any other. Protocol: one bidirectional QUIC stream per request.
//!
//! - Block: the request is the block number as 8 bytes big-endian; the answer is one status
//!   byte, `0` followed by the block's bytes or `1` for "don't have it". Any peer holding a
//!   block serves it to any neighbour that asks.
//! - Buffer map (issue 16 item 3): the request is [`MAP_REQUEST`] then the map version the
//!   asker has, 8 bytes big-endian; the answer, once the peer's map is newer than that (or
//!   after [`MAP_WAIT`], a long poll), is `0` followed by a JSON [`MapAnswer`]: the blocks it
//!   holds and its upload state. Each peer keeps one such poll open to every neighbour, so a
//!   new block is known to the neighbours about one RTT after it arrived (the "have").

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::Error;
use crate::rate::RateCap;
use crate::sched::{BufferMap, PeerId, Upload};

/// Server name in every peer certificate.
pub const SERVER_NAME: &str = "p2plive-peer";
/// ALPN protocol id.
const ALPN: &[u8] = b"p2plive/1";
/// Answer status: the block follows.
pub const HAVE: u8 = 0;
/// Answer status: not held.
pub const MISSING: u8 = 1;
/// Largest block accepted over a link (64 MiB).
pub const MAX_BLOCK: usize = 64 << 20;
/// First byte of a buffer-map request.
pub const MAP_REQUEST: u8 = b'M';
/// How long a buffer-map request waits for a change before answering anyway.
pub const MAP_WAIT: Duration = Duration::from_millis(1000);
/// Largest buffer-map answer accepted (64 KiB).
pub const MAX_MAP_ANSWER: usize = 64 << 10;

/// A peer's answer to a buffer-map request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MapAnswer {
    /// Version of the map (grows with every block the peer stores).
    pub version: u64,
    /// The blocks held.
    pub map: BufferMap,
    /// Its upload state.
    pub upload: Upload,
}

/// A peer's TLS identity.
#[derive(Debug)]
pub struct Identity {
    /// The certificate (DER).
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// A fresh self-signed certificate for [`SERVER_NAME`].
    ///
    /// # Errors
    /// [`Error::Quic`] when key generation fails.
    pub fn generate() -> Result<Self, Error> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| Error::Quic(format!("certificate generation: {e}")))?;
        Ok(Self {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        })
    }

    /// The certificate as hex, for the tracker.
    pub fn cert_hex(&self) -> String {
        hex::encode(&self.cert)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(5)) {
        t.max_idle_timeout(Some(idle));
    }
    t.keep_alive_interval(Some(Duration::from_secs(1)));
    t.max_concurrent_bidi_streams(256u32.into());
    Arc::new(t)
}

/// A QUIC endpoint bound to `addr` serving with `identity` (also used to connect out).
///
/// # Errors
/// [`Error::Quic`] for TLS set-up, [`Error::Net`] when the UDP socket cannot be bound.
pub fn endpoint(addr: SocketAddr, identity: &Identity) -> Result<quinn::Endpoint, Error> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Quic(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![identity.cert.clone()],
            PrivateKeyDer::Pkcs8(identity.key.clone_key()),
        )
        .map_err(|e| Error::Quic(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| Error::Quic(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(transport());
    quinn::Endpoint::server(server, addr).map_err(|source| Error::Net {
        what: format!("binding QUIC endpoint on {addr}"),
        source,
    })
}

/// Client config trusting only `cert` (the pinned certificate of one peer).
fn pinned_client(cert_der_hex: &str) -> Result<quinn::ClientConfig, Error> {
    let der =
        hex::decode(cert_der_hex).map_err(|e| Error::Quic(format!("peer certificate hex: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(der))
        .map_err(|e| Error::Quic(format!("peer certificate: {e}")))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Quic(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| Error::Quic(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(transport());
    Ok(client)
}

/// Why a fetch over a link failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The peer answered that it does not hold the block.
    #[error("peer does not have the block")]
    Missing,
    /// Connecting or talking to the peer failed: treat the peer as down.
    #[error("link to peer failed: {0}")]
    Link(String),
    /// The peer is not known (not in the tracker's view).
    #[error("unknown peer")]
    UnknownPeer,
}

#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    cert_hex: String,
    conn: tokio::sync::Mutex<Option<quinn::Connection>>,
    download: RateCap,
}

/// Outgoing links to the other peers, one QUIC connection each, made on first use.
#[derive(Debug, Clone)]
pub struct Links {
    endpoint: quinn::Endpoint,
    slots: Arc<Mutex<HashMap<PeerId, Arc<Slot>>>>,
    download_limit: u64,
}

impl Links {
    /// Links out of `endpoint`, each download capped at `download_limit` bytes/s (0 = none).
    pub fn new(endpoint: quinn::Endpoint, download_limit: u64) -> Self {
        Self {
            endpoint,
            slots: Arc::new(Mutex::new(HashMap::new())),
            download_limit,
        }
    }

    /// Sets the known peers: `(id, quic address, certificate hex)`. Links to peers no longer
    /// listed are closed; a peer whose address or certificate changed gets a new link.
    pub fn set_peers(&self, peers: &[(PeerId, SocketAddr, String)]) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.retain(|id, slot| {
            peers
                .iter()
                .any(|(p, addr, cert)| p == id && *addr == slot.addr && *cert == slot.cert_hex)
        });
        for (id, addr, cert) in peers {
            slots.entry(*id).or_insert_with(|| {
                Arc::new(Slot {
                    addr: *addr,
                    cert_hex: cert.clone(),
                    conn: tokio::sync::Mutex::new(None),
                    download: RateCap::new(self.download_limit),
                })
            });
        }
    }

    /// Drops the connection to `peer` (it failed); the next fetch reconnects.
    pub async fn reset(&self, peer: PeerId) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .cloned();
        if let Some(slot) = slot
            && let Some(conn) = slot.conn.lock().await.take()
        {
            conn.close(0u32.into(), b"reset");
        }
    }

    async fn connection(&self, slot: &Slot) -> Result<quinn::Connection, FetchError> {
        let mut guard = slot.conn.lock().await;
        if let Some(conn) = guard.as_ref()
            && conn.close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        let config = pinned_client(&slot.cert_hex).map_err(|e| FetchError::Link(e.to_string()))?;
        let connecting = self
            .endpoint
            .connect_with(config, slot.addr, SERVER_NAME)
            .map_err(|e| FetchError::Link(e.to_string()))?;
        let conn = connecting
            .await
            .map_err(|e| FetchError::Link(e.to_string()))?;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Asks `peer` for its buffer map once it is newer than `since` (a long poll of at most
    /// [`MAP_WAIT`] plus the RTT).
    ///
    /// # Errors
    /// [`FetchError::Link`] when the connection or stream failed or the answer is malformed,
    /// [`FetchError::UnknownPeer`] for a peer not set.
    pub async fn buffer_map(&self, peer: PeerId, since: u64) -> Result<MapAnswer, FetchError> {
        let answer = self
            .request(peer, &request_map(since), MAX_MAP_ANSWER + 1)
            .await?;
        match answer.split_first() {
            Some((&HAVE, json)) => serde_json::from_slice(json)
                .map_err(|e| FetchError::Link(format!("malformed buffer map: {e}"))),
            _ => Err(FetchError::Link("malformed buffer-map answer".to_owned())),
        }
    }

    async fn request(
        &self,
        peer: PeerId,
        body: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .cloned()
            .ok_or(FetchError::UnknownPeer)?;
        let conn = self.connection(&slot).await?;
        let link = |e: &dyn std::fmt::Display| FetchError::Link(e.to_string());
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| link(&e))?;
        send.write_all(body).await.map_err(|e| link(&e))?;
        send.finish().map_err(|e| link(&e))?;
        recv.read_to_end(limit).await.map_err(|e| link(&e))
    }

    /// Fetches `block` from `peer`.
    ///
    /// # Errors
    /// [`FetchError::Missing`] when the peer does not have it, [`FetchError::Link`] when the
    /// connection or stream failed, [`FetchError::UnknownPeer`] for a peer not set.
    pub async fn fetch(&self, peer: PeerId, block: u64) -> Result<Bytes, FetchError> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&peer)
            .cloned()
            .ok_or(FetchError::UnknownPeer)?;
        let conn = self.connection(&slot).await?;
        let link = |e: &dyn std::fmt::Display| FetchError::Link(e.to_string());
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| link(&e))?;
        send.write_all(&block.to_be_bytes())
            .await
            .map_err(|e| link(&e))?;
        send.finish().map_err(|e| link(&e))?;
        let answer = recv
            .read_to_end(MAX_BLOCK + 1)
            .await
            .map_err(|e| link(&e))?;
        match answer.first() {
            Some(&HAVE) => {
                slot.download.acquire(answer.len() as u64).await;
                Ok(Bytes::from(answer).slice(1..))
            }
            Some(&MISSING) => Err(FetchError::Missing),
            _ => Err(FetchError::Link("malformed answer".to_owned())),
        }
    }
}

/// The bytes of a buffer-map request for a map newer than `since`.
pub fn request_map(since: u64) -> [u8; 9] {
    let mut out = [MAP_REQUEST; 9];
    out[1..].copy_from_slice(&since.to_be_bytes());
    out
}

/// A request as the serving peer reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// A block, by number.
    Block(u64),
    /// The buffer map, once newer than this version.
    Map(u64),
}

impl Request {
    /// Parses a request's bytes; None for anything else.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        match bytes.len() {
            8 => Some(Self::Block(u64::from_be_bytes(bytes.try_into().ok()?))),
            9 if bytes[0] == MAP_REQUEST => {
                Some(Self::Map(u64::from_be_bytes(bytes[1..].try_into().ok()?)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_back() {
        assert_eq!(Request::parse(&7u64.to_be_bytes()), Some(Request::Block(7)));
        assert_eq!(Request::parse(&request_map(42)), Some(Request::Map(42)));
        assert_eq!(Request::parse(b"x"), None);
        assert_eq!(Request::parse(&[0; 9]), None);
    }
}
