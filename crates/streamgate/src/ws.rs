//! WebSocket-FLV (issue 12 item 8): an `Upgrade: websocket` request on a stream's FLV path
//! gets the same FLV byte stream as binary WebSocket messages, one per FLV tag (the first
//! message is the FLV header), as SRS and ZLMediaKit serve it and as mpegts.js plays it.
//!
//! The proxy terminates the WebSocket (RFC 6455): it answers `101 Switching Protocols`
//! with `Sec-WebSocket-Accept`, and relays the viewer's fan-out stream
//! ([`crate::fanout::ViewerStream`]) into messages. The viewer is an ordinary fan-out
//! viewer, so the bounded-latency rules of HTTP-FLV apply: a viewer whose next tag is more
//! than `max_behind` old (its socket was blocked) is skipped to the next key frame.
//! Messages from the client are read only to see a close (pings are answered by
//! tungstenite).

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{Instrument, debug, info};

use crate::fanout::ViewerStream;
use crate::flv::mux::{HEADER_LEN, TAG_HEADER_LEN};
use crate::hop::{HopBody, Written, empty_response};

/// Whether `headers` ask for a WebSocket upgrade (RFC 6455 §4.2.1: `Connection` names
/// `upgrade`, `Upgrade` is `websocket`, version 13 and a key are present).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13")
        && headers.contains_key(header::SEC_WEBSOCKET_KEY)
}

/// Answers the upgrade of a request (its `headers`, and the connection's [`OnUpgrade`] from
/// its extensions) with `101` and, once the connection is switched, sends `viewer`'s FLV
/// as binary messages until either side ends. Without an [`OnUpgrade`] (the connection
/// cannot be upgraded) the answer is `400`.
///
/// With the connection's [`Written`] counter, bytes still in the socket's buffers count in
/// the viewer's backlog, as for HTTP-FLV.
pub fn accept(
    headers: &HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    mut viewer: ViewerStream,
    written: Option<Written>,
) -> Response<HopBody> {
    if let Some(written) = written {
        viewer.track_written_framed(written, frame_overhead);
    }
    let (Some(key), Some(on_upgrade)) = (headers.get(header::SEC_WEBSOCKET_KEY), on_upgrade) else {
        return empty_response(StatusCode::BAD_REQUEST);
    };
    let accept = derive_accept_key(key.as_bytes());
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    debug!(%error, "WebSocket upgrade failed");
                    return;
                }
            };
            let socket = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(WebSocketConfig::default().max_message_size(Some(64 << 10))),
            )
            .await;
            let (mut sink, mut incoming) = socket.split();
            let mut messages = 0u64;
            let reason = loop {
                tokio::select! {
                    bytes = viewer.next() => {
                        let Some(bytes) = bytes else {
                            let _ = sink.send(Message::Close(None)).await;
                            break "the stream ended";
                        };
                        let mut failed = false;
                        for message in split_tags(bytes) {
                            if sink.feed(Message::Binary(message)).await.is_err() {
                                failed = true;
                                break;
                            }
                            messages += 1;
                        }
                        if failed || sink.flush().await.is_err() {
                            break "the viewer went away";
                        }
                    }
                    message = incoming.next() => match message {
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break "the viewer closed",
                        Some(Ok(_)) => {}
                    },
                }
            };
            info!(
                messages,
                skips = viewer.skips(),
                reason,
                "WebSocket-FLV viewer closed"
            );
        }
        .instrument(span),
    );
    let mut response = empty_response(StatusCode::SWITCHING_PROTOCOLS);
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        out.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Bytes of the header of an unmasked server frame carrying `len` bytes (RFC 6455 §5.2).
fn frame_overhead(len: usize) -> u64 {
    match len {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    }
}

/// Splits a chunk of a viewer's FLV stream (whole tags, the first chunk led by the FLV
/// header and its `PreviousTagSize0`) into the header and one piece per tag, sharing the
/// chunk's buffer. Bytes that do not form a whole tag stay in one last piece.
pub fn split_tags(mut chunk: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    if chunk.starts_with(b"FLV") && chunk.len() >= HEADER_LEN {
        out.push(chunk.split_to(HEADER_LEN));
    }
    while chunk.len() >= TAG_HEADER_LEN {
        let size = u32::from_be_bytes([0, chunk[1], chunk[2], chunk[3]]) as usize;
        let total = TAG_HEADER_LEN + size + 4;
        if total > chunk.len() {
            break;
        }
        out.push(chunk.split_to(total));
    }
    if !chunk.is_empty() {
        out.push(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::mux;

    #[test]
    fn a_chunk_splits_into_the_header_and_whole_tags() {
        let header = mux::header(true, true);
        let a = mux::avc_sequence_header(0, &[1, 0x64, 0, 0x1e]).bytes;
        let b = mux::avc_frame(0, 40, true, &[0, 0, 0, 1, 0x65]).bytes;
        let chunk = Bytes::from([&header[..], &a[..], &b[..]].concat());
        assert_eq!(split_tags(chunk), vec![header, a.clone(), b.clone()]);
        assert_eq!(split_tags(b.clone()), vec![b]);
        assert_eq!(
            split_tags(a.slice(..5)),
            vec![a.slice(..5)],
            "a partial tag stays whole"
        );
    }

    #[test]
    fn upgrade_needs_all_four_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        assert!(!is_upgrade(&headers), "no key");
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert!(is_upgrade(&headers));
        headers.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert!(!is_upgrade(&headers), "version 8");
        // RFC 6455 §1.3's example key and answer.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
