//! The CDN's HLS routes ([`crate::hls`]): `GET /streams/{id}/live.m3u8` lists the newest
//! blocks of the CDN's window, `GET /streams/{id}/hls/{n}.ts` serves block `n`; `GET
//! /live.m3u8` and `GET /hls/{n}.ts` are the same for stream [`ROOT_STREAM`].

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{AppError, Cdn, Lookup, lock};
use crate::hls::{self, PLAYLIST_CONTENT_TYPE, SEGMENT_CONTENT_TYPE, Segment};

/// The stream id served at the CDN's root `/live.m3u8` (the peers' default stream id).
pub const ROOT_STREAM: &str = "live";

/// The label HLS segment bytes are counted under in the CDN's per-peer statistics.
pub const HLS_LABEL: &str = "hls";

pub(super) async fn root_playlist(State(cdn): State<Cdn>) -> Result<Response, AppError> {
    playlist(&cdn, ROOT_STREAM)
}

pub(super) async fn stream_playlist(
    State(cdn): State<Cdn>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    playlist(&cdn, &id)
}

pub(super) async fn root_segment(
    State(cdn): State<Cdn>,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    segment(&cdn, ROOT_STREAM, &name)
}

pub(super) async fn stream_segment(
    State(cdn): State<Cdn>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, AppError> {
    segment(&cdn, &id, &name)
}

/// The playlist of `stream`: the newest `hls_window` blocks held, ended once the origin
/// ended the stream; 404 for a stream nothing was published to.
fn playlist(cdn: &Cdn, stream: &str) -> Result<Response, AppError> {
    let text = {
        let streams = lock(&cdn.streams);
        let state = streams
            .get(stream)
            .ok_or_else(|| AppError(StatusCode::NOT_FOUND, format!("unknown stream `{stream}`")))?;
        let newest_first = state.blocks.iter().rev().map(|b| Segment {
            number: b.info.number,
            duration_ms: b.info.duration_ms,
        });
        hls::render(
            &hls::window_of(newest_first, cdn.hls_window),
            state.end.is_some(),
        )
    };
    Ok(playlist_response(text))
}

/// A playlist answer: its content type, no caching (it changes with every block), and
/// readable by a web player on any origin (`Access-Control-Allow-Origin: *`: hls.js fetches
/// playlists and segments with XHR/fetch, which needs CORS when its page is served from
/// elsewhere; the stream is public, as the CDN's block URLs are).
pub(crate) fn playlist_response(text: String) -> Response {
    let mut response = text.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(PLAYLIST_CONTENT_TYPE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A segment answer: the block's bytes, immutable, readable from any origin (as a playlist).
pub(crate) fn segment_response(data: bytes::Bytes) -> Response {
    let mut response = data.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(SEGMENT_CONTENT_TYPE),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

/// Block `name` (`"<n>.ts"`) of `stream`: 400 for another name, 410 when evicted, 404 when
/// not cut (a segment is only listed once held, so there is no wait).
fn segment(cdn: &Cdn, stream: &str, name: &str) -> Result<Response, AppError> {
    let n = hls::parse_segment_name(name).ok_or_else(|| {
        AppError(
            StatusCode::BAD_REQUEST,
            format!("bad segment name `{name}`: expected <block>.ts"),
        )
    })?;
    let block = {
        let streams = lock(&cdn.streams);
        let state = streams
            .get(stream)
            .ok_or_else(|| AppError(StatusCode::NOT_FOUND, format!("unknown stream `{stream}`")))?;
        match state.lookup(n) {
            Lookup::Held(block) => block.clone(),
            Lookup::Evicted => return Err(state.evicted(n)),
            Lookup::NotCut => {
                return Err(AppError(
                    StatusCode::NOT_FOUND,
                    format!("block {n} not cut yet"),
                ));
            }
        }
    };
    cdn.count(stream, HLS_LABEL, false, u64::from(block.info.size));
    Ok(segment_response(block.data))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use prometheus_client::registry::Registry;
    use svckit::redact::Secret;
    use tower::ServiceExt;

    use super::*;

    const TOKEN: &str = "publish-token-for-tests";

    async fn call(app: &axum::Router, request: Request<Body>) -> (StatusCode, String, Vec<u8>) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, kind, body.to_vec())
    }

    fn put(n: u64, data: Vec<u8>, duration_ms: u32) -> Request<Body> {
        Request::put(format!("/streams/live/blocks/{n}"))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("x-duration-ms", duration_ms.to_string())
            .header("x-sha256", hex::encode(crate::block::sha256(&data)))
            .body(Body::from(data))
            .unwrap()
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn the_playlist_slides_over_the_window_and_ends_with_the_stream() {
        let cdn = Cdn::new(&mut Registry::default(), Secret::new(TOKEN))
            .unwrap()
            .hls_window(3);
        let app = cdn.router();
        assert_eq!(call(&app, get("/live.m3u8")).await.0, StatusCode::NOT_FOUND);
        for n in 0..5u64 {
            let status = call(&app, put(n, vec![n as u8; 188], 1500)).await.0;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (status, kind, body) = call(&app, get("/live.m3u8")).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, PLAYLIST_CONTENT_TYPE)
        );
        let text = String::from_utf8(body).unwrap();
        assert!(
            text.contains("#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:2\n"),
            "{text}"
        );
        assert!(text.ends_with("hls/4.ts\n"), "{text}");
        assert_eq!(text.matches("#EXTINF:1.500,").count(), 3);
        let (_, _, same) = call(&app, get("/streams/live/live.m3u8")).await;
        assert_eq!(String::from_utf8(same).unwrap(), text);

        let (status, kind, body) = call(&app, get("/hls/4.ts")).await;
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, SEGMENT_CONTENT_TYPE)
        );
        assert_eq!(body, vec![4u8; 188]);
        assert_eq!(
            call(&app, get("/streams/live/hls/3.ts")).await.0,
            StatusCode::OK
        );
        assert_eq!(call(&app, get("/hls/5.ts")).await.0, StatusCode::NOT_FOUND);
        assert_eq!(call(&app, get("/hls/4")).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(cdn.stats("live").peers[HLS_LABEL].fetch, 2 * 188);

        let end = Request::post("/streams/live/end")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::to_vec(&super::super::EndOfStream {
                    blocks: 5,
                    source_bytes: 5 * 188,
                    source_sha256: [0; 32],
                })
                .unwrap(),
            ))
            .unwrap();
        assert_eq!(call(&app, end).await.0, StatusCode::NO_CONTENT);
        let (_, _, body) = call(&app, get("/live.m3u8")).await;
        assert!(
            String::from_utf8(body)
                .unwrap()
                .ends_with("hls/4.ts\n#EXT-X-ENDLIST\n")
        );
    }
}
