//! The player output of a peer: the blocks played, in order, served at `GET /live.ts` (see
//! the [parent module](super) for where a new player starts), as HLS at `GET /live.m3u8`
//! (the newest blocks played that are still held, [`crate::hls`]) with segments at
//! `GET /hls/{n}.ts`, and `GET /summary`.

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use tracing::warn;

use super::{Shared, lock};
use crate::cdn::AppError;
use crate::hls::{self, Segment};
use crate::metrics::PeerSummary;

/// The blocks played that are still held, in play order, with their media durations:
/// `blocks[i]` was the `base + i`-th.
#[derive(Debug, Default)]
pub(super) struct Played {
    pub(super) base: usize,
    pub(super) blocks: VecDeque<Segment>,
}

impl Played {
    pub(super) fn len(&self) -> usize {
        self.base + self.blocks.len()
    }

    pub(super) fn get(&self, idx: usize) -> Option<u64> {
        self.blocks
            .get(idx.checked_sub(self.base)?)
            .map(|s| s.number)
    }

    pub(super) fn evict_before(&mut self, block: u64) {
        while self.blocks.front().is_some_and(|s| s.number < block) {
            self.blocks.pop_front();
            self.base += 1;
        }
    }
}

pub(super) async fn summary(State(shared): State<Arc<Shared>>) -> axum::Json<PeerSummary> {
    axum::Json(lock(&shared.summary).clone())
}

/// `GET /live.m3u8`: the newest run of consecutive blocks played that are still held, at
/// most `hls_window_blocks`, ended once the last block was played.
pub(super) async fn live_m3u8(State(shared): State<Arc<Shared>>) -> Response {
    let ended = shared.played_tx.borrow().1;
    let window = {
        let played = lock(&shared.played);
        let blocks = lock(&shared.blocks);
        let held = played
            .blocks
            .iter()
            .rev()
            .take_while(|s| blocks.contains_key(&s.number))
            .copied();
        hls::window_of(held, shared.config.hls_window_blocks.max(1))
    };
    crate::cdn::playlist_response(hls::render(&window, ended))
}

/// `GET /hls/{n}.ts`: block `n` when this peer holds it (400 for another name, 404 when not
/// held).
pub(super) async fn hls_segment(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Response, AppError> {
    let n = hls::parse_segment_name(&name).ok_or_else(|| {
        AppError(
            StatusCode::BAD_REQUEST,
            format!("bad segment name `{name}`: expected <block>.ts"),
        )
    })?;
    let data = shared
        .block(n)
        .ok_or_else(|| AppError(StatusCode::NOT_FOUND, format!("block {n} is not held")))?;
    Ok(crate::cdn::segment_response(data))
}

/// The query of `GET /live.ts`.
#[derive(Debug, Deserialize)]
pub(super) struct LiveQuery {
    /// `start`: from the first block played that is still held.
    from: Option<String>,
}

pub(super) async fn live_ts(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<LiveQuery>,
) -> Result<Response, AppError> {
    let rx = shared.played_tx.subscribe();
    let first = {
        let played = lock(&shared.played);
        match q.from.as_deref() {
            Some("start") => played.base,
            None => played.len().saturating_sub(1).max(played.base),
            Some(other) => {
                return Err(AppError(
                    StatusCode::BAD_REQUEST,
                    format!("from={other}: the only value is `start`"),
                ));
            }
        }
    };
    let stream = futures::stream::unfold((first, rx, shared), |(idx, mut rx, shared)| async move {
        loop {
            let (count, done) = *rx.borrow_and_update();
            if idx == usize::MAX {
                return None;
            }
            if idx < count {
                let block = lock(&shared.played).get(idx);
                let Some(data) = block.and_then(|n| shared.block(n)) else {
                    warn!(idx, "a /live.ts reader fell behind the window; ending it");
                    let error = std::io::Error::other("the player fell behind the window");
                    return Some((Err(error), (usize::MAX, rx, shared)));
                };
                return Some((Ok::<Bytes, std::io::Error>(data), (idx + 1, rx, shared)));
            }
            if done || rx.changed().await.is_err() {
                return None;
            }
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    Ok(response)
}
