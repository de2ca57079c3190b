//! Unit tests of [`super`].

use super::*;

async fn call(app: &Router, request: axum::http::Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    use tower::ServiceExt;
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, body)
}

const PUBLISH_TOKEN: &str = "publish-token-for-tests";

fn cdn() -> Cdn {
    Cdn::new(&mut Registry::default(), Secret::new(PUBLISH_TOKEN)).unwrap()
}

fn put(n: u64, data: &'static [u8], sha: &str) -> axum::http::Request<Body> {
    axum::http::Request::put(format!("/streams/live/blocks/{n}"))
        .header("authorization", format!("Bearer {PUBLISH_TOKEN}"))
        .header("x-duration-ms", "1000")
        .header("x-sha256", sha)
        .body(Body::from(data))
        .unwrap()
}

#[tokio::test]
async fn blocks_are_published_in_order_and_served_cacheable() {
    let cdn = cdn();
    let app = cdn.router();
    let sha = |d: &[u8]| hex::encode(crate::block::sha256(d));
    assert_eq!(
        call(&app, put(0, b"zero", &sha(b"zero"))).await.0,
        StatusCode::CREATED
    );
    // Out of order, or a body that does not match its digest: refused.
    assert_eq!(
        call(&app, put(2, b"two", &sha(b"two"))).await.0,
        StatusCode::CONFLICT
    );
    let (status, _, body) = call(&app, put(1, b"one", &sha(b"uno"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("does not match"));
    assert_eq!(
        call(&app, put(1, b"one", &sha(b"one"))).await.0,
        StatusCode::CREATED
    );
    // A retried PUT of a block already held is fine; another body for it is not.
    assert_eq!(
        call(&app, put(1, b"one", &sha(b"one"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, put(1, b"uno", &sha(b"uno"))).await.0,
        StatusCode::CONFLICT
    );

    let get = |uri: &str| axum::http::Request::get(uri).body(Body::empty()).unwrap();
    let (status, headers, body) = call(&app, get("/streams/live/blocks/1?peer=7")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"one");
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(headers[header::ETAG], format!("\"{}\"", sha(b"one")));
    let (_, _, body) = call(&app, get("/streams/live/manifest?from=1")).await;
    let manifest: Manifest = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (manifest.cut, manifest.blocks.len(), manifest.end),
        (2, 1, None)
    );
    let stats = cdn.stats("live");
    assert_eq!(stats.peers["7"].fetch, 3);
    assert_eq!(stats.total, 3);
    let (status, _, _) = call(&app, get("/streams/nope/manifest")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn publishing_needs_the_publish_token() {
    let cdn = cdn();
    let app = cdn.router();
    let sha = hex::encode(crate::block::sha256(b"zero"));
    let mut request = put(0, b"zero", &sha);
    request.headers_mut().remove("authorization");
    assert_eq!(call(&app, request).await.0, StatusCode::UNAUTHORIZED);
    let mut request = put(0, b"zero", &sha);
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_static("Bearer not-the-publish-token"),
    );
    assert_eq!(call(&app, request).await.0, StatusCode::FORBIDDEN);
    let end = axum::http::Request::post("/streams/live/end")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::to_vec(&EndOfStream {
                blocks: 0,
                source_bytes: 0,
                source_sha256: [0; 32],
            })
            .unwrap(),
        ))
        .unwrap();
    assert_eq!(call(&app, end).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(cdn.stats("live").total, 0);
    let (status, _, _) = call(
        &app,
        axum::http::Request::get("/streams/live/manifest")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was published");
    assert!(Cdn::new(&mut Registry::default(), Secret::default()).is_err());
}

#[tokio::test]
async fn only_the_window_is_held_and_evicted_blocks_are_gone() {
    let cdn = cdn().window(3000);
    let app = cdn.router();
    let data: Vec<&'static [u8]> = (0..20u8)
        .map(|n| &*Box::leak(vec![n; 188].into_boxed_slice()))
        .collect();
    for (n, d) in data.iter().enumerate() {
        let sha = hex::encode(crate::block::sha256(d));
        assert_eq!(
            call(&app, put(n as u64, d, &sha)).await.0,
            StatusCode::CREATED
        );
    }
    let stats = cdn.stats("live");
    // 1 s blocks in a 3 s window: 20 blocks published, 3 held, never more.
    assert_eq!((stats.held_blocks, stats.max_held_blocks), (3, 3));
    let get = |uri: &str| axum::http::Request::get(uri).body(Body::empty()).unwrap();
    let (status, _, body) = call(&app, get("/streams/live/blocks/5")).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(
        String::from_utf8_lossy(&body).contains("holds blocks 17..20"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _, body) = call(&app, get("/streams/live/blocks/19")).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, data[19]));
    let (_, _, body) = call(&app, get("/streams/live/manifest?from=2")).await;
    let manifest: Manifest = serde_json::from_slice(&body).unwrap();
    assert_eq!((manifest.cut, manifest.first), (20, 17));
    let numbers: Vec<u64> = manifest.blocks.iter().map(|b| b.number).collect();
    assert_eq!(numbers, vec![17, 18, 19]);
    // A subscription from an evicted block starts at the oldest held one.
    let end = axum::http::Request::post("/streams/live/end")
        .header("authorization", format!("Bearer {PUBLISH_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::to_vec(&EndOfStream {
                blocks: 20,
                source_bytes: 20 * 188,
                source_sha256: [0; 32],
            })
            .unwrap(),
        ))
        .unwrap();
    assert_eq!(call(&app, end).await.0, StatusCode::NO_CONTENT);
    let (_, _, body) = call(
        &app,
        get("/streams/live/subscribe?layout=0:1:1&substreams=1&from=0"),
    )
    .await;
    let frames = FrameDecoder::new().push(&body).unwrap();
    assert_eq!(frames[0], Frame::Hello { cut: 20, from: 17 });
    let blocks: Vec<u64> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Block(b) => Some(b.info.number),
            _ => None,
        })
        .collect();
    assert_eq!(blocks, vec![17, 18, 19]);
    assert_eq!(frames.last(), Some(&Frame::End { total: 20 }));
}

#[test]
fn peer_labels_are_bounded() {
    let cdn = cdn();
    cdn.watch("live").unwrap();
    for n in 0..MAX_PEER_LABELS + 50 {
        cdn.count("live", &n.to_string(), false, 1);
    }
    let stats = cdn.stats("live");
    assert_eq!(stats.peers.len(), MAX_PEER_LABELS + 1);
    assert_eq!(stats.peers[OTHER_PEERS].fetch, 50);
    assert_eq!(stats.total, (MAX_PEER_LABELS + 50) as u64);
    // A peer already counted keeps its own label.
    cdn.count("live", "7", true, 5);
    assert_eq!(cdn.stats("live").peers["7"].prefetch, 5);
}

#[tokio::test]
async fn unknown_stream_ids_cannot_grow_the_edge_without_bound() {
    let cdn = cdn();
    let app = cdn.router();
    let get = |uri: String| axum::http::Request::get(uri).body(Body::empty()).unwrap();
    for n in 0..MAX_STREAMS {
        cdn.watch(&format!("s{n}")).unwrap();
    }
    let (status, _, body) = call(&app, get("/streams/one-more/blocks/0".to_owned())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("holds 64 streams"));
    assert_eq!(lock(&cdn.streams).len(), MAX_STREAMS);
}
