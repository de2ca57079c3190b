//! The connection policy of every data-plane port (proxy, forwarder, media server), in one
//! place: how the socket listens, which connections it accepts, and when it closes them.
//!
//! * **Listen backlog** ([`ConnectionPolicy::backlog`], default 4096, at least 1024): a burst of
//!   viewers joining at once waits in the kernel's accept queue instead of overflowing it
//!   (the kernel caps it at `net.core.somaxconn`).
//! * **Connection caps**: at most [`ConnectionPolicy::max_connections`] open connections in
//!   all and [`ConnectionPolicy::max_connections_per_addr`] per client IP address; a
//!   connection over a cap is answered `503` with a JSON reason and closed at once.
//! * **Header-read timeout**: the request head must arrive within
//!   [`ConnectionPolicy::header_read_timeout_ms`] of the connection being ready for it
//!   (slowloris: a client that sends nothing, or a byte at a time, is closed).
//! * **Idle timeout**: a connection on which no byte was read or written for
//!   [`ConnectionPolicy::idle_timeout_ms`] is closed; this covers idle keep-alive connections
//!   and viewers that stopped reading (their writes make no progress).
//! * **Bounded buffering**: the HTTP/1 read and write buffers of a connection are at most
//!   [`ConnectionPolicy::max_buffer_bytes`] (which also bounds the request head), the kernel send
//!   buffer is set to [`ConnectionPolicy::send_buffer_bytes`] and unsent bytes in it to
//!   [`ConnectionPolicy::notsent_lowat_bytes`] (`TCP_NOTSENT_LOWAT`), so a slow viewer's
//!   backlog stays in the fan-out queue, where it is measured in seconds and skipped.
//!
//! [`raise_nofile_limit`] lifts `RLIMIT_NOFILE` to its hard limit at start, so idle sockets
//! cannot exhaust the process's file descriptors at the default soft limit of 1024.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::Handler;
use crate::error::ConfigError;

/// Smallest backlog accepted by [`ConnectionPolicy::validate`].
pub const MIN_BACKLOG: u32 = 1024;

/// How a data-plane port accepts and keeps connections (`[proxy.connections]`,
/// `[forwarder.connections]`, `[media.connections]`); see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionPolicy {
    /// Listen backlog in connections (default 4096; at least 1024).
    pub backlog: u32,
    /// Time allowed for a request head, ms (default 5000).
    pub header_read_timeout_ms: u64,
    /// A connection with no byte read or written for this long is closed, ms (default 15000).
    pub idle_timeout_ms: u64,
    /// Open connections in all (default 50000).
    pub max_connections: usize,
    /// Open connections per client IP address (default 256; 0 = no per-address cap).
    pub max_connections_per_addr: usize,
    /// HTTP/1 read and write buffer limit per connection, bytes (default 8192, the least
    /// hyper allows; nginx's default for a header line is 8 KiB too); request heads larger
    /// than this are refused with 431.
    pub max_buffer_bytes: usize,
    /// Kernel send buffer of each accepted socket, bytes (default 32768; 0 = the kernel's
    /// default, which grows to megabytes: at 0.3 Mbit/s each 37 KB is a second of delay the
    /// fan-out cannot see).
    pub send_buffer_bytes: usize,
    /// `TCP_NOTSENT_LOWAT`: unsent bytes the kernel keeps per socket before the socket stops
    /// being writable, bytes (default 4096; 0 = not set).
    pub notsent_lowat_bytes: u32,
}

impl Default for ConnectionPolicy {
    fn default() -> Self {
        Self {
            backlog: 4096,
            header_read_timeout_ms: 5000,
            idle_timeout_ms: 15_000,
            max_connections: 50_000,
            max_connections_per_addr: 256,
            max_buffer_bytes: 8 * 1024,
            send_buffer_bytes: 32 * 1024,
            notsent_lowat_bytes: 4 * 1024,
        }
    }
}

impl ConnectionPolicy {
    /// Checks the ranges; `section` names the configuration section in errors (e.g.
    /// `proxy.connections`).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, reason| ConfigError::Invalid {
            key: format!("{section}.{key}"),
            value,
            reason,
        };
        if self.backlog < MIN_BACKLOG {
            return Err(invalid(
                "backlog",
                self.backlog.to_string(),
                "must be at least 1024",
            ));
        }
        if self.max_buffer_bytes < 8192 {
            return Err(invalid(
                "max_buffer_bytes",
                self.max_buffer_bytes.to_string(),
                "must be at least 8192",
            ));
        }
        for (key, value) in [
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value < 100 {
                return Err(invalid(key, value.to_string(), "must be at least 100 ms"));
            }
        }
        if self.max_connections == 0 {
            return Err(invalid(
                "max_connections",
                "0".to_owned(),
                "must be positive",
            ));
        }
        Ok(())
    }

    fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }
}

/// Binds `addr` with `SO_REUSEADDR` and listens with the policy's backlog.
///
/// # Errors
/// The socket error.
pub fn bind(addr: SocketAddr, policy: &ConnectionPolicy) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    let backlog = i32::try_from(policy.backlog.max(MIN_BACKLOG)).unwrap_or(i32::MAX);
    socket.listen(backlog)?;
    TcpListener::from_std(socket.into())
}

/// Raises this process's `RLIMIT_NOFILE` soft limit to its hard limit; returns the limits
/// before and after (soft). Called by every serving subcommand at start.
///
/// # Errors
/// The system error when the limit cannot be read or set.
pub fn raise_nofile_limit() -> Result<(u64, u64), nix::Error> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, hard.max(soft)))
}

/// Labels of the refused-connection counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    reason: &'static str,
}

/// Connection metrics of a port: open connections, and connections refused or closed by the
/// policy, by reason (`per_addr_cap`, `total_cap`, `idle_timeout`, `header_timeout`).
#[derive(Debug, Clone, Default)]
pub struct ConnectionMetrics {
    open: Gauge,
    closed: Family<RefusedLabels, Counter>,
}

impl ConnectionMetrics {
    /// Registers `streamgate_{role}_connections` and `streamgate_{role}_connections_closed`
    /// (by `reason`).
    pub fn register(role: &str, registry: &mut prometheus_client::registry::Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            format!("streamgate_{role}_connections"),
            "Open data-plane connections",
            metrics.open.clone(),
        );
        registry.register(
            format!("streamgate_{role}_connections_closed"),
            "Connections refused or closed by the connection policy, by reason",
            metrics.closed.clone(),
        );
        metrics
    }

    fn count(&self, reason: &'static str) {
        self.closed.get_or_create(&RefusedLabels { reason }).inc();
    }

    /// Connections closed or refused for `reason` so far.
    pub fn closed(&self, reason: &'static str) -> u64 {
        self.closed.get_or_create(&RefusedLabels { reason }).get()
    }

    /// Open connections now.
    pub fn open(&self) -> i64 {
        self.open.get()
    }
}

/// Open connections per address, and in all.
#[derive(Debug, Default)]
struct Admission {
    per_addr: HashMap<IpAddr, usize>,
    total: usize,
}

/// A slot in [`Admission`]; dropping it frees the slot.
struct Slot {
    admission: Arc<Mutex<Admission>>,
    ip: IpAddr,
    gauge: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut admission = self
            .admission
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        admission.total = admission.total.saturating_sub(1);
        if let Some(count) = admission.per_addr.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                admission.per_addr.remove(&self.ip);
            }
        }
        self.gauge.dec();
    }
}

fn admit(
    admission: &Arc<Mutex<Admission>>,
    policy: &ConnectionPolicy,
    ip: IpAddr,
    gauge: &Gauge,
) -> Result<Slot, &'static str> {
    let mut state = admission.lock().unwrap_or_else(PoisonError::into_inner);
    if state.total >= policy.max_connections {
        return Err("total_cap");
    }
    let here = state.per_addr.get(&ip).copied().unwrap_or(0);
    if policy.max_connections_per_addr > 0 && here >= policy.max_connections_per_addr {
        return Err("per_addr_cap");
    }
    state.total += 1;
    *state.per_addr.entry(ip).or_insert(0) += 1;
    gauge.inc();
    Ok(Slot {
        admission: admission.clone(),
        ip,
        gauge: gauge.clone(),
    })
}

/// The JSON reason sent to a connection over a cap.
const OVER_CAP_BODY: &str =
    r#"{"error":"too many connections","origin":"downstream","retry":"later","status":503}"#;

/// The answer written (without waiting) to a connection over a cap before it is closed.
fn over_cap_answer() -> Vec<u8> {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         connection: close\r\nretry-after: 1\r\ncontent-length: {}\r\n\r\n{OVER_CAP_BODY}",
        OVER_CAP_BODY.len()
    )
    .into_bytes()
}

/// Applies the per-socket options of the policy to an accepted stream.
fn tune(stream: &TcpStream, policy: &ConnectionPolicy) {
    let _ = stream.set_nodelay(true);
    let socket = socket2::SockRef::from(stream);
    if policy.send_buffer_bytes > 0
        && let Err(error) = socket.set_send_buffer_size(policy.send_buffer_bytes)
    {
        debug!(%error, "cannot set SO_SNDBUF");
    }
    if policy.notsent_lowat_bytes > 0
        && let Err(error) = socket.set_tcp_notsent_lowat(policy.notsent_lowat_bytes)
    {
        debug!(%error, "cannot set TCP_NOTSENT_LOWAT");
    }
}

/// Serves `handler` on `listener` under `policy` until `shutdown` completes, then closes
/// every open connection (open video streams end). HTTP/1.1 with upgrades (WebSocket).
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    policy: ConnectionPolicy,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()> + Send,
) {
    let admission = Arc::new(Mutex::new(Admission::default()));
    let policy = Arc::new(policy);
    let mut connections = JoinSet::new();
    let mut accept_warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (mut stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // EMFILE and friends: back off instead of spinning.
                        if accept_warned.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                            warn!(%error, "accept failed");
                            accept_warned = Some(Instant::now());
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let slot = match admit(&admission, &policy, peer.ip(), &metrics.open) {
                    Ok(slot) => slot,
                    Err(reason) => {
                        metrics.count(reason);
                        debug!(%peer, reason, "connection refused");
                        let _ = stream.try_write(&over_cap_answer());
                        connections.spawn(async move {
                            let _ = tokio::time::timeout(Duration::from_millis(100), stream.shutdown()).await;
                        });
                        continue;
                    }
                };
                tune(&stream, &policy);
                let handler = handler.clone();
                let policy = policy.clone();
                let metrics = metrics.clone();
                connections.spawn(async move {
                    serve_connection(stream, peer, handler, &policy, &metrics, slot).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    connections.shutdown().await;
}

async fn serve_connection<H: Handler>(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<H>,
    policy: &ConnectionPolicy,
    metrics: &ConnectionMetrics,
    slot: Slot,
) {
    let activity = Activity::new();
    let written = Written::default();
    let io = Watched {
        inner: stream,
        activity: activity.clone(),
        written: written.clone(),
        _slot: slot,
    };
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            let handler = handler.clone();
            request.extensions_mut().insert(written.clone());
            async move { Ok::<_, Infallible>(handler.handle(request, peer).await) }
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(policy.header_read_timeout())
        .max_buf_size(policy.max_buffer_bytes)
        .keep_alive(true);
    let connection = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                if error.is_timeout() {
                    metrics.count("header_timeout");
                }
                debug!(%error, %peer, "connection ended with an error");
            }
        }
        () = activity.idle_for(policy.idle_timeout()) => {
            metrics.count("idle_timeout");
            debug!(%peer, "idle connection closed");
        }
    }
}

/// When a connection last moved a byte, as ms since its creation.
#[derive(Debug, Clone)]
struct Activity {
    base: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Completes once nothing moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// Bytes a connection has written to its socket so far (the kernel accepted them), shared
/// with the request handlers through the request's extensions: a viewer stream compares it
/// with what it handed to hyper, so bytes still waiting in hyper's buffer count in its
/// backlog.
#[derive(Debug, Clone, Default)]
pub struct Written(Arc<AtomicU64>);

impl Written {
    /// Bytes written so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: usize) {
        self.0.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A stream that records when bytes move (for the idle timeout) and counts bytes written.
struct Watched {
    inner: TcpStream,
    activity: Activity,
    written: Written,
    /// The connection's admission, held as long as the socket: a connection upgraded to a
    /// WebSocket ([`crate::ws`]) outlives hyper's connection task and still counts.
    _slot: Slot,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.touch();
            self.written.add(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.activity.touch();
            self.written.add(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_all() {
        let policy = ConnectionPolicy {
            max_connections: 3,
            max_connections_per_addr: 2,
            ..ConnectionPolicy::default()
        };
        let admission = Arc::new(Mutex::new(Admission::default()));
        let gauge = Gauge::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = admit(&admission, &policy, a, &gauge).unwrap();
        let _a2 = admit(&admission, &policy, a, &gauge).unwrap();
        assert_eq!(
            admit(&admission, &policy, a, &gauge).err(),
            Some("per_addr_cap")
        );
        let _b1 = admit(&admission, &policy, b, &gauge).unwrap();
        assert_eq!(
            admit(&admission, &policy, b, &gauge).err(),
            Some("total_cap")
        );
        assert_eq!(gauge.get(), 3);
        drop(a1);
        assert_eq!(gauge.get(), 2);
        assert!(admit(&admission, &policy, a, &gauge).is_ok());
    }

    #[test]
    fn the_over_cap_answer_declares_its_length() {
        let answer = over_cap_answer();
        let text = std::str::from_utf8(&answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["retry"], "later");
    }

    #[test]
    fn validation_names_the_key() {
        let policy = ConnectionPolicy {
            backlog: 128,
            ..ConnectionPolicy::default()
        };
        let error = policy.validate("proxy.connections").unwrap_err();
        assert!(
            error.to_string().contains("proxy.connections.backlog"),
            "{error}"
        );
        assert!(ConnectionPolicy::default().validate("x").is_ok());
    }
}
