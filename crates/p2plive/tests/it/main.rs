//! Integration tests of p2plive: real processes on 127.0.0.1 (the `p2plive` binary's origin,
//! cdn, tracker and peer subcommands), real ffmpeg/ffprobe, real QUIC and HTTP sockets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code: a panic is a test failure"
)]

mod adaptive;
mod bad_input;
mod churn;
mod control;
mod demo;
mod hls;
mod hlsjs;
mod ingest;
mod malloc;
mod netem;
mod netns;
mod player;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use testkit::{Peer, Ready, RunningPeer};

/// The `p2plive` binary built for these tests.
pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_p2plive")
}

/// A synthetic clip made with ffmpeg: `seconds` of lavfi testsrc (H.264) and a sine tone (AAC),
/// 1 s GOP, in `dir/name` (the extension picks the container: `.mp4` or `.ts`).
pub(crate) fn make_clip(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    make_clip_with_gop(dir, name, seconds, 25)
}

/// A generated 320x240 25 fps clip with a key frame every `gop` frames.
pub(crate) fn make_clip_with_gop(dir: &Path, name: &str, seconds: u32, gop: u32) -> PathBuf {
    let out = dir.join(name);
    testkit::TestClip::new(seconds)
        .pattern("testsrc")
        .size("320x240")
        .gop(gop)
        .audio()
        .write(&out);
    out
}

/// The tracker's join token in these tests (`P2PLIVE_TRACKER__JOIN_TOKEN`, given to peers as
/// `P2PLIVE_PEER__TRACKER_TOKEN`).
pub(crate) const JOIN_TOKEN: &str = "tests-join-token-0123";
/// The CDN's publish token in these tests (`P2PLIVE_CDN__PUBLISH_TOKEN`, given to the origin
/// as `P2PLIVE_ORIGIN__PUBLISH_TOKEN`).
pub(crate) const PUBLISH_TOKEN: &str = "tests-publish-token-0123";

/// The environment an origin process needs to publish to [`Infra`]'s CDN.
pub(crate) const ORIGIN_ENV: (&str, &str) = ("P2PLIVE_ORIGIN__PUBLISH_TOKEN", PUBLISH_TOKEN);
/// The environment a peer process needs to join [`Infra`]'s tracker.
pub(crate) const PEER_ENV: (&str, &str) = ("P2PLIVE_PEER__TRACKER_TOKEN", JOIN_TOKEN);

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub(crate) async fn get_json(url: &str) -> Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

pub(crate) async fn get_bytes(url: &str) -> Vec<u8> {
    let response = http().get(url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.bytes().await.unwrap().to_vec()
}

/// A CDN edge and a tracker as separate processes.
pub(crate) struct Infra {
    pub(crate) cdn: RunningPeer,
    pub(crate) tracker: RunningPeer,
}

impl Infra {
    /// Starts `p2plive cdn` and `p2plive tracker --stream live` with `tracker_args` added.
    pub(crate) fn start(tracker_args: &[&str]) -> Self {
        let cdn = Peer::new(bin())
            .args(["cdn", "--listen", "127.0.0.1:{port}"])
            .env("P2PLIVE_CDN__PUBLISH_TOKEN", PUBLISH_TOKEN)
            .ready(Ready::Http("/healthz"))
            .start();
        let mut args = vec![
            "tracker",
            "--listen",
            "127.0.0.1:{port}",
            "--stream",
            "live",
        ];
        args.extend_from_slice(tracker_args);
        let tracker = Peer::new(bin())
            .args(args)
            .env("P2PLIVE_TRACKER__JOIN_TOKEN", JOIN_TOKEN)
            .ready(Ready::Http("/healthz"))
            .start();
        Self { cdn, tracker }
    }

    pub(crate) fn cdn_url(&self) -> String {
        self.cdn.url("")
    }

    /// The tracker's view of stream `live` (read with the join token).
    pub(crate) async fn view(&self) -> Value {
        http()
            .get(self.tracker.url("/streams/live/view"))
            .bearer_auth(JOIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Starts `p2plive peer` at `speed` with extra `args`.
    pub(crate) fn peer(&self, speed: f64, args: &[&str]) -> RunningPeer {
        let mut all = vec![
            "peer".to_owned(),
            "--tracker".to_owned(),
            self.tracker.url(""),
            "--cdn".to_owned(),
            self.cdn_url(),
            "--http".to_owned(),
            "127.0.0.1:{port}".to_owned(),
            "--speed".to_owned(),
            speed.to_string(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Peer::new(bin())
            .args(all)
            .env(PEER_ENV.0, PEER_ENV.1)
            .ready(Ready::Http("/healthz"))
            .start()
    }

    /// Starts `p2plive origin` on `input` at `speed` (it exits at the end of the input).
    pub(crate) fn origin(&self, input: &str, speed: f64) -> RunningPeer {
        Peer::new(bin())
            .args([
                "origin",
                "--input",
                input,
                "--cdn",
                &self.cdn_url(),
                "--speed",
                &speed.to_string(),
                "--json",
            ])
            .env(ORIGIN_ENV.0, ORIGIN_ENV.1)
            .ready(Ready::Started)
            .start()
    }

    /// Waits until the CDN has cut at least `blocks` blocks.
    pub(crate) async fn wait_cut(&self, blocks: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let response = http()
                .get(format!("{}/streams/live/manifest", self.cdn_url()))
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                let m: Value = response.json().await.unwrap();
                if m["cut"].as_u64().unwrap() >= blocks {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "CDN did not reach {blocks} blocks in time"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for the origin's end of stream and returns the source SHA-256 (hex).
    pub(crate) async fn wait_end(&self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let m = get_json(&format!("{}/streams/live/manifest", self.cdn_url())).await;
            if let Some(sha) = m["end"]["source_sha256"].as_str() {
                return sha.to_owned();
            }
            assert!(Instant::now() < deadline, "stream did not end in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits until every peer says it played the last block; returns their summaries.
pub(crate) async fn wait_done(peers: &[&RunningPeer], within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let mut all = Vec::new();
        for p in peers {
            all.push(get_json(&p.url("/summary")).await);
        }
        if all.iter().all(|s| s["done"] == Value::Bool(true)) {
            return all;
        }
        assert!(Instant::now() < deadline, "peers did not finish: {all:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// True when the tracker's `view` lists exactly the peers of `summaries` (their `/summary`
/// objects), each with the substreams it reports, and none has an empty substream set.
pub(crate) fn view_settled(view: &Value, summaries: &[Value]) -> bool {
    let members = view.as_array().unwrap();
    members.len() == summaries.len()
        && summaries.iter().all(|s| {
            let mine = members.iter().find(|m| m["id"] == s["id"]);
            mine.is_some_and(|m| m["substreams"] == s["substreams"])
                && !s["substreams"].as_array().unwrap().is_empty()
        })
}

/// Waits until `peers` peers are registered at the tracker and each has subscribed.
pub(crate) async fn wait_joined(infra: &Infra, peers: &[&RunningPeer]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = infra.view().await;
        let mut summaries = Vec::new();
        for p in peers {
            summaries.push(get_json(&p.url("/summary")).await);
        }
        if view_settled(&view, &summaries) {
            return;
        }
        assert!(Instant::now() < deadline, "peers did not settle: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
