//! One HTTP hop of the data plane (proxy -> forwarder -> media server), on hyper 1: the
//! connection policy every data-plane port applies ([`listen`]), a connection-pooling client
//! whose response bodies stream through untouched (no total-time limit: a video stream lasts
//! as long as the viewer watches), and the responses every hop answers with.
//!
//! Two limits apply to a client request: the connect timeout and the time to the response
//! headers. A media server answers its headers as soon as the camera is playing (or with
//! 502 within its RTSP timeout), so the header timeout must exceed the RTSP timeout.

pub mod listen;

pub use listen::{ConnectionMetrics, ConnectionPolicy, Written, bind, raise_nofile_limit, serve};

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::{Classify, HopError, error_body};
use crate::fanout::{Refusal, ViewerStream};

/// The body type of every data-plane response: a streamed upstream body or a small JSON
/// error.
pub type HopBody = BoxBody<Bytes, hyper::Error>;

/// Headers that describe one connection, not the message, and are never forwarded
/// (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// `Via` value added by each hop.
pub const VIA: &str = "1.1 streamgate";

/// A JSON response (`application/json`) with `status`.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<HopBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The JSON error answer for `error`, with the status its class maps to.
pub fn error_response(error: &(impl Classify + std::fmt::Display)) -> Response<HopBody> {
    json_response(error.status(), &error_body(error))
}

/// The answer for a refusal a channel's source ended with.
pub fn refusal_response(refusal: &Refusal) -> Response<HopBody> {
    json_response(refusal.status, &refusal.body)
}

/// A streaming `video/x-flv` answer carrying `viewer`'s bytes. With the connection's
/// [`Written`] counter (from the request's extensions), bytes still waiting in hyper's write
/// buffer count in the viewer's backlog.
pub fn flv_response(mut viewer: ViewerStream, written: Option<&Written>) -> Response<HopBody> {
    if let Some(written) = written {
        viewer.track_written(written.clone());
    }
    let body =
        http_body_util::StreamBody::new(futures::StreamExt::map(viewer.into_stream(), |bytes| {
            Ok::<_, hyper::Error>(hyper::body::Frame::data(bytes))
        }));
    let mut response = Response::new(BodyExt::boxed(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("video/x-flv"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    response
}

/// An answer with `status` and no body.
pub fn empty_response(status: StatusCode) -> Response<HopBody> {
    let mut response = Response::new(
        Full::new(Bytes::new())
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

/// `405` with a JSON reason and `Allow`.
pub fn method_not_allowed(allow: &'static str) -> Response<HopBody> {
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({ "error": format!("only {allow} are served"), "origin": "downstream", "retry": "never", "status": 405 }),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// A pooled HTTP/1.1 client with `TCP_NODELAY` and a connect timeout.
#[derive(Debug, Clone)]
pub struct HopClient {
    client: Client<HttpConnector, Full<Bytes>>,
    header_timeout: Duration,
}

impl HopClient {
    /// A client that gives up connecting after `connect_timeout` and waiting for response
    /// headers after `header_timeout`.
    pub fn new(connect_timeout: Duration, header_timeout: Duration) -> Self {
        Self::with_socket(connect_timeout, header_timeout, None, None)
    }

    /// As [`HopClient::new`], connecting from the local address `from` and with a kernel
    /// receive buffer of `recv_buffer` bytes, when given.
    pub fn with_socket(
        connect_timeout: Duration,
        header_timeout: Duration,
        from: Option<std::net::IpAddr>,
        recv_buffer: Option<usize>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_local_address(from);
        connector.set_recv_buffer_size(recv_buffer);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            header_timeout,
        }
    }

    /// The header timeout.
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout
    }

    /// Sends `request` (its URI must be absolute: `http://addr/path`) and returns the response
    /// with its body still streaming.
    ///
    /// # Errors
    /// `Err(None)` when no response headers arrived within the header timeout, `Err(Some(e))`
    /// when the connection failed.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Option<hyper_util::client::legacy::Error>> {
        match tokio::time::timeout(self.header_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(Some(error)),
            Err(_) => Err(None),
        }
    }

    /// Forwards a GET/HEAD for `path_and_query` to `addr`, copying end-to-end request
    /// headers and adding `Via`; the answer's body streams back untouched and its hop-by-hop
    /// headers are dropped. `target` names the next hop in errors (a label or a service).
    ///
    /// # Errors
    /// [`HopError::Gone`] when the connection fails, [`HopError::HeaderTimeout`] when the
    /// headers do not come in time.
    pub async fn forward(
        &self,
        target: &str,
        addr: SocketAddr,
        parts: &http::request::Parts,
        path_and_query: &str,
        extra: &[(&'static str, String)],
    ) -> Result<Response<HopBody>, HopError> {
        let uri_text = format!("http://{addr}{path_and_query}");
        let mut builder = Request::builder()
            .method(parts.method.clone())
            .uri(uri_text.as_str());
        if let Some(headers) = builder.headers_mut() {
            copy_end_to_end(&parts.headers, headers);
            headers.append(header::VIA, HeaderValue::from_static(VIA));
            for (name, value) in extra {
                if let Ok(value) = HeaderValue::from_str(value) {
                    headers.insert(*name, value);
                }
            }
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|_| HopError::BadUri { uri: uri_text })?;
        match self.send(request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                parts
                    .headers
                    .append(header::VIA, HeaderValue::from_static(VIA));
                Ok(Response::from_parts(parts, body.boxed()))
            }
            Err(Some(source)) => Err(HopError::Gone {
                target: target.to_owned(),
                addr,
                source,
            }),
            Err(None) => Err(HopError::HeaderTimeout {
                target: target.to_owned(),
                addr,
                after: self.header_timeout,
            }),
        }
    }
}

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(name) && name != header::HOST && name != header::CONTENT_LENGTH {
            to.append(name.clone(), value.clone());
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

/// A data-plane service: one request in, one (streaming) response out.
pub trait Handler: Send + Sync + 'static {
    /// Answers `request` from `peer`.
    fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<HopBody>> + Send;
}

/// Labels of the data-plane request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RequestLabels {
    status: u16,
}

/// Request and open-stream metrics of a proxy or forwarder (served on its admin port).
#[derive(Debug, Clone)]
pub struct HopMetrics {
    requests: prometheus_client::metrics::family::Family<
        RequestLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl HopMetrics {
    /// Registers `streamgate_{role}_requests` (by `status`) and `streamgate_{role}_open_streams`
    /// in `registry`.
    pub fn register(role: &str, registry: &mut prometheus_client::registry::Registry) -> Self {
        let requests = prometheus_client::metrics::family::Family::default();
        let open = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            format!("streamgate_{role}_requests"),
            "Data-plane requests answered, by status",
            requests.clone(),
        );
        registry.register(
            format!("streamgate_{role}_open_streams"),
            "Responses whose body is still streaming",
            open.clone(),
        );
        Self { requests, open }
    }

    /// Counts an answer with `status`.
    pub fn answered(&self, status: StatusCode) {
        self.requests
            .get_or_create(&RequestLabels {
                status: status.as_u16(),
            })
            .inc();
    }

    /// Wraps a streaming response so the open-stream gauge counts it until its body ends or
    /// the viewer goes away; `on_close` runs then with the bytes passed and the time open.
    pub fn track(
        &self,
        response: Response<HopBody>,
        on_close: impl FnOnce(u64, Duration) + Send + Sync + 'static,
    ) -> Response<HopBody> {
        self.open.inc();
        let gauge = self.open.clone();
        let started = std::time::Instant::now();
        response.map(|inner| {
            Tracked {
                inner,
                bytes: 0,
                on_close: Some(Box::new(move |bytes| {
                    gauge.dec();
                    on_close(bytes, started.elapsed());
                })),
            }
            .boxed()
        })
    }
}

type CloseHook = Box<dyn FnOnce(u64) + Send + Sync>;

/// A body that reports when it is dropped (finished or abandoned).
struct Tracked {
    inner: HopBody,
    bytes: u64,
    on_close: Option<CloseHook>,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(hook) = self.on_close.take() {
            hook(self.bytes);
        }
    }
}
